"""
Re-placing roles when members leave: a node down, drained, removed or rejected.

``Replacement.run`` holds the same cluster lease as joins (one membership change at a time),
and works like a join without a joining node:

1. place roles over the live members (active and accepted nodes that hold roles, and
   unreachable ones, which keep theirs): the solver's stability keeps every live node's
   roles where it can, and restores the catalogue's minimum counts and quorums when capacity
   allows; what it cannot place is reported with the reason;
2. nothing changed (every holder is still a member): release the lease, done;
3. checkpoint the nodes it will configure (``eos_cluster.checkpoint``) and the assignment;
4. store the new assignment (``eos/roles/changed``), refresh pillar on the reachable members;
5. configure (highstate, or ``eos:join:state``) the reachable nodes whose roles changed, then
   the nodes configured from the holders of others (the edges, whose upstreams are the live
   core nodes), and ``eos.roles.common`` on the others when the scale changed;
6. any failure: the previous assignment is restored, the configured minions go back to
   their checkpoints and get their previous roles again; ``eos/cluster/replacement/failed``.
   The ``eos_lifecycle`` engine tries again after ``eos:lifecycle:retry_seconds``.

The last run is kept in the registry's cluster bank (``replacement``) for
``salt-run eos_lifecycle.status``.

Events: ``eos/cluster/replacement/done`` and ``eos/cluster/replacement/failed``, with the
run's record.
"""

import logging
import uuid
from dataclasses import dataclass

from saltext.eos.utils.cluster import join as joins
from saltext.eos.utils.cluster import registry as node_registry

log = logging.getLogger(__name__)

RECORD_KEY = "replacement"  # in registry.CLUSTER_BANK
LEASE_HOLDER = "replacement"  # the lease's node field while a replacement holds it
DONE_TAG = "eos/cluster/replacement/done"
FAILED_TAG = "eos/cluster/replacement/failed"
# Statuses whose nodes must hold no role in the assignment.
GONE_STATUSES = ("down", "drained", "rejected")


def stale_holders(registry):
    """
    The nodes the stored assignment gives roles to that are no longer members: down, drained,
    rejected or removed. Not empty means a replacement is due.
    """
    assigned = (registry.assignment() or {}).get("assignments", {})
    stale = []
    for node_id, roles in sorted(assigned.items()):
        if not roles:
            continue
        record = registry.get(node_id)
        if record is None or record["status"] in GONE_STATUSES:
            stale.append(node_id)
    return stale


@dataclass
class Replacement:
    """A replacement on the Salt side of ``flow`` (a ``join.Join``: lease, calls, states)."""

    flow: joins.Join

    @property
    def registry(self):
        return self.flow.registry

    def last(self):
        """The record of the last replacement, or None."""
        return self.registry.cache.fetch(node_registry.CLUSTER_BANK, RECORD_KEY) or None

    def run(self, reason, leaving=()):
        """
        Re-place roles over the live members (``leaving``: members that must end with no
        role, a drained node); returns the run's record. JoinFailed when the lease stays held
        by a join for ``eos:join:lease_wait``.
        """
        run = f"replace-{uuid.uuid4().hex[:16]}"
        self.flow.take_lease(LEASE_HOLDER, run)
        record = {
            "run": run,
            "reason": reason,
            "leaving": sorted(leaving),
            "started_at": self.flow.clock(),
        }
        try:
            self._replace(record, set(leaving))
        except joins.JoinFailed as err:
            record.update(outcome="failed", error=str(err))
            record["rollback"] = self._rollback(record)
        finally:
            record["finished_at"] = self.flow.clock()
            self._save(record)
            self.flow.release_lease(run)
        if record["outcome"] != "unchanged":
            self.flow.fire(DONE_TAG if record["outcome"] == "done" else FAILED_TAG, record)
        return record

    def _replace(self, record, leaving):
        stored = self.registry.assignment() or {"version": 0, "assignments": {}}
        previous = stored.get("assignments", {})
        record["checkpoint"] = {"version": stored.get("version", 0), "assignments": previous}
        members = self._members(leaving)
        solved = self.flow.solve_roles(members, leaving)
        wanted = solved["assignments"]
        changes = {
            node: {"old": list(previous.get(node, [])), "new": list(wanted.get(node, []))}
            for node in sorted(set(previous) | set(wanted))
            if list(previous.get(node, [])) != list(wanted.get(node, []))
        }
        record["unplaced"] = [item["reason"] for item in solved["unplaced"]]
        if not changes:
            record["outcome"] = "unchanged"
            return
        reachable = set(self.flow.reachable_members()) - leaving
        targets = sorted(set(changes) & reachable)
        followers = sorted(set(joins.dependents(changes, wanted)) & reachable - set(targets))
        scale_changed = self._scale_changed()
        others = sorted(reachable - set(targets) - set(followers)) if scale_changed else []
        record.update(
            changes=changes,
            configured=sorted({*targets, *followers, *others}),
            scale_changed=scale_changed,
        )
        record["minion_checkpoints"] = self._checkpoint(record["configured"], record["run"])
        saved = self.registry.store_assignment(wanted, fence=self.flow.fence(record["run"]))
        record["assignment_version"] = saved["version"]
        self.flow.fire(
            joins.ROLES_CHANGED_TAG,
            {"version": saved["version"], "changes": saved["changes"], "reason": record["reason"]},
        )
        self.flow.call(
            sorted(reachable), "saltutil.refresh_pillar", kwargs={"wait": True}, timeout=60
        )
        results = self.flow.apply_state(targets) if targets else {}
        if followers:
            results.update(self.flow.apply_state(followers))
        if others:
            results.update(self.flow.run_state(others, joins.COMMON_STATE))
        problems = [f"{node}: {problem}" for node in sorted(results) for problem in results[node]]
        if problems:
            raise joins.JoinFailed("configuration failed: " + " | ".join(problems[:10]))
        self.flow.note_configured_scale(LEASE_HOLDER)
        record["outcome"] = "done"

    def _members(self, leaving):
        """Active and unreachable members, accepted ones that hold roles, and ``leaving``."""
        chosen = []
        for status in node_registry.MEMBER_STATUSES:
            for member in self.registry.records(status):
                if status != "accepted" or member.get("roles") or member["id"] in leaving:
                    chosen.append(member)
        return chosen

    def _scale_changed(self):
        configured = self.flow.configured_scale()
        return configured is not None and self.registry.summary()["scale"] != configured

    def _checkpoint(self, targets, run):
        if not targets:
            return {}
        answers = self.flow.call(
            targets, "eos_cluster.checkpoint", kwargs={"label": run}, timeout=120
        )
        taken = {
            node: answer.ret["id"]
            for node, answer in answers.items()
            if answer.ok and isinstance(answer.ret, dict) and "id" in answer.ret
        }
        missing = sorted(set(targets) - set(taken))
        if missing:
            raise joins.JoinFailed(f"no checkpoint on {', '.join(missing)}: nothing changed")
        return taken

    def _rollback(self, record):
        if "assignment_version" not in record:
            return {"comment": "nothing was changed"}
        restored = self.flow.restore_assignment(record)
        minions = self.flow.rollback_minions(record)
        reapplied = sorted(set(record.get("configured", [])) & set(self.flow.reachable_members()))
        self.flow.call(
            sorted(self.flow.reachable_members()),
            "saltutil.refresh_pillar",
            kwargs={"wait": True},
            timeout=60,
        )
        problems = {}
        if reapplied:
            problems = {m: p for m, p in self.flow.apply_state(reapplied).items() if p}
        return {
            "assignment_version": restored["version"],
            "minions": minions,
            "reapplied": reapplied,
            "problems": problems,
        }

    def _save(self, record):
        self.registry.cache.store(node_registry.CLUSTER_BANK, RECORD_KEY, record)
