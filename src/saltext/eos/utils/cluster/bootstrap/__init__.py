"""
Bootstrapping a node: the three ways into an EOS cluster, planned first, then carried out with
a checkpoint and a rollback.

Modes:

``single``
    this host becomes a one-node cluster: the master drop-in (``master.d/eos.conf``: the
    README's master block, SSDP discovery answering with the cluster name, and
    ``eos:join:state``) and the minion drop-in (``minion.d/eos.conf``: master 127.0.0.1),
    salt-master and salt-minion restarted, the node registered; the master accepts the first
    node of a new cluster and its join gives it the monolith role.
``join``
    the pre-join health checks against the master given (nothing is written when a critical
    one fails), the minion drop-in pointing at it, salt-minion restarted, the node registered,
    then a bounded wait until the master marks it active or failed.
``discover``
    Salt's own SSDP master discovery (``salt.utils.ssdp``, the minion ``discovery`` option)
    finds the masters that answer with an ``eos_cluster`` mapping, filtered by a cluster name;
    exactly one -> ``join`` it; several -> an error listing them; none -> an error saying so.

``master_finger`` (join and discover) pins the master's public key as Salt does: the minion
drop-in carries Salt's own ``master_finger`` option, so salt-minion and salt-call refuse a
master whose key has another fingerprint. A master shows its key only to a minion it has
accepted, so the key cannot be fetched before anything is written; the bootstrap instead reads
Salt's refusal in its own salt-calls (registration, the wait) and fails with both fingerprints,
rolling back. In discover mode a master that announces its fingerprint in its SSDP mapping
(``eos_master_finger``) is chosen, or dropped, by it before anything is written.

Every mode is a plan (a list of steps, each saying what it changes) before it is anything
else: ``dry_run`` returns the plan. Otherwise a checkpoint of the EOS drop-ins (and of the
salt-master/salt-minion service states) is taken in the node's checkpoint store before the
first change; when a step fails, the drop-ins are restored, restarted daemons are restarted
again on the restored config (or stopped when they were not running), and the result names
the failed step.

The Salt side comes in as plain callables (``World``), so every decision here is testable
without Salt.
"""

from .checks import Layout
from .checks import Prepared
from .checks import SiteConfigConflict
from .checks import layout
from .checks import prepare
from .discovery import DISCOVERY_DEFAULTS
from .discovery import candidates
from .discovery import choose
from .discovery import discovery_options
from .discovery import matching
from .discovery import pinned
from .dropins import HEADER
from .dropins import already_done
from .dropins import dump
from .dropins import hidden_master_keys
from .dropins import load_yaml_files
from .dropins import master_settings
from .dropins import minion_settings
from .dropins import read_text
from .dropins import recorded
from .dropins import render_master
from .dropins import render_minion
from .dropins import site_join_state
from .dropins import site_startup_states
from .dropins import write_atomically
from .inputs import CLUSTER_KEY
from .inputs import CLUSTER_NAME
from .inputs import DEFAULT_CLUSTER
from .inputs import DEFAULT_HASH_TYPE
from .inputs import DEFAULTS
from .inputs import DROP_IN
from .inputs import DROP_IN_PATTERNS
from .inputs import FILE_MODE
from .inputs import FINGER_FAIL
from .inputs import FINGER_KEY
from .inputs import HOST_NAME
from .inputs import JOIN_STATE
from .inputs import MASTER_BLOCK
from .inputs import MASTER_KEY_CACHE
from .inputs import MASTER_SERVICE
from .inputs import MINION_SERVICE
from .inputs import MODES
from .inputs import NODE_JOIN
from .inputs import PUBLISH_PORT
from .inputs import RECORD_KEY
from .inputs import SINGLE_MASTER
from .inputs import STARTUP_SLS
from .inputs import BootstrapError
from .inputs import InvalidRequest
from .inputs import Request
from .inputs import Settings
from .inputs import StepFailed
from .inputs import check_cluster
from .inputs import check_master_finger
from .inputs import check_minion_id
from .inputs import check_mode
from .inputs import check_port
from .inputs import node_id
from .inputs import parse_address
from .inputs import positive
from .inputs import request
from .inputs import settings
from .locations import Paths
from .locations import paths
from .planning import Step
from .planning import plan
from .run import Bootstrap
from .run import World
from .run import failed_checks
from .run import master_key_refusal
from .run import salt_call_error
from .run import wait_for_status

__all__ = [
    "CLUSTER_KEY",
    "CLUSTER_NAME",
    "DEFAULTS",
    "DEFAULT_CLUSTER",
    "DEFAULT_HASH_TYPE",
    "DISCOVERY_DEFAULTS",
    "DROP_IN",
    "DROP_IN_PATTERNS",
    "FILE_MODE",
    "FINGER_FAIL",
    "FINGER_KEY",
    "HEADER",
    "HOST_NAME",
    "JOIN_STATE",
    "MASTER_BLOCK",
    "MASTER_KEY_CACHE",
    "MASTER_SERVICE",
    "MINION_SERVICE",
    "MODES",
    "NODE_JOIN",
    "PUBLISH_PORT",
    "RECORD_KEY",
    "SINGLE_MASTER",
    "STARTUP_SLS",
    "Bootstrap",
    "BootstrapError",
    "InvalidRequest",
    "Layout",
    "Paths",
    "Prepared",
    "Request",
    "Settings",
    "SiteConfigConflict",
    "Step",
    "StepFailed",
    "World",
    "already_done",
    "candidates",
    "check_cluster",
    "check_master_finger",
    "check_minion_id",
    "check_mode",
    "check_port",
    "choose",
    "discovery_options",
    "dump",
    "failed_checks",
    "hidden_master_keys",
    "layout",
    "load_yaml_files",
    "master_key_refusal",
    "master_settings",
    "matching",
    "minion_settings",
    "node_id",
    "parse_address",
    "paths",
    "pinned",
    "plan",
    "positive",
    "prepare",
    "read_text",
    "recorded",
    "render_master",
    "render_minion",
    "request",
    "salt_call_error",
    "settings",
    "site_join_state",
    "site_startup_states",
    "wait_for_status",
    "write_atomically",
]
