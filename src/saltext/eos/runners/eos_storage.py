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

import logging

from saltext.eos.utils import datasets
from saltext.eos.utils import errors
from saltext.eos.utils import master

log = logging.getLogger(__name__)

__virtualname__ = "eos_storage"


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

    Returns ``{nodes: {id: {...}}, conflicts, unreported, unavailable}``. An unreachable or
    down node is not asked: its row has ``available: False``, and each dataset placed on it is
    listed in ``unavailable`` as ``{dataset: {node, status}}``. Those datasets are not moved
    anywhere (their only copy is on that node); they come back with the node, or an operator
    restores them.
    """
    with errors.salt_errors():
        fleet = _rebalancer()
        gathered = fleet.refresh() if refresh else {"conflicts": [], "unreported": []}
    records, placements = fleet.registry.records(), fleet.store.placements()
    return {
        "nodes": datasets.fleet_report(records, fleet.store.reports(), placements),
        "conflicts": gathered["conflicts"],
        "unreported": gathered["unreported"],
        "unavailable": datasets.unavailable_datasets(records, placements),
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
    with errors.salt_errors():
        result = _rebalancer().run(threshold, dry_run, exclude_nodes, exclude_datasets)
    return _with_retcode(result)


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
    master.checked_node_id(node)
    with errors.salt_errors():
        result = _rebalancer().react(node, level)
    return _with_retcode(result)


def _with_retcode(result):
    if "retcode" not in result:
        return result
    return errors.with_retcode(__context__, result, result["retcode"])


def _rebalancer():
    return master.Master(__opts__).rebalancer()
