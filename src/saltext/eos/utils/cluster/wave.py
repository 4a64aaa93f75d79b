"""
Joins in waves: the nodes accepted together join together, under one lease.

Every accepted event starts ``orchestrate/node_addition.sls``, which calls ``Waves.join``
for its node. The node is queued; the run that finds no wave running takes the join lease,
gathers (waits until no node was queued for ``eos:join:wave_seconds``, six such windows at
most), and then runs the queue as one wave, and again while nodes were queued during that
wave. Every other run returns at once:
its node joins in the wave of the run that holds the lease.

One wave, over its nodes:

``health``
    one ping of every node, one ``eos_cluster.register`` of every node, one wait for their
    registrations: a node that does not answer, fails a critical check or whose registration
    never arrives fails alone.
``checkpoint``
    roles are placed first, over the members and the healthy nodes (without storing them),
    so that only the nodes the wave touches are checkpointed: its own nodes, the members whose
    roles change, the members configured from those roles, and every member when the scale
    changes. A wave node whose checkpoint fails fails alone, and roles are placed again
    without it.
``assign``
    the placement is stored as one new assignment version.
``configure``
    pillar refreshed and the configuration state run on the touched nodes only, ``batch``
    at a time.
``finish``
    every node of the wave that got through is active (``eos/cluster/node/<id>/active``).

The rule for failures: a wave node whose health, checkpoint or configuration fails is rolled
back and marked failed alone (``eos/cluster/node/<id>/failed``, with the step and the
error); roles are placed again without it, and the nodes that placement changes are
checkpointed and configured in a next round, until a round has no new failure. A failure no
single wave node answers for (the configuration state failing on a member that was already
in the cluster, a lost lease, a Salt error) rolls the whole wave back, as a single join is:
the assignment from before the wave, every wave node failed, every touched member back to
its checkpoint and its previous roles.

A wave's records: the wave itself in ``eos/join_waves`` (nodes, phase, checkpoint, outcome),
the id of the current or last one in the cluster bank (``join_wave``), and each node's join
record in ``eos/joins``, naming the wave, as ``eos_join.status <node>`` shows it. When a
wave's master dies, its lease expires and ``Join.recover_abandoned`` (the lifecycle engine
of any master) rolls the wave back and accepts its nodes, and the nodes still queued, again.
"""

import logging

from saltext.eos.utils.cluster import join as joins
from saltext.eos.utils.cluster import lease as leases
from saltext.eos.utils.cluster import registry

log = logging.getLogger(__name__)

WAVES_BANK = "eos/join_waves"
CURRENT_WAVE_KEY = "join_wave"  # in registry.CLUSTER_BANK: {id} of the current or last wave
QUEUE_KEY = "join_queue"  # in registry.CLUSTER_BANK: {node: {run, queued_at}}
PHASES = ("health", "checkpoint", "assign", "configure", "finish")
# A wave gathers while nodes keep arriving, but starts after this many quiet windows at most.
GATHER_WINDOWS = 6


class WaveFailed(joins.JoinFailed):
    """A failure no single node of the wave answers for: the whole wave is rolled back."""


class Waves:
    """The waves of joins of one master's join flow (a ``join.Join``)."""

    def __init__(self, flow):
        self.flow = flow

    @property
    def cache(self):
        return self.flow.cache

    @property
    def registry(self):
        return self.flow.registry

    # --- queueing, and leading the waves ---

    def join(self, node_id, run, token=None):
        """
        Join ``node_id`` in a wave: queued, and either left to the wave that runs, or run in
        the waves this call leads. ``token`` as for ``Join.start``.
        """
        self.flow.joinable(node_id, token)
        self._enqueue(node_id, run)
        deadline = self.flow.clock() + self.flow.settings.lease_wait
        lease = self.flow.join_lease()
        while True:
            leader = self._running_wave(lease, run)
            if leader is not None:
                return {"node": node_id, "queued": True, "wave_run": leader["run"]}
            try:
                _, replaced = lease.acquire(run, node=joins.WAVE_HOLDER)
            except leases.LeaseBusy as busy:
                if self.flow.clock() >= deadline:
                    self._dequeue(node_id)
                    raise joins.JoinFailed(
                        f"{busy}: still held after {self.flow.settings.lease_wait:g} s; "
                        f"{node_id} did not start"
                    ) from busy
                self.flow.sleep(1.0)
                continue
            break
        if replaced is not None:
            log.warning("eos_join: the lease of run %s expired; taking over", replaced["run"])
            if replaced.get("node") == joins.WAVE_HOLDER:
                self.undo_abandoned(replaced, run, queue_led=True)
            else:
                self.flow.undo_abandoned(replaced, run)
        return {"node": node_id, "queued": True, "led": self.lead(run)}

    def lead(self, run):
        """Gather, then run waves while nodes are queued; the lease is released at the end."""
        self._gather()
        led = []
        lease = self.flow.join_lease()
        while True:
            nodes = self._take_queue(run)
            if nodes:
                led.append(self.run_wave(nodes, run, len(led) + 1))
            elif lease.release_unless(run, self._queued):
                return led

    def _gather(self):
        """
        Wait until no node was queued for ``wave_seconds`` (machines racked together come up
        over a while, not at one instant), for at most ``GATHER_WINDOWS`` such windows.
        """
        window = self.flow.settings.wave_seconds
        deadline = self.flow.clock() + window * GATHER_WINDOWS
        while True:
            last = max((entry["queued_at"] for entry in self.queue().values()), default=0)
            quiet_until = min(last + window, deadline)
            now = self.flow.clock()
            if now >= quiet_until:
                return
            self.flow.sleep(min(quiet_until - now, 1.0))

    def _running_wave(self, lease, run):
        """The lease of another live wave, which will take this node: read under the lock."""
        with self.registry.lock:
            held = lease.holder()
        if (
            held is not None
            and held.get("node") == joins.WAVE_HOLDER
            and held["run"] != run
            and not lease.expired(held)
        ):
            return held
        return None

    def _enqueue(self, node_id, run):
        with self.registry.lock:
            queue = self.queue()
            queue[node_id] = {"run": run, "queued_at": self.flow.clock()}
            self.cache.store(registry.CLUSTER_BANK, QUEUE_KEY, queue)
        self.cache.store(
            joins.JOINS_BANK,
            node_id,
            {"node": node_id, "run": run, "status": "queued", "queued_at": self.flow.clock()},
        )

    def _dequeue(self, node_id):
        with self.registry.lock:
            queue = self.queue()
            queue.pop(node_id, None)
            self.cache.store(registry.CLUSTER_BANK, QUEUE_KEY, queue)

    def _take_queue(self, run):
        fence = self.flow.fence(run, "the join queue is not taken")
        with self.registry.lock:
            fence()
            queue = self.queue()
            self.cache.store(registry.CLUSTER_BANK, QUEUE_KEY, {})
        return sorted(queue)

    def _queued(self):
        return bool(self.queue())

    def queue(self):
        """The nodes queued for the next wave: {node: {run, queued_at}}."""
        return dict(self.cache.fetch(registry.CLUSTER_BANK, QUEUE_KEY) or {})

    def current(self):
        """The record of the running (or last) wave, or None."""
        pointer = self.cache.fetch(registry.CLUSTER_BANK, CURRENT_WAVE_KEY) or {}
        return self.cache.fetch(WAVES_BANK, pointer["id"]) if pointer.get("id") else None

    # --- one wave ---

    def run_wave(self, nodes, run, number=1):
        """Join ``nodes`` as one wave under ``run``'s lease; returns the wave's record."""
        wave = self._begin(nodes, run, number)
        self.flow.heartbeat = lambda: self._renew(run)
        try:
            self._run(wave)
        except joins.NotOwner:
            raise  # the successor that took the lease over rolls this wave back
        except Exception as err:  # any failure rolls the wave back, and the next wave runs
            self._fail_wave(wave, err)
        finally:
            self.flow.heartbeat = None
        return summary(wave)

    def _renew(self, run):
        try:
            self.flow.join_lease().renew(run)
        except leases.LeaseLost as lost:
            raise joins.NotOwner(f"{lost}; the wave stops") from lost

    def _begin(self, nodes, run, number):
        stored = self.registry.assignment() or {"version": 0, "assignments": {}}
        wave = {
            "id": f"{run}-{number}",
            "run": run,
            "nodes": list(nodes),
            "started_at": self.flow.clock(),
            "status": "running",
            "phase": "health",
            "phase_started": {"health": self.flow.clock()},
            "joining": list(nodes),
            "active": [],
            "failed": {},
            "failing": [],  # failed at configure, marked failed once their roles are gone
            "rounds": 0,
            "checkpoint": {
                "version": stored["version"],
                "assignments": stored["assignments"],
                "scale": self.registry.summary()["scale"],
            },
            "minion_checkpoints": {},
            "changed": [],
            "dependents": [],
            "configured": [],
            "error": None,
        }
        self.flow.store_fenced(WAVES_BANK, wave["id"], wave, run, "the wave record")
        self.flow.store_fenced(
            registry.CLUSTER_BANK, CURRENT_WAVE_KEY, {"id": wave["id"]}, run, "the wave pointer"
        )
        for node_id in nodes:
            self._node_record(wave, node_id, status="running", step="health", done=["start"])
        return wave

    def _run(self, wave):
        self._health(wave)
        configured_for = self.flow.configured_scale()
        while True:
            wave["rounds"] += 1
            solved, touched = self._checkpointed_placement(wave, configured_for)
            if not wave["joining"] and not self._changes(solved):
                break  # every node failed, and the members hold what they held
            self._phase(wave, "assign")
            changes = self._assign(wave, solved)
            self._mark_failing(wave)
            self._phase(wave, "configure")
            failures, scale_done = self._configure(wave, solved, changes, touched, configured_for)
            if scale_done:
                configured_for = self.registry.summary()["scale"]
            if not failures:
                break
            for node_id, problems in failures.items():
                error = "configuration failed: " + problems
                self._fail_node(wave, node_id, "configure", error, mark=False)
                wave["failing"].append(node_id)
            self._rollback_nodes(wave, failures)
        self._mark_failing(wave)
        self._phase(wave, "finish")
        for node_id in list(wave["joining"]):
            try:
                self.flow.activate(node_id)
            except joins.JoinFailed as err:
                self._fail_node(wave, node_id, "finish", str(err), mark=False)
                continue
            wave["active"].append(node_id)
            self._node_record(wave, node_id, status="active", step="finish", finished=True)
        wave["joining"] = []
        wave.update(status="done", finished_at=self.flow.clock())
        self._save(wave)

    def _phase(self, wave, phase):
        wave["phase"] = phase
        wave["phase_started"].setdefault(phase, self.flow.clock())
        self._save(wave)
        for node_id in wave["joining"]:
            self._node_record(wave, node_id, step=phase)

    # --- the phases ---

    def _health(self, wave):
        flow = self.flow
        silent = self._ping(wave["joining"])
        for node_id in sorted(silent):
            self._fail_node(
                wave,
                node_id,
                "health",
                f"{node_id}: its minion did not answer within {flow.settings.minion_wait:g} s",
            )
        if not wave["joining"]:
            return
        before = {node_id: flow.registration_ms(node_id) for node_id in wave["joining"]}
        answers = flow.call(wave["joining"], "eos_cluster.register", timeout=60)
        for node_id in list(wave["joining"]):
            problem = joins.registration_problem(node_id, answers.get(node_id))
            if problem:
                self._fail_node(wave, node_id, "health", problem)
        deadline = flow.clock() + flow.settings.minion_wait
        while True:
            late = [
                node_id
                for node_id in wave["joining"]
                if flow.registration_ms(node_id) <= before[node_id]
            ]
            if not late or flow.clock() >= deadline:
                break
            flow.sleep(0.5)
        for node_id in late:
            self._fail_node(
                wave,
                node_id,
                "health",
                f"timed out after {flow.settings.minion_wait:g} s waiting for the registration "
                f"of {node_id} to reach the registry (is the eos/cluster/register reaction "
                "configured?)",
            )

    def _ping(self, nodes):
        """The nodes that did not answer ``test.ping`` within ``minion_wait``."""
        flow = self.flow
        deadline = flow.clock() + flow.settings.minion_wait
        silent = set(nodes)
        while silent:
            answers = flow.call(sorted(silent), "test.ping", timeout=10)
            silent -= {node for node, answer in answers.items() if answer.ret is True}
            if not silent or flow.clock() >= deadline:
                break
            flow.sleep(2.0)
        return silent

    def _checkpointed_placement(self, wave, configured_for):
        """
        Roles placed over the members and the wave, and every node that placement touches
        checkpointed; a wave node whose checkpoint fails fails alone, and roles are placed
        again. Returns (solved, touched).
        """
        tried = set(wave["minion_checkpoints"])
        while True:
            solved = self.flow.solve_roles(
                self.flow.placement_members(wave["joining"]), leaving=wave["failing"]
            )
            touched = self._touched(wave, solved, configured_for)
            needed = sorted(set(touched) - tried)
            if not needed:
                return solved, touched
            self._phase(wave, "checkpoint")
            tried |= set(needed)
            answers = self.flow.call(
                needed, "eos_cluster.checkpoint", kwargs={"label": wave["id"]}, timeout=120
            )
            for minion, answer in answers.items():
                if not answer.retcode and isinstance(answer.ret, dict) and "id" in answer.ret:
                    wave["minion_checkpoints"][minion] = answer.ret["id"]
            for node_id in needed:
                if node_id in wave["minion_checkpoints"]:
                    continue
                if node_id in wave["joining"]:
                    self._fail_node(
                        wave,
                        node_id,
                        "checkpoint",
                        f"{node_id}: eos_cluster.checkpoint failed: "
                        f"{joins.short(answers.get(node_id))}",
                    )
                else:
                    log.warning("eos_join: no checkpoint on %s (no answer)", node_id)
            self._save(wave)

    def _touched(self, wave, solved, configured_for):
        """The nodes ``solved`` would configure: wave, changed, dependents; all on a new scale."""
        changes = self._changes(solved)
        reachable = self._reachable(wave)
        touched = {*wave["joining"], *changes}
        touched |= set(joins.dependents(changes, solved["assignments"]))
        if self.registry.summary()["scale"] != configured_for:
            touched |= reachable
        return sorted(touched & (reachable | set(wave["joining"])))

    def _reachable(self, wave):
        """
        The members the master can talk to, and the wave's nodes: not the accepted nodes
        queued for a later wave, which this one neither places nor configures.
        """
        return {
            record["id"]
            for record in self.flow.placement_members(wave["joining"])
            if record["status"] in registry.REACHABLE_STATUSES
        }

    def _changes(self, solved):
        """
        {id: {old, new}} of the nodes whose roles storing ``solved`` would change, as
        ``Registry.store_assignment`` reckons them: the nodes it names and the nodes the
        stored assignment names (a node failed in this wave loses the roles it was given).
        """
        wanted = solved["assignments"]
        stored = (self.registry.assignment() or {}).get("assignments", {})
        changes = {}
        for node_id in sorted(set(wanted) | set(stored)):
            record = self.registry.get(node_id)
            if record is None:
                continue
            old = list(record.get("roles") or [])
            roleless = record["status"] in registry.ROLELESS_STATUSES
            new = [] if roleless else list(wanted.get(node_id, []))
            if old != new:
                changes[node_id] = {"old": old, "new": new}
        return changes

    def _assign(self, wave, solved):
        stored = self.registry.store_assignment(
            solved["assignments"], fence=self.flow.fence(wave["run"])
        )
        self.flow.fire(
            joins.ROLES_CHANGED_TAG,
            {"version": stored["version"], "changes": stored["changes"], "wave": wave["id"]},
        )
        wave["changed"] = sorted({*wave["changed"], *stored["changes"]})
        dependents = joins.dependents(stored["changes"], solved["assignments"])
        wave["dependents"] = sorted({*wave["dependents"], *dependents} - set(wave["changed"]))
        wave["assignment_version"] = stored["version"]
        self._save(wave)
        return stored["changes"]

    def _configure(self, wave, solved, changes, touched, configured_for):
        """
        Pillar and states on the touched nodes of this round. Returns ({wave node: problems}
        for the wave nodes whose states failed, whether the members got the new scale);
        WaveFailed when a member that was already in the cluster failed.
        """
        flow = self.flow
        reachable = self._reachable(wave)
        joining = set(wave["joining"])
        changed = set(changes)
        targets = sorted((joining | changed) & (reachable | joining))
        moved = joins.dependents(changes, solved["assignments"])
        followers = sorted(set(moved) & reachable - set(targets))
        scale_changed = self.registry.summary()["scale"] != configured_for
        others = sorted(set(touched) - set(targets) - set(followers)) if scale_changed else []
        # Recorded before anything runs: a failure midway must roll back every node touched.
        wave["configured"] = sorted({*wave["configured"], *targets, *followers, *others})
        self._save(wave)
        everyone = sorted({*targets, *followers, *others})
        flow.batched(everyone, "saltutil.refresh_pillar", kwargs={"wait": True})
        results = flow.apply_state(targets)
        if followers:
            results.update(flow.apply_state(followers))
        if others:
            results.update(flow.run_state(others, joins.COMMON_STATE))
        problems = {minion: lines for minion, lines in results.items() if lines}
        members = sorted(set(problems) - joining)
        if members:
            raise WaveFailed(
                "configuration failed on members already in the cluster: "
                + " | ".join(f"{minion}: {problems[minion][0]}" for minion in members[:10])
            )
        return (
            {node: " | ".join(lines[:5]) for node, lines in problems.items()},
            scale_changed,
        )

    def _rollback_nodes(self, wave, nodes):
        """The minions of wave nodes that failed their configuration, back to their checkpoints."""
        outcome = self.flow.rollback_minions(
            {"minion_checkpoints": wave["minion_checkpoints"], "configured": sorted(nodes)}
        )
        wave.setdefault("node_rollbacks", {}).update(outcome)
        self._save(wave)

    # --- failures ---

    def _fail_node(self, wave, node_id, step, error, mark=True):
        """``node_id`` leaves the wave, failed at ``step``; the rest of the wave goes on."""
        log.warning("eos_join: %s fails in wave %s at %s: %s", node_id, wave["id"], step, error)
        if node_id in wave["joining"]:
            wave["joining"].remove(node_id)
        wave["failed"][node_id] = {"step": step, "error": error}
        self._save(wave)
        if mark:
            self.flow.mark_failed(node_id, step, error)
        self._node_record(
            wave, node_id, status="failed", failed_step=step, error=error, finished=True
        )

    def _mark_failing(self, wave):
        """
        The nodes that failed their configuration are marked failed once the assignment
        without them is stored: nobody reads a failed node that still holds roles.
        """
        for node_id in wave["failing"]:
            failure = wave["failed"][node_id]
            self.flow.mark_failed(node_id, failure["step"], failure["error"])
        wave["failing"] = []
        self._save(wave)

    def _fail_wave(self, wave, err):
        """Roll the whole wave back (see the module's rule); the lease stays with the run."""
        step = wave["phase"]
        error = f"the wave {wave['id']} failed at {step}: {err}"
        log.error("eos_join: %s; rolling the wave back", error)
        failing = list(wave.get("failing", []))
        nodes = list(wave["joining"])
        for node_id in nodes:
            wave["failed"][node_id] = {"step": step, "error": error}
        wave.update(joining=[], failing=[])
        wave["error"] = error
        for node_id in failing:  # failed at configure before the wave did: their own error
            self.flow.mark_failed(node_id, "configure", wave["failed"][node_id]["error"])
        self.flow.undo(wave, wave["run"], [*nodes, *failing], step, error)
        self._save(wave)
        for node_id in nodes:
            self._node_record(
                wave, node_id, status="failed", failed_step=step, error=error, finished=True
            )
        return nodes

    def undo_abandoned(self, held, run, rejoin=True, queue_led=False):
        """
        Roll back the wave of ``held`` (an expired wave lease), now held by ``run``; with
        ``rejoin``, accept its nodes again, and the queued ones unless ``queue_led`` (``run``
        leads waves, and takes the queue), so that they join afresh.
        """
        wave = self.current()
        queued = sorted(self.queue())
        rolled_back = []
        if wave is not None and wave["run"] == held["run"] and wave["status"] == "running":
            log.warning(
                "eos_join: the wave %s was abandoned at %s; rolling it back",
                wave["id"],
                wave["phase"],
            )
            wave["run"] = run  # its writes are this run's now
            error = f"abandoned at {wave['phase']}: the lease of run {held['run']} expired"
            rolled_back = self._fail_wave(wave, joins.JoinFailed(error))
        rejoining = []
        if queue_led:
            queued = []
        if rejoin:
            for node_id in queued:
                self._dequeue(node_id)
            for node_id in sorted({*rolled_back, *queued}):
                rejoining += self._accept_again(node_id, held["run"])
        return {
            "abandoned_run": held["run"],
            "wave": (wave or {}).get("id"),
            "rolled_back": bool(rolled_back),
            "nodes": rolled_back,
            "rejoining": rejoining,
        }

    def _accept_again(self, node_id, dead_run):
        record = self.registry.get(node_id) or {}
        reason = f"joins again after the wave of run {dead_run} was abandoned"
        if record.get("status") == "accepted":
            # Queued, never in a wave: its token is used up, so it gets a new acceptance.
            self.registry.set_status(node_id, "failed", reason)
        if (self.registry.get(node_id) or {}).get("status") != "failed":
            return []
        self.registry.accept(node_id, reason)
        return [node_id]

    # --- records ---

    def _save(self, wave):
        self.flow.store_fenced(WAVES_BANK, wave["id"], wave, wave["run"], "the wave record")

    def _node_record(self, wave, node_id, finished=False, **fields):
        record = self.flow.record(node_id) or {}
        if record.get("wave") != wave["id"]:
            record = {
                "node": node_id,
                "run": wave["run"],
                "wave": wave["id"],
                "started_at": wave["started_at"],
                "queued_at": record.get("queued_at"),
                "done": [],
                "failed_step": None,
                "error": None,
            }
        step = fields.get("step")
        if step and record.get("step") and record["step"] != step:
            record["done"] = [*record["done"], record["step"]]
        record.update(fields, run=wave["run"])
        if finished:
            record["finished_at"] = self.flow.clock()
            if record.get("status") == "active":
                record["done"] = [*record["done"], "finish"]
        self.flow.store_fenced(joins.JOINS_BANK, node_id, record, wave["run"], "the join record")


def summary(wave):
    """What a wave did, in a few lines for the orchestration's return."""
    return {
        "wave": wave["id"],
        "nodes": wave["nodes"],
        "active": wave["active"],
        "failed": wave["failed"],
        "rounds": wave["rounds"],
        "seconds": round((wave.get("finished_at") or wave["started_at"]) - wave["started_at"], 1),
        "error": wave["error"],
    }
