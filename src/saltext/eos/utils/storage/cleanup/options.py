"""Cleanup settings (``eos:cleanup``) and requests: the one table of defaults and its checks."""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from saltext.eos.utils import config
from saltext.eos.utils import errors
from saltext.eos.utils.storage import protected
from saltext.eos.utils.storage import thresholds

LEVELS = ("compress", "cleanup", "degrade", "emergency")
CRITICAL_LEVEL = "critical"
REQUEST_LEVELS = (*LEVELS, CRITICAL_LEVEL)
# The cleanup level each threshold-level spelling stands for ("degraded" is "degrade").
LEVEL_ALIASES = {
    level: action
    for level, action in thresholds.ACTIONS.items()
    if level != action and action in LEVELS
}


def level_name(name):
    """The cleanup level ``name`` stands for (``degraded`` is ``degrade``); others as given."""
    return LEVEL_ALIASES.get(name, name) if isinstance(name, str) else name


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
PACKAGE_TOOLS = {
    "apt": ("apt-get", "clean"),
    "dnf": ("dnf", "clean", "all"),
    "yum": ("yum", "clean", "all"),
    "zypper": ("zypper", "--non-interactive", "clean", "--all"),
}

SIZE_TEXT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
# journalctl reads K, M, G, T as powers of 1024, and so do we.
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class InvalidRequest(errors.InvalidInput):
    """A cleanup argument that cannot be used; the message names the argument and value."""


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
    level = level_name(level)
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
