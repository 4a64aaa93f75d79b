"""
prometheus.yml: scrape the fleet's node exporters from the ``file_sd`` targets file
(``targets.py``), evaluate the EOS rules file (``rules.py``) and send alerts to Alertmanager.

The intervals are short by default (15 s), so an alert's ``for`` is counted in evaluations,
not in minutes of delay; the EOS metrics themselves change once per beacon run.
"""

import os
from dataclasses import dataclass

from saltext.eos.utils import config
from saltext.eos.utils import errors
from saltext.eos.utils.observe import settings as observe_settings
from saltext.eos.utils.observe import targets

SECTION = "prometheus"
ALERTMANAGER_PORT = 9093
DEFAULTS = {
    "scrape_interval": 15,
    "scrape_timeout": 10,
    "evaluation_interval": 15,
    "alertmanagers": [f"localhost:{ALERTMANAGER_PORT}"],
}


@dataclass(frozen=True)
class Settings:
    scrape_interval: int
    scrape_timeout: int
    evaluation_interval: int
    alertmanagers: tuple  # host:port


def read_settings(given=None):
    """Validated Settings from ``eos:observe:prometheus`` (a mapping or None)."""
    values = observe_settings.section(SECTION, given, DEFAULTS)
    intervals = {
        name: observe_settings.whole_number(values[name], SECTION, name, minimum=1)
        for name in ("scrape_interval", "scrape_timeout", "evaluation_interval")
    }
    # Prometheus refuses a scrape that may outlast its interval.
    if intervals["scrape_timeout"] > intervals["scrape_interval"]:
        raise config.InvalidConfig(
            f"{observe_settings.key(SECTION, 'scrape_timeout')}: {intervals['scrape_timeout']} "
            f"must be <= scrape_interval ({intervals['scrape_interval']})"
        )
    return Settings(**intervals, alertmanagers=_alertmanagers(values["alertmanagers"]))


def _alertmanagers(value):
    where = observe_settings.key(SECTION, "alertmanagers")
    listed = [value] if isinstance(value, str) else value
    if not isinstance(listed, (list, tuple)) or not listed:
        raise config.InvalidConfig(f"{where}: {value!r} is not a list of host:port")
    try:
        return tuple(
            targets.host_port(address, ALERTMANAGER_PORT, f"{where}[{index}]")
            for index, address in enumerate(listed)
        )
    except errors.InvalidInput as err:
        raise config.InvalidConfig(str(err)) from err


def prometheus_config(targets_file, rules_files, settings=None):
    """
    prometheus.yml as a YAML-serialisable mapping: the EOS nodes from ``targets_file`` (the
    JSON of ``targets.target_groups``), the ``rules_files``, and the Alertmanagers.

    InvalidInput names a path that is not absolute; InvalidConfig a bad setting.
    """
    opts = read_settings(settings)
    rules_files = [rules_files] if isinstance(rules_files, str) else list(rules_files)
    for index, path in enumerate(rules_files):
        _check_path(path, f"rules_files[{index}]")
    _check_path(targets_file, "targets_file")
    return {
        "global": {
            "scrape_interval": observe_settings.duration(opts.scrape_interval),
            "scrape_timeout": observe_settings.duration(opts.scrape_timeout),
            "evaluation_interval": observe_settings.duration(opts.evaluation_interval),
        },
        "rule_files": rules_files,
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": list(opts.alertmanagers)}]}]
        },
        "scrape_configs": [
            {"job_name": targets.JOB, "file_sd_configs": [{"files": [targets_file]}]},
        ],
    }


def _check_path(path, name):
    if not isinstance(path, str) or not os.path.isabs(path):
        raise errors.InvalidInput(f"{name}: {path!r} is not an absolute path")
