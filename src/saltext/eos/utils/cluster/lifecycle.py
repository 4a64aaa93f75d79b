"""
Failure detection: which members stopped answering, and for how long.

The master probes the members (``test.ping`` to every active, unreachable and down node, in
one call with a short timeout) every ``probe_interval_seconds``; the ``eos_lifecycle``
engine does it, and ``salt-run eos_lifecycle.probe`` runs one pass by hand. Only the master's
own probe counts: nothing a minion says about itself or another (an event, a beacon) moves a
node's state. Salt's ``presence_events`` are not used: they match minions by address, so they
cannot tell apart several minions on one host.

Master configuration, every key optional:

.. code-block:: yaml

    eos:
      lifecycle:
        grace_seconds: 60          # missed probes for this long: unreachable
        down_after_seconds: 600    # unreachable for this long: down, its roles re-placed
        probe_interval_seconds: 15
        probe_timeout_seconds: 5
        flap_limit: 3              # returns within flap_window_seconds before a node is damped
        flap_window_seconds: 3600
        flap_hold_seconds: 300     # a damped node must answer this long to be active again
        max_unreachable_fraction: 0.5
        retry_seconds: 300         # a failed replacement is tried again after this long

The states:

``active`` -> ``unreachable``
    the node has answered no probe sent in the last ``grace_seconds`` (counted from the send
    time of the last probe it answered, and over at least ``MIN_MISSED_PROBES`` missed
    probes: a clock jumping ahead cannot cut the grace short by itself). So a node that dies
    is unreachable at most ``grace_seconds`` + one ``probe_interval_seconds`` + one
    ``probe_timeout_seconds`` later. It keeps its roles and still counts toward the scale: a
    short outage moves nothing.
``unreachable`` -> ``active``
    it answered again before it was down: no role changes.
``unreachable`` -> ``down``
    it stayed unreachable for ``down_after_seconds`` (and ``MIN_MISSED_PROBES`` more probes).
    Its roles go to the live members (``cluster.replacement``). While more than
    ``max_unreachable_fraction`` of the probed members miss the same probe, no node is
    marked down: the master's own network is the likelier fault, and re-placing the roles
    of half the cluster would make it worse.
``down`` -> ``accepted``
    it answered again: accepted afresh (a new join token), so the join flow brings it back
    through health, checkpoint, roles and highstate.

Damping: a node that came back from unreachable or down ``flap_limit`` times within
``flap_window_seconds`` is damped. A damped node that answers again stays where it is (no
event) until it has answered every probe for ``flap_hold_seconds``; missing one probe starts
the hold again. So a flapping node costs at most ``flap_limit`` pairs of events per window,
and a returning down node at most ``flap_limit`` joins.

Each change fires ``eos/cluster/node/<id>/<status>`` with the record. A record keeps its
``liveness``: ``{missed_since, missed_probes, unreachable_since, unreachable_probes,
answering_since, returns}`` (times from the master's clock); the probe writes a record only
when that changes, so a healthy fleet costs no writes.
"""

import logging
import time
from dataclasses import dataclass
from dataclasses import field

from saltext.eos.utils import config
from saltext.eos.utils.cluster import registry as node_registry

log = logging.getLogger(__name__)

# The statuses the probe asks about.
PROBED_STATUSES = ("active", "unreachable", "down")
# Probes a node must miss besides the time: a clock that jumps ahead shortens nothing alone.
MIN_MISSED_PROBES = 2

DEFAULTS = {
    "grace_seconds": 60,
    "down_after_seconds": 600,
    "probe_interval_seconds": 15,
    "probe_timeout_seconds": 5,
    "flap_limit": 3,
    "flap_window_seconds": 3600,
    "flap_hold_seconds": 300,
    "max_unreachable_fraction": 0.5,
    "retry_seconds": 300,
}
WHOLE = ("flap_limit",)
FRACTIONS = ("max_unreachable_fraction",)


@dataclass(frozen=True)
class Settings:
    grace_seconds: float
    down_after_seconds: float
    probe_interval_seconds: float
    probe_timeout_seconds: float
    flap_limit: int
    flap_window_seconds: float
    flap_hold_seconds: float
    max_unreachable_fraction: float
    retry_seconds: float


def settings(layers):
    """``eos:lifecycle`` from ``config.Layers``; InvalidConfig names a bad key."""
    values = {}
    for key, default in DEFAULTS.items():
        name = config.key_name("lifecycle", key)
        value = layers.get("lifecycle", key, default=default)
        if key in FRACTIONS:
            value = config.number(value, name, minimum=0)
            if value > 1:
                raise config.InvalidConfig(f"{name}: {value!r} is not a fraction from 0 to 1")
        elif key in WHOLE:
            value = config.number(value, name, minimum=1)
            if value != int(value):
                raise config.InvalidConfig(f"{name}: {value!r} is not a whole number")
            value = int(value)
        else:
            value = config.number(value, name, minimum=1)
        values[key] = value
    if values["probe_timeout_seconds"] >= values["probe_interval_seconds"]:
        raise config.InvalidConfig(
            f"{config.key_name('lifecycle', 'probe_timeout_seconds')}: "
            f"{values['probe_timeout_seconds']:g} must be below "
            f"{config.key_name('lifecycle', 'probe_interval_seconds')} "
            f"({values['probe_interval_seconds']:g})"
        )
    return Settings(**values)


def empty_liveness():
    return {
        "missed_since": None,
        "missed_probes": 0,
        "unreachable_since": None,
        "unreachable_probes": 0,
        "answering_since": None,
        "returns": [],
    }


@dataclass(frozen=True)
class Verdict:
    """What one probe means for one node: its new status (None: unchanged) and liveness."""

    status: str | None
    liveness: dict
    reason: str = ""


def assess(status, liveness, answered, now, limits, hold_down=False, heard_at=None):
    """
    The verdict on a node in ``status`` with its stored ``liveness``, after a probe sent at
    ``now`` that it ``answered`` or not. ``hold_down``: too many members missed this probe
    to mark any node down. ``heard_at``: when the last probe it answered was sent, if known
    (the node has been silent since then at most). Pure: the same inputs give the same
    verdict.
    """
    current = {**empty_liveness(), **(liveness or {})}
    window_start = now - limits.flap_window_seconds
    current["returns"] = [at for at in current["returns"] if at > window_start]
    if answered:
        return _answered(status, current, now, limits)
    return _missed(status, current, now, limits, hold_down, heard_at)


def _answered(status, liveness, now, limits):
    if status == "active":
        if liveness["missed_since"] is None:
            return Verdict(None, liveness)
        return Verdict(None, {**liveness, "missed_since": None, "missed_probes": 0})
    damped = len(liveness["returns"]) >= limits.flap_limit
    answering_since = liveness["answering_since"] or now
    if damped and now - answering_since < limits.flap_hold_seconds:
        held = {**liveness, "answering_since": answering_since}
        return Verdict(None, held, f"damped: answering since {answering_since:.0f}")
    back = {**empty_liveness(), "returns": [*liveness["returns"], now]}
    if status == "unreachable":
        return Verdict("active", back, "answers the master's probe again")
    return Verdict("accepted", back, "answers the master's probe again after being down")


def _missed(status, liveness, now, limits, hold_down, heard_at):
    missed = {**liveness, "answering_since": None}
    if status == "active":
        missed["missed_since"] = liveness["missed_since"] or (now if heard_at is None else heard_at)
        missed["missed_probes"] = liveness["missed_probes"] + 1
        silent = now - missed["missed_since"]
        if silent >= limits.grace_seconds and missed["missed_probes"] >= MIN_MISSED_PROBES:
            missed.update(unreachable_since=now, unreachable_probes=0)
            return Verdict(
                "unreachable",
                missed,
                f"missed {missed['missed_probes']} probes over {silent:.0f} s "
                f"(grace {limits.grace_seconds:g} s)",
            )
        return Verdict(None, missed)
    if status == "unreachable":
        missed["unreachable_since"] = liveness["unreachable_since"] or now
        missed["unreachable_probes"] = liveness["unreachable_probes"] + 1
        gone = now - missed["unreachable_since"]
        due = (
            gone >= limits.down_after_seconds and missed["unreachable_probes"] >= MIN_MISSED_PROBES
        )
        if due and hold_down:
            return Verdict(None, missed, "down held: too many members missed this probe")
        if due:
            return Verdict(
                "down",
                missed,
                f"unreachable for {gone:.0f} s (down after {limits.down_after_seconds:g} s)",
            )
        return Verdict(None, missed)
    return Verdict(None, liveness)


@dataclass
class Probe:
    """One probe pass: what was asked, who answered, what changed."""

    probed: list = field(default_factory=list)
    answered: list = field(default_factory=list)
    changes: list = field(default_factory=list)
    held: list = field(default_factory=list)
    hold_down: bool = False
    sent_at: float | None = None  # the master's clock when the probe went out

    def heard_at(self, node_id):
        """When ``node_id`` was last heard from by this probe (its send time), or None."""
        return self.sent_at if node_id in self.answered else None

    @property
    def went_down(self):
        return [change["id"] for change in self.changes if change["to"] == "down"]

    def as_dict(self):
        return {
            "probed": len(self.probed),
            "answered": len(self.answered),
            "missing": sorted(set(self.probed) - set(self.answered)),
            "changes": self.changes,
            "held": self.held,
            "hold_down": self.hold_down,
        }


@dataclass
class Lifecycle:
    """The master side of failure detection: the registry, minion calls and the clock."""

    registry: node_registry.Registry
    call: object  # call(targets, fun, args=(), kwargs=None, timeout=None) -> {id: Answer}
    settings: Settings
    clock: object = time.time

    def probe(self, previous=None):
        """
        Ping every probed member once and apply the verdicts; returns the Probe.
        ``previous``: the Probe before this one, if this process ran it: a node that answered
        it has been silent since it was sent, not only since this one was.
        """
        records = [
            record for record in self.registry.records() if record.get("status") in PROBED_STATUSES
        ]
        # Silence counts from when a probe went out, not from when its wait ended: a probe's
        # own timeout must not stretch the grace period.
        now = self.clock()
        outcome = Probe(probed=[record["id"] for record in records], sent_at=now)
        if not records:
            return outcome
        answers = self.call(
            outcome.probed, "test.ping", timeout=self.settings.probe_timeout_seconds
        )
        outcome.answered = sorted(node for node, answer in answers.items() if answer.ret is True)
        live = [record for record in records if record["status"] != "down"]
        silent = [record for record in live if record["id"] not in outcome.answered]
        outcome.hold_down = len(silent) >= 2 and len(
            silent
        ) > self.settings.max_unreachable_fraction * len(live)
        if outcome.hold_down:
            log.warning(
                "eos_lifecycle: %d of %d members missed the probe; no node is marked down "
                "while that lasts",
                len(silent),
                len(live),
            )
        answered = set(outcome.answered)
        for record in records:
            verdict = assess(
                record["status"],
                record.get("liveness"),
                record["id"] in answered,
                now,
                self.settings,
                outcome.hold_down,
                heard_at=self._heard_at(previous, record["id"], now),
            )
            self._apply(record, verdict, outcome)
        return outcome

    def _heard_at(self, previous, node_id, now):
        # Only the probe just before counts: after a long pause (a replacement ran in this
        # process) nobody asked in between, so the silence is not known to be that long.
        if previous is None or previous.sent_at is None:
            return None
        if now - previous.sent_at > 2 * self.settings.probe_interval_seconds:
            return None
        return previous.heard_at(node_id)

    def _apply(self, record, verdict, outcome):
        node_id = record["id"]
        if verdict.reason and verdict.status is None:
            outcome.held.append({"id": node_id, "reason": verdict.reason})
        try:
            if verdict.status is None:
                if verdict.liveness != {**empty_liveness(), **(record.get("liveness") or {})}:
                    self.registry.update(node_id, liveness=verdict.liveness)
                return
            if verdict.status == "accepted":
                self.registry.update(node_id, liveness=verdict.liveness)
                # Only from down: an operator may have rejected it while the probe ran.
                self.registry.accept(node_id, verdict.reason, only_from=("down",))
            else:
                self.registry.set_status(
                    node_id, verdict.status, verdict.reason, liveness=verdict.liveness
                )
        except (node_registry.UnknownNode, node_registry.InvalidTransition) as err:
            # Removed, rejected or re-accepted since the probe read it: its new state stands.
            log.info("eos_lifecycle: %s changed while it was probed: %s", node_id, err)
            return
        if verdict.status is not None:
            log.warning("eos_lifecycle: %s is %s: %s", node_id, verdict.status, verdict.reason)
            outcome.changes.append(
                {
                    "id": node_id,
                    "from": record["status"],
                    "to": verdict.status,
                    "reason": verdict.reason,
                }
            )
