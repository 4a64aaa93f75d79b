"""
Give every minion its place in the EOS cluster: scale, size, thresholds and roles.

Master configuration:

.. code-block:: yaml

    ext_pillar:
      - eos: {}

Each minion gets, from the cluster registry (see the ``eos_cluster`` runner):

.. code-block:: yaml

    eos:
      scale: small                # from the accepted and active node count
      node_count: 3
      thresholds:                 # effective limits: the scale's profile, then eos:thresholds
        warning: 65               # of the master config and of the pillar compiled so far,
        compress: 75              # with the overrides of this node's roles
        cleanup: 80
        degraded: 85
        emergency: 90
        critical: 95
      roles: [data]               # this node's roles in the current assignment, or []
      holders:                    # who holds the roles the edges are configured from
        core: [core-1, core-2]
        monolith: []
      cluster_id: 3f2a...
      node_status: accepted       # null for a minion the registry does not know (also
                                  # one whose id breaks the node id rule: a warning says so)
      profile:                    # what else the scale decides
        monitoring_interval: 120
        cleanup: {automatic_up_to: degraded}

A node with the ``observe`` role also gets what its Prometheus scrapes, the node exporter of
every member, at the address its record names or else the first one it published in the mine
(``eos:role_config:edge:discovery:mine_function``, default ``eos_addresses``):

.. code-block:: yaml

    eos:
      observe_targets:
        groups:                   # file_sd target groups (eos.roles.observe writes them)
          - {targets: ["10.0.0.5:9100"], labels: {node: data-1, roles: ",data,"}}
        without_address: [data-9] # members that published no address yet

The analyzer and the storage beacon read ``eos:scale`` and ``eos:thresholds`` from pillar, so
every minion follows the cluster's scale without manual edits. Pillar outranks minion config:
set per-node threshold overrides in pillar (or master config), where they are kept.

Each minion's pillar reads two cache entries, its own record and the cluster summary, so it
costs the same in a cluster of 10 or 10,000 nodes; only an observe node's reads every member
(and its mine data), as its targets are the whole fleet.
"""

import logging

import salt.cache

from saltext.eos.utils import config
from saltext.eos.utils import errors
from saltext.eos.utils import roledefaults
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.observe import targets
from saltext.eos.utils.storage import thresholds

log = logging.getLogger(__name__)

__virtualname__ = "eos"
OBSERVE_ROLE = "observe"
MINE_BANK = "mine"  # where the master keeps each minion's mine data, by minion id


def __virtual__():
    return __virtualname__


def ext_pillar(minion_id, pillar, *args, **kwargs):
    """
    The ``eos`` pillar of one minion: scale, node_count, thresholds, roles, cluster_id,
    node_status and profile.

    CLI Example:

    .. code-block:: bash

        salt '*' pillar.item eos
    """
    master_layers = config.Layers.from_salt(__opts__)
    with errors.salt_errors():
        reg = registry.open_registry(__opts__)
    summary = reg.summary()
    record = _own_record(reg, minion_id)
    roles = list(record.get("roles") or []) if record else []
    profile = registry.scale_profile(summary["scale"])
    eos = {
        "scale": summary["scale"],
        "node_count": summary["node_count"],
        "thresholds": _thresholds(master_layers, pillar, summary["scale"], roles),
        "roles": roles,
        "holders": summary.get("holders") or {},
        "cluster_id": summary["cluster_id"],
        "node_status": record["status"] if record else None,
        "profile": {
            "monitoring_interval": profile["monitoring_interval"],
            "cleanup": profile["cleanup"],
        },
    }
    if OBSERVE_ROLE in roles:
        eos["observe_targets"] = _observe_targets(reg, master_layers, pillar)
    return {"eos": eos}


def _observe_targets(reg, master_layers, pillar):
    layers = config.Layers([*master_layers.sources, ("pillar", (pillar or {}).get("eos"))])
    records = reg.records()
    cache = salt.cache.factory(__opts__)
    mine = {
        record["id"]: cache.fetch(MINE_BANK, record["id"]) for record in targets.members(records)
    }
    # The site's eos:role_config, else the role defaults table.
    mine_function = layers.get("role_config", "edge", "discovery", "mine_function") or (
        roledefaults.setting(roledefaults.load(), "edge", "discovery", "mine_function")
    )
    found = targets.target_groups(
        records,
        targets.addresses(records, mine, mine_function),
        layers.get("observe", targets.SECTION),
    )
    return {"groups": found.groups, "without_address": list(found.without_address)}


def _own_record(reg, minion_id):
    try:
        return reg.get(minion_id)
    except registry.InvalidNodeId as err:
        # The registry never holds such a node: the minion gets the cluster, not a place in it.
        log.warning("eos ext_pillar: no registry record for this minion: %s", err)
        return None


def _thresholds(master_layers, pillar, scale, roles):
    layers = config.Layers(
        [
            *master_layers.sources,
            ("pillar", (pillar or {}).get("eos")),
            ("cluster registry", {"scale": scale}),
        ]
    )
    with errors.salt_errors(prefix="eos ext_pillar for this minion"):
        limits = thresholds.Resolver(layers, roles=roles).for_mount(None)
    return {level: _plain(limits.values[level]) for level in thresholds.THRESHOLD_LEVELS}


def _plain(value):
    # 65.0 reads as 65 in pillar output and compares equal either way.
    return int(value) if float(value).is_integer() else value
