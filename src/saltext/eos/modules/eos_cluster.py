"""
Joining an EOS cluster from the minion side: what this node has, whether it is fit to join,
and its registration with the master.

Configuration (minion config or pillar; pillar wins), every key optional:

.. code-block:: yaml

    eos:
      node:
        datacenter: dc1           # else the 'datacenter' grain
        rack: r12                 # else the 'rack' grain
        host: hv-03               # physical host of a VM
        labels: {gpu: a100}       # or [gpu=a100, ssd]
        preferred_role: data      # default for register
      health:
        supported_os: {Debian: "11", Ubuntu: "22.04", RedHat: "8", Rocky: "8"}
        min_root_free_gb: 10
        min_memory_gb: 4
        connect_timeout: 5
        required_ports: [80, 443]
        competing_agents: [puppet, chef-client, ansible-pull]

Events:

``eos/cluster/register``
    Sent to the master by ``register``: ``{resources, health, preferred_role, sent_at_ms,
    signature}``. The signature is made with this minion's Salt key, so the master records
    the registration only for this minion's id, however the event reaches it.
"""

import json
import logging
import os
import time

import salt.crypt
from salt.exceptions import CommandExecutionError
from salt.exceptions import InvalidKeyError
from salt.exceptions import SaltInvocationError

from saltext.eos.utils import config
from saltext.eos.utils import health
from saltext.eos.utils import registry
from saltext.eos.utils import resources as node_resources

log = logging.getLogger(__name__)

__virtualname__ = "eos_cluster"

REGISTER_TAG = "eos/cluster/register"


def __virtual__():
    return __virtualname__


def _layers():
    return config.Layers.from_salt(__opts__, __pillar__)


def resources():
    """
    What this node has: cpu cores, memory, each real disk, network links, failure domain,
    labels and hostname.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_cluster.resources

    Disks are the non-virtual, non-removable block devices, each with size_bytes, free_bytes
    (of the filesystems mounted from it; null when none is), storage_type (nvme, ssd or hdd),
    rotational and mounts. The network lists the NICs with their link speed in Mbit/s (null
    when the driver does not say) and link_speed_mbps, the fastest link that is up.
    """
    try:
        return node_resources.collect(_layers(), __grains__)
    except config.InvalidConfig as err:
        raise CommandExecutionError(str(err)) from err


def health_check(master=None):
    """
    Run the nine pre-join checks; a node passes when no critical check fails.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_cluster.health_check
        salt-call eos_cluster.health_check master=10.0.0.5

    master
        The master to join (address or name). Default: the minion's configured master.

    Returns ``{passed, checks: [{name, critical, passed, detail}]}``. The checks:
    os_supported, root_free_space, memory (warning), master_reachable, clock_synchronised
    (warning when no tool can tell), minion_configured, ports_free, hostname_resolves and
    no_competing_agent (warning).
    """
    if master is not None and (not isinstance(master, str) or not master.strip()):
        raise SaltInvocationError(f"master: {master!r} is not an address or name")
    try:
        options = health.settings(_layers())
    except config.InvalidConfig as err:
        raise CommandExecutionError(str(err)) from err
    target = health.join_target(__opts__, master)
    return health.run_all(options, __grains__, target, _health_world())


def register(preferred_role=None):
    """
    Register this node with its master: send resources, health and the preferred role as
    ``eos/cluster/register``.

    The master records them under this minion's id and applies its acceptance policy
    (see ``salt-run eos_cluster.pending``). A node whose health fails is still registered,
    so the operator sees why it waits.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_cluster.register
        salt-call eos_cluster.register preferred_role=data

    preferred_role
        The role this node would like (a role name such as ``data``); the role solver honours
        it where the node fits and the role is needed. Default: ``eos:node:preferred_role``.

    Returns ``{sent, tag, preferred_role, resources, health}``.
    """
    role = preferred_role if preferred_role is not None else _layers().get("node", "preferred_role")
    if role is not None and (not isinstance(role, str) or not registry.ROLE_NAME.match(role)):
        raise SaltInvocationError(f"preferred_role: {role!r} is not a role name such as data")
    payload = {
        "resources": resources(),
        "health": health_check(),
        "preferred_role": role,
        "sent_at_ms": int(time.time() * 1000),
    }
    # What the master receives after the event bus: JSON types only, so both sides sign the
    # same bytes.
    payload = json.loads(json.dumps(payload))
    payload["signature"] = _sign(registry.signing_message(__opts__["id"], payload))
    if not __salt__["event.send"](REGISTER_TAG, payload):
        raise CommandExecutionError(
            f"could not send {REGISTER_TAG} to the master (is this minion connected?)"
        )
    return {
        "sent": True,
        "tag": REGISTER_TAG,
        "preferred_role": role,
        "resources": payload["resources"],
        "health": payload["health"],
    }


def _sign(message):
    key_path = os.path.join(__opts__["pki_dir"], "minion.pem")
    try:
        key = salt.crypt.PrivateKey.from_file(key_path)
    except (OSError, InvalidKeyError) as err:
        raise CommandExecutionError(f"cannot read this minion's key {key_path}: {err}") from err
    return registry.encode_signature(key.sign(message, algorithm=registry.SIGNATURE_ALGORITHM))


def _health_world():
    def run(argv):
        return __salt__["cmd.run_all"](
            argv, python_shell=False, ignore_retcode=True, output_loglevel="quiet", timeout=10
        )

    return health.World(run=run)
