"""Placements, node reports and move journals in the registry, and the planner's inputs."""

import os
import time
from collections.abc import Mapping

from saltext.eos.utils import config
from saltext.eos.utils import formatting
from saltext.eos.utils.cluster import registry as node_registry
from saltext.eos.utils.datasets import rebalance
from saltext.eos.utils.storage import thresholds

from .moves import SWITCHED
from .settings import InvalidDatasets

PLACEMENTS_BANK = "eos/datasets"
REPORTS_BANK = "eos/dataset-nodes"
JOURNAL_BANK = "eos/dataset-moves"

# Registry statuses that hold moves back: a failed or unreachable node may hold the only copy
# of something (or a replica the plan cannot see), and a joining node (pending or accepted,
# not yet active) changes the mean under the plan.
FAILED_STATUSES = ("failed", "unreachable")
JOINING_STATUSES = ("pending", "accepted")
# Nodes whose datasets cannot be read: reported unavailable, never moved (the source is gone).
UNAVAILABLE_STATUSES = ("unreachable", "down")


class Store:
    """Placements, node reports and the move journal in a Salt cache (``store``/``fetch``...)."""

    def __init__(self, cache, clock=time.time):
        self.cache = cache
        self.clock = clock

    def placements(self):
        return self._all(PLACEMENTS_BANK)

    def placement(self, name):
        return self.cache.fetch(PLACEMENTS_BANK, name) or None

    def place(self, name, node, size):
        record = {"name": name, "node": node, "bytes": size, "updated_at": self._now()}
        self.cache.store(PLACEMENTS_BANK, name, record)
        return record

    def reports(self):
        return self._all(REPORTS_BANK)

    def store_report(self, node_id, report):
        """Store a node's report, keeping the previous usage sample for the growth rate."""
        earlier = self.cache.fetch(REPORTS_BANK, node_id) or {}
        previous = (
            {key: earlier[key] for key in ("used_bytes", "reported_epoch")}
            if "reported_epoch" in earlier
            else None
        )
        now = self.clock()
        self.cache.store(
            REPORTS_BANK,
            node_id,
            {
                **report,
                "reported_at": formatting.timestamp(now),
                "reported_epoch": now,
                "previous": previous,
            },
        )

    def journal(self):
        return self._all(JOURNAL_BANK)

    def write_journal(self, move, stage, run=None):
        entry = {**move, "stage": stage, "run": run, "updated_at": self._now()}
        self.cache.store(JOURNAL_BANK, move["dataset"], entry)
        return entry

    def drop_journal(self, name):
        self.cache.flush(JOURNAL_BANK, name)

    def switch(self, move, size, run=None):
        """
        The switch of ``move``: its dataset placed on the destination (``size`` bytes) and its
        journal entry at ``switched``, together (one fenced write in a ``FencedStore``).
        """
        placement = self.place(move["dataset"], move["to"], size)
        self.write_journal(move, SWITCHED, run)
        return placement

    def fenced(self, lock, check):
        """This store, with every write made under ``lock`` right after ``check()``."""
        return FencedStore(self.cache, lock, check, clock=self.clock)

    def _all(self, bank):
        found = {}
        for key in sorted(self.cache.list(bank)):
            value = self.cache.fetch(bank, key)
            if value:
                found[key] = value
        return found

    def _now(self):
        return formatting.timestamp(self.clock())


class FencedStore(Store):
    """
    A ``Store`` whose writes are fenced: each is made under ``lock`` (the registry's) right
    after ``check()`` (a lease's fence), which raises when the run writing no longer holds its
    lease, and then nothing is written. A run that stalled past its lease and was taken over
    so never writes a placement or a journal entry after its successor. Reads are not fenced.
    """

    def __init__(self, cache, lock, check, clock=time.time):
        super().__init__(cache, clock=clock)
        self.lock = lock
        self.check = check

    def place(self, name, node, size):
        with self.lock:
            self.check()
            return super().place(name, node, size)

    def store_report(self, node_id, report):
        with self.lock:
            self.check()
            return super().store_report(node_id, report)

    def write_journal(self, move, stage, run=None):
        with self.lock:
            self.check()
            return super().write_journal(move, stage, run)

    def drop_journal(self, name):
        with self.lock:
            self.check()
            return super().drop_journal(name)

    def switch(self, move, size, run=None):
        with self.lock:
            self.check()
            # The plain writes: the lock is not re-entrant, and this one check covers both.
            placement = Store.place(self, move["dataset"], move["to"], size)
            Store.write_journal(self, move, SWITCHED, run)
            return placement


def check_report(node_id, report):
    """
    ``report`` (a node's ``eos_dataset.sizes``) when its shape and ranges are sound, else
    InvalidDatasets naming the node and the field: a node's answer is data, not trusted input.
    """
    where = f"report of {node_id}"
    if not isinstance(report, Mapping):
        raise InvalidDatasets(f"{where}: {str(report)[:200]!r} is not a mapping")
    capacity, used = report.get("capacity_bytes"), report.get("used_bytes")
    if not _whole(capacity) or capacity == 0:
        raise InvalidDatasets(f"{where}: capacity_bytes {capacity!r} is not bytes above 0")
    if not _whole(used) or used > capacity:
        raise InvalidDatasets(f"{where}: used_bytes {used!r} is not bytes within the capacity")
    root = report.get("root")
    if not isinstance(root, str) or not os.path.isabs(root):
        raise InvalidDatasets(f"{where}: root {root!r} is not an absolute path")
    if not isinstance(report.get("host"), str):
        raise InvalidDatasets(f"{where}: host {report.get('host')!r} is not a name")
    try:
        config.number(report.get("cleanup_percent"), f"{where}: cleanup_percent", 0, 100)
    except config.InvalidConfig as err:
        raise InvalidDatasets(str(err)) from err
    found = report.get("datasets")
    if not isinstance(found, Mapping) or not all(
        isinstance(name, str) and _whole(size) for name, size in found.items()
    ):
        raise InvalidDatasets(f"{where}: datasets must map names to sizes in bytes")
    limits = report.get("thresholds")
    if not isinstance(limits, Mapping) or set(limits) != set(thresholds.THRESHOLD_LEVELS):
        raise InvalidDatasets(
            f"{where}: thresholds {limits!r} is not a mapping of every level to a percent"
        )
    for level, percent in limits.items():
        config.number(percent, f"{where}: thresholds: {level}", 0, 100)
    return report


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def record_reports(store, reports, declared):
    """
    Store each node's report ({node: {root, host, capacity_bytes, used_bytes,
    cleanup_percent, datasets}}) and bring the placements up to date.

    A dataset without a placement is placed where it was found, when exactly one node reports
    it. A placed dataset takes its size from the node it is placed on. A copy anywhere else
    (two nodes without a placement, or a node other than the placement with no move journalled)
    is listed in ``conflicts`` and changes nothing: it is for an operator to look at.
    Returns ``{placed: [...], conflicts: [...], undeclared: {node: [...]}}``.
    """
    placements = store.placements()
    journal = store.journal()
    found_on = {}
    undeclared = {}
    for node_id, report in sorted(reports.items()):
        store.store_report(node_id, report)
        for name in sorted(report.get("datasets", {})):
            if name in declared:
                found_on.setdefault(name, []).append(node_id)
            else:
                undeclared.setdefault(node_id, []).append(name)
    placed, conflicts = [], []
    for name, nodes in sorted(found_on.items()):
        current = placements.get(name)
        if current is None and len(nodes) == 1:
            store.place(name, nodes[0], reports[nodes[0]]["datasets"][name])
            placed.append({"dataset": name, "node": nodes[0]})
            continue
        if current is not None and current["node"] in nodes:
            size = reports[current["node"]]["datasets"][name]
            if size != current["bytes"]:
                store.place(name, current["node"], size)
        elsewhere = [node for node in nodes if current is None or node != current["node"]]
        if elsewhere and name not in journal:
            where = current["node"] if current else "nowhere yet"
            conflicts.append(
                f"dataset {name}: found on {', '.join(elsewhere)}, placed on {where}; "
                "the extra copies are left alone"
            )
    return {"placed": placed, "conflicts": conflicts, "undeclared": undeclared}


def fleet_report(records, reports, placements):
    """
    {node: {status, available, roles, capacity_bytes, used_bytes, usage_percent, level,
    datasets, time_to_full_seconds, reported_at}} for every node record; the fleet report's
    rows. Nodes that have not reported have None for what only a report can say; ``available``
    is False for an unreachable or down node, whose datasets cannot be read.
    """
    placed_on = {}
    for name, placement in placements.items():
        placed_on.setdefault(placement["node"], {})[name] = placement["bytes"]
    rows = {}
    for record in records:
        report = reports.get(record["id"]) or {}
        capacity, used = report.get("capacity_bytes"), report.get("used_bytes")
        percent = round(100 * used / capacity, 3) if capacity else None
        limits = report.get("thresholds")
        rows[record["id"]] = {
            "status": record.get("status"),
            "available": record.get("status") not in UNAVAILABLE_STATUSES,
            "roles": list(record.get("roles") or []),
            "capacity_bytes": capacity,
            "used_bytes": used,
            "usage_percent": percent,
            "level": thresholds.level_for(percent, limits)
            if limits and percent is not None
            else None,
            "datasets": placed_on.get(record["id"], {}),
            "time_to_full_seconds": time_to_full(report),
            "reported_at": report.get("reported_at"),
        }
    return rows


def unavailable_datasets(records, placements):
    """
    {dataset: {node, status}} for every dataset placed on an unreachable or down node: what
    the fleet cannot read now. They stay placed there: a copy needs its source.
    """
    statuses = {record["id"]: record.get("status") for record in records}
    return {
        name: {"node": placement["node"], "status": statuses[placement["node"]]}
        for name, placement in sorted(placements.items())
        if statuses.get(placement["node"]) in UNAVAILABLE_STATUSES
    }


def time_to_full(report):
    """Seconds until the node is full at the rate between its last two reports, or None."""
    previous = report.get("previous")
    if not previous or report.get("capacity_bytes") is None:
        return None
    elapsed = report.get("reported_epoch", 0) - previous.get("reported_epoch", 0)
    growth = report["used_bytes"] - previous["used_bytes"]
    if elapsed <= 0 or growth <= 0:
        return None
    return round((report["capacity_bytes"] - report["used_bytes"]) * elapsed / growth)


def planner_role(record_roles, dataset_roles):
    """The role a node is balanced in: its first role that datasets use, else its first role."""
    for role in record_roles:
        if role in dataset_roles:
            return role
    return record_roles[0] if record_roles else "unassigned"


def planner_inputs(records, reports, placements, declared):
    """
    (nodes, datasets, unreported) for ``rebalance.plan`` from node records, node reports,
    placements and declarations. Only reachable members (accepted or active) that have
    reported their datasets are planned; the others are listed in ``unreported``.
    """
    dataset_roles = {declaration.role for declaration in declared.values()}
    dataset_roles.add(rebalance.DEFAULT_ROLE)
    nodes, unreported = [], []
    for record in records:
        report = reports.get(record["id"])
        if record.get("status") not in node_registry.REACHABLE_STATUSES:
            continue
        if report is None:
            unreported.append(record["id"])
            continue
        domain = ((record.get("resources") or {}).get("failure_domain")) or {}
        nodes.append(
            {
                "id": record["id"],
                "role": planner_role(list(record.get("roles") or []), dataset_roles),
                "capacity_bytes": report["capacity_bytes"],
                "used_bytes": report["used_bytes"],
                "cleanup_percent": report["cleanup_percent"],
                "datacenter": domain.get("datacenter"),
                "rack": domain.get("rack"),
                "host": domain.get("host") or report.get("host"),
            }
        )
    known = {node["id"] for node in nodes}
    datasets = []
    for name, placement in sorted(placements.items()):
        declaration = declared.get(name)
        if declaration is None or placement["node"] not in known:
            continue
        datasets.append(
            {
                "name": name,
                "node": placement["node"],
                "bytes": placement["bytes"],
                "role": declaration.role,
                "pin": declaration.pin,
                "replica_group": declaration.replica_group,
            }
        )
    return nodes, datasets, unreported


def blockers(records, roles):
    """Why moves must wait, one sentence per node: a failed node of ``roles``, or a join."""
    found = []
    for record in records:
        status = record.get("status")
        node_roles = set(record.get("roles") or [])
        if status in FAILED_STATUSES and (node_roles & set(roles) or not node_roles):
            found.append(f"node {record['id']} is {status}")
        elif status in JOINING_STATUSES:
            found.append(f"node {record['id']} is joining ({status})")
    return found


def report_level(report):
    """The threshold level a node's checked report puts it at, by its own thresholds."""
    percent = 100.0 * report["used_bytes"] / report["capacity_bytes"]
    return thresholds.level_for(percent, report["thresholds"])
