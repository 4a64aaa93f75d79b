"""
Bootstrap across a network: two hosts of the test's own, network namespaces joined by a veth
pair, a salt-master with EOS configured in one and minion hosts in the other; and single mode
on a fresh host, a namespace of its own.

- discover: the first node finds the master through Salt's SSDP discovery (broadcast over the
  veth), joins it and becomes active (the first node of the cluster: monolith);
- join: a second node joins the master by address and becomes active;
- a join against a closed port fails its health check and leaves that node's config exactly
  as it was;
- single: a host with only a minion config file (and an empty master config) becomes a
  one-node cluster: the bootstrap writes both drop-ins, the test starts salt-master and
  salt-minion on them, and the node ends active with the monolith role; the same bootstrap
  again changes nothing.

The namespaces, the veth pair and every daemon are made by the test and removed in teardown,
even when a test fails. The daemons run as plain processes (``ip netns exec <ns> salt-master
-c <dir>``): the minion config sets ``eos:bootstrap:restart: false``, and the test starts the
minion daemon once the bootstrap has written its drop-in, as a container supervisor would.
Tests build on each other, in file order.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest
import salt.crypt
import salt.utils.yaml

from saltext.eos.utils.cluster import bootstrap
from tests.support.cluster import SMALL_CATALOGUE
from tests.support.cluster import os_release_id
from tests.support.cluster import wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs the ip command (iproute2)"),
]

BIN = os.path.dirname(sys.executable)
CLUSTER = "nettest"
SUBNET = "10.231.{}.{}"
JOIN_TIMEOUT = 300


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


class Network:
    """
    Two namespaces and a veth pair between them; with ``single``, one namespace where master
    and node are the same host (loopback only). ``remove`` leaves nothing behind.
    """

    def __init__(self, single=False):
        tag = uuid.uuid4().hex[:6]
        self.single = single
        if single:
            self.master_ns = self.node_ns = f"eos-s-{tag}"
            self.master_ip = self.node_ip = bootstrap.SINGLE_MASTER
            return
        self.master_ns, self.node_ns = f"eos-m-{tag}", f"eos-n-{tag}"
        self.veth = (f"eosm{tag}", f"eosn{tag}")
        third = int(tag[:2], 16) % 250 + 1
        self.master_ip, self.node_ip = SUBNET.format(third, 1), SUBNET.format(third, 2)

    def namespaces(self):
        return sorted({self.master_ns, self.node_ns})

    def create(self):
        for ns in self.namespaces():
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        if self.single:
            return
        ip("link", "add", self.veth[0], "type", "veth", "peer", "name", self.veth[1])
        for ns, dev, address in (
            (self.master_ns, self.veth[0], self.master_ip),
            (self.node_ns, self.veth[1], self.node_ip),
        ):
            ip("link", "set", dev, "netns", ns)
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        # The SSDP query goes to the limited broadcast address: route it over the veth. No
        # default route: nothing else has a way out of the pair.
        ip("-n", self.node_ns, "route", "add", "255.255.255.255/32", "dev", self.veth[1])

    def remove(self):
        if not self.single:
            ip("link", "del", self.veth[0], check=False)
        for ns in self.namespaces():
            ip("netns", "del", ns, check=False)

    def exec_argv(self, ns, *argv):
        return ["ip", "netns", "exec", ns, *argv]


class Daemons:
    """Processes the test started; every one is killed (its whole group) in teardown."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log_path):
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@contextlib.contextmanager
def made(net):
    """The namespaces of ``net``, removed on the way out however the test went."""
    try:
        net.create()
        yield net
    finally:
        net.remove()
    listed = ip("netns", "list").stdout
    assert not [ns for ns in net.namespaces() if ns in listed]


NETNS_DIR = "/run/netns"


def mounted(path):
    # os.path.ismount misses a bind mount of a directory onto itself, which is what ip makes.
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        return any(line.split()[1] == path for line in mounts)


@pytest.fixture(scope="module", autouse=True)
def _no_netns_mount_left():
    """``ip netns add`` bind-mounts /run/netns once and never undoes it: undo it if we caused it."""
    was_mounted = mounted(NETNS_DIR)
    existed = os.path.isdir(NETNS_DIR)
    yield
    if was_mounted or not mounted(NETNS_DIR) or os.listdir(NETNS_DIR):
        return
    subprocess.run(["umount", NETNS_DIR], check=True)
    if not existed:
        os.rmdir(NETNS_DIR)
    assert not mounted(NETNS_DIR)


@pytest.fixture(scope="module")
def network():
    with made(Network()) as net:
        yield net


@pytest.fixture(scope="module")
def daemons():
    running = Daemons()
    yield running
    running.stop_all()


def port_open(network, ns, host, port):
    probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=2).close()"
    done = subprocess.run(
        network.exec_argv(ns, sys.executable, "-c", probe),
        check=False,
        capture_output=True,
        timeout=30,
    )
    return done.returncode == 0


@pytest.fixture(scope="module")
def master(network, daemons, tmp_path_factory):
    root = tmp_path_factory.mktemp("netns-master")
    (root / "states").mkdir()
    conf = {
        "root_dir": str(root),
        "user": "root",
        "interface": "0.0.0.0",
        "log_file": str(root / "master.log"),
        "log_level_logfile": "info",
        "file_roots": {"base": [str(root / "states")]},
        **bootstrap.MASTER_BLOCK,
        "discovery": {"mapping": {bootstrap.CLUSTER_KEY: CLUSTER}},
        "eos": {
            "accept": "auto",
            "roles": {"catalog": SMALL_CATALOGUE},
            "join": {"state": "eos.roles", "minion_wait": 120},
        },
    }
    (root / "master").write_text(salt.utils.yaml.safe_dump(conf, default_flow_style=False))
    daemons.start(
        network.exec_argv(
            network.master_ns, os.path.join(BIN, "salt-master"), "-c", str(root), "-l", "warning"
        ),
        root / "stdout.log",
    )
    for port in (4505, 4506):
        wait_for(
            lambda port=port: port_open(network, network.node_ns, network.master_ip, port),
            f"the master's port {port} from the node namespace",
            120,
        )
    return {"root": root, "ip": network.master_ip}


def salt_run(network, master, *args):
    argv = network.exec_argv(
        network.master_ns,
        os.path.join(BIN, "salt-run"),
        "-c",
        str(master["root"]),
        "--out=json",
        *args,
    )
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done
    return json.loads(done.stdout)


def make_node(tmp_path_factory, name):
    """A fresh minion host: its config file and a Salt key, as a package install leaves them."""
    root = tmp_path_factory.mktemp(f"netns-{name}")
    node_id = f"{name}-{uuid.uuid4().hex[:6]}"
    supported = {os_release_id(): "0", "Debian": "0", "Ubuntu": "0", "RedHat": "0"}
    conf = {
        "id": node_id,
        "root_dir": str(root),
        "user": "root",
        "log_file": str(root / "minion.log"),
        "log_level_logfile": "info",
        "acceptance_wait_time": 2,
        "discovery": {"attempts": 2, "pause": 1},  # Salt's option: fewer, faster tries
        "eos": {
            "config_dir": str(root / "eos"),
            "manage_software": False,
            "health": {"supported_os": supported, "min_root_free_gb": 0, "connect_timeout": 3},
            "bootstrap": {"restart": False, "timeout": JOIN_TIMEOUT, "poll_interval": 2},
        },
    }
    (root / "minion").write_text(salt.utils.yaml.safe_dump(conf, default_flow_style=False))
    pki = root / "etc" / "salt" / "pki" / "minion"
    pki.mkdir(parents=True)
    private, public = salt.crypt.gen_keys(2048)
    (pki / "minion.pem").write_text(private)
    (pki / "minion.pem").chmod(0o400)
    (pki / "minion.pub").write_text(public)
    drop_in = root / "minion.d" / "eos.conf"
    # What the test starts, as the service manager would, once the bootstrap wrote its drop-in.
    return {"root": root, "id": node_id, "drop_in": drop_in, "starts": [("salt-minion", drop_in)]}


def run_bootstrap(network, node, *args):
    """eos_cluster.bootstrap run to the end on the node's host: the finished process."""
    return subprocess.run(
        bootstrap_argv(network, node, *args),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def bootstrap_argv(network, node, *args):
    return network.exec_argv(
        network.node_ns,
        os.path.join(BIN, "salt-call"),
        "-c",
        str(node["root"]),
        "--local",
        "--out=json",
        "--retcode-passthrough",
        "-l",
        "info",
        "--log-file",
        str(node["root"] / "bootstrap.log"),
        "eos_cluster.bootstrap",
        *args,
    )


def bootstrap_and_start(network, daemons, node, *args):
    """
    Run the bootstrap; once it has written a drop-in, start the daemon that reads it (the
    bootstrap's restart is off): ``node["starts"]``, in order. Returns the bootstrap's
    (retcode, result).
    """
    with (
        open(node["root"] / "bootstrap.out", "w") as out,
        open(node["root"] / "bootstrap.err", "w") as err,
    ):
        call = subprocess.Popen(
            bootstrap_argv(network, node, *args),
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    daemons.procs.append(call)
    for program, drop_in in node["starts"]:
        wait_for(
            lambda drop_in=drop_in: drop_in.exists() or call.poll() is not None,
            f"{node['id']}'s drop-in {drop_in.name} for {program}",
            120,
        )
        if not drop_in.exists():
            break
        daemons.start(
            network.exec_argv(
                network.node_ns,
                os.path.join(BIN, program),
                "-c",
                str(node["root"]),
                "-l",
                "warning",
            ),
            node["root"] / f"{program}.out",
        )
    try:
        call.wait(timeout=JOIN_TIMEOUT + 120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the bootstrap of {node['id']} did not end")
    output = (node["root"] / "bootstrap.out").read_text()
    try:
        return call.returncode, json.loads(output)["local"]
    except (ValueError, KeyError):
        errors = (node["root"] / "bootstrap.err").read_text()
        pytest.fail(f"no JSON result (exit {call.returncode}):\n{output}\n{errors}")


def explain(network, master, node, result):
    """What to look at when a join did not end active: the master's view and logs."""
    status = salt_run(network, master, "eos_join.status", node["id"])
    log = (master["root"] / "master.log").read_text()[-4000:]
    return f"result: {result}\neos_join.status: {status}\nmaster log tail:\n{log}"


@pytest.fixture(scope="module")
def first_node(tmp_path_factory):
    return make_node(tmp_path_factory, "alpha")


def test_discover_finds_the_master_over_ssdp_and_the_node_becomes_active(
    network, master, daemons, first_node
):
    node = first_node
    planned = run_bootstrap(network, node, "mode=discover", f"cluster={CLUSTER}", "dry_run=True")
    assert planned.returncode == 0, planned.stdout
    plan = json.loads(planned.stdout)["local"]
    assert plan["discovered"]["address"] == network.master_ip
    assert plan["discovered"]["cluster"] == CLUSTER
    assert not node["drop_in"].exists()

    retcode, result = bootstrap_and_start(
        network, daemons, node, "mode=discover", f"cluster={CLUSTER}"
    )
    assert retcode == 0 and result["result"] is True, explain(network, master, node, result)
    assert result["master"] == network.master_ip
    assert result["outcome"]["status"] == "active"
    assert result["outcome"]["roles"] == ["monolith"]
    assert result["progress"][-1]["status"].startswith(f"node {node['id']}: active")
    written = salt.utils.yaml.safe_load(node["drop_in"].read_text())
    assert written["master"] == network.master_ip
    assert written["eos_bootstrap"]["mode"] == "discover"
    record = salt_run(network, master, "eos_cluster.nodes")
    assert [(r["id"], r["status"]) for r in record] == [(node["id"], "active")]
    # role.yaml written by the role state the join applied
    assert (node["root"] / "eos" / "role.yaml").exists()


def test_the_same_bootstrap_again_changes_nothing(network, first_node):
    node = first_node
    before = node["drop_in"].read_bytes()
    done = run_bootstrap(network, node, "mode=discover", f"cluster={CLUSTER}")
    assert done.returncode == 0, done
    result = json.loads(done.stdout)["local"]
    assert result["changed"] is False
    assert "already bootstrapped" in result["comment"]
    assert node["drop_in"].read_bytes() == before


def test_join_by_address(network, master, daemons, first_node, tmp_path_factory):
    node = make_node(tmp_path_factory, "bravo")
    retcode, result = bootstrap_and_start(
        network, daemons, node, "mode=join", f"master={network.master_ip}"
    )
    assert retcode == 0 and result["result"] is True, explain(network, master, node, result)
    assert result["outcome"]["status"] == "active"
    assert len(result["outcome"]["roles"]) == 1
    records = {r["id"]: r for r in salt_run(network, master, "eos_cluster.nodes")}
    assert records[node["id"]]["status"] == "active"
    assert records[first_node["id"]]["status"] == "active"
    roles = sorted(role for r in records.values() for role in r["roles"])
    assert roles == ["core", "edge"]


def test_a_join_against_a_closed_port_fails_its_health_check_and_changes_nothing(
    network, master, tmp_path_factory
):
    node = make_node(tmp_path_factory, "charlie")
    before = minion_config(node)
    done = run_bootstrap(network, node, "mode=join", f"master={network.master_ip}:4999")
    assert done.returncode == 1, done
    result = json.loads(done.stdout)["local"]
    assert result["result"] is False
    assert result["failed_step"] == "health"
    assert f"master_reachable: cannot connect to {network.master_ip}:4999" in result["error"]
    assert minion_config(node) == before
    assert not node["drop_in"].exists()
    assert not (node["root"] / "minion.d").exists()


def minion_config(node):
    """The minion's config files: the main file and everything in minion.d."""
    files = [node["root"] / "minion", *sorted((node["root"] / "minion.d").glob("*"))]
    return {str(path): path.read_bytes() for path in files if path.is_file()}


# --- single mode: a fresh host becomes a one-node cluster -----------------------------------------


@pytest.fixture(scope="class")
def fresh_host():
    """A host of its own: the master takes its default ports on its loopback."""
    with made(Network(single=True)) as net:
        yield net


@pytest.fixture(scope="class")
def host_daemons(fresh_host):
    running = Daemons()
    yield running
    running.stop_all()  # before the namespace goes


def make_single_node(tmp_path_factory, name, master_main=""):
    """
    A fresh host for single mode: make_node's minion config, an empty main master file, and
    the site's master settings in a drop-in of their own (single mode refuses a main master
    file whose keys its drop-in would hide, such as ``eos``).
    """
    node = make_node(tmp_path_factory, name)
    root = node["root"]
    (root / "states").mkdir()
    (root / "master").write_text(master_main)
    site = {
        "root_dir": str(root),
        "user": "root",
        "log_file": str(root / "master.log"),
        "log_level_logfile": "info",
        "file_roots": {"base": [str(root / "states")]},
        "eos": {"roles": {"catalog": SMALL_CATALOGUE}},  # fits a 2-core machine
    }
    (root / "master.d").mkdir()
    (root / "master.d" / "site.conf").write_text(
        salt.utils.yaml.safe_dump(site, default_flow_style=False)
    )
    node["master_drop_in"] = root / "master.d" / "eos.conf"
    node["starts"] = [("salt-master", node["master_drop_in"]), *node["starts"]]
    return node


def config_files(node):
    """Every config file of the host, main files and drop-ins of both daemons, as bytes."""
    root = node["root"]
    files = [root / "minion", root / "master"]
    for directory in ("minion.d", "master.d"):
        files.extend(sorted((root / directory).glob("*")))
    return {
        path.name if path.parent == root else f"{path.parent.name}/{path.name}": path.read_bytes()
        for path in files
        if path.is_file()
    }


@pytest.fixture(scope="class")
def single_node(tmp_path_factory, fresh_host, host_daemons):
    node = make_single_node(tmp_path_factory, "solo")
    started = time.monotonic()
    retcode, result = bootstrap_and_start(fresh_host, host_daemons, node, "mode=single")
    node["bootstrap"] = {"retcode": retcode, "result": result}
    node["seconds"] = time.monotonic() - started
    return node


@pytest.mark.parametrize(
    "args, master_main, message",
    [
        (
            ["mode=single"],
            "eos: {roles: {catalog: {monolith: {cpu: 1}}}}\n",
            "sets eos: Salt lays",
        ),
        (["mode=single", "master=10.0.0.9"], "", "mode single makes this host the master"),
    ],
    ids=["eos-in-the-main-master-file", "single-with-a-master"],
)
def test_single_mode_refuses_bad_input_and_writes_nothing(
    fresh_host, tmp_path_factory, args, master_main, message
):
    node = make_single_node(tmp_path_factory, "refused", master_main)
    before = config_files(node)
    done = run_bootstrap(fresh_host, node, *args)
    assert done.returncode != 0, done
    assert message in done.stdout + done.stderr, done
    assert config_files(node) == before
    assert not node["master_drop_in"].exists() and not node["drop_in"].exists()


class TestSingleMode:
    def test_the_host_becomes_an_active_monolith(self, fresh_host, single_node):
        node = single_node
        master = {"root": node["root"]}
        retcode, result = node["bootstrap"]["retcode"], node["bootstrap"]["result"]
        assert retcode == 0 and result["result"] is True, explain(fresh_host, master, node, result)
        assert result["changed"] is True
        assert result["master"] == bootstrap.SINGLE_MASTER
        assert result["outcome"]["status"] == "active"
        assert result["outcome"]["roles"] == ["monolith"]
        steps = {step["step"]: step["result"] for step in result["done"]}
        assert (
            steps["restart_master"]
            == steps["restart_minion"]
            == ("skipped (eos:bootstrap:restart)")
        )
        assert node["seconds"] < 90

        written = salt.utils.yaml.safe_load(node["master_drop_in"].read_text())
        assert {key: written[key] for key in bootstrap.MASTER_BLOCK} == bootstrap.MASTER_BLOCK
        assert "eos" in written["fileserver_backend"]
        assert {"eos": {}} in written["ext_pillar"]
        tags = [tag for entry in written["reactor"] for tag in entry]
        assert tags == [
            "salt/auth",
            "eos/cluster/register",
            "eos/cluster/node/*/accepted",
            "eos/cluster/node/*/*",
            "salt/beacon/*/eos_storage/*",
        ]
        assert written["discovery"] == {
            "mapping": {bootstrap.CLUSTER_KEY: bootstrap.DEFAULT_CLUSTER}
        }
        assert written["eos"] == {"join": {"state": bootstrap.JOIN_STATE}}
        minion = salt.utils.yaml.safe_load(node["drop_in"].read_text())
        assert minion["master"] == bootstrap.SINGLE_MASTER
        assert minion["id"] == node["id"]
        assert minion["eos_bootstrap"]["mode"] == "single"

        records = salt_run(fresh_host, master, "eos_cluster.nodes")
        assert [(r["id"], r["status"], r["roles"]) for r in records] == [
            (node["id"], "active", ["monolith"])
        ]

    def test_the_same_bootstrap_again_changes_nothing(self, fresh_host, single_node):
        node = single_node
        before = config_files(node)
        assert set(before) >= {"minion", "master", "minion.d/eos.conf", "master.d/eos.conf"}
        done = run_bootstrap(fresh_host, node, "mode=single")
        assert done.returncode == 0, done
        result = json.loads(done.stdout)["local"]
        assert result["result"] is True
        assert result["already"] is True
        assert result["changed"] is False
        assert "already bootstrapped (single" in result["comment"]
        assert config_files(node) == before
