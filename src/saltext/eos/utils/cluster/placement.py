"""
The role solver: which node holds which role, for 1 to 10,000 nodes.

``solve(nodes, catalogue, policy)`` returns a Placement. The rules, in the order they apply:

1. Excluded nodes get no role and do not count toward the cluster size ``n``; the target
   count of each role comes from ``roles.targets(n)``.
2. Pinned nodes get exactly their pinned roles (even several, even below a role's minimums,
   which is then a warning); pinned roles count toward the targets.
3. A one-node cluster's node is the ``monolith``. From two nodes on, every other node gets at
   most one role.
4. Roles are placed scarcest first: the fewer free nodes meet a role's requirements per node it
   still needs, the earlier it goes (with the default catalogue, ``data`` and ``compute``), so
   easy roles cannot use up the only nodes a demanding role fits on. Equally scarce roles go
   most demanding first (the larger share of the cluster's capacity one member takes).
5. Stability: a node keeps its current role while that role is still needed and the node still
   meets its requirements; then nodes get their ``preferred_role`` where it is feasible and
   still needed; then each role takes the best candidates among the free nodes. Candidates
   are ordered by, in turn: churn (a node already holding the remainder role ``app`` is taken
   only when no new or freed node fits, because moving it is a change), spread (with
   ``spread``, the failure domain that role uses least), fit score (below), node id.
6. A role no free node can hold may take a node from another role when a free node can take
   that role over (one swap, both checked against the requirements): feasibility forces it.
   A quorum role left short at an even count gives one member back: two members survive no
   more failures than one, and fail twice as often.
7. Every node still free gets ``app``, the remainder, if it meets app's minimums.
8. Whatever could not be placed is reported with a reason; nothing is dropped silently.

Fit score
=========

Modelled on the Kubernetes scheduler's scoring plugins, with the role's minimums as the
request and the node's capacity as allocatable. For each resource the role asks for
(``r`` in cpu, memory, disk with a minimum above 0), ``u_r = minimum_r / capacity_r``:

- balance = ``1 - stddev(u)`` (NodeResourcesBalancedAllocation): a node whose cpu, memory and
  disk would be used in similar proportions scores higher than one left with, say, idle cpu
  but no spare memory;
- fit = ``mean(u)`` (least waste, like the MostAllocated strategy): the node with the least
  spare capacity after placement scores higher, so a 16 GB role goes to the 16 GB node and
  keeps the 64 GB node for a role that needs it.

``score = 100 * (W_BALANCE * balance + W_FIT * fit) / (W_BALANCE + W_FIT)``, in 0..100.

Complexity
==========

Feasibility and scores are one pass over nodes per role (O(n * roles)); each role's
candidates are sorted once and drawn through a heap of failure domains with lazy updates, so
the whole solve is O(n log n) for a fixed catalogue. Explanations are built only when asked
for (``Placement.explain``).

Determinism: nodes are processed sorted by id and every ordering ends in the node id; no
result depends on dict or set iteration order of unsorted data.
"""

import heapq
from dataclasses import dataclass
from dataclasses import field
from fractions import Fraction

from saltext.eos.utils.cluster import roles as rules

W_BALANCE = 1.0
W_FIT = 1.0

# Candidate penalties, lowest first (see rule 5).
PENALTY_MOVES_REMAINDER = 2
PENALTY_PREFERS_OTHER = 1


# --- requirements and scores -----------------------------------------------------------------


@dataclass(frozen=True)
class Requirements:
    """What a node needs to hold one role: the catalogue entry plus policy labels."""

    spec: rules.RoleSpec
    labels: frozenset

    @classmethod
    def of(cls, spec, policy):
        extra = policy.labels.get(spec.name, ()) if policy else ()
        return cls(spec, frozenset((*spec.labels, *extra)))

    def met_by(self, node):
        spec = self.spec
        return (
            node.cpu >= spec.cpu
            and node.memory_gb >= spec.memory_gb
            and node.disk_gb >= spec.disk_gb
            and self.labels <= node.labels
            and (not spec.storage_types or node.storage_type in spec.storage_types)
        )

    def shortfalls(self, node):
        """Why ``node`` cannot hold this role, as short sentences (empty when it can)."""
        spec = self.spec
        found = [
            f"{getattr(node, key):g} {unit} < {spec.name}'s minimum of {getattr(spec, key):g}"
            for key, unit in rules.RESOURCES
            if getattr(node, key) < getattr(spec, key)
        ]
        missing = sorted(self.labels - node.labels)
        if missing:
            found.append(f"missing label(s) {', '.join(missing)}")
        if spec.storage_types and node.storage_type not in spec.storage_types:
            found.append(
                f"storage type {node.storage_type or 'unknown'} is not one of "
                f"{', '.join(spec.storage_types)}"
            )
        return found

    def describe(self):
        text = f"{self.spec.name}'s requirements ({self.spec.minimums_text()}"
        if self.labels:
            text += f", labels {', '.join(sorted(self.labels))}"
        if self.spec.storage_types:
            text += f", storage {'/'.join(self.spec.storage_types)}"
        return text + ")"


@dataclass(frozen=True)
class Fit:
    """The fit of one role on one node (see the module docstring)."""

    balance: float
    fit: float

    @property
    def score(self):
        return _score(self.balance, self.fit)


def fit(node, spec):
    """The Fit of role ``spec`` on ``node``; the node must meet the role's minimums."""
    return Fit(*_balance_and_fit(_asked(spec), node))


def _score(balance, least_waste):
    return 100 * (W_BALANCE * balance + W_FIT * least_waste) / (W_BALANCE + W_FIT)


def _asked(spec):
    """(node attribute, minimum) for each resource the role asks for."""
    return tuple((key, getattr(spec, key)) for key, _ in rules.RESOURCES if getattr(spec, key) > 0)


def _balance_and_fit(asked, node):
    if not asked:
        # A role that asks for nothing fits every node equally.
        return 1.0, 0.0
    ratios = [minimum / getattr(node, key) for key, minimum in asked]
    mean = sum(ratios) / len(ratios)
    variance = sum((ratio - mean) ** 2 for ratio in ratios) / len(ratios)
    return 1.0 - variance**0.5, mean


def _scorer(spec):
    """
    ``node -> fit(node, spec).score``, remembered per hardware shape: real clusters have a
    handful of shapes, so most of 10,000 nodes cost one dict lookup.
    """
    asked = _asked(spec)
    known = {}

    def score(node):
        shape = (node.cpu, node.memory_gb, node.disk_gb)
        if shape not in known:
            known[shape] = _score(*_balance_and_fit(asked, node))
        return known[shape]

    return score


# --- the result ------------------------------------------------------------------------------


@dataclass
class Placement:
    """
    The solver's answer.

    - ``targets``: {role: count} for this cluster size;
    - ``assignments``: {node id: [roles]} for every node (excluded nodes: []);
    - ``changes``: {node id: {"old": [roles], "new": [roles]}} for nodes whose roles changed,
      new nodes included;
    - ``churn``: how many nodes that had roles now have different ones;
    - ``first_assignments``: how many nodes without roles got their first;
    - ``unplaced``: [{"role", "missing", "target", "reason"}];
    - ``warnings``: [str], e.g. a pin below a role's minimums.
    """

    targets: dict
    assignments: dict
    changes: dict
    churn: int
    first_assignments: int
    unplaced: list
    warnings: list
    _solver: "_Solver" = field(repr=False, compare=False, default=None)

    def as_dict(self):
        return {
            "targets": dict(self.targets),
            "assignments": {node_id: list(r) for node_id, r in self.assignments.items()},
            "changes": {node_id: dict(change) for node_id, change in self.changes.items()},
            "churn": self.churn,
            "first_assignments": self.first_assignments,
            "unplaced": [dict(entry) for entry in self.unplaced],
            "warnings": list(self.warnings),
        }

    def explain(self, node_id):
        """
        Why ``node_id`` got its roles and why every other role was rejected:
        ``{"id", "roles", "previous", "reason", "fit", "alternatives": [{"role", "rejected"}]}``.
        """
        return self._solver.explain(node_id)


# --- the solver ------------------------------------------------------------------------------


def solve(nodes, catalogue=None, policy=None):
    """
    Place roles on ``nodes``.

    ``nodes``: node descriptions (mappings, see ``roles.nodes``) or Nodes; ``catalogue``:
    ``eos:roles:catalog`` overrides or a Catalogue; ``policy``: ``{pins, exclude, labels}`` or a
    Policy. Raises ``roles.InvalidRoles`` naming the bad item.
    """
    catalogue = rules.catalog(catalogue)
    solver = _Solver(rules.nodes(nodes), catalogue, rules.policy(policy, catalogue))
    return solver.run()


class _Pool:
    """
    One role's free candidates, best first. Entries are ``(penalty, -score, id, index)``.

    With spread, candidates are grouped by failure domain and a heap holds each domain's best
    entry with the number of members the role already has there, so the least used domain
    wins among equal penalties. Taken nodes and stale heap keys are skipped lazily: a
    domain's key only grows (its best entry is taken, its usage rises), so a stale key is
    never worse than the real one and is corrected when it surfaces.
    """

    def __init__(self, entries, level, nodes, assigned, usage):
        self.assigned = assigned
        self.usage = usage
        groups = {}
        for entry in entries:
            domain = nodes[entry[3]].domain(level) if level else ""
            groups.setdefault(domain, []).append(entry)
        self.groups = {}
        for domain in sorted(groups):
            # Best last, so taking it is a pop from the end.
            self.groups[domain] = sorted(groups[domain], reverse=True)
        self.heap = [key for key in map(self._key, self.groups) if key is not None]
        heapq.heapify(self.heap)

    def _key(self, domain):
        group = self.groups[domain]
        while group and self.assigned[group[-1][3]] is not None:
            group.pop()
        if not group:
            return None
        penalty, neg_score, node_id, _ = group[-1]
        return (penalty, self.usage.get(domain, 0), neg_score, node_id, domain)

    def take(self):
        """The index of the best free candidate, or None. The caller assigns it."""
        while self.heap:
            entry = heapq.heappop(self.heap)
            current = self._key(entry[-1])
            if current is None:
                continue
            if current != entry:
                heapq.heappush(self.heap, current)
                continue
            # Push the domain back; its key is corrected once the caller assigns the node.
            heapq.heappush(self.heap, current)
            return self.groups[entry[-1]][-1][3]
        return None


class _Solver:
    """
    One solve: the phases of the module docstring over index-addressed nodes (sorted by id).

    ``assigned[i]`` is None while node i is free, else the tuple of its roles; ``reasons[i]``
    is a short code with details, turned into text only by ``explain``.
    """

    def __init__(self, nodes, catalogue, policy):
        self.nodes = nodes
        self.catalogue = catalogue
        self.policy = policy
        self.index = {node.id: i for i, node in enumerate(nodes)}
        self.eligible = [i for i, node in enumerate(nodes) if node.id not in policy.exclude]
        self.n = len(self.eligible)
        self.targets = rules.targets(self.n, catalogue)
        self.remaining = dict(self.targets)
        self.requirements = {name: Requirements.of(catalogue[name], policy) for name in catalogue}
        self.assigned = [None] * len(nodes)
        self.reasons = [None] * len(nodes)
        self.usage = {name: {} for name in catalogue}
        self.warnings = []
        self.order = ()
        self.quorum_released = {}
        self.feasible = {}
        self.scores = {}
        self.stays_remainder = set()

    # -- phases

    def run(self):
        for i, node in enumerate(self.nodes):
            if node.id in self.policy.exclude:
                self.assigned[i] = ()
                self.reasons[i] = ("excluded",)
        self._apply_pins()
        self._check_preferences()
        if self.n == 1:
            self._single_node()
        else:
            self._measure()
            self._keep()
            self._prefer()
            self._fill()
            self._repair()
            self._keep_quorums_odd()
            self._remainder()
        return self._result()

    def _apply_pins(self):
        for node_id, pinned in self.policy.pins.items():
            i = self.index.get(node_id)
            if i is None:
                continue  # a pin for a node that is not (yet) in the cluster has no effect
            self.assigned[i] = tuple(name for name in self.catalogue if name in pinned)
            self.reasons[i] = ("pinned",)
            for name in self.assigned[i]:
                self._count(i, name)
                shortfalls = self.requirements[name].shortfalls(self.nodes[i])
                if shortfalls:
                    self.warnings.append(
                        f"{node_id} is pinned to {name} but has {'; '.join(shortfalls)}"
                    )
        for name in self.catalogue:
            if self.remaining[name] < 0:
                self.warnings.append(
                    f"pins give {name} {self.targets[name] - self.remaining[name]} node(s), "
                    f"above its target of {self.targets[name]}; other roles get fewer"
                )

    def _check_preferences(self):
        for node in self.nodes:
            if node.preferred_role and node.preferred_role not in self.catalogue:
                self.warnings.append(
                    f"{node.id} prefers unknown role {node.preferred_role!r}; ignored"
                )

    def _single_node(self):
        (i,) = self.eligible
        pinned = self.assigned[i] is not None
        if not pinned and self.requirements[rules.SINGLE_NODE_ROLE].met_by(self.nodes[i]):
            self._assign(i, rules.SINGLE_NODE_ROLE, ("monolith",))

    def _placeable(self):
        return [
            name
            for name in self.catalogue
            if name not in (rules.SINGLE_NODE_ROLE, rules.REMAINDER_ROLE)
        ]

    def _measure(self):
        """Feasible free nodes and their scores per role, and the scarcest-first order."""
        free = [i for i in self.eligible if self.assigned[i] is None]
        for name in self._placeable():
            requirements = self.requirements[name]
            score = _scorer(requirements.spec)
            feasible = [i for i in free if requirements.met_by(self.nodes[i])]
            self.feasible[name] = feasible
            self.scores[name] = {i: score(self.nodes[i]) for i in feasible}
        remainder = self.requirements[rules.REMAINDER_ROLE]
        self.stays_remainder = {
            i
            for i in free
            if self.nodes[i].roles == (rules.REMAINDER_ROLE,) and remainder.met_by(self.nodes[i])
        }

        totals = {key: sum(getattr(self.nodes[i], key) for i in free) for key, _ in rules.RESOURCES}

        def demand(name):
            # The share of the cluster's capacity one member takes, summed over resources.
            spec = self.catalogue[name]
            return sum(getattr(spec, key) / total for key, total in totals.items() if total)

        def scarcity(name):
            need = self.remaining[name]
            position = self.catalogue.names.index(name)
            if need <= 0:
                return (1, 0, 0, position)
            return (0, Fraction(len(self.feasible[name]), need), -demand(name), position)

        self.order = tuple(sorted(self._placeable(), key=scarcity))

    def _keep(self):
        for name in self.order:
            holders = [
                i
                for i in self.feasible[name]
                if self.assigned[i] is None and name in self.nodes[i].roles
            ]
            self._place(name, holders, ("kept",))

    def _prefer(self):
        for name in self.order:
            wanting = [
                i
                for i in self.feasible[name]
                if self.assigned[i] is None and self.nodes[i].preferred_role == name
            ]
            self._place(name, wanting, ("preferred",))

    def _fill(self):
        for name in self.order:
            free = [i for i in self.feasible[name] if self.assigned[i] is None]
            self._place(name, free, ("placed", len(free)))

    def _place(self, name, candidates, reason):
        if self.remaining[name] <= 0 or not candidates:
            return
        pool = self._pool(name, candidates)
        while self.remaining[name] > 0:
            i = pool.take()
            if i is None:
                return
            self._assign(i, name, reason)

    def _pool(self, name, candidates):
        scores = self.scores[name]
        entries = [(self._penalty(i, name), -scores[i], self.nodes[i].id, i) for i in candidates]
        spread = self.catalogue[name].spread
        return _Pool(entries, spread, self.nodes, self.assigned, self.usage[name])

    def _penalty(self, i, name):
        node = self.nodes[i]
        penalty = 0
        if i in self.stays_remainder:
            penalty += PENALTY_MOVES_REMAINDER
        if node.preferred_role and node.preferred_role != name:
            penalty += PENALTY_PREFERS_OTHER
        return penalty

    def _repair(self):
        """Rule 6: move a node to a role nothing free can hold, if a free node takes its place."""
        backfill_pools = {}
        for name in self.order:
            if self.remaining[name] <= 0:
                continue
            scores = self.scores[name]
            movable = sorted(
                (self.reasons[i][0] == "kept", -scores[i], self.nodes[i].id, i)
                for i in self.feasible[name]
                if self.assigned[i] is not None and self.reasons[i][0] != "pinned"
            )
            stuck = set()  # roles with no free node to take them over; that never improves
            for *_, i in movable:
                if self.remaining[name] <= 0:
                    break
                (held,) = self.assigned[i]
                if held == name or held in stuck:
                    continue
                if held not in backfill_pools:
                    free = [j for j in self.feasible[held] if self.assigned[j] is None]
                    backfill_pools[held] = self._pool(held, free)
                j = backfill_pools[held].take()
                if j is None:
                    stuck.add(held)
                    continue
                self._unassign(i, held)
                self._assign(i, name, ("moved", held, self.nodes[j].id))
                self._assign(j, held, ("backfill", self.nodes[i].id, name))

    def _keep_quorums_odd(self):
        """A quorum role that could not be filled drops a member rather than stay even."""
        self.quorum_released = {}
        for name in self.order:
            if not self.catalogue[name].quorum or self.remaining[name] <= 0:
                continue
            members = [i for i in self.eligible if name in (self.assigned[i] or ())]
            if len(members) % 2 == 1:
                continue
            # Never a pin; a member that just got the role before one that kept it (less
            # churn); among equals the highest id, any fixed rule being deterministic.
            releasable = [i for i in members if self._code(i) != "pinned"]
            if releasable:
                released = max(
                    releasable, key=lambda i: (self._code(i) != "kept", self.nodes[i].id)
                )
                self._unassign(released, name)
                self.reasons[released] = ("released", name)
                self.quorum_released[name] = len(members) - 1

    def _remainder(self):
        remainder = self.requirements[rules.REMAINDER_ROLE]
        for i in self.eligible:
            if self.assigned[i] is None and remainder.met_by(self.nodes[i]):
                self._assign(i, rules.REMAINDER_ROLE, ("remainder",))

    # -- bookkeeping

    def _assign(self, i, name, reason):
        self.assigned[i] = (name,)
        self.reasons[i] = reason
        self._count(i, name)

    def _count(self, i, name):
        self.remaining[name] -= 1
        level = self.catalogue[name].spread
        if level:
            domain = self.nodes[i].domain(level)
            self.usage[name][domain] = self.usage[name].get(domain, 0) + 1

    def _unassign(self, i, name):
        self.assigned[i] = None
        self.remaining[name] += 1
        level = self.catalogue[name].spread
        if level:
            self.usage[name][self.nodes[i].domain(level)] -= 1

    # -- the result

    def _result(self):
        assignments = {}
        changes = {}
        churn = first = 0
        for i, node in enumerate(self.nodes):
            new = list(self.assigned[i] or ())
            assignments[node.id] = new
            old = list(node.roles)
            if set(old) != set(new):
                changes[node.id] = {"old": old, "new": new}
                if old:
                    churn += 1
                else:
                    first += 1
        return Placement(
            targets=dict(self.targets),
            assignments=assignments,
            changes=changes,
            churn=churn,
            first_assignments=first,
            unplaced=self._unplaced(),
            warnings=list(self.warnings),
            _solver=self,
        )

    def _unplaced(self):
        found = []
        for name in self.catalogue:
            missing = self.remaining[name]
            if missing > 0:
                found.append(
                    {
                        "role": name,
                        "missing": missing,
                        "target": self.targets[name],
                        "reason": self._unplaced_reason(name, missing),
                    }
                )
        return found

    def _unplaced_reason(self, name, missing):
        requirements = self.requirements[name]
        spec = requirements.spec
        if name in self.quorum_released:
            kept = self.quorum_released[name]
            return (
                f"only {kept + 1} node(s) could hold {name}, and a quorum needs an odd count, "
                f"so it has {kept}"
            )
        candidates = [self.nodes[i] for i in self.eligible]
        if name == rules.REMAINDER_ROLE:
            roleless = [self.nodes[i].id for i in self.eligible if not self.assigned[i]]
            return (
                f"{len(roleless)} node(s) ({_preview(roleless)}) meet no role that still had "
                f"room; {name} needs {spec.minimums_text()}"
            )
        short = [
            f"{getattr(spec, key):g} {unit}"
            for key, unit in rules.RESOURCES
            if not any(getattr(node, key) >= getattr(spec, key) for node in candidates)
        ]
        if short:
            return f"no node meets {name}'s minimum of {' and '.join(short)}"
        if requirements.labels and not any(requirements.labels <= n.labels for n in candidates):
            labels = ", ".join(sorted(requirements.labels))
            return f"no node carries the labels {name} requires ({labels})"
        if spec.storage_types and not any(n.storage_type in spec.storage_types for n in candidates):
            return f"no node has a storage type {name} accepts ({', '.join(spec.storage_types)})"
        able = [i for i in self.eligible if requirements.met_by(self.nodes[i])]
        if not able:
            return f"no node meets all of {requirements.describe()} at once"
        pinned = sum(1 for i in able if self._code(i) == "pinned")
        holding = sum(1 for i in able if self.assigned[i] == (name,) and self._code(i) != "pinned")
        others = len(able) - pinned - holding
        return (
            f"{missing} more needed, but all {len(able)} node(s) that meet "
            f"{requirements.describe()} are taken: {holding} hold {name}, {pinned} pinned, "
            f"{others} hold roles placed before it or that no free node could take over"
        )

    def _code(self, i):
        return self.reasons[i][0] if self.reasons[i] else "none"

    # -- explanation, built on request

    def explain(self, node_id):
        if node_id not in self.index:
            raise KeyError(node_id)
        i = self.index[node_id]
        node = self.nodes[i]
        roles = list(self.assigned[i] or ())
        explanation = {
            "id": node_id,
            "roles": roles,
            "previous": list(node.roles),
            "reason": self._reason_text(i),
            "fit": {},
            "alternatives": [],
        }
        for name in roles:
            role_fit = fit(node, self.catalogue[name])
            explanation["fit"][name] = {
                "score": round(role_fit.score, 2),
                "balance": round(role_fit.balance, 3),
                "fit": round(role_fit.fit, 3),
            }
        if self._code(i) not in ("excluded", "pinned"):
            explanation["alternatives"] = [
                {"role": name, "rejected": self._rejection(i, name)}
                for name in self.catalogue
                if name not in roles
            ]
        return explanation

    def _reason_text(self, i):
        code, *detail = self.reasons[i] or ("none",)
        role = (self.assigned[i] or ("",))[0]
        if code == "excluded":
            return "excluded by policy: holds no role and does not count toward the cluster size"
        if code == "pinned":
            return f"pinned to {', '.join(self.assigned[i])} by eos:roles:pins"
        if code == "monolith":
            return "the only node of a one-node cluster holds every service"
        if code == "kept":
            return f"kept its current role: {role} is still needed and the node still meets it"
        if code == "preferred":
            return f"its preferred role {role} is feasible here and was still needed"
        if code == "placed":
            return (
                f"best candidate for {role} among {detail[0]} free node(s) meeting "
                f"{self.requirements[role].describe()} (churn, spread, then fit score)"
            )
        if code == "moved":
            return (
                f"moved from {detail[0]} to {role}: no free node meets "
                f"{self.requirements[role].describe()}; {detail[1]} took over {detail[0]}"
            )
        if code == "backfill":
            return f"took over {role} from {detail[0]}, which moved to {detail[1]}"
        if code == "remainder":
            return f"{role} is the remainder: every other role's target was already met"
        if code == "released":
            return (
                f"released from {detail[0]}: too few nodes for an odd quorum, and no other "
                "role with room that this node meets"
            )
        return "no role with room left that this node meets"

    def _rejection(self, i, name):
        if name == rules.SINGLE_NODE_ROLE and self.n != 1:
            return f"{name} is only for a one-node cluster"
        shortfalls = self.requirements[name].shortfalls(self.nodes[i])
        if shortfalls:
            return "; ".join(shortfalls)
        if self.targets[name] == 0:
            return f"not needed: its target is 0 at {self.n} node(s)"
        if name == rules.REMAINDER_ROLE:
            return f"the node was needed for {', '.join(self.assigned[i] or ())} first"
        if self.remaining[name] <= 0:
            return (
                f"its {self.targets[name]} slot(s) went to nodes that were pinned, kept it, "
                f"prefer it, or came first by churn, spread and fit"
            )
        if self.assigned[i]:
            return f"the node went to {self.assigned[i][0]} first (placed before {name})"
        return f"{name} could not be placed here"


def _preview(ids, limit=5):
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


# --- validation of a placement ---------------------------------------------------------------


def validate(assignments, nodes, catalogue=None, policy=None):
    """
    Problems with ``assignments`` ({id: [roles]}) on ``nodes``, as
    ``[{"check", "role", "message"}]``; empty when the placement is sound. Checks:
    ``missing`` (an essential role absent: edge or core from 2 nodes, data from 3),
    ``quorum`` (a quorum role with an even count), ``spread`` (members share a failure domain
    while a domain with a node that meets the role's requirements has none),
    ``requirements`` (a node below its role's requirements, unless pinned), ``excluded`` (an
    excluded node holds a role), ``unknown`` (a role or node id that does not exist).
    """
    catalogue = rules.catalog(catalogue)
    policy = rules.policy(policy, catalogue)
    every_node = rules.nodes(nodes)
    by_id = {node.id: node for node in every_node}
    nodes = [node for node in every_node if node.id not in policy.exclude]
    members = {name: [] for name in catalogue}
    problems = []
    for node_id in sorted(assignments):
        if node_id not in by_id:
            problems.append(_problem("unknown", None, f"assignments name unknown node {node_id}"))
            continue
        for name in assignments[node_id]:
            if name not in catalogue:
                problems.append(_problem("unknown", name, f"{node_id} holds unknown role {name}"))
            elif node_id in policy.exclude:
                problems.append(
                    _problem("excluded", name, f"{node_id} is excluded but holds {name}")
                )
            else:
                members[name].append(by_id[node_id])
    requirements = {name: Requirements.of(catalogue[name], policy) for name in catalogue}
    pinned = {(node_id, name) for node_id, names in policy.pins.items() for name in names}
    for name in rules.required_roles(len(nodes), catalogue):
        if not members[name]:
            problems.append(
                _problem("missing", name, f"no {name} node in a {len(nodes)}-node cluster")
            )
    for name in catalogue:
        spec = catalogue[name]
        count = len(members[name])
        if spec.quorum and count % 2 == 0 and count > 0:
            problems.append(
                _problem("quorum", name, f"{name} has {count} members; a quorum needs an odd count")
            )
        if spec.spread:
            problems.extend(_spread_problems(name, spec.spread, members[name], nodes, requirements))
        for node in members[name]:
            if (node.id, name) in pinned:
                continue  # the operator chose this; solve() already warned
            shortfalls = requirements[name].shortfalls(node)
            if shortfalls:
                problems.append(
                    _problem(
                        "requirements",
                        name,
                        f"{node.id} holds {name} but has {'; '.join(shortfalls)}",
                    )
                )
    return problems


def _spread_problems(name, level, members, nodes, requirements):
    used = {node.domain(level) for node in members} - {""}
    known_members = sum(1 for node in members if node.domain(level))
    able = {node.domain(level) for node in nodes if requirements[name].met_by(node)} - {""}
    if len(used) < min(known_members, len(able)):
        return [
            _problem(
                "spread",
                name,
                f"{name}'s {known_members} members use {len(used)} {level}(s) while "
                f"{len(able)} {level}(s) have nodes that meet its requirements",
            )
        ]
    return []


def _problem(check, role, message):
    return {"check": check, "role": role, "message": message}
