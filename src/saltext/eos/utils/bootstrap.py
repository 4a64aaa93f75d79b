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

import contextlib
import hashlib
import ipaddress
import logging
import os
import re
import time
from dataclasses import dataclass
from dataclasses import field

import salt.utils.yaml

from saltext.eos.utils import atomic
from saltext.eos.utils import checkpoint as checkpoints
from saltext.eos.utils import config
from saltext.eos.utils import nodeid
from saltext.eos.utils.health import RET_PORT

log = logging.getLogger(__name__)

MODES = ("single", "join", "discover")
DROP_IN = "eos.conf"
DROP_IN_PATTERNS = ("eos*.conf",)
MINION_SERVICE = "salt-minion"
MASTER_SERVICE = "salt-master"
SINGLE_MASTER = "127.0.0.1"
PUBLISH_PORT = 4505  # the master's default
# The key of the SSDP answer's mapping that marks an EOS master and names its cluster.
CLUSTER_KEY = "eos_cluster"
DEFAULT_CLUSTER = "eos"
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
JOIN_STATE = "eos.roles"
STARTUP_SLS = "eos.roles"
FILE_MODE = 0o644
# What a bootstrap did, kept in the minion drop-in (a key of its own, which Salt ignores).
RECORD_KEY = "eos_bootstrap"
# The key of an SSDP answer's mapping where a master may announce its key's fingerprint.
FINGER_KEY = "eos_master_finger"
# Where a minion caches the key of the master it authenticated with (in its pki_dir).
MASTER_KEY_CACHE = "minion_master.pub"
DEFAULT_HASH_TYPE = "sha256"
# What salt.crypt.AsyncAuth._finger_fail logs before the minion (or salt-call) exits 42.
FINGER_FAIL = re.compile(
    r"fingerprint in the master configuration file:\s*(?P<expected>[0-9A-Fa-f:]*)\s*"
    r"Does not match the authenticating master's key:\s*(?P<presented>[0-9A-Fa-f:]*)"
)

# The master configuration EOS needs: the README's "Master configuration" block is this data
# (a unit test compares them), and single mode writes it into master.d/eos.conf.
NODE_JOIN = "salt://eos/reactor/node_join.sls"
MASTER_BLOCK = {
    "fileserver_backend": ["roots", "eos"],
    "ext_pillar": [{"eos": {}}],
    "reactor": [
        {"salt/auth": [NODE_JOIN]},
        {"eos/cluster/register": [NODE_JOIN]},
        {"eos/cluster/node/*/accepted": [NODE_JOIN]},
        {
            "salt/beacon/*/eos_storage/*": [
                "salt://eos/reactor/storage_threshold.sls",
                "salt://eos/reactor/storage_rebalance.sls",
            ]
        },
    ],
}

DEFAULTS = {
    "restart": True,  # true: service manager; false: the daemons are restarted by others
    "timeout": 900,  # seconds to wait for the node to become active or failed
    "poll_interval": 5,  # seconds between two looks at the node's status
    "call_timeout": 60,  # seconds for one salt-call (register, pillar.get)
    "master_wait": 60,  # seconds for a restarted master to open its ports
    "cluster": None,  # single: the cluster name announced; discover: the name looked for
    "master_config_dir": None,  # default: master.d beside the minion config file
    "startup_state": True,  # minion.d/eos.conf applies eos.roles at every minion start
}


class BootstrapError(Exception):
    """A bootstrap that cannot be planned; the message says what and why."""


class InvalidRequest(BootstrapError):
    """Bad input (mode, address, port, setting): nothing was changed."""


class StepFailed(BootstrapError):
    """A step failed; ``step`` names it."""

    def __init__(self, step, message, keep_config=False):
        super().__init__(message)
        self.step = step
        # The master already knows the node and owns its join: undoing the local config would
        # cut the node off from the retry (salt-run eos_cluster.accept).
        self.keep_config = keep_config


# --- settings and input --------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    restart_minion: object  # a service name, or None: not restarted here
    restart_master: object
    timeout: float
    poll_interval: float
    call_timeout: float
    master_wait: float
    cluster: object
    master_config_dir: object
    startup_state: bool


def settings(layers):
    """Validated ``eos:bootstrap`` settings from ``config.Layers``."""
    values = {
        name: layers.get("bootstrap", name, default=value) for name, value in DEFAULTS.items()
    }
    key = config.key_name
    minion_service, master_service = _restart(values["restart"])
    numbers = {
        name: positive(values[name], key("bootstrap", name))
        for name in ("timeout", "poll_interval", "call_timeout", "master_wait")
    }
    cluster = values["cluster"]
    if cluster is not None:
        cluster = check_cluster(cluster, key("bootstrap", "cluster"))
    directory = values["master_config_dir"]
    if directory is not None and (not isinstance(directory, str) or not os.path.isabs(directory)):
        raise InvalidRequest(
            f"{key('bootstrap', 'master_config_dir')}: {directory!r} is not an absolute path"
        )
    if not isinstance(values["startup_state"], bool):
        raise InvalidRequest(
            f"{key('bootstrap', 'startup_state')}: {values['startup_state']!r} is not true or false"
        )
    return Settings(
        restart_minion=minion_service,
        restart_master=master_service,
        cluster=cluster,
        master_config_dir=directory,
        startup_state=values["startup_state"],
        **numbers,
    )


def positive(value, where):
    try:
        return config.number(value, where, minimum=0, minimum_inclusive=False)
    except config.InvalidConfig as err:
        raise InvalidRequest(str(err)) from err


def _restart(value):
    """(minion service, master service) from ``eos:bootstrap:restart``; None: not restarted."""
    where = config.key_name("bootstrap", "restart")
    if value is True:
        return MINION_SERVICE, MASTER_SERVICE
    if value is False or value is None:
        return None, None
    if isinstance(value, dict):
        unknown = set(value) - {"minion", "master"}
        if unknown:
            raise InvalidRequest(f"{where}: unknown key(s) {sorted(unknown)}; use minion, master")
        services = []
        for name, default in (("minion", MINION_SERVICE), ("master", MASTER_SERVICE)):
            service = value.get(name, default)
            if service is False or service is None:
                services.append(None)
            elif isinstance(service, str) and re.fullmatch(r"[A-Za-z0-9@_.:-]{1,200}", service):
                services.append(service)
            else:
                raise InvalidRequest(f"{where}:{name}: {service!r} is not a service name or false")
        return tuple(services)
    raise InvalidRequest(
        f"{where}: {value!r} must be true, false or {{minion: <service>, master: <service>}}"
    )


def check_mode(mode):
    if mode not in MODES:
        raise InvalidRequest(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    return mode


def check_cluster(name, where="cluster"):
    if not isinstance(name, str) or not CLUSTER_NAME.fullmatch(name):
        raise InvalidRequest(
            f"{where}: {name!r} is not a cluster name (1-63 letters, digits, '_', '.', '-')"
        )
    return name


def check_master_finger(finger, hash_type=DEFAULT_HASH_TYPE, where="master_finger"):
    """
    ``finger`` as Salt writes a key fingerprint (``salt-key -F master``: lower-case hex byte
    pairs joined by ``:``, as many as ``hash_type``'s digest has); InvalidRequest naming the
    value and the expected form otherwise. Upper case and missing colons are accepted.
    """
    try:
        size = hashlib.new(hash_type).digest_size
    except (TypeError, ValueError) as err:
        raise InvalidRequest(f"hash_type: {hash_type!r} is not a hash Salt can use") from err
    text = finger.strip().lower() if isinstance(finger, str) else None
    digits = text.replace(":", "") if text else ""
    well_formed = text and (
        re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2})*", text) or re.fullmatch(r"[0-9a-f]+", text)
    )
    if not well_formed or len(digits) % 2:
        raise InvalidRequest(
            f"{where}: {finger!r} is not a key fingerprint as `salt-key -F master` prints it "
            f"({size} hex byte pairs joined by ':', for hash_type {hash_type})"
        )
    if len(digits) != 2 * size:
        raise InvalidRequest(
            f"{where}: {finger!r} has {len(digits) // 2} bytes, but a {hash_type} fingerprint "
            f"has {size}: print it on the master with this minion's hash_type ({hash_type})"
        )
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def check_minion_id(minion_id, where="minion_id"):
    """
    ``minion_id`` when the master's registry will take it (the node id rule of
    ``saltext.eos.utils.nodeid``); InvalidRequest naming the id and the character otherwise.
    """
    reason = nodeid.problem(minion_id)
    if reason is not None:
        raise InvalidRequest(f"{where}: {reason}")
    return minion_id


def node_id(req, current_id):
    """
    The id the node will register under: ``minion_id`` of the request, else the minion's own
    id, which must follow the rule too (the master would refuse it after the bootstrap).
    """
    if req.minion_id is not None:
        return req.minion_id
    return check_minion_id(current_id, "this minion's id (set minion_id=<id> to change it)")


def check_port(port, where="port"):
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidRequest(f"{where}: {port!r} is not a TCP port (1-65535)")
    return port


def parse_address(text, port=None):
    """
    ``(host, port)`` from ``10.0.0.5``, ``salt.example.com``, ``10.0.0.5:4506``,
    ``[fd00::5]:4506`` or ``fd00::5``; ``port`` (an int or None) when the text names none.
    Anything else is InvalidRequest naming the address.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest(f"master: {text!r} is not an address or host name")
    text = text.strip()
    host, given = text, None
    bracketed = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?", text)
    if bracketed:
        host, given = bracketed.group(1), bracketed.group(2)
    elif text.count(":") == 1:
        host, given = text.split(":")
    if given is not None and not given.isdigit():
        raise InvalidRequest(f"master: {text!r} is not an IP address or host name")
    if given is not None:
        if port is not None and int(given) != int(port):
            raise InvalidRequest(f"master: {text!r} names port {given}, but port={port} was given")
        port = check_port(given, "master")
    elif port is not None:
        port = check_port(port)
    if not _is_ip(host) and not (HOST_NAME.fullmatch(host) and not _looks_numeric(host)):
        raise InvalidRequest(f"master: {text!r} is not an IP address or host name")
    return host, port


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _looks_numeric(text):
    # 10.0.0.300 or 10.0.5 are malformed addresses, not host names.
    return bool(re.fullmatch(r"[0-9.]+", text))


@dataclass(frozen=True)
class Request:
    """What the caller asked for, checked."""

    mode: str
    master: object = None  # host or address; None until discovered (discover mode)
    port: object = None  # the master's return port when not the default
    publish_port: object = None
    cluster: object = None
    minion_id: object = None
    master_finger: object = None  # the fingerprint of the master's key, Salt's master_finger

    def target(self):
        return self.master, self.port or RET_PORT, self.publish_port or PUBLISH_PORT


def request(
    mode,
    master=None,
    port=None,
    publish_port=None,
    cluster=None,
    minion_id=None,
    master_finger=None,
    hash_type=DEFAULT_HASH_TYPE,
):
    """A checked Request, or InvalidRequest naming the bad argument."""
    check_mode(mode)
    if master_finger is not None:
        if mode == "single":
            raise InvalidRequest(
                "mode single makes this host the master, and its minion trusts the key of the "
                "master beside it: drop master_finger=, or use mode=join"
            )
        master_finger = check_master_finger(master_finger, hash_type)
    if cluster is not None:
        cluster = check_cluster(cluster)
    if publish_port is not None:
        publish_port = check_port(publish_port, "publish_port")
    if minion_id is not None:
        minion_id = check_minion_id(minion_id, "minion_id")
    if mode == "join":
        if master is None:
            raise InvalidRequest("mode join needs master=<address> (or use mode=discover)")
        master, port = parse_address(master, port)
    elif master is not None:
        if mode == "discover":
            raise InvalidRequest("mode discover finds the master itself: drop master= or use join")
        # The minion of a one-node cluster talks to the master beside it; another address
        # would leave the new master unused and register the node elsewhere.
        raise InvalidRequest(
            f"mode single makes this host the master (its minion uses {SINGLE_MASTER}): "
            "drop master=, or use mode=join to join another master"
        )
    elif port is not None:
        port = check_port(port)
    return Request(mode, master, port, publish_port, cluster, minion_id, master_finger)


# --- where the config lives ----------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    minion_conf: str
    minion_dir: str
    master_conf: str
    master_dir: str

    @property
    def minion_drop_in(self):
        return os.path.join(self.minion_dir, DROP_IN)

    @property
    def master_drop_in(self):
        return os.path.join(self.master_dir, DROP_IN)

    def trees(self):
        """What a bootstrap checkpoint saves: EOS's drop-ins of both daemons."""
        found = [checkpoints.Tree(self.minion_dir, DROP_IN_PATTERNS)]
        if self.master_dir != self.minion_dir:
            found.append(checkpoints.Tree(self.master_dir, DROP_IN_PATTERNS))
        return found


def paths(conf_file, default_include="minion.d/*.conf", master_config_dir=None):
    """The drop-in directories: minion.d beside the minion config, master.d beside it too."""
    base = os.path.dirname(os.path.abspath(conf_file))
    minion_dir = os.path.join(base, os.path.dirname(default_include) or "minion.d")
    master_dir = master_config_dir or os.path.join(base, "master.d")
    return Paths(
        minion_conf=os.path.abspath(conf_file),
        minion_dir=minion_dir,
        master_conf=os.path.join(os.path.dirname(master_dir), "master"),
        master_dir=master_dir,
    )


# --- the drop-ins --------------------------------------------------------------------------------

HEADER = (
    "# Written by eos_cluster.bootstrap (mode {mode}). EOS keeps its {daemon} settings in this\n"
    "# drop-in and never edits the main config file; the next bootstrap replaces it, and a\n"
    "# failed bootstrap restores what was here before.\n"
)


def dump(data, mode, daemon):
    body = salt.utils.yaml.safe_dump(data, default_flow_style=False, sort_keys=False)
    return HEADER.format(mode=mode, daemon=daemon) + body


def master_settings(cluster, join_state=JOIN_STATE):
    """The single-mode master drop-in as data: MASTER_BLOCK, discovery and eos:join:state."""
    data = {
        key: [dict(item) if isinstance(item, dict) else item for item in value]
        for key, value in MASTER_BLOCK.items()
    }
    data["discovery"] = {"mapping": {CLUSTER_KEY: cluster}}
    if join_state is not None:
        data["eos"] = {"join": {"state": join_state}}
    return data


def minion_settings(req, minion_id, startup_state=False):
    """The minion drop-in as data: master, id, ports, startup state and what was bootstrapped."""
    data = {"master": req.master, "id": minion_id}
    if req.port is not None:
        data["master_port"] = req.port
    if req.publish_port is not None:
        data["publish_port"] = req.publish_port
    if req.master_finger is not None:
        # Salt's own option: salt-minion and salt-call refuse a master with another key.
        data["master_finger"] = req.master_finger
    if startup_state:
        data["startup_states"] = "sls"
        data["sls_list"] = [STARTUP_SLS]
    # Not under ``eos``: Salt lays a drop-in over the main config file key by key, so an
    # ``eos`` mapping here would hide the node's own ``eos`` settings. Salt ignores this key.
    data[RECORD_KEY] = {
        "mode": req.mode,
        "master": req.master,
        "port": req.port,
        "cluster": req.cluster,
    }
    if req.master_finger is not None:
        data[RECORD_KEY]["master_finger"] = req.master_finger
    return data


def render_master(cluster, join_state=JOIN_STATE):
    return dump(master_settings(cluster, join_state), "single", "salt-master")


def render_minion(req, minion_id, startup_state=False):
    return dump(minion_settings(req, minion_id, startup_state), req.mode, "salt-minion")


def recorded(text):
    """The record of an existing minion drop-in: what an earlier bootstrap did, or None."""
    if not text:
        return None
    try:
        data = salt.utils.yaml.safe_load(text) or {}
    except salt.utils.yaml.YAMLError:
        return None
    record = data.get(RECORD_KEY) if isinstance(data, dict) else None
    return record if isinstance(record, dict) else None


def already_done(req, text):
    """True when the minion drop-in says this node was bootstrapped the way ``req`` asks."""
    record = recorded(text)
    if not record or record.get("mode") != req.mode:
        return False
    if record.get("master_finger") != req.master_finger:
        return False
    if req.mode == "join":
        return record.get("master") == req.master and record.get("port") == req.port
    if req.mode == "discover":
        return req.cluster is None or record.get("cluster") == req.cluster
    return True


def read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def load_yaml_files(files):
    """The merged top-level mappings of YAML config files that exist (later files win)."""
    merged = {}
    for path in files:
        text = read_text(path)
        if not text:
            continue
        try:
            data = salt.utils.yaml.safe_load(text)
        except salt.utils.yaml.YAMLError as err:
            raise InvalidRequest(f"{path}: not valid YAML: {err}") from err
        if isinstance(data, dict):
            merged.update(data)
    return merged


def site_join_state(p):
    """``eos:join:state`` as the master's own config (not EOS's drop-in) sets it, or None."""
    others = []
    if os.path.isdir(p.master_dir):
        others = sorted(
            os.path.join(p.master_dir, name)
            for name in os.listdir(p.master_dir)
            if name.endswith(".conf") and not name.startswith("eos")
        )
    data = load_yaml_files([p.master_conf, *others])
    return ((data.get("eos") or {}).get("join") or {}).get("state")


def hidden_master_keys(p, join_state=JOIN_STATE):
    """
    Keys of the main master config file that the single-mode drop-in would hide.

    Salt lays each drop-in over the main file key by key, replacing a key's whole value (it
    merges drop-ins with each other list by list and mapping by mapping, but not with the main
    file). A ``reactor`` list or an ``eos`` mapping in the main file would silently disappear.
    """
    main = load_yaml_files([p.master_conf])
    keys = set(master_settings(DEFAULT_CLUSTER, join_state))
    return sorted(key for key in keys if key in main)


def site_startup_states(p):
    """The ``startup_states`` the minion's own config sets (main file and non-EOS drop-ins)."""
    others = []
    if os.path.isdir(p.minion_dir):
        others = sorted(
            os.path.join(p.minion_dir, name)
            for name in os.listdir(p.minion_dir)
            if name.endswith(".conf") and not name.startswith("eos")
        )
    return load_yaml_files([p.minion_conf, *others]).get("startup_states")


def write_atomically(path, text, created_dirs=None):
    """Replace ``path`` with ``text`` so a daemon reading it sees the old file or the new one."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o755)
        if created_dirs is not None:
            created_dirs.append(directory)
    atomic.write_file(path, text, FILE_MODE)


# --- discovery -----------------------------------------------------------------------------------

DISCOVERY_DEFAULTS = {"port": 4520, "attempts": 3, "pause": 5, "match": "any", "mapping": {}}


def discovery_options(value):
    """The minion ``discovery`` option with Salt's defaults (False/None: the defaults)."""
    options = dict(DISCOVERY_DEFAULTS)
    if isinstance(value, dict):
        options.update({k: v for k, v in value.items() if k in DISCOVERY_DEFAULTS})
    options["port"] = check_port(options["port"], "discovery:port")
    for name in ("attempts", "pause"):
        number = options[name]
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
            raise InvalidRequest(f"discovery:{name}: {number!r} is not a number >= 0")
    options["attempts"] = max(1, int(options["attempts"]))
    if options["match"] not in ("any", "all"):
        raise InvalidRequest(f"discovery:match: {options['match']!r} is not 'any' or 'all'")
    if not isinstance(options["mapping"], dict):
        raise InvalidRequest(f"discovery:mapping: {options['mapping']!r} is not a mapping")
    return options


def candidates(answers):
    """
    The EOS masters in SSDP answers ``{(address, port): [answer, ...]}``: one entry per
    address and cluster, ``{address, advertised, cluster, mapping}``, sorted. ``address`` is
    the one that answered (reachable from here); ``advertised`` what the master said it is.
    """
    found = {}
    for (address, _), replies in answers.items():
        for reply in replies:
            if not isinstance(reply, dict):
                continue
            mapping = reply.get("mapping") or {}
            if not isinstance(mapping, dict) or CLUSTER_KEY not in mapping:
                continue
            cluster = str(mapping[CLUSTER_KEY])
            found[(address, cluster)] = {
                "address": address,
                "advertised": reply.get("master"),
                "cluster": cluster,
                "mapping": mapping,
                "finger": _announced_finger(mapping.get(FINGER_KEY)),
            }
    return [found[key] for key in sorted(found)]


def _announced_finger(value):
    """The fingerprint an SSDP answer announces, in Salt's form when it is one; else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    digits = value.strip().lower().replace(":", "")
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def pinned(found, finger):
    """
    The candidates that may hold the key ``finger``: those announcing that fingerprint when
    any does; else those announcing none (their key is checked once the minion connects).
    StepFailed('discover') naming every fingerprint when each candidate announces another.

    An SSDP answer is not authenticated, so this only chooses: the minion's own check of
    ``master_finger`` is what refuses a master with another key.
    """
    if finger is None or not found:
        return found
    announcing = [entry for entry in found if entry.get("finger") == finger]
    if announcing:
        return announcing
    silent = [entry for entry in found if not entry.get("finger")]
    if silent:
        return silent
    listed = ", ".join(f"{entry['address']} announces {entry['finger']}" for entry in found)
    raise StepFailed(
        "discover",
        f"no EOS master that answered SSDP discovery has the key master_finger {finger}: "
        f"{listed}; nothing was changed",
    )


def matching(found, cluster=None, mapping=None, match="any"):
    """The candidates of ``cluster`` that also match the minion's discovery mapping."""
    kept = []
    for entry in found:
        if cluster is not None and entry["cluster"] != cluster:
            continue
        if mapping:
            hits = sum(1 for key, value in mapping.items() if entry["mapping"].get(key) == value)
            if (match == "all" and hits != len(mapping)) or (match == "any" and not hits):
                continue
        kept.append(entry)
    return kept


def choose(found, cluster=None):
    """The one master to join, or StepFailed('discover') saying why not."""
    wanted = f" of cluster {cluster!r}" if cluster else ""
    if not found:
        raise StepFailed(
            "discover",
            f"no EOS master{wanted} answered SSDP discovery on this network (is the master's "
            "'discovery' option set, UDP port open, and this host on the same broadcast "
            "domain?); give master=<address> with mode=join",
        )
    addresses = sorted({entry["address"] for entry in found})
    if len(addresses) > 1:
        listed = ", ".join(f"{e['address']} (cluster {e['cluster']})" for e in found)
        raise StepFailed(
            "discover",
            f"{len(addresses)} EOS masters{wanted} answered: {listed}; choose one with "
            "mode=join master=<address>, or name the cluster with cluster=<name>",
        )
    return found[0]


# --- the plan ------------------------------------------------------------------------------------


@dataclass
class Step:
    """One step of a bootstrap: its name, what it does, and what it changes."""

    name: str
    action: str
    changes: dict = field(default_factory=dict)
    payload: object = None  # what the step needs to run (file text, service name...)

    def as_dict(self):
        return {"step": self.name, "action": self.action, "changes": self.changes}


def _file_change(path, old, new):
    if old is None:
        return {"file": path, "change": "created"}
    if old == new:
        return {"file": path, "change": "unchanged"}
    return {"file": path, "change": "replaced"}


def plan(req, minion_id, p, settings_, current, join_state=JOIN_STATE, startup_state=True):
    """
    The steps of a bootstrap. ``current``: ``{path: text or None}`` of the drop-ins now.
    ``req.master`` must be known (discover has run).
    """
    host, port, _ = req.target()
    if req.mode == "single":
        checks = "pre-join health checks of this host (the master checks wait for its master)"
    else:
        ports = f"ports {req.publish_port}, {port}" if req.publish_port else f"port {port}"
        checks = f"pre-join health checks against {host} ({ports})"
    steps = [Step("health", checks)]
    steps.append(
        Step(
            "checkpoint",
            "checkpoint EOS's drop-ins and the salt-master/salt-minion service states",
            {"trees": [tree.directory for tree in p.trees()]},
        )
    )
    if req.mode == "single":
        text = render_master(req.cluster or DEFAULT_CLUSTER, join_state)
        steps.append(
            Step(
                "master_config",
                f"write {p.master_drop_in}: EOS's master block, discovery announcing cluster "
                f"{req.cluster or DEFAULT_CLUSTER!r}"
                + (f", eos:join:state {join_state}" if join_state else ""),
                _file_change(p.master_drop_in, current.get(p.master_drop_in), text),
                text,
            )
        )
    text = render_minion(req, minion_id)
    steps.append(
        Step(
            "minion_config",
            f"write {p.minion_drop_in}: master {host}"
            + (f" port {req.port}" if req.port else "")
            + f", id {minion_id}"
            + (f", master_finger {req.master_finger}" if req.master_finger else ""),
            _file_change(p.minion_drop_in, current.get(p.minion_drop_in), text),
            text,
        )
    )
    if req.mode == "single":
        steps.append(_restart_step("restart_master", settings_.restart_master, "salt-master"))
    steps.append(_restart_step("restart_minion", settings_.restart_minion, "salt-minion"))
    steps.append(
        Step("register", f"salt-call eos_cluster.register: send this node's registration to {host}")
    )
    steps.append(
        Step(
            "wait",
            f"wait up to {settings_.timeout:g} s for the master to mark {minion_id} active or "
            "failed (pillar eos:node_status)",
        )
    )
    if startup_state:
        final = render_minion(req, minion_id, startup_state=True)
        steps.append(
            Step(
                "startup_state",
                f"add startup_states sls {STARTUP_SLS} to {p.minion_drop_in}: the node "
                "re-applies its roles at every minion start",
                {"file": p.minion_drop_in, "change": "replaced"},
                final,
            )
        )
    return steps


def _restart_step(name, service, daemon):
    if service is None:
        return Step(
            name,
            f"{daemon} is not restarted here (eos:bootstrap:restart): restart it yourself so "
            "it reads the new drop-in",
            {"service": None, "change": "none"},
        )
    return Step(
        name,
        f"service.restart {service}",
        {"service": service, "change": "restarted"},
        service,
    )


# --- the world the bootstrap acts on -------------------------------------------------------------


@dataclass
class World:
    """The Salt side; every callable raises or returns plainly."""

    health: object  # health(req) -> {passed, checks}
    take_checkpoint: object  # take_checkpoint(label, trees, services) -> summary
    restore_checkpoint: object  # restore_checkpoint(checkpoint_id) -> {restored, removed, ...}
    service_available: object  # (name) -> bool
    service_state: object  # (name) -> {active, enabled}
    service: object  # service(action, name) -> bool; action: restart, start, stop, enable...
    salt_call: object  # salt_call(args, timeout) -> {retcode, data, stderr}
    ports_open: object  # ports_open(host, ports) -> bool
    clock: object = time.monotonic
    sleep: object = time.sleep
    # The minion's cached master key (pki_dir/minion_master.pub); None: not looked after.
    master_key_cache: object = None


def failed_checks(report, mode):
    """The failed critical checks; in single mode the master checks do not apply yet."""
    skipped = ("master_reachable", "minion_configured") if mode == "single" else ()
    return [
        check
        for check in report["checks"]
        if check["critical"] and not check["passed"] and check["name"] not in skipped
    ]


@dataclass
class Bootstrap:
    """Carries out a plan: checkpoint, steps, and the rollback when a step fails."""

    world: World
    settings: Settings
    paths: Paths
    req: Request
    minion_id: str
    progress: list = field(default_factory=list)
    restarted: list = field(default_factory=list)
    created_dirs: list = field(default_factory=list)
    checkpoint_id: object = None
    outcome: dict = field(default_factory=dict)
    services_before: dict = field(default_factory=dict)
    started_at: object = None
    master_key_cached_before: bool = True

    def run(self, steps):
        """{result, done, failed_step, error, rollback, checkpoint, outcome, progress}."""
        self.started_at = self.world.clock()
        cache = self.world.master_key_cache
        self.master_key_cached_before = cache is None or os.path.exists(cache)
        done = []
        for step in steps:
            try:
                note = getattr(self, f"_{step.name}")(step)
            except StepFailed as err:
                return self._failed(step.name, str(err), done, keep_config=err.keep_config)
            except (OSError, checkpoints.CheckpointError, BootstrapError) as err:
                return self._failed(step.name, str(err), done)
            done.append({"step": step.name, "result": note or "done"})
            log.info("eos bootstrap: step %s: %s", step.name, note or "done")
        return {
            "result": True,
            "done": done,
            "checkpoint": self.checkpoint_id,
            "outcome": self.outcome,
            "progress": self.progress,
        }

    def _failed(self, step, error, done, keep_config=False):
        log.error("eos bootstrap: step %s failed: %s", step, error)
        if keep_config:
            rollback = {"done": False, "reason": "the master knows this node and owns its join"}
        elif self.checkpoint_id:
            rollback = self.rollback()
        else:
            rollback = {"done": False, "reason": "nothing was changed"}
        return {
            "result": False,
            "failed_step": step,
            "error": error,
            "done": done,
            "checkpoint": self.checkpoint_id,
            "rollback": rollback,
            "outcome": self.outcome,
            "progress": self.progress,
        }

    # --- steps (each returns a short note) --------------------------------------------------

    def _health(self, step):
        report = self.world.health(self.req)
        failed = failed_checks(report, self.req.mode)
        self.outcome["health"] = report
        if failed:
            listed = "; ".join(f"{c['name']}: {c['detail']}" for c in failed)
            raise StepFailed("health", f"critical health checks failed: {listed}")
        return "passed"

    def _checkpoint(self, step):
        services = {}
        for name in (self.settings.restart_minion, self.settings.restart_master):
            if name and name not in services and self.world.service_available(name):
                services[name] = self.world.service_state(name)
        summary = self.world.take_checkpoint(
            f"bootstrap-{self.req.mode}", self.paths.trees(), services
        )
        self.services_before = services
        self.checkpoint_id = summary["id"]
        return summary["id"]

    def _master_config(self, step):
        write_atomically(self.paths.master_drop_in, step.payload, self.created_dirs)
        return step.changes["change"]

    def _minion_config(self, step):
        write_atomically(self.paths.minion_drop_in, step.payload, self.created_dirs)
        return step.changes["change"]

    def _restart_master(self, step):
        note = self._restart(step)
        host, port, publish = self.req.target()
        deadline = self.world.clock() + self.settings.master_wait
        while not self.world.ports_open(host, (publish, port)):
            if self.world.clock() >= deadline:
                raise StepFailed(
                    step.name,
                    f"salt-master does not answer on {host} ports {publish} and {port} "
                    f"{self.settings.master_wait:g} s after the new config",
                )
            self.world.sleep(1)
        return note

    def _restart_minion(self, step):
        return self._restart(step)

    def _restart(self, step):
        service = step.payload
        if service is None:
            return "skipped (eos:bootstrap:restart)"
        # Counted before the call: a failed restart may have stopped the daemon.
        self.restarted.append(service)
        if not self.world.service("restart", service):
            raise StepFailed(step.name, f"service.restart {service} failed")
        return f"restarted {service}"

    def _register(self, step):
        # Until the master accepts this minion's Salt key (eos:accept auto does so as soon as
        # the key is pending), salt-call cannot authenticate: try again for call_timeout.
        deadline = self.world.clock() + self.settings.call_timeout
        while True:
            answer = self.world.salt_call(["eos_cluster.register"], self.settings.call_timeout)
            self.check_master_key(step.name, answer)
            data = answer["data"]
            if answer["retcode"] == 0 and isinstance(data, dict) and data.get("sent"):
                return "sent"
            reason = salt_call_error(answer)
            if self.world.clock() + self.settings.poll_interval > deadline:
                break
            self.world.sleep(self.settings.poll_interval)
        # A key waiting for an operator (eos:accept manual) cannot send anything yet; the
        # master's join asks the node to register again once it is accepted.
        self.note(f"registration not sent yet: {reason}")
        return f"not sent yet ({reason}); the master's join registers the node again"

    def _wait(self, step):
        def check(answer):
            self.check_master_key(step.name, answer)

        outcome = wait_for_status(self.world, self.settings, self.minion_id, self.note, check)
        self.outcome.update(outcome)
        status, node = outcome["status"], self.minion_id
        if status == "active":
            return f"active, roles {', '.join(outcome['roles']) or 'none'}"
        if status == "failed":
            raise StepFailed(
                "wait",
                f"the master marked {node} failed and rolled its join back (salt-run "
                f"eos_join.status {node} says why); this node stays pointed at the master: fix "
                f"the cause, then salt-run eos_cluster.accept {node} retries",
                keep_config=True,
            )
        if status is not None:
            hint = (
                f"accept it on the master: salt-run eos_cluster.accept {node}"
                if status == "pending"
                else f"its join is still running: salt-run eos_join.status {node}"
            )
            raise StepFailed(
                "wait",
                f"{node} is {status}, not active, after {self.settings.timeout:g} s; the master "
                f"knows it, so this node stays pointed at the master: {hint}",
                keep_config=True,
            )
        raise StepFailed(
            "wait",
            f"the master gave no status for {node} within {self.settings.timeout:g} s (is its "
            f"Salt key accepted? salt-run eos_cluster.pending on the master)",
        )

    def _startup_state(self, step):
        write_atomically(self.paths.minion_drop_in, step.payload, self.created_dirs)
        return f"startup_states sls {STARTUP_SLS} (from the next minion start)"

    def check_master_key(self, step_name, answer):
        """StepFailed naming both fingerprints when salt-call refused the master's key."""
        refused = master_key_refusal(answer)
        if refused is None:
            return
        host = self.req.master
        expected = refused["expected"] or self.req.master_finger
        presented = refused["presented"] or "(not shown)"
        raise StepFailed(
            step_name,
            f"the master at {host} presents a key with fingerprint {presented}, not "
            f"master_finger {expected}: it is not the master to join (check `salt-key -F "
            f"master` there, and which host answers at {host}); refused",
        )

    def note(self, text):
        """A progress line: logged at info and returned in ``progress``."""
        if self.started_at is None:
            self.started_at = self.world.clock()
        elapsed = round(self.world.clock() - self.started_at, 1)
        self.progress.append({"after_seconds": elapsed, "status": text})
        log.info("eos bootstrap: %s", text)

    # --- rollback -----------------------------------------------------------------------------

    def rollback(self):
        """Restore the drop-ins, then the daemons that were restarted on the restored config."""
        report = {"done": True, "checkpoint": self.checkpoint_id}
        try:
            report["files"] = self.world.restore_checkpoint(self.checkpoint_id)
        except (OSError, checkpoints.CheckpointError) as err:
            report["files"] = {"error": str(err)}
        for directory in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                os.rmdir(directory)  # only when empty
        forgotten = self._forget_master_key()
        if forgotten:
            report["master_key"] = forgotten
        report["services"] = self._restore_services()
        log.warning("eos bootstrap: rolled back to checkpoint %s: %s", self.checkpoint_id, report)
        return report

    def _forget_master_key(self):
        """
        Remove the master key the minion cached during the bootstrap: kept, it would make the
        minion refuse the master of the restored config ("the master key has changed").
        """
        cache = self.world.master_key_cache
        if self.master_key_cached_before or not os.path.exists(cache):
            return None
        try:
            os.remove(cache)
        except OSError as err:
            return f"{cache}: cached during the bootstrap, not removed: {err}"
        return f"{cache}: cached during the bootstrap, removed"

    def _restore_services(self):
        done = {}
        for name in self.restarted:
            before = self.services_before.get(name)
            try:
                if before is None or before.get("active"):
                    ok = self.world.service("restart", name)
                    done[name] = "restarted on the restored config" if ok else "failed: restart"
                else:
                    ok = self.world.service("stop", name)
                    done[name] = "stopped (was not running)" if ok else "failed: stop"
            except Exception as err:  # pylint: disable=broad-except
                done[name] = f"failed: {err}"
        return done


def salt_call_error(answer):
    """The line of a failed salt-call that says why (its ERROR line, else its last line)."""
    lines = [line.strip() for line in (answer.get("stderr") or "").splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "rror:" in line]
    if errors:
        return errors[-1]
    return lines[-1] if lines else f"salt-call exited {answer['retcode']}"


def master_key_refusal(answer):
    """
    ``{expected, presented}`` fingerprints when a salt-call exited because the master's key
    does not match ``master_finger`` (Salt logs both, then exits 42); None otherwise.
    """
    found = FINGER_FAIL.search(answer.get("stderr") or "")
    if found is None:
        return None
    return {"expected": found.group("expected"), "presented": found.group("presented")}


def wait_for_status(world, settings_, minion_id, note, check=None):
    """
    Poll the node's pillar (``eos:node_status``, ``eos:roles``) through ``salt-call
    pillar.get eos`` until it is active or failed or ``settings_.timeout`` passes.
    ``check(answer)`` sees each salt-call answer first, and may raise.
    """
    deadline = world.clock() + settings_.timeout
    last = None
    while True:
        remaining = deadline - world.clock()
        answer = world.salt_call(
            ["pillar.get", "eos", "unmask=True"], max(1.0, min(settings_.call_timeout, remaining))
        )
        if check is not None:
            check(answer)
        status, roles = None, []
        if answer["retcode"] == 0 and isinstance(answer["data"], dict):
            status = answer["data"].get("node_status")
            roles = list(answer["data"].get("roles") or [])
        seen = status or "no answer from the master yet"
        if seen != last:
            waited = settings_.timeout - max(0.0, deadline - world.clock())
            note(f"node {minion_id}: {seen} ({waited:.0f} s of {settings_.timeout:g} s)")
            last = seen
        if status in ("active", "failed"):
            return {"status": status, "roles": roles}
        if world.clock() + settings_.poll_interval > deadline:
            return {"status": status, "roles": roles}
        world.sleep(settings_.poll_interval)
