"""
A planned departure: cordon, move the datasets off, hand the roles over, drained.

``drain(registry, evacuate, replace, node_id)``:

1. the node must be ``active`` or ``accepted`` (reachable: its datasets are copied from it);
   a drained node is drained already (nothing changes);
2. cordon it (record ``cordoned: true``, ``eos/cluster/node/<id>/cordoned``): the solver
   gives it no new role and the rebalance no new dataset;
3. ``evacuate(node_id)`` (``datasets.Rebalance.evacuate``) moves each of its datasets with the
   verified move: the source is removed only once the copy's manifest matches. Anything not
   moved (no room, a pin, a failed copy) stops the drain here: the node stays cordoned and
   active with what is left, and the answer lists it;
4. ``replace(reason, leaving=[node_id])`` (``cluster.replacement``) hands its roles over under
   the join lease; a failure there stops the drain too (rolled back, still cordoned);
5. the node becomes ``drained`` (``eos/cluster/node/<id>/drained``): no longer a member, no
   role, no dataset. ``eos_cluster.remove`` then deletes its record and its Salt key;
   ``uncordon`` brings it back through the join flow.

``uncordon(registry, node_id)`` lifts a cordon; a drained node is accepted again (its join
runs), a cordoned member just takes roles and datasets again.
"""

from saltext.eos.utils import errors

CORDONED_TAG = "eos/cluster/node/{id}/cordoned"
UNCORDONED_TAG = "eos/cluster/node/{id}/uncordoned"
DRAINABLE_STATUSES = ("active", "accepted")


class DrainRefused(errors.Conflict):
    """The node cannot be drained in its status; nothing changed."""


def drain(registry, evacuate, replace, node_id, fire=lambda tag, data: None):
    """Drain ``node_id``; returns ``{id, drained, status, moved, left, failed, ...}``."""
    record = registry.get(node_id)
    if record is None:
        raise errors.NotFound(f"{node_id}: no such node in the registry")
    if record["status"] == "drained":
        return _answer(record, True, comment="already drained")
    if record["status"] not in DRAINABLE_STATUSES:
        raise DrainRefused(
            f"{node_id} is {record['status']}: only an active or accepted node can be drained "
            "(its datasets are copied from it); a down node's roles are re-placed already, "
            "remove it with eos_cluster.remove"
        )
    if not record.get("cordoned"):
        record = registry.update(node_id, reason="cordoned for a drain", cordoned=True)
        fire(CORDONED_TAG.format(id=node_id), record)
    datasets = evacuate(node_id)
    if datasets["remaining"] or datasets["failed"] or datasets["blocked"]:
        return _answer(
            registry.get(node_id),
            False,
            datasets,
            comment=_stopped(node_id, datasets),
        )
    handed = replace(f"drain of {node_id}", leaving=[node_id])
    if handed.get("outcome") == "failed":
        return _answer(
            registry.get(node_id),
            False,
            datasets,
            handed,
            comment=f"drain of {node_id} stopped: handing its roles over failed "
            f"({handed.get('error')}); rolled back, the node stays cordoned",
        )
    outcome = registry.set_status(
        node_id, "drained", "drained: datasets moved, roles handed over", cordoned=True
    )
    return _answer(outcome.record, True, datasets, handed, comment=f"{node_id} is drained")


def uncordon(registry, node_id, fire=lambda tag, data: None):
    """Lift the cordon of ``node_id``; a drained node is accepted again (its join runs)."""
    record = registry.get(node_id)
    if record is None:
        raise errors.NotFound(f"{node_id}: no such node in the registry")
    if record["status"] == "drained":
        registry.update(node_id, cordoned=False)
        outcome = registry.accept(node_id, "uncordoned after a drain: joins again")
        return {"id": node_id, "changed": True, "status": outcome.record["status"]}
    if not record.get("cordoned"):
        return {
            "id": node_id,
            "changed": False,
            "status": record["status"],
            "comment": "not cordoned",
        }
    record = registry.update(node_id, reason="uncordoned", cordoned=False)
    fire(UNCORDONED_TAG.format(id=node_id), record)
    return {"id": node_id, "changed": True, "status": record["status"]}


def _stopped(node_id, datasets):
    parts = [f"drain of {node_id} stopped; it stays cordoned"]
    if datasets["blocked"]:
        parts.append("; ".join(datasets["blocked"]))
    if datasets["left"]:
        parts.append(
            "not moved: "
            + "; ".join(f"{name}: {why}" for name, why in sorted(datasets["left"].items()))
        )
    if datasets["failed"]:
        parts.append(
            "failed: "
            + "; ".join(f"{move['dataset']}: {move['error']}" for move in datasets["failed"])
        )
    if datasets["remaining"]:
        parts.append(f"still on {node_id}: {', '.join(datasets['remaining'])}")
    return ". ".join(parts)


def _answer(record, drained, datasets=None, handed=None, comment=""):
    datasets = datasets or {}
    handed = handed or {}
    return {
        "id": record["id"],
        "drained": drained,
        "status": record["status"],
        "cordoned": bool(record.get("cordoned")),
        "moved": datasets.get("moved", []),
        "failed": datasets.get("failed", []),
        "left": datasets.get("left", {}),
        "remaining": datasets.get("remaining", []),
        "roles_changed": handed.get("changes", {}),
        "unplaced": handed.get("unplaced", []),
        "comment": comment,
    }
