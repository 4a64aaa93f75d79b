"""
Cluster roles: the catalogue, the target count of each role by cluster size, and the checked
shapes of the solver's inputs (nodes, catalogue overrides, placement policy).

The catalogue
=============

Each role has minimum cpu cores, memory and disk a node must have to hold it (``CATALOG``
below). ``monolith`` is the single-node role: the one node runs every service at minimal
scale, so it needs what the smallest real roles (edge, app) need and no more; a one-node
cluster is a demo or a small edge site, and asking for more would refuse exactly those.

Master config ``eos:roles:catalog`` overrides any field of a role, or adds a role::

    eos:
      roles:
        catalog:
          data: {memory_gb: 32, labels: [ssd], spread: rack}
          message: {quorum: true}
          gpu: {cpu: 16, memory_gb: 64, labels: [gpu], count: {share: 0.05, min: 1}}

Fields: ``cpu``, ``memory_gb``, ``disk_gb`` (minimums, >= 0), ``quorum`` (the count is kept
odd, one of 1, 3, 5, 7, so a majority survives a partition), ``spread`` (``host``, ``rack`` or
``datacenter``: members go to different failure domains where the cluster has them),
``labels`` (node labels a holder must carry, ``key`` or ``key=value``), ``storage_types``
(accepted node storage types; empty accepts any) and ``count`` (see below).

Target counts
=============

``n`` is the number of nodes that may hold roles (excluded nodes do not count).

- 1 node: ``monolith``.
- 2 to 8 nodes: the table ``SMALL_CLUSTER_TARGETS`` (2: edge + core; 3 adds data; 4 has
  two core; 5 adds app; 6 adds message; 7 has two edge; 8 adds observe and a second data
  in place of app).
- more than 8 nodes: each role gets ``max(floor, floor(share * n))`` where the floor is its
  count at 8 nodes and the share its ``GROWTH_SHARES`` entry (a fraction of the cluster).
  Both terms never decrease as ``n`` grows, so neither does their maximum: adding a node
  never takes a role away from anyone. The floors sum to 8 and the shares to well under 1,
  so the roles never ask for more than ``n`` nodes (checked for every n up to 10,000).
- a quorum role is then rounded *down* to an odd count and capped at 7 (``QUORUM_SIZES``);
  rounding down keeps the count monotone and never adds nodes the cluster lacks.
- ``app`` is the remainder: every node not counted above. It is the only role whose count
  can drop as ``n`` grows (the 8th node turns the 7-node cluster's app into data + observe).

A role's ``count`` override replaces the table and the share from 2 nodes up: a number is a
fixed count, a mapping ``{share, min, max}`` a rule. If overrides ask for more nodes than
exist, roles give way until the targets sum to exactly ``n``: built-in counts before explicit
ones, the least essential first (``TRIM_ORDER``), and edge, core and data keep one node each
until nothing else is left to trim. Shares are taken in basis points (0.01%) with integer
arithmetic, so ``0.29 * 100`` is 29 and not 28.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field

from saltext.eos.utils import config

SINGLE_NODE_ROLE = "monolith"
REMAINDER_ROLE = "app"
SPREAD_LEVELS = ("host", "rack", "datacenter")
QUORUM_SIZES = (1, 3, 5, 7)
SHARE_SCALE = 10_000  # shares in basis points

# Catalogue order is also the order roles are listed in results.
CATALOG = {
    "monolith": {"cpu": 2, "memory_gb": 4, "disk_gb": 50},
    "edge": {"cpu": 2, "memory_gb": 4, "disk_gb": 50, "spread": "datacenter"},
    "core": {"cpu": 4, "memory_gb": 8, "disk_gb": 100, "spread": "datacenter"},
    "data": {"cpu": 4, "memory_gb": 16, "disk_gb": 500, "spread": "rack"},
    "message": {"cpu": 2, "memory_gb": 8, "disk_gb": 100, "quorum": True, "spread": "rack"},
    "observe": {"cpu": 4, "memory_gb": 8, "disk_gb": 200},
    "compute": {"cpu": 8, "memory_gb": 32, "disk_gb": 100},
    "app": {"cpu": 2, "memory_gb": 4, "disk_gb": 50},
}

SMALL_CLUSTER_TARGETS = {
    2: {"edge": 1, "core": 1},
    3: {"edge": 1, "core": 1, "data": 1},
    4: {"edge": 1, "core": 2, "data": 1},
    5: {"edge": 1, "core": 2, "data": 1, "app": 1},
    6: {"edge": 1, "core": 2, "data": 1, "message": 1, "app": 1},
    7: {"edge": 2, "core": 2, "data": 1, "message": 1, "app": 1},
    8: {"edge": 2, "core": 2, "data": 2, "message": 1, "observe": 1},
}
LARGEST_SMALL_CLUSTER = max(SMALL_CLUSTER_TARGETS)

GROWTH_SHARES = {
    "edge": 0.10,
    "core": 0.03,
    "data": 0.20,
    "message": 0.05,
    "observe": 0.05,
    "compute": 0.10,
}

# Roles a working cluster cannot do without, checked by placement.validate; each is required
# from the first cluster size whose target gives it a node.
ESSENTIAL_ROLES = ("edge", "core", "data")

# Roles whose configuration names the holders of other roles: an edge proxies to the core
# (or monolith) nodes (roles/edge.sls reads them from pillar eos:holders, kept in the
# registry's summary), so the edges are configured again whenever those change hands.
CONFIGURED_FROM = {"edge": ("core", "monolith")}

# When count overrides ask for more nodes than exist, these give way first.
TRIM_ORDER = ("compute", "observe", "message", "data", "core", "edge")

RESOURCES = (("cpu", "cpu cores"), ("memory_gb", "GB memory"), ("disk_gb", "GB disk"))
ROLE_FIELDS = ("cpu", "memory_gb", "disk_gb", "quorum", "spread", "labels", "storage_types",
               "count")  # fmt: skip
NODE_REQUIRED = ("id", "cpu", "memory_gb", "disk_gb")
NODE_OPTIONAL = ("storage_type", "datacenter", "rack", "host", "labels", "roles",
                 "preferred_role")  # fmt: skip
NODE_FIELDS = frozenset((*NODE_REQUIRED, *NODE_OPTIONAL))


class InvalidRoles(config.InvalidConfig):
    """A node, catalogue entry or policy the role solver cannot use; the message names it."""


@dataclass(frozen=True)
class CountRule:
    """``max(minimum, floor(share * n))``, capped at ``maximum``; a fixed count has all equal."""

    share_bp: int = 0
    minimum: int = 0
    maximum: int | None = None

    def count(self, n):
        wanted = max(self.minimum, n * self.share_bp // SHARE_SCALE)
        return wanted if self.maximum is None else min(wanted, self.maximum)


@dataclass(frozen=True)
class RoleSpec:
    """One catalogue entry."""

    name: str
    cpu: float = 0.0
    memory_gb: float = 0.0
    disk_gb: float = 0.0
    quorum: bool = False
    spread: str | None = None
    labels: tuple = ()
    storage_types: tuple = ()
    count: CountRule | None = None  # None: the built-in table and growth share

    def minimums_text(self):
        return ", ".join(f"{getattr(self, key):g} {unit}" for key, unit in RESOURCES)


@dataclass(frozen=True)
class Catalogue:
    """The roles in catalogue order, by name."""

    roles: dict

    def __getitem__(self, name):
        return self.roles[name]

    def __contains__(self, name):
        return name in self.roles

    def __iter__(self):
        return iter(self.roles)

    @property
    def names(self):
        return tuple(self.roles)


@dataclass(frozen=True)
class Node:
    """A node as the solver sees it. ``labels`` holds ``key`` and ``key=value`` forms."""

    id: str
    cpu: float
    memory_gb: float
    disk_gb: float
    storage_type: str | None = None
    datacenter: str | None = None
    rack: str | None = None
    host: str | None = None
    labels: frozenset = frozenset()
    roles: tuple = ()
    preferred_role: str | None = None

    def domain(self, level):
        """The failure domain of this node at ``level``; '' when the cluster does not say."""
        if level == "datacenter":
            return self.datacenter or ""
        if level == "rack":
            # Rack names repeat across datacenters: r1 in dc1 is not r1 in dc2.
            return f"{self.datacenter or ''}/{self.rack}" if self.rack else ""
        return self.host or self.id


@dataclass(frozen=True)
class Policy:
    """Operator decisions: pinned roles per node, excluded nodes, extra labels per role."""

    pins: dict = field(default_factory=dict)
    exclude: frozenset = frozenset()
    labels: dict = field(default_factory=dict)


# --- the catalogue ---------------------------------------------------------------------------


def catalog(overrides=None):
    """The default catalogue with ``overrides`` (``eos:roles:catalog``) merged per field."""
    if isinstance(overrides, Catalogue):
        return overrides
    overrides = {} if overrides is None else overrides
    if not isinstance(overrides, Mapping):
        raise InvalidRoles(f"{config.key_name('roles', 'catalog')}: {overrides!r} is not a mapping")
    for name in overrides:
        if not isinstance(name, str) or not name:
            raise InvalidRoles(f"{_role_key(name)}: a role name must be a non-empty string")
    added = sorted(name for name in overrides if name not in CATALOG)
    specs = {}
    for name in (*CATALOG, *added):
        entry = overrides.get(name, {})
        if not isinstance(entry, Mapping):
            raise InvalidRoles(f"{_role_key(name)}: {entry!r} is not a mapping")
        specs[name] = _role_spec(name, {**CATALOG.get(name, {}), **entry}, entry)
    return Catalogue(specs)


def _role_key(name, *fields):
    return config.key_name("roles", "catalog", name, *fields)


def _role_spec(name, merged, given):
    for key in merged:
        if key not in ROLE_FIELDS:
            raise InvalidRoles(
                f"{_role_key(name)}: unknown field {key!r}; "
                f"expected one of {', '.join(ROLE_FIELDS)}"
            )
    minimums = {
        key: _catalog_number(merged.get(key, 0), _role_key(name, key)) for key, _ in RESOURCES
    }
    quorum = merged.get("quorum", False)
    if not isinstance(quorum, bool):
        raise InvalidRoles(f"{_role_key(name, 'quorum')}: {quorum!r} is not true or false")
    spread = merged.get("spread")
    if spread is not None and spread not in SPREAD_LEVELS:
        raise InvalidRoles(
            f"{_role_key(name, 'spread')}: {spread!r} is not one of {', '.join(SPREAD_LEVELS)}"
        )
    count = None
    if "count" in given:
        if name in (SINGLE_NODE_ROLE, REMAINDER_ROLE):
            raise InvalidRoles(
                f"{_role_key(name, 'count')}: {name}'s count is not configurable "
                f"({SINGLE_NODE_ROLE} is the single-node role, {REMAINDER_ROLE} the remainder)"
            )
        count = _count_rule(given["count"], _role_key(name, "count"))
    return RoleSpec(
        name=name,
        quorum=quorum,
        spread=spread,
        labels=_strings(merged.get("labels", ()), _role_key(name, "labels")),
        storage_types=_strings(merged.get("storage_types", ()), _role_key(name, "storage_types")),
        count=count,
        **minimums,
    )


def _catalog_number(value, key):
    try:
        return config.number(value, key, minimum=0)
    except config.InvalidConfig as err:
        raise InvalidRoles(str(err)) from err


def _count_rule(value, key):
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in ("share", "min", "max"))
        if unknown:
            raise InvalidRoles(f"{key}: unknown field {unknown[0]!r}; expected share, min, max")
        try:
            share = config.number(value.get("share", 0), f"{key}:share", minimum=0, maximum=1)
        except config.InvalidConfig as err:
            raise InvalidRoles(str(err)) from err
        minimum = _count(value.get("min", 0), f"{key}:min")
        maximum = _count(value["max"], f"{key}:max") if "max" in value else None
        if maximum is not None and maximum < minimum:
            raise InvalidRoles(f"{key}: max {maximum} is below min {minimum}")
        return CountRule(round(share * SHARE_SCALE), minimum, maximum)
    fixed = _count(value, key)
    return CountRule(0, fixed, fixed)


def _count(value, key):
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRoles(f"{key}: {value!r} is not a whole number")
    if value < 0:
        raise InvalidRoles(f"{key}: {value!r} must be >= 0")
    return value


def _strings(value, key):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidRoles(f"{key}: {value!r} is not a list of strings")
    return tuple(dict.fromkeys(value))


# --- target counts ---------------------------------------------------------------------------


def targets(n, catalogue=None):
    """
    {role: count} for a cluster of ``n`` nodes, in catalogue order; the counts sum to ``n``.

    See the module docstring for the rule.
    """
    catalogue = catalog(catalogue)
    counts = dict.fromkeys(catalogue.names, 0)
    if n <= 0:
        return counts
    if n == 1:
        counts[SINGLE_NODE_ROLE] = 1
        return counts
    for name in catalogue:
        if name not in (SINGLE_NODE_ROLE, REMAINDER_ROLE):
            counts[name] = _role_target(catalogue[name], n)
    _trim_to(counts, n, catalogue)
    counts[REMAINDER_ROLE] = n - sum(counts.values())
    return counts


def _role_target(spec, n):
    if spec.count is not None:
        wanted = spec.count.count(n)
    elif n <= LARGEST_SMALL_CLUSTER:
        wanted = SMALL_CLUSTER_TARGETS[n].get(spec.name, 0)
    else:
        floor = SMALL_CLUSTER_TARGETS[LARGEST_SMALL_CLUSTER].get(spec.name, 0)
        share = CountRule(round(GROWTH_SHARES.get(spec.name, 0) * SHARE_SCALE), floor)
        wanted = share.count(n)
    return quorum_size(wanted) if spec.quorum else wanted


def quorum_size(wanted):
    """The largest quorum size (odd, at most 7) not above ``wanted``; 0 when wanted is 0."""
    return max((size for size in QUORUM_SIZES if size <= wanted), default=0)


def _trim_to(counts, n, catalogue):
    # Only count overrides can ask for more than n; the built-in rules never do (tested).
    excess = sum(counts.values()) - n
    if excess <= 0:
        return
    for floor in (_essential_floor, _no_floor):
        for name in _trim_order(catalogue):
            keep = max(floor(name, counts[name]), counts[name] - excess)
            if catalogue[name].quorum:
                keep = quorum_size(keep)
            excess -= counts[name] - keep
            counts[name] = keep
            if excess <= 0:
                return


def _trim_order(catalogue):
    """Built-in counts give way before explicit ones; within each, added roles go first."""
    placeable = [r for r in catalogue.names if r not in (SINGLE_NODE_ROLE, REMAINDER_ROLE)]
    order = [r for r in placeable if r not in TRIM_ORDER][::-1]
    order += [r for r in TRIM_ORDER if r in catalogue]
    built_in = [r for r in order if catalogue[r].count is None]
    return built_in + [r for r in order if catalogue[r].count is not None]


def _essential_floor(name, count):
    # First pass: an essential role keeps one node while anything else can still give way.
    return min(1, count) if name in ESSENTIAL_ROLES else 0


def _no_floor(name, count):
    return 0


def required_roles(n, catalogue=None):
    """The essential roles ``n`` nodes must have: edge and core from 2 nodes, data from 3."""
    counts = targets(n, catalogue)
    return tuple(name for name in ESSENTIAL_ROLES if counts.get(name, 0) > 0)


# --- nodes -----------------------------------------------------------------------------------


def nodes(descriptions):
    """Checked Nodes from node descriptions (mappings), sorted by id."""
    if not isinstance(descriptions, (list, tuple)):
        raise InvalidRoles(f"nodes: {descriptions!r} is not a list")
    parsed = []
    first_index = {}
    for index, description in enumerate(descriptions):
        node = description if isinstance(description, Node) else _node(index, description)
        if node.id in first_index:
            raise InvalidRoles(
                f"nodes[{index}] (id {node.id}): duplicate id (also nodes[{first_index[node.id]}])"
            )
        first_index[node.id] = index
        parsed.append(node)
    return sorted(parsed, key=lambda node: node.id)


def _node(index, description):
    where = f"nodes[{index}]"
    if not isinstance(description, Mapping):
        raise InvalidRoles(f"{where}: {description!r} is not a mapping")
    node_id = description.get("id")
    if not isinstance(node_id, str) or not node_id:
        detail = "missing id" if node_id is None else f"id {node_id!r} is not a non-empty string"
        raise InvalidRoles(f"{where}: {detail}")
    where = f"{where} (id {node_id})"
    unknown = description.keys() - NODE_FIELDS
    if unknown:
        raise InvalidRoles(f"{where}: unknown field {sorted(map(str, unknown))[0]!r}")
    missing = [key for key, _ in RESOURCES if key not in description]
    if missing:
        raise InvalidRoles(f"{where}: missing {missing[0]}")
    # Error texts are built only on error: this runs for each of up to 10,000 nodes.
    get = description.get
    return Node(
        id=node_id,
        cpu=_resource(get("cpu"), where, "cpu"),
        memory_gb=_resource(get("memory_gb"), where, "memory_gb"),
        disk_gb=_resource(get("disk_gb"), where, "disk_gb"),
        storage_type=_optional_string(get("storage_type"), where, "storage_type"),
        datacenter=_optional_string(get("datacenter"), where, "datacenter"),
        rack=_optional_string(get("rack"), where, "rack"),
        host=_optional_string(get("host"), where, "host"),
        labels=_labels(get("labels"), where, "labels"),
        roles=_node_roles(get("roles"), where),
        preferred_role=_optional_string(get("preferred_role"), where, "preferred_role") or None,
    )


def _resource(value, where, key):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRoles(f"{where}: {key} {value!r} is not a number")
    if value < 0:
        raise InvalidRoles(f"{where}: {key} {value!r} must be >= 0")
    return float(value)


def _optional_string(value, where, key):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # rack 3, datacenter 2: numbers are names too
    raise InvalidRoles(f"{where}: {key} {value!r} is not a string")


def _node_roles(value, where):
    if not value:
        return ()
    return _strings(value, f"{where}: roles")


def _labels(value, where, field_name):
    """Both ``key`` and ``key=value`` forms, so a requirement may name either."""
    if value is None:
        return frozenset()
    if isinstance(value, Mapping):
        pairs = [(str(k), None if v is None else str(v)) for k, v in value.items()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        pairs = [tuple(v.split("=", 1)) if "=" in v else (v, None) for v in value]
    else:
        raise InvalidRoles(f"{where}: {field_name} {value!r} is not a list of strings or a mapping")
    forms = set()
    for key, label_value in pairs:
        forms.add(key)
        if label_value is not None:
            forms.add(f"{key}={label_value}")
    return frozenset(forms)


# --- policy ----------------------------------------------------------------------------------


def from_layers(layers):
    """
    The checked (Catalogue, Policy) of the ``eos:roles`` configuration in ``layers``
    (``config.Layers``): ``catalog``, ``pins``, ``exclude`` and ``labels``.
    """
    catalogue = catalog(layers.get("roles", "catalog"))
    settings = {
        "pins": layers.get("roles", "pins", default={}),
        "exclude": layers.get("roles", "exclude", default=[]),
        "labels": layers.get("roles", "labels", default={}),
    }
    return catalogue, policy(settings, catalogue)


def policy(settings=None, catalogue=None):
    """
    A checked Policy from ``{pins: {id: [roles]}, exclude: [ids], labels: {role: [labels]}}``
    (the ``eos:roles`` keys of the same names).
    """
    if isinstance(settings, Policy):
        settings = {"pins": settings.pins, "exclude": settings.exclude, "labels": settings.labels}
    settings = {} if settings is None else settings
    if not isinstance(settings, Mapping):
        raise InvalidRoles(f"{config.key_name('roles')}: {settings!r} is not a mapping")
    catalogue = catalog(catalogue)
    pins = _mapping(settings.get("pins"), ("roles", "pins"))
    labels = _mapping(settings.get("labels"), ("roles", "labels"))
    exclude = settings.get("exclude") or ()
    if isinstance(exclude, (set, frozenset)):
        exclude = sorted(exclude)
    exclude = frozenset(_strings(exclude, config.key_name("roles", "exclude")))
    checked_pins = {}
    for node_id in sorted(pins, key=str):
        key = config.key_name("roles", "pins", node_id)
        pinned = _known_roles(_strings(pins[node_id], key), key, catalogue)
        if not pinned:
            raise InvalidRoles(f"{key}: no roles; to keep a node without roles, exclude it")
        checked_pins[str(node_id)] = pinned
        if str(node_id) in exclude:
            raise InvalidRoles(f"{key}: node {node_id} is both pinned and excluded")
    checked_labels = {}
    for role in sorted(labels, key=str):
        key = config.key_name("roles", "labels", role)
        _known_roles((str(role),), key, catalogue)
        checked_labels[str(role)] = _strings(labels[role], key)
    return Policy(pins=checked_pins, exclude=exclude, labels=checked_labels)


def _mapping(value, path):
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRoles(f"{config.key_name(*path)}: {value!r} is not a mapping")
    return value


def _known_roles(names, key, catalogue):
    for name in names:
        if name not in catalogue:
            raise InvalidRoles(
                f"{key}: unknown role {name!r}; expected one of {', '.join(catalogue.names)}"
            )
    return names
