"""
Storage reports as Prometheus metrics, for node_exporter's textfile collector.

``render`` turns the reports of ``analyzer.analyze`` into the Prometheus text exposition
format; ``write_atomically`` puts that text in place so the collector never reads half a file.
Every per-mount sample carries the labels ``mount``, ``device`` and ``fstype`` (and ``minion``
when a minion id is given); the thresholds add ``level``. The run's timestamp is the one
sample of the file that belongs to no mount (only ``minion``), so an observer can tell a
node whose metrics stopped moving.
"""

import math
import os
import time
from dataclasses import dataclass

from saltext.eos.utils import atomic
from saltext.eos.utils import errors
from saltext.eos.utils.storage import thresholds

DEFAULT_TEXTFILE = "/var/lib/node_exporter/textfile_collector/eos_storage.prom"
FILE_MODE = 0o644
SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class Family:
    name: str
    help: str


UP = Family("eos_storage_up", "1 when the mount could be measured, 0 when measuring it failed.")
USAGE_RATIO = Family(
    "eos_storage_usage_ratio",
    "Share of the filesystem in use, 0 to 1; blocks reserved for root count as used, as in df.",
)
FREE_BYTES = Family("eos_storage_free_bytes", "Bytes available to unprivileged users.")
INODE_RATIO = Family(
    "eos_storage_inode_ratio", "Share of the inodes in use, 0 to 1 (absent without inodes)."
)
LEVEL = Family(
    "eos_storage_level",
    "Threshold level reached, as an index into: " + ", ".join(thresholds.LEVELS) + ".",
)
GROWTH = Family(
    "eos_storage_growth_bytes_per_second",
    "Estimated growth of the used space (absent until enough history exists).",
)
TIME_TO_FULL = Family(
    "eos_storage_time_to_full_seconds",
    "Estimated seconds until the filesystem is full (absent when not growing or unknown).",
)
THRESHOLD_RATIO = Family(
    "eos_storage_threshold_ratio",
    "Effective threshold of each level for the mount, 0 to 1; the mount is at the highest "
    "level whose threshold its usage or inode ratio has reached.",
)
LAST_RUN = Family(
    "eos_storage_last_run_timestamp_seconds",
    "Unix time of the run that wrote these metrics; it stops moving when the runs stop.",
)
FAMILIES = (
    UP,
    USAGE_RATIO,
    FREE_BYTES,
    INODE_RATIO,
    LEVEL,
    THRESHOLD_RATIO,
    GROWTH,
    TIME_TO_FULL,
    LAST_RUN,
)
MOUNT_LABEL = "mount"
MINION_LABEL = "minion"
# The label a threshold sample adds to its mount's labels.
LEVEL_LABEL = "level"


@dataclass(frozen=True)
class Sample:
    family: Family
    labels: tuple
    value: float


def render(reports, minion_id=None, now=None):
    """The reports ({mount: report}) as Prometheus text, one HELP and TYPE per metric."""
    return exposition(samples(reports, minion_id, now))


def samples(reports, minion_id=None, now=None):
    """
    Every sample of the reports, then the run's timestamp (``now``, default the current
    time); values that are unknown (None) give no sample.
    """
    collected = []
    for mount, report in sorted(reports.items()):
        labels = mount_labels(mount, report, minion_id)
        for family, value in mount_values(report).items():
            if value is not None:
                collected.append(Sample(family, labels, value))
        collected.extend(threshold_samples(report, labels))
    run_labels = () if minion_id is None else ((MINION_LABEL, str(minion_id)),)
    collected.append(Sample(LAST_RUN, run_labels, time.time() if now is None else now))
    return collected


def threshold_samples(report, labels):
    """
    One sample per threshold level of the report's ``thresholds`` (percent), as a ratio
    rounded as the usage ratio is, so a mount exactly at a threshold compares equal to it in
    Prometheus too. A failed mount gives none, as it gives no other figure.
    """
    if "error" in report:
        return []
    limits = report.get("thresholds") or {}
    return [
        Sample(THRESHOLD_RATIO, (*labels, (LEVEL_LABEL, level)), _ratio(limits[level]))
        for level in thresholds.THRESHOLD_LEVELS
        if limits.get(level) is not None
    ]


def mount_labels(mount, report, minion_id=None):
    labels = [
        (MOUNT_LABEL, mount),
        ("device", report.get("device")),
        ("fstype", report.get("fstype")),
    ]
    if minion_id is not None:
        labels.append((MINION_LABEL, minion_id))
    return tuple((name, "" if value is None else str(value)) for name, value in labels)


def mount_values(report):
    """{family: value or None} of one report; a report with an error only says it is down."""
    if "error" in report:
        return {UP: 0}
    growth_per_day = report.get("growth_bytes_per_day")
    return {
        UP: 1,
        USAGE_RATIO: _ratio(report["usage_percent"]),
        FREE_BYTES: report["free_bytes"],
        INODE_RATIO: _ratio(report.get("inode_percent")),
        LEVEL: thresholds.level_rank(report["level"]),
        GROWTH: None if growth_per_day is None else growth_per_day / SECONDS_PER_DAY,
        TIME_TO_FULL: report.get("time_to_full_seconds"),
    }


def _ratio(percent):
    # Rounded so that 62.43 percent reads 0.6243, not 0.6243000000000001.
    return None if percent is None else round(percent / 100, 6)


def exposition(collected):
    """Samples as exposition text; each family's samples stay together, as the format requires."""
    lines = []
    for family in FAMILIES:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} gauge")
        lines.extend(
            f"{family.name}{_label_set(sample.labels)} {_number(sample.value)}"
            for sample in collected
            if sample.family == family
        )
    return "\n".join(lines) + "\n"


def _label_set(labels):
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels) + "}"


def escape_label_value(value):
    """A label value as the exposition format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class MissingDirectory(errors.OperationFailed, FileNotFoundError):
    """The directory the metrics file should go in does not exist."""


def check_target(path):
    """Raise MissingDirectory unless the directory of ``path`` exists (none is ever created)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise MissingDirectory(f"{path}: directory {directory} does not exist")
    return directory


def write_atomically(path, text):
    """
    Replace ``path`` with ``text`` (mode 0644) so a reader sees the old file or the new one.

    The temporary name (``utils.atomic``) starts with a dot and does not end in ``.prom``, so
    the textfile collector never reads a half-written file.
    """
    check_target(path)
    atomic.write_file(path, text, FILE_MODE)
