"""
Storage analysis for EOS nodes: how full each filesystem is, how fast it fills, when it will
be full, and which threshold level it has reached.

Configuration (minion config or pillar; pillar wins), every key optional:

.. code-block:: yaml

    eos:
      scale: small                # single | small | medium | distributed (set by ext_pillar)
      thresholds:                 # percent used, strictly increasing after merging
        warning: 60
        cleanup: 75
        roles:
          data: {warning: 60, cleanup: 70, critical: 80}
        mounts:
          "/var/lib/*": {emergency: 92}
      analyzer:
        include_tmpfs: false
        mount_timeout: 5
        growth_window: 21600

Every ``analyze`` records one sample per mount in a bounded history under the minion
cachedir; growth and time to full come from that history once it spans enough time.
"""

import logging

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.utils import analyzer
from saltext.eos.utils import config
from saltext.eos.utils import mounts
from saltext.eos.utils import thresholds as threshold_engine
from saltext.eos.utils import walk

log = logging.getLogger(__name__)

__virtualname__ = "eos_storage"


def __virtual__():
    return __virtualname__


def _layers():
    return config.Layers.from_salt(__opts__, __pillar__)


def analyze(mount=None):
    """
    Report every real filesystem: usage, inodes, level, growth and time to full.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_storage.analyze
        salt '*' eos_storage.analyze mount=/var
        salt '*' eos_storage.analyze --out=eos_storage

    mount
        Only this mount point. A path that is not a mount point is an error.

    Each report holds device, fstype, total_bytes, used_bytes, free_bytes (available to
    unprivileged users), usage_percent (reserved blocks count as used, as in df), inode
    figures, read_only, level, actions, growth_bytes_per_day and time_to_full_seconds (null
    until the history is long enough, or when the mount is not growing).
    """
    try:
        return analyzer.analyze(_layers(), __opts__["cachedir"], mount=mount)
    except mounts.UnknownMount as err:
        raise SaltInvocationError(str(err)) from err
    except config.InvalidConfig as err:
        raise CommandExecutionError(str(err)) from err


def thresholds(mount="/"):
    """
    The effective thresholds for a mount, and where each value came from.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_storage.thresholds
        salt '*' eos_storage.thresholds /var/lib/postgresql

    mount
        The mount point (default ``/``). Mount overrides are matched against it as globs.

    Sources read ``profile:<scale>``, or the configuration key and the layer that set it,
    for example ``eos:thresholds:roles:data:cleanup (pillar)``.
    """
    layers = _layers()
    try:
        limits = threshold_engine.effective(layers, mount=mount)
    except config.InvalidConfig as err:
        raise CommandExecutionError(str(err)) from err
    return {
        "mount": mount,
        "scale": layers.get("scale", default=threshold_engine.DEFAULT_SCALE),
        "roles": threshold_engine.node_roles(layers),
        "levels": limits.as_dict(),
    }


def top(mount="/", n=10, time_budget=10):
    """
    The largest directories and files on one mount.

    The walk stays on that filesystem, never follows symlinks, and stops when the time budget
    is spent (``complete`` is then False).

    CLI Example:

    .. code-block:: bash

        salt '*' eos_storage.top
        salt '*' eos_storage.top /var n=20 time_budget=30

    mount
        A mount point (default ``/``).
    n
        How many directories and files to list (a whole number >= 1).
    time_budget
        Seconds the walk may take.
    """
    try:
        point = mounts.find(mount).mountpoint
        return walk.largest(point, n=_whole_number(n, "n"), time_budget_seconds=time_budget)
    except (mounts.UnknownMount, walk.InvalidWalk) as err:
        raise SaltInvocationError(str(err)) from err


def _whole_number(value, name):
    # The CLI hands "10" as an int already; a string here is a typo such as n=ten.
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SaltInvocationError(f"{name}: {value!r} is not a whole number")
    return value
