"""
The storage analyzer: per mount figures, threshold level, growth and time to full.

Settings live under ``eos:analyzer`` (defaults in ``DEFAULTS``)::

    eos:
      analyzer:
        include_tmpfs: false      # tmpfs holds data, but rarely data worth a forecast
        exclude: ["/snap/*"]      # mount point globs never analysed
        mount_timeout: 5          # seconds a mount may take before it reports an error
        growth_window: 21600      # seconds of history the growth estimate looks at
        growth_min_samples: 5     # fewer samples than this: growth is null
        growth_min_span: 1800     # history shorter than this (seconds): growth is null
        history_max_samples: 720  # full-resolution samples kept per mount (at most 6 h)
        history_max_age: 7776000  # seconds of coarse history kept (90 days; 10-minute
                                  # buckets for 8 days, then 2-hour ones)
        history_min_interval: 30  # a sample closer than this to the last is not recorded
"""

import os
import time
from dataclasses import dataclass

from saltext.eos.utils import config
from saltext.eos.utils.storage import growth
from saltext.eos.utils.storage import history
from saltext.eos.utils.storage import mounts
from saltext.eos.utils.storage import thresholds

DEFAULTS = {
    "include_tmpfs": False,
    "exclude": [],
    "mount_timeout": mounts.DEFAULT_TIMEOUT_SECONDS,
    "growth_window": growth.DEFAULT_WINDOW_SECONDS,
    "growth_min_samples": growth.DEFAULT_MIN_SAMPLES,
    "growth_min_span": growth.DEFAULT_MIN_SPAN_SECONDS,
    "history_max_samples": history.DEFAULT_MAX_SAMPLES,
    "history_max_age": history.DEFAULT_MAX_AGE_SECONDS,
    "history_min_interval": history.DEFAULT_MIN_INTERVAL_SECONDS,
}
HISTORY_DIR = os.path.join("eos", "history")
# What the history file's 64 KiB bound leaves room for.
MAXIMUMS = {
    "history_max_samples": history.MAX_RAW_RECORDS - history.MIN_APPENDS_PER_REWRITE,
    "history_max_age": history.TIERS[-1][1],
}
# A step smaller than this share of the filesystem is noise, never a burst or a cleanup.
MIN_JUMP_FRACTION = 0.001
# A drop smaller than this share is no cleanup of a cycle (logrotate frees far more).
MIN_CLEANUP_FRACTION = 0.01


@dataclass(frozen=True)
class Settings:
    include_tmpfs: bool
    exclude: tuple
    mount_timeout: float
    growth_window: float
    growth_min_samples: int
    growth_min_span: float
    history_max_samples: int
    history_max_age: float
    history_min_interval: float


def settings(layers):
    """Validated analyzer settings; InvalidConfig names the key and value."""
    values = {}
    for name, default in DEFAULTS.items():
        values[name] = layers.get("analyzer", name, default=default)
    key = config.key_name
    if not isinstance(values["include_tmpfs"], bool):
        raise config.InvalidConfig(
            f"{key('analyzer', 'include_tmpfs')}: {values['include_tmpfs']!r} is not true/false"
        )
    exclude = values["exclude"]
    if not isinstance(exclude, (list, tuple)) or not all(isinstance(p, str) for p in exclude):
        raise config.InvalidConfig(f"{key('analyzer', 'exclude')}: {exclude!r} is not a list")
    numbers = {}
    for name in DEFAULTS:
        if name in ("include_tmpfs", "exclude"):
            continue
        minimum = 0 if name == "history_min_interval" else 1
        numbers[name] = config.number(
            values[name], key("analyzer", name), minimum=minimum, maximum=MAXIMUMS.get(name)
        )
    return Settings(
        include_tmpfs=values["include_tmpfs"],
        exclude=tuple(exclude),
        mount_timeout=numbers["mount_timeout"],
        growth_window=numbers["growth_window"],
        growth_min_samples=max(2, int(numbers["growth_min_samples"])),
        growth_min_span=numbers["growth_min_span"],
        history_max_samples=int(numbers["history_max_samples"]),
        history_max_age=numbers["history_max_age"],
        history_min_interval=numbers["history_min_interval"],
    )


def open_history(cachedir, opts):
    return history.History(
        os.path.join(cachedir, HISTORY_DIR),
        max_samples=opts.history_max_samples,
        max_age_seconds=opts.history_max_age,
        min_interval_seconds=opts.history_min_interval,
    )


def select_mounts(opts, mount=None):
    """The mounts to analyse: the one named (any type), or every real one."""
    if mount is not None:
        return [mounts.find(mount)]
    return mounts.real_mounts(include_tmpfs=opts.include_tmpfs, exclude=opts.exclude)


def analyze(layers, cachedir, mount=None, record=True, now=None, statvfs=os.statvfs):
    """
    {mount point: report} for the named mount or every real one.

    Validates all configuration before measuring, so bad input writes nothing.
    """
    opts = settings(layers)
    resolver = thresholds.Resolver(layers)
    selected = select_mounts(opts, mount)
    limits = {m.mountpoint: resolver.for_mount(m.mountpoint) for m in selected}

    now = time.time() if now is None else now
    measured = mounts.measure(selected, opts.mount_timeout, statvfs)
    store = open_history(cachedir, opts)
    reports = {}
    for entry in selected:
        figures = measured[entry.mountpoint]
        if isinstance(figures, str):
            reports[entry.mountpoint] = error_report(entry, figures)
            continue
        if record:
            store.record(entry.mountpoint, figures.used_bytes, figures.total_bytes, now=now)
        estimate = estimate_growth(store.series(entry.mountpoint, now), figures, opts, now)
        reports[entry.mountpoint] = report(entry, figures, limits[entry.mountpoint], estimate)
    return reports


def estimate_growth(series, figures, opts, now):
    """The growth Estimate of one mount from its history (a history.Series)."""
    return growth.estimate(
        series,
        now=now,
        window_seconds=opts.growth_window,
        min_samples=opts.growth_min_samples,
        min_span_seconds=opts.growth_min_span,
        min_jump_bytes=figures.total_bytes * MIN_JUMP_FRACTION,
        min_cleanup_bytes=figures.total_bytes * MIN_CLEANUP_FRACTION,
        capacity_bytes=figures.used_bytes + figures.free_bytes,
    )


def error_report(entry, message):
    """The report of a mount that could not be measured."""
    return {"device": entry.device, "fstype": entry.fstype, "error": message}


def report(entry, figures, limits, estimate):
    space_level = limits.level_for(figures.usage_percent)
    inode_level = limits.level_for(figures.inode_percent)
    level = thresholds.worse(space_level, inode_level)
    return {
        "device": entry.device,
        "fstype": entry.fstype,
        "total_bytes": figures.total_bytes,
        "used_bytes": figures.used_bytes,
        "free_bytes": figures.free_bytes,
        "usage_percent": figures.usage_percent,
        "inodes_total": figures.inodes_total,
        "inodes_used": figures.inodes_used,
        "inode_percent": figures.inode_percent,
        "read_only": figures.read_only,
        "level": level,
        # The limits the level was judged by, so a report (and the metrics made from it)
        # carries the merged thresholds of its own mount: scale, roles, mount globs, beacon.
        "thresholds": {name: limits.values[name] for name in thresholds.THRESHOLD_LEVELS},
        "space_level": space_level,
        "inode_level": inode_level,
        "actions": thresholds.actions_for(level),
        "growth_bytes_per_day": _rounded(estimate.bytes_per_day),
        "growth_method": estimate.method,
        "growth_history_seconds": _rounded(estimate.span_seconds),
        "growth_period_seconds": _rounded(estimate.period_seconds),
        "time_to_full_seconds": _rounded(
            estimate.time_to_full(figures.used_bytes, figures.free_bytes)
        ),
    }


def _rounded(value):
    return None if value is None else round(value, 1)
