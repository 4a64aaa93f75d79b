"""
The threshold engine: six progressive levels, their actions, and where each limit comes from.

Levels, lowest to highest: none, warning, compress, cleanup, degraded, emergency, critical.
A mount is at the highest level whose threshold (percent used) it has reached. Limits start
from the cluster scale's profile and are overridden, in this order, by ``eos:thresholds``
(global), ``eos:thresholds:roles:<role>`` and ``eos:thresholds:mounts:<glob>``. After merging
they must be strictly increasing.
"""

import fnmatch
import itertools
from dataclasses import dataclass
from dataclasses import field

from saltext.eos.utils import config

LEVELS = ("none", "warning", "compress", "cleanup", "degraded", "emergency", "critical")
THRESHOLD_LEVELS = LEVELS[1:]

# What each level asks for; a level also implies the actions of every level below it.
ACTIONS = {
    "none": None,
    "warning": "monitor",
    "compress": "compress",
    "cleanup": "cleanup",
    "degraded": "degrade",
    "emergency": "emergency",
    "critical": "critical",
}

# One concept, two spellings: the threshold level "degraded" is the cleanup level "degrade".
# Wherever a level is given, in config or as an argument, either spelling is accepted.
LEVEL_ALIASES = {"degrade": "degraded"}


# Every spelling of each threshold level, its own first: where a lookup tries them in turn.
SPELLINGS = {
    level: (level, *(alias for alias, target in LEVEL_ALIASES.items() if target == level))
    for level in THRESHOLD_LEVELS
}


def level_name(name):
    """The threshold level ``name`` stands for (``degrade`` is ``degraded``); others as given."""
    return LEVEL_ALIASES.get(name, name) if isinstance(name, str) else name


PROFILES = {
    "single": (60, 70, 75, 80, 85, 90),
    "small": (65, 75, 80, 85, 90, 95),
    "medium": (70, 80, 85, 90, 93, 95),
    "distributed": (70, 80, 85, 90, 93, 95),
}
DEFAULT_SCALE = "single"

# Keys under eos:thresholds that are not levels.
SECTION_KEYS = ("roles", "mounts")


class InvalidThresholds(config.InvalidConfig):
    """Threshold configuration that cannot be used; the message names the key and value."""


@dataclass
class Limits:
    """Effective thresholds of one mount: percent per level and the source of each value."""

    values: dict
    sources: dict = field(default_factory=dict)

    def level_for(self, percent):
        """The highest level whose threshold ``percent`` has reached, or 'none'."""
        return level_for(percent, self.values)

    def as_dict(self):
        return {
            level: {"percent": self.values[level], "source": self.sources.get(level)}
            for level in THRESHOLD_LEVELS
        }


def level_for(percent, values):
    """The highest level whose threshold ``percent`` has reached, or 'none'."""
    if percent is None:
        return "none"
    reached = "none"
    for level in THRESHOLD_LEVELS:
        if percent >= values[level]:
            reached = level
    return reached


def worse(*levels):
    """The highest of the given levels."""
    return max(levels, key=LEVELS.index)


def level_rank(level):
    return LEVELS.index(level)


def actions_for(level):
    """Every action a level implies, lowest first (a level includes the ones below it)."""
    rank = LEVELS.index(level)
    return [ACTIONS[name] for name in LEVELS[1 : rank + 1]]


def profile(scale):
    """The built-in limits of a cluster scale."""
    if scale not in PROFILES:
        raise InvalidThresholds(
            f"eos:scale: {scale!r} is not a known scale; expected one of {', '.join(PROFILES)}"
        )
    return dict(zip(THRESHOLD_LEVELS, (float(v) for v in PROFILES[scale]), strict=True))


def node_roles(layers):
    """This node's roles as the ext_pillar (or config) gives them under ``eos:roles``."""
    roles = layers.get("roles")
    if isinstance(roles, str):
        return [roles]
    if isinstance(roles, (list, tuple)):
        return [str(role) for role in roles]
    # A mapping here is the master's role catalogue, not this node's roles.
    return []


def validate(layers):
    """Check every configured threshold value, whether or not it applies to a mount."""
    scale = layers.get("scale", default=DEFAULT_SCALE)
    profile(scale)
    for key in layers.keys("thresholds"):
        if key in SECTION_KEYS:
            for name in layers.keys("thresholds", key):
                _validate_level_map(layers, ("thresholds", key, name))
        else:
            _validate_level_key(key, ("thresholds",))
            _validate_value(layers, ("thresholds", key))
    _check_one_spelling(layers.keys("thresholds"), ("thresholds",))


def _validate_level_map(layers, path):
    value, _ = layers.lookup(*path)
    if not isinstance(value, dict):
        raise InvalidThresholds(f"{config.key_name(*path)}: {value!r} is not a mapping of levels")
    for key in layers.keys(*path):
        _validate_level_key(key, path)
        _validate_value(layers, (*path, key))
    _check_one_spelling(layers.keys(*path), path)


def _check_one_spelling(keys, path):
    for alias, level in LEVEL_ALIASES.items():
        if alias in keys and level in keys:
            raise InvalidThresholds(
                f"{config.key_name(*path)}: {level} and {alias} are the same level; set one"
            )


def _lookup_level(layers, *path):
    """``(value, source, key)`` of a level under ``path``, under either of its spellings."""
    *parents, level = path
    for spelling in SPELLINGS[level]:
        value, source = layers.lookup(*parents, spelling)
        if value is not config.MISSING:
            return value, source, config.key_name(*parents, spelling)
    return config.MISSING, None, None


def threshold_level(value, key):
    """
    The threshold level ``value`` names (``degrade`` is ``degraded``), for a setting whose
    value is a level; InvalidConfig naming ``key`` (``eos:...``) otherwise.
    """
    level = level_name(value)
    if level not in THRESHOLD_LEVELS:
        raise config.InvalidConfig(
            f"{key}: unknown level {value!r}; expected one of {', '.join(THRESHOLD_LEVELS)}"
        )
    return level


def _validate_level_key(key, path):
    if level_name(key) not in THRESHOLD_LEVELS:
        raise InvalidThresholds(
            f"{config.key_name(*path, key)}: unknown level; "
            f"expected one of {', '.join(THRESHOLD_LEVELS)} or {', '.join(SECTION_KEYS)}"
        )


def _validate_value(layers, path):
    value, _ = layers.lookup(*path)
    try:
        config.number(
            value, config.key_name(*path), minimum=0, maximum=100, minimum_inclusive=False
        )
    except config.InvalidConfig as err:
        raise InvalidThresholds(str(err)) from err


def effective(layers, mount=None, roles=None):
    """
    The Limits for ``mount`` on a node with ``roles`` (default: the configured roles).

    Raises InvalidThresholds when any configured value is invalid or the merged limits are
    not strictly increasing.
    """
    return Resolver(layers, roles).for_mount(mount)


class Resolver:
    """Validates the configuration once, then resolves the Limits of any number of mounts."""

    def __init__(self, layers, roles=None):
        validate(layers)
        self.layers = layers
        self.scale = layers.get("scale", default=DEFAULT_SCALE)
        self.roles = node_roles(layers) if roles is None else roles
        # A mount override must be usable on the mounts it names, even before one exists.
        for pattern in layers.keys("thresholds", "mounts"):
            self.for_mount(pattern)

    def for_mount(self, mount=None):
        values = profile(self.scale)
        sources = dict.fromkeys(THRESHOLD_LEVELS, f"profile:{self.scale}")
        _apply_global(self.layers, values, sources)
        _apply_roles(self.layers, values, sources, self.roles)
        if mount is not None:
            _apply_mounts(self.layers, values, sources, mount)
        _check_increasing(values, sources, mount)
        return Limits(values=values, sources=sources)


def _apply_global(layers, values, sources):
    for level in THRESHOLD_LEVELS:
        value, source, key = _lookup_level(layers, "thresholds", level)
        if value is not config.MISSING:
            values[level] = float(value)
            sources[level] = f"{key} ({source})"


def _apply_roles(layers, values, sources, roles):
    # A node with several roles takes, per level, the strictest (lowest) of its roles' limits.
    role_values = {}
    for role in roles:
        for level in THRESHOLD_LEVELS:
            value, source, key = _lookup_level(layers, "thresholds", "roles", role, level)
            if value is config.MISSING:
                continue
            if level not in role_values or value < role_values[level][0]:
                role_values[level] = (float(value), f"{key} ({source})")
    for level, (value, source) in role_values.items():
        values[level] = value
        sources[level] = source


def _apply_mounts(layers, values, sources, mount):
    # More specific patterns (more literal characters) are applied later and so win.
    patterns = [p for p in layers.keys("thresholds", "mounts") if fnmatch.fnmatchcase(mount, p)]
    for pattern in sorted(patterns, key=_specificity):
        for level in THRESHOLD_LEVELS:
            value, source, key = _lookup_level(layers, "thresholds", "mounts", pattern, level)
            if value is not config.MISSING:
                values[level] = float(value)
                sources[level] = f"{key} ({source})"


def _specificity(pattern):
    literal = sum(1 for char in pattern if char not in "*?[]")
    return (literal, pattern)


def _check_increasing(values, sources, mount):
    for lower, higher in itertools.pairwise(THRESHOLD_LEVELS):
        if values[higher] <= values[lower]:
            where = f" for mount {mount}" if mount else ""
            raise InvalidThresholds(
                f"eos:thresholds{where}: levels must be strictly increasing, but "
                f"{higher}={values[higher]:g} (from {sources[higher]}) is not above "
                f"{lower}={values[lower]:g} (from {sources[lower]})"
            )
