"""The nine pre-join checks against a fake world."""

import collections
import dataclasses

import pytest

from saltext.eos.utils import commands
from saltext.eos.utils import config
from saltext.eos.utils.cluster import health

Usage = collections.namedtuple("Usage", "total used free percent")

GB = 10**9
GIB = 1024**3


def world(**overrides):
    calm = {
        "disk_usage": lambda path: Usage(0, 0, 50 * GB, 0),
        "memory_total": lambda: 8 * GIB,
        "connect": lambda host, port, timeout: True,
        "run": lambda argv: commands.CommandResult(0, "yes\n"),
        "which": lambda name: f"/usr/bin/{name}",
        "resolve": lambda name: ["10.0.0.5"],
        "listening_ports": lambda: {22},
        "processes": lambda: [("sshd", ["/usr/sbin/sshd"])],
        "hostname": lambda: "node-1",
    }
    return health.World(**{**calm, **overrides})


def options(**health_config):
    return health.settings(config.Layers([("minion config", {"health": health_config})]))


TARGET = health.Target(
    masters=("10.0.0.1",), configured_masters=("10.0.0.1",), publish_port=4505, ret_port=4506
)
DEBIAN = {"os": "Debian", "osrelease": "12"}


def by_name(report):
    return {check["name"]: check for check in report["checks"]}


def test_a_healthy_node_passes_every_check():
    report = health.run_all(options(), DEBIAN, TARGET, world())
    assert report["passed"] is True
    assert [c["name"] for c in report["checks"]] == list(health.CHECK_NAMES)
    assert all(c["passed"] for c in report["checks"])
    assert {c["name"] for c in report["checks"] if not c["critical"]} == {
        "memory",
        "no_competing_agent",
    }


def test_a_failed_warning_does_not_fail_the_node():
    report = health.run_all(options(), DEBIAN, TARGET, world(memory_total=lambda: 2 * GIB))
    assert report["passed"] is True
    assert by_name(report)["memory"]["passed"] is False


def test_a_failed_critical_check_fails_the_node():
    report = health.run_all(options(), DEBIAN, TARGET, world(hostname=lambda: "localhost"))
    assert report["passed"] is False


# --- os_supported --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grains", "passed", "detail"),
    [
        ({"os": "Debian", "osrelease": "12"}, True, "Debian 12 (supported from 11)"),
        ({"os": "Debian", "osrelease": "10"}, False, "Debian 10 is older than Debian 11"),
        ({"os": "Ubuntu", "osrelease": "24.04"}, True, "Ubuntu 24.04"),
        ({"os": "Ubuntu", "osrelease": "20.04"}, False, "older than Ubuntu 22.04"),
        ({"os": "Rocky", "osrelease": "8.10"}, True, "Rocky 8.10"),
        ({"os": "rocky", "osrelease": "9.4"}, True, "rocky 9.4"),
        ({"os": "Windows", "osrelease": "2022"}, False, "Windows 2022 is not supported"),
        ({"os": "Debian", "osrelease": "trixie/sid"}, False, "release is not a version"),
        ({}, False, "unknown OS is not supported"),
    ],
)
def test_os_supported_with_defaults(grains, passed, detail):
    check = health.os_supported(grains, health.SUPPORTED_OS)
    assert (check["passed"], check["critical"]) == (passed, True)
    assert detail in check["detail"]


def test_versions_compare_as_versions_not_strings():
    supported = {"Rocky": "8.9"}
    assert health.os_supported({"os": "Rocky", "osrelease": "8.10"}, supported)["passed"]
    assert not health.os_supported({"os": "Rocky", "osrelease": "8.8"}, supported)["passed"]
    assert health.version_at_least((12,), (12, 0))
    assert health.version_tuple("v2.1.3-rc1") == (2, 1, 3)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"Ubuntu": 22.10}, "eos:health:supported_os:Ubuntu: 22.1 is a number; quote versions"),
        ({"Debian": "stable"}, "eos:health:supported_os:Debian: 'stable' is not a version"),
        ([], "is not a mapping of OS name to version"),
    ],
)
def test_bad_supported_os(given, message):
    with pytest.raises(health.InvalidHealthConfig, match=message):
        options(supported_os=given)


def test_settings_defaults_and_overrides():
    assert options().min_root_free_gb == 10
    custom = options(min_root_free_gb=1, supported_os={"Debian": 12}, required_ports=[80])
    assert custom.min_root_free_gb == 1
    assert custom.supported_os == {"Debian": "12"}
    assert custom.required_ports == (80,)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("required_ports", [80, 70000], "eos:health:required_ports: 70000 is not a TCP port"),
        ("required_ports", "80", "is not a list of ports"),
        ("min_root_free_gb", -1, "eos:health:min_root_free_gb: -1 must be >= 0"),
        ("connect_timeout", 0, "eos:health:connect_timeout: 0 must be > 0"),
        ("competing_agents", "puppet", "is not a list of names"),
    ],
)
def test_bad_settings_name_the_key(key, value, message):
    with pytest.raises(config.InvalidConfig, match=message):
        options(**{key: value})


# --- space, memory, master -----------------------------------------------------------------------


def test_root_free_space_uses_decimal_gigabytes():
    tight = world(disk_usage=lambda path: Usage(0, 0, 10 * GB - 1, 0))
    assert not health.root_free_space(tight, 10)["passed"]
    assert health.root_free_space(world(disk_usage=lambda p: Usage(0, 0, 10 * GB, 0)), 10)["passed"]


def test_a_4_gb_machine_passes_the_4_gb_memory_check():
    # The kernel keeps some: a 4 GB VM reports about 3.84 GiB.
    assert health.memory(world(memory_total=lambda: int(3.84 * GIB)), 4)["passed"]
    assert not health.memory(world(memory_total=lambda: int(3.5 * GIB)), 4)["passed"]


def test_master_reachable_tries_both_ports():
    tried = []

    def connect(host, port, timeout):
        tried.append((host, port, timeout))
        if port == 4506:
            raise ConnectionRefusedError(111, "Connection refused")
        return True

    check = health.master_reachable(world(connect=connect), TARGET, 3)
    assert tried == [("10.0.0.1", 4505, 3), ("10.0.0.1", 4506, 3)]
    assert not check["passed"]
    assert check["detail"] == "cannot connect to 10.0.0.1:4506 (Connection refused)"


def test_no_master_at_all():
    target = health.join_target({})
    assert target.masters == ()
    assert not health.master_reachable(world(), target, 1)["passed"]
    assert not health.minion_configured(world(), target)["passed"]


def test_an_unknown_publish_port_is_not_checked_and_the_detail_says_so():
    tried = []
    target = health.Target(("10.0.0.1",), ("10.0.0.1",), None, 14506)

    check = health.master_reachable(world(connect=lambda *args: tried.append(args)), target, 3)

    assert tried == [("10.0.0.1", 14506, 3)]
    assert check["passed"]
    assert "publish port" in check["detail"]
    assert "not checked" in check["detail"]


@pytest.mark.parametrize(
    ("configured", "announced", "used"),
    [
        (None, 24505, 24505),  # unset: the port the master announced
        (4506, 24505, 24505),  # Salt reads 4506 as "unset"
        (14505, 24505, 14505),  # set: used as it is
        (None, None, None),  # not authenticated yet: unknown
        (4505, None, 4505),
    ],
)
def test_the_publish_port_follows_salts_rule(configured, announced, used):
    assert health.publish_port_in_use(configured, announced) == used


def test_a_minion_without_publish_port_checks_the_announced_port():
    target = health.join_target({"master": "m1", "master_port": 14506}, None, 24505)
    assert (target.publish_port, target.ret_port) == (24505, 14506)
    assert health.join_target({"master": "m1"}).publish_port is None


def test_join_target_reads_the_minion_config():
    opts = {"master": ["m1", "m2"], "publish_port": 14505, "master_port": 14506}
    target = health.join_target(opts)
    assert target == health.Target(("m1", "m2"), ("m1", "m2"), 14505, 14506)
    assert health.join_target(opts, master="m3").masters == ("m3",)


# --- clock ---------------------------------------------------------------------------------------


def answers(table):
    """A ``run`` answering each program as Salt's cmd.run_all would."""

    def run(argv):
        return commands.from_run_all(table[argv[0]])

    return run


def test_clock_synchronised_by_timedatectl():
    check = health.clock_synchronised(world())
    assert (check["passed"], check["critical"]) == (True, True)


def test_clock_not_synchronised_is_critical():
    run = answers({"timedatectl": {"retcode": 0, "stdout": "no\n"}})
    check = health.clock_synchronised(world(run=run))
    assert (check["passed"], check["critical"]) == (False, True)


def test_chrony_answers_when_timedatectl_cannot():
    run = answers(
        {
            "timedatectl": {"retcode": 1, "stdout": "", "stderr": "not booted with systemd"},
            "chronyc": {"retcode": 0, "stdout": "Ref time : x\nLeap status     : Normal\n"},
        }
    )
    check = health.clock_synchronised(world(run=run))
    assert (check["passed"], check["detail"]) == (True, "chrony: synchronised")
    unsynced = answers(
        {
            "timedatectl": {"retcode": 1, "stdout": ""},
            "chronyc": {"retcode": 0, "stdout": "Leap status     : Not synchronised\n"},
        }
    )
    check = health.clock_synchronised(world(run=unsynced))
    assert (check["passed"], check["detail"]) == (False, "chrony: Not synchronised")


def test_clock_is_a_warning_when_nothing_can_tell():
    check = health.clock_synchronised(world(which=lambda name: None))
    assert (check["passed"], check["critical"]) == (False, False)
    assert "timedatectl not installed" in check["detail"]
    assert "chronyc not installed" in check["detail"]


# --- minion config, ports, hostname, agents ------------------------------------------------------


def test_minion_configured_compares_addresses_when_names_differ():
    target = dataclasses.replace(TARGET, masters=("salt.example.com",))
    addresses = {"salt.example.com": ["10.0.0.1"], "10.0.0.1": ["10.0.0.1"], "other": ["10.9.9.9"]}
    resolving = world(resolve=lambda name: addresses[name])
    assert health.minion_configured(resolving, target)["passed"]
    other = dataclasses.replace(TARGET, masters=("other",))
    check = health.minion_configured(resolving, other)
    assert not check["passed"]
    assert check["detail"] == "salt-minion's master is 10.0.0.1, not other"


def test_ports_free():
    assert health.ports_free(world(), ())["passed"]
    assert health.ports_free(world(), (80, 443))["passed"]
    busy = health.ports_free(world(listening_ports=lambda: {22, 443}), (80, 443))
    assert (busy["passed"], busy["detail"]) == (False, "already in use: 443")


@pytest.mark.parametrize("name", ["localhost", "localhost.localdomain", "", "LOCALHOST"])
def test_localhost_is_not_a_hostname(name):
    assert not health.hostname_resolves(world(hostname=lambda: name))["passed"]


def test_a_hostname_that_does_not_resolve():
    def resolve(name):
        raise OSError(-2, "Name or service not known")

    check = health.hostname_resolves(world(resolve=resolve))
    assert not check["passed"]
    assert "node-1 does not resolve" in check["detail"]


def test_a_loopback_only_hostname_passes_with_a_note():
    check = health.hostname_resolves(world(resolve=lambda name: ["127.0.1.1"]))
    assert check["passed"]
    assert "loopback only" in check["detail"]


def test_competing_agents_are_a_warning():
    processes = [
        ("ruby", ["/opt/puppetlabs/puppet/bin/ruby", "/opt/puppetlabs/bin/puppet", "agent"]),
        ("chef-client", ["chef-client", "-i", "1800"]),
        ("bash", ["bash", "-c", "echo puppet"]),
    ]
    check = health.no_competing_agent(
        world(processes=lambda: processes), health.DEFAULTS["competing_agents"]
    )
    assert (check["passed"], check["critical"]) == (False, False)
    assert check["detail"].startswith("running: chef-client, puppet;")


def test_this_machine_can_be_checked():
    report = health.run_all(options(connect_timeout=0.5), DEBIAN, health.join_target({}))
    assert len(report["checks"]) == len(health.CHECK_NAMES)
    assert all(isinstance(c["detail"], str) for c in report["checks"])
