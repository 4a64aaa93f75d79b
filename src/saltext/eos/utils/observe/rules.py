"""
The Prometheus rules file: an alert per EOS level, the forecast against the beacon's horizons,
and nodes whose EOS metrics went stale.

Every expression is built from the level list (``thresholds.THRESHOLD_LEVELS``) and the metric
names of ``storage.metrics``, so the rules follow both. A level's alert compares a mount's usage
ratio (and its inode ratio, as the beacon does) with the threshold the node itself exported for
that mount and level: Prometheus judges by the node's merged thresholds (scale, roles, mount
globs, beacon), never by a copy of them.

==========================  ==================================================  ===================
alert                       fires when                                          after
==========================  ==================================================  ===================
EosStorage<Level>           usage or inode ratio >= the level's threshold       ``for``
EosStorageForecastWarning   time to full < ``time_to_full:warning`` (24 h)      ``forecast_for``
EosStorageForecastCritical  time to full < ``time_to_full:critical`` (4 h)      ``forecast_for``
EosStorageMetricsStale      the node's last run is older than ``stale_after``   at once
EosNodeExporterDown         the node's exporter does not answer its scrape      exporter_down_for
==========================  ==================================================  ===================

Labels: ``severity`` (``warning``, or ``critical`` for the levels from ``critical_from`` up),
``level`` (the EOS level the alert stands for; a forecast raises warning or critical, as the
beacon's does), and ``mount`` and ``node`` from the series (``node`` is the target label of
``targets.py``).
"""

from collections.abc import Mapping
from dataclasses import dataclass

from saltext.eos.utils import config
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.observe import settings as observe_settings
from saltext.eos.utils.observe import targets
from saltext.eos.utils.storage import metrics
from saltext.eos.utils.storage import thresholds
from saltext.eos.utils.storage import watch

SECTION = "rules"
GROUP = "eos-storage"
# Alertmanager knows two severities, named after the lowest and the highest level.
WARNING, CRITICAL = thresholds.THRESHOLD_LEVELS[0], thresholds.THRESHOLD_LEVELS[-1]
SEVERITIES = (WARNING, CRITICAL)
# The forecast raises the levels the beacon's time_to_full horizons are named after.
FORECAST_LEVELS = tuple(watch.DEFAULTS["time_to_full"])
DEFAULT_FOR_SECONDS = 300
# A node's runs are stale after this many of the slowest scale's monitoring intervals: one
# late run is load, three missed ones are a beacon (or minion) that stopped.
STALE_AFTER_RUNS = 3
SLOWEST_RUN_SECONDS = max(
    policy["monitoring_interval"] for policy in registry.SCALE_POLICIES.values()
)
DEFAULTS = {
    "for": DEFAULT_FOR_SECONDS,  # or {level: seconds}; a level not named waits the default
    "forecast_for": 600,
    "time_to_full": watch.DEFAULTS["time_to_full"],
    "stale_after": STALE_AFTER_RUNS * SLOWEST_RUN_SECONDS,
    "exporter_down_for": 300,
    "inodes": watch.DEFAULTS["inodes"],
    "critical_from": "degraded",
}
ALERT_PREFIX = "EosStorage"
STALE_ALERT = "EosStorageMetricsStale"
EXPORTER_DOWN_ALERT = "EosNodeExporterDown"


@dataclass(frozen=True)
class Settings:
    level_for: dict  # {level: seconds}, every threshold level
    forecast_for: int
    horizons: dict  # {forecast level: seconds}
    stale_after: int
    exporter_down_for: int
    inodes: bool
    critical_from: str


def read_settings(given=None):
    """Validated Settings from ``eos:observe:rules`` (a mapping or None)."""
    values = observe_settings.section(SECTION, given, DEFAULTS)
    return Settings(
        level_for=_level_for(values["for"]),
        forecast_for=observe_settings.whole_number(values["forecast_for"], SECTION, "forecast_for"),
        horizons=_horizons(values["time_to_full"]),
        stale_after=observe_settings.whole_number(
            values["stale_after"], SECTION, "stale_after", minimum=1
        ),
        exporter_down_for=observe_settings.whole_number(
            values["exporter_down_for"], SECTION, "exporter_down_for"
        ),
        inodes=_boolean(values["inodes"], "inodes"),
        critical_from=_level(values["critical_from"], ("critical_from",)),
    )


def _level_for(value):
    if not isinstance(value, Mapping):
        seconds = observe_settings.whole_number(value, SECTION, "for")
        return dict.fromkeys(thresholds.THRESHOLD_LEVELS, seconds)
    given = {}
    for name, seconds in value.items():
        level = _level(name, ("for",))
        if level in given:
            raise config.InvalidConfig(
                f"{observe_settings.key(SECTION, 'for')}: {level} is given twice (two spellings)"
            )
        given[level] = observe_settings.whole_number(seconds, SECTION, "for", name)
    return {level: given.get(level, DEFAULT_FOR_SECONDS) for level in thresholds.THRESHOLD_LEVELS}


def _level(name, path):
    return thresholds.threshold_level(name, observe_settings.key(SECTION, *path))


def _horizons(value):
    if not isinstance(value, Mapping) or set(value) - set(FORECAST_LEVELS):
        raise config.InvalidConfig(
            f"{observe_settings.key(SECTION, 'time_to_full')}: {value!r} must map "
            f"{' and '.join(FORECAST_LEVELS)} to seconds"
        )
    merged = {**watch.DEFAULTS["time_to_full"], **value}
    return {
        level: observe_settings.whole_number(merged[level], SECTION, "time_to_full", level)
        for level in FORECAST_LEVELS
    }


def _boolean(value, name):
    if not isinstance(value, bool):
        raise config.InvalidConfig(
            f"{observe_settings.key(SECTION, name)}: {value!r} is not true/false"
        )
    return value


def rules_file(settings=None):
    """The rules file as a YAML-serialisable mapping: one group holding every EOS alert."""
    opts = read_settings(settings)
    rules = [*level_rules(opts), *forecast_rules(opts), stale_rule(opts), exporter_down_rule(opts)]
    return {"groups": [{"name": GROUP, "rules": rules}]}


def level_alert(level):
    """The alert name of a level: ``EosStorageWarning``, ..., ``EosStorageCritical``."""
    return ALERT_PREFIX + level.capitalize()


def forecast_alert(level):
    return f"{ALERT_PREFIX}Forecast{level.capitalize()}"


def severity(level, critical_from):
    """``critical`` for ``critical_from`` and the levels above it, else ``warning``."""
    if thresholds.level_rank(level) >= thresholds.level_rank(critical_from):
        return CRITICAL
    return WARNING


def level_rules(opts):
    return [
        alert_rule(
            level_alert(level),
            level_expr(level, opts.inodes),
            opts.level_for[level],
            {"severity": severity(level, opts.critical_from), "level": level},
            {
                "summary": f"{_label('mount')} on {_label('node')} is at the {level} level",
                "description": (
                    f"{_value('humanizePercentage')} in use, at or above the {level} threshold "
                    f"of the mount; EOS responds: {', '.join(thresholds.actions_for(level))}."
                ),
            },
        )
        for level in thresholds.THRESHOLD_LEVELS
    ]


def level_expr(level, inodes=True):
    """
    The mounts whose usage (or, with ``inodes``, inode) ratio has reached their own threshold
    of ``level``: each ratio series is matched with the threshold series of its mount.
    """
    threshold = f'{metrics.THRESHOLD_RATIO.name}{{{metrics.LEVEL_LABEL}="{level}"}}'
    reached = [
        f"{ratio.name} >= ignoring({metrics.LEVEL_LABEL}) {threshold}"
        for ratio in (
            (metrics.USAGE_RATIO, metrics.INODE_RATIO) if inodes else (metrics.USAGE_RATIO,)
        )
    ]
    if len(reached) == 1:
        return reached[0]
    # Space and inodes both over the threshold would be two series of one mount; the max
    # (which drops the metric name) leaves one, valued by the fuller of the two.
    return "max without () (" + " or ".join(f"({part})" for part in reached) + ")"


def forecast_rules(opts):
    return [
        alert_rule(
            forecast_alert(level),
            f"{metrics.TIME_TO_FULL.name} < {opts.horizons[level]}",
            opts.forecast_for,
            {"severity": severity(level, opts.critical_from), "level": level},
            {
                "summary": (
                    f"{_label('mount')} on {_label('node')} is full within "
                    f"{observe_settings.duration(opts.horizons[level])}"
                ),
                "description": (
                    f"At its current growth the mount is full in {_value('humanizeDuration')}."
                ),
            },
        )
        for level in FORECAST_LEVELS
    ]


def stale_rule(opts):
    return alert_rule(
        STALE_ALERT,
        f"time() - {metrics.LAST_RUN.name} > {opts.stale_after}",
        0,
        {"severity": WARNING},
        {
            "summary": f"the EOS storage metrics of {_label('node')} are stale",
            "description": (
                f"{_label('node')} last measured its mounts {_value('humanizeDuration')} ago: "
                "its beacon or minion stopped, and its levels are no longer current."
            ),
        },
    )


def exporter_down_rule(opts):
    return alert_rule(
        EXPORTER_DOWN_ALERT,
        f'up{{job="{targets.JOB}"}} == 0',
        opts.exporter_down_for,
        {"severity": WARNING},
        {
            "summary": f"the node exporter of {_label('node')} does not answer",
            "description": (
                f"{_label('instance')} fails its scrapes: no EOS storage metric of "
                f"{_label('node')} is current, and none of its alerts can fire."
            ),
        },
    )


def alert_rule(name, expr, hold_seconds, labels, annotations):
    """One alerting rule; a hold of 0 leaves ``for`` out (the alert fires at once)."""
    rule = {"alert": name, "expr": expr}
    if hold_seconds:
        rule["for"] = observe_settings.duration(hold_seconds)
    rule["labels"] = labels
    rule["annotations"] = annotations
    return rule


def _label(name):
    """A label of the alert's series, as a Prometheus template."""
    return "{{ $labels." + name + " }}"


def _value(function):
    return "{{ $value | " + function + " }}"
