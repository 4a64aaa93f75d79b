"""
The storage watch behind the ``eos_storage`` beacon: level transitions only, never repeats.

Each check measures the watched mounts and works out every mount's level:

- up: the new (higher) level must hold for ``for`` consecutive checks before it is reported;
- down: a level is held while usage stays at or above its threshold minus ``hysteresis``
  percentage points (as Netdata's status-dependent thresholds do), so a disk hovering at a
  threshold does not flap;
- time to full: with enough history, a forecast under ``time_to_full.warning`` (24 h) raises
  the level to at least warning, under ``time_to_full.critical`` (4 h) to critical.

The level of every mount is kept in a small state file, so a restarted minion does not replay
events for a disk that did not change. A check stays cheap because the watch lives in the
minion process: the mount table is re-read only when the kernel says it changed, the
threshold limits are resolved once per configuration, samples are appended to the shared
history with one small write, and the growth estimate is refreshed at most every
``growth_refresh`` seconds.
"""

import contextlib
import fnmatch
import json
import os
import select
import time
from dataclasses import dataclass
from dataclasses import field

from saltext.eos.utils import atomic
from saltext.eos.utils import config
from saltext.eos.utils.storage import analyzer
from saltext.eos.utils.storage import growth
from saltext.eos.utils.storage import mounts
from saltext.eos.utils.storage import thresholds

DEFAULTS = {
    "mounts": [],  # globs; empty: every real mount
    "thresholds": {},  # {glob: {level: percent}}, on top of eos:thresholds:mounts
    "hysteresis": 5,
    "for": 1,
    "inodes": True,
    "time_to_full": {"warning": 24 * 3600, "critical": 4 * 3600},
    "growth_refresh": 300,
    "textfile": None,
}
# Keys Salt itself understands in any beacon's configuration.
SALT_BEACON_KEYS = frozenset(
    {"interval", "disable_during_state_run", "beacon_module", "run_once", "enabled"}
)
STATE_FILE = os.path.join("eos", "beacon_state.json")
MOUNT_TABLE = "/proc/self/mounts"


class InvalidWatch(config.InvalidConfig):
    """Beacon configuration that cannot be used."""


@dataclass(frozen=True)
class Settings:
    mounts: tuple
    thresholds: dict
    hysteresis: float
    hold_checks: int
    inodes: bool
    ttf_warning: float
    ttf_critical: float
    growth_refresh: float
    textfile: str | None


def settings(beacon_config):
    """Validated Settings from the beacon's merged config mapping, or InvalidWatch."""
    unknown = sorted(set(beacon_config) - set(DEFAULTS) - SALT_BEACON_KEYS)
    if unknown:
        raise InvalidWatch(
            f"eos_storage beacon: unknown option(s) {', '.join(map(str, unknown))}; "
            f"expected {', '.join(DEFAULTS)}"
        )
    values = {**DEFAULTS, **beacon_config}
    globs = values["mounts"]
    if not isinstance(globs, (list, tuple)) or not all(isinstance(g, str) for g in globs):
        raise InvalidWatch(f"eos_storage beacon: mounts: {globs!r} is not a list of globs")
    per_mount = values["thresholds"]
    if not isinstance(per_mount, dict):
        raise InvalidWatch(f"eos_storage beacon: thresholds: {per_mount!r} is not a mapping")
    ttf = values["time_to_full"]
    if not isinstance(ttf, dict) or set(ttf) - {"warning", "critical"}:
        raise InvalidWatch(
            f"eos_storage beacon: time_to_full: {ttf!r} must map warning/critical to seconds"
        )
    ttf = {**DEFAULTS["time_to_full"], **ttf}
    if not isinstance(values["inodes"], bool):
        raise InvalidWatch(f"eos_storage beacon: inodes: {values['inodes']!r} is not true/false")
    textfile = values["textfile"]
    if textfile is not None and not (isinstance(textfile, str) and os.path.isabs(textfile)):
        raise InvalidWatch(f"eos_storage beacon: textfile: {textfile!r} is not an absolute path")
    hold = _number(values["for"], "for", minimum=1)
    if hold != int(hold):
        raise InvalidWatch(f"eos_storage beacon: for: {values['for']!r} is not a whole number")
    return Settings(
        mounts=tuple(globs),
        thresholds=per_mount,
        hysteresis=_number(values["hysteresis"], "hysteresis", minimum=0, maximum=50),
        hold_checks=int(hold),
        inodes=values["inodes"],
        ttf_warning=_number(ttf["warning"], "time_to_full:warning", minimum=0),
        ttf_critical=_number(ttf["critical"], "time_to_full:critical", minimum=0),
        growth_refresh=_number(values["growth_refresh"], "growth_refresh", minimum=0),
        textfile=textfile,
    )


def _number(value, key, minimum=None, maximum=None):
    try:
        return config.number(value, f"eos_storage beacon: {key}", minimum, maximum)
    except config.InvalidConfig as err:
        raise InvalidWatch(str(err)) from err


def beacon_layers(layers, watch_settings):
    """The eos layers plus the beacon's own per-mount thresholds as the highest layer."""
    extra = {"thresholds": {"mounts": watch_settings.thresholds}}
    return config.Layers([*layers.sources, ("beacon config", extra)])


def held_level(current, percent, limits, hysteresis):
    """
    The level ``percent`` calls for, given the ``current`` level and hysteresis.

    Going up needs the threshold itself; a level is left only once ``percent`` is below
    its threshold minus ``hysteresis``.
    """
    raw = limits.level_for(percent)
    if percent is None or thresholds.level_rank(raw) >= thresholds.level_rank(current):
        return raw
    for level in reversed(thresholds.LEVELS[thresholds.level_rank(raw) + 1 :]):
        if thresholds.level_rank(level) > thresholds.level_rank(current):
            continue
        if percent >= limits.values[level] - hysteresis:
            return level
    return raw


def time_to_full_level(seconds, watch_settings):
    if seconds is None:
        return "none"
    if seconds < watch_settings.ttf_critical:
        return "critical"
    if seconds < watch_settings.ttf_warning:
        return "warning"
    return "none"


class MountTable:
    """
    The real mounts, re-read only when the kernel reports a mount table change.

    The kernel flags /proc/self/mounts with POLLPRI when a mount is added or removed, which
    costs a poll() instead of a parse on every check.
    """

    def __init__(self, include_tmpfs=False):
        self.include_tmpfs = include_tmpfs
        self._entries = None
        self._selected = {}
        self._poller = None
        self._handle = None
        with contextlib.suppress(OSError):
            self._handle = open(MOUNT_TABLE, "rb")  # noqa: SIM115 - kept open to poll it
            self._poller = select.poll()
            self._poller.register(self._handle, select.POLLPRI | select.POLLERR)

    def entries(self):
        if self._entries is None or self._changed():
            self._entries = mounts.all_mounts()
            self._selected = {}
        return self._entries

    def _changed(self):
        if self._poller is None:
            return True
        if not self._poller.poll(0):
            return False
        # Reading to the end re-arms the notification.
        self._handle.seek(0)
        self._handle.read()
        return True

    def real(self, globs):
        """The mounts matching ``globs`` (default: every real one), until the table changes."""
        entries = self.entries()
        if globs not in self._selected:
            self._selected[globs] = [
                mount
                for point, mount in sorted(entries.items())
                if (
                    any(fnmatch.fnmatchcase(point, glob) for glob in globs)
                    if globs
                    else mounts.is_real(mount, self.include_tmpfs)
                )
            ]
        return self._selected[globs]

    def close(self):
        if self._handle is not None:
            self._handle.close()


@dataclass
class MountState:
    level: str = "none"
    pending_level: str | None = None
    pending_checks: int = 0
    estimate: growth.Estimate | None = None
    estimated_at: float = 0.0


@dataclass
class Watch:
    """One minion's storage watch; ``check`` returns the transition events of one check."""

    settings: Settings
    layers: config.Layers
    cachedir: str
    states: dict = field(default_factory=dict)
    # Injectable so that tests can play a disk filling up.
    statvfs: object = os.statvfs

    def __post_init__(self):
        self.analyzer_settings = analyzer.settings(self.layers)
        self.resolver = thresholds.Resolver(self.layers)
        self.table = MountTable(self.analyzer_settings.include_tmpfs)
        self.history = analyzer.open_history(self.cachedir, self.analyzer_settings)
        self.limits = {}
        self.state_path = os.path.join(self.cachedir, STATE_FILE)
        self.states = {
            mount: MountState(level=level) for mount, level in load_levels(self.state_path).items()
        }

    def check(self, now=None):
        """Measure, update levels, and return (events, reports) of this check."""
        now = time.time() if now is None else now
        watched = self.table.real(self.settings.mounts)
        measured = mounts.measure(watched, self.analyzer_settings.mount_timeout, self.statvfs)
        events, reports = [], {}
        for entry in watched:
            figures = measured[entry.mountpoint]
            if isinstance(figures, str):
                reports[entry.mountpoint] = analyzer.error_report(entry, figures)
                continue
            report, event = self._check_mount(entry, figures, now)
            reports[entry.mountpoint] = report
            if event:
                events.append(event)
        if events:
            save_levels(self.state_path, {m: s.level for m, s in self.states.items()})
        return events, reports

    def _check_mount(self, entry, figures, now):
        point = entry.mountpoint
        state = self.states.setdefault(point, MountState())
        limits = self._limits(point)
        self.history.record(point, figures.used_bytes, figures.total_bytes, now=now)
        estimate = self._growth(point, state, figures, now)
        report = analyzer.report(entry, figures, limits, estimate)
        candidate = self._candidate(state.level, report, limits)
        previous = state.level
        changed = self._transition(state, candidate)
        report["level"] = state.level
        report["actions"] = thresholds.actions_for(state.level)
        return report, transition_event(point, previous, report) if changed else None

    def _limits(self, point):
        if point not in self.limits:
            self.limits[point] = self.resolver.for_mount(point)
        return self.limits[point]

    def _growth(self, point, state, figures, now):
        stale = now - state.estimated_at >= self.settings.growth_refresh
        if state.estimate is None or stale:
            series = self.history.series(point, now)
            state.estimate = analyzer.estimate_growth(series, figures, self.analyzer_settings, now)
            state.estimated_at = now
        return state.estimate

    def _candidate(self, current, report, limits):
        hysteresis = self.settings.hysteresis
        levels = [held_level(current, report["usage_percent"], limits, hysteresis)]
        if self.settings.inodes:
            levels.append(held_level(current, report["inode_percent"], limits, hysteresis))
        levels.append(time_to_full_level(report["time_to_full_seconds"], self.settings))
        return thresholds.worse(*levels)

    def _transition(self, state, candidate):
        """Apply ``candidate`` to ``state``; True when the reported level changed."""
        rank = thresholds.level_rank
        if candidate == state.level:
            state.pending_level, state.pending_checks = None, 0
            return False
        if rank(candidate) < rank(state.level):
            state.level, state.pending_level, state.pending_checks = candidate, None, 0
            return True
        # Upwards: count consecutive checks above the current level.
        state.pending_checks += 1
        state.pending_level = candidate
        if state.pending_checks < self.settings.hold_checks:
            return False
        state.level, state.pending_level, state.pending_checks = candidate, None, 0
        return True

    def close(self):
        self.table.close()


def transition_event(mount, previous_level, report):
    return {
        "tag": report["level"],
        "mount": mount,
        "level": report["level"],
        "previous_level": previous_level,
        "usage_percent": report["usage_percent"],
        "inode_percent": report["inode_percent"],
        "free_bytes": report["free_bytes"],
        "time_to_full_seconds": report["time_to_full_seconds"],
        "growth_bytes_per_day": report["growth_bytes_per_day"],
        "device": report["device"],
        "fstype": report["fstype"],
    }


def load_levels(path):
    """{mount: level} saved by an earlier run; unreadable or unknown entries are ignored."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        mount: level
        for mount, level in data.get("levels", {}).items()
        if isinstance(mount, str) and level in thresholds.LEVELS
    }


def save_levels(path, levels):
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    atomic.write_file(path, json.dumps({"version": 1, "levels": levels}), 0o600)
