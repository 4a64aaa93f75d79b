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

Bootstrap (``eos_cluster.bootstrap``, state ``eos_cluster.bootstrapped``), every key optional:

.. code-block:: yaml

    eos:
      bootstrap:
        restart: true             # service.restart salt-minion (and salt-master in single
                                  # mode); false: the daemons are restarted by someone else
                                  # (a container supervisor, a test); or service names:
                                  # {minion: salt-minion@blue, master: salt-master@blue}
        timeout: 900              # seconds to wait for the node to become active or failed
        poll_interval: 5
        call_timeout: 60          # seconds for one salt-call (registration, status)
        master_wait: 60           # single mode: seconds for the restarted master's ports
        cluster: eos              # single: the name discovery announces; discover: the
                                  # name looked for (default: any EOS master)
        master_config_dir: /etc/salt/master.d   # default: master.d beside the minion config
        startup_state: true       # once active, the node applies eos.roles at every start

The drop-ins it writes: ``minion.d/eos.conf`` (``master``, ``id``, ports, ``startup_states``,
Salt's ``master_finger`` when one is given, and ``eos_bootstrap``, the record of what was
done) and, in single mode, ``master.d/eos.conf`` (the README's master block, ``discovery``
with the mapping ``eos_cluster: <name>``, ``eos:join:state: eos.roles`` unless the site's
master config sets ``eos:join:state``). Salt lays a drop-in over the main config file key by
key, so single mode refuses to run while the main master file sets one of the drop-in's keys
(it would be hidden).

Events:

``eos/cluster/register``
    Sent to the master by ``register``: ``{resources, health, preferred_role, sent_at_ms,
    signature}``. The signature is made with this minion's Salt key, so the master records
    the registration only for this minion's id, however the event reaches it.
"""

import dataclasses
import json
import logging
import os
import shutil
import socket
import sys
import time

import salt.crypt
import salt.utils.ssdp
import salt.utils.yaml
from salt.exceptions import CommandExecutionError
from salt.exceptions import InvalidKeyError
from salt.exceptions import SaltInvocationError

from saltext.eos.utils import commands
from saltext.eos.utils import config
from saltext.eos.utils import errors
from saltext.eos.utils import roledefaults
from saltext.eos.utils.cluster import bootstrap as bootstrapping
from saltext.eos.utils.cluster import checkpoint as checkpoints_store
from saltext.eos.utils.cluster import health
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import resources as node_resources

log = logging.getLogger(__name__)

__virtualname__ = "eos_cluster"

REGISTER_TAG = "eos/cluster/register"
ROLE_DEFAULTS = roledefaults.ROLE_DEFAULTS
BEACON = "eos_storage"


def __virtual__():
    if __grains__.get("kernel") != "Linux":
        return False, "eos_cluster: needs Linux (disks and network links from /sys, systemd)"
    return __virtualname__


def _announced_publish_port():
    """The publish port the master announced when this minion authenticated, if known here."""
    # Salt keys its credentials by (pki_dir, id, master_uri, key mtime); a job process
    # inherits them from the minion that authenticated. salt-call --local has none.
    ours = (__opts__.get("pki_dir"), __opts__.get("id"))
    for key, creds in dict(salt.crypt.AsyncAuth.creds_map).items():
        if tuple(key[:2]) == ours and isinstance(creds, dict) and creds.get("publish_port"):
            return creds["publish_port"]
    return None


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
    with errors.salt_errors():
        return node_resources.collect(_layers(), __grains__)


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
    with errors.salt_errors():
        options = health.settings(_layers())
    target = health.join_target(__opts__, master, _announced_publish_port())
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
    if role is not None and (not isinstance(role, str) or not registry.ROLE_NAME.fullmatch(role)):
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


def bootstrap(
    mode,
    master=None,
    port=None,
    cluster=None,
    minion_id=None,
    publish_port=None,
    dry_run=False,
    wait=True,
    timeout=None,
    master_config_dir=None,
    master_finger=None,
):
    """
    Bring this host into an EOS cluster: as a one-node cluster (``single``), by joining a
    master (``join``), or by finding the master on the local network (``discover``). Meant for
    a fresh machine that has only Salt and this package: ``salt-call --local``.

    CLI Example:

    .. code-block:: bash

        salt-call --local eos_cluster.bootstrap mode=single
        salt-call --local eos_cluster.bootstrap mode=join master=10.0.0.5
        salt-call --local eos_cluster.bootstrap mode=join master=salt.example.com:4506
        salt-call --local eos_cluster.bootstrap mode=discover cluster=prod
        salt-call --local eos_cluster.bootstrap mode=discover dry_run=True
        salt-call --local eos_cluster.bootstrap mode=discover cluster=prod master_finger=4f:1e:...

    mode
        ``single``: this host becomes master and only node (master drop-in with EOS's master
        block and SSDP discovery, minion pointed at 127.0.0.1, both daemons restarted; the
        first node is accepted and gets the monolith role). ``join``: pre-join health checks
        against ``master`` (nothing is written when a critical check fails), minion drop-in,
        salt-minion restarted, registration sent, then a wait until the master marks the node
        active or failed. ``discover``: Salt's SSDP master discovery; one EOS master found ->
        join it; several -> an error listing them; none -> an error saying so.
    master
        The master's address or host name (``join``), optionally with ``:port``. Refused
        by ``single`` (the minion uses the master beside it) and ``discover``.
    port
        The master's return port (default 4506); ``publish_port`` its publish port (4505).
    cluster
        ``single``: the cluster name the master announces (default ``eos``). ``discover``:
        only masters announcing this name. Default: ``eos:bootstrap:cluster``.
    minion_id
        The id written into the drop-in (default: this minion's id now).
    dry_run
        Return the plan (each step and what it changes) and change nothing.
    wait
        ``False``: stop after the registration instead of waiting for the join.
    timeout
        Seconds to wait for the join (default ``eos:bootstrap:timeout``, 900).
    master_config_dir
        The master's drop-in directory (default: master.d beside the minion config file).
    master_finger
        ``join`` and ``discover``: the fingerprint of the master's public key as
        ``salt-key -F master`` prints it there (with this minion's ``hash_type``, default
        sha256). The minion drop-in carries it as Salt's ``master_finger``, so salt-minion
        refuses a master with another key; the bootstrap fails with both fingerprints (and
        rolls back) when its salt-calls meet such a master. Discover picks the master that
        announces this fingerprint (``eos_master_finger`` in its SSDP mapping) and drops one
        announcing another.

    Before the first change a checkpoint of EOS's drop-ins (and of the salt-master and
    salt-minion service states) is taken with the node checkpoints (``eos_cluster
    .checkpoints``). When a step fails the drop-ins are restored and the daemons restarted
    on the restored config; the job returns ``result: False`` with ``failed_step`` and
    ``error`` and exits 1. Once the master knows the node (pending, joining or failed), a
    wait that ends without ``active`` keeps the config: the master owns the join and
    ``salt-run eos_cluster.accept <id>`` retries it.

    Returns ``{result, changed, mode, minion_id, master, cluster, plan, done, checkpoint,
    outcome: {status, roles, health}, progress, failed_step, error, rollback}``; ``already:
    True`` and no plan when the node was bootstrapped this way before (nothing is done).
    """
    with errors.salt_errors():
        ready = bootstrapping.prepare(
            _layers(),
            __opts__,
            mode,
            master_config_dir=master_config_dir,
            timeout=timeout,
            master=master,
            port=port,
            publish_port=publish_port,
            cluster=cluster,
            minion_id=minion_id,
            master_finger=master_finger,
        )
    options, req, node, where = ready.settings, ready.req, ready.minion_id, ready.paths
    summary = {
        "mode": mode,
        "minion_id": node,
        "cluster": req.cluster,
        "dry_run": bool(dry_run),
        "drop_ins": {"minion": where.minion_drop_in},
    }
    if mode == "single":
        summary["drop_ins"]["master"] = where.master_drop_in

    current = {
        path: bootstrapping.read_text(path) for path in (where.minion_drop_in, where.master_drop_in)
    }
    if mode == "discover" and bootstrapping.already_done(req, current[where.minion_drop_in]):
        return _already(summary, req, where, current)
    if mode == "discover":
        try:
            found = _discover(req.cluster, req.master_finger)
        except bootstrapping.StepFailed as err:
            __context__["retcode"] = 1
            return {
                **summary,
                "result": False,
                "changed": False,
                "failed_step": err.step,
                "error": str(err),
            }
        summary["discovered"] = found
        req = dataclasses.replace(req, master=found["address"])
    summary["master"] = req.master

    if bootstrapping.already_done(req, current[where.minion_drop_in]):
        return _already(summary, req, where, current)
    with errors.salt_errors():
        site = bootstrapping.layout(dataclasses.replace(ready, req=req))
    join_state, startup = site.join_state, site.startup_state
    steps = bootstrapping.plan(req, node, where, options, current, join_state, startup)
    if not wait:
        steps = [step for step in steps if step.name not in ("wait", "startup_state")]
    summary["plan"] = [step.as_dict() for step in steps]
    if dry_run:
        # result True: the plan was made (salt-call exits 1 on a falsy result).
        return {**summary, "result": True, "changed": False, "comment": "dry run: nothing changed"}

    _check_services(steps)
    runner = bootstrapping.Bootstrap(
        world=_bootstrap_world(), settings=options, paths=where, req=req, minion_id=node
    )
    done = runner.run(steps)
    if not done["result"]:
        __context__["retcode"] = 1
    return {**summary, "changed": True, **done}


def checkpoint(label="manual"):
    """
    Save what EOS manages on this node, to undo a change with ``eos_cluster.rollback``: every
    file under ``eos:config_dir`` (default /etc/eos), EOS's minion config files (``eos*.conf``
    and ``beacons.conf`` in minion.d) and whether each role service is running and enabled
    (only with ``eos:manage_software`` true: otherwise the role states manage no service). A
    service whose state cannot be read (no service manager, a tool missing from PATH) is
    recorded as unknown, listed in ``unknown_services``, and left alone by a rollback.

    The node-addition orchestration takes one on every member before it changes roles. Only
    the newest 10 are kept, in the minion's cachedir.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_cluster.checkpoint
        salt-call eos_cluster.checkpoint label=before-upgrade

    label
        A short name (letters, digits, ``_ . @ -``), part of the checkpoint id.

    Returns ``{id, label, created_at, files, trees, services, unknown_services}``.
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
    with errors.salt_errors():
        return checkpoints_store.checkpoints(_checkpoint_store())


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


def _already(summary, req, where, current):
    record = bootstrapping.recorded(current[where.minion_drop_in])
    return {
        **summary,
        "master": record.get("master"),
        "result": True,
        "changed": False,
        "already": True,
        "comment": f"already bootstrapped ({req.mode}, master {record.get('master')}): "
        f"{where.minion_drop_in} says so; nothing changed",
    }


def _check_services(steps):
    """A daemon to restart must be a service this host's service manager knows."""
    for step in steps:
        service = step.payload if step.name in ("restart_master", "restart_minion") else None
        if service is None:
            continue
        if "service.available" not in __salt__ or not __salt__["service.available"](service):
            raise CommandExecutionError(
                f"{service} is not a service this host's service manager knows, so "
                f"eos_cluster.bootstrap cannot restart it; nothing was changed. Set "
                f"eos:bootstrap:restart to false (and restart the daemons yourself) or to "
                f"{{minion: <service>, master: <service>}}"
            )


def _discover(cluster, master_finger=None):
    """The one EOS master Salt's SSDP discovery finds, or StepFailed('discover')."""
    with errors.salt_errors():
        options = bootstrapping.discovery_options(__opts__.get("discovery"))
    client = salt.utils.ssdp.SSDPDiscoveryClient(port=options["port"])
    answers = {}
    for attempt in range(options["attempts"]):
        log.info(
            "eos bootstrap: SSDP discovery on UDP port %s, try %s", options["port"], attempt + 1
        )
        try:
            answers.update(client.discover())
        except OSError as err:
            raise bootstrapping.StepFailed("discover", f"SSDP discovery failed: {err}") from err
        if bootstrapping.candidates(answers):
            break
        if attempt + 1 < options["attempts"]:
            time.sleep(options["pause"])
    found = bootstrapping.matching(
        bootstrapping.candidates(answers), cluster, options["mapping"], options["match"]
    )
    return bootstrapping.choose(bootstrapping.pinned(found, master_finger), cluster)


def _bootstrap_world():
    def health_of(req):
        host, port, _ = req.target()
        # Not yet connected: the minion will use the publish port the master announces,
        # unless the request names one.
        publish = health.publish_port_in_use(req.publish_port)
        target = health.Target(
            masters=(host,), configured_masters=(host,), publish_port=publish, ret_port=port
        )
        try:
            options = health.settings(_layers())
        except config.InvalidConfig as err:
            raise bootstrapping.BootstrapError(str(err)) from err
        return health.run_all(options, __grains__, target, _health_world())

    def take(label, trees, services):
        return checkpoints_store.take(_checkpoint_store(), label, trees, services)

    def restore(checkpoint_id):
        store = _checkpoint_store()
        return checkpoints_store.restore(store, checkpoints_store.find(store, checkpoint_id))

    def available(name):
        return "service.available" in __salt__ and bool(__salt__["service.available"](name))

    def state(name):
        found = {
            "active": bool(__salt__["service.status"](name)),
            "enabled": bool(__salt__["service.enabled"](name)),
        }
        __context__.pop("retcode", None)  # "not enabled" exits non-zero: an answer
        return found

    def service(action, name):
        try:
            return bool(__salt__[f"service.{action}"](name))
        except CommandExecutionError as err:
            raise bootstrapping.BootstrapError(f"service.{action} {name}: {err}") from err

    return bootstrapping.World(
        health=health_of,
        take_checkpoint=take,
        restore_checkpoint=restore,
        service_available=available,
        service_state=state,
        service=service,
        salt_call=_salt_call,
        ports_open=_ports_open,
        master_key_cache=_master_key_cache(),
    )


def _master_key_cache():
    pki_dir = __opts__.get("pki_dir")
    return os.path.join(pki_dir, bootstrapping.MASTER_KEY_CACHE) if pki_dir else None


def _salt_call_command():
    beside = os.path.join(os.path.dirname(sys.executable), "salt-call")
    return beside if os.access(beside, os.X_OK) else (shutil.which("salt-call") or "salt-call")


def _salt_call(args, timeout):
    """
    Run salt-call against the master, with this minion's config (and so the new drop-in):
    the bootstrap itself runs with --local. ``{retcode, data, stderr}``.
    """
    argv = [
        _salt_call_command(),
        "-c",
        os.path.dirname(__opts__["conf_file"]),
        "--out=json",
        "--retcode-passthrough",
        "--log-level=error",
        *args,
    ]
    # Not cmd.run_all: the bootstrap may run before this minion's own config is usable.
    done = commands.run(argv, timeout=timeout)
    if done.error is not None:
        return {"retcode": done.returncode, "data": None, "stderr": done.error}
    try:
        data = json.loads(done.stdout).get("local") if done.stdout.strip() else None
    except (ValueError, AttributeError):
        data = None
    return {"retcode": done.returncode, "data": data, "stderr": done.stderr}


def _ports_open(host, ports):
    for port in ports:
        try:
            with socket.create_connection((host, port), timeout=2):
                pass
        except OSError:
            return False
    return True


def _checkpoint_store():
    return os.path.join(__opts__["cachedir"], "eos", "checkpoints")


def _config_dir():
    value = _layers().get("config_dir", default=checkpoints_store.DEFAULT_CONFIG_DIR)
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
    """
    {name: {active, enabled}} of the services the role states may manage on this host.

    None when ``eos:manage_software`` is false: the role states then touch no service. Roles
    are placed after the checkpoint is taken, so every role's services count, not only the
    node's present roles: a join that starts a new role's service can then stop it again.
    """
    if "service.available" not in __salt__ or not __salt__["config.get"](
        "eos:manage_software", True
    ):
        return {}
    defaults = roledefaults.load(ROLE_DEFAULTS)
    names = checkpoints_store.role_services(
        defaults,
        __grains__.get("os_family"),
        # Pillar only, as the role states read it (roles/map.jinja).
        (__pillar__.get("eos") or {}).get("role_config") or {},
    )
    found = checkpoints_store.service_states(
        names,
        available=__salt__["service.available"],
        active=__salt__["service.status"],
        enabled=__salt__["service.enabled"],
    )
    # Asking whether a service is enabled runs commands that exit non-zero for "no"; their
    # exit code is an answer, not a failure of this job.
    __context__.pop("retcode", None)
    for name in checkpoints_store.unknown_services(found):
        log.warning("eos_cluster.checkpoint: state of %s unknown: %s", name, found[name]["unknown"])
    return found


def _restore_services(saved):
    done = {}
    for name, wanted in sorted(saved.items()):
        if wanted.get("unknown"):
            done[name] = f"left alone: state unknown at the checkpoint ({wanted['unknown']})"
            continue
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
    run = commands.via_salt(
        __salt__["cmd.run_all"], output_loglevel="quiet", timeout=health.COMMAND_TIMEOUT
    )
    return health.World(run=run)
