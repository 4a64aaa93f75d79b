"""
The ``eos`` configuration key, read in layers.

Values come from (lowest to highest) the built-in defaults, the daemon's config file
(``__opts__``) and pillar. Every lookup says which layer answered, so a user can see where an
effective value came from.
"""

from collections.abc import Mapping

from saltext.eos.utils import errors

MISSING = object()


InvalidConfig = errors.InvalidConfig


class Layers:
    """The ``eos`` mappings of each source, lowest priority first."""

    def __init__(self, sources):
        # sources: [(name, mapping)], lowest priority first
        self.sources = [(name, data) for name, data in sources if isinstance(data, Mapping)]

    @classmethod
    def from_salt(cls, opts, pillar=None):
        """Layers from a daemon's opts and (on a minion) its pillar."""
        config_name = "master config" if opts.get("__role") == "master" else "minion config"
        # `is not None`, not truthiness: len() of Salt's copy-on-write opts walks every key.
        return cls(
            [
                (config_name, opts.get("eos") if opts is not None else None),
                ("pillar", pillar.get("eos") if pillar is not None else None),
            ]
        )

    def lookup(self, *path):
        """(value, source name) from the highest layer that has ``path``, or (MISSING, None)."""
        for name, data in reversed(self.sources):
            value = _dig(data, path)
            if value is not MISSING:
                return value, name
        return MISSING, None

    def get(self, *path, default=None):
        value, _ = self.lookup(*path)
        return default if value is MISSING else value

    def keys(self, *path):
        """The union of the keys found at ``path`` in every layer, in first-seen order."""
        seen = {}
        for _, data in self.sources:
            value = _dig(data, path)
            if isinstance(value, Mapping):
                seen.update(dict.fromkeys(value))
        return list(seen)


def _dig(data, path):
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return MISSING
        data = data[key]
    return data


def key_name(*path):
    """The user-facing name of a config key, e.g. ``eos:thresholds:warning``."""
    return ":".join(("eos", *(str(part) for part in path)))


def number(value, key, minimum=None, maximum=None, minimum_inclusive=True):
    """``value`` as a float, or InvalidConfig naming ``key`` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidConfig(f"{key}: {value!r} is not a number")
    if minimum is not None:
        too_low = value < minimum if minimum_inclusive else value <= minimum
        if too_low:
            bound = ">=" if minimum_inclusive else ">"
            raise InvalidConfig(f"{key}: {value!r} must be {bound} {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidConfig(f"{key}: {value!r} must be <= {maximum}")
    return float(value)
