"""
A rebalance on the master: gather the nodes' reports, plan, and execute the moves under the
cluster's rebalance lease; and the reaction to a storage beacon event.

``Rebalance`` knows nothing of Salt: the runner hands it the registry, the dataset store,
the settings and declarations, and two callables (as ``cluster.join.Join`` gets them):

``call(targets, fun, args=(), kwargs=None, timeout=None)``
    ``{id: Answer}`` for the minions (exact ids) that answered ``fun``.
``fire(tag, data)``
    An event on the master's bus; a move is stored whatever the bus does.
"""

import concurrent.futures
import dataclasses
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

from saltext.eos.utils import errors
from saltext.eos.utils.cluster import lease as leases
from saltext.eos.utils.cluster import registry as node_registry
from saltext.eos.utils.datasets import evacuation
from saltext.eos.utils.datasets import rebalance as planner
from saltext.eos.utils.datasets import transfer
from saltext.eos.utils.datasets.local import dataset_dir
from saltext.eos.utils.datasets.moves import REBALANCE_LEASE_KEY
from saltext.eos.utils.datasets.moves import MoveFailed
from saltext.eos.utils.datasets.moves import MoveSteps
from saltext.eos.utils.datasets.moves import execute_move
from saltext.eos.utils.datasets.moves import recover
from saltext.eos.utils.datasets.moves import waves
from saltext.eos.utils.datasets.store import blockers
from saltext.eos.utils.datasets.store import check_report
from saltext.eos.utils.datasets.store import planner_inputs
from saltext.eos.utils.datasets.store import record_reports
from saltext.eos.utils.datasets.store import report_level
from saltext.eos.utils.storage import thresholds

log = logging.getLogger(__name__)

MOVED_TAG = "eos/storage/rebalance/moved"
# Seconds a minion may take to report its datasets (it walks them to size them).
REPORT_TIMEOUT = 120
# Seconds without an answer after which a pull is given up; rsync itself may run far longer,
# Salt keeps waiting while the minion says the job is still running.
STEP_TIMEOUT = 300
# Beacon levels that start a rebalance (from cleanup up): below it the node copes on its own.
REACT_LEVELS = ("cleanup", "degraded", "emergency", "critical")


@dataclass
class Rebalance:
    """One master's rebalancing: its registry, dataset store, settings and Salt callables."""

    registry: node_registry.Registry
    store: object  # datasets.Store
    settings: dict  # datasets.rebalance_settings()
    declared: dict  # name -> datasets.Declaration
    call: Callable
    fire: Callable
    new_run: Callable = field(default=lambda: f"rebalance-{uuid.uuid4().hex[:16]}")
    master: str | None = None  # the id of the master running it, named in its lease

    # --- the two entry points ---

    def run(self, threshold=None, dry_run=True, exclude_nodes=None, exclude_datasets=None):
        """
        The plan, executed when ``dry_run`` is False, with the runner's documented return.
        InvalidInput names a bad argument before anything is asked or moved.
        """
        threshold = _threshold(self.settings["threshold"] if threshold is None else threshold)
        dry_run = _flag(dry_run, "dry_run")
        excluded = {
            "nodes": _known(exclude_nodes, set(self.registry.node_ids()), "exclude_nodes", "node"),
            "datasets": _known(exclude_datasets, set(self.declared), "exclude_datasets", "dataset"),
        }
        if dry_run:
            return self._rebalance(threshold, excluded, None)
        run = self.new_run()
        lease = self._lease()
        try:
            taken = lease.take(run, by="eos_storage.rebalance")
        except leases.LeaseBusy as busy:
            return {
                "dry_run": False,
                "blocked": [f"{busy}: nothing moved"],
                "moved": [],
                "failed": [],
                "recovered": [],
                "lease": busy.holder,
                "retcode": 1,
            }
        try:
            return self._fenced(lease, taken)._rebalance(threshold, excluded, run)
        finally:
            lease.release(run)

    def react(self, node, level=None):
        """
        The answer to a storage beacon event naming ``node``, which may be forged: the node is
        asked for its own usage, and only its measured level counts. Executes only when
        ``auto`` is set and that level is at most the scale's ``automatic_up_to``.
        """
        node_registry.check_node_id(node)
        level = thresholds.level_name(level)
        if level is not None and level not in REACT_LEVELS:
            return {"node": node, "level": level, "comment": f"level {level}: nothing to balance"}
        record = self.registry.get(node)
        dataset_roles = {declaration.role for declaration in self.declared.values()}
        dataset_roles.add(planner.DEFAULT_ROLE)
        if record is None or not set(record.get("roles") or []) & dataset_roles:
            return {"node": node, "level": level, "comment": f"{node} is not a data node"}
        reports, _ = self.ask_reports([node])
        if node not in reports:
            return {"node": node, "level": level, "comment": f"{node} did not report its usage"}
        measured = report_level(reports[node])
        base = {"node": node, "level": level, "measured_level": measured}
        if measured not in REACT_LEVELS:
            return {**base, "comment": f"{node} measures {measured}: nothing to balance"}
        scale = self.registry.summary()["scale"]
        cap = node_registry.scale_profile(scale)["cleanup"]["automatic_up_to"]
        automatic = self.settings["auto"] and _level_at_most(measured, cap)
        return {**base, "automatic_up_to": cap, **self.run(dry_run=not automatic)}

    def evacuate(self, node):
        """
        Move every dataset placed on ``node`` to other nodes (a drain), under the rebalance
        lease, each with the verified move. Returns ``{node, moved, failed, left, remaining,
        blocked}``: ``left`` {name: why no move was planned}, ``remaining`` every dataset
        still placed on the node (nothing there was removed before its copy was verified).
        """
        node_registry.check_node_id(node)
        run = self.new_run()
        lease = self._lease()
        try:
            taken = lease.take(run, by="eos_cluster.drain", node=node)
        except leases.LeaseBusy as busy:
            return self._evacuation(node, blocked=[f"{busy}: nothing moved"])
        try:
            return self._fenced(lease, taken)._evacuate(node, run)
        finally:
            lease.release(run)

    def _evacuate(self, node, run):
        recovered = recover(self.store, self._steps(run), live_run=run)
        gathered = self.refresh()
        records = self.registry.records()
        nodes, placed, _ = planner_inputs(
            records, self.store.reports(), self.store.placements(), self.declared
        )
        if node in gathered["unreported"]:
            return self._evacuation(
                node, blocked=[f"{node} did not report its datasets: nothing moved"]
            )
        cordoned = {record["id"] for record in records if record.get("cordoned")}
        moves, left = evacuation.plan(nodes, placed, node, excluded=cordoned - {node})
        moved, failed = self._execute(moves, run)
        return self._evacuation(node, moved=moved, failed=failed, left=left, recovered=recovered)

    def _evacuation(self, node, **outcome):
        remaining = sorted(
            name for name, placement in self.store.placements().items() if placement["node"] == node
        )
        return {
            "node": node,
            "moved": [],
            "failed": [],
            "left": {},
            "blocked": [],
            **outcome,
            "remaining": remaining,
        }

    # --- gathering ---

    def refresh(self):
        """Ask every member for its dataset sizes and record the answers."""
        members = [
            record["id"]
            for record in self.registry.records()
            if record.get("status") in node_registry.REACHABLE_STATUSES
        ]
        reports, unreported = self.ask_reports(members)
        outcome = record_reports(self.store, reports, self.declared)
        return {**outcome, "unreported": unreported}

    def ask_reports(self, members):
        """``({node: checked report}, [nodes that did not answer])`` for the listed members."""
        if not members:
            return {}, []
        paths = {name: declaration.path for name, declaration in self.declared.items()}
        answers = self.call(
            members, "eos_dataset.sizes", kwargs={"paths": paths}, timeout=REPORT_TIMEOUT
        )
        reports, unreported = {}, []
        for node in members:
            answer = answers.get(node)
            if answer is None or not answer.ok:
                unreported.append(node)
                continue
            try:
                reports[node] = check_report(node, answer.ret)
            except errors.InvalidConfig as err:
                log.warning("eos_storage: %s", err)
                unreported.append(node)
        return reports, unreported

    # --- planning ---

    def _rebalance(self, threshold, excluded, run):
        dry_run = run is None
        recovered = []
        if not dry_run:
            # Plan once on the stored reports first: input the planner refuses (a pin on a node
            # of another role) must stop the run before recovery touches any node.
            stored_plan, stored_records, _ = self._plan(threshold, excluded)
            # A refused run changes nothing, not even the cleanup of earlier moves.
            if not blockers(stored_records, stored_plan.roles):
                recovered = recover(self.store, self._steps(run), live_run=run)
        gathered = self.refresh()
        plan, records, unreported = self._plan(threshold, excluded)
        result = {
            **plan.as_dict(),
            "dry_run": dry_run,
            "blocked": blockers(records, plan.roles),
            "conflicts": gathered["conflicts"],
            "unreported": sorted(set(unreported) | set(gathered["unreported"])),
            "journal": list(self.store.journal().values()),
        }
        if dry_run:
            return result
        result["recovered"] = recovered
        if result["blocked"]:
            result.update(
                moved=[], failed=[], comment="nothing moved: " + "; ".join(result["blocked"])
            )
        else:
            moved, failed = self._execute([move.as_dict() for move in plan.moves], run)
            result.update(moved=moved, failed=failed, journal=list(self.store.journal().values()))
        result["run"] = run
        # A refused or partly done rebalance must not look like a finished one.
        result["retcode"] = 1 if result["blocked"] or result["failed"] else 0
        return result

    def _plan(self, threshold, excluded):
        records = self.registry.records()
        nodes, placed, unreported = planner_inputs(
            records, self.store.reports(), self.store.placements(), self.declared
        )
        planned_nodes = {node["id"] for node in nodes}
        placed_names = {dataset["name"] for dataset in placed}
        # A cordoned node takes no new dataset (and keeps its own until it is drained).
        cordoned = {record["id"] for record in records if record.get("cordoned")}
        plan = planner.plan(
            nodes,
            placed,
            threshold,
            exclude_nodes=sorted(
                node for node in set(excluded["nodes"]) | cordoned if node in planned_nodes
            ),
            exclude_datasets=[name for name in excluded["datasets"] if name in placed_names],
        )
        return plan, records, unreported

    # --- execution ---

    def _execute(self, moves, run):
        moved, failed, tainted = [], [], set()
        concurrency = self.settings["concurrency"]
        steps = self._steps(run)
        for wave in waves(moves, concurrency):
            # A move after a failed one may count on the space that one would have freed.
            runnable = [move for move in wave if not {move["from"], move["to"]} & tainted]
            for move in wave:
                if move not in runnable:
                    failed.append({**move, "error": "skipped: an earlier move on its nodes failed"})
            with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
                outcomes = list(pool.map(lambda move: self._run_move(move, steps, run), runnable))
            for move, (done, error) in zip(runnable, outcomes, strict=True):
                if error is None:
                    moved.append(done)
                else:
                    failed.append({**move, "error": error})
                    tainted |= {move["from"], move["to"]}
        return moved, failed

    def _run_move(self, move, steps, run):
        try:
            return execute_move(self.store, move, steps, run), None
        except MoveFailed as err:
            log.warning("eos_storage.rebalance: %s", err)
            return None, str(err)

    def _steps(self, run):
        """The MoveSteps of ``run``: each one a call to the node that does it."""
        reports = self.store.reports()

        def path_of(name):
            return self.declared[name].path if name in self.declared else name

        def pull(move):
            source = reports.get(move["from"]) or {}
            destination = reports.get(move["to"]) or {}
            if "root" not in source or "root" not in destination:
                raise MoveFailed(
                    f"dataset {move['dataset']}: no report from {move['from']} or {move['to']}"
                )
            self._step(
                move["to"],
                "eos_dataset.pull",
                name=move["dataset"],
                source_path=dataset_dir(source["root"], path_of(move["dataset"])),
                source_host=source.get("host"),
                transport=self._transport(source.get("host"), destination.get("host")),
                bwlimit_kbps=self.settings["bwlimit_kbps"],
                ssh_user=self.settings["ssh_user"],
                expected_bytes=move["bytes"],
            )

        def manifest(node, name, staged):
            return self._step(
                node, "eos_dataset.manifest", name=name, path=path_of(name), staged=staged
            )

        def commit(move):
            name = move["dataset"]
            return self._step(move["to"], "eos_dataset.commit", name=name, path=path_of(name))

        def remove(node, name):
            return self._step(node, "eos_dataset.remove", name=name, path=path_of(name))

        def clean_partial(node, name, committed):
            return self._step(
                node,
                "eos_dataset.clean_partial",
                name=name,
                path=path_of(name),
                committed=committed,
            )

        return MoveSteps(
            pull=pull,
            manifest=manifest,
            commit=commit,
            remove=remove,
            clean_partial=clean_partial,
            announce=lambda result: self.fire(MOVED_TAG, result),
            still_leased=lambda: self._still_leased(run),
        )

    def _step(self, node, function, **kwargs):
        """The return of ``function`` on ``node``; MoveFailed when it did not answer or failed."""
        answer = self.call([node], function, kwargs=kwargs, timeout=STEP_TIMEOUT).get(node)
        if answer is None:
            raise MoveFailed(f"{function} on {node}: no answer")
        if not answer.ok:
            raise MoveFailed(f"{function} on {node}: {answer.ret}")
        return answer.ret

    def _transport(self, source_host, destination_host):
        try:
            return transfer.choose_transport(
                self.settings["transport"], source_host, destination_host
            )
        except transfer.TransferError as err:
            raise MoveFailed(str(err)) from err

    # --- the lease ---

    def _lease(self):
        return leases.Lease(
            cache=self.registry.cache,
            lock=self.registry.lock,
            bank=node_registry.CLUSTER_BANK,
            key=REBALANCE_LEASE_KEY,
            kind="rebalance",
            seconds=self.settings["lease_seconds"],
            master=self.master,
        )

    def _fenced(self, lease, taken):
        """
        This rebalance for the run that took ``taken`` (its lease record): every write to the
        dataset store is made under the registry's lock after the lease's fence, so once the
        run lost its lease (another run took it over) it writes nothing more; the step stops
        with MoveFailed, as one that finds the lease lost before it starts.
        """
        run = taken["run"]
        check = lease.fence(run, taken["token"])

        def fence():
            try:
                check()
            except leases.LeaseLost as err:
                raise MoveFailed(f"{err}; nothing written, stopping before the next step") from err

        return dataclasses.replace(self, store=self.store.fenced(self.registry.lock, fence))

    def _still_leased(self, run):
        try:
            self._lease().renew(run)
        except leases.LeaseLost as err:
            raise MoveFailed(f"{err}; stopping before the next step") from err


def _level_at_most(level, cap):
    return thresholds.LEVELS.index(level) <= thresholds.LEVELS.index(cap)


def _threshold(value):
    try:
        return planner.check_threshold(value)
    except planner.InvalidRebalance as err:
        # An argument here, not the master's configuration.
        raise errors.InvalidInput(str(err)) from err


def _flag(value, name):
    if not isinstance(value, bool):
        raise errors.InvalidInput(f"{name}: {value!r} is not true or false")
    return value


def _known(values, known, argument, what):
    values = [] if values is None else values
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise errors.InvalidInput(f"{argument}: {values!r} is not a list")
    for value in values:
        if value not in known:
            raise errors.InvalidInput(f"{argument}: unknown {what} {value!r}")
    return list(values)
