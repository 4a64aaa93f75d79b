"""
Bootstrap planning and execution over temporary config trees, with a fake Salt side. No Salt.

The checkpoint store is the real one (utils.checkpoint), so a rollback test checks the files a
rollback leaves behind, not the calls it made.
"""

import logging
import os
import pathlib
import re
import types

import pytest
import salt.crypt
import salt.utils.crypt
import salt.utils.yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from saltext.eos import PACKAGE_ROOT
from saltext.eos.utils import config
from saltext.eos.utils import errors
from saltext.eos.utils.cluster import bootstrap
from saltext.eos.utils.cluster import checkpoint
from tests.support import readme

REPO = PACKAGE_ROOT.parents[2]
NODE = "node-7"
USER_DROP_IN = "# the site's own\nlog_level: info\n"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Services:
    """Units as a service manager sees them; ``failing``: {(action, name)}."""

    def __init__(self, **units):
        self.units = {name: {"active": active, "enabled": True} for name, active in units.items()}
        self.failing = set()
        self.calls = []

    def act(self, action, name):
        self.calls.append((action, name))
        if (action, name) in self.failing:
            return False
        if action in ("restart", "start"):
            self.units[name]["active"] = True
        elif action == "stop":
            self.units[name]["active"] = False
        return True


class SaltCall:
    """Answers salt-call: registration, then the node's statuses one poll after another."""

    def __init__(self, statuses=("accepted", "active"), roles=("monolith",), register_ok=True):
        self.statuses = list(statuses)
        self.roles = list(roles)
        self.register_ok = register_ok
        self.calls = []

    def __call__(self, args, timeout):
        self.calls.append(args[0])
        if args[0] == "eos_cluster.register":
            if self.register_ok:
                return {"retcode": 0, "data": {"sent": True}, "stderr": ""}
            return {"retcode": 2, "data": None, "stderr": "Minion failed to authenticate"}
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status is None:
            return {"retcode": 2, "data": None, "stderr": "no master"}
        return {"retcode": 0, "data": {"node_status": status, "roles": self.roles}, "stderr": ""}


def passing_health(req):
    return {"passed": True, "checks": [{"name": "os_supported", "critical": True, "passed": True}]}


def failing_health(req):
    return {
        "passed": False,
        "checks": [
            {
                "name": "master_reachable",
                "critical": True,
                "passed": False,
                "detail": f"cannot connect to {req.master}:4505 (Connection refused)",
            }
        ],
    }


@pytest.fixture
def tree(tmp_path):
    etc = tmp_path / "etc" / "salt"
    (etc / "minion.d").mkdir(parents=True)
    (etc / "minion").write_text("log_level: warning\n")
    (etc / "minion.d" / "site.conf").write_text(USER_DROP_IN)
    return {
        "etc": etc,
        "paths": bootstrap.paths(str(etc / "minion")),
        "store": str(tmp_path / "cache" / "eos" / "checkpoints"),
    }


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def services():
    return Services(**{"salt-minion": True, "salt-master": True})


def make_world(tree, clock, services, health=passing_health, salt_call=None, up=True):
    store = tree["store"]

    def restore(checkpoint_id):
        return checkpoint.restore(store, checkpoint.find(store, checkpoint_id))

    return bootstrap.World(
        health=health,
        take_checkpoint=lambda label, trees, svc: checkpoint.take(store, label, trees, svc),
        restore_checkpoint=restore,
        service_available=lambda name: name in services.units,
        service_state=lambda name: dict(services.units[name]),
        service=services.act,
        salt_call=salt_call or SaltCall(),
        ports_open=lambda host, ports: up,
        clock=clock,
        sleep=clock.sleep,
    )


def settings(**bootstrap_config):
    base = {"timeout": 60, "poll_interval": 5, "master_wait": 5}
    return bootstrap.settings(
        config.Layers([("test", {"bootstrap": {**base, **bootstrap_config}})])
    )


def snapshot(directory):
    return {str(path): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def run(tree, world, req, opts=None, startup_state=True, join_state=bootstrap.JOIN_STATE):
    opts = opts or settings()
    p = tree["paths"]
    current = {path: bootstrap.read_text(path) for path in (p.minion_drop_in, p.master_drop_in)}
    steps = bootstrap.plan(req, NODE, p, opts, current, join_state, startup_state)
    runner = bootstrap.Bootstrap(world=world, settings=opts, paths=p, req=req, minion_id=NODE)
    return runner.run(steps)


# --- input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, port, expected",
    [
        ("10.0.0.5", None, ("10.0.0.5", None)),
        ("10.0.0.5:4606", None, ("10.0.0.5", 4606)),
        ("salt.example.com", 4606, ("salt.example.com", 4606)),
        ("fd00::5", None, ("fd00::5", None)),
        ("[fd00::5]:4506", None, ("fd00::5", 4506)),
        (" master-1 ", "4506", ("master-1", 4506)),
    ],
)
def test_addresses_are_parsed(text, port, expected):
    assert bootstrap.parse_address(text, port) == expected


@pytest.mark.parametrize(
    "text, port, message",
    [
        ("10.0.0.300", None, "is not an IP address or host name"),
        ("10.0.5", None, "is not an IP address or host name"),
        ("salt master", None, "is not an IP address or host name"),
        ("http://salt", None, "is not an IP address or host name"),
        ("-salt", None, "is not an IP address or host name"),
        ("salt:99999", None, "is not a TCP port"),
        ("salt:4506", 4606, "names port 4506, but port=4606"),
        ("salt", 0, "is not a TCP port"),
        ("", None, "is not an address or host name"),
        (None, None, "is not an address or host name"),
    ],
)
def test_malformed_addresses_are_refused_by_name(text, port, message):
    with pytest.raises(bootstrap.InvalidRequest, match=re.escape(message)):
        bootstrap.parse_address(text, port)


def test_an_unknown_mode_is_refused():
    with pytest.raises(bootstrap.InvalidRequest, match="mode: 'cluster' is not one of single"):
        bootstrap.request("cluster")


def test_join_needs_a_master_and_discover_refuses_one():
    with pytest.raises(bootstrap.InvalidRequest, match="mode join needs master="):
        bootstrap.request("join")
    with pytest.raises(bootstrap.InvalidRequest, match="mode discover finds the master"):
        bootstrap.request("discover", master="10.0.0.5")


def test_single_refuses_a_master():
    with pytest.raises(bootstrap.InvalidRequest, match="mode single makes this host the master"):
        bootstrap.request("single", master="10.0.0.5")
    assert bootstrap.request("single", port=4510).port == 4510


def test_bad_names_are_refused():
    with pytest.raises(bootstrap.InvalidRequest, match="cluster: 'a b' is not a cluster name"):
        bootstrap.request("single", cluster="a b")
    with pytest.raises(bootstrap.InvalidRequest, match="cluster: 'eos\\\\n' is not a cluster"):
        bootstrap.request("single", cluster="eos\n")
    # Around an address, whitespace is padding: it is dropped, never kept.
    assert bootstrap.parse_address("salt\n", None) == ("salt", None)
    with pytest.raises(
        bootstrap.InvalidRequest,
        match=re.escape("minion_id: node id '../x': '/' at position 3 is a path separator"),
    ):
        bootstrap.request("join", master="m", minion_id="../x")


@pytest.mark.parametrize(
    ("minion_id", "named"),
    [
        ("web*", "'*' at position 4 is a glob wildcard"),
        ("web@dc1", "'@' at position 4"),
        ("web-1\n", "'\\n' (U+000A) at position 6"),
        ("-web", "starts with '-'"),
        ("w" * 254, "longer than 253"),
    ],
)
def test_a_minion_id_the_registry_would_refuse_is_refused_first(minion_id, named):
    with pytest.raises(bootstrap.InvalidRequest) as refused:
        bootstrap.request("join", master="m", minion_id=minion_id)
    assert str(refused.value).startswith(f"minion_id: node id {minion_id[:20]!r}"[:-1])
    assert named in str(refused.value)


def test_the_id_a_node_registers_under_follows_the_node_id_rule():
    given = bootstrap.request("join", master="m", minion_id="web-2.example.com")
    assert bootstrap.node_id(given, "ignored*") == "web-2.example.com"
    plain = bootstrap.request("join", master="m")
    assert bootstrap.node_id(plain, "web-1") == "web-1"
    with pytest.raises(bootstrap.InvalidRequest, match=r"this minion's id \(set minion_id="):
        bootstrap.node_id(plain, "web 1")


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, ("salt-minion", "salt-master")),
        (False, (None, None)),
        ({"minion": "salt-minion@blue"}, ("salt-minion@blue", "salt-master")),
        ({"master": False}, ("salt-minion", None)),
    ],
)
def test_the_restart_setting(value, expected):
    opts = settings(restart=value)
    assert (opts.restart_minion, opts.restart_master) == expected


@pytest.mark.parametrize(
    "value, message",
    [
        ("yes", "eos:bootstrap:restart: 'yes' must be true, false or"),
        ({"daemon": "x"}, "unknown key(s) ['daemon']"),
        ({"minion": "a b"}, "eos:bootstrap:restart:minion: 'a b' is not a service name"),
    ],
)
def test_a_bad_restart_setting_names_the_key(value, message):
    with pytest.raises(bootstrap.InvalidRequest, match=re.escape(message)):
        settings(restart=value)


def test_a_bad_timeout_names_the_key():
    with pytest.raises(bootstrap.InvalidRequest, match="eos:bootstrap:timeout: 0 must be > 0"):
        settings(timeout=0)


# --- drop-ins ------------------------------------------------------------------------------------


def test_the_readme_master_block_is_the_one_bootstrap_writes():
    assert readme.master_block() == bootstrap.MASTER_BLOCK


def test_the_cluster_guide_names_only_reactor_entries_of_that_block():
    block = readme.yaml_block("## Master configuration", REPO / "docs" / "cluster.md")
    for key in ("fileserver_backend", "ext_pillar"):
        assert block[key] == bootstrap.MASTER_BLOCK[key]
    for entry in block["reactor"]:
        assert entry in bootstrap.MASTER_BLOCK["reactor"]


def test_the_single_master_drop_in_is_the_block_plus_discovery_and_the_join_state():
    text = bootstrap.render_master("prod")
    assert text.startswith("# Written by eos_cluster.bootstrap (mode single)")
    data = salt.utils.yaml.safe_load(text)
    assert data.pop("discovery") == {"mapping": {"eos_cluster": "prod"}}
    assert data.pop("eos") == {"join": {"state": "eos.roles"}}
    assert data == bootstrap.MASTER_BLOCK


def test_a_site_join_state_is_left_to_the_site():
    data = salt.utils.yaml.safe_load(bootstrap.render_master("prod", join_state=None))
    assert "eos" not in data


def test_the_join_minion_drop_in():
    req = bootstrap.request("join", master="10.0.0.5:4606", cluster="prod")
    data = salt.utils.yaml.safe_load(bootstrap.render_minion(req, NODE))
    assert data == {
        "master": "10.0.0.5",
        "id": NODE,
        "master_port": 4606,
        "eos_bootstrap": {"mode": "join", "master": "10.0.0.5", "port": 4606, "cluster": "prod"},
    }
    # Never an eos mapping: it would hide the node's own eos settings of the main file.
    assert "eos" not in data


def test_the_discover_minion_drop_in_names_the_master_found():
    req = bootstrap.Request("discover", master="192.0.2.7", cluster="prod")
    data = salt.utils.yaml.safe_load(bootstrap.render_minion(req, NODE, startup_state=True))
    assert data["master"] == "192.0.2.7"
    assert data["startup_states"] == "sls"
    assert data["sls_list"] == ["eos.roles"]
    assert data["eos_bootstrap"]["mode"] == "discover"
    assert "master_port" not in data


def test_the_single_minion_drop_in_points_at_this_host():
    req = bootstrap.Request("single", master=bootstrap.SINGLE_MASTER)
    data = salt.utils.yaml.safe_load(bootstrap.render_minion(req, NODE))
    assert data["master"] == "127.0.0.1"
    assert data["eos_bootstrap"] == {
        "mode": "single",
        "master": "127.0.0.1",
        "port": None,
        "cluster": None,
    }


def test_paths_follow_the_minion_config_file(tmp_path):
    p = bootstrap.paths(str(tmp_path / "minion"))
    assert p.minion_drop_in == str(tmp_path / "minion.d" / "eos.conf")
    assert p.master_drop_in == str(tmp_path / "master.d" / "eos.conf")
    assert p.master_conf == str(tmp_path / "master")
    other = bootstrap.paths(str(tmp_path / "minion"), master_config_dir=str(tmp_path / "m" / "d"))
    assert other.master_drop_in == str(tmp_path / "m" / "d" / "eos.conf")


def test_what_was_bootstrapped_is_read_back():
    req = bootstrap.request("join", master="10.0.0.5")
    text = bootstrap.render_minion(req, NODE)
    assert bootstrap.already_done(req, text)
    assert not bootstrap.already_done(bootstrap.request("join", master="10.0.0.6"), text)
    assert not bootstrap.already_done(bootstrap.request("single"), text)
    assert not bootstrap.already_done(req, None)
    assert not bootstrap.already_done(req, ": not yaml : [")
    discovered = bootstrap.Request("discover", master="10.0.0.5", cluster="prod")
    text = bootstrap.render_minion(discovered, NODE)
    assert bootstrap.already_done(bootstrap.request("discover"), text)
    assert not bootstrap.already_done(bootstrap.request("discover", cluster="test"), text)


def test_the_sites_own_settings_are_found_outside_eos_drop_ins(tree):
    p = tree["paths"]
    master_d = pathlib.Path(p.master_dir)
    master_d.mkdir()
    (master_d / "eos.conf").write_text("eos: {join: {state: eos.roles}}\n")
    assert bootstrap.site_join_state(p) is None
    (master_d / "site.conf").write_text("eos: {join: {state: highstate}}\n")
    assert bootstrap.site_join_state(p) == "highstate"
    assert bootstrap.site_startup_states(p) is None
    (tree["etc"] / "minion").write_text("startup_states: highstate\n")
    assert bootstrap.site_startup_states(p) == "highstate"


# --- discovery -----------------------------------------------------------------------------------


def answer(cluster=None, master="10.9.9.9", **mapping):
    if cluster is not None:
        mapping["eos_cluster"] = cluster
    return {"mapping": mapping, "master": master}


def test_discovery_keeps_eos_masters_and_filters_by_cluster():
    answers = {
        ("192.0.2.10", 4520): [answer("prod")],
        ("192.0.2.11", 4520): [answer("test")],
        ("192.0.2.12", 4520): [answer(None, role="plain salt")],
    }
    found = bootstrap.candidates(answers)
    assert [(e["address"], e["cluster"]) for e in found] == [
        ("192.0.2.10", "prod"),
        ("192.0.2.11", "test"),
    ]
    assert found[0]["advertised"] == "10.9.9.9"
    prod = bootstrap.matching(found, cluster="prod")
    assert bootstrap.choose(prod, "prod")["address"] == "192.0.2.10"


def test_discovery_honours_the_minion_discovery_mapping():
    found = bootstrap.candidates(
        {
            ("192.0.2.10", 4520): [answer("prod", dc="a")],
            ("192.0.2.11", 4520): [answer("prod", dc="b")],
        }
    )
    kept = bootstrap.matching(found, mapping={"dc": "b"}, match="all")
    assert [e["address"] for e in kept] == ["192.0.2.11"]


def test_several_masters_are_listed_and_master_is_asked_for():
    found = bootstrap.candidates(
        {("192.0.2.10", 4520): [answer("prod")], ("192.0.2.11", 4520): [answer("test")]}
    )
    with pytest.raises(bootstrap.StepFailed) as failed:
        bootstrap.choose(found)
    assert failed.value.step == "discover"
    assert "2 EOS masters answered: 192.0.2.10 (cluster prod), 192.0.2.11 (cluster test)" in str(
        failed.value
    )
    assert "mode=join master=<address>" in str(failed.value)


def test_no_master_is_a_clear_message():
    with pytest.raises(bootstrap.StepFailed, match="no EOS master of cluster 'prod' answered"):
        bootstrap.choose([], "prod")


def test_discovery_options_take_salts_defaults_and_check_values():
    assert bootstrap.discovery_options(False) == bootstrap.DISCOVERY_DEFAULTS
    assert bootstrap.discovery_options({"port": 4999, "attempts": 1})["port"] == 4999
    with pytest.raises(bootstrap.InvalidRequest, match="discovery:match: 'some'"):
        bootstrap.discovery_options({"match": "some"})


# --- the plan ------------------------------------------------------------------------------------


def test_the_join_plan_lists_every_step_and_its_changes(tree):
    p = tree["paths"]
    req = bootstrap.request("join", master="10.0.0.5")
    steps = bootstrap.plan(req, NODE, p, settings(), {}, None, True)
    assert [s.name for s in steps] == [
        "health",
        "checkpoint",
        "minion_config",
        "restart_minion",
        "register",
        "wait",
        "startup_state",
    ]
    by_name = {s.name: s.as_dict() for s in steps}
    assert by_name["minion_config"]["changes"] == {"file": p.minion_drop_in, "change": "created"}
    assert by_name["restart_minion"]["changes"] == {"service": "salt-minion", "change": "restarted"}
    # No publish port given: the master announces it, so the plan names only the ret port.
    assert "against 10.0.0.5 (port 4506)" in by_name["health"]["action"]


def test_the_single_plan_writes_both_drop_ins_and_restarts_both_daemons(tree):
    p = tree["paths"]
    req = bootstrap.Request("single", master="127.0.0.1")
    steps = bootstrap.plan(req, NODE, p, settings(restart=False), {}, "eos.roles", False)
    assert [s.name for s in steps] == [
        "health",
        "checkpoint",
        "master_config",
        "minion_config",
        "restart_master",
        "restart_minion",
        "register",
        "wait",
    ]
    restart = {s.name: s.as_dict() for s in steps}["restart_master"]
    assert restart["changes"] == {"service": None, "change": "none"}
    assert "restart it yourself" in restart["action"]


# --- execution -----------------------------------------------------------------------------------


def test_a_join_writes_the_drop_in_and_waits_for_active(tree, clock, services):
    calls = SaltCall(statuses=(None, "pending", "accepted", "active"), roles=["data"])
    world = make_world(tree, clock, services, salt_call=calls)
    req = bootstrap.request("join", master="10.0.0.5")
    done = run(tree, world, req)
    assert done["result"] is True, done
    assert done["outcome"]["status"] == "active"
    assert done["outcome"]["roles"] == ["data"]
    assert [step["step"] for step in done["done"]][-1] == "startup_state"
    written = salt.utils.yaml.safe_load(pathlib.Path(tree["paths"].minion_drop_in).read_text())
    assert written["master"] == "10.0.0.5"
    assert written["startup_states"] == "sls"
    assert services.calls == [("restart", "salt-minion")]
    statuses = [line["status"] for line in done["progress"]]
    assert statuses[0].startswith(f"node {NODE}: no answer from the master yet")
    assert statuses[-1].startswith(f"node {NODE}: active")
    assert checkpoint.find(tree["store"], done["checkpoint"])["label"] == "bootstrap-join"


def test_a_failed_health_check_changes_nothing(tree, clock, services):
    before = snapshot(tree["etc"])
    world = make_world(tree, clock, services, health=failing_health)
    done = run(tree, world, bootstrap.request("join", master="10.0.0.5"))
    assert done["result"] is False
    assert done["failed_step"] == "health"
    assert "master_reachable: cannot connect to 10.0.0.5:4505" in done["error"]
    assert done["rollback"] == {"done": False, "reason": "nothing was changed"}
    assert snapshot(tree["etc"]) == before
    assert services.calls == []
    assert checkpoint.checkpoints(tree["store"]) == []


def test_single_mode_ignores_the_master_checks_of_the_master_it_creates(tree, clock, services):
    world = make_world(tree, clock, services, health=failing_health)
    done = run(tree, world, bootstrap.Request("single", master="127.0.0.1"))
    assert done["result"] is True, done
    master = salt.utils.yaml.safe_load(pathlib.Path(tree["paths"].master_drop_in).read_text())
    assert master["discovery"] == {"mapping": {"eos_cluster": "eos"}}
    assert services.calls == [("restart", "salt-master"), ("restart", "salt-minion")]


def test_rollback_after_an_injected_failure_restores_the_files(tree, clock, services):
    etc = tree["etc"]
    (etc / "minion.d" / "eos.conf").write_text("master: old-master\n")
    before = snapshot(etc)
    services.failing.add(("restart", "salt-minion"))
    world = make_world(tree, clock, services)
    done = run(tree, world, bootstrap.Request("single", master="127.0.0.1"))

    assert done["result"] is False
    assert done["failed_step"] == "restart_minion"
    assert done["error"] == "service.restart salt-minion failed"
    assert snapshot(etc) == before
    assert not (etc / "master.d").exists()  # the directory the bootstrap made is gone too
    rollback = done["rollback"]
    assert rollback["done"] is True
    assert rollback["files"]["restored"] == [str(etc / "minion.d" / "eos.conf")]
    assert rollback["files"]["removed"] == [str(etc / "master.d" / "eos.conf")]
    # Both daemons run on the restored config again.
    assert rollback["services"]["salt-master"] == "restarted on the restored config"
    assert services.calls[-2:] == [("restart", "salt-master"), ("restart", "salt-minion")]


def test_a_daemon_that_was_stopped_is_stopped_again(tree, clock, services):
    services.units["salt-master"]["active"] = False
    world = make_world(tree, clock, services, up=False)
    done = run(tree, world, bootstrap.Request("single", master="127.0.0.1"))
    assert done["failed_step"] == "restart_master"
    assert "does not answer on 127.0.0.1 ports 4505 and 4506" in done["error"]
    assert done["rollback"]["services"] == {"salt-master": "stopped (was not running)"}
    assert services.units["salt-master"]["active"] is False


def test_no_status_from_the_master_rolls_back(tree, clock, services):
    before = snapshot(tree["etc"])
    world = make_world(tree, clock, services, salt_call=SaltCall(statuses=[None]))
    done = run(tree, world, bootstrap.request("join", master="10.0.0.5"), opts=settings(timeout=20))
    assert done["failed_step"] == "wait"
    assert "gave no status for node-7 within 20 s" in done["error"]
    assert done["rollback"]["done"] is True
    assert snapshot(tree["etc"]) == before


def test_a_join_the_master_failed_keeps_the_node_pointed_at_it(tree, clock, services):
    world = make_world(tree, clock, services, salt_call=SaltCall(statuses=["accepted", "failed"]))
    done = run(tree, world, bootstrap.request("join", master="10.0.0.5"))
    assert done["failed_step"] == "wait"
    assert "salt-run eos_cluster.accept node-7 retries" in done["error"]
    assert done["rollback"]["done"] is False
    written = salt.utils.yaml.safe_load(pathlib.Path(tree["paths"].minion_drop_in).read_text())
    assert written["master"] == "10.0.0.5"
    assert "startup_states" not in written


def test_a_pending_node_says_how_to_accept_it(tree, clock, services):
    calls = SaltCall(statuses=["pending"], register_ok=False)
    world = make_world(tree, clock, services, salt_call=calls)
    done = run(tree, world, bootstrap.request("join", master="10.0.0.5"), opts=settings(timeout=30))
    assert done["failed_step"] == "wait"
    assert "node-7 is pending, not active, after 30 s" in done["error"]
    assert "salt-run eos_cluster.accept node-7" in done["error"]
    register = next(step for step in done["done"] if step["step"] == "register")
    assert "not sent yet (Minion failed to authenticate)" in register["result"]


def test_the_wait_is_bounded(tree, clock, services):
    calls = SaltCall(statuses=["accepted"])
    world = make_world(tree, clock, services, salt_call=calls)
    start = clock()
    run(tree, world, bootstrap.request("join", master="10.0.0.5"), opts=settings(timeout=60))
    assert clock() - start <= 60
    assert calls.calls.count("pillar.get") == 13  # at 0, 5, ... 60 s


# --- the master's key: master_finger -------------------------------------------------------------


def master_key(tmp_path, name="master.pub"):
    """A new RSA public key file, as a master keeps it, and its fingerprint as Salt prints it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / name
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path, salt.utils.crypt.pem_finger(str(path), sum_type="sha256")


@pytest.fixture
def fingers(tmp_path):
    """The fingerprints of two masters' keys: the one to join, and another."""
    return master_key(tmp_path, "right.pub")[1], master_key(tmp_path, "wrong.pub")[1]


def refusal_log(expected, presented_key, caplog):
    """What salt-call prints (stderr) when the master's key does not match master_finger."""
    auth = types.SimpleNamespace(opts={"hash_type": "sha256"})
    with (
        caplog.at_level(logging.CRITICAL, logger="salt.crypt"),
        pytest.raises(SystemExit) as exited,
    ):
        salt.crypt.AsyncAuth._finger_fail(auth, expected, str(presented_key))
    assert exited.value.code == 42
    message = next(r.getMessage() for r in caplog.records if r.name == "salt.crypt")
    return f"[CRITICAL] {message}\n"


def test_a_fingerprint_as_salt_prints_it_is_taken(fingers):
    right, _ = fingers
    assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){31}", right)
    assert bootstrap.check_master_finger(right) == right
    assert bootstrap.check_master_finger(f" {right.upper()} ") == right
    assert bootstrap.check_master_finger(right.replace(":", "")) == right


@pytest.mark.parametrize(
    "finger, hash_type, message",
    [
        ("4f:1e", "sha256", "'4f:1e' has 2 bytes, but a sha256 fingerprint has 32"),
        (":".join(["ab"] * 16), "sha256", "has 16 bytes, but a sha256 fingerprint has 32"),
        (":".join(["ab"] * 32), "sha512", "has 32 bytes, but a sha512 fingerprint has 64"),
        ("zz:1e", "sha256", "'zz:1e' is not a key fingerprint as `salt-key -F master` prints"),
        ("4f:1e:", "sha256", "is not a key fingerprint"),
        ("abc", "sha256", "is not a key fingerprint"),
        ("", "sha256", "is not a key fingerprint"),
        (42, "sha256", "42 is not a key fingerprint"),
        ("4f:1e", "rot13", "hash_type: 'rot13' is not a hash Salt can use"),
    ],
)
def test_a_malformed_fingerprint_is_refused_by_name(finger, hash_type, message):
    with pytest.raises(bootstrap.InvalidRequest, match=re.escape(message)):
        bootstrap.check_master_finger(finger, hash_type)


def test_master_finger_is_for_join_and_discover(fingers):
    right, _ = fingers
    assert bootstrap.request("join", master="10.0.0.5", master_finger=right).master_finger == right
    assert bootstrap.request("discover", master_finger=right.upper()).master_finger == right
    with pytest.raises(bootstrap.InvalidRequest, match="drop master_finger=, or use mode=join"):
        bootstrap.request("single", master_finger=right)
    with pytest.raises(bootstrap.InvalidRequest, match=r"^master_finger: "):
        bootstrap.request("join", master="10.0.0.5", master_finger="4f:1e")


def test_the_minion_drop_in_pins_the_masters_key(fingers):
    right, other = fingers
    req = bootstrap.request("join", master="10.0.0.5", master_finger=right)
    text = bootstrap.render_minion(req, NODE)
    data = salt.utils.yaml.safe_load(text)
    assert data["master_finger"] == right
    assert data["eos_bootstrap"]["master_finger"] == right
    assert bootstrap.already_done(req, text)
    # Another fingerprint, or none, is another bootstrap: the drop-in must change.
    assert not bootstrap.already_done(
        bootstrap.request("join", master="10.0.0.5", master_finger=other), text
    )
    assert not bootstrap.already_done(bootstrap.request("join", master="10.0.0.5"), text)
    unpinned = bootstrap.render_minion(bootstrap.request("join", master="10.0.0.5"), NODE)
    assert not bootstrap.already_done(req, unpinned)
    steps = bootstrap.plan(req, NODE, bootstrap.paths("/etc/salt/minion"), settings(), {})
    config_step = next(step for step in steps if step.name == "minion_config")
    assert f"master_finger {right}" in config_step.action


def test_discovery_picks_the_master_announcing_the_fingerprint(fingers):
    right, other = fingers
    found = bootstrap.candidates(
        {
            ("192.0.2.10", 4520): [answer("prod", eos_master_finger=other)],
            ("192.0.2.11", 4520): [answer("prod", eos_master_finger=right.upper())],
            ("192.0.2.12", 4520): [answer("prod")],
        }
    )
    assert found[1]["finger"] == right
    chosen = bootstrap.choose(bootstrap.pinned(found, right), "prod")
    assert chosen["address"] == "192.0.2.11"
    # Without a fingerprint to look for, three masters are three candidates.
    with pytest.raises(bootstrap.StepFailed, match="3 EOS masters of cluster 'prod' answered"):
        bootstrap.choose(bootstrap.pinned(found, None), "prod")


def test_a_master_announcing_another_key_is_dropped(fingers):
    right, other = fingers
    found = bootstrap.candidates(
        {
            ("192.0.2.10", 4520): [answer("prod", eos_master_finger=other)],
            ("192.0.2.12", 4520): [answer("prod")],
        }
    )
    # The one announcing nothing stays: its key is checked when the minion connects.
    assert [e["address"] for e in bootstrap.pinned(found, right)] == ["192.0.2.12"]
    with pytest.raises(bootstrap.StepFailed) as refused:
        bootstrap.pinned(found[:1], right)
    assert refused.value.step == "discover"
    assert str(refused.value) == (
        f"no EOS master that answered SSDP discovery has the key master_finger {right}: "
        f"192.0.2.10 announces {other}; nothing was changed"
    )
    assert bootstrap.pinned([], right) == []


def test_salts_refusal_of_the_masters_key_is_read(tmp_path, caplog):
    presented, presented_finger = master_key(tmp_path)
    expected = ":".join(["ab"] * 32)
    stderr = refusal_log(expected, presented, caplog)
    assert bootstrap.master_key_refusal({"retcode": 42, "stderr": stderr}) == {
        "expected": expected,
        "presented": presented_finger,
    }
    assert bootstrap.master_key_refusal({"retcode": 2, "stderr": "Minion failed to auth"}) is None
    assert bootstrap.master_key_refusal({"retcode": 0, "stderr": None}) is None


class KeyCachingSaltCall(SaltCall):
    """salt-call meeting a master: caches its key like Salt, then refuses it (exit 42)."""

    def __init__(self, cache, stderr, refuse_at="eos_cluster.register", **kwargs):
        super().__init__(register_ok=False, **kwargs)
        self.cache = cache
        self.stderr = stderr
        self.refuse_at = refuse_at

    def __call__(self, args, timeout):
        if args[0] != self.refuse_at:
            return super().__call__(args, timeout)
        self.calls.append(args[0])
        self.cache.write_text(
            "-----BEGIN PUBLIC KEY-----\nthe wrong master\n-----END PUBLIC KEY-----"
        )
        return {"retcode": 42, "data": None, "stderr": self.stderr}


@pytest.mark.parametrize(
    "refuse_at, step", [("eos_cluster.register", "register"), ("pillar.get", "wait")]
)
def test_a_master_with_another_key_is_refused_and_rolled_back(
    tree, clock, services, tmp_path, caplog, fingers, refuse_at, step
):
    right, _ = fingers
    impostor, impostor_finger = master_key(tmp_path, "impostor.pub")
    etc = tree["etc"]
    (etc / "minion.d" / "eos.conf").write_text("master: old-master\n")
    before = snapshot(etc)
    cache = tmp_path / "pki" / "minion_master.pub"
    cache.parent.mkdir()
    calls = KeyCachingSaltCall(cache, refusal_log(right, impostor, caplog), refuse_at)
    world = make_world(tree, clock, services, salt_call=calls)
    world.master_key_cache = str(cache)
    req = bootstrap.request("join", master="10.0.0.5", master_finger=right)

    done = run(tree, world, req, opts=settings(call_timeout=5))

    assert done["result"] is False
    assert done["failed_step"] == step
    assert done["error"].startswith(
        f"the master at 10.0.0.5 presents a key with fingerprint {impostor_finger}, not "
        f"master_finger {right}: it is not the master to join"
    )
    assert calls.calls.count(refuse_at) == 1  # refused at once, not retried
    rollback = done["rollback"]
    assert rollback["done"] is True
    assert snapshot(etc) == before
    # The key Salt cached from the wrong master would make the restored master refused.
    assert not cache.exists()
    assert rollback["master_key"] == f"{cache}: cached during the bootstrap, removed"
    assert rollback["services"] == {"salt-minion": "restarted on the restored config"}


def test_a_master_key_cached_before_the_bootstrap_is_kept(tree, clock, services, tmp_path):
    cache = tmp_path / "minion_master.pub"
    cache.write_text("the old master's key")
    services.failing.add(("restart", "salt-minion"))
    world = make_world(tree, clock, services)
    world.master_key_cache = str(cache)
    done = run(tree, world, bootstrap.request("join", master="10.0.0.5"))
    assert done["failed_step"] == "restart_minion"
    assert "master_key" not in done["rollback"]
    assert cache.read_text() == "the old master's key"


# --- the request checked whole -----------------------------------------------------------------


def minion_opts(tmp_path):
    return {"id": "node-1", "conf_file": str(tmp_path / "minion")}


def test_prepare_names_the_argument_at_fault_before_anything_is_read(tmp_path):
    with pytest.raises(bootstrap.InvalidRequest, match="mode join needs master="):
        bootstrap.prepare(config.Layers([]), minion_opts(tmp_path), "join")
    with pytest.raises(bootstrap.InvalidRequest, match="timeout"):
        bootstrap.prepare(config.Layers([]), minion_opts(tmp_path), "single", timeout=0)


def test_prepare_gives_single_mode_the_local_master_and_the_configured_cluster(tmp_path):
    layers = config.Layers([("minion config", {"bootstrap": {"cluster": "prod"}})])
    ready = bootstrap.prepare(layers, minion_opts(tmp_path), "single")
    assert (ready.req.master, ready.req.cluster, ready.minion_id) == (
        bootstrap.SINGLE_MASTER,
        "prod",
        "node-1",
    )
    assert ready.paths.minion_conf == str(tmp_path / "minion")


def test_a_master_key_the_drop_in_would_hide_is_a_site_config_conflict(tmp_path):
    opts = minion_opts(tmp_path)
    ready = bootstrap.prepare(
        config.Layers([]), opts, "single", master_config_dir=str(tmp_path / "m.d")
    )
    pathlib.Path(ready.paths.master_conf).write_text("reactor: []\n")
    with pytest.raises(bootstrap.SiteConfigConflict, match="sets reactor") as err:
        bootstrap.layout(ready)
    # A configuration problem, not a bad argument: Salt reports it as a CommandExecutionError.
    assert isinstance(err.value, errors.InvalidConfig)
    assert not os.path.exists(ready.paths.master_drop_in)


def test_the_layout_leaves_a_join_state_the_site_sets_alone(tmp_path):
    ready = bootstrap.prepare(
        config.Layers([]), minion_opts(tmp_path), "single", master_config_dir=str(tmp_path / "m.d")
    )
    site = pathlib.Path(ready.paths.master_dir) / "site.conf"
    site.parent.mkdir()
    site.write_text("eos: {join: {state: site.join}}\n")
    assert bootstrap.layout(ready).join_state is None
    site.unlink()
    assert bootstrap.layout(ready).join_state == bootstrap.JOIN_STATE
