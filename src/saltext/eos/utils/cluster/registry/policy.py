"""
The acceptance policy (``eos:accept``): which registrations are accepted without an
operator.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from saltext.eos.utils import config


class InvalidPolicy(config.InvalidConfig):
    """``eos:accept`` is not a policy."""


@dataclass(frozen=True)
class AcceptancePolicy:
    """``auto``: accept without an operator; ``match`` and ``require_health`` narrow it."""

    auto: bool = False
    match: str | None = None
    require_health: bool = False

    def describe(self):
        if not self.auto:
            return "manual"
        parts = ["auto"]
        if self.require_health:
            parts.append("health passed")
        if self.match:
            parts.append(f"matches {self.match!r}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Decision:
    accept: bool
    reason: str


POLICY_FIELDS = ("auto", "match", "require_health")


def acceptance_policy(layers):
    """The checked AcceptancePolicy of ``eos:accept`` (default manual)."""
    value = layers.get("accept", default="manual")
    key = config.key_name("accept")
    if value == "manual":
        return AcceptancePolicy()
    if value == "auto":
        return AcceptancePolicy(auto=True)
    if not isinstance(value, Mapping):
        raise InvalidPolicy(f"{key}: {value!r} is not manual, auto or a mapping")
    unknown = sorted(str(name) for name in value if name not in POLICY_FIELDS)
    if unknown:
        raise InvalidPolicy(
            f"{key}: unknown field {unknown[0]!r}; expected {', '.join(POLICY_FIELDS)}"
        )
    auto = _policy_flag(value, "auto", default=False)
    require_health = _policy_flag(value, "require_health", default=True)
    match = value.get("match")
    if match is not None and (not isinstance(match, str) or not match.strip()):
        raise InvalidPolicy(f"{config.key_name('accept', 'match')}: {match!r} is not a target")
    return AcceptancePolicy(auto=auto, match=match, require_health=require_health)


def _policy_flag(value, name, default):
    flag = value.get(name, default)
    if not isinstance(flag, bool):
        raise InvalidPolicy(f"{config.key_name('accept', name)}: {flag!r} is not true or false")
    return flag


def decide(policy, record, first_node, matches):
    """
    Whether a pending ``record`` is accepted now, and why (or what it waits for).

    ``matches(node_id, expression)`` evaluates a compound target against the node's grains.
    """
    if first_node:
        return Decision(True, "first node of a new cluster")
    if not policy.auto:
        return Decision(False, "eos:accept is manual: waiting for eos_cluster.accept")
    if policy.require_health:
        health = record.get("health")
        if not health:
            return Decision(False, "waiting for its registration and health checks")
        if not health.get("passed"):
            return Decision(False, f"critical health checks failed: {_failed_checks(health)}")
    if policy.match and not matches(record["id"], policy.match):
        return Decision(False, f"does not match eos:accept:match {policy.match!r}")
    return Decision(True, f"eos:accept policy ({policy.describe()})")


def _failed_checks(health):
    names = [c["name"] for c in health.get("checks", []) if c["critical"] and not c["passed"]]
    return ", ".join(names) or "none named"
