"""
Where the datasets of a node that leaves go: the plan of a drain.

``plan(nodes, datasets, leaving, excluded)`` takes the planner's inputs (``store.planner_inputs``)
and returns ``(moves, left)``: one move per dataset on ``leaving`` that another node of its
role can take, and ``{name: reason}`` for the others. Largest datasets first (first fit
decreasing: the big ones have the fewest places to go); each goes to the node of its role that
is least full after taking it, never to or past that node's cleanup level, preferring nodes
outside the failure domains (host) of its replicas; a dataset pinned to the leaving node stays
(its pin must change first). ``excluded`` nodes (cordoned ones) take nothing.
"""

from saltext.eos.utils.datasets import rebalance as planner

KIND = "drain"


def plan(nodes, datasets, leaving, excluded=()):
    """``(moves, left)`` for the datasets on ``leaving``; see the module docstring."""
    usage = {
        node["id"]: dict(node)
        for node in nodes
        if node["id"] != leaving and node["id"] not in excluded
    }
    replicas = {}
    for dataset in datasets:
        if dataset.get("replica_group") and dataset["node"] != leaving:
            host = _host(usage.get(dataset["node"]) or {"id": dataset["node"]})
            replicas.setdefault(dataset["replica_group"], set()).add(host)
    moves, left = [], {}
    on_node = [dataset for dataset in datasets if dataset["node"] == leaving]
    for dataset in sorted(on_node, key=lambda item: (-item["bytes"], item["name"])):
        if dataset.get("pin") == leaving:
            left[dataset["name"]] = f"pinned to {leaving}: change its pin first"
            continue
        destination = _destination(dataset, usage, replicas)
        if destination is None:
            left[dataset["name"]] = _why_not(dataset, usage)
            continue
        usage[destination["id"]]["used_bytes"] += dataset["bytes"]
        if dataset.get("replica_group"):
            replicas.setdefault(dataset["replica_group"], set()).add(_host(destination))
        moves.append(
            planner.Move(
                dataset["name"], leaving, destination["id"], dataset["bytes"], KIND
            ).as_dict()
        )
    return moves, left


def _destination(dataset, usage, replicas):
    role = dataset.get("role") or planner.DEFAULT_ROLE
    candidates = [
        node
        for node in usage.values()
        if node["role"] == role
        and (not dataset.get("pin") or node["id"] == dataset["pin"])
        and _fits(node, dataset["bytes"])
    ]
    if not candidates:
        return None
    taken = replicas.get(dataset.get("replica_group"), set())
    return min(
        candidates,
        key=lambda node: (
            _host(node) in taken,
            (node["used_bytes"] + dataset["bytes"]) / node["capacity_bytes"],
            node["id"],
        ),
    )


def _fits(node, size):
    limit = node["capacity_bytes"] * node["cleanup_percent"] / 100
    return node["used_bytes"] + size < limit


def _host(node):
    return node.get("host") or node["id"]


def _why_not(dataset, usage):
    role = dataset.get("role") or planner.DEFAULT_ROLE
    if dataset.get("pin"):
        return f"pinned to {dataset['pin']}, which cannot take {dataset['bytes']} bytes"
    if not any(node["role"] == role for node in usage.values()):
        return f"no other node of role {role} that has reported its datasets"
    return (
        f"no other node of role {role} has room for {dataset['bytes']} bytes below its "
        "cleanup level"
    )
