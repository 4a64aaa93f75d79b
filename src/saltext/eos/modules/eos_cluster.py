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
import salt.utils.yaml
from salt.exceptions import CommandExecutionError
from salt.exceptions import InvalidKeyError
from salt.exceptions import SaltInvocationError

from saltext.eos import PACKAGE_ROOT
from saltext.eos.utils import checkpoint as checkpoints_store
from saltext.eos.utils import config
from saltext.eos.utils import health
from saltext.eos.utils import registry
from saltext.eos.utils import resources as node_resources

log = logging.getLogger(__name__)

__virtualname__ = "eos_cluster"

REGISTER_TAG = "eos/cluster/register"
DEFAULT_CONFIG_DIR = "/etc/eos"
ROLE_DEFAULTS = PACKAGE_ROOT / "roles" / "defaults.yaml"
BEACON = "eos_storage"


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


def checkpoint(label="manual"):
    """
    Save what EOS manages on this node, to undo a change with ``eos_cluster.rollback``: every
    file under ``eos:config_dir`` (default /etc/eos), EOS's minion config files (``eos*.conf``
    and ``beacons.conf`` in minion.d) and whether each role service is running and enabled.

    The node-addition orchestration takes one on every member before it changes roles. Only
    the newest 10 are kept, in the minion's cachedir.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_cluster.checkpoint
        salt-call eos_cluster.checkpoint label=before-upgrade

    label
        A short name (letters, digits, ``_ . @ -``), part of the checkpoint id.

    Returns ``{id, label, created_at, files, trees, services}``.
    """
    try:
        checkpoints_store.check_label(label)
        return checkpoints_store.take(_checkpoint_store(), label, _managed_trees(), _services())
    except (checkpoints_store.CheckpointError, OSError) as err:
        raise CommandExecutionError(f"checkpoint not taken: {err}") from err


def checkpoints():
    """
    The checkpoints on this node, newest first.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_cluster.checkpoints
    """
    try:
        return checkpoints_store.checkpoints(_checkpoint_store())
    except checkpoints_store.CheckpointError as err:
        raise CommandExecutionError(str(err)) from err


def rollback(checkpoint_id=None, label=None):
    """
    Put this node back as a checkpoint saw it: its files atomically (files EOS created since
    are removed), the role services running or stopped, enabled or disabled as they were, and
    the ``eos_storage`` beacon as its restored config says.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_cluster.rollback
        salt '*' eos_cluster.rollback 20261125T204501.123Z-join-web-3
        salt '*' eos_cluster.rollback label=before-upgrade

    checkpoint_id
        An id from ``eos_cluster.checkpoints``. Default: the newest (with ``label`` when given).

    Every saved file is checked against its checksum first: a damaged checkpoint is refused
    and nothing changes. Returns ``{id, restored, removed, unchanged, services, beacon}``;
    the job fails when a service or the beacon could not be put back.
    """
    store = _checkpoint_store()
    try:
        manifest = checkpoints_store.find(store, checkpoint_id, label)
        files = checkpoints_store.restore(store, manifest)
    except (checkpoints_store.CheckpointError, OSError) as err:
        raise CommandExecutionError(f"rollback not done: {err}") from err
    services = _restore_services(manifest["services"])
    beacon = _sync_beacon()
    failed = {name: what for name, what in services.items() if what.startswith("failed")}
    if failed or beacon.startswith("failed"):
        __context__["retcode"] = 1
    return {"id": manifest["id"], **files, "services": services, "beacon": beacon}


def _checkpoint_store():
    return os.path.join(__opts__["cachedir"], "eos", "checkpoints")


def _config_dir():
    value = _layers().get("config_dir", default=DEFAULT_CONFIG_DIR)
    if not isinstance(value, str) or not os.path.isabs(value):
        raise CommandExecutionError(
            f"{config.key_name('config_dir')}: {value!r} is not an absolute path"
        )
    return value


def _include_dir():
    # Where Salt's own beacons.save writes beacons.conf: minion.d beside the config file.
    return os.path.join(
        os.path.dirname(__opts__["conf_file"]), os.path.dirname(__opts__["default_include"])
    )


def _managed_trees():
    return checkpoints_store.managed_trees(_config_dir(), _include_dir())


def _services():
    """{name: {active, enabled}} of the role services this host has."""
    if "service.available" not in __salt__:
        return {}
    try:
        with open(ROLE_DEFAULTS, encoding="utf-8") as handle:
            defaults = salt.utils.yaml.safe_load(handle)
    except FileNotFoundError:
        defaults = {}
    names = checkpoints_store.role_services(
        defaults, __grains__.get("os_family"), _layers().get("role_config", default={})
    )
    found = {
        name: {
            "active": bool(__salt__["service.status"](name)),
            "enabled": bool(__salt__["service.enabled"](name)),
        }
        for name in names
        if __salt__["service.available"](name)
    }
    # Asking whether a service is enabled runs commands that exit non-zero for "no"; their
    # exit code is an answer, not a failure of this job.
    __context__.pop("retcode", None)
    return found


def _restore_services(saved):
    done = {}
    for name, wanted in sorted(saved.items()):
        actions = []
        if bool(__salt__["service.enabled"](name)) != wanted["enabled"]:
            actions.append("enable" if wanted["enabled"] else "disable")
        if bool(__salt__["service.status"](name)) != wanted["active"]:
            actions.append("start" if wanted["active"] else "stop")
        failed = []
        for action in actions:
            try:
                if not __salt__[f"service.{action}"](name):
                    failed.append(action)
            except CommandExecutionError as err:
                # systemd's service.start and service.enable raise (with systemctl's
                # message) instead of returning False: one failure must not stop the rest.
                failed.append(f"{action} ({err})")
        if failed:
            done[name] = f"failed: {', '.join(failed)}"
        else:
            done[name] = ", ".join(actions) or "unchanged"
    return done


def _sync_beacon():
    """Make the running eos_storage beacon match the (restored) beacons.conf."""
    path = os.path.join(_include_dir(), "beacons.conf")
    try:
        with open(path, encoding="utf-8") as handle:
            saved = (salt.utils.yaml.safe_load(handle) or {}).get("beacons") or {}
    except FileNotFoundError:
        saved = {}
    wanted = saved.get(BEACON)
    listed = __salt__["beacons.list"](return_yaml=False, include_pillar=False)
    if listed is None:
        # Salt 3008's answer when the minion's beacon manager did not reply in time.
        return "failed: the minion did not list its running beacons"
    running = listed.get(BEACON)
    if wanted == running:
        return "unchanged"
    if wanted is None:
        return _beacon_outcome(__salt__["beacons.delete"](BEACON), "removed")
    if running is None:
        return _beacon_outcome(__salt__["beacons.add"](BEACON, wanted), "added")
    return _beacon_outcome(__salt__["beacons.modify"](BEACON, wanted), "modified")


def _beacon_outcome(answer, done):
    # beacons.add/modify/delete answer {result, comment}: a refusal is not a success.
    if isinstance(answer, dict) and answer.get("result") is False:
        return f"failed: {answer.get('comment') or done}"
    return done


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
