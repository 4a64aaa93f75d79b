"""
Role placement for the EOS cluster: which role each registered node plays.

The solver (``saltext.eos.utils.cluster.placement``) places roles by the nodes' real resources,
keeps nodes in their roles whenever it can, and explains every decision. This runner feeds
it the registry's members (accepted and active nodes) and stores its answer.

Configuration (master config), every key optional:

.. code-block:: yaml

    eos:
      roles:
        catalog:                  # overrides of the built-in catalogue, field by field
          data: {memory_gb: 32, spread: rack}
          message: {quorum: true}
        pins: {node-7: [data]}    # these nodes get exactly these roles
        exclude: [node-9]         # these nodes get no role
        labels: {edge: {zone: dmz}}   # a role only goes to nodes with these labels

Events:

``eos/roles/changed``
    fired by ``apply`` when an assignment is stored: ``{version, changes: {id: {old, new}}}``.

Each minion's pillar (the ``eos`` ext_pillar) carries its roles as ``eos:roles``.
"""

import logging

from salt.exceptions import SaltInvocationError

from saltext.eos.utils import config
from saltext.eos.utils import errors
from saltext.eos.utils import master
from saltext.eos.utils.cluster import placement
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import roles as role_rules

log = logging.getLogger(__name__)

__virtualname__ = "eos_roles"

CHANGED_TAG = "eos/roles/changed"


def __virtual__():
    return __virtualname__


def calculate(nodes=None):
    """
    Calculate role assignments; changes nothing.

    CLI Example:

    .. code-block:: bash

        salt-run eos_roles.calculate
        salt-run eos_roles.calculate nodes='[{"id": "n1", "cpu": 8, "memory_gb": 32,
            "disk_gb": 1000, "storage_type": "ssd", "datacenter": "dc1", "rack": "r1"}]'

    nodes
        A what-if over these node descriptions (id, cpu, memory_gb, disk_gb, storage_type,
        datacenter, rack, labels, roles) instead of the registry's members.

    Returns version (the version ``apply`` would store), scale, assignments {id: [roles]},
    changes {id: {old, new}}, churn, unplaced [{role, reason}] and explanation.
    """
    reg = _registry()
    members = _members(reg) if nodes is None else nodes
    solved = _solve(members)
    return _report(reg, solved, len(members))


def apply():
    """
    Calculate, store the assignment as a new version, fire ``eos/roles/changed``.

    CLI Example:

    .. code-block:: bash

        salt-run eos_roles.apply

    Returns version, changes {id: {old, new}}, churn and unplaced. The minions' pillar then
    carries their new roles; a highstate applies them.
    """
    reg = _registry()
    members = _members(reg)
    solved = _solve(members)
    result = solved.as_dict()
    with errors.salt_errors():
        stored = reg.store_assignment(result["assignments"])
    event = {"version": stored["version"], "changes": stored["changes"]}
    _fire(CHANGED_TAG, event)
    return {
        **event,
        "churn": result["churn"],
        "unplaced": result["unplaced"],
        "scale": registry.scale_for(len(members), reg.boundaries),
    }


def show():
    """
    The stored assignment: version, when it was stored, and every node's roles.

    CLI Example:

    .. code-block:: bash

        salt-run eos_roles.show
    """
    reg = _registry()
    stored = reg.assignment() or {"version": 0, "assignments": {}, "stored_at": None}
    summary = reg.summary()
    return {**stored, "scale": summary["scale"], "roles": summary["roles"]}


def explain(node_id):
    """
    Why a node got its role, and why each other role was not chosen.

    CLI Example:

    .. code-block:: bash

        salt-run eos_roles.explain node-7
    """
    master.checked_node_id(node_id)
    members = _members(_registry())
    if node_id not in {member["id"] for member in members}:
        raise SaltInvocationError(f"node {node_id!r} is not an accepted or active member")
    return _solve(members).explain(node_id)


def validate():
    """
    Check the stored assignment: required roles present, quorum odd, spread kept.

    CLI Example:

    .. code-block:: bash

        salt-run eos_roles.validate

    Returns {valid, problems: [{check, role, message}]}.
    """
    reg = _registry()
    stored = (reg.assignment() or {}).get("assignments", {})
    catalogue, policy = _catalogue_and_policy()
    with errors.salt_errors():
        problems = placement.validate(stored, _members(reg), catalogue, policy)
    return {"valid": not problems, "problems": problems}


def _members(reg):
    return [
        registry.as_role_node(record)
        for status in registry.MEMBER_STATUSES
        for record in reg.records(status)
    ]


def _catalogue_and_policy():
    with errors.salt_errors():
        return role_rules.from_layers(master.Master(__opts__).layers())


def _solve(nodes):
    catalogue, policy = _catalogue_and_policy()
    with errors.salt_errors(caller_errors=(config.InvalidConfig,)):
        return placement.solve(role_rules.nodes(nodes), catalogue, policy)


def _report(reg, solved, member_count):
    result = solved.as_dict()
    return {
        "version": reg.summary()["assignment_version"] + 1,
        "scale": registry.scale_for(member_count, reg.boundaries),
        "assignments": result["assignments"],
        "changes": result["changes"],
        "churn": result["churn"],
        "unplaced": [
            {"role": item["role"], "reason": item["reason"]} for item in result["unplaced"]
        ],
        "explanation": _explanation(result),
    }


def _explanation(result):
    targets = ", ".join(f"{role} {count}" for role, count in result["targets"].items() if count)
    lines = [f"targets: {targets or 'none'}"]
    lines.append(
        f"{result['churn']} existing node(s) change role, "
        f"{result['first_assignments']} new node(s) get their first role"
    )
    lines.extend(item["reason"] for item in result["unplaced"])
    lines.extend(result["warnings"])
    lines.append("salt-run eos_roles.explain <id> tells why a node got its role")
    return lines


def _registry():
    with errors.salt_errors():
        return master.Master(__opts__).registry()


def _fire(tag, data):
    master.Master(__opts__).fire(tag, data)
