"""
Adding a node to the cluster, step by step, with a checkpoint and a rollback.

Accepted nodes join in waves (``cluster.wave``, built from this flow's pieces); these steps
join one node by hand, each a function here, called through the ``eos_join`` runner:

``start``
    take the cluster's join lease (one join at a time: joins that arrive together wait their
    turn, so no assignment is computed from a stale registry) and checkpoint the master side:
    the assignment version, every node's roles, the scale.
``health``
    wait for the node's minion to answer, ask it for a fresh signed registration (resources
    and health checks), stop when a critical check fails.
``checkpoint``
    ``eos_cluster.checkpoint`` on the node and every member (EOS files, minion EOS config,
    role services).
``assign``
    place roles over the active members, the members that already hold roles, and the node;
    store the assignment as a new version.
``configure``
    refresh pillar on every member; run the configuration state on the node and on every node
    whose roles changed; when the scale changed, re-apply the EOS part of the role states
    (thresholds, beacon interval) on every other member. The default state is highstate
    where the site's top file targets the node, and ``eos.roles`` (the node's role states)
    where it does not: a master configured with the README's block alone, with no top file,
    configures its nodes.
``finish``
    mark the node active (``eos/cluster/node/<id>/active``) and release the lease.
``rollback``
    after any failed step: restore the checkpointed assignment, mark the node failed with the
    step and the error (``eos/cluster/node/<id>/failed``), roll the minions back to their
    checkpoints, re-apply the previous roles on the nodes that changed, release the lease.

Every step names the run (a token the orchestration makes once) and acts only while that run
holds the lease, so a stale or repeated orchestration cannot act on another run's join. The
lease is a ``lease.Lease`` with fencing tokens: the assignment and the join record a run writes
are checked against it under the registry's lock, in the same step as the write, so a run that
stalled past its lease and was taken over writes nothing after its successor.
Running the whole flow again for a node that is already active changes nothing: the
assignment has no churn, the configuration state is idempotent, the node stays active.

The Salt side (the registry, minion calls, events) comes in as plain objects, so every
decision here is testable without daemons.
"""

import dataclasses
import logging
import time
from dataclasses import dataclass
from dataclasses import field

from saltext.eos.utils import config
from saltext.eos.utils import errors
from saltext.eos.utils import master
from saltext.eos.utils.cluster import lease as leases
from saltext.eos.utils.cluster import placement
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import roles as role_rules

log = logging.getLogger(__name__)

JOINS_BANK = "eos/joins"
LEASE_KEY = "join_lease"  # in registry.CLUSTER_BANK
LEASE_TOKEN_KEY = LEASE_KEY + leases.TOKEN_SUFFIX  # the last fencing token given out
RECOVERY_HOLDER = "recovery"  # the lease's node field while an abandoned join is rolled back
WAVE_HOLDER = "wave"  # the lease's node field while a wave of joins runs (cluster.wave)
# The scale the members were last configured for (by the last join that finished). The
# registry's own scale moves as soon as a node is accepted, before its join runs.
CONFIGURED_SCALE_KEY = "configured_scale"
STEPS = ("start", "health", "checkpoint", "assign", "configure", "finish")
JOINABLE_STATUSES = ("accepted", "active")
COMMON_STATE = "eos.roles.common"
ROLES_STATE = "eos.roles"
HIGHSTATE = "highstate"
ROLES_CHANGED_TAG = "eos/roles/changed"
FAILED_TAG = "eos/cluster/node/{id}/failed"

# The roles configured from the holders of others (roles.CONFIGURED_FROM) are configured
# again when those change hands, after the nodes that changed have published themselves.
CONFIGURED_FROM = role_rules.CONFIGURED_FROM

DEFAULTS = {
    "lease_wait": 900,  # seconds a join waits for the one before it
    "lease_seconds": 1800,  # a lease not renewed for this long belongs to a dead run
    "minion_wait": 120,  # seconds for the node's minion to answer and register
    # highstate (eos.roles on nodes no top file targets), or an SLS name such as eos.roles
    "state": HIGHSTATE,
    "state_timeout": 900,
    # a wave gathers until no node was queued for this long (cluster.wave.GATHER_WINDOWS at most)
    "wave_seconds": 5,
    # nodes one state call configures at once; a wave of 1,000 runs them in these batches
    "batch": 20,
}
MINIMUMS = {"wave_seconds": 0}  # every other number is at least 1


class JoinFailed(errors.OperationFailed):
    """A step failed; the message says what and where, for the operator and the event."""


class NotOwner(JoinFailed):
    """The run does not hold the join lease (never took it, or lost it)."""


@dataclass(frozen=True)
class Settings:
    lease_wait: float
    lease_seconds: float
    minion_wait: float
    state: str
    state_timeout: float
    wave_seconds: float = DEFAULTS["wave_seconds"]
    batch: int = DEFAULTS["batch"]


def settings(layers):
    """``eos:join`` from ``config.Layers``: times in seconds; ``state``: highstate or an SLS."""
    values = {}
    for key, default in DEFAULTS.items():
        value = layers.get("join", key, default=default)
        if key == "state":
            if not isinstance(value, str) or not value.strip():
                raise config.InvalidConfig(
                    f"{config.key_name('join', key)}: {value!r} is not 'highstate' or an SLS name"
                )
        else:
            value = config.number(value, config.key_name("join", key), minimum=MINIMUMS.get(key, 1))
        if key == "batch":
            if value != int(value):
                raise config.InvalidConfig(
                    f"{config.key_name('join', key)}: {value!r} is not a whole number of nodes"
                )
            value = int(value)
        values[key] = value
    return Settings(**values)


@dataclass
class Join:
    """The Salt side of a join: the registry, minion calls, events and the clock."""

    registry: registry.Registry
    call: object  # call(targets, fun, args=(), kwargs=None, timeout=None) -> {id: master.Answer}
    fire: object  # fire(tag, data)
    layers: config.Layers
    settings: Settings
    clock: object = time.time
    sleep: object = time.sleep
    progress: list = field(default_factory=list)
    master: str | None = None  # the id of the master running the flow, named in its lease
    # Called between state batches, so that a wave longer than its lease keeps it (or stops).
    heartbeat: object = None

    # --- the lease and the join record ---

    @property
    def cache(self):
        return self.registry.cache

    def join_lease(self):
        """
        The join lease (``lease.Lease``). Its times are the registry lock's clock (the
        coordination store's, alike for every master) unless this flow was given a clock.
        """
        lock = self.registry.lock
        return leases.Lease(
            cache=self.cache,
            lock=lock,
            bank=registry.CLUSTER_BANK,
            key=LEASE_KEY,
            kind="join",
            seconds=self.settings.lease_seconds,
            clock=self.clock if self.clock is not time.time else getattr(lock, "now", time.time),
            master=self.master,
        )

    def lease(self):
        return self.join_lease().holder()

    def record(self, node_id):
        return self.cache.fetch(JOINS_BANK, node_id) or None

    def _save(self, record, run):
        """
        Store a join record written by ``run``, renewing its lease: under the lock, fenced, so
        a run that lost its lease (another run took it over) cannot write after its successor.
        """
        self.store_fenced(JOINS_BANK, record["node"], record, run, "the join record")

    def store_fenced(self, bank, key, record, run, what):
        """``record`` stored at ``bank``/``key`` while ``run`` holds the lease (renewed)."""
        refused = f"{what} is not written"
        lease = self.join_lease()
        try:
            lease.renew(run)
        except leases.LeaseLost as lost:
            raise NotOwner(f"{lost}; {refused}") from lost
        fence = self._fence(run, refused, lease)
        with self.registry.lock:
            fence()
            self.cache.store(bank, key, record)

    def take_lease(self, node_id, run, wait=None):
        """
        The cluster's join lease for ``run`` (naming ``node_id``, or the replacement), waiting
        up to ``wait`` (default ``lease_wait``) while another run holds it; JoinFailed when it
        stays held. Returns the expired lease of another run it took over, else None.
        """
        deadline = self.clock() + (self.settings.lease_wait if wait is None else wait)
        lease = self.join_lease()
        while True:
            try:
                _, replaced = lease.acquire(run, node=node_id)
            except leases.LeaseBusy as busy:
                held = busy.holder
                if self.clock() >= deadline:
                    raise JoinFailed(
                        f"the join of {held.get('node')} (run {held['run']}) still holds the "
                        f"lease after {self.settings.lease_wait:g} s; {node_id} did not start"
                    ) from busy
                self.sleep(1.0)
                continue
            if replaced is not None:
                log.warning(
                    "eos_join: the lease of %s (run %s) expired; %s takes over",
                    replaced.get("node"),
                    replaced["run"],
                    node_id,
                )
                if node_id != RECOVERY_HOLDER:
                    # This run's own node joins now anyway: it is not accepted once more.
                    self.undo_abandoned(replaced, run, rejoin=replaced.get("node") != node_id)
            return replaced

    def fence(self, run, refused="its assignment is not stored"):
        """
        A check for ``registry.store_assignment(fence=...)``: NotOwner unless ``run`` still
        holds the join lease, unexpired. It runs under the registry's lock, atomically with
        the write, so a run that lost its lease cannot write over its successor's assignment.
        """
        return self._fence(run, refused)

    def _fence(self, run, refused, lease=None):
        check = (lease or self.join_lease()).fence(run)

        def fenced():
            try:
                check()
            except leases.LeaseLost as lost:
                raise NotOwner(f"{lost}; {refused}") from lost

        return fenced

    def _own(self, node_id, run):
        """The join record of this run, renewing its lease; NotOwner when another run holds it."""
        try:
            self.join_lease().renew(run, node=node_id)
        except leases.LeaseLost as lost:
            held = lost.holder
            holder = f"{held.get('node')} (run {held['run']})" if held else "nobody"
            raise NotOwner(
                f"run {run} of {node_id} does not hold the join lease ({holder} does)"
            ) from lost
        joined = self.record(node_id)
        if joined is None or joined["run"] != run:
            raise NotOwner(f"no join record of run {run} for {node_id}")
        return joined

    def release_lease(self, run):
        self.join_lease().release(run)

    def _step(self, node_id, run, name, work):
        """Run ``work(joined)`` as step ``name``; a failure is recorded for the rollback."""
        joined = self._own(node_id, run)
        joined["step"] = name
        self._save(joined, run)
        try:
            outcome = work(joined)
        except JoinFailed as err:
            joined.update(failed_step=name, error=str(err))
            self._save_failure(joined, run, err)
            raise
        joined.setdefault("done", []).append(name)
        self._save(joined, run)
        return outcome

    def _save_failure(self, joined, run, err):
        try:
            self._save(joined, run)
        except NotOwner:
            if not isinstance(err, NotOwner):
                raise
            # The step failed as its run lost the lease: the successor owns the record now.

    # --- the steps ---

    def start(self, node_id, run, token=None):
        """
        Take the lease and checkpoint the master side; returns the checkpoint.

        ``token``: the join token of the accepted event (the reactor always passes it). It
        must be the node's current acceptance's, and is used up, so a forged or repeated
        event starts nothing. Without it (an operator running the orchestration by hand),
        an accepted or active node joins again.
        """
        self.joinable(node_id, token)
        self.take_lease(node_id, run)
        stored = self.registry.assignment() or {"version": 0, "assignments": {}}
        summary = self.registry.summary()
        joined = {
            "node": node_id,
            "run": run,
            "started_at": self.clock(),
            "status": "running",
            "step": "start",
            "done": ["start"],
            "checkpoint": {
                "version": stored["version"],
                "assignments": stored["assignments"],
                "scale": summary["scale"],
            },
            "minion_checkpoints": {},
            "changed": [],
            "configured": [],
            "failed_step": None,
            "error": None,
        }
        self._save(joined, run)
        return {"node": node_id, "run": run, "checkpoint": joined["checkpoint"]}

    def joinable(self, node_id, token=None):
        """
        JoinFailed unless ``node_id`` may join now: accepted (or active), and, given the
        ``token`` of its accepted event, that acceptance's (the token is used up).
        """
        registry.check_node_id(node_id)
        if token is not None:
            try:
                self.registry.claim_join(node_id, token)
            except registry.StaleJoin as err:
                raise JoinFailed(str(err)) from err
        record = self.registry.get(node_id)
        if record is None:
            raise JoinFailed(f"{node_id}: no such node in the registry")
        if record["status"] not in JOINABLE_STATUSES:
            hint = {
                "pending": "accept it first (salt-run eos_cluster.accept)",
                "failed": "fix the cause, then accept it again (salt-run eos_cluster.accept)",
                "rejected": "it was rejected",
                "unreachable": "it does not answer",
                "down": "it is down: accept it again once it is back",
                "drained": "it was drained: accept it again to bring it back",
            }.get(record["status"], "")
            raise JoinFailed(f"{node_id} is {record['status']}, not accepted: {hint}")

    def health(self, node_id, run):
        """The node answers, registers afresh and passes every critical health check."""
        return self._step(node_id, run, "health", lambda joined: self._health(node_id, joined))

    def _health(self, node_id, joined):
        self._wait_for_minion(node_id)
        before = self.registration_ms(node_id)
        answer = self.call([node_id], "eos_cluster.register", timeout=60).get(node_id)
        problem = registration_problem(node_id, answer)
        if problem:
            raise JoinFailed(problem)
        # The registration travels as an event through the reactor; place the node only once
        # its resources are recorded.
        self._wait(
            lambda: self.registration_ms(node_id) > before,
            f"the registration of {node_id} to reach the registry "
            "(is the eos/cluster/register reaction configured?)",
        )
        return {"health": answer.ret.get("health")}

    def registration_ms(self, node_id):
        return (self.registry.get(node_id) or {}).get("registration_sent_at_ms") or 0

    def _wait_for_minion(self, node_id):
        deadline = self.clock() + self.settings.minion_wait
        while True:
            answer = self.call([node_id], "test.ping", timeout=10).get(node_id)
            if answer is not None and answer.ret is True:
                return
            if self.clock() >= deadline:
                raise JoinFailed(
                    f"{node_id}: its minion did not answer within {self.settings.minion_wait:g} s"
                )
            self.sleep(2.0)

    def _wait(self, done, what):
        deadline = self.clock() + self.settings.minion_wait
        while not done():
            if self.clock() >= deadline:
                raise JoinFailed(
                    f"timed out after {self.settings.minion_wait:g} s waiting for {what}"
                )
            self.sleep(0.5)

    def checkpoint(self, node_id, run):
        """``eos_cluster.checkpoint`` on the node and every member."""
        return self._step(
            node_id, run, "checkpoint", lambda joined: self._checkpoint(node_id, run, joined)
        )

    def _checkpoint(self, node_id, run, joined):
        targets = sorted({node_id, *self.reachable_members()})
        label = f"join-{node_id}"
        answers = self.call(targets, "eos_cluster.checkpoint", kwargs={"label": label}, timeout=120)
        taken = {
            minion: answer.ret["id"]
            for minion, answer in answers.items()
            if not answer.retcode and isinstance(answer.ret, dict) and "id" in answer.ret
        }
        if node_id not in taken:
            raise JoinFailed(
                f"{node_id}: eos_cluster.checkpoint failed: {short(answers.get(node_id))}"
            )
        missing = sorted(set(targets) - set(taken))
        if missing:
            log.warning("eos_join: no checkpoint on %s (no answer)", ", ".join(missing))
        joined["minion_checkpoints"] = taken
        return {"checkpoints": taken, "unreachable": missing}

    def assign(self, node_id, run):
        """Place roles over the settled members and the node; store the new assignment."""
        return self._step(node_id, run, "assign", lambda joined: self._assign(node_id, joined))

    def _assign(self, node_id, joined):
        solved = self.solve_roles(self.placement_members(node_id))
        if not solved["assignments"].get(node_id):
            reasons = "; ".join(item["reason"] for item in solved["unplaced"]) or "no role needed"
            log.info("eos_join: %s gets no role: %s", node_id, reasons)
        stored = self.registry.store_assignment(
            solved["assignments"], fence=self.fence(joined["run"])
        )
        self.fire(ROLES_CHANGED_TAG, {"version": stored["version"], "changes": stored["changes"]})
        joined["changed"] = sorted(stored["changes"])
        joined["dependents"] = sorted(
            set(dependents(stored["changes"], solved["assignments"])) - set(joined["changed"])
        )
        return {
            "version": stored["version"],
            "changes": stored["changes"],
            "roles": solved["assignments"].get(node_id, []),
            "unplaced": [item["reason"] for item in solved["unplaced"]],
        }

    def solve_roles(self, members, leaving=()):
        """
        The solver's placement (``as_dict``) over ``members`` (records) under the site's
        policy, the cordons and ``leaving`` (nodes that must end with no role).
        """
        try:
            catalogue, policy = role_rules.from_layers(self.layers)
            policy = placement_policy(policy, members, leaving)
            return placement.solve(
                [
                    registry.as_role_node(record)
                    for record in members
                    if record["id"] not in leaving
                ],
                catalogue,
                policy,
            ).as_dict()
        except config.InvalidConfig as err:
            raise JoinFailed(f"role placement: {err}") from err

    def placement_members(self, joining):
        """
        Active nodes, accepted nodes that already hold roles, and the joining node(s) (an id
        or a set of ids). Accepted nodes still waiting for their own join are left for it:
        placing them here would make this join configure (and answer for) nodes it was not
        asked to add.
        """
        joining = {joining} if isinstance(joining, str) else set(joining)
        chosen = []
        for status in registry.MEMBER_STATUSES:
            for record in self.registry.records(status):
                if record["id"] in joining or status == "active" or record.get("roles"):
                    chosen.append(record)
        return chosen

    def reachable_members(self):
        """The members the master can talk to (an unreachable one would only time out)."""
        return [
            record["id"]
            for status in registry.REACHABLE_STATUSES
            for record in self.registry.records(status)
        ]

    def configure(self, node_id, run):
        """Refresh pillar everywhere; configure the node and the nodes whose roles changed."""
        return self._step(
            node_id, run, "configure", lambda joined: self._configure(node_id, joined)
        )

    def _configure(self, node_id, joined):
        members = sorted({node_id, *self.reachable_members()})
        self.call(members, "saltutil.refresh_pillar", kwargs={"wait": True}, timeout=60)
        # An unreachable member keeps its roles; one whose roles changed is configured when
        # it comes back (its return is a join).
        targets = sorted({node_id, *joined["changed"]} & set(members))
        followers = sorted(set(joined.get("dependents", [])) & set(members) - {node_id})
        scale_changed = self.registry.summary()["scale"] != self.configured_scale()
        others = sorted(set(members) - set(targets) - set(followers)) if scale_changed else []
        # Recorded before anything runs: a failure midway must roll back every node touched.
        joined["configured"] = sorted({*targets, *followers, *others})
        self._save(joined, joined["run"])
        results = self.apply_state(targets)
        if followers:
            results.update(self.apply_state(followers))
        if others:
            results.update(self.run_state(others, COMMON_STATE))
        problems = [
            f"{minion}: {problem}" for minion in sorted(results) for problem in results[minion]
        ]
        if problems:
            raise JoinFailed("configuration failed: " + " | ".join(problems[:10]))
        return {
            "configured": targets,
            "followers": followers,
            "scale_changed": scale_changed,
            "refreshed": others,
        }

    def apply_state(self, targets):
        """The configuration state on ``targets``: {minion: [problems]} ([] when it passed)."""
        if self.settings.state != HIGHSTATE:
            return self.run_state(targets, self.settings.state)
        tops = self.batched(targets, "state.show_top")
        topped = [minion for minion in targets if targeted_by_top(tops.get(minion))]
        untopped = [minion for minion in targets if minion not in topped]
        results = {}
        if topped:
            answers = self.batched(topped, "state.highstate")
            results.update({minion: state_problems(answers.get(minion)) for minion in topped})
        if untopped:
            log.info("eos_join: no top file targets %s; applying %s", untopped, ROLES_STATE)
            results.update(self.run_state(untopped, ROLES_STATE))
        return results

    def run_state(self, targets, sls):
        answers = self.batched(targets, "state.apply", args=[sls])
        return {minion: state_problems(answers.get(minion)) for minion in targets}

    def batched(self, targets, fun, args=(), kwargs=None):
        """
        ``fun`` on ``targets``, ``batch`` minions at a time (a wave of 1,000 nodes does not
        run 1,000 state runs at once on the master's file server and pillar).
        """
        answers = {}
        targets = list(targets)
        for first in range(0, len(targets), self.settings.batch):
            if first and self.heartbeat is not None:
                self.heartbeat()
            answers.update(
                self.call(
                    targets[first : first + self.settings.batch],
                    fun,
                    args=args,
                    kwargs=kwargs,
                    timeout=self.settings.state_timeout,
                )
            )
        return answers

    def finish(self, node_id, run):
        """Mark the node active and release the lease."""
        roles = self._step(node_id, run, "finish", lambda joined: self.activate(node_id))
        joined = self._own(node_id, run)
        joined.update(status="active", finished_at=self.clock())
        self._save(joined, run)
        self.release_lease(run)
        return {"node": node_id, "status": "active", "roles": roles}

    def activate(self, node_id):
        roles = (self.registry.get(node_id) or {}).get("roles") or []
        try:
            self.registry.set_status(node_id, "active", f"joined with roles {roles or 'none'}")
        except (registry.UnknownNode, registry.InvalidTransition) as err:
            # An operator rejected or removed the node while it joined: the join failed here.
            raise JoinFailed(f"{node_id} cannot become active: {err}") from err
        self.note_configured_scale(node_id)
        return roles

    def configured_scale(self):
        """The scale the members were last configured for, or None."""
        return (self.cache.fetch(registry.CLUSTER_BANK, CONFIGURED_SCALE_KEY) or {}).get("scale")

    def note_configured_scale(self, by):
        """The members are configured for the registry's current scale now (``by`` did it)."""
        self.cache.store(
            registry.CLUSTER_BANK,
            CONFIGURED_SCALE_KEY,
            {"scale": self.registry.summary()["scale"], "by": by},
        )

    def rollback(self, node_id, run):
        """
        Undo a failed join of this run: assignment, node status, minion files and services,
        previous roles on the changed nodes. A run that holds no lease has nothing to undo.
        """
        try:
            joined = self._own(node_id, run)
        except NotOwner as err:
            return {"rolled_back": False, "comment": f"nothing to roll back: {err}"}
        try:
            return self._rollback(node_id, run, joined)
        finally:
            self.release_lease(run)

    def _rollback(self, node_id, run, joined):
        step = joined.get("failed_step") or joined.get("step")
        error = joined.get("error") or f"step {step} did not complete"
        undone = self.undo(joined, run, [node_id], step, error)
        self._save(joined, run)
        return {
            "rolled_back": True,
            "node": node_id,
            "failed_step": step,
            "error": error,
            "restored_from": joined["checkpoint"]["version"],
            **undone,
        }

    def undo(self, joined, run, nodes, step, error):
        """
        Undo the join (or wave) ``joined`` of ``run``: its checkpointed assignment back, the
        joining ``nodes`` failed at ``step`` with ``error``, the minions it configured back to
        their checkpoints, the previous roles re-applied on the members whose roles changed.
        ``joined`` gets its outcome (status failed, rollback); the caller stores it.
        """
        restored = self.restore_assignment(joined, run)
        for node_id in nodes:
            self.mark_failed(node_id, step, error)
        minions = self.rollback_minions(joined)
        reapplied = sorted({*joined["changed"], *joined.get("dependents", [])} - set(nodes))
        # The failed node no longer counts: every member's scale and thresholds may be back too.
        members = sorted(self.reachable_members())
        self.call(members, "saltutil.refresh_pillar", kwargs={"wait": True}, timeout=60)
        problems = {}
        if reapplied:
            problems = {m: p for m, p in self.apply_state(reapplied).items() if p}
        undone = {
            "assignment_version": restored["version"],
            "minions": minions,
            "reapplied": reapplied,
            "problems": problems,
        }
        joined.update(status="failed", finished_at=self.clock(), rollback=undone)
        return undone

    def restore_assignment(self, joined, run=None):
        """The checkpointed assignment of ``joined`` again, written under ``run``'s lease."""
        previous = joined["checkpoint"]["assignments"]
        current = (self.registry.assignment() or {}).get("assignments", {})
        if current == previous:
            return {"version": joined["checkpoint"]["version"], "changes": {}}
        existing = {node: roles for node, roles in previous.items() if self.registry.get(node)}
        stored = self.registry.store_assignment(existing, fence=self.fence(run or joined["run"]))
        self.fire(
            ROLES_CHANGED_TAG,
            {
                "version": stored["version"],
                "changes": stored["changes"],
                "restored_from": joined["checkpoint"]["version"],
            },
        )
        return stored

    def recover_abandoned(self):
        """
        Take over a join lease that expired with its join half done (its master died or
        stalled past ``lease_seconds``): roll that join back to its checkpoint and accept the
        node again, so its join starts afresh (on whichever master's reactor gets the event).
        Rolled back, not completed: what the dead run did after its last recorded step (a
        highstate cut off midway) is unknown, and only the checkpoint is known to be whole.
        Returns what was done, or None when no lease is expired. JoinFailed when another
        master is recovering it (nothing waits).
        """
        lease = self.join_lease()
        held = lease.holder()
        if held is None or not lease.expired(held):
            return None
        run = f"recover-{held['run']}"
        replaced = self.take_lease(RECOVERY_HOLDER, run, wait=0)
        try:
            return self.undo_abandoned(replaced or held, run)
        finally:
            self.release_lease(run)

    def undo_abandoned(self, held, run, rejoin=True):
        if held.get("node") == WAVE_HOLDER:
            from saltext.eos.utils.cluster import wave  # a wave is made of this flow's steps

            return wave.Waves(self).undo_abandoned(held, run, rejoin=rejoin)
        node_id = held["node"]
        joined = self.record(node_id)
        if joined is None or joined["run"] != held["run"] or joined["status"] != "running":
            # A replacement's or a finished join's lease: nothing is half done in a join record.
            log.warning("eos_join: the lease of run %s expired; released", held["run"])
            return {"abandoned_run": held["run"], "node": node_id, "rolled_back": False}
        log.warning(
            "eos_join: the join of %s (run %s) was abandoned at step %s; rolling it back",
            node_id,
            held["run"],
            joined["step"],
        )
        joined["error"] = (
            f"abandoned at step {joined['step']}: the lease of run {held['run']} expired "
            "(its master stopped)"
        )
        undone = self._rollback(node_id, run, joined)
        rejoining = rejoin and (self.registry.get(node_id) or {}).get("status") == "failed"
        if rejoining:
            self.registry.accept(node_id, "joins again after an abandoned join")
        return {"abandoned_run": held["run"], **undone, "rejoining": rejoining}

    def mark_failed(self, node_id, step, error):
        record = self.registry.get(node_id)
        if record is None or record["status"] not in ("accepted", "active"):
            return
        outcome = self.registry.set_status(node_id, "failed", f"join failed at {step}: {error}")
        self.fire(
            FAILED_TAG.format(id=node_id),
            {**outcome.record, "step": step, "error": error},
        )

    def rollback_minions(self, joined):
        outcome = {}
        for minion, checkpoint_id in sorted(joined["minion_checkpoints"].items()):
            if minion not in joined.get("configured", []):
                continue
            answer = self.call(
                [minion],
                "eos_cluster.rollback",
                kwargs={"checkpoint_id": checkpoint_id},
                timeout=120,
            ).get(minion)
            outcome[minion] = (
                "restored" if answer is not None and not answer.retcode else short(answer)
            )
        return outcome


def registration_problem(node_id, answer):
    """
    Why the answer of ``eos_cluster.register`` on ``node_id`` stops its join (no answer, an
    error, a failed critical health check), or None when it may join.
    """
    if answer is None or answer.retcode or not isinstance(answer.ret, dict):
        return f"{node_id}: eos_cluster.register failed: {short(answer)}"
    failed = [
        check
        for check in (answer.ret.get("health") or {}).get("checks", [])
        if check.get("critical") and not check.get("passed")
    ]
    if failed:
        return f"{node_id} failed critical health checks: " + "; ".join(
            f"{check['name']}: {check.get('detail')}" for check in failed
        )
    return None


def placement_policy(policy, records, leaving=()):
    """
    ``policy`` (a roles.Policy) with the cordons of ``records``: a cordoned node keeps the
    roles it holds and gets no new one (it is excluded when it holds none); a ``leaving`` node
    is excluded, whatever the site pins.
    """
    pins = {node: roles for node, roles in policy.pins.items() if node not in leaving}
    exclude = set(policy.exclude) | set(leaving)
    for record in records:
        node_id = record["id"]
        if not record.get("cordoned") or node_id in leaving or node_id in pins:
            continue
        held = list(record.get("roles") or [])
        if held:
            pins[node_id] = held
        else:
            exclude.add(node_id)
    return dataclasses.replace(policy, pins=pins, exclude=frozenset(exclude))


def dependents(changes, assignments):
    """
    The nodes to configure again because roles they are configured from changed hands
    (``CONFIGURED_FROM``): ``changes`` {id: {old, new}}, ``assignments`` {id: [roles]}.
    """
    moved = set()
    for change in changes.values():
        moved |= set(change["old"]) ^ set(change["new"])
    return sorted(
        node
        for node, roles in assignments.items()
        if any(moved & set(CONFIGURED_FROM.get(role, ())) for role in roles)
    )


def targeted_by_top(answer):
    """
    Whether ``state.show_top`` says the top file gives the minion states. Anything but a clear
    "nothing" (no answer, render errors) counts as targeted, so highstate runs and reports it.
    """
    if answer is None or not isinstance(answer.ret, dict):
        return True
    return any(answer.ret.values())


def state_problems(answer):
    """The failed states of one minion's state run, as short lines; [] when it all passed."""
    if answer is None:
        return ["no answer"]
    ret = answer.ret
    if isinstance(ret, list):  # render or compile errors
        return [str(item) for item in ret][:5]
    if not isinstance(ret, dict):
        return [short(ret)]
    problems = [
        f"{chunk.get('__id__', key)}: {chunk.get('comment')}"
        for key, chunk in sorted(ret.items(), key=lambda item: _run_order(item[1]))
        if isinstance(chunk, dict) and chunk.get("result") is False
    ]
    if not problems and answer.retcode:
        problems.append(f"retcode {answer.retcode}")
    return problems


def _run_order(chunk):
    return chunk.get("__run_num__", 0) if isinstance(chunk, dict) else 0


def short(value, limit=300):
    if isinstance(value, master.Answer):
        value = value.ret
    text = "no answer" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
