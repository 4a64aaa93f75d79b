"""
Storage beacon: fires only when a mount's threshold level changes.

Salt's ``diskusage`` beacon fires on every interval while a disk is above its limit. This
beacon fires once per transition, holds a level with hysteresis so a disk hovering at a
threshold does not flap, and keeps its levels across minion restarts.

Configuration (minion config or pillar, list form like every Salt beacon):

.. code-block:: yaml

    beacons:
      eos_storage:
        - interval: 60            # in minion loop_interval ticks, as for every beacon
        - mounts: ["/", "/var/lib/*"]   # globs; default: every real mount
        - thresholds:             # per mount glob, on top of eos:thresholds
            "/var/lib/*": {emergency: 92}
        - hysteresis: 5           # percentage points below a threshold before a level clears
        - for: 1                  # consecutive checks a higher level must hold before it fires
        - inodes: true            # judge inode usage too; the worse level wins
        - time_to_full:           # forecasts under these raise the level (needs history)
            warning: 86400
            critical: 14400
        - textfile: /var/lib/node_exporter/textfile_collector/eos_storage.prom

Thresholds, scale and the analyzer settings come from the ``eos`` key (see
``eos_storage.analyze``).

Event, on a level change only::

    salt/beacon/<minion id>/eos_storage/<level>

    {"mount": "/var", "level": "cleanup", "previous_level": "compress",
     "usage_percent": 76.2, "inode_percent": 3.1, "free_bytes": 1234567890,
     "time_to_full_seconds": 86400.0, "growth_bytes_per_day": 5000000000.0,
     "device": "/dev/sda3", "fstype": "ext4"}

A recovery fires the lower level (``.../eos_storage/none`` when the disk is fine again).
"""

import json
import logging

import salt.utils.beacons

from saltext.eos.utils import config
from saltext.eos.utils.storage import analyzer
from saltext.eos.utils.storage import thresholds
from saltext.eos.utils.storage import watch

log = logging.getLogger(__name__)

__virtualname__ = "eos_storage"

# One watch per distinct configuration, kept in the minion process between checks.
_WATCHES = {}


def __virtual__():
    if __grains__.get("kernel") != "Linux":
        return False, "eos_storage: needs Linux (mount changes from /proc/self/mounts, statvfs)"
    return __virtualname__


def validate(config_list):
    """Check the beacon configuration; returns (valid, message) as Salt expects."""
    if not isinstance(config_list, list):
        return False, "eos_storage beacon: configuration must be a list of single-key mappings"
    layers = _layers()
    try:
        settings = watch.settings(_beacon_config(config_list))
        analyzer.settings(layers)
        thresholds.Resolver(watch.beacon_layers(layers, settings))
    except config.InvalidConfig as err:
        return False, str(err)
    return True, "Valid beacon configuration"


def beacon(config_list):
    """
    Measure the watched mounts and return one event per level transition.

    Salt calls this every ``interval``; nothing is returned while levels are unchanged.
    """
    beacon_config = _beacon_config(config_list)
    try:
        current = _watch(beacon_config)
        events, reports = current.check()
    except config.InvalidConfig as err:
        log.error("eos_storage beacon: %s", err)
        return []
    if current.settings.textfile:
        _write_textfile(current.settings.textfile, reports)
    return events


def _beacon_config(config_list):
    # Salt adds hidden options such as _beacon_name; a copy keeps the caller's list intact.
    visible = salt.utils.beacons.remove_hidden_options(list(config_list), [])
    return salt.utils.beacons.list_to_dict(visible)


def _layers():
    return config.Layers.from_salt(__opts__, __opts__.get("pillar"))


def _watch(beacon_config):
    layers = _layers()
    sources = [data for _, data in layers.sources]
    key = json.dumps([beacon_config, sources], sort_keys=True, default=str)
    existing = _WATCHES.get(key)
    if existing is not None:
        return existing
    for stale in _WATCHES.values():
        stale.close()
    _WATCHES.clear()
    settings = watch.settings(beacon_config)
    created = watch.Watch(settings, watch.beacon_layers(layers, settings), __opts__["cachedir"])
    _WATCHES[key] = created
    return created


def _write_textfile(path, reports):
    from saltext.eos.utils.storage import metrics

    try:
        metrics.write_atomically(path, metrics.render(reports, __opts__.get("id")))
    except OSError as err:
        log.error("eos_storage beacon: cannot write metrics to %s: %s", path, err)
