"""
Cluster scale: from the member count, with ``eos:scale_boundaries``, and what each scale
changes.
"""

import itertools
import json
from collections.abc import Mapping

from saltext.eos.utils import config
from saltext.eos.utils.storage import thresholds

SCALES = tuple(thresholds.PROFILES)
# The member count at which each scale starts; the first scale starts at 0.
SCALE_STARTS = {"small": 2, "medium": 4, "distributed": 7}
# What else changes with scale (the thresholds live in thresholds.PROFILES). A lone node has no
# peer to take over, so it is checked often and may recover space on its own up to emergency;
# large clusters move data instead of deleting it, and check less often to keep the master's
# event load flat as nodes are added.
SCALE_POLICIES = {
    "single": {"monitoring_interval": 60, "cleanup": {"automatic_up_to": "emergency"}},
    "small": {"monitoring_interval": 60, "cleanup": {"automatic_up_to": "emergency"}},
    "medium": {"monitoring_interval": 120, "cleanup": {"automatic_up_to": "degraded"}},
    "distributed": {"monitoring_interval": 300, "cleanup": {"automatic_up_to": "cleanup"}},
}


class InvalidBoundaries(config.InvalidConfig):
    """``eos:scale_boundaries`` is not usable."""


def scale_boundaries(layers):
    """{scale: first member count} from the defaults and ``eos:scale_boundaries``."""
    given = layers.get("scale_boundaries")
    if given is None:
        return dict(SCALE_STARTS)
    key = config.key_name("scale_boundaries")
    if not isinstance(given, Mapping):
        raise InvalidBoundaries(f"{key}: {given!r} is not a mapping of scale to node count")
    merged = dict(SCALE_STARTS)
    for scale, start in given.items():
        if scale not in SCALE_STARTS:
            raise InvalidBoundaries(
                f"{key}: unknown scale {scale!r}; expected one of {', '.join(SCALE_STARTS)} "
                f"({SCALES[0]} always starts at 0)"
            )
        merged[scale] = _boundary(start, config.key_name("scale_boundaries", scale))
    _check_boundaries_increase(merged)
    return merged


def _boundary(value, key):
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidBoundaries(f"{key}: {value!r} is not a whole number of nodes")
    if value < 2:
        raise InvalidBoundaries(f"{key}: {value!r} must be >= 2 (one node is always single)")
    return value


def _check_boundaries_increase(starts):
    ordered = [scale for scale in SCALES if scale in starts]
    for lower, higher in itertools.pairwise(ordered):
        if starts[higher] <= starts[lower]:
            raise InvalidBoundaries(
                f"{config.key_name('scale_boundaries')}: {higher} must start above {lower} "
                f"({higher}={starts[higher]}, {lower}={starts[lower]})"
            )


def scale_for(member_count, boundaries=None):
    """The scale of a cluster with ``member_count`` accepted and active nodes."""
    boundaries = SCALE_STARTS if boundaries is None else boundaries
    scale = SCALES[0]
    for name in SCALES[1:]:
        if member_count >= boundaries[name]:
            scale = name
    return scale


def scale_profile(scale):
    """{scale, thresholds: {level: percent}, monitoring_interval, cleanup} of one scale."""
    return {
        "scale": scale,
        "thresholds": thresholds.profile(scale),
        **_copy(SCALE_POLICIES[scale]),
    }


def _copy(value):
    return json.loads(json.dumps(value))
