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

Executions hold the cluster's rebalance lease (``cluster/lease.py``) named after their run: one
at a time cluster-wide, and recovery never touches an entry of the run holding the lease. Every
write an execution makes to these banks is fenced by its lease (``Store.fenced``): made under
the registry's lock, and refused once another run has taken the lease over.

Moving
======

``execute_move`` runs one move through ``MoveSteps`` (callables the runner builds on Salt):
journal -> pull into staging on the destination -> compare the manifests of the source and
the staging copy -> commit staging into place -> switch the placement -> announce -> remove the
source -> drop the journal entry. Until the switch the source is untouched and the placement
points at it; any failure before it leaves exactly that, plus a partial copy that ``recover``
cleans up.
"""

from .execution import Rebalance
from .local import STAGING_DIR
from .local import clean_partial
from .local import commit_staging
from .local import dataset_dir
from .local import free_bytes
from .local import local_sizes
from .local import mount_point
from .local import node_usage
from .local import remove_tree
from .local import staging_dir
from .local import top_level_dirs
from .local import tree_bytes
from .moves import COMMITTED
from .moves import PULLING
from .moves import REBALANCE_LEASE_KEY
from .moves import SWITCHED
from .moves import MoveFailed
from .moves import MoveSteps
from .moves import execute_move
from .moves import recover
from .moves import waves
from .settings import DATASET_NAME
from .settings import DECLARATION_FIELDS
from .settings import NODE_DEFAULTS
from .settings import REBALANCE_DEFAULTS
from .settings import Declaration
from .settings import InvalidDatasets
from .settings import check_name
from .settings import declarations
from .settings import node_settings
from .settings import rebalance_settings
from .settings import relative_path
from .store import FAILED_STATUSES
from .store import JOINING_STATUSES
from .store import JOURNAL_BANK
from .store import PLACEMENTS_BANK
from .store import REPORTS_BANK
from .store import UNAVAILABLE_STATUSES
from .store import Store
from .store import blockers
from .store import check_report
from .store import fleet_report
from .store import planner_inputs
from .store import planner_role
from .store import record_reports
from .store import report_level
from .store import time_to_full
from .store import unavailable_datasets

__all__ = [
    "COMMITTED",
    "DATASET_NAME",
    "DECLARATION_FIELDS",
    "FAILED_STATUSES",
    "JOINING_STATUSES",
    "JOURNAL_BANK",
    "NODE_DEFAULTS",
    "PLACEMENTS_BANK",
    "PULLING",
    "REBALANCE_DEFAULTS",
    "REBALANCE_LEASE_KEY",
    "REPORTS_BANK",
    "STAGING_DIR",
    "SWITCHED",
    "UNAVAILABLE_STATUSES",
    "Declaration",
    "InvalidDatasets",
    "MoveFailed",
    "MoveSteps",
    "Rebalance",
    "Store",
    "blockers",
    "check_name",
    "check_report",
    "clean_partial",
    "commit_staging",
    "dataset_dir",
    "declarations",
    "execute_move",
    "fleet_report",
    "free_bytes",
    "local_sizes",
    "mount_point",
    "node_settings",
    "node_usage",
    "planner_inputs",
    "planner_role",
    "rebalance_settings",
    "record_reports",
    "recover",
    "relative_path",
    "remove_tree",
    "report_level",
    "staging_dir",
    "time_to_full",
    "top_level_dirs",
    "tree_bytes",
    "unavailable_datasets",
    "waves",
]
