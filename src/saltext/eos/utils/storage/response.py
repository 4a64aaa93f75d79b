"""
What a node does when the reactor tells it "your mount may be filling up".

The reactor answers ``salt/beacon/<id>/eos_storage/<level>`` events, and nothing in such an
event can be trusted: a minion sends its beacon events in a batch, and the master fires each
with the tag and data exactly as that minion wrote them. So the event is only a hint naming a
minion and a mount. The named minion (targeted by its exact id) measures the mount itself and
acts on its own level, never on the level the event claimed. A forged event costs at most a
harmless re-measure.

What it may do on its own is capped by ``eos:profile:cleanup:automatic_up_to`` (a threshold
level, set by the ext_pillar from the cluster's scale): a level above the cap gets the
recovery of the cap's level, plus a dry run of what the measured level would do, reported
for an operator. Nothing above the cap is deleted or stopped without one. ``critical``
deletes nothing in any case (a human must act), so it is always declared.
"""

from dataclasses import dataclass

from saltext.eos.utils import config
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.storage import thresholds

# Threshold levels that ask the node for space recovery; below them the event is the record.
ACTING_LEVELS = ("compress", "cleanup", "degraded", "emergency", "critical")
# Cleanup levels that cost service or data: files are tried first, services only when the
# files were not enough (the kubelet's order: cheapest and least valuable first).
FILES_FIRST = ("degrade", "emergency")
CRITICAL = "critical"


@dataclass(frozen=True)
class Decision:
    """What to do for a measured level: ``action`` is a cleanup level, or None for nothing."""

    measured_level: str
    action: object
    held_back: object  # the measured level's action when the cap kept the node from it
    automatic_up_to: str

    def as_dict(self):
        return {
            "measured_level": self.measured_level,
            "action": self.action,
            "held_back": self.held_back,
            "automatic_up_to": self.automatic_up_to,
        }


def _default_cap():
    # Not a module constant: registry imports this package (scale needs thresholds), so when
    # registry is imported first it is still half-built while this module loads.
    return registry.SCALE_POLICIES[thresholds.DEFAULT_SCALE]["cleanup"]["automatic_up_to"]


def automatic_up_to(layers):
    """``eos:profile:cleanup:automatic_up_to`` from pillar or config, checked; a level name."""
    value = layers.get("profile", "cleanup", "automatic_up_to", default=None)
    if value is None:
        scale = layers.get("scale", default=thresholds.DEFAULT_SCALE)
        policy = registry.SCALE_POLICIES.get(scale) or {}
        value = (policy.get("cleanup") or {}).get("automatic_up_to", _default_cap())
    return thresholds.threshold_level(
        value, config.key_name("profile", "cleanup", "automatic_up_to")
    )


def decide(measured_level, cap):
    """The Decision for a node that measured ``measured_level``, allowed up to ``cap``."""
    if measured_level not in ACTING_LEVELS:
        return Decision(measured_level, None, None, cap)
    wanted = thresholds.ACTIONS[measured_level]
    if wanted == CRITICAL or _rank(measured_level) <= _rank(cap):
        return Decision(measured_level, wanted, None, cap)
    allowed = thresholds.ACTIONS[cap] if cap in ACTING_LEVELS else None
    return Decision(measured_level, allowed, wanted, cap)


def _rank(level):
    return thresholds.LEVELS.index(level)
