"""
Node lifecycle on the master: failure detection and the re-placement of a down node's roles.

The ``eos_lifecycle`` engine runs ``probe`` every ``eos:lifecycle:probe_interval_seconds``
and ``replace`` when a member went down (or the assignment still gives roles to a node that
is down, drained, rejected or removed). These functions run one pass by hand.

Master configuration (``saltext.eos.utils.cluster.lifecycle`` has every key):

.. code-block:: yaml

    engines:
      - eos_lifecycle: {}
    eos:
      lifecycle:
        grace_seconds: 60          # no answer for this long: unreachable
        down_after_seconds: 600    # unreachable this long: down, roles re-placed

Events, with the node record:

``eos/cluster/node/<id>/unreachable``
    it missed the master's probes for the grace period; it keeps its roles.
``eos/cluster/node/<id>/active``
    an unreachable node answers again (no role change).
``eos/cluster/node/<id>/down``
    unreachable for ``down_after_seconds``: its roles go to the live members.
``eos/cluster/node/<id>/accepted``
    a down node answers again: it rejoins through the join flow.
``eos/cluster/replacement/done``, ``eos/cluster/replacement/failed``
    a replacement's record (changes, configured nodes, unplaced roles, rollback).
"""

from saltext.eos.utils import errors
from saltext.eos.utils import master
from saltext.eos.utils.cluster import replacement as replacements

__virtualname__ = "eos_lifecycle"


def __virtual__():
    return __virtualname__


def probe():
    """
    Ask every active, unreachable and down member once, and move their states.

    CLI Example:

    .. code-block:: bash

        salt-run eos_lifecycle.probe

    Returns ``{probed, answered, missing, changes: [{id, from, to, reason}], held,
    hold_down}``; ``held`` lists nodes whose change waits (damped, or down held while too
    many members miss the same probe).
    """
    with errors.salt_errors():  # a bad registry setting, a busy lock: Salt's errors
        return master.Master(__opts__).lifecycle().probe().as_dict()


def replace(reason="by an operator"):
    """
    Re-place roles over the live members under the join lease, when a member left them.

    CLI Example:

    .. code-block:: bash

        salt-run eos_lifecycle.replace

    Returns the run's record: ``outcome`` (unchanged, done or failed), ``changes``
    ``{id: {old, new}}``, ``configured``, ``unplaced`` (roles the live members cannot hold,
    with the reason), and on failure ``error``, ``rollback`` and ``retcode`` 1 (salt-run exits
    with it).
    """
    here = master.Master(__opts__)
    with errors.salt_errors(failure_errors=(errors.OperationFailed,)):
        record = here.replacement().run(reason)
    if record["outcome"] == "failed":
        return errors.with_retcode(__context__, record, 1)
    return record


def status():
    """
    The members by lifecycle state, the nodes the assignment still gives roles to that are
    gone, and the last replacement.

    CLI Example:

    .. code-block:: bash

        salt-run eos_lifecycle.status
    """
    here = master.Master(__opts__)
    with errors.salt_errors():
        registry = here.registry()
    states = {}
    for record in registry.records():
        if record["status"] in ("active", "unreachable", "down", "drained") or record.get(
            "cordoned"
        ):
            states.setdefault(record["status"], []).append(
                {
                    "id": record["id"],
                    "cordoned": bool(record.get("cordoned")),
                    "liveness": record.get("liveness") or {},
                }
            )
    return {
        "nodes": states,
        "stale_holders": replacements.stale_holders(registry),
        "last_replacement": here.replacement().last(),
    }
