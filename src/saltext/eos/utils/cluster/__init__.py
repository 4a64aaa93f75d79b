"""
The cluster: which nodes belong to it, what each can do, which roles they hold, and how a
new node gets there.

=============  ================================================================================
nodeid         the node id rule: which minion ids EOS records, targets and names
registry       node records, scale, the acceptance policy and registration payloads
lease          a cluster-wide lease: at most one run of a kind at a time
resources      what a node has: cpu, memory, disks, network, failure domain, labels
health         the pre-join health checks
roles          the role catalogue and each role's target count by cluster size
placement      the role solver: which node holds which role
checkpoint     what a node saves before a join, and the rollback to it
join           adding a node, step by step, with a checkpoint and a rollback
bootstrap      configuring a node's Salt to join (single, join, discover)
=============  ================================================================================
"""

from saltext.eos.utils.cluster import bootstrap
from saltext.eos.utils.cluster import checkpoint
from saltext.eos.utils.cluster import health
from saltext.eos.utils.cluster import join
from saltext.eos.utils.cluster import lease
from saltext.eos.utils.cluster import nodeid
from saltext.eos.utils.cluster import placement
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import resources
from saltext.eos.utils.cluster import roles

__all__ = [
    "bootstrap",
    "checkpoint",
    "health",
    "join",
    "lease",
    "nodeid",
    "placement",
    "registry",
    "resources",
    "roles",
]
