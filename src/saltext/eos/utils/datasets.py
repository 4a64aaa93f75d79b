"""
Datasets: what they are (declarations), where they live (placements), and moving them safely.

Declarations
============

Master config (or the master's pillar-free ``eos`` key), every field optional:

.. code-block:: yaml

    eos:
      datasets:
        logs-2024: {}                       # role data, directory <dataset root>/logs-2024
        orders: {role: data, pin: data-1}   # must live on data-1
        events-a: {replica_group: events}   # replicas of each other: kept in different
        events-b: {replica_group: events}   #   failure domains
        media: {path: shared/media}         # directory relative to each node's dataset root

Each node keeps its datasets under its own dataset root (minion config
``eos:dataset:root``); the dataset ``name`` lives in ``<root>/<path>``.

Registry
========

Beside the node records, in the master's Salt cache (so the master's ``cache`` backend holds
it), each in a bank of its own with one key per item:

- ``eos/datasets``: per dataset ``{name, node, bytes, updated_at}``: where it lives. The
  placement is the truth: a copy elsewhere is a leftover, never a second source.
- ``eos/dataset-nodes``: per node its last report ``{root, host, capacity_bytes, used_bytes,
  cleanup_percent, datasets: {name: bytes}, reported_at}``.
- ``eos/dataset-moves``: the journal, per dataset being moved ``{dataset, from, to, bytes,
  stage, run, started_at}``. A move writes it before it copies anything and drops it once the
  source is gone, so an interrupted move is finished or undone by the next run (``recover``).

Executions hold the cluster's rebalance lease (``utils/lease.py``) named after their run: one
at a time cluster-wide, and recovery never touches an entry of the run holding the lease.

Moving
======

``execute_move`` runs one move through ``MoveSteps`` (callables the runner builds on Salt):
journal -> pull into staging on the destination -> compare the manifests of the source and
the staging copy -> commit staging into place -> switch the placement -> announce -> remove the
source -> drop the journal entry. Until the switch the source is untouched and the placement
points at it; any failure before it leaves exactly that, plus a partial copy that ``recover``
cleans up.
"""

import datetime
import os
import re
import shutil
import stat
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass

from saltext.eos.utils import config
from saltext.eos.utils import rebalance
from saltext.eos.utils import thresholds
from saltext.eos.utils import transfer

PLACEMENTS_BANK = "eos/datasets"
REPORTS_BANK = "eos/dataset-nodes"
JOURNAL_BANK = "eos/dataset-moves"

DECLARATION_FIELDS = frozenset(("role", "path", "pin", "replica_group"))
# fullmatch, never match: with match, "$" also accepts a trailing newline ("data\n").
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Where a pull stages its copy, under the destination's dataset root: hidden, so a dataset
# can never be named like it, and on the same filesystem, so the commit is a rename.
STAGING_DIR = ".eos-staging"

# Journal stages, in order. Before "switched" the source is the dataset; from it, the copy is.
PULLING = "pulling"
COMMITTED = "committed"
SWITCHED = "switched"

# Registry statuses that hold moves back: a failed node may hold the only copy of something,
# and a joining node (pending or accepted, not yet active) changes the mean under the plan.
FAILED_STATUSES = ("failed",)
JOINING_STATUSES = ("pending", "accepted")


# The one table of defaults for the node side (minion config ``eos:dataset``) and the master
# side (``eos:rebalance``).
NODE_DEFAULTS = {
    "root": "/srv/eos/datasets",  # where this node keeps its datasets
    "capacity_bytes": None,  # a share of a shared filesystem; None: the whole filesystem
    "rsync": transfer.DEFAULT_RSYNC,
}
REBALANCE_DEFAULTS = {
    "threshold": rebalance.DEFAULT_THRESHOLD,
    "transport": "auto",  # local when both nodes report the same host, else ssh
    "ssh_user": None,
    "bwlimit_kbps": None,  # per move, rsync --bwlimit
    "concurrency": 1,  # moves at once
    "auto": False,  # the reactor executes plans, not only computes them
    "lease_seconds": 1800,  # a rebalance lease not renewed this long belongs to a dead run
}
REBALANCE_LEASE_KEY = "rebalance_lease"  # in the registry's cluster bank


class InvalidDatasets(config.InvalidConfig):
    """``eos:datasets`` (or a dataset report) that cannot be used; names the key and value."""


class MoveFailed(Exception):
    """A move stopped before the switch: the source is intact and still the placement."""


@dataclass(frozen=True)
class Declaration:
    name: str
    role: str
    path: str
    pin: str | None = None
    replica_group: str | None = None


def declarations(layers):
    """{name: Declaration} from ``eos:datasets``; InvalidDatasets names a bad entry."""
    given = layers.get("datasets", default={})
    if not isinstance(given, Mapping):
        raise InvalidDatasets(f"{config.key_name('datasets')}: {given!r} is not a mapping")
    return {name: _declaration(name, value) for name, value in sorted(given.items())}


def _declaration(name, value):
    key = config.key_name("datasets", name)
    check_name(name, key)
    value = {} if value is None else value
    if not isinstance(value, Mapping):
        raise InvalidDatasets(f"{key}: {value!r} is not a mapping")
    unknown = sorted(map(str, value.keys() - DECLARATION_FIELDS))
    if unknown:
        raise InvalidDatasets(f"{key}: unknown field {unknown[0]!r}")
    return Declaration(
        name=name,
        role=_word(value.get("role", rebalance.DEFAULT_ROLE), f"{key}:role"),
        path=relative_path(value.get("path", name), f"{key}:path"),
        pin=_optional_word(value.get("pin"), f"{key}:pin"),
        replica_group=_optional_word(value.get("replica_group"), f"{key}:replica_group"),
    )


def check_name(name, key="dataset"):
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise InvalidDatasets(
            f"{key}: {name!r} is not a dataset name (letters, digits, '.', '_', '-', "
            "starting with a letter or digit, at most 128)"
        )
    return name


def relative_path(value, key):
    """``value`` when it is a relative path that stays below the root it is joined to."""
    if not isinstance(value, str) or not value or os.path.isabs(value):
        raise InvalidDatasets(f"{key}: {value!r} is not a relative path")
    parts = value.split("/")
    if any(part in ("", ".", "..") or part.startswith(".eos") for part in parts):
        raise InvalidDatasets(f"{key}: {value!r} must name a directory below the dataset root")
    return value


def _word(value, key):
    if not isinstance(value, str) or not value:
        raise InvalidDatasets(f"{key}: {value!r} is not a name")
    return value


def _optional_word(value, key):
    return None if value is None else _word(value, key)


# --- settings --------------------------------------------------------------------------------


def node_settings(layers):
    """NODE_DEFAULTS overlaid with ``eos:dataset``, checked."""
    settings = _overlay(layers, "dataset", NODE_DEFAULTS)
    root = settings["root"]
    if not isinstance(root, str) or not os.path.isabs(root):
        raise InvalidDatasets(f"{config.key_name('dataset', 'root')}: {root!r} is not absolute")
    capacity = settings["capacity_bytes"]
    if capacity is not None and (
        isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0
    ):
        raise InvalidDatasets(
            f"{config.key_name('dataset', 'capacity_bytes')}: {capacity!r} is not a whole "
            "number of bytes above 0"
        )
    _word(settings["rsync"], config.key_name("dataset", "rsync"))
    return settings


def rebalance_settings(layers):
    """REBALANCE_DEFAULTS overlaid with ``eos:rebalance``, checked."""
    settings = _overlay(layers, "rebalance", REBALANCE_DEFAULTS)
    try:
        rebalance.check_threshold(settings["threshold"])
        transfer.choose_transport(settings["transport"], "", "")
        if settings["bwlimit_kbps"] is not None:
            transfer.check_bwlimit(settings["bwlimit_kbps"])
    except (rebalance.InvalidRebalance, transfer.TransferError) as err:
        raise InvalidDatasets(f"{config.key_name('rebalance')}: {err}") from err
    concurrency = settings["concurrency"]
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidDatasets(
            f"{config.key_name('rebalance', 'concurrency')}: {concurrency!r} is not a whole "
            "number of moves above 0"
        )
    if not isinstance(settings["auto"], bool):
        raise InvalidDatasets(
            f"{config.key_name('rebalance', 'auto')}: {settings['auto']!r} is not true or false"
        )
    if settings["ssh_user"] is not None:
        _word(settings["ssh_user"], config.key_name("rebalance", "ssh_user"))
    settings["lease_seconds"] = config.number(
        settings["lease_seconds"], config.key_name("rebalance", "lease_seconds"), minimum=1
    )
    return settings


def _overlay(layers, section, defaults):
    given = layers.get(section, default={})
    if not isinstance(given, Mapping):
        raise InvalidDatasets(f"{config.key_name(section)}: {given!r} is not a mapping")
    unknown = sorted(map(str, given.keys() - defaults.keys()))
    if unknown:
        raise InvalidDatasets(f"{config.key_name(section)}: unknown key {unknown[0]!r}")
    return {**defaults, **given}


# --- the node side: what lives under a dataset root -------------------------------------------


def dataset_dir(root, path):
    return os.path.join(root, path)


def staging_dir(root, name):
    return os.path.join(root, STAGING_DIR, name)


def tree_bytes(path):
    """Bytes of the regular files under ``path`` (apparent sizes), not following links."""
    total = 0
    for directory, _, names in os.walk(path):
        for name in names:
            info = os.lstat(os.path.join(directory, name))
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def top_level_dirs(root):
    """Names of the directories directly below ``root`` that could be datasets."""
    if not os.path.isdir(root):
        return []
    return sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir(follow_symlinks=False) and DATASET_NAME.fullmatch(entry.name)
    )


def local_sizes(root, paths):
    """{name: bytes} of the datasets of ``paths`` ({name: relative path}) present under root."""
    found = {}
    for name, path in sorted(paths.items()):
        directory = dataset_dir(root, path)
        if os.path.isdir(directory) and not os.path.islink(directory):
            found[name] = tree_bytes(directory)
    return found


def mount_point(path):
    """The mount point of the filesystem holding ``path`` (its nearest existing parent)."""
    path = os.path.realpath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def node_usage(root, capacity_bytes=None):
    """
    (capacity, used) bytes of this node's datasets' space: the filesystem of ``root``, or
    ``capacity_bytes`` of it (a node's share of a shared filesystem), used by what is under
    ``root``, staging copies included (they take room until committed or cleaned).
    """
    if capacity_bytes is not None:
        used = tree_bytes(root) if os.path.isdir(root) else 0
        return capacity_bytes, min(used, capacity_bytes)
    usage = shutil.disk_usage(mount_point(root))
    return usage.total, usage.used


def free_bytes(root, capacity_bytes=None):
    """Bytes a pull may still write: the share left, never more than the filesystem has."""
    free = shutil.disk_usage(mount_point(root)).free
    if capacity_bytes is not None:
        capacity, used = node_usage(root, capacity_bytes)
        free = min(free, capacity - used)
    return free


def commit_staging(root, name, path):
    """Rename the staging copy of ``name`` into place; never over an existing directory."""
    staged = staging_dir(root, name)
    target = dataset_dir(root, path)
    if not os.path.isdir(staged):
        raise MoveFailed(f"dataset {name}: no staging copy at {staged}")
    if os.path.lexists(target):
        raise MoveFailed(f"dataset {name}: {target} exists already; nothing was replaced")
    partial = os.path.join(staged, transfer.PARTIAL_DIR)
    if os.path.isdir(partial):
        shutil.rmtree(partial)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(staged, target)
    return target


def remove_tree(path):
    """Delete ``path`` (a directory, not followed if it is a link); True when it existed."""
    if os.path.islink(path):
        os.unlink(path)
        return True
    if os.path.isdir(path):
        shutil.rmtree(path)
        return True
    return False


def clean_partial(root, name, path, committed=False):
    """
    Delete the staging copy of ``name`` and, when ``committed`` (the move reached its commit
    but not its switch), the copy in place. The caller has checked the dataset is not placed
    here. Returns the paths deleted.
    """
    candidates = [staging_dir(root, name)]
    if committed:
        candidates.append(dataset_dir(root, path))
    return [candidate for candidate in candidates if remove_tree(candidate)]


# --- the registry's dataset banks ------------------------------------------------------------


def timestamp(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")


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
            {**report, "reported_at": timestamp(now), "reported_epoch": now, "previous": previous},
        )

    def journal(self):
        return self._all(JOURNAL_BANK)

    def write_journal(self, move, stage, run=None):
        entry = {**move, "stage": stage, "run": run, "updated_at": self._now()}
        self.cache.store(JOURNAL_BANK, move["dataset"], entry)
        return entry

    def drop_journal(self, name):
        self.cache.flush(JOURNAL_BANK, name)

    def _all(self, bank):
        found = {}
        for key in sorted(self.cache.list(bank)):
            value = self.cache.fetch(bank, key)
            if value:
                found[key] = value
        return found

    def _now(self):
        return timestamp(self.clock())


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
    {node: {status, roles, capacity_bytes, used_bytes, usage_percent, level, datasets,
    time_to_full_seconds, reported_at}} for every node record; the fleet report's rows.
    Nodes that have not reported have None for what only a report can say.
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


# --- from the registry to the planner --------------------------------------------------------


def planner_role(record_roles, dataset_roles):
    """The role a node is balanced in: its first role that datasets use, else its first role."""
    for role in record_roles:
        if role in dataset_roles:
            return role
    return record_roles[0] if record_roles else "unassigned"


def planner_inputs(records, reports, placements, declared):
    """
    (nodes, datasets, unreported) for ``rebalance.plan`` from node records, node reports,
    placements and declarations. Only members (accepted or active) that have reported their
    datasets are planned; the others are listed in ``unreported``.
    """
    dataset_roles = {declaration.role for declaration in declared.values()}
    dataset_roles.add(rebalance.DEFAULT_ROLE)
    nodes, unreported = [], []
    for record in records:
        report = reports.get(record["id"])
        if record.get("status") not in ("accepted", "active"):
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
            found.append(f"node {record['id']} is failed")
        elif status in JOINING_STATUSES:
            found.append(f"node {record['id']} is joining ({status})")
    return found


# --- executing moves --------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveSteps:
    """
    What a move needs from Salt, each a callable returning plain data or raising MoveFailed:

    - ``pull(move)``: copy the source into staging on the destination;
    - ``manifest(node, name, staged)``: the transfer.manifest of the dataset on ``node``
      (its staging copy when ``staged``);
    - ``commit(move)``: rename staging into place on the destination;
    - ``remove(node, name)``: delete the dataset's directory on ``node``;
    - ``clean_partial(node, name, committed)``: delete staging (and, when ``committed``, the
      uncommitted final copy) on ``node``;
    - ``announce(result)``: fire the moved event;
    - ``still_leased()``: raise MoveFailed when this run no longer holds the rebalance lease;
      called before every step that changes something.
    """

    pull: Callable
    manifest: Callable
    commit: Callable
    remove: Callable
    clean_partial: Callable
    announce: Callable
    still_leased: Callable = lambda: None


def execute_move(store, move, steps, run=None):
    """
    Run one move (``{dataset, from, to, bytes}``) for ``run``; returns its result. Raises
    MoveFailed when it stops before the switch, with the source intact and still placed.
    """
    name, source, destination = move["dataset"], move["from"], move["to"]
    steps.still_leased()
    placement = store.placement(name)
    if placement is None or placement["node"] != source:
        where = placement["node"] if placement else "nowhere"
        raise MoveFailed(f"dataset {name}: placed on {where}, not {source}; plan again")
    store.write_journal(move, PULLING, run)
    steps.pull(move)
    problems = transfer.compare(
        steps.manifest(source, name, False), steps.manifest(destination, name, True)
    )
    if problems:
        raise MoveFailed(
            f"dataset {name}: the copy on {destination} differs: {'; '.join(problems)}"
        )
    steps.still_leased()
    steps.commit(move)
    # Journalled only once the commit answered: a commit refused because a directory of that
    # name was already there must not let the cleanup delete that directory.
    store.write_journal(move, COMMITTED, run)
    copied = steps.manifest(destination, name, False)
    steps.still_leased()
    store.place(name, destination, copied["bytes"])
    store.write_journal(move, SWITCHED, run)
    result = {**move, "verified_files": copied["count"], "verified_bytes": copied["bytes"]}
    steps.announce(result)
    steps.remove(source, name)
    store.drop_journal(name)
    return result


def recover(store, steps, live_run=None):
    """
    Finish or undo every journalled move; returns what was done, one entry per move.

    Placement still on the source: the copy never became the dataset, so the destination's
    staging (and an uncommitted final copy) is deleted. Placement on the destination: the
    switch happened, so the source is removed. An entry whose cleanup fails stays for the
    next run. Entries of ``live_run`` (the run holding the rebalance lease) are in flight,
    not interrupted: they are never touched.
    """
    done = []
    for name, entry in store.journal().items():
        if live_run is not None and entry.get("run") == live_run:
            done.append({"dataset": name, "action": f"left alone: run {live_run} is moving it"})
            continue
        placement = store.placement(name)
        placed_on = placement["node"] if placement else None
        try:
            steps.still_leased()
            if placed_on == entry["to"]:
                steps.remove(entry["from"], name)
                action = f"removed the source on {entry['from']}"
            else:
                steps.clean_partial(entry["to"], name, entry["stage"] != PULLING)
                action = f"cleaned the partial copy on {entry['to']}"
        except MoveFailed as err:
            done.append({"dataset": name, "action": "kept in the journal", "error": str(err)})
            continue
        store.drop_journal(name)
        done.append({"dataset": name, "action": action})
    return done


def report_level(report):
    """The threshold level a node's checked report puts it at, by its own thresholds."""
    percent = 100.0 * report["used_bytes"] / report["capacity_bytes"]
    return thresholds.level_for(percent, report["thresholds"])


def waves(moves, concurrency):
    """
    The moves in groups that may run at once: at most ``concurrency`` each, no node in two
    moves of a group, and the planner's order kept (a move that relies on an earlier move
    freeing its destination always runs in a later group).
    """
    groups, current, busy = [], [], set()
    for move in moves:
        nodes = {move["from"], move["to"]}
        if len(current) >= concurrency or nodes & busy:
            groups.append(current)
            current, busy = [], set()
        current.append(move)
        busy |= nodes
    if current:
        groups.append(current)
    return groups
