"""
What the observe generators share: one ``eos:observe`` section read over its defaults, the
whole numbers its settings are (seconds, ports), and seconds as Prometheus durations.
"""

from collections.abc import Mapping

from saltext.eos.utils import config

SECTION = "observe"
# Prometheus duration units, largest first; a day stays "24h", the way horizons are spoken of.
DURATION_UNITS = (("h", 3600), ("m", 60), ("s", 1))


def key(*path):
    """The user-facing name of a setting, e.g. ``eos:observe:rules:for``."""
    return config.key_name(SECTION, *path)


def section(name, given, defaults):
    """
    The section ``name`` as ``given`` (a mapping, or None for all defaults) over ``defaults``.

    InvalidConfig names a section that is not a mapping or an unknown key in it.
    """
    if given is None:
        return dict(defaults)
    if not isinstance(given, Mapping):
        raise config.InvalidConfig(f"{key(name)}: {given!r} is not a mapping")
    unknown = sorted(str(option) for option in set(given) - set(defaults))
    if unknown:
        raise config.InvalidConfig(
            f"{key(name)}: unknown option(s) {', '.join(unknown)}; expected {', '.join(defaults)}"
        )
    return {**defaults, **given}


def whole_number(value, *path, minimum=0, maximum=None):
    """``value`` as an int within the bounds (seconds, a port), or InvalidConfig naming the key."""
    number = config.number(value, key(*path), minimum=minimum, maximum=maximum)
    if number != int(number):
        raise config.InvalidConfig(f"{key(*path)}: {value!r} is not a whole number")
    return int(number)


def duration(total_seconds):
    """Whole seconds as a Prometheus duration: 300 is ``5m``, 5400 ``1h30m``, 0 ``0s``."""
    if total_seconds == 0:
        return "0s"
    parts = []
    left = int(total_seconds)
    for unit, size in DURATION_UNITS:
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
