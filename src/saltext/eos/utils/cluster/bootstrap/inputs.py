"""Bootstrap settings (``eos:bootstrap``) and the checks of every request field."""

import hashlib
import ipaddress
import logging
import os
import re
from dataclasses import dataclass

from saltext.eos.utils import config
from saltext.eos.utils import errors
from saltext.eos.utils.cluster import nodeid
from saltext.eos.utils.cluster.health import RET_PORT

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
    "engines": [{"eos_lifecycle": {}}],
    "reactor": [
        {"salt/auth": [NODE_JOIN]},
        {"eos/cluster/register": [NODE_JOIN]},
        {"eos/cluster/node/*/accepted": [NODE_JOIN]},
        {"eos/cluster/node/*/*": ["salt://eos/reactor/observe_targets.sls"]},
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


class BootstrapError(errors.EosError):
    """A bootstrap that cannot be planned; the message says what and why."""


class InvalidRequest(BootstrapError, errors.InvalidInput):
    """Bad input (mode, address, port, setting): nothing was changed."""


class StepFailed(BootstrapError, errors.OperationFailed):
    """A step failed; ``step`` names it."""

    def __init__(self, step, message, keep_config=False):
        super().__init__(message)
        self.step = step
        # The master already knows the node and owns its join: undoing the local config would
        # cut the node off from the retry (salt-run eos_cluster.accept).
        self.keep_config = keep_config


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
    ``saltext.eos.utils.cluster.nodeid``); InvalidRequest naming the id and the character otherwise.
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
