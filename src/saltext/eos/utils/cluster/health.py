"""
Pre-join health checks: nine questions a node must answer before it joins a cluster.

Each check returns ``{name, critical, passed, detail}``; the node passes when no critical check
fails. Warnings (non-critical checks) are reported but never block a join.

=====================  ========  ===========================================================
check                  critical  passes when
=====================  ========  ===========================================================
os_supported           yes       the OS is in ``supported_os`` at or above its minimum version
root_free_space        yes       ``/`` has at least ``min_root_free_gb`` GB free
memory                 no        the node has at least ``min_memory_gb`` GB of memory
master_reachable       yes       the master's return port, and the publish port this minion
                                 uses, accept a connection
clock_synchronised     yes / no  timedatectl or chrony says the clock is synchronised; a
                                 warning only when neither tool can tell
minion_configured      yes       salt-minion's ``master`` is the master being joined
ports_free             yes       nothing listens on ``required_ports``
hostname_resolves      yes       the hostname resolves and is not localhost
no_competing_agent     no        no puppet, chef-client or ansible-pull is running
=====================  ========  ===========================================================

Settings (minion config or pillar), defaults shown:

.. code-block:: yaml

    eos:
      health:
        supported_os:             # grains 'os': minimum release, compared as versions
          Debian: "11"
          Ubuntu: "22.04"
          RedHat: "8"
          CentOS Stream: "9"
          Rocky: "8"
          AlmaLinux: "8"
          OEL: "8"
        min_root_free_gb: 10      # decimal GB, as disks are sold
        min_memory_gb: 4          # binary GB; 5% below still passes (kernel reservations)
        connect_timeout: 5        # seconds per master port
        required_ports: []        # TCP ports this node's services will need, e.g. [80, 443]
        competing_agents: [puppet, chef-client, ansible-pull]

Versions are quoted: YAML reads ``22.10`` as the number 22.1.
"""

import ipaddress
import os
import re
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

from saltext.eos.utils import commands
from saltext.eos.utils import config

SUPPORTED_OS = {
    "Debian": "11",
    "Ubuntu": "22.04",
    "RedHat": "8",
    "CentOS Stream": "9",
    "Rocky": "8",
    "AlmaLinux": "8",
    "OEL": "8",
}
DEFAULTS = {
    "supported_os": SUPPORTED_OS,
    "min_root_free_gb": 10,
    "min_memory_gb": 4,
    "connect_timeout": 5,
    "required_ports": [],
    "competing_agents": ["puppet", "chef-client", "ansible-pull"],
}
DISK_GB = 1000**3
MEMORY_GB = 1024**3
# A machine sold with 4 GB shows the OS a little less (firmware and kernel reservations).
MEMORY_MARGIN = 0.95
LOCAL_NAMES = ("localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6")
CHECK_NAMES = (
    "os_supported",
    "root_free_space",
    "memory",
    "master_reachable",
    "clock_synchronised",
    "minion_configured",
    "ports_free",
    "hostname_resolves",
    "no_competing_agent",
)


class InvalidHealthConfig(config.InvalidConfig):
    """``eos:health`` holds an unusable value; the message names the key."""


@dataclass(frozen=True)
class Settings:
    supported_os: dict
    min_root_free_gb: float
    min_memory_gb: float
    connect_timeout: float
    required_ports: tuple
    competing_agents: tuple


def settings(layers):
    """Validated ``eos:health`` settings."""
    values = {
        name: layers.get("health", name, default=default) for name, default in DEFAULTS.items()
    }
    key = config.key_name
    return Settings(
        supported_os=_supported_os(values["supported_os"]),
        min_root_free_gb=config.number(
            values["min_root_free_gb"], key("health", "min_root_free_gb"), minimum=0
        ),
        min_memory_gb=config.number(
            values["min_memory_gb"], key("health", "min_memory_gb"), minimum=0
        ),
        connect_timeout=config.number(
            values["connect_timeout"],
            key("health", "connect_timeout"),
            minimum=0,
            minimum_inclusive=False,
        ),
        required_ports=_ports(values["required_ports"]),
        competing_agents=_strings(values["competing_agents"], key("health", "competing_agents")),
    )


def _supported_os(value):
    key = config.key_name("health", "supported_os")
    if not isinstance(value, Mapping) or not value:
        raise InvalidHealthConfig(f"{key}: {value!r} is not a mapping of OS name to version")
    checked = {}
    for name, minimum in value.items():
        where = f"{key}:{name}"
        if isinstance(minimum, float):
            raise InvalidHealthConfig(
                f"{where}: {minimum!r} is a number; quote versions (YAML reads 22.10 as 22.1)"
            )
        if isinstance(minimum, bool) or not isinstance(minimum, (int, str)):
            raise InvalidHealthConfig(f"{where}: {minimum!r} is not a version")
        if version_tuple(str(minimum)) is None:
            raise InvalidHealthConfig(f"{where}: {minimum!r} is not a version")
        checked[str(name)] = str(minimum)
    return checked


def _ports(value):
    key = config.key_name("health", "required_ports")
    if not isinstance(value, (list, tuple)):
        raise InvalidHealthConfig(f"{key}: {value!r} is not a list of ports")
    for port in value:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidHealthConfig(f"{key}: {port!r} is not a TCP port (1-65535)")
    return tuple(value)


def _strings(value, key):
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidHealthConfig(f"{key}: {value!r} is not a list of names")
    return tuple(value)


def version_tuple(text):
    """``"22.04"`` -> (22, 4); the leading numeric part of a release; None without one."""
    match = re.match(r"^\s*v?(\d+(?:\.\d+)*)", str(text))
    if not match:
        return None
    return tuple(int(part) for part in match.group(1).split("."))


def version_at_least(version, minimum):
    """Compare as versions: 8.10 is above 8.9, and 12 is 12.0."""
    width = max(len(version), len(minimum))
    return version + (0,) * (width - len(version)) >= minimum + (0,) * (width - len(minimum))


# Seconds a clock-sync tool may take to answer.
COMMAND_TIMEOUT = 10


# --- the world the checks look at --------------------------------------------------------------


def _memory_total():
    return psutil.virtual_memory().total


def _run(argv):
    return commands.run(argv, timeout=COMMAND_TIMEOUT)


def _which(name):
    return shutil.which(name)


def _connect(host, port, timeout):
    with socket.create_connection((host, port), timeout=timeout):
        return True


def _resolve(name):
    return sorted({info[4][0] for info in socket.getaddrinfo(name, None)})


def _listening_ports():
    return {
        conn.laddr.port
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.laddr
    }


def _processes():
    for proc in psutil.process_iter(["name", "cmdline"]):
        yield proc.info.get("name") or "", proc.info.get("cmdline") or []


@dataclass(frozen=True)
class World:
    """What the checks measure and ask; the execution module runs commands through Salt."""

    disk_usage: object = psutil.disk_usage
    memory_total: object = _memory_total
    connect: object = _connect
    run: object = _run
    which: object = _which
    resolve: object = _resolve
    listening_ports: object = _listening_ports
    processes: object = _processes
    hostname: object = socket.gethostname


# salt.channel.client: a minion whose ``publish_port`` is unset or 4506 connects to the port
# the master announced when the minion authenticated; any other value is used as it is.
ANNOUNCED_PUBLISH_PORT_MARKER = 4506
RET_PORT = 4506


@dataclass(frozen=True)
class Target:
    """The master being joined and how this minion is configured."""

    masters: tuple  # the master(s) to join: from the caller, else the minion config
    configured_masters: tuple  # salt-minion's ``master`` setting
    publish_port: object  # int, or None when unknown (announced by a master not yet met)
    ret_port: int


def publish_port_in_use(configured, announced=None):
    """
    The master publish port this minion connects to, by Salt's own rule: its ``publish_port``
    setting unless that is unset or 4506, else the port the master ``announced`` at
    authentication; None when that is not known.
    """
    if configured is not None and int(configured) != ANNOUNCED_PUBLISH_PORT_MARKER:
        return int(configured)
    return int(announced) if announced else None


def join_target(opts, master=None, announced_publish_port=None):
    """The Target from the minion's opts and an optional master to join."""
    configured = opts.get("master") or ()
    configured = (configured,) if isinstance(configured, str) else tuple(configured)
    wanted = (master,) if isinstance(master, str) and master else configured
    return Target(
        masters=tuple(str(m) for m in wanted),
        configured_masters=tuple(str(m) for m in configured),
        publish_port=publish_port_in_use(opts.get("publish_port"), announced_publish_port),
        ret_port=int(opts.get("master_port") or RET_PORT),
    )


# --- the checks --------------------------------------------------------------------------------


def result(name, critical, passed, detail):
    return {"name": name, "critical": critical, "passed": bool(passed), "detail": detail}


def run_all(options, grains, target, world=None):
    """{passed, checks}: every check, in order; passed is False when a critical one failed."""
    world = world or World()
    checks = [
        os_supported(grains, options.supported_os),
        root_free_space(world, options.min_root_free_gb),
        memory(world, options.min_memory_gb),
        master_reachable(world, target, options.connect_timeout),
        clock_synchronised(world),
        minion_configured(world, target),
        ports_free(world, options.required_ports),
        hostname_resolves(world),
        no_competing_agent(world, options.competing_agents),
    ]
    return {"passed": all(c["passed"] for c in checks if c["critical"]), "checks": checks}


def os_supported(grains, supported):
    name = str(grains.get("os") or "")
    release = str(grains.get("osrelease") or "")
    known = {os_name.lower(): minimum for os_name, minimum in supported.items()}
    label = f"{name} {release}".strip() or "unknown OS"
    if name.lower() not in known:
        return result(
            "os_supported", True, False, f"{label} is not supported ({', '.join(supported)})"
        )
    minimum = known[name.lower()]
    version = version_tuple(release)
    if version is None:
        return result("os_supported", True, False, f"{label}: release is not a version")
    if not version_at_least(version, version_tuple(minimum)):
        return result("os_supported", True, False, f"{label} is older than {name} {minimum}")
    return result("os_supported", True, True, f"{label} (supported from {minimum})")


def root_free_space(world, minimum_gb):
    free = world.disk_usage("/").free
    detail = f"{free / DISK_GB:.1f} GB free on /, {minimum_gb:g} GB needed"
    return result("root_free_space", True, free >= minimum_gb * DISK_GB, detail)


def memory(world, minimum_gb):
    total = world.memory_total()
    passed = total >= minimum_gb * MEMORY_GB * MEMORY_MARGIN
    detail = f"{total / MEMORY_GB:.1f} GB memory, {minimum_gb:g} GB recommended"
    return result("memory", False, passed, detail)


def master_reachable(world, target, timeout):
    if not target.masters:
        return result("master_reachable", True, False, "no master given or configured")
    ports = [port for port in (target.publish_port, target.ret_port) if port is not None]
    failures = []
    for host in target.masters:
        for port in ports:
            try:
                world.connect(host, port, timeout)
            except OSError as err:
                failures.append(f"{host}:{port} ({err.strerror or err})")
    if failures:
        return result("master_reachable", True, False, f"cannot connect to {'; '.join(failures)}")
    where = ", ".join(target.masters)
    if target.publish_port is None:
        detail = (
            f"{where} answers on port {target.ret_port}; the publish port is the one the "
            "master announces when the minion authenticates, not known yet, so not checked"
        )
        return result("master_reachable", True, True, detail)
    ports_text = f"{target.publish_port} and {target.ret_port}"
    return result("master_reachable", True, True, f"{where} answers on ports {ports_text}")


def clock_synchronised(world):
    answers = []
    for ask in (_timedatectl_says, _chrony_says):
        synced, detail = ask(world)
        if synced is not None:
            return result("clock_synchronised", True, synced, detail)
        answers.append(detail)
    # Neither tool could tell: worth a warning, not a refusal.
    return result("clock_synchronised", False, False, f"cannot tell: {'; '.join(answers)}")


def _timedatectl_says(world):
    if not world.which("timedatectl"):
        return None, "timedatectl not installed"
    ret = world.run(["timedatectl", "show", "--property=NTPSynchronized", "--value"])
    answer = ret.stdout.strip()
    if not ret.ok or answer not in ("yes", "no"):
        return None, "timedatectl gave no answer (no systemd?)"
    if answer == "yes":
        return True, "timedatectl: synchronised"
    return False, "timedatectl: not synchronised"


def _chrony_says(world):
    if not world.which("chronyc"):
        return None, "chronyc not installed"
    ret = world.run(["chronyc", "-n", "tracking"])
    match = re.search(r"^Leap status\s*:\s*(.+)$", ret.stdout, re.MULTILINE)
    if not ret.ok or not match:
        return None, "chronyc gave no answer (chronyd not running?)"
    status = match.group(1).strip()
    if status.lower() == "normal":
        return True, "chrony: synchronised"
    return False, f"chrony: {status}"


def minion_configured(world, target):
    if not target.configured_masters:
        return result("minion_configured", True, False, "salt-minion has no master configured")
    configured = ", ".join(target.configured_masters)
    if set(target.masters) == set(target.configured_masters):
        return result("minion_configured", True, True, f"salt-minion's master is {configured}")
    # Names may differ where the addresses agree (salt.example.com and 10.0.0.5).
    wanted = _addresses(world, target.masters)
    have = _addresses(world, target.configured_masters)
    if wanted and wanted <= have:
        return result("minion_configured", True, True, f"salt-minion's master {configured}")
    return result(
        "minion_configured",
        True,
        False,
        f"salt-minion's master is {configured}, not {', '.join(target.masters)}",
    )


def _addresses(world, names):
    found = set()
    for name in names:
        try:
            found.update(world.resolve(name))
        except OSError:
            continue
    return found


def ports_free(world, ports):
    if not ports:
        return result("ports_free", True, True, "no ports required (eos:health:required_ports)")
    busy = sorted(set(ports) & set(world.listening_ports()))
    if busy:
        listed = ", ".join(map(str, busy))
        return result("ports_free", True, False, f"already in use: {listed}")
    return result("ports_free", True, True, f"free: {', '.join(map(str, ports))}")


def hostname_resolves(world):
    name = world.hostname()
    if not name or name.lower() in LOCAL_NAMES or name.lower().startswith("localhost."):
        return result("hostname_resolves", True, False, f"hostname is {name!r}: set a real one")
    try:
        addresses = world.resolve(name)
    except OSError as err:
        return result("hostname_resolves", True, False, f"{name} does not resolve: {err}")
    if not addresses:
        return result("hostname_resolves", True, False, f"{name} does not resolve")
    detail = f"{name} resolves to {', '.join(addresses)}"
    if all(_is_loopback(address) for address in addresses):
        detail += " (loopback only: other nodes cannot reach it by this name)"
    return result("hostname_resolves", True, True, detail)


def _is_loopback(address):
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def no_competing_agent(world, agents):
    running = set()
    for name, cmdline in world.processes():
        for agent in agents:
            if _is_agent(agent, name, cmdline):
                running.add(agent)
    if running:
        found = ", ".join(sorted(running))
        return result(
            "no_competing_agent",
            False,
            False,
            f"running: {found}; two configuration tools fight over the same files",
        )
    return result("no_competing_agent", False, True, "no other configuration agent running")


def _is_agent(agent, name, cmdline):
    # Ruby and Python agents show the interpreter as the process name; look at the command too.
    words = [os.path.basename(part) for part in cmdline[:3]]
    return name == agent or agent in words
