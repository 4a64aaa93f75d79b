"""
Node records in the master's Salt cache: statuses, transitions, the summary and role assignment.
"""

import logging
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field

from saltext.eos.utils import config
from saltext.eos.utils import formatting
from saltext.eos.utils.cluster.roles import CONFIGURED_FROM

from .journal import Journalled
from .lock import lock_for
from .payload import DEFAULT_MAX_CLOCK_SKEW
from .payload import DISK_GB
from .payload import MEMORY_GB
from .payload import ROLE_NAME
from .payload import _short
from .payload import check_node_id
from .payload import check_sent_at
from .payload import max_clock_skew
from .payload import supersedes
from .policy import decide
from .refusals import AlreadyRegistered
from .refusals import InvalidTransition
from .refusals import RegistryError
from .refusals import StaleJoin
from .refusals import UnknownNode
from .scale import SCALE_POLICIES
from .scale import SCALE_STARTS
from .scale import SCALES
from .scale import scale_boundaries
from .scale import scale_for
from .scale import scale_profile

log = logging.getLogger(__name__)

NODES_BANK = "eos/nodes"
CLUSTER_BANK = "eos/cluster"
SUMMARY_KEY = "summary"
ASSIGNMENT_KEY = "assignment"

STATUSES = ("pending", "accepted", "active", "failed", "unreachable", "down", "drained", "rejected")
# The members: they make node_count and so the scale. An unreachable node is still one (it
# keeps its roles until it is down), so a short outage moves neither roles nor the scale.
MEMBER_STATUSES = ("accepted", "active", "unreachable")
# The members the master can talk to: the ones every call of a flow goes to.
REACHABLE_STATUSES = ("accepted", "active")
# Statuses set by the flows (join, lifecycle, drain) through set_status.
FLOW_STATUSES = ("active", "failed", "unreachable", "down", "drained")
REMOVED = "removed"  # an event tag only: a removed node has no record
TRANSITIONS = {
    None: ("pending",),
    "pending": ("accepted", "rejected"),
    "accepted": ("active", "failed", "drained", "rejected"),
    "active": ("failed", "unreachable", "drained", "rejected"),
    # A failed node may be retried (accepted again) or brought back by hand.
    "failed": ("accepted", "active", "rejected"),
    # Answering again before it is down: back to active, roles untouched.
    "unreachable": ("active", "down", "drained", "rejected"),
    # A down or drained node comes back through the join flow (accepted again).
    "down": ("accepted", "rejected"),
    "drained": ("accepted", "rejected"),
    "rejected": ("accepted",),
}
# A node in one of these holds no role: rejecting, draining or losing it hands its roles on.
ROLELESS_STATUSES = ("rejected", "drained")
HISTORY_LIMIT = 50

if set(SCALE_STARTS) != set(SCALES[1:]) or set(SCALE_POLICIES) != set(SCALES):
    raise RuntimeError("SCALE_STARTS and SCALE_POLICIES must cover thresholds.PROFILES")


def open_registry(opts, on_change=None, cache=None):
    """
    The registry of the master configured by ``opts``: its Salt cache (default
    ``salt.cache.factory(opts)``), the lock its masters share (``lock.lock_for``: a file in
    its cachedir, or a key on the redis server of a redis cache), its
    ``eos:scale_boundaries`` and ``eos:registration:max_clock_skew_seconds``. InvalidConfig
    names a bad setting.
    """
    if cache is None:
        import salt.cache  # the master's ``cache`` setting decides the backend

        cache = salt.cache.factory(opts)
    layers = config.Layers.from_salt(opts)
    return Registry(
        cache,
        lock=lock_for(opts, layers),
        on_change=on_change,
        boundaries=scale_boundaries(layers),
        max_clock_skew=max_clock_skew(layers),
    )


def new_record(node_id, now):
    """A record for a node seen for the first time; its status is set by a transition."""
    return {
        "id": node_id,
        "status": None,
        "resources": None,
        "health": None,
        "preferred_role": None,
        "roles": [],
        "registered_at": now,
        "accepted_at": None,
        "last_seen": now,
        "registration_sent_at_ms": None,
        "pending_reason": None,
        "address": None,
        "history": [],
    }


def as_role_node(record):
    """The node description the role solver takes (``roles.nodes``) from a record."""
    resources = record.get("resources") or {}
    disks = resources.get("disks") or []
    domain = resources.get("failure_domain") or {}
    return {
        "id": record["id"],
        "cpu": resources.get("cpu_cores", 0),
        "memory_gb": round(resources.get("memory_bytes", 0) / MEMORY_GB),
        "disk_gb": sum(disk["size_bytes"] for disk in disks) / DISK_GB,
        "storage_type": node_storage_type(disks),
        "datacenter": domain.get("datacenter"),
        "rack": domain.get("rack"),
        "host": domain.get("host"),
        "labels": dict(resources.get("labels") or {}),
        "roles": list(record.get("roles") or []),
        "preferred_role": record.get("preferred_role"),
    }


def node_storage_type(disks):
    """The storage type of the node's largest disk: where most of its data would live."""
    typed = [disk for disk in disks if disk.get("storage_type")]
    if not typed:
        return None
    return max(typed, key=lambda disk: (disk["size_bytes"], disk["name"]))["storage_type"]


def empty_summary():
    """The summary of a registry that has never held a node."""
    return {
        "cluster_id": None,
        "created_at": None,
        "first_node": None,
        "counts": dict.fromkeys(STATUSES, 0),
        "node_count": 0,
        "scale": SCALES[0],
        "roles": {},
        # Who holds the roles other roles are configured from (roles.CONFIGURED_FROM): the
        # edge reads its upstreams here, so a node gone from the assignment is gone from them.
        "holders": {},
        "assignment_version": 0,
        "updated_at": None,
    }


@dataclass
class Outcome:
    """What a registry operation did: the record after it and the statuses it went through."""

    record: dict | None
    transitions: list = field(default_factory=list)
    note: str = ""
    # The node's Salt key must be accepted (again), whether or not its status changed.
    accept_key: bool = False

    @property
    def changed(self):
        return bool(self.transitions)


class Registry:
    """
    Node records and the cluster summary in a Salt cache object.

    ``cache`` is a ``salt.cache.Cache`` (``store``, ``fetch``, ``flush``, ``list``); ``lock``
    a context manager serialising changes; ``on_change(node_id, status, record)`` is called
    after every status change has been written (``status`` is ``removed`` for a removal).
    """

    def __init__(
        self,
        cache,
        lock=None,
        clock=time.time,
        on_change=None,
        boundaries=None,
        max_clock_skew=DEFAULT_MAX_CLOCK_SKEW,
    ):
        self.cache = cache
        self.cluster_bank = CLUSTER_BANK
        # Every write happens under it; what a write changed goes to the journal readers
        # outside the master follow (journal.RegistryView).
        self.lock = Journalled(threading.Lock() if lock is None else lock, cache, CLUSTER_BANK)
        self.clock = clock
        self.on_change = on_change or (lambda node_id, status, record: None)
        self.boundaries = dict(SCALE_STARTS) if boundaries is None else boundaries
        self.max_clock_skew = max_clock_skew

    # --- reading: one record and the summary cost the same at any cluster size ---

    def get(self, node_id):
        """The record of ``node_id``, or None."""
        return self.cache.fetch(NODES_BANK, check_node_id(node_id)) or None

    def claim_join(self, node_id, token):
        """
        Use up the join token of ``node_id``'s current acceptance; StaleJoin unless the node
        is accepted and ``token`` is that acceptance's. A token starts at most one join.
        """
        with self.lock:
            record = self.get(node_id)
            if record is None:
                raise StaleJoin(f"{node_id}: no such node: nothing started")
            if record["status"] != "accepted":
                raise StaleJoin(
                    f"{node_id} is {record['status']}, not awaiting a join "
                    "(a forged or repeated event): nothing started"
                )
            expected = record.get("join_token")
            if not expected:
                raise StaleJoin(
                    f"{node_id}: its join has started already (a forged or repeated event): "
                    "nothing started"
                )
            if not isinstance(token, str) or not secrets.compare_digest(token, expected):
                raise StaleJoin(
                    f"{node_id}: the join token is not its current acceptance's "
                    "(a forged or repeated event): nothing started"
                )
            record["join_token"] = None
            self._store(record)
            return record

    def summary(self):
        """The cluster summary, with the scale for the current boundaries."""
        stored = self.cache.fetch(CLUSTER_BANK, SUMMARY_KEY) or {}
        summary = {**empty_summary(), **stored}
        summary["counts"] = {**dict.fromkeys(STATUSES, 0), **stored.get("counts", {})}
        summary["scale"] = scale_for(summary["node_count"], self.boundaries)
        return summary

    def assignment(self):
        """The last stored role assignment: {version, assignments, stored_at}, or None."""
        return self.cache.fetch(CLUSTER_BANK, ASSIGNMENT_KEY) or None

    def node_ids(self):
        return sorted(self.cache.list(NODES_BANK))

    def records(self, status=None):
        """Every record (sorted by id), or those with ``status``; reads the whole registry."""
        if status is not None and status not in STATUSES:
            raise RegistryError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        found = []
        for node_id in self.node_ids():
            record = self.cache.fetch(NODES_BANK, node_id)
            if record and (status is None or record["status"] == status):
                found.append(record)
        return found

    # --- changing ---

    def note_pending_key(self, node_id, policy, matches):
        """
        A Salt key for ``node_id`` is waiting for acceptance: create its pending record, or
        give a pending one another look under the policy (which may have changed).

        Any other record keeps its status: the key may be pending again after a key rotation,
        but the node's standing in the cluster is the registry's to say.
        """
        check_node_id(node_id)
        with self.lock:
            now = self.clock()
            record = self.get(node_id)
            if record is not None and record["status"] == "pending":
                record["last_seen"] = formatting.timestamp(now)
                transitions = self._apply_policy(record, policy, matches, now)
                return self._announce(Outcome(record, transitions))
            if record is not None:
                record["last_seen"] = formatting.timestamp(now)
                self._store(record)
                return Outcome(
                    record,
                    note=f"already known as {record['status']}",
                    accept_key=self._key_lost_acceptance(record, policy, matches),
                )
            record = new_record(node_id, formatting.timestamp(now))
            transitions = self._create(record, "its Salt key is pending", now)
            transitions += self._apply_policy(record, policy, matches, now)
        return self._announce(Outcome(record, transitions))

    def _key_lost_acceptance(self, record, policy, matches):
        """
        Whether the pending key of an ``accepted`` node is accepted again. Salt can lose an
        acceptance: two first authentications at once both find no key, and the later one
        stores the key as pending after it was accepted. The node has not joined yet, so
        what accepted it decides again: the policy, as it would for a new node, or being
        the cluster's first node. A member's pending key (a key rotation) waits for the
        operator.
        """
        if record["status"] != "accepted":
            return False
        first_node = self.summary()["first_node"] == record["id"]
        return decide(policy, record, first_node, matches).accept

    def register(self, node_id, registration, policy, matches):
        """
        Record what ``node_id`` says about itself; a new or pending node meets the policy.

        A registration older than the last one recorded (they may arrive out of order) is
        ignored; one sent over ``max_clock_skew`` seconds ahead of the master's clock is
        refused (ClockSkew, nothing written); see "registration order". A rejected node stays
        rejected.
        """
        check_node_id(node_id)
        with self.lock:
            now = self.clock()
            check_sent_at(node_id, registration.sent_at_ms, now, self.max_clock_skew)
            record = self.get(node_id)
            transitions = []
            if record is None:
                record = new_record(node_id, formatting.timestamp(now))
                transitions += self._create(record, "registered", now)
            elif record["status"] == "rejected":
                return Outcome(record, note="rejected: registration ignored")
            elif not self._supersedes(record, registration.sent_at_ms, now):
                return Outcome(record, note="older than the registration already recorded")
            record.update(
                resources=registration.resources,
                health=registration.health,
                preferred_role=registration.preferred_role,
                last_seen=formatting.timestamp(now),
                registration_sent_at_ms=registration.sent_at_ms,
            )
            if record["status"] == "pending":
                transitions += self._apply_policy(record, policy, matches, now)
            if not transitions:
                self._store(record)
        return self._announce(Outcome(record, transitions))

    def accept(self, node_id, reason="accepted by an operator", only_from=None):
        """
        Make ``node_id`` a member; accepting a member again changes nothing. ``only_from``:
        the statuses it may be accepted from, checked under the lock (InvalidTransition
        otherwise), for a caller that decided on a status it read earlier.
        """
        return self._change(
            node_id, "accepted", reason, unchanged_from=MEMBER_STATUSES, only_from=only_from
        )

    def reject(self, node_id, reason="rejected by an operator"):
        """Reject ``node_id``; it loses its roles."""
        return self._change(node_id, "rejected", reason, unchanged_from=("rejected",))

    def set_status(self, node_id, status, reason, **fields):
        """
        Move ``node_id`` to one of ``FLOW_STATUSES``: active or failed (its configuration
        finished or failed), unreachable or down (the lifecycle), drained. ``fields`` are
        stored in the record with the change.
        """
        if status not in FLOW_STATUSES:
            raise InvalidTransition(
                f"{node_id}: set_status takes {', '.join(FLOW_STATUSES)}, not {status!r} "
                "(accept, reject and remove have their own functions)"
            )
        return self._change(node_id, status, reason, unchanged_from=(status,), fields=fields)

    def update(self, node_id, reason=None, **fields):
        """
        Store ``fields`` in the record of ``node_id`` without a status change (the liveness
        the lifecycle keeps, a cordon); ``reason`` adds a history entry. Returns the record.
        """
        check_node_id(node_id)
        with self.lock:
            record = self._existing(node_id)
            record.update(fields)
            if reason:
                entry = self._entry(record["status"], reason, self.clock())
                record["history"] = [*record["history"], entry][-HISTORY_LIMIT:]
            self._store(record)
            return record

    def preregister(self, node_id, details, reason="pre-registered by an operator"):
        """
        A pending record for a node whose minion does not exist yet, from ``details``
        (``check_preregistration``'s answer). Its minion later registers under the same id.
        """
        check_node_id(node_id)
        with self.lock:
            existing = self.get(node_id)
            if existing is not None:
                raise AlreadyRegistered(f"{node_id}: already registered ({existing['status']})")
            now = self.clock()
            record = {**new_record(node_id, formatting.timestamp(now)), **details}
            transitions = self._create(record, reason, now)
        return self._announce(Outcome(record, transitions))

    def ensure(self, node_id, reason):
        """The record of ``node_id``, created pending when missing (the caller knows the node)."""
        check_node_id(node_id)
        with self.lock:
            record = self.get(node_id)
            if record is not None:
                return Outcome(record)
            now = self.clock()
            record = new_record(node_id, formatting.timestamp(now))
            transitions = self._create(record, reason, now)
        return self._announce(Outcome(record, transitions))

    def remove(self, node_id, reason="removed by an operator"):
        """Delete the record of ``node_id``."""
        check_node_id(node_id)
        with self.lock:
            record = self._existing(node_id)
            summary = self.summary()
            self._count(summary, record["status"], None)
            self._drop_roles(summary, record.get("roles"), node_id)
            self.cache.flush(NODES_BANK, node_id)
            self.lock.touch(node_id)
            self._store_summary(summary)
        record["history"] = [*record["history"], self._entry(REMOVED, reason, self.clock())]
        return self._announce(Outcome(record, [REMOVED]))

    def store_assignment(self, assignments, version=None, fence=None):
        """
        Store a role assignment {node id: [roles]}: each node's record gets its roles.

        Every id must have a record; nothing is written otherwise. ``fence``: called under the
        registry's lock before anything is written, it raises when the caller no longer holds
        the lease it writes under (a run that stalled past its lease and was taken over), and
        then nothing is written. Returns {version, changes} with changes {id: {old, new}} for
        the nodes whose roles changed.
        """
        wanted = _checked_assignment(assignments)
        with self.lock:
            if fence is not None:
                fence()
            unknown = [node_id for node_id in wanted if self.get(node_id) is None]
            if unknown:
                raise UnknownNode(
                    f"no record for {', '.join(sorted(unknown)[:5])} in the assignment"
                )
            summary = self.summary()
            version = _next_version(summary["assignment_version"], version)
            previous = (self.assignment() or {}).get("assignments", {})
            # A rejected or drained node holds no role even where the assignment still names
            # it (a failed replacement restores the one from before, so that it is tried
            # again): its record, the role counts and the holders the edges read leave it out.
            held = {
                node_id: [] if self.get(node_id)["status"] in ROLELESS_STATUSES else roles
                for node_id, roles in wanted.items()
            }
            changes = self._write_roles(held, previous)
            self.lock.touch(None)
            self.cache.store(
                CLUSTER_BANK,
                ASSIGNMENT_KEY,
                {
                    "version": version,
                    "assignments": wanted,
                    "stored_at": formatting.timestamp(self.clock()),
                },
            )
            summary["roles"] = _role_counts(held.values())
            summary["holders"] = _holders(held)
            summary["assignment_version"] = version
            self._store_summary(summary)
        return {"version": version, "changes": changes}

    def rebuild_summary(self):
        """Recount the summary from every record (repairs counts after a shared-cache race)."""
        with self.lock:
            summary = self.summary()
            summary["counts"] = dict.fromkeys(STATUSES, 0)
            roles = []
            for record in self.records():
                summary["counts"][record["status"]] += 1
                roles.append(record.get("roles") or [])
            summary["roles"] = _role_counts(roles)
            self._store_summary(summary)
            return self.summary()

    # --- internals: the lock is held ---

    def _supersedes(self, record, sent_at_ms, now):
        recorded = record.get("registration_sent_at_ms")
        if not supersedes(sent_at_ms, recorded, now, self.max_clock_skew):
            return False
        if recorded is not None and sent_at_ms <= recorded:
            log.warning(
                "eos registry: the registration recorded for %s was sent %.0f s ahead of the "
                "master's clock; replaced by the one it sent at %s ms",
                record["id"],
                recorded / 1000 - now,
                sent_at_ms,
            )
        return True

    def _change(self, node_id, status, reason, unchanged_from, fields=None, only_from=None):
        check_node_id(node_id)
        with self.lock:
            record = self._existing(node_id)
            if only_from is not None and record["status"] not in only_from:
                raise InvalidTransition(
                    f"{node_id} is {record['status']} now, not {' or '.join(only_from)}: "
                    f"not {status}"
                )
            if record["status"] in unchanged_from:
                return Outcome(record, note=f"already {record['status']}")
            now = self.clock()
            summary = self.summary()
            record.update(fields or {})
            if status in ROLELESS_STATUSES:
                self._drop_roles(summary, record.get("roles"), record["id"])
                record["roles"] = []
            self._transition(record, status, reason, now, summary)
        return self._announce(Outcome(record, [status]))

    def _existing(self, node_id):
        record = self.get(node_id)
        if record is None:
            raise UnknownNode(f"{node_id}: no such node in the registry")
        return record

    def _create(self, record, reason, now):
        summary = self.summary()
        if summary["cluster_id"] is None:
            summary["cluster_id"] = uuid.uuid4().hex
            summary["created_at"] = formatting.timestamp(now)
        self._transition(record, "pending", reason, now, summary)
        return ["pending"]

    def _apply_policy(self, record, policy, matches, now):
        summary = self.summary()
        first_node = summary["first_node"] is None and summary["node_count"] == 0
        decision = decide(policy, record, first_node, matches)
        if not decision.accept:
            record["pending_reason"] = decision.reason
            self._store(record)
            return []
        self._transition(record, "accepted", decision.reason, now, summary)
        return ["accepted"]

    def _transition(self, record, status, reason, now, summary):
        if status not in TRANSITIONS[record["status"]]:
            raise InvalidTransition(
                f"{record['id']}: cannot go from {record['status']} to {status}; "
                f"from {record['status']} it may go to {', '.join(TRANSITIONS[record['status']])}"
            )
        self._count(summary, record["status"], status)
        record["history"] = [*record["history"], self._entry(status, reason, now)][-HISTORY_LIMIT:]
        record["status"] = status
        record["pending_reason"] = None
        if status == "accepted":
            record["accepted_at"] = formatting.timestamp(now)
            # The accepted event carries it; a join starts only for the token of the node's
            # current acceptance, so a forged or repeated event starts nothing.
            record["join_token"] = secrets.token_urlsafe(18)
        else:
            record["join_token"] = None
        if summary["first_node"] is None and status in MEMBER_STATUSES:
            summary["first_node"] = record["id"]
        # The record first: a crash in between leaves a count to recount, not a lost node.
        self._store(record)
        self._store_summary(summary)

    def _count(self, summary, old, new):
        counts = summary["counts"]
        if old is not None:
            counts[old] = max(0, counts[old] - 1)
        if new is not None:
            counts[new] += 1

    def _drop_roles(self, summary, roles, node_id):
        for role in roles or ():
            left = summary["roles"].get(role, 0) - 1
            if left > 0:
                summary["roles"][role] = left
            else:
                summary["roles"].pop(role, None)
        holders = summary.get("holders") or {}
        for role, ids in holders.items():
            holders[role] = [held for held in ids if held != node_id]

    def _write_roles(self, wanted, previous):
        changes = {}
        for node_id in sorted(set(wanted) | set(previous)):
            record = self.get(node_id)
            if record is None:
                continue  # removed since the previous assignment
            new = wanted.get(node_id, [])
            if list(record.get("roles") or []) != new:
                changes[node_id] = {"old": list(record.get("roles") or []), "new": new}
                record["roles"] = new
                self._store(record)
        return changes

    def _entry(self, status, reason, now):
        return {"status": status, "at": formatting.timestamp(now), "reason": reason}

    def _store(self, record):
        self.lock.touch(record["id"])
        self.cache.store(NODES_BANK, record["id"], record)

    def _store_summary(self, summary):
        counts = summary["counts"]
        summary["node_count"] = sum(counts[status] for status in MEMBER_STATUSES)
        summary["scale"] = scale_for(summary["node_count"], self.boundaries)
        summary["updated_at"] = formatting.timestamp(self.clock())
        self.lock.touch(None)
        self.cache.store(CLUSTER_BANK, SUMMARY_KEY, summary)

    def _announce(self, outcome):
        # After the lock is released: a slow event bus must not hold up other registrations.
        for status in outcome.transitions:
            self.on_change(outcome.record["id"], status, outcome.record)
        return outcome


def cluster_info(summary, accept, boundaries):
    """
    The cluster at a glance (``eos_cluster.info``) from a ``summary``, the acceptance
    policy's ``describe()`` and the scale boundaries.
    """
    return {
        "cluster_id": summary["cluster_id"],
        "created_at": summary["created_at"],
        "node_count": summary["node_count"],
        "scale": summary["scale"],
        "profile": scale_profile(summary["scale"]),
        "nodes": summary["counts"],
        "roles": summary["roles"],
        "assignment_version": summary["assignment_version"],
        "first_node": summary["first_node"],
        "accept": accept,
        "scale_boundaries": boundaries,
    }


def _checked_assignment(assignments):
    if not isinstance(assignments, Mapping):
        raise RegistryError(f"assignments: {_short(assignments)} is not a mapping of id to roles")
    checked = {}
    for node_id, given in assignments.items():
        check_node_id(node_id)
        node_roles = [given] if isinstance(given, str) else given
        if not isinstance(node_roles, (list, tuple)) or not all(
            isinstance(role, str) and ROLE_NAME.fullmatch(role) for role in node_roles
        ):
            raise RegistryError(f"assignments:{node_id}: {_short(given)} is not a role list")
        checked[node_id] = list(dict.fromkeys(node_roles))
    return checked


def _next_version(current, given):
    if given is None:
        return current + 1
    if isinstance(given, bool) or not isinstance(given, int) or given <= current:
        raise RegistryError(f"assignment version {given!r} must be a whole number > {current}")
    return given


def _holders(assignments):
    """{role: [ids]} of the roles other roles are configured from, for the summary."""
    sources = sorted({role for needed in CONFIGURED_FROM.values() for role in needed})
    return {
        role: sorted(node for node, held in assignments.items() if role in held) for role in sources
    }


def _role_counts(role_lists):
    counts = {}
    for node_roles in role_lists:
        for role in node_roles:
            counts[role] = counts.get(role, 0) + 1
    return dict(sorted(counts.items()))
