"""
Storage across the fleet: the fleet report and cross-node rebalancing of datasets.

Master configuration, every key optional (``docs/rebalance.md`` has the details):

.. code-block:: yaml

    eos:
      datasets:
        logs-2024: {}                          # role data, <dataset root>/logs-2024
        orders: {role: data, pin: data-1}
        events-a: {replica_group: events}
      rebalance:
        threshold: 10                          # percentage points around the mean, 1-50
        transport: auto                        # auto | local | ssh
        ssh_user: null
        bwlimit_kbps: null                     # per move (rsync --bwlimit)
        concurrency: 1                         # moves at once
        auto: false                            # the reactor executes, not only plans
        lease_seconds: 1800                    # one execution at a time, cluster-wide

An execution (``dry_run=False``) holds the cluster's rebalance lease, named after its run,
from its recovery of interrupted moves to its last move: a second execution started
meanwhile moves nothing and says which run holds the lease.

Each data node sets its dataset root in its own config (``eos:dataset:root``, see the
``eos_dataset`` execution module).

Events:

``eos/storage/rebalance/moved``
    ``{dataset, from, to, bytes, kind, verified_files, verified_bytes}``, fired after the copy
    was verified and the placement switched, before the source is removed.
"""

import concurrent.futures
import logging
import uuid

import salt.cache
import salt.client
from salt.exceptions import SaltInvocationError

from saltext.eos.utils import config
from saltext.eos.utils import datasets
from saltext.eos.utils import errors
from saltext.eos.utils import events
from saltext.eos.utils.cluster import lease as leases
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.datasets import rebalance as planner
from saltext.eos.utils.datasets import transfer
from saltext.eos.utils.storage import thresholds

log = logging.getLogger(__name__)

__virtualname__ = "eos_storage"

MOVED_TAG = "eos/storage/rebalance/moved"
# Seconds a minion may take to report its datasets (it walks them to size them).
REPORT_TIMEOUT = 120
# Seconds without an answer after which a pull is given up; rsync itself may run far longer,
# Salt keeps waiting while the minion says the job is still running.
STEP_TIMEOUT = 300
# Beacon levels that start a rebalance (from cleanup up): below it the node copes on its own.
REACT_LEVELS = ("cleanup", "degraded", "emergency", "critical")


def __virtual__():
    return __virtualname__


def report(refresh=True):
    """
    The fleet report: per node its capacity, usage, level, datasets and time to full.

    CLI Example:

    .. code-block:: bash

        salt-run eos_storage.report
        salt-run eos_storage.report --out=json
        salt-run eos_storage.report refresh=False

    refresh
        Ask every member for its dataset sizes first (default). False: the stored reports.

    Returns ``{nodes: {id: {...}}, conflicts, unreported}``.
    """
    context = _context()
    gathered = _refresh(context) if refresh else {"conflicts": [], "unreported": []}
    rows = datasets.fleet_report(
        context["registry"].records(), context["store"].reports(), context["store"].placements()
    )
    return {
        "nodes": rows,
        "conflicts": gathered["conflicts"],
        "unreported": gathered["unreported"],
    }


def rebalance(threshold=None, dry_run=True, exclude_nodes=None, exclude_datasets=None):
    """
    Plan, and with ``dry_run=False`` execute, the moves that bring every node of a role within
    ``threshold`` percentage points of the role's mean usage.

    CLI Example:

    .. code-block:: bash

        salt-run eos_storage.rebalance
        salt-run eos_storage.rebalance threshold=5
        salt-run eos_storage.rebalance dry_run=False
        salt-run eos_storage.rebalance exclude_nodes='[data-3]' dry_run=False

    threshold
        Percentage points, 1 to 50 (default ``eos:rebalance:threshold``, else 10).
    dry_run
        True (default): plan only. False: first finish or undo interrupted moves, then run
        each move: pull, verify, commit, switch the placement, fire
        ``eos/storage/rebalance/moved``, remove the source. Nothing moves while any data
        node is failed or a node is joining.
    exclude_nodes, exclude_datasets
        Lists of node ids and dataset names that must not move.

    An executing run that was refused or where a move failed exits non-zero.

    Returns the plan (``moves``, per node usage before and after, ``bytes_moved``,
    ``lower_bound_bytes``, ``reasons``), plus ``blocked``, ``conflicts``, ``unreported``,
    ``journal`` and, when executed, ``recovered``, ``moved``, ``failed`` and ``retcode``.
    """
    context = _context()
    threshold = _threshold(context["settings"]["threshold"] if threshold is None else threshold)
    dry_run = _flag(dry_run, "dry_run")
    excluded = {
        "nodes": _known(
            exclude_nodes, set(context["registry"].node_ids()), "exclude_nodes", "node"
        ),
        "datasets": _known(
            exclude_datasets, set(context["declared"]), "exclude_datasets", "dataset"
        ),
    }
    if dry_run:
        return _rebalance(context, threshold, excluded, dry_run)
    run = f"rebalance-{uuid.uuid4().hex[:16]}"
    lease = _lease(context)
    try:
        lease.take(run, by="eos_storage.rebalance")
    except leases.LeaseBusy as busy:
        __context__["retcode"] = 1
        return {
            "dry_run": False,
            "blocked": [f"{busy}: nothing moved"],
            "moved": [],
            "failed": [],
            "recovered": [],
            "lease": busy.holder,
            "retcode": 1,
        }
    context["run"] = run
    try:
        return _rebalance(context, threshold, excluded, dry_run)
    finally:
        lease.release(run)


def _rebalance(context, threshold, excluded, dry_run):
    recovered = []
    if not dry_run:
        # Plan once on the stored reports first: input the planner refuses (a pin on a node
        # of another role) must stop the run before recovery touches any node.
        stored_plan, stored_records, _ = _plan(context, threshold, excluded)
        # A refused run changes nothing, not even the cleanup of earlier moves.
        if not datasets.blockers(stored_records, stored_plan.roles):
            recovered = datasets.recover(context["store"], _steps(context), live_run=context["run"])
    gathered = _refresh(context)
    plan, records, unreported = _plan(context, threshold, excluded)
    result = {
        **plan.as_dict(),
        "dry_run": dry_run,
        "blocked": datasets.blockers(records, plan.roles),
        "conflicts": gathered["conflicts"],
        "unreported": sorted(set(unreported) | set(gathered["unreported"])),
        "journal": list(context["store"].journal().values()),
    }
    if dry_run:
        return result
    result["recovered"] = recovered
    if result["blocked"]:
        result.update(moved=[], failed=[], comment="nothing moved: " + "; ".join(result["blocked"]))
    else:
        moved, failed = _execute(context, [move.as_dict() for move in plan.moves])
        result.update(moved=moved, failed=failed, journal=list(context["store"].journal().values()))
    result["run"] = context["run"]
    # salt-run exits with a returned retcode, and an orchestration's salt.runner step fails
    # on the context's: a refused or partly done rebalance must not look like a finished one.
    result["retcode"] = 1 if result["blocked"] or result["failed"] else 0
    __context__["retcode"] = result["retcode"]
    return result


def react(node, level=None):
    """
    The reactor's answer to a storage beacon event naming ``node``: plan a rebalance, and run
    it when ``eos:rebalance:auto`` is true. Only data nodes (nodes with a role some dataset
    uses) start one; nothing moves while a data node is failed or a node is joining.

    The event may be forged by another minion, so its level is only a hint: the node is
    asked for its usage (by its exact id), and only its own level counts. Above
    ``automatic_up_to`` of the cluster's scale profile the rebalance is only planned: an
    operator runs it.

    CLI Example:

    .. code-block:: bash

        salt-run eos_storage.react data-3 level=cleanup

    node
        The minion the beacon event names.
    level
        The level the event claimed; below cleanup nothing is asked or planned.
    """
    with errors.salt_errors():
        registry.check_node_id(node)
    level = thresholds.level_name(level)
    if level is not None and level not in REACT_LEVELS:
        return {"node": node, "level": level, "comment": f"level {level}: nothing to balance"}
    context = _context()
    record = context["registry"].get(node)
    dataset_roles = {declaration.role for declaration in context["declared"].values()}
    dataset_roles.add(planner.DEFAULT_ROLE)
    if record is None or not set(record.get("roles") or []) & dataset_roles:
        return {"node": node, "level": level, "comment": f"{node} is not a data node"}
    reports, _ = _ask_reports(context, [node])
    if node not in reports:
        return {"node": node, "level": level, "comment": f"{node} did not report its usage"}
    measured = datasets.report_level(reports[node])
    base = {"node": node, "level": level, "measured_level": measured}
    if measured not in REACT_LEVELS:
        return {**base, "comment": f"{node} measures {measured}: nothing to balance"}
    cap = registry.scale_profile(context["registry"].summary()["scale"])["cleanup"][
        "automatic_up_to"
    ]
    automatic = context["settings"]["auto"] and _level_at_most(measured, cap)
    result = rebalance(dry_run=not automatic)
    return {**base, "automatic_up_to": cap, **result}


def _level_at_most(level, cap):
    return thresholds.LEVELS.index(level) <= thresholds.LEVELS.index(cap)


def _plan(context, threshold, excluded):
    records = context["registry"].records()
    nodes, placed, unreported = datasets.planner_inputs(
        records, context["store"].reports(), context["store"].placements(), context["declared"]
    )
    planned_nodes = {node["id"] for node in nodes}
    placed_names = {dataset["name"] for dataset in placed}
    with errors.salt_errors():
        plan = planner.plan(
            nodes,
            placed,
            threshold,
            exclude_nodes=[node for node in excluded["nodes"] if node in planned_nodes],
            exclude_datasets=[name for name in excluded["datasets"] if name in placed_names],
        )
    return plan, records, unreported


# --- execution -------------------------------------------------------------------------------


def _execute(context, moves):
    moved, failed, tainted = [], [], set()
    concurrency = context["settings"]["concurrency"]
    for wave in datasets.waves(moves, concurrency):
        # A move after a failed one may count on the space that one would have freed.
        runnable = [move for move in wave if not {move["from"], move["to"]} & tainted]
        for move in wave:
            if move not in runnable:
                failed.append({**move, "error": "skipped: an earlier move on its nodes failed"})
        with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
            outcomes = list(pool.map(lambda move: _run_move(context, move), runnable))
        for move, (done, error) in zip(runnable, outcomes, strict=True):
            if error is None:
                moved.append(done)
            else:
                failed.append({**move, "error": error})
                tainted |= {move["from"], move["to"]}
    return moved, failed


def _run_move(context, move):
    try:
        return datasets.execute_move(context["store"], move, _steps(context), context["run"]), None
    except datasets.MoveFailed as err:
        log.warning("eos_storage.rebalance: %s", err)
        return None, str(err)


def _steps(context):
    declared = context["declared"]
    reports = context["store"].reports()
    settings = context["settings"]

    def path_of(name):
        return declared[name].path if name in declared else name

    def call(node, function, **kwarg):
        return _call(node, function, kwarg, STEP_TIMEOUT)

    def pull(move):
        source = reports.get(move["from"]) or {}
        destination = reports.get(move["to"]) or {}
        if "root" not in source or "root" not in destination:
            raise datasets.MoveFailed(
                f"dataset {move['dataset']}: no report from {move['from']} or {move['to']}"
            )
        transport = _transport(settings["transport"], source.get("host"), destination.get("host"))
        call(
            move["to"],
            "eos_dataset.pull",
            name=move["dataset"],
            source_path=datasets.dataset_dir(source["root"], path_of(move["dataset"])),
            source_host=source.get("host"),
            transport=transport,
            bwlimit_kbps=settings["bwlimit_kbps"],
            ssh_user=settings["ssh_user"],
            expected_bytes=move["bytes"],
        )

    def manifest(node, name, staged):
        return call(node, "eos_dataset.manifest", name=name, path=path_of(name), staged=staged)

    return datasets.MoveSteps(
        pull=pull,
        manifest=manifest,
        commit=lambda move: call(
            move["to"], "eos_dataset.commit", name=move["dataset"], path=path_of(move["dataset"])
        ),
        remove=lambda node, name: call(node, "eos_dataset.remove", name=name, path=path_of(name)),
        clean_partial=lambda node, name, committed: call(
            node, "eos_dataset.clean_partial", name=name, path=path_of(name), committed=committed
        ),
        announce=lambda result: _fire(MOVED_TAG, result),
        still_leased=lambda: _still_leased(context),
    )


def _lease(context):
    reg = context["registry"]
    return leases.Lease(
        cache=reg.cache,
        lock=reg.lock,
        bank=registry.CLUSTER_BANK,
        key=datasets.REBALANCE_LEASE_KEY,
        kind="rebalance",
        seconds=context["settings"]["lease_seconds"],
    )


def _still_leased(context):
    try:
        _lease(context).renew(context["run"])
    except leases.LeaseLost as err:
        raise datasets.MoveFailed(f"{err}; stopping before the next step") from err


def _transport(configured, source_host, destination_host):
    try:
        return transfer.choose_transport(configured, source_host, destination_host)
    except transfer.TransferError as err:
        raise datasets.MoveFailed(str(err)) from err


def _call(node, function, kwarg, timeout):
    """The return of ``function`` on ``node``; MoveFailed when it did not answer or failed."""
    # From the config file, as saltutil.cmd does: runner opts under orchestrate cannot auth.
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        answers = client.cmd(
            [node], function, kwarg=kwarg, tgt_type="list", timeout=timeout, full_return=True
        )
    answer = answers.get(node)
    if not isinstance(answer, dict) or "ret" not in answer:
        raise datasets.MoveFailed(f"{function} on {node}: no answer")
    if answer.get("retcode", 0) != 0 or answer.get("success") is False:
        raise datasets.MoveFailed(f"{function} on {node}: {answer['ret']}")
    return answer["ret"]


def _fire(tag, data):
    # The move is recorded whatever the event bus does; a lost event is only logged.
    events.fire_or_log(__opts__, tag, data)


# --- gathering -------------------------------------------------------------------------------


def _refresh(context):
    """Ask every member for its dataset sizes and record the answers."""
    members = [
        record["id"]
        for record in context["registry"].records()
        if record.get("status") in registry.MEMBER_STATUSES
    ]
    reports, unreported = _ask_reports(context, members)
    outcome = datasets.record_reports(context["store"], reports, context["declared"])
    return {**outcome, "unreported": unreported}


def _ask_reports(context, members):
    """({node: checked report}, [nodes that did not answer]) for the listed members."""
    paths = {name: declaration.path for name, declaration in context["declared"].items()}
    reports, unreported = {}, []
    if members:
        with salt.client.get_local_client(__opts__["conf_file"]) as client:
            answers = client.cmd(
                members,
                "eos_dataset.sizes",
                kwarg={"paths": paths},
                tgt_type="list",
                timeout=REPORT_TIMEOUT,
                full_return=True,
            )
        for node in members:
            answer = answers.get(node)
            if not isinstance(answer, dict) or answer.get("retcode", 0) != 0:
                unreported.append(node)
                continue
            try:
                reports[node] = datasets.check_report(node, answer.get("ret"))
            except config.InvalidConfig as err:
                log.warning("eos_storage: %s", err)
                unreported.append(node)
    return reports, unreported


def _context():
    layers = config.Layers.from_salt(__opts__)
    with errors.salt_errors():
        settings = datasets.rebalance_settings(layers)
        declared = datasets.declarations(layers)
        reg = registry.open_registry(__opts__)
    return {
        "settings": settings,
        "declared": declared,
        "registry": reg,
        "store": datasets.Store(salt.cache.factory(__opts__)),
    }


def _threshold(value):
    with errors.salt_errors(caller_errors=(planner.InvalidRebalance,)):
        return planner.check_threshold(value)


def _flag(value, name):
    if not isinstance(value, bool):
        raise SaltInvocationError(f"{name}: {value!r} is not true or false")
    return value


def _known(values, known, argument, what):
    values = [] if values is None else values
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise SaltInvocationError(f"{argument}: {values!r} is not a list")
    for value in values:
        if value not in known:
            raise SaltInvocationError(f"{argument}: unknown {what} {value!r}")
    return list(values)
