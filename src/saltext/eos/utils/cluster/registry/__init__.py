"""
The cluster registry: one record per node in Salt's cache, a small cluster summary, status
transitions with history, the acceptance policy and scale detection.

Storage
=======

Everything lives in the master's Salt cache (``salt.cache``), so whichever ``cache`` backend
the master uses holds it: ``localfs`` by default; ``redis``, ``etcd``, ``consul`` or
``mysql`` when several masters share one registry.

- bank ``eos/nodes``, one key per node id: the node record. Two nodes registering at once
  write two different keys and never overwrite each other.
- bank ``eos/cluster``, key ``summary``: ``{cluster_id, created_at, first_node, counts,
  node_count, scale, roles, assignment_version, updated_at}``. Reading one node's pillar
  costs the node's own record plus this summary, whatever the cluster size.
- bank ``eos/cluster``, key ``assignment``: the last role assignment stored by
  ``eos_roles.apply`` (``{version, assignments, stored_at}``).
- bank ``eos/cluster``, keys ``journal`` and ``generation``: which records each write changed,
  so a reader outside the master (the REST API, ``RegistryView``) fetches only those
  (``journal``).

Every change (a record and the summary counts together) happens under one lock, so the counts
stay exact however many registrations arrive at once. ``lock.lock_for`` chooses it from the
master's ``cache``: a ``FileLock`` in the cachedir (``localfs``: every process of the master),
or a ``RedisLock`` on the redis server of a redis cache, which every master sharing that cache
respects. With another shared backend the lock is still a file on each master and the summary
counts may drift; ``Registry.rebuild_summary`` (``salt-run eos_cluster.info recount=True``)
recounts them from the records.

Statuses
========

``pending`` (known, waiting for acceptance), ``accepted`` (a member, not yet configured),
``active`` (configured and serving), ``failed`` (its configuration failed), ``unreachable``
(stopped answering the master's probes; keeps its roles), ``down`` (unreachable too long: its
roles went to the live nodes), ``drained`` (emptied by ``eos_cluster.drain``), ``rejected``.
``TRANSITIONS`` lists the allowed changes; every change is appended to the record's history
(the last ``HISTORY_LIMIT`` are kept) and reported to ``on_change`` (the runner fires
``eos/cluster/node/<id>/<status>``). Accepted, active and unreachable nodes are the cluster's
members: they make ``node_count`` and so the scale. A down or drained node comes back by being
accepted again, which runs the join flow. ``saltext.eos.utils.cluster.lifecycle`` decides the
unreachable and down changes.

Node ids follow the one rule of ``saltext.eos.utils.cluster.nodeid`` (``check_node_id``). A
registration sent more than ``eos:registration:max_clock_skew_seconds`` (default 300) ahead of
the master's clock is refused, and a recorded time beyond that bound orders nothing (see
"registration order" below), so a clock ahead never locks a node out.

Acceptance policy (master config ``eos:accept``)
================================================

.. code-block:: yaml

    eos:
      accept: manual              # default: salt-run eos_cluster.accept <id>
    # or
      accept: auto                # every node that asks
    # or
      accept:
        auto: true
        match: "G@os:Debian and G@eos_join:yes"   # Salt compound matcher, optional
        require_health: true      # default in this form: critical checks must pass

The first node of a new cluster is always accepted, so a single node can bootstrap itself.

Scale
=====

From the number of members: ``single`` (0 or 1), ``small`` (from 2), ``medium`` (from 4),
``distributed`` (from 7). Master config ``eos:scale_boundaries`` moves where each scale starts,
e.g. ``{medium: 5, distributed: 10}``. Each scale has a profile: the analyzer thresholds
(``thresholds.PROFILES``), the storage monitoring interval and how far cleanup may go on its own
(``SCALE_POLICIES``).
"""

from .etcd_client import EtcdAccessDenied
from .etcd_client import EtcdClient
from .etcd_client import EtcdError
from .etcd_client import EtcdUnreachable
from .journal import FULL_RELOAD_SECONDS
from .journal import GENERATION_KEY
from .journal import JOURNAL_KEY
from .journal import JOURNAL_LIMIT
from .journal import RegistryView
from .journal import Snapshot
from .lock import ETCD_LOCK_KEY
from .lock import LOCK_DEFAULTS
from .lock import LOCK_FILE
from .lock import EtcdLock
from .lock import FileLock
from .lock import LockLost
from .lock import RedisLock
from .lock import lock_for
from .payload import CHECK_FIELDS
from .payload import DEFAULT_MAX_CLOCK_SKEW
from .payload import DISK_FIELDS
from .payload import DISK_GB
from .payload import DOMAIN_FIELDS
from .payload import HEALTH_FIELDS
from .payload import INTERFACE_FIELDS
from .payload import MAX_CHECKS
from .payload import MAX_DISKS
from .payload import MAX_ID_LENGTH
from .payload import MAX_INTERFACES
from .payload import MAX_LABELS
from .payload import MAX_MOUNTS_PER_DISK
from .payload import MAX_NAME_LENGTH
from .payload import MAX_PATH_LENGTH
from .payload import MAX_PAYLOAD_BYTES
from .payload import MAX_TEXT_LENGTH
from .payload import MEMORY_GB
from .payload import NETWORK_FIELDS
from .payload import PAYLOAD_FIELDS
from .payload import RESOURCE_FIELDS
from .payload import ROLE_NAME
from .payload import SIGNATURE_ALGORITHM
from .payload import STORAGE_TYPES
from .payload import Registration
from .payload import check_node_id
from .payload import check_preregistration
from .payload import check_registration
from .payload import check_sent_at
from .payload import decode_signature
from .payload import encode_signature
from .payload import max_clock_skew
from .payload import signing_message
from .payload import supersedes
from .payload import without_job_metadata
from .policy import POLICY_FIELDS
from .policy import AcceptancePolicy
from .policy import Decision
from .policy import InvalidPolicy
from .policy import acceptance_policy
from .policy import decide
from .refusals import AlreadyRegistered
from .refusals import ClockSkew
from .refusals import InvalidNodeId
from .refusals import InvalidPayload
from .refusals import InvalidTransition
from .refusals import RegistryBusy
from .refusals import RegistryError
from .refusals import StaleJoin
from .refusals import UnknownNode
from .scale import SCALE_POLICIES
from .scale import SCALE_STARTS
from .scale import SCALES
from .scale import InvalidBoundaries
from .scale import scale_boundaries
from .scale import scale_for
from .scale import scale_profile
from .store import ASSIGNMENT_KEY
from .store import CLUSTER_BANK
from .store import FLOW_STATUSES
from .store import HISTORY_LIMIT
from .store import MEMBER_STATUSES
from .store import NODES_BANK
from .store import REACHABLE_STATUSES
from .store import REMOVED
from .store import ROLELESS_STATUSES
from .store import STATUSES
from .store import SUMMARY_KEY
from .store import TRANSITIONS
from .store import Outcome
from .store import Registry
from .store import as_role_node
from .store import cluster_info
from .store import empty_summary
from .store import new_record
from .store import node_storage_type
from .store import open_registry

__all__ = [
    "ASSIGNMENT_KEY",
    "CHECK_FIELDS",
    "CLUSTER_BANK",
    "DEFAULT_MAX_CLOCK_SKEW",
    "DISK_FIELDS",
    "DISK_GB",
    "DOMAIN_FIELDS",
    "ETCD_LOCK_KEY",
    "FLOW_STATUSES",
    "FULL_RELOAD_SECONDS",
    "GENERATION_KEY",
    "HEALTH_FIELDS",
    "HISTORY_LIMIT",
    "INTERFACE_FIELDS",
    "JOURNAL_KEY",
    "JOURNAL_LIMIT",
    "LOCK_DEFAULTS",
    "LOCK_FILE",
    "MAX_CHECKS",
    "MAX_DISKS",
    "MAX_ID_LENGTH",
    "MAX_INTERFACES",
    "MAX_LABELS",
    "MAX_MOUNTS_PER_DISK",
    "MAX_NAME_LENGTH",
    "MAX_PATH_LENGTH",
    "MAX_PAYLOAD_BYTES",
    "MAX_TEXT_LENGTH",
    "MEMBER_STATUSES",
    "MEMORY_GB",
    "NETWORK_FIELDS",
    "NODES_BANK",
    "PAYLOAD_FIELDS",
    "POLICY_FIELDS",
    "REACHABLE_STATUSES",
    "REMOVED",
    "RESOURCE_FIELDS",
    "ROLELESS_STATUSES",
    "ROLE_NAME",
    "SCALES",
    "SCALE_POLICIES",
    "SCALE_STARTS",
    "SIGNATURE_ALGORITHM",
    "STATUSES",
    "STORAGE_TYPES",
    "SUMMARY_KEY",
    "TRANSITIONS",
    "AcceptancePolicy",
    "AlreadyRegistered",
    "ClockSkew",
    "Decision",
    "EtcdAccessDenied",
    "EtcdClient",
    "EtcdError",
    "EtcdLock",
    "EtcdUnreachable",
    "FileLock",
    "InvalidBoundaries",
    "InvalidNodeId",
    "InvalidPayload",
    "InvalidPolicy",
    "InvalidTransition",
    "LockLost",
    "Outcome",
    "RedisLock",
    "Registration",
    "Registry",
    "RegistryBusy",
    "RegistryError",
    "RegistryView",
    "Snapshot",
    "StaleJoin",
    "UnknownNode",
    "acceptance_policy",
    "as_role_node",
    "check_node_id",
    "check_preregistration",
    "check_registration",
    "check_sent_at",
    "cluster_info",
    "decide",
    "decode_signature",
    "empty_summary",
    "encode_signature",
    "lock_for",
    "max_clock_skew",
    "new_record",
    "node_storage_type",
    "open_registry",
    "scale_boundaries",
    "scale_for",
    "scale_profile",
    "signing_message",
    "supersedes",
    "without_job_metadata",
]
