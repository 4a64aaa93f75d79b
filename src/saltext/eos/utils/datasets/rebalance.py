"""
The rebalance planner: which datasets move between which nodes so that every node's usage is
within ``threshold`` percentage points of the mean, moving as few bytes as possible.

This module only plans; it moves nothing. ``plan(nodes, datasets, threshold)`` returns a Plan.
``docs/rebalance.md`` has the full description and the reasoning behind each guarantee.

Model
=====

- A Node has an id, a role, ``capacity_bytes``, ``used_bytes``, ``cleanup_percent`` (the usage
  a destination may never be pushed to or past) and a failure domain (datacenter, rack, host).
- A Dataset is a directory EOS may place on any node of its role: a name, its role (default
  ``data``), the node it lives on, its size in bytes, an optional pin (the node it must live
  on) and an optional replica group (replicas of each other, kept apart).
- Nodes are balanced per role: the datasets of a role move only between the nodes of that role.
  The roles balanced are ``data`` and the roles of the given datasets; nodes of other roles
  are reported, not balanced.

Mean and band
=============

The mean of a role is ``100 * sum(used) / sum(capacity)`` over its nodes: the usage the role
would have if every node were equally full. Moving bytes between them never changes it, so it
is a fixed target. (The plain average of the nodes' percentages would change with every move.)
Node ``i`` is within the threshold ``T`` when ``c_i * (M - T) / 100 <= u_i <= c_i * (M + T) /
100``; in whole bytes, ``lo_i = ceil(...)`` and ``hi_i = floor(...)``, computed exactly.

Lower bound
===========

Every byte a plan moves leaves exactly one node and arrives at exactly one node. A node above
its band must lose at least ``excess_i = u_i - hi_i`` bytes; one below it must gain at least
``deficit_i = lo_i - u_i``. So any plan that brings every node within the band moves at least
``sum(excess)`` bytes (counting what leaves) and at least ``sum(deficit)`` bytes (counting what
arrives): the bound is the larger of the two, summed over roles. ``lower_bound_bytes``.

Algorithm
=========

1. Pins: a dataset pinned to another node than the one it lives on moves there first (if the
   pin has room below its cleanup level and the move keeps its replicas apart).
2. Drain, per role: repeatedly the fullest node above its band (a heap by usage percent)
   sends one dataset to the emptiest node that can take it (a heap the other way round).
3. Fill, per role: repeatedly the emptiest node below its band receives one dataset from the
   fullest node that can give one.

Each step chooses the largest dataset not above what the pair still needs (few moves, no
overshoot), else the smallest one that still fits and leaves the role closer to its band.
A destination never passes the top of its band nor reaches its cleanup level; replicas never
end up in fewer failure domains than they started in; a dataset moves at most once. A step
tries at most ``PARTNER_SCAN_LIMIT`` partners, so the plan costs O((n + d) log n) for ``n``
nodes and ``d`` datasets (plus taking each moved dataset out of its node's sorted list).
Ties are broken by node id and dataset name: the plan is deterministic.
"""

import bisect
import heapq
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

from saltext.eos.utils import config

DEFAULT_THRESHOLD = 10
THRESHOLD_RANGE = (1, 50)
DEFAULT_ROLE = "data"
DOMAIN_LEVELS = ("host", "rack", "datacenter")
# A step gives up on a node after trying this many partners: it bounds the work per step, and
# a partner further down a heap is fuller (or emptier) and so less likely to fit anyway.
PARTNER_SCAN_LIMIT = 64

NODE_REQUIRED = ("id", "role", "capacity_bytes", "used_bytes", "cleanup_percent")
NODE_FIELDS = frozenset((*NODE_REQUIRED, "datacenter", "rack", "host"))
DATASET_REQUIRED = ("name", "node", "bytes")
DATASET_FIELDS = frozenset((*DATASET_REQUIRED, "role", "pin", "replica_group"))

# Why a node was left outside its band: what its last step ran into.
NO_PARTNER = "no_partner"
NO_ROOM = "no_room"
NO_DATASETS = "no_datasets"
CLEANUP_BELOW_BAND = "cleanup_below_band"
OVERSHOOT = "overshoot"
REPLICAS = "replicas"
CAUSES = {
    NO_PARTNER: "no node of its role on the other side of the mean can take or give data",
    NO_ROOM: "no node of its role has room, below the top of its band and its cleanup level, "
    "for any dataset that would help",
    NO_DATASETS: "the rest of its usage is not in datasets the planner may move "
    "(other files, or pinned, excluded or already moved datasets)",
    CLEANUP_BELOW_BAND: "its cleanup level is below the band, and no move may push it there",
    OVERSHOOT: "every move that fits would overshoot and leave the role less balanced",
    REPLICAS: "every move that fits would put the replicas of a dataset in fewer failure domains",
}
# When several partners fail differently, the most specific cause is reported.
CAUSE_RANK = tuple(CAUSES)


class InvalidRebalance(config.InvalidConfig):
    """Planner input that cannot be used; the message names the item and the value."""


@dataclass(frozen=True, slots=True)
class Node:
    """A node as the planner sees it; the usage is the filesystem holding its datasets."""

    id: str
    role: str
    capacity_bytes: int
    used_bytes: int
    cleanup_percent: float
    datacenter: str | None = None
    rack: str | None = None
    host: str | None = None

    def domain(self, level):
        """This node's failure domain at ``level``; '' when the cluster does not say."""
        if level == "datacenter":
            return self.datacenter or ""
        if level == "rack":
            # Rack names repeat across datacenters: r1 in dc1 is not r1 in dc2.
            return f"{self.datacenter or ''}/{self.rack}" if self.rack else ""
        return self.host or self.id


class Dataset(NamedTuple):
    """
    A directory the planner may place on any node of ``role``; ``node`` is where it lives.

    A named tuple rather than a frozen dataclass: a fleet has hundreds of thousands of
    datasets and a tuple is built several times faster.
    """

    name: str
    node: str
    bytes: int
    role: str = DEFAULT_ROLE
    pin: str | None = None
    replica_group: str | None = None


@dataclass(frozen=True, slots=True)
class Move:
    """One dataset copied from ``source`` to ``destination``; ``kind`` is balance or pin."""

    dataset: str
    source: str
    destination: str
    bytes: int
    kind: str = "balance"

    def as_dict(self):
        return {
            "dataset": self.dataset,
            "from": self.source,
            "to": self.destination,
            "bytes": self.bytes,
            "kind": self.kind,
        }


@dataclass(frozen=True, slots=True)
class NodeUsage:
    """A node before and after the plan; ``within`` is None for nodes not balanced."""

    id: str
    role: str
    capacity_bytes: int
    used_before: int
    used_after: int
    within: bool | None

    @property
    def percent_before(self):
        return 100 * self.used_before / self.capacity_bytes

    @property
    def percent_after(self):
        return 100 * self.used_after / self.capacity_bytes

    def as_dict(self):
        return {
            "role": self.role,
            "capacity_bytes": self.capacity_bytes,
            "used_bytes_before": self.used_before,
            "used_bytes_after": self.used_after,
            "percent_before": round(self.percent_before, 3),
            "percent_after": round(self.percent_after, 3),
            "within": self.within,
        }


@dataclass(frozen=True, slots=True)
class RoleBalance:
    """One balanced role: its mean, band, bound, traffic and deviations (percentage points)."""

    role: str
    nodes: int
    mean_percent: float
    threshold: float
    lower_bound_bytes: int
    bytes_moved: int
    max_deviation_before: float
    max_deviation_after: float
    reached: bool

    def as_dict(self):
        return {
            "nodes": self.nodes,
            "mean_percent": round(self.mean_percent, 3),
            "band_percent": [
                round(self.mean_percent - self.threshold, 3),
                round(self.mean_percent + self.threshold, 3),
            ],
            "lower_bound_bytes": self.lower_bound_bytes,
            "bytes_moved": self.bytes_moved,
            "max_deviation_before": round(self.max_deviation_before, 3),
            "max_deviation_after": round(self.max_deviation_after, 3),
            "reached": self.reached,
        }


@dataclass(frozen=True)
class Plan:
    """
    The moves, in the order they should run, and what they achieve.

    ``nodes``: {id: NodeUsage} for every node given; ``roles``: {role: RoleBalance} for every
    balanced role; ``reasons``: why what is still outside its band could not be balanced (and
    which pins could not be honoured), one sentence each, naming the node or dataset.
    """

    threshold: float
    moves: tuple
    nodes: dict
    roles: dict
    lower_bound_bytes: int
    reasons: tuple

    @property
    def bytes_moved(self):
        return sum(move.bytes for move in self.moves)

    @property
    def reached(self):
        """Whether every node of every balanced role ends within the threshold of its mean."""
        return all(balance.reached for balance in self.roles.values())

    def as_dict(self):
        return {
            "threshold": self.threshold,
            "moves": [move.as_dict() for move in self.moves],
            "nodes": {node_id: usage.as_dict() for node_id, usage in self.nodes.items()},
            "roles": {role: balance.as_dict() for role, balance in self.roles.items()},
            "bytes_moved": self.bytes_moved,
            "lower_bound_bytes": self.lower_bound_bytes,
            "reached": self.reached,
            "reasons": list(self.reasons),
        }


# --- checked inputs --------------------------------------------------------------------------


def check_threshold(value):
    """``value`` when it is a number of percentage points from 1 to 50, else InvalidRebalance."""
    low, high = THRESHOLD_RANGE
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise InvalidRebalance(
            f"threshold: {value!r} is not a number of percentage points from {low} to {high}"
        )
    return value


def check_nodes(descriptions):
    """Checked Nodes from Nodes or mappings with the Node fields, sorted by id."""
    if not isinstance(descriptions, (list, tuple)):
        raise InvalidRebalance(f"nodes: {descriptions!r} is not a list")
    checked = []
    first_index = {}
    for index, description in enumerate(descriptions):
        node = _node(index, description)
        if node.id in first_index:
            raise InvalidRebalance(
                f"nodes[{index}] ({node.id}): duplicate id (also nodes[{first_index[node.id]}])"
            )
        first_index[node.id] = index
        checked.append(node)
    return sorted(checked, key=lambda node: node.id)


def _node(index, description):
    where = f"nodes[{index}]"
    if isinstance(description, Node):
        values = {name: getattr(description, name) for name in NODE_FIELDS}
    elif isinstance(description, Mapping):
        values = description
        unknown = values.keys() - NODE_FIELDS
        if unknown:
            raise InvalidRebalance(f"{where}: unknown field {sorted(map(str, unknown))[0]!r}")
    else:
        raise InvalidRebalance(f"{where}: {description!r} is not a mapping")
    node_id = _name(values.get("id"), where, "id")
    where = f"{where} ({node_id})"
    for key in NODE_REQUIRED:
        if values.get(key) is None:
            raise InvalidRebalance(f"{where}: missing {key}")
    capacity = _bytes(values["capacity_bytes"], where, "capacity_bytes")
    if capacity == 0:
        raise InvalidRebalance(f"{where}: capacity_bytes 0 must be > 0")
    used = _bytes(values["used_bytes"], where, "used_bytes")
    if used > capacity:
        raise InvalidRebalance(f"{where}: used_bytes {used} is above capacity_bytes {capacity}")
    return Node(
        id=node_id,
        role=_name(values["role"], where, "role"),
        capacity_bytes=capacity,
        used_bytes=used,
        cleanup_percent=_cleanup_percent(values["cleanup_percent"], where),
        datacenter=_domain_name(values.get("datacenter"), where, "datacenter"),
        rack=_domain_name(values.get("rack"), where, "rack"),
        host=_domain_name(values.get("host"), where, "host"),
    )


def check_datasets(descriptions, nodes):
    """
    Checked Datasets from Datasets or mappings with the Dataset fields, in the given order.

    ``nodes``: checked Nodes. Each dataset's node and pin must be one of them, a pin a node of
    the dataset's role, and the datasets of a node must fit in its capacity.
    """
    if not isinstance(descriptions, (list, tuple)):
        raise InvalidRebalance(f"datasets: {descriptions!r} is not a list")
    roles = {node.id: node.role for node in nodes}
    checked = []
    totals = dict.fromkeys(roles, 0)
    for index, description in enumerate(descriptions):
        dataset = _quick_dataset(description, roles) or _dataset(index, description, roles)
        totals[dataset.node] += dataset.bytes
        checked.append(dataset)
    if len({dataset.name for dataset in checked}) != len(checked):
        _raise_duplicate(checked)
    for node in nodes:
        if totals[node.id] > node.capacity_bytes:
            raise InvalidRebalance(
                f"node {node.id}: its datasets hold {totals[node.id]} bytes, more than its "
                f"capacity_bytes {node.capacity_bytes}"
            )
    return checked


def _raise_duplicate(datasets):
    first_index = {}
    for index, dataset in enumerate(datasets):
        if dataset.name in first_index:
            raise InvalidRebalance(
                f"datasets[{index}] ({dataset.name}): duplicate name "
                f"(also datasets[{first_index[dataset.name]}])"
            )
        first_index[dataset.name] = index


def _quick_dataset(description, roles):
    """
    The Dataset of a well-formed description, else None (``_dataset`` then says what is
    wrong). A fleet has hundreds of thousands of datasets: this path builds no error text.
    """
    if type(description) is Dataset:
        name, node_id, size = description.name, description.node, description.bytes
        role, pin, group = description.role, description.pin, description.replica_group
    elif type(description) is dict and description.keys() <= DATASET_FIELDS:
        get = description.get
        name, node_id, size = get("name"), get("node"), get("bytes")
        role, pin, group = get("role") or DEFAULT_ROLE, get("pin"), get("replica_group")
    else:
        return None
    well_formed = (
        type(name) is str
        and name
        and type(node_id) is str
        and node_id in roles
        and type(size) is int
        and size >= 0
        and type(role) is str
        and (pin is None or (type(pin) is str and roles.get(pin) == role))
        and (group is None or (type(group) is str and group))
    )
    if not well_formed:
        return None
    if type(description) is Dataset:
        return description
    return Dataset(name, node_id, size, role, pin, group)


def _dataset(index, description, roles):
    where = f"datasets[{index}]"
    if isinstance(description, Dataset):
        values = {
            "name": description.name,
            "node": description.node,
            "bytes": description.bytes,
            "role": description.role,
            "pin": description.pin,
            "replica_group": description.replica_group,
        }
    elif isinstance(description, Mapping):
        values = description
        unknown = values.keys() - DATASET_FIELDS
        if unknown:
            raise InvalidRebalance(f"{where}: unknown field {sorted(map(str, unknown))[0]!r}")
    else:
        raise InvalidRebalance(f"{where}: {description!r} is not a mapping")
    name = _name(values.get("name"), where, "name")
    where = f"{where} ({name})"
    for key in DATASET_REQUIRED:
        if values.get(key) is None:
            raise InvalidRebalance(f"{where}: missing {key}")
    role = _name(values.get("role") or DEFAULT_ROLE, where, "role")
    node_id = _known_node(values["node"], roles, where, "node")
    pin = values.get("pin")
    if pin is not None:
        pin = _known_node(pin, roles, where, "pin")
        if roles[pin] != role:
            raise InvalidRebalance(
                f"{where}: pin {pin!r} is a node of role {roles[pin]!r}, "
                f"but the dataset's role is {role!r}"
            )
    group = values.get("replica_group")
    return Dataset(
        name=name,
        node=node_id,
        bytes=_bytes(values["bytes"], where, "bytes"),
        role=role,
        pin=pin,
        replica_group=None if group is None else _name(group, where, "replica_group"),
    )


def _name(value, where, key):
    if not isinstance(value, str) or not value:
        raise InvalidRebalance(f"{where}: {key} {value!r} is not a non-empty string")
    return value


def _known_node(value, roles, where, key):
    if not isinstance(value, str) or value not in roles:
        raise InvalidRebalance(f"{where}: {key} {value!r} is not a known node")
    return value


def _bytes(value, where, key):
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRebalance(f"{where}: {key} {value!r} is not a whole number of bytes")
    if value < 0:
        raise InvalidRebalance(f"{where}: {key} {value!r} must be >= 0")
    return value


def _cleanup_percent(value, where):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value <= 100
    ):
        raise InvalidRebalance(f"{where}: cleanup_percent {value!r} is not a percent in (0, 100]")
    return value


def _domain_name(value, where, key):
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # rack 3, datacenter 2: numbers are names too
    raise InvalidRebalance(f"{where}: {key} {value!r} is not a string")


def _known_names(values, known, key, kind):
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple, set, frozenset)):
        raise InvalidRebalance(f"{key}: {values!r} is not a list of {kind} names")
    for value in sorted(values, key=str):
        if value not in known:
            raise InvalidRebalance(f"{key}: {value!r} is not a known {kind}")
    return frozenset(values)


# --- the band and the lower bound ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Band:
    """
    Whole-byte usage limits of one node: within the threshold when ``low <= used <= high``;
    ``mean`` is the usage at the role's mean (a soft target for partners that overshoot).
    """

    low: int
    mean: int
    high: int

    def violation(self, used):
        """How many bytes ``used`` is outside the band (0 inside)."""
        return max(0, used - self.high) + max(0, self.low - used)


def bands(capacities, used, threshold):
    """
    The Band of each node of one role, from its capacity and the role's total usage; exact.

    With ``M = 100 * U / C`` (the role's used and capacity totals) and ``T = p / q``, a node of
    capacity ``c`` has ``c * (M +- T) / 100 = c * (100 * q * U +- p * C) / (100 * q * C)``:
    integer arithmetic, so a node exactly on the edge of its band is within it.
    """
    total_used, total_capacity = sum(used), sum(capacities)
    share = Fraction(str(threshold))
    p, q = share.numerator, share.denominator
    denominator = 100 * q * total_capacity
    upper = 100 * q * total_used + p * total_capacity
    lower = 100 * q * total_used - p * total_capacity
    return [
        Band(
            low=-((-capacity * lower) // denominator),
            mean=capacity * total_used // total_capacity,
            high=capacity * upper // denominator,
        )
        for capacity in capacities
    ]


def mean_percent(capacities, used):
    """A role's mean usage: 100 * total used / total capacity."""
    return 100 * sum(used) / sum(capacities)


def lower_bound_bytes(nodes, threshold=DEFAULT_THRESHOLD):
    """
    The fewest bytes any plan must move to bring every node within ``threshold`` percentage
    points of its role's mean usage.

    Per role, with each node's whole-byte band ``[low, high]`` (``bands``): every byte moved
    leaves one node and arrives at one node, a node above its band must lose at least
    ``used - high`` bytes and a node below it must gain at least ``low - used``. So any plan
    moves at least the sum of the excesses and at least the sum of the deficits: the bound is
    the larger of the two, summed over roles. It is reached when datasets are small enough
    to cut the excess into exact pieces and no pin, cleanup level or replica gets in the way.

    ``nodes``: Nodes or node mappings (see ``check_nodes``).
    """
    threshold = check_threshold(threshold)
    by_role = {}
    for node in check_nodes(nodes):
        by_role.setdefault(node.role, []).append(node)
    return sum(
        _role_lower_bound(
            [node.capacity_bytes for node in members],
            [node.used_bytes for node in members],
            threshold,
        )
        for members in by_role.values()
    )


def _role_lower_bound(capacities, used, threshold):
    excess = deficit = 0
    for band, usage in zip(bands(capacities, used, threshold), used, strict=True):
        excess += max(0, usage - band.high)
        deficit += max(0, band.low - usage)
    return max(excess, deficit)


# --- the plan --------------------------------------------------------------------------------


def plan(nodes, datasets, threshold=DEFAULT_THRESHOLD, exclude_nodes=(), exclude_datasets=()):
    """
    A Plan that brings every node within ``threshold`` percentage points of its role's mean
    usage, moving close to the fewest bytes possible. Moves nothing.

    ``nodes``, ``datasets``: Nodes and Datasets or mappings with their fields. A node counts as
    at least as full as the datasets it holds (its own figure may be older than theirs).
    ``exclude_nodes``: node ids that neither send nor receive and do not count in their role's
    mean (a node under maintenance). ``exclude_datasets``: dataset names that stay where they
    are. Raises InvalidRebalance naming any unknown node or dataset, a threshold outside
    1-50, or a dataset pinned to a node of another role.
    """
    threshold = check_threshold(threshold)
    checked_nodes = check_nodes(nodes)
    checked_datasets = check_datasets(datasets, checked_nodes)
    held_nodes = _known_names(
        exclude_nodes, {node.id for node in checked_nodes}, "exclude_nodes", "node"
    )
    held_datasets = _known_names(
        exclude_datasets, {d.name for d in checked_datasets}, "exclude_datasets", "dataset"
    )
    fleet = _Fleet(checked_nodes, checked_datasets)
    reasons = []
    pinned = fleet.sort_datasets(held_nodes, held_datasets, reasons)
    roles = _Roles(fleet, checked_datasets, held_nodes, threshold)
    lower_bound = roles.lower_bound()
    for dataset in pinned:
        fleet.move_to_pin(dataset, held_nodes, reasons)
    causes = {}
    for role in roles.names:
        causes.update(_Balancer(fleet, roles.members[role], roles.bands[role]).run())
    return _result(fleet, roles, threshold, lower_bound, causes, reasons)


class _Fleet:
    """
    The planning state over nodes addressed by index (sorted by id): usage, the datasets each
    node may still send (sorted by size, then name), replica domains and the moves so far.
    """

    def __init__(self, nodes, datasets):
        self.nodes = nodes
        self.index = {node.id: i for i, node in enumerate(nodes)}
        self.capacity = [node.capacity_bytes for node in nodes]
        self.cleanup_limit = [_cleanup_limit(node) for node in nodes]
        self.domains = [tuple(node.domain(level) for level in DOMAIN_LEVELS) for node in nodes]
        self.datasets = {}
        self.location = {}
        self.replicas = {}
        held = [0] * len(nodes)
        for dataset in datasets:
            i = self.index[dataset.node]
            held[i] += dataset.bytes
            self.datasets[dataset.name] = dataset
            self.location[dataset.name] = i
            if dataset.replica_group is not None:
                self.count_replica(dataset.replica_group, i)
        self.used = [max(node.used_bytes, total) for node, total in zip(nodes, held, strict=True)]
        self.used_before = list(self.used)
        self.sizes = [[] for _ in nodes]
        self.names = [[] for _ in nodes]
        self.version = [0] * len(nodes)
        self.moves = []

    def count_replica(self, group, i):
        counters = self.replicas.setdefault(group, [Counter() for _ in DOMAIN_LEVELS])
        for counter, domain in zip(counters, self.domains[i], strict=True):
            counter[domain] += 1

    def sort_datasets(self, held_nodes, held_datasets, reasons):
        """Fill the movable lists; return the datasets that must first move to their pin."""
        movable = [[] for _ in self.nodes]
        node_roles = [node.role for node in self.nodes]
        held = {self.index[node_id] for node_id in held_nodes}
        pinned = []
        misplaced = []
        for dataset in self.datasets.values():
            where = self.location[dataset.name]
            if where in held or dataset.name in held_datasets:
                continue
            if node_roles[where] != dataset.role:
                misplaced.append(dataset)
            elif dataset.pin is not None:
                if self.index[dataset.pin] != where:
                    pinned.append(dataset)
            elif dataset.bytes > 0:  # moving an empty dataset changes no usage
                movable[where].append((dataset.bytes, dataset.name))
        for dataset in sorted(misplaced, key=lambda dataset: dataset.name):
            node = self.nodes[self.location[dataset.name]]
            pin = f", not on its pin {dataset.pin}" if dataset.pin else ""
            reasons.append(
                f"dataset {dataset.name} (role {dataset.role}) stays on {node.id} "
                f"(role {node.role}){pin}: datasets move only between nodes of their role"
            )
        for i, entries in enumerate(movable):
            entries.sort()
            self.sizes[i] = [size for size, _ in entries]
            self.names[i] = [name for _, name in entries]
        return sorted(pinned, key=lambda dataset: dataset.name)

    def move_to_pin(self, dataset, held_nodes, reasons):
        source = self.location[dataset.name]
        target = self.index[dataset.pin]
        why = None
        if dataset.pin in held_nodes:
            why = f"{dataset.pin} is excluded"
        elif self.used[target] + dataset.bytes > self.cleanup_limit[target]:
            why = (
                f"{dataset.pin} would reach its cleanup level "
                f"({self.nodes[target].cleanup_percent:g}%)"
            )
        elif not self.replicas_allow(dataset.name, source, target):
            why = "a replica of it would lose a failure domain"
        if why:
            reasons.append(
                f"dataset {dataset.name} stays on {self.nodes[source].id}, "
                f"not on its pin {dataset.pin}: {why}"
            )
            return
        self.apply(dataset.name, source, target, kind="pin")

    def replicas_allow(self, name, source, target):
        """Whether moving ``name`` keeps its replica group in as many domains at every level."""
        group = self.datasets[name].replica_group
        if group is None:
            return True
        for counter, old, new in zip(
            self.replicas[group], self.domains[source], self.domains[target], strict=True
        ):
            # The group loses a domain when this was its only member there and gains none
            # when another member already sits in the new one.
            if old != new and counter[old] == 1 and counter[new] > 0:
                return False
        return True

    def apply(self, name, source, target, kind="balance", position=None):
        size = self.datasets[name].bytes
        if position is not None:
            del self.sizes[source][position]
            del self.names[source][position]
        self.used[source] -= size
        self.used[target] += size
        self.location[name] = target
        group = self.datasets[name].replica_group
        if group is not None:
            for counter, old, new in zip(
                self.replicas[group], self.domains[source], self.domains[target], strict=True
            ):
                counter[old] -= 1
                counter[new] += 1
        self.version[source] += 1
        self.version[target] += 1
        self.moves.append(Move(name, self.nodes[source].id, self.nodes[target].id, size, kind=kind))

    def percent(self, i):
        return self.used[i] / self.capacity[i]


def _cleanup_limit(node):
    """The most bytes ``node`` may hold and stay below its cleanup level (strictly)."""
    share = Fraction(str(node.cleanup_percent))
    ceiling = -((-node.capacity_bytes * share.numerator) // (100 * share.denominator))
    return ceiling - 1


class _Roles:
    """The balanced roles: their member nodes (not excluded) and bands, fixed before moves."""

    def __init__(self, fleet, datasets, held_nodes, threshold):
        self.fleet = fleet
        self.threshold = threshold
        # Data nodes are balanced even before any dataset is declared: the result then says
        # that their usage cannot move, rather than that there was nothing to balance.
        node_roles = {node.role for node in fleet.nodes}
        self.names = sorted({dataset.role for dataset in datasets} | ({DEFAULT_ROLE} & node_roles))
        self.members = {role: [] for role in self.names}
        for i, node in enumerate(fleet.nodes):
            if node.role in self.members and node.id not in held_nodes:
                self.members[node.role].append(i)
        self.bands = {}
        for role in self.names:
            members = self.members[role]
            capacities = [fleet.capacity[i] for i in members]
            used = [fleet.used[i] for i in members]
            self.bands[role] = (
                dict(zip(members, bands(capacities, used, threshold), strict=True))
                if members
                else {}
            )

    def band_of(self, i):
        """Node i's Band, or None when its role is not balanced or it is excluded."""
        role_bands = self.bands.get(self.fleet.nodes[i].role)
        return None if role_bands is None else role_bands.get(i)

    def lower_bound(self):
        return sum(self.role_lower_bound(role) for role in self.names)

    def role_lower_bound(self, role):
        members = self.members[role]
        if not members:
            return 0
        return _role_lower_bound(
            [self.fleet.capacity[i] for i in members],
            [self.fleet.used_before[i] for i in members],
            self.threshold,
        )


class _Balancer:
    """
    Drain then fill one role. Heaps hold ``(key, id, index, version)``: senders keyed by
    negative usage (fullest first), takers by usage (emptiest first). An entry whose version is
    not the node's current one is stale (the node moved data since) and is dropped on pop.
    """

    def __init__(self, fleet, members, node_bands):
        self.fleet = fleet
        self.members = members
        self.band = node_bands
        # The most a node may hold as a destination: the top of its band, below cleanup.
        self.ceiling = {i: min(node_bands[i].high, fleet.cleanup_limit[i]) for i in members}
        self.causes = {}

    def run(self):
        """Plan the role's moves into the fleet; return {index: cause} of nodes left outside."""
        retired = self.drain()
        self.fill(retired)
        return {
            i: self.causes.get(i) or self.default_cause(i)
            for i in self.members
            if self.over(i) or self.under(i)
        }

    def default_cause(self, i):
        # A node never tried as a destination: it had no room from the start.
        return CLEANUP_BELOW_BAND if self.fleet.cleanup_limit[i] < self.band[i].low else NO_ROOM

    def over(self, i):
        return self.fleet.used[i] > self.band[i].high

    def under(self, i):
        return self.fleet.used[i] < self.band[i].low

    def room(self, i):
        return self.ceiling[i] - self.fleet.used[i]

    def can_take(self, i):
        return not self.over(i) and self.room(i) > 0

    def can_give(self, i):
        return bool(self.fleet.sizes[i]) and not self.under(i)

    # -- drain: each node above its band sends to the emptiest nodes that can take data --

    def drain(self):
        fleet = self.fleet
        senders = self.heap((i for i in self.members if self.over(i)), fullest=True)
        takers = self.heap(i for i in self.members if self.can_take(i))
        retired = set()
        while (d := self.pop(senders, self.over)) is not None:
            if not fleet.sizes[d]:
                retired.add(d)
                self.causes[d] = NO_DATASETS
                continue
            found, cause = self.find_partner(
                takers,
                self.can_take,
                lambda r, d=d: fleet.percent(r) < fleet.percent(d),
                lambda r, d=d: self.choose_drain(d, r),
            )
            if found is None:
                retired.add(d)
                self.causes[d] = cause
                continue
            r, position = found
            fleet.apply(fleet.names[d][position], d, r, position=position)
            if self.over(d):
                self.push(senders, d, fullest=True)
            elif self.can_take(d):
                self.push(takers, d)
            if self.can_take(r):
                self.push(takers, r)
        return retired

    def choose_drain(self, d, r):
        used = self.fleet.used
        excess = used[d] - self.band[d].high
        # A node below its band is filled only up to the band: when deficits outweigh
        # excesses, bytes past it would count twice against the bound. Others fill up to
        # the mean, and past it only when already there; never past the ceiling.
        target = self.band[r].low if self.under(r) else self.band[r].mean
        if target <= used[r]:
            target = self.ceiling[r]
        return self.choose(d, r, min(excess, target - used[r], self.room(r)))

    # -- fill: each node below its band takes from the fullest nodes that can give --

    def fill(self, retired):
        fleet = self.fleet
        takers = self.heap(i for i in self.members if self.under(i) and self.room(i) > 0)
        senders = self.heap(
            (i for i in self.members if i not in retired and self.can_give(i)), fullest=True
        )
        while (r := self.pop(takers, lambda i: self.under(i) and self.room(i) > 0)) is not None:
            found, cause = self.find_partner(
                senders,
                self.can_give,
                lambda d, r=r: fleet.percent(d) > fleet.percent(r),
                lambda d, r=r: self.choose_fill(d, r),
            )
            if found is None:
                self.causes[r] = cause
                continue
            d, position = found
            fleet.apply(fleet.names[d][position], d, r, position=position)
            if self.can_give(d):
                self.push(senders, d, fullest=True)
            elif self.room(d) > 0:
                self.push(takers, d)  # an overshoot left it below its band
            if self.under(r) and self.room(r) > 0:
                self.push(takers, r)

    def choose_fill(self, d, r):
        used = self.fleet.used
        # A sender above the mean gives down to the mean, so it keeps a margin; below it,
        # down to the bottom of its band.
        floor = self.band[d].mean if used[d] > self.band[d].mean else self.band[d].low
        want = min(self.band[r].low - used[r], self.room(r), used[d] - floor)
        return self.choose(d, r, want)

    # -- shared --

    def choose(self, d, r, want):
        """
        Which of ``d``'s datasets to send to ``r``: the largest not above ``want``, else the
        smallest larger one that fits ``r`` and leaves the role closer to its band.
        Returns (position in d's lists, None) or (None, the cause of failure).
        """
        fleet = self.fleet
        sizes, names = fleet.sizes[d], fleet.names[d]
        room = self.room(r)
        if not sizes:
            return None, NO_DATASETS
        if sizes[0] > room:
            return None, NO_ROOM
        blocked = False
        if want > 0:
            largest = bisect.bisect_right(sizes, want) - 1
            for position in range(largest, max(-1, largest - PARTNER_SCAN_LIMIT), -1):
                if fleet.replicas_allow(names[position], d, r):
                    return position, None
                blocked = True
        start = bisect.bisect_right(sizes, max(want, 0))
        for position in range(start, min(len(sizes), start + PARTNER_SCAN_LIMIT)):
            if sizes[position] > room:
                break
            if not self.improves(d, r, sizes[position]):
                # Larger datasets overshoot further: none of them can do better.
                return None, REPLICAS if blocked else OVERSHOOT
            if fleet.replicas_allow(names[position], d, r):
                return position, None
            blocked = True
        return None, REPLICAS if blocked else NO_ROOM

    def improves(self, d, r, size):
        """Whether moving ``size`` bytes from d to r shrinks the bytes outside their bands."""
        used = self.fleet.used
        before = self.band[d].violation(used[d]) + self.band[r].violation(used[r])
        after = self.band[d].violation(used[d] - size) + self.band[r].violation(used[r] + size)
        return after < before

    def find_partner(self, heap, eligible, worthwhile, choose):
        """
        Partners from ``heap``, best first, until ``choose`` accepts one; the others go back.
        Returns ((partner, position), None) or (None, the most telling cause of failure).
        """
        tried = []
        cause = NO_PARTNER
        found = None
        while found is None and len(tried) < PARTNER_SCAN_LIMIT:
            entry = self.pop_entry(heap, eligible)
            if entry is None:
                break
            partner = entry[2]
            if not worthwhile(partner):
                tried.append(entry)
                break
            position, why = choose(partner)
            if position is None:
                tried.append(entry)
                cause = max(cause, why, key=CAUSE_RANK.index)
            else:
                found = (partner, position)
        for entry in tried:
            heapq.heappush(heap, entry)
        return found, None if found else cause

    def heap(self, indices, fullest=False):
        entries = [self.entry(i, fullest) for i in indices]
        heapq.heapify(entries)
        return entries

    def push(self, heap, i, fullest=False):
        heapq.heappush(heap, self.entry(i, fullest))

    def entry(self, i, fullest=False):
        percent = self.fleet.percent(i)
        node_id = self.fleet.nodes[i].id
        return (-percent if fullest else percent, node_id, i, self.fleet.version[i])

    def pop_entry(self, heap, eligible):
        while heap:
            entry = heapq.heappop(heap)
            i = entry[2]
            if entry[3] == self.fleet.version[i] and eligible(i):
                return entry
        return None

    def pop(self, heap, eligible):
        entry = self.pop_entry(heap, eligible)
        return None if entry is None else entry[2]


# --- the result ------------------------------------------------------------------------------


def _result(fleet, roles, threshold, lower_bound, causes, reasons):
    usages = {}
    for i, node in enumerate(fleet.nodes):
        band = roles.band_of(i)
        within = None if band is None else band.violation(fleet.used[i]) == 0
        usages[node.id] = NodeUsage(
            node.id, node.role, node.capacity_bytes, fleet.used_before[i], fleet.used[i], within
        )
    balances = {}
    for role in roles.names:
        members = roles.members[role]
        balances[role] = _role_balance(fleet, roles, role, members, threshold)
        for i in members:
            if i in causes:
                usage = usages[fleet.nodes[i].id]
                reasons.append(_outside_text(usage, balances[role], causes[i]))
    return Plan(
        threshold=threshold,
        moves=tuple(fleet.moves),
        nodes=usages,
        roles=balances,
        lower_bound_bytes=lower_bound,
        reasons=tuple(reasons),
    )


def _role_balance(fleet, roles, role, members, threshold):
    if not members:
        return RoleBalance(role, 0, 0.0, threshold, 0, 0, 0.0, 0.0, reached=True)
    capacities = [fleet.capacity[i] for i in members]
    mean = mean_percent(capacities, [fleet.used_before[i] for i in members])
    member_ids = {fleet.nodes[i].id for i in members}
    return RoleBalance(
        role=role,
        nodes=len(members),
        mean_percent=mean,
        threshold=threshold,
        lower_bound_bytes=roles.role_lower_bound(role),
        bytes_moved=sum(move.bytes for move in fleet.moves if move.destination in member_ids),
        max_deviation_before=max(
            abs(100 * fleet.used_before[i] / fleet.capacity[i] - mean) for i in members
        ),
        max_deviation_after=max(
            abs(100 * fleet.used[i] / fleet.capacity[i] - mean) for i in members
        ),
        reached=all(roles.bands[role][i].violation(fleet.used[i]) == 0 for i in members),
    )


def _outside_text(usage, balance, cause):
    side = "above" if usage.percent_after > balance.mean_percent else "below"
    low = balance.mean_percent - balance.threshold
    high = balance.mean_percent + balance.threshold
    return (
        f"node {usage.id} (role {usage.role}) stays at {usage.percent_after:.1f}%, {side} "
        f"the band {low:.1f}-{high:.1f}%: {CAUSES[cause]}"
    )
