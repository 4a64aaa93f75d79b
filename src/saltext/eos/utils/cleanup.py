"""
Progressive space recovery on one filesystem: plan it, predict it, do it, stop at the target.

Levels and their steps, cheapest and least valuable first. A level runs the steps of every
level below it first, and the run stops as soon as the mount is under its target:

==========  ===============================================================================
compress    compress_logs: gzip logs not modified for ``compress_after_days``
cleanup     package_caches (apt-get/dnf/yum/zypper clean), tmp_files (not accessed, modified
            or changed for ``tmp_after_days``), docker_prune, journal_vacuum
degrade     stop_services: stop the configured non-essential services that are running
emergency   user_caches, rotated_logs (deleted after ``rotated_after_days``),
            journal_vacuum_emergency, truncate_live_logs (over ``truncate_over``)
==========  ===============================================================================

Every setting lives under ``eos:cleanup``; ``DEFAULTS`` is the one table of defaults.

Safety rules, applied to every file a step touches:

- only below the configured roots, only on the named mount, never following a symlink:
  roots are ``lstat``-ed and must be on that mount (``st_dev`` and the mount table read once
  per run from /proc/self/mountinfo, so a bind mount of the same filesystem is another
  mount), walks enter neither links nor mount points, and every change is made through
  directory descriptors opened with ``O_NOFOLLOW`` down from the root;
- never protected data (``protected.BUILTIN`` plus ``eos:cleanup:protected``: databases'
  binary and write-ahead logs, journals, keys...) nor ``preserve_paths``, whatever its name
  or age: preserved wins over every setting;
- never a file with several hard links (unlinking one frees nothing), and never a file that a
  process holds open, except to truncate a live log in place;
- sizes are allocated bytes (``st_blocks * 512``), what the filesystem gets back.

A dry run changes nothing (it reads logs with ``O_NOATIME``) and predicts each step against
a simulated view of the disk, so that a later step sees what an earlier one would have left;
a real run on an unchanged disk frees what the dry run said. Real runs take a lock, so that
two never run at once on one node.
"""

import contextlib
import dataclasses
import fcntl
import fnmatch
import functools
import gzip
import json
import math
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field

from saltext.eos.utils import atomic
from saltext.eos.utils import config
from saltext.eos.utils import mounts
from saltext.eos.utils import openfiles
from saltext.eos.utils import protected
from saltext.eos.utils import walk

LEVELS = ("compress", "cleanup", "degrade", "emergency")
CRITICAL_LEVEL = "critical"
REQUEST_LEVELS = (*LEVELS, CRITICAL_LEVEL)
# Changing things at these levels costs service or data, so they act only when told to.
CAUTIOUS_LEVELS = frozenset({"degrade", "emergency"})
# The threshold whose limit, minus the margin, is a level's default target.
THRESHOLD_OF_LEVEL = {
    "compress": "compress",
    "cleanup": "cleanup",
    "degrade": "degraded",
    "emergency": "emergency",
    "critical": "critical",
}
CATEGORIES = ("logs", "caches", "tmp", "containers", "journal")

DAY_SECONDS = 86400
DEFAULTS = {
    # compress
    "log_dirs": ["/var/log"],
    "log_exclude": ["wtmp", "btmp", "lastlog", "faillog"],
    "compress_after_days": 7,
    "compress_level": 6,
    # cleanup
    "package_caches": {
        "apt": ["/var/cache/apt"],
        "dnf": ["/var/cache/dnf"],
        "yum": ["/var/cache/yum"],
        "zypper": ["/var/cache/zypp/packages"],
    },
    "tmp_dirs": ["/tmp", "/var/tmp"],
    "tmp_after_days": 7,
    "docker_prune": True,
    "docker_prune_volumes": False,
    "docker_root": "/var/lib/docker",
    "journal_dirs": ["/var/log/journal"],
    "journal_max_size": "500M",
    # degrade
    "services": ["jenkins", "gitlab-runner", "elasticsearch"],
    # emergency
    "user_cache_dirs": ["/root/.cache"],
    "user_cache_after_days": 0,
    "rotated_after_days": 1,
    "emergency_journal_max_size": "100M",
    "truncate_over": "100M",
    # every level
    "protected": {},
    "preserve_paths": [],
    "target_margin": 5,
    "max_listed_files": 100,
    "command_timeout": 1800,
}

PROTECTED_FIELDS = ("paths", "names", "reason")
GLOB_CHARACTER = re.compile(r"[*?\[]")
PROTECTED_CLASS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

COMPRESSED_SUFFIXES = (".gz", ".xz", ".bz2", ".zst", ".zip")
# syslog.1, syslog.2.gz, app.log-20240101, app.log-2024010112.xz, app.log.old. "\Z", not "$":
# "$" also matches before a trailing newline, and "app.log.1\n" is not a rotated log.
ROTATED_NAME = re.compile(r"(\.\d+|[-.]\d{8}(\d{2})?|\.old)(\.(gz|xz|bz2|zst|zip))?\Z")
PACKAGE_TOOLS = {
    "apt": ("apt-get", "clean"),
    "dnf": ("dnf", "clean", "all"),
    "yum": ("yum", "clean", "all"),
    "zypper": ("zypper", "--non-interactive", "clean", "--all"),
}
# Files the package tools keep for themselves while cleaning.
PACKAGE_CACHE_KEEPS = frozenset({"lock"})
JOURNAL_SUFFIXES = (".journal", ".journal~")

SIZE_TEXT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
# journalctl reads K, M, G, T as powers of 1024, and so do we.
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
# docker prints sizes in powers of 1000.
DOCKER_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kKMGTP]?B)")
DOCKER_UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15}

STATE_DIR = "eos"
LOCK_FILE = "cleanup.lock"
DEGRADED_FILE = "degraded_services.json"
READ_CHUNK = 1024 * 1024
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class InvalidRequest(ValueError):
    """A cleanup argument that cannot be used; the message names the argument and value."""


class CleanupBusy(RuntimeError):
    """Another cleanup holds the lock on this node."""


class _Keep(Exception):
    """A file a step wanted but must leave alone; the message says why."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    log_dirs: tuple
    log_exclude: tuple
    compress_after_seconds: float
    compress_level: int
    package_caches: Mapping
    tmp_dirs: tuple
    tmp_after_seconds: float
    docker_prune: bool
    docker_prune_volumes: bool
    docker_root: str
    journal_dirs: tuple
    journal_max_bytes: int
    services: tuple
    user_cache_dirs: tuple
    user_cache_after_seconds: float
    rotated_after_seconds: float
    emergency_journal_max_bytes: int
    truncate_over_bytes: int
    protected: tuple
    preserve_paths: tuple
    target_margin: float
    max_listed_files: int
    command_timeout: float


def settings(layers):
    """Validated ``eos:cleanup`` settings over DEFAULTS; InvalidConfig names the key and value."""
    _check_section(layers)
    raw = {name: layers.get("cleanup", name, default=default) for name, default in DEFAULTS.items()}
    return Settings(
        log_dirs=_directories(raw, "log_dirs"),
        log_exclude=_names(raw, "log_exclude"),
        compress_after_seconds=_days(raw, "compress_after_days"),
        compress_level=_whole(raw, "compress_level", minimum=1, maximum=9),
        package_caches=_package_cache_settings(raw),
        tmp_dirs=_directories(raw, "tmp_dirs"),
        tmp_after_seconds=_days(raw, "tmp_after_days"),
        docker_prune=_flag(raw, "docker_prune"),
        docker_prune_volumes=_flag(raw, "docker_prune_volumes"),
        docker_root=_absolute_path(raw["docker_root"], _key("docker_root")),
        journal_dirs=_directories(raw, "journal_dirs"),
        journal_max_bytes=parse_size(raw["journal_max_size"], _key("journal_max_size")),
        services=_names(raw, "services"),
        user_cache_dirs=_directories(raw, "user_cache_dirs"),
        user_cache_after_seconds=_days(raw, "user_cache_after_days"),
        rotated_after_seconds=_days(raw, "rotated_after_days"),
        emergency_journal_max_bytes=parse_size(
            raw["emergency_journal_max_size"], _key("emergency_journal_max_size")
        ),
        truncate_over_bytes=parse_size(raw["truncate_over"], _key("truncate_over")),
        protected=_protected_classes(layers),
        preserve_paths=_preserve_rules(raw),
        target_margin=config.number(raw["target_margin"], _key("target_margin"), 0, 99),
        max_listed_files=_whole(raw, "max_listed_files", minimum=0),
        command_timeout=config.number(
            raw["command_timeout"], _key("command_timeout"), 0, minimum_inclusive=False
        ),
    )


def _key(name, *more):
    return config.key_name("cleanup", name, *more)


def _check_section(layers):
    for source, data in layers.sources:
        section = data.get("cleanup", config.MISSING)
        if section is not config.MISSING and not isinstance(section, Mapping):
            raise config.InvalidConfig(f"eos:cleanup: {section!r} is not a mapping ({source})")
    unknown = [name for name in layers.keys("cleanup") if name not in DEFAULTS]
    if unknown:
        raise config.InvalidConfig(
            f"{_key(unknown[0])}: unknown setting; expected one of {', '.join(DEFAULTS)}"
        )


def parse_size(value, key):
    """Bytes from a number or a size such as ``500M`` (K, M, G, T are powers of 1024)."""
    if isinstance(value, bool):
        raise config.InvalidConfig(f"{key}: {value!r} is not a size such as 500M")
    if isinstance(value, (int, float)):
        amount = value
    elif isinstance(value, str) and SIZE_TEXT.fullmatch(value):
        number, unit = SIZE_TEXT.fullmatch(value).groups()
        amount = float(number) * SIZE_UNITS[unit.lower()]
    else:
        raise config.InvalidConfig(f"{key}: {value!r} is not a size such as 500M")
    if amount < 0:
        raise config.InvalidConfig(f"{key}: {value!r} must be >= 0")
    return int(amount)


def _days(raw, name):
    return config.number(raw[name], _key(name), minimum=0) * DAY_SECONDS


def _whole(raw, name, minimum, maximum=None):
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise config.InvalidConfig(f"{_key(name)}: {value!r} is not a whole number")
    return int(config.number(value, _key(name), minimum=minimum, maximum=maximum))


def _flag(raw, name):
    if not isinstance(raw[name], bool):
        raise config.InvalidConfig(f"{_key(name)}: {raw[name]!r} is not true/false")
    return raw[name]


def _names(raw, name):
    value = raw[name]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise config.InvalidConfig(f"{_key(name)}: {value!r} is not a list of names")
    return tuple(value)


def _absolute_path(value, key):
    if not isinstance(value, str) or not value.startswith("/"):
        raise config.InvalidConfig(f"{key}: {value!r} is not an absolute path")
    return _normalised(value)


def _normalised(path):
    # normpath keeps a leading "//" (POSIX leaves its meaning to the system), and "//" would
    # then pass a check for "/" while meaning the same directory on Linux.
    return "/" + os.path.normpath(path).lstrip("/")


def _directories(raw, name):
    return _directory_list(raw[name], _key(name))


def _directory_list(value, key):
    if not isinstance(value, (list, tuple)):
        raise config.InvalidConfig(f"{key}: {value!r} is not a list of directories")
    paths = tuple(_absolute_path(path, key) for path in value)
    for given, path in zip(value, paths, strict=True):
        if path == "/":
            # A root of "/" would make every old file on the system a candidate.
            raise config.InvalidConfig(f"{key}: {given!r} is too broad to clean; name directories")
    return paths


def _package_cache_settings(raw):
    value = raw["package_caches"]
    if not isinstance(value, Mapping):
        raise config.InvalidConfig(f"{_key('package_caches')}: {value!r} is not a mapping")
    caches = {}
    for tool, directories in value.items():
        if tool not in PACKAGE_TOOLS:
            raise config.InvalidConfig(
                f"{_key('package_caches', tool)}: unknown package tool; "
                f"expected one of {', '.join(PACKAGE_TOOLS)}"
            )
        caches[tool] = _directory_list(directories, _key("package_caches", tool))
    return caches


def _preserve_rules(raw):
    rules = _names(raw, "preserve_paths")
    for rule in rules:
        if not rule.startswith("/") and "/" in rule:
            raise config.InvalidConfig(
                f"{_key('preserve_paths')}: {rule!r} must be an absolute path or glob, or a "
                "name pattern without '/'"
            )
    return tuple(_normalised(rule) if rule.startswith("/") else rule for rule in rules)


def _protected_classes(layers):
    """The built-in protected classes, extended and added to by ``eos:cleanup:protected``."""
    classes = dict(protected.BUILTIN_BY_NAME)
    for name, entry in _site_protected(layers).items():
        key = _key("protected", name)
        if not isinstance(name, str) or not PROTECTED_CLASS_NAME.fullmatch(name):
            raise config.InvalidConfig(
                f"{key}: {name!r} is not a class name (letters, digits, '.', '_', '-')"
            )
        paths, names, reason = _protected_entry(entry, key)
        if name in protected.BUILTIN_BY_NAME:
            if reason is not None:
                raise config.InvalidConfig(
                    f"{key}:reason: a built-in class keeps its reason; add paths or names only"
                )
            classes[name] = classes[name].extended(paths, names)
        else:
            if not isinstance(reason, str) or not reason.strip():
                raise config.InvalidConfig(
                    f"{key}:reason: {reason!r} is not a text saying why the data must stay"
                )
            classes[name] = protected.ProtectedClass(name, reason.strip(), paths, names)
    return tuple(classes.values())


def _site_protected(layers):
    """``eos:cleanup:protected`` of every layer, class by class: pillar wins a whole class."""
    merged = {}
    for source, data in layers.sources:
        value = data.get("cleanup", {}).get("protected", config.MISSING)
        if value is config.MISSING:
            continue
        if not isinstance(value, Mapping):
            raise config.InvalidConfig(
                f"{_key('protected')}: {value!r} is not a mapping of class names to "
                f"{{paths, names, reason}} ({source})"
            )
        merged.update(value)
    return merged


def _protected_entry(entry, key):
    if not isinstance(entry, Mapping):
        raise config.InvalidConfig(f"{key}: {entry!r} is not a mapping of paths, names, reason")
    unknown = [field_name for field_name in entry if field_name not in PROTECTED_FIELDS]
    if unknown:
        raise config.InvalidConfig(
            f"{key}:{unknown[0]}: unknown field; expected one of {', '.join(PROTECTED_FIELDS)}"
        )
    paths = tuple(_absolute_path(path, f"{key}:paths") for path in _list(entry, "paths", key))
    names = tuple(_name_pattern(text, f"{key}:names") for text in _list(entry, "names", key))
    if not paths and not names:
        raise config.InvalidConfig(f"{key}: protects nothing; give paths or names")
    return paths, names, entry.get("reason")


def _list(entry, field_name, key):
    value = entry.get(field_name, [])
    if not isinstance(value, (list, tuple)):
        raise config.InvalidConfig(f"{key}:{field_name}: {value!r} is not a list")
    return value


def _name_pattern(text, key):
    parts = text.split("/") if isinstance(text, str) else [""]
    if not all(part and part not in (".", "..") for part in parts):
        raise config.InvalidConfig(
            f"{key}: {text!r} is not a name pattern: globs for path components, joined by '/' "
            "for consecutive ones (nodes/*/indices), never absolute"
        )
    return protected.NamePattern.glob(text)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    level: str
    dry_run: bool
    target_percent: float | None


def request(level, dry_run=None, target_percent=None):
    """
    A validated Request; InvalidRequest names the argument and value.

    ``dry_run`` defaults to False for compress, cleanup and critical, and to True for degrade
    and emergency, which act only when asked with ``dry_run=False``.
    """
    if level not in REQUEST_LEVELS:
        raise InvalidRequest(f"level: {level!r} is not one of {', '.join(REQUEST_LEVELS)}")
    if dry_run is None:
        dry_run = level in CAUTIOUS_LEVELS
    elif not isinstance(dry_run, bool):
        raise InvalidRequest(f"dry_run: {dry_run!r} is not True or False")
    if target_percent is not None:
        target_percent = checked_percent(target_percent, "target_percent")
    return Request(level=level, dry_run=dry_run, target_percent=target_percent)


def checked_percent(value, name):
    """``value`` as a float strictly between 0 and 100, or InvalidRequest naming ``name``."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    # Written as "not 0 < value < 100" so that NaN is refused too.
    if not is_number or not 0 < value < 100:
        raise InvalidRequest(f"{name}: {value!r} is not a number between 0 and 100")
    return float(value)


def default_target(level, limits, margin):
    """The percent a level cleans down to: its threshold's limit minus the margin."""
    threshold = THRESHOLD_OF_LEVEL[level]
    limit = limits.values[threshold]
    target = limit - margin
    if target <= 0:
        raise config.InvalidConfig(
            f"{_key('target_margin')}: {margin:g} leaves no target below the {threshold} "
            f"threshold ({limit:g}%)"
        )
    return target


# --------------------------------------------------------------------------- the outside world


@dataclass(frozen=True)
class Filesystem:
    """The filesystem being cleaned: its mount point and device number."""

    mount_point: str
    device: int

    @classmethod
    def at(cls, mount_point):
        return cls(mount_point=mount_point, device=os.stat(mount_point).st_dev)


@dataclass(frozen=True)
class Usage:
    used_bytes: int
    # Used plus available to unprivileged users: the denominator df uses for its percent.
    capacity_bytes: int

    def percent(self, used_bytes=None):
        used = self.used_bytes if used_bytes is None else used_bytes
        return 100.0 * used / self.capacity_bytes if self.capacity_bytes else 0.0


def measure_usage(mount_point):
    """The Usage of the filesystem at ``mount_point``, as ``df`` computes it."""
    figures = mounts.figures_from_statvfs(os.statvfs(mount_point))
    return Usage(figures.used_bytes, figures.used_bytes + figures.free_bytes)


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


def run_command(argv, timeout):
    """Run a tool without a shell, in the C locale so its output parses the same everywhere."""
    completed = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "LC_ALL": "C"},
    )
    return CommandResult(completed.returncode, completed.stdout, completed.stderr)


@dataclass
class World:
    """
    Everything a cleanup asks of the system outside the files it walks, injectable for tests.

    ``service_running`` and ``service_stop`` come from the loader module (Salt's service
    module); without them the degrade step is skipped.
    """

    usage: Callable = measure_usage
    run_command: Callable = run_command
    which: Callable = shutil.which
    open_files: Callable = openfiles.scan
    mount_table: Callable = walk.MountTable.read
    now: Callable = time.time
    service_running: Callable | None = None
    service_stop: Callable | None = None


# --------------------------------------------------------------------------- protection


class Protection:
    """
    The protected classes and ``preserve_paths``: which paths no step may ever touch, and
    why. A reason names the rule and the class (or the setting) it comes from.
    """

    def __init__(self, preserve_paths=(), classes=protected.BUILTIN):
        preserved = protected.ProtectedClass(
            name=_key("preserve_paths"),
            reason="the site said so",
            paths=tuple(rule for rule in preserve_paths if rule.startswith("/")),
            names=tuple(
                protected.NamePattern.glob(rule) for rule in preserve_paths if "/" not in rule
            ),
        )
        self._classes = (*classes, preserved)

    def reason(self, path):
        """Why ``path`` (absolute, symlink-free) is preserved, or None when it is not."""
        for protecting in self._classes:
            rule = protecting.rule_for(path)
            if rule is not None:
                return f"preserved: {rule} ({protecting.name})"
        return None

    def covers_part_of(self, directory):
        """Whether some preserved path lies below ``directory`` (a tool there could touch it)."""
        return any(
            _may_lie_below(rule, directory)
            for protecting in self._classes
            for rule in protecting.paths
        )


def _may_lie_below(rule, directory):
    prefix = directory.rstrip("/") + "/"
    literal = GLOB_CHARACTER.split(rule, maxsplit=1)[0]
    if literal == rule:
        return rule.startswith(prefix)
    # A glob's wildcards can reach below the directory from anywhere above or below it.
    return literal.startswith(prefix) or prefix.startswith(literal)


# --------------------------------------------------------------------------- files and views


@dataclass(frozen=True)
class FileFacts:
    """What a step knows about one regular file when it decides."""

    path: str
    device: int
    inode: int
    links: int
    size: int
    allocated: int
    atime: float
    mtime: float
    ctime: float
    mtime_ns: int

    @classmethod
    def from_stat(cls, path, status):
        return cls(
            path=path,
            device=status.st_dev,
            inode=status.st_ino,
            links=status.st_nlink,
            size=status.st_size,
            allocated=walk.allocated_bytes(status),
            atime=status.st_atime,
            mtime=status.st_mtime,
            ctime=status.st_ctime,
            mtime_ns=status.st_mtime_ns,
        )

    @property
    def name(self):
        return os.path.basename(self.path)


class Overlay:
    """
    The disk as a dry run has left it so far: files removed, shrunk or created by the steps
    already simulated. A real run leaves it empty, since the disk itself has changed.
    """

    def __init__(self):
        self._replaced = {}
        self._added = {}
        self._next_fake_inode = -1

    def replace(self, path, leaves):
        """Record that the file at ``path`` became ``leaves`` (FileFacts, or None: gone)."""
        # Forget what was there: a file on disk is hidden, a simulated one dropped.
        if path in self._added:
            del self._added[path]
        else:
            self._replaced[path] = None
        # Then record what is there now, in place of the old file or as a new one.
        if leaves is None:
            return
        if leaves.path == path and path in self._replaced:
            self._replaced[path] = leaves
        else:
            self._added[leaves.path] = leaves

    def fake_inode(self):
        # Created files have no inode yet; negative numbers never collide with real ones.
        self._next_fake_inode -= 1
        return self._next_fake_inode

    def exists(self, path):
        if path in self._added:
            return True
        if path in self._replaced:
            return self._replaced[path] is not None
        return os.path.lexists(path)

    def view(self, root, walked):
        """The FileFacts below ``root``, as the simulated disk would show them."""
        for on_disk in walked:
            now = self._replaced.get(on_disk.path, on_disk)
            if now is not None:
                yield now
        for path, facts in list(self._added.items()):
            if _is_below(path, root):
                yield facts


def _is_below(path, directory):
    return path.startswith(directory.rstrip("/") + "/")


def _walk_files(root, mount_table):
    for path, status in walk.iter_files(root, mount_table=mount_table):
        yield FileFacts.from_stat(path, status)


def _real_path(path):
    # Resolve the parents (a root may sit below a symlinked /var) but never the root itself.
    parent, name = os.path.split(os.path.normpath(path))
    return os.path.join(os.path.realpath(parent), name)


def _real_paths(paths):
    return [_real_path(path) for path in paths]


def _allocated_for(size, block_size):
    return math.ceil(size / block_size) * block_size if size else 0


def _is_compressed(name):
    return name.endswith(COMPRESSED_SUFFIXES)


def _is_rotated(name):
    return ROTATED_NAME.search(name) is not None


def _matches_any(name, patterns):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


# --------------------------------------------------------------------------- results


@dataclass
class Progress:
    """How full the filesystem is while the run goes on, and whether it is under the target."""

    usage: Usage
    used_bytes: int
    target_percent: float | None

    def reached(self, pending_freed=0):
        if self.target_percent is None:
            return False
        return self.usage.percent(self.used_bytes - pending_freed) < self.target_percent

    @property
    def percent(self):
        return round(self.usage.percent(self.used_bytes), 2)


@dataclass
class StepOutcome:
    name: str
    level: str
    category: str | None
    files: list = field(default_factory=list)
    freed_bytes: int = 0
    skipped: bool = False
    skip_reason: str | None = None
    stopped_at_target: bool = False
    errors: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def freed(self, path, size):
        self.files.append((path, size))
        self.freed_bytes += size

    def keep(self, path, reason):
        self.kept.append((path, reason))

    def error(self, message):
        self.errors.append(message)

    def skip(self, reason):
        self.skipped = True
        self.skip_reason = reason

    def as_dict(self, max_listed):
        # The largest files first: those are the ones a reader wants to see.
        files = sorted(self.files, key=lambda item: (-item[1], item[0]))
        files_not_listed = max(0, len(files) - max_listed)
        kept_not_listed = max(0, len(self.kept) - max_listed)
        return {
            "name": self.name,
            "level": self.level,
            "category": self.category,
            "files": [{"path": path, "bytes": size} for path, size in files[:max_listed]],
            "files_not_listed": files_not_listed,
            "freed_bytes": self.freed_bytes,
            "skipped": self.skipped,
            "skip_reason": self.skip_reason,
            "stopped_at_target": self.stopped_at_target,
            "errors": list(self.errors),
            "kept": [{"path": path, "reason": why} for path, why in self.kept[:max_listed]],
            "kept_not_listed": kept_not_listed,
            **self.extra,
        }


# --------------------------------------------------------------------------- the run


@dataclass
class Context:
    """What every step of one run shares."""

    fs: Filesystem
    settings: Settings
    world: World
    dry_run: bool
    state_dir: str | None
    now: float
    protection: Protection
    open_files: openfiles.OpenFiles
    overlay: Overlay
    block_size: int
    mount_table: walk.MountTable
    # The mount being cleaned; None when the mount table could not be read.
    mount: walk.Mount | None
    mount_error: str | None = None
    keep_services: bool = False

    def usable_directories(self, paths, outcome):
        """The configured directories that exist on this mount and may be touched."""
        if self.mount_error:
            # Without the mount table a bind mount cannot be told from a directory.
            outcome.error(self.mount_error)
            return []
        usable = []
        for path in paths:
            real = _real_path(path)
            try:
                status = os.lstat(real)
            except FileNotFoundError:
                continue
            except OSError as err:
                outcome.error(f"{real}: {err.strerror}")
                continue
            if stat.S_ISLNK(status.st_mode):
                outcome.keep(real, "a symlink: configured directories are never followed")
                continue
            if not stat.S_ISDIR(status.st_mode) or status.st_dev != self.fs.device:
                continue
            if self.mount_table.mount_at(real) != self.mount:
                # Another mount of the same filesystem: a bind mount, cleaned through its own.
                continue
            reason = self.protection.reason(real)
            if reason:
                outcome.keep(real, reason)
                continue
            if real not in usable:
                usable.append(real)
        return usable

    def files_below(self, directories, exclude_dirs=()):
        """(root, FileFacts) of each regular file below the directories, each path once."""
        # By path, not inode: nested roots repeat a path, while the links of a hard-linked
        # file are distinct paths that should each be reported.
        seen = set()
        for root in directories:
            for facts in self.overlay.view(root, _walk_files(root, self.mount_table)):
                if facts.path in seen or any(_is_below(facts.path, d) for d in exclude_dirs):
                    continue
                seen.add(facts.path)
                yield root, facts

    def refusal(self, facts, open_is_fine=False):
        """Why a safety rule forbids touching this file, or None."""
        reason = self.protection.reason(facts.path)
        if reason:
            return reason
        if facts.links > 1:
            return f"hard link ({facts.links} links): unlinking one frees nothing"
        holder = self.open_files.holder(facts.device, facts.inode)
        if holder is not None and not open_is_fine:
            return f"{holder.describe()}: its space would not come back"
        return None

    def no_directory_reason(self, paths):
        if self.mount_error:
            return f"nothing is touched: {self.mount_error}"
        if not paths:
            return "no directories configured"
        return f"none of {', '.join(paths)} is a directory on {self.fs.mount_point}"

    def run_tool(self, argv, outcome):
        """The CommandResult of a tool, or None after reporting its failure in ``outcome``."""
        try:
            result = self.world.run_command(argv, self.settings.command_timeout)
        except subprocess.TimeoutExpired:
            outcome.error(f"{' '.join(argv)}: no answer in {self.settings.command_timeout:g}s")
            return None
        except OSError as err:
            outcome.error(f"{' '.join(argv)}: {err.strerror or err}")
            return None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()[-500:]
            outcome.error(f"{' '.join(argv)} exited {result.returncode}: {detail}")
            return None
        return result


@dataclass(frozen=True)
class Step:
    name: str
    level: str
    category: str | None
    run: Callable


def steps_for(level):
    """The steps a level runs, in order: those of every lower level first."""
    rank = LEVELS.index(level)
    return [step for step in STEPS if LEVELS.index(step.level) <= rank]


def cleanup(fs, req, target_percent, cleanup_settings, world, state_dir, keep_services=False):
    """
    Run (or, for a dry run, predict) the steps of ``req.level`` on ``fs`` down to the target.

    A real run holds the node's cleanup lock (CleanupBusy when another run has it); a dry run
    changes nothing and needs no lock. ``keep_services`` skips the degrade step, so that an
    orchestration can try files first and stop services only when that was not enough.
    """
    run = functools.partial(
        _run,
        fs,
        req.level,
        req.dry_run,
        target_percent,
        cleanup_settings,
        world,
        state_dir,
        keep_services=keep_services,
    )
    if req.dry_run:
        return run()
    with exclusive(state_dir, now=world.now):
        return run()


def reclaimable(fs, cleanup_settings, world):
    """
    What every emergency step could free on ``fs``, by category, as a dry run predicts it.

    Services are left out (stopping one frees nothing by itself).
    """
    plain_world = dataclasses.replace(world, service_running=None, service_stop=None)
    result = _run(fs, "emergency", True, None, cleanup_settings, plain_world, None)
    by_category = dict.fromkeys(CATEGORIES, 0)
    for step in result["steps"]:
        if step["category"]:
            by_category[step["category"]] += step["freed_bytes"]
    return {
        "usage_percent": result["before_percent"],
        "by_category": by_category,
        "total_bytes": sum(by_category.values()),
        "steps": [
            {key: step[key] for key in ("name", "category", "freed_bytes", "skip_reason", "errors")}
            for step in result["steps"]
        ],
    }


def _run(
    fs, level, dry_run, target_percent, cleanup_settings, world, state_dir, keep_services=False
):
    start = world.usage(fs.mount_point)
    progress = Progress(usage=start, used_bytes=start.used_bytes, target_percent=target_percent)
    mount_table, mount_error = _mount_table(world)
    context = Context(
        fs=fs,
        settings=cleanup_settings,
        world=world,
        dry_run=dry_run,
        state_dir=state_dir,
        now=world.now(),
        protection=Protection(cleanup_settings.preserve_paths, cleanup_settings.protected),
        open_files=world.open_files(),
        overlay=Overlay(),
        block_size=os.statvfs(fs.mount_point).f_frsize,
        mount_table=mount_table,
        mount=mount_table.mount_at(os.path.realpath(fs.mount_point)),
        mount_error=mount_error,
        keep_services=keep_services,
    )
    outcomes = [_run_step(step, context, progress) for step in steps_for(level)]
    after_percent = progress.percent
    if not dry_run:
        after_percent = round(world.usage(fs.mount_point).percent(), 2)
    return {
        "mount": fs.mount_point,
        "level": level,
        "dry_run": dry_run,
        "before_percent": round(start.percent(), 2),
        "after_percent": after_percent,
        "freed_bytes": sum(outcome.freed_bytes for outcome in outcomes),
        "target_percent": target_percent,
        "target_reached": progress.reached(),
        "steps": [outcome.as_dict(cleanup_settings.max_listed_files) for outcome in outcomes],
    }


def _mount_table(world):
    """The run's one reading of the mount table, or an empty one and why it is missing."""
    try:
        return world.mount_table(), None
    except (OSError, ValueError) as err:
        return walk.MountTable(()), f"cannot read the mount table: {err}"


def _run_step(step, context, progress):
    outcome = StepOutcome(name=step.name, level=step.level, category=step.category)
    if progress.reached():
        outcome.skip(f"target reached: {progress.percent:g}% is below {progress.target_percent:g}%")
        return outcome
    try:
        step.run(context, outcome, progress)
    except Exception as err:  # one broken step must not stop the others
        outcome.error(f"{step.name} failed: {err}")
    if context.dry_run:
        progress.used_bytes -= outcome.freed_bytes
    else:
        # Measured, not computed: other writers count too.
        progress.used_bytes = context.world.usage(context.fs.mount_point).used_bytes
    return outcome


# --------------------------------------------------------------------------- file steps


def _compress_logs(context, outcome, progress):
    s = context.settings
    roots = context.usable_directories(s.log_dirs, outcome)
    if not roots:
        return outcome.skip(context.no_directory_reason(s.log_dirs))
    cutoff = context.now - s.compress_after_seconds
    chosen = []
    for root, facts in _log_files(context, roots):
        if _is_compressed(facts.name) or facts.mtime > cutoff:
            continue
        chosen.append((root, facts))
    chosen.sort(key=lambda item: item[1].mtime)
    return _act_on_files(context, outcome, progress, chosen, COMPRESS)


def _tmp_files(context, outcome, progress):
    s = context.settings
    roots = context.usable_directories(s.tmp_dirs, outcome)
    if not roots:
        return outcome.skip(context.no_directory_reason(s.tmp_dirs))
    cutoff = context.now - s.tmp_after_seconds
    # All three times: an archive extracted yesterday keeps its old mtime but has a new ctime.
    chosen = [
        (root, facts)
        for root, facts in context.files_below(roots)
        if max(facts.atime, facts.mtime, facts.ctime) < cutoff
    ]
    chosen.sort(key=lambda item: max(item[1].atime, item[1].mtime, item[1].ctime))
    return _act_on_files(context, outcome, progress, chosen, DELETE)


def _user_caches(context, outcome, progress):
    s = context.settings
    roots = context.usable_directories(s.user_cache_dirs, outcome)
    if not roots:
        return outcome.skip(context.no_directory_reason(s.user_cache_dirs))
    cutoff = context.now - s.user_cache_after_seconds
    chosen = [(r, f) for r, f in context.files_below(roots) if f.mtime <= cutoff]
    # Least recently used first.
    chosen.sort(key=lambda item: item[1].atime)
    return _act_on_files(context, outcome, progress, chosen, DELETE)


def _rotated_logs(context, outcome, progress):
    s = context.settings
    roots = context.usable_directories(s.log_dirs, outcome)
    if not roots:
        return outcome.skip(context.no_directory_reason(s.log_dirs))
    cutoff = context.now - s.rotated_after_seconds
    chosen = [
        (root, facts)
        for root, facts in _log_files(context, roots)
        if _is_rotated(facts.name) and facts.mtime < cutoff
    ]
    chosen.sort(key=lambda item: item[1].mtime)
    return _act_on_files(context, outcome, progress, chosen, DELETE)


def _truncate_live_logs(context, outcome, progress):
    s = context.settings
    roots = context.usable_directories(s.log_dirs, outcome)
    if not roots:
        return outcome.skip(context.no_directory_reason(s.log_dirs))
    chosen = [
        (root, facts)
        for root, facts in _log_files(context, roots)
        if not _is_rotated(facts.name)
        and not _is_compressed(facts.name)
        and facts.allocated > s.truncate_over_bytes
    ]
    # The largest first: the fewest logs lost for the space needed.
    chosen.sort(key=lambda item: -item[1].allocated)
    return _act_on_files(context, outcome, progress, chosen, TRUNCATE)


def _log_files(context, roots):
    """The files below the log directories that log steps may consider."""
    # The journal is journalctl's to vacuum; log_exclude names binary logs kept by their tools.
    journal = _real_paths(context.settings.journal_dirs)
    for root, facts in context.files_below(roots, exclude_dirs=journal):
        if not _matches_any(facts.name, context.settings.log_exclude):
            yield root, facts


def _act_on_files(context, outcome, progress, chosen, operation):
    for root, facts in chosen:
        if progress.reached(outcome.freed_bytes):
            outcome.stopped_at_target = True
            break
        refusal = context.refusal(facts, open_is_fine=operation.open_is_fine)
        if refusal:
            outcome.keep(facts.path, refusal)
            continue
        try:
            if context.dry_run:
                freed, leaves = operation.predict(context, root, facts)
                context.overlay.replace(facts.path, leaves)
            else:
                freed = operation.perform(context, root, facts)
        except _Keep as why:
            outcome.keep(facts.path, str(why))
            continue
        except FileNotFoundError:
            outcome.error(f"{facts.path}: vanished before it could be handled")
            continue
        except OSError as err:
            outcome.error(f"{facts.path}: {err.strerror or err}")
            continue
        outcome.freed(facts.path, freed)


@contextlib.contextmanager
def _parent_directory(root, path, device):
    """
    A descriptor of ``path``'s directory, opened from ``root`` one component at a time with
    O_NOFOLLOW and checked to stay on ``device``: a directory swapped for a symlink after
    the plan was made fails here instead of leading elsewhere.
    """
    relative = os.path.relpath(os.path.dirname(path), root)
    parts = [] if relative == "." else relative.split(os.sep)
    if ".." in parts:
        raise _Keep("outside its root")
    descriptor = os.open(root, DIRECTORY_FLAGS)
    try:
        for part in [None, *parts]:
            if part is not None:
                child = os.open(part, DIRECTORY_FLAGS, dir_fd=descriptor)
                os.close(descriptor)
                descriptor = child
            if os.fstat(descriptor).st_dev != device:
                raise _Keep("on another filesystem")
        yield descriptor
    finally:
        os.close(descriptor)


def _check_still(facts, status, content_too=True):
    """Refuse a file that is no longer the one planned for, or no longer safe to touch."""
    if not stat.S_ISREG(status.st_mode):
        raise _Keep("no longer a regular file")
    if (status.st_dev, status.st_ino) != (facts.device, facts.inode):
        raise _Keep("replaced since it was chosen")
    if status.st_nlink > 1:
        raise _Keep(f"hard link ({status.st_nlink} links): unlinking one frees nothing")
    if content_too and (status.st_size, status.st_mtime_ns) != (facts.size, facts.mtime_ns):
        raise _Keep("modified since it was chosen")


class _Delete:
    open_is_fine = False

    @staticmethod
    def predict(_context, _root, facts):
        return facts.allocated, None

    @staticmethod
    def perform(context, root, facts):
        with _parent_directory(root, facts.path, context.fs.device) as directory:
            status = os.stat(facts.name, dir_fd=directory, follow_symlinks=False)
            _check_still(facts, status)
            # unlink never follows the last component: a link is removed, never its target.
            os.unlink(facts.name, dir_fd=directory)
        return walk.allocated_bytes(status)


class _Truncate:
    # Truncating in place is the one way to get a live log's space back.
    open_is_fine = True

    @staticmethod
    def predict(_context, _root, facts):
        return facts.allocated, dataclasses.replace(facts, size=0, allocated=0)

    @staticmethod
    def perform(context, root, facts):
        flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        with _parent_directory(root, facts.path, context.fs.device) as directory:
            descriptor = os.open(facts.name, flags, dir_fd=directory)
            try:
                before = os.fstat(descriptor)
                # A live log keeps growing between plan and act; only its identity must hold.
                _check_still(facts, before, content_too=False)
                os.ftruncate(descriptor, 0)
                after = os.fstat(descriptor)
            finally:
                os.close(descriptor)
        return walk.allocated_bytes(before) - walk.allocated_bytes(after)


class _ByteCounter:
    """A write-only sink that keeps nothing but the number of bytes written to it."""

    def __init__(self):
        self.count = 0

    def write(self, data):
        self.count += len(data)
        return len(data)

    def flush(self):
        pass


class _Compress:
    open_is_fine = False

    @staticmethod
    def predict(context, root, facts):
        _check_no_gzip_beside(context, facts)
        counter = _ByteCounter()
        with _parent_directory(root, facts.path, context.fs.device) as directory:
            source = _open_for_reading(facts.name, directory)
            try:
                _check_still(facts, os.fstat(source))
                _gzip(source, counter, facts, context.settings.compress_level)
            finally:
                os.close(source)
        compressed = _allocated_for(counter.count, context.block_size)
        freed = facts.allocated - compressed
        if freed <= 0:
            raise _Keep("would not shrink when compressed")
        packed = dataclasses.replace(
            facts,
            path=facts.path + ".gz",
            inode=context.overlay.fake_inode(),
            size=counter.count,
            allocated=compressed,
            ctime=context.now,
        )
        return freed, packed

    @staticmethod
    def perform(context, root, facts):
        _check_no_gzip_beside(context, facts)
        with _parent_directory(root, facts.path, context.fs.device) as directory:
            source = _open_for_reading(facts.name, directory)
            try:
                original = os.fstat(source)
                _check_still(facts, original)
                compressed = _write_gzip(source, original, facts, directory, context)
                try:
                    if compressed >= walk.allocated_bytes(original):
                        raise _Keep("would not shrink when compressed")
                    current = os.stat(facts.name, dir_fd=directory, follow_symlinks=False)
                    _check_still(facts, current)
                except _Keep:
                    # The original stays, so its compressed copy must not.
                    os.unlink(facts.name + ".gz", dir_fd=directory)
                    raise
                os.unlink(facts.name, dir_fd=directory)
            finally:
                os.close(source)
        return walk.allocated_bytes(original) - compressed


def _check_no_gzip_beside(context, facts):
    # Checked when acting, after the safety rules, so that a kept file says why it matters.
    if context.overlay.exists(facts.path + ".gz"):
        raise _Keep(f"{facts.name}.gz already exists")


COMPRESS, DELETE, TRUNCATE = _Compress(), _Delete(), _Truncate()


def _open_for_reading(name, directory):
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        # Reading a log to size its compressed copy should not make it look recently used.
        return os.open(name, flags | os.O_NOATIME, dir_fd=directory)
    except PermissionError:
        # O_NOATIME is for the file's owner (or root) only.
        return os.open(name, flags, dir_fd=directory)


def _gzip(source, sink, facts, level):
    """Stream ``source`` into ``sink``; the same call sizes the dry run and writes the file."""
    os.lseek(source, 0, os.SEEK_SET)
    header_time = int(facts.mtime)
    with gzip.GzipFile(
        filename=facts.name, mode="wb", compresslevel=level, fileobj=sink, mtime=header_time
    ) as packer:
        while chunk := os.read(source, READ_CHUNK):
            packer.write(chunk)


def _write_gzip(source, original, facts, directory, context):
    """Write ``<name>.gz`` beside the source with its owner, mode and times; its allocation."""
    name = facts.name + ".gz"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    target = os.open(name, flags, 0o600, dir_fd=directory)
    try:
        with os.fdopen(target, "wb", closefd=False) as sink:
            _gzip(source, sink, facts, context.settings.compress_level)
        os.fsync(target)
        os.fchown(target, original.st_uid, original.st_gid)
        os.fchmod(target, stat.S_IMODE(original.st_mode))
        os.utime(target, ns=(original.st_atime_ns, original.st_mtime_ns))
        if os.fstat(source).st_mtime_ns != original.st_mtime_ns:
            raise _Keep("written to while it was being compressed")
        allocated = walk.allocated_bytes(os.fstat(target))
    except BaseException:
        os.unlink(name, dir_fd=directory)
        raise
    finally:
        os.close(target)
    return allocated


# --------------------------------------------------------------------------- tool steps


def _package_caches(context, outcome, _progress):
    tools = []
    for tool, directories in context.settings.package_caches.items():
        if not directories or not context.world.which(PACKAGE_TOOLS[tool][0]):
            continue
        usable = context.usable_directories(directories, outcome)
        refusal = _preserved_inside(context, usable)
        if refusal:
            outcome.keep(usable[0], refusal)
        elif usable:
            tools.append((tool, usable))
    if not tools:
        return outcome.skip(f"no package manager cache on {context.fs.mount_point}")
    outcome.extra["commands"] = [" ".join(PACKAGE_TOOLS[tool]) for tool, _ in tools]
    for tool, directories in tools:
        _run_and_measure(context, outcome, PACKAGE_TOOLS[tool], directories, _cache_files)
    return None


def _cache_files(context, directories):
    return {
        facts.path: facts
        for _root, facts in context.files_below(directories)
        if facts.name not in PACKAGE_CACHE_KEEPS
    }


def _journal_vacuum(context, outcome, _progress):
    _vacuum_journal(context, outcome, context.settings.journal_max_bytes)


def _journal_vacuum_emergency(context, outcome, _progress):
    _vacuum_journal(context, outcome, context.settings.emergency_journal_max_bytes)


def _vacuum_journal(context, outcome, max_bytes):
    if not context.world.which("journalctl"):
        return outcome.skip("journalctl is not installed")
    directories = context.usable_directories(context.settings.journal_dirs, outcome)
    if not directories:
        return outcome.skip(context.no_directory_reason(context.settings.journal_dirs))
    refusal = _preserved_inside(context, directories)
    if refusal:
        return outcome.skip(refusal)
    command = ("journalctl", f"--vacuum-size={max_bytes}")
    outcome.extra["commands"] = [" ".join(command)]

    def vacuumed(context, directories):
        return _journal_files_removed_by_vacuum(context, directories, max_bytes)

    return _run_and_measure(context, outcome, command, directories, vacuumed)


def _journal_files(context, directories):
    return {
        facts.path: facts
        for _root, facts in context.files_below(directories)
        if facts.name.endswith(JOURNAL_SUFFIXES)
    }


def _journal_files_removed_by_vacuum(context, directories, max_bytes):
    """The journal files ``journalctl --vacuum-size`` removes: archived ones, oldest first."""
    files = _journal_files(context, directories)
    total = sum(facts.allocated for facts in files.values())
    # Archived files are named system@...journal; dirty ones end in ~. Active ones stay.
    archived = sorted(
        (f for f in files.values() if "@" in f.name or f.name.endswith("~")),
        key=lambda facts: facts.mtime,
    )
    removed = {}
    for facts in archived:
        if total <= max_bytes:
            break
        removed[facts.path] = facts
        total -= facts.allocated
    return removed


def _run_and_measure(context, outcome, command, directories, predicted_files):
    """
    A dry run lists the files ``predicted_files`` says the tool removes; a real run runs the
    tool and lists what really went, by allocated bytes before and after.
    """
    if context.dry_run:
        for facts in predicted_files(context, directories).values():
            outcome.freed(facts.path, facts.allocated)
            context.overlay.replace(facts.path, None)
        return
    before = _all_files(context, directories)
    # Measured even when the tool fails: it may have removed part of what it meant to.
    context.run_tool(command, outcome)
    after = _all_files(context, directories)
    for path, facts in before.items():
        if path not in after:
            outcome.freed(path, facts.allocated)
    # Files the tool shrank rather than removed count too; growth by others does not.
    for path, facts in after.items():
        if path in before and before[path].allocated > facts.allocated:
            outcome.freed(path, before[path].allocated - facts.allocated)


def _all_files(context, directories):
    return {facts.path: facts for _root, facts in context.files_below(directories)}


def _preserved_inside(context, directories):
    """Why a tool may not clean these directories (they hold preserved paths), or None."""
    for directory in directories:
        if context.protection.covers_part_of(directory):
            return f"{directory} holds preserved paths, which its tool would not respect"
    return None


def _docker_prune(context, outcome, _progress):
    s = context.settings
    if not s.docker_prune:
        return outcome.skip(f"disabled by {_key('docker_prune')}")
    if not context.world.which("docker"):
        return outcome.skip("docker is not installed")
    if not context.usable_directories([s.docker_root], outcome):
        return outcome.skip(f"{s.docker_root} is not a directory on {context.fs.mount_point}")
    command = ["docker", "system", "prune", "-f"]
    if s.docker_prune_volumes:
        command.append("--volumes")
    outcome.extra["commands"] = [" ".join(command)]
    if context.dry_run:
        return _predict_docker(context, outcome)
    result = context.run_tool(command, outcome)
    if result is not None:
        reclaimed = re.search(r"Total reclaimed space:\s*(.+)", result.stdout)
        freed = _docker_bytes(reclaimed.group(1)) if reclaimed else 0
        outcome.freed(s.docker_root, freed)
    return None


def _predict_docker(context, outcome):
    # docker only estimates: it counts all unused images, prune removes the dangling ones.
    command = ["docker", "system", "df", "--format", "{{.Type}}\t{{.Reclaimable}}"]
    result = context.run_tool(command, outcome)
    if result is None:
        return
    estimate = 0
    for line in result.stdout.splitlines():
        kind, _, reclaimable = line.partition("\t")
        if kind.strip() == "Local Volumes" and not context.settings.docker_prune_volumes:
            continue
        estimate += _docker_bytes(reclaimable)
    outcome.extra["estimate"] = "upper bound from docker system df"
    outcome.freed(context.settings.docker_root, estimate)


def _docker_bytes(text):
    found = DOCKER_SIZE.search(text or "")
    if not found:
        return 0
    number, unit = found.groups()
    return int(float(number) * DOCKER_UNITS.get(unit, 1))


# --------------------------------------------------------------------------- services


def _stop_services(context, outcome, _progress):
    names = context.settings.services
    if context.keep_services:
        return outcome.skip("services left running: asked with services=False")
    if not names:
        return outcome.skip(f"no services configured in {_key('services')}")
    world = context.world
    if world.service_running is None or world.service_stop is None:
        return outcome.skip("no service control available")
    running = []
    for name in names:
        try:
            if world.service_running(name):
                running.append(name)
        except Exception as err:  # Salt's service modules raise many kinds
            outcome.error(f"service {name}: status failed: {err}")
    if context.dry_run:
        outcome.extra["services"] = running
        return None
    stopped = []
    degraded = DegradedServices(context.state_dir)
    for name in running:
        failure = _service_call_failure(world.service_stop, name, "service.stop")
        if failure:
            outcome.error(f"service {name}: {failure}")
            continue
        stopped.append(name)
        # Remembered at once, so that a crash later in the run cannot lose it.
        degraded.remember([name])
    outcome.extra["services"] = stopped
    return None


def _service_call_failure(call, name, what):
    """None when ``call(name)`` reports success, else why it did not."""
    try:
        succeeded = call(name)
    except Exception as err:  # Salt's service modules raise many kinds
        return f"{what} failed: {err}"
    return None if succeeded else f"{what} returned False"


class DegradedServices:
    """The services a degrade step stopped, kept in a JSON file until they are restored."""

    def __init__(self, state_dir):
        self.path = os.path.join(state_dir, DEGRADED_FILE)

    def names(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return []
        services = data.get("services") if isinstance(data, dict) else None
        return [name for name in services or [] if isinstance(name, str)]

    def remember(self, names):
        known = self.names()
        self._write(known + [name for name in names if name not in known])

    def restore(self, start):
        """
        Start every remembered service with ``start(name) -> bool``; forget those started.

        Returns {started, failed: {name: why}}; failed ones stay remembered for a retry.
        """
        started, failed = [], {}
        for name in self.names():
            failure = _service_call_failure(start, name, "service.start")
            if failure:
                failed[name] = failure
            else:
                started.append(name)
        self._write(list(failed))
        return {"started": started, "failed": failed}

    def _write(self, names):
        if not names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        atomic.write_file(self.path, json.dumps({"services": names}), 0o600)


# --------------------------------------------------------------------------- the lock


def state_dir(cachedir):
    """Where cleanup keeps its lock and the degraded services, below the minion cachedir."""
    return os.path.join(cachedir, STATE_DIR)


@contextlib.contextmanager
def exclusive(directory, now=time.time):
    """
    Hold the node's cleanup lock, or raise CleanupBusy naming the holder.

    flock, not a pid file: the kernel drops the lock when its process dies, so a crash never
    leaves it held. The file records the holder's pid and start time for the message.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, LOCK_FILE)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CleanupBusy(_busy_message(descriptor)) from None
        holder = json.dumps({"pid": os.getpid(), "started": now()}).encode()
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, holder, 0)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)


def _busy_message(descriptor):
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
    except ValueError:
        holder = {}
    pid = holder.get("pid", "unknown") if isinstance(holder, dict) else "unknown"
    started = holder.get("started") if isinstance(holder, dict) else None
    since = (
        time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        if isinstance(started, (int, float))
        else ""
    )
    return (
        f"another cleanup is already running on this node (pid {pid}{since}); "
        "refusing to start a second one"
    )


STEPS = (
    Step("compress_logs", "compress", "logs", _compress_logs),
    Step("package_caches", "cleanup", "caches", _package_caches),
    Step("tmp_files", "cleanup", "tmp", _tmp_files),
    Step("docker_prune", "cleanup", "containers", _docker_prune),
    Step("journal_vacuum", "cleanup", "journal", _journal_vacuum),
    Step("stop_services", "degrade", None, _stop_services),
    Step("user_caches", "emergency", "caches", _user_caches),
    Step("rotated_logs", "emergency", "logs", _rotated_logs),
    Step("journal_vacuum_emergency", "emergency", "journal", _journal_vacuum_emergency),
    Step("truncate_live_logs", "emergency", "logs", _truncate_live_logs),
)
