"""
eos_cluster.bootstrap and the state eos_cluster.bootstrapped with mocked Salt dunders.

The minion's config is a temporary tree; two listening sockets stand in for a master's ports,
so the health checks run for real. salt-call (registration and the node's status) and SSDP
discovery are replaced by fakes; everything the bootstrap writes is checked on disk.
"""

import pathlib
import re
import socket

import pytest
import salt.config
import salt.utils.yaml
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.modules import eos_cluster as eos_cluster_module
from saltext.eos.states import eos_cluster as eos_cluster_state

MINION_ID = "node-7"


@pytest.fixture
def master_ports():
    listeners = []
    for _ in range(2):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listeners.append(listener)
    yield [listener.getsockname()[1] for listener in listeners]
    for listener in listeners:
        listener.close()


@pytest.fixture
def closed_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


@pytest.fixture
def etc(tmp_path):
    directory = tmp_path / "etc" / "salt"
    (directory / "minion.d").mkdir(parents=True)
    (directory / "minion").write_text("log_level: warning\n")
    (directory / "minion.d" / "site.conf").write_text("grains: {rack: r9}\n")
    return directory


@pytest.fixture
def salt_calls():
    """What salt-call answers: registration, then the node's status."""
    answers = {"status": "active", "roles": ["data"], "calls": []}

    def fake(args, timeout):
        answers["calls"].append(args)
        if args[0] == "eos_cluster.register":
            return {"retcode": 0, "data": {"sent": True}, "stderr": ""}
        data = {"node_status": answers["status"], "roles": answers["roles"]}
        return {"retcode": 0, "data": data, "stderr": ""}

    answers["fake"] = fake
    return answers


@pytest.fixture
def restarts():
    return []


@pytest.fixture
def eos_config():
    return {
        "health": {"supported_os": {"Debian": "11"}, "min_root_free_gb": 0},
        "bootstrap": {"restart": False, "timeout": 30, "poll_interval": 1},
    }


@pytest.fixture
def configure_loader_modules(etc, tmp_path, eos_config, restarts, salt_calls, monkeypatch):
    monkeypatch.setattr(eos_cluster_module, "_salt_call", salt_calls["fake"])
    salt_functions = {
        "cmd.run_all": lambda *a, **k: {"retcode": 0, "stdout": "yes\n", "stderr": ""},
        "service.available": lambda name: name == "salt-minion",
        "service.status": lambda name, sig=None: True,
        "service.enabled": lambda name, **kwargs: True,
        "service.restart": lambda name, **kwargs: restarts.append(name) or True,
    }
    opts = {
        "id": MINION_ID,
        "conf_file": str(etc / "minion"),
        "default_include": "minion.d/*.conf",
        "cachedir": str(tmp_path / "cache"),
        "master": "salt",
        "discovery": False,
        "test": False,
        "eos": eos_config,
    }
    functions = {}
    module_globals = {
        "__opts__": opts,
        "__grains__": {"id": MINION_ID, "os": "Debian", "osrelease": "12"},
        "__pillar__": {},
        "__salt__": functions,
        "__context__": {},
    }
    functions.update(salt_functions)
    functions["eos_cluster.bootstrap"] = eos_cluster_module.bootstrap
    return {
        eos_cluster_module: module_globals,
        eos_cluster_state: {"__opts__": opts, "__salt__": functions},
    }


def snapshot(directory):
    return {str(p): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def drop_in(etc):
    path = etc / "minion.d" / "eos.conf"
    return salt.utils.yaml.safe_load(path.read_text()) if path.exists() else None


# --- bad input: a clear error, nothing changed ---------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "cluster"}, "mode: 'cluster' is not one of single, join, discover"),
        ({"mode": "join"}, "mode join needs master=<address>"),
        ({"mode": "join", "master": "10.0.0.300"}, "is not an IP address or host name"),
        ({"mode": "join", "master": "salt:70000"}, "is not a TCP port"),
        ({"mode": "join", "master": "salt", "timeout": -1}, "timeout: -1 must be > 0"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(etc, tmp_path, kwargs, message):
    before = snapshot(tmp_path)
    with pytest.raises(SaltInvocationError, match=message):
        eos_cluster_module.bootstrap(**kwargs)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"minion_id": "web*"}, "minion_id: node id 'web\\*': '\\*' at position 4"),
        ({}, "this minion's id \\(set minion_id=<id> to change it\\): node id 'node 7'"),
    ],
)
def test_an_id_the_master_would_refuse_stops_the_bootstrap_before_any_change(
    etc, tmp_path, kwargs, message
):
    eos_cluster_module.__opts__["id"] = "node 7"
    before = snapshot(tmp_path)
    with pytest.raises(SaltInvocationError, match=message):
        eos_cluster_module.bootstrap(mode="join", master="salt", **kwargs)
    assert snapshot(tmp_path) == before


def test_an_unreachable_master_fails_the_health_check_and_changes_nothing(
    etc, tmp_path, closed_port
):
    (etc / "minion.d" / "eos.conf").write_text("master: old\n")
    before = snapshot(tmp_path)
    done = eos_cluster_module.bootstrap(mode="join", master=f"127.0.0.1:{closed_port}")
    assert done["result"] is False
    assert done["failed_step"] == "health"
    # No publish port asked for: the minion will use the one the master announces, so only
    # the (closed) return port is probed, never a default the minion would not use.
    assert f"master_reachable: cannot connect to 127.0.0.1:{closed_port} " in done["error"]
    assert ":4505" not in done["error"]
    assert eos_cluster_module.__context__["retcode"] == 1
    assert snapshot(tmp_path) == before


def test_a_daemon_the_service_manager_does_not_know_is_refused_before_any_change(
    etc, tmp_path, master_ports, eos_config
):
    eos_config["bootstrap"]["restart"] = {"minion": "salt-minion@blue"}
    before = snapshot(tmp_path)
    with pytest.raises(CommandExecutionError, match="salt-minion@blue is not a service"):
        eos_cluster_module.bootstrap(
            mode="join",
            master="127.0.0.1",
            port=master_ports[1],
            publish_port=master_ports[0],
        )
    assert snapshot(tmp_path) == before


# --- join ----------------------------------------------------------------------------------------


def join(master_ports, **kwargs):
    return eos_cluster_module.bootstrap(
        mode="join",
        master="127.0.0.1",
        port=master_ports[1],
        publish_port=master_ports[0],
        **kwargs,
    )


def test_dry_run_returns_the_plan_and_changes_nothing(etc, tmp_path, master_ports):
    before = snapshot(tmp_path)
    done = join(master_ports, dry_run=True)
    assert done["result"] is True
    assert done["changed"] is False
    assert done["dry_run"] is True
    assert [step["step"] for step in done["plan"]] == [
        "health",
        "checkpoint",
        "minion_config",
        "restart_minion",
        "register",
        "wait",
        "startup_state",
    ]
    assert done["plan"][2]["changes"] == {
        "file": str(etc / "minion.d" / "eos.conf"),
        "change": "created",
    }
    assert snapshot(tmp_path) == before


def test_a_join_writes_the_drop_in_registers_and_reports_the_roles(etc, master_ports, salt_calls):
    done = join(master_ports)
    assert done["result"] is True, done
    assert done["outcome"]["status"] == "active"
    assert done["outcome"]["roles"] == ["data"]
    assert [call[0] for call in salt_calls["calls"]] == ["eos_cluster.register", "pillar.get"]
    written = drop_in(etc)
    assert written["master"] == "127.0.0.1"
    assert written["master_port"] == master_ports[1]
    assert written["publish_port"] == master_ports[0]
    assert written["id"] == MINION_ID
    assert written["startup_states"] == "sls"
    assert (etc / "minion.d" / "site.conf").read_text() == "grains: {rack: r9}\n"
    assert (etc / "minion").read_text() == "log_level: warning\n"
    assert eos_cluster_module.checkpoints()[0]["label"] == "bootstrap-join"


def test_a_second_join_to_the_same_master_changes_nothing(etc, master_ports, salt_calls):
    join(master_ports)
    before = (etc / "minion.d" / "eos.conf").read_bytes()
    again = join(master_ports)
    assert again["changed"] is False
    assert again["already"] is True
    assert "plan" not in again
    assert "already bootstrapped (join, master 127.0.0.1)" in again["comment"]
    assert (etc / "minion.d" / "eos.conf").read_bytes() == before


def test_a_restart_failure_rolls_the_drop_in_back(
    etc, tmp_path, master_ports, eos_config, configure_loader_modules
):
    (etc / "minion.d" / "eos.conf").write_text("master: old-master\n")
    before = snapshot(etc)
    eos_config["bootstrap"]["restart"] = {"master": False}

    def broken(name, **kwargs):
        raise CommandExecutionError("Job for salt-minion.service failed")

    eos_cluster_module.__salt__["service.restart"] = broken
    done = join(master_ports)
    assert done["result"] is False
    assert done["failed_step"] == "restart_minion"
    assert "service.restart salt-minion: Job for salt-minion.service failed" in done["error"]
    assert done["rollback"]["files"]["restored"] == [str(etc / "minion.d" / "eos.conf")]
    assert snapshot(etc) == before


# --- discover ------------------------------------------------------------------------------------


class FakeSSDP:
    answers = {}

    def __init__(self, **config):
        self.config = config

    def discover(self):
        return dict(FakeSSDP.answers)


@pytest.fixture
def ssdp(monkeypatch):
    monkeypatch.setattr(eos_cluster_module.salt.utils.ssdp, "SSDPDiscoveryClient", FakeSSDP)
    monkeypatch.setattr(eos_cluster_module.time, "sleep", lambda seconds: None)
    FakeSSDP.answers = {}
    return FakeSSDP


def test_discover_joins_the_one_eos_master_found(etc, ssdp, master_ports):
    ssdp.answers = {
        ("127.0.0.1", 4520): [{"mapping": {"eos_cluster": "prod"}, "master": "10.1.1.1"}],
        ("127.0.0.2", 4520): [{"mapping": {}, "master": "10.1.1.2"}],  # not an EOS master
    }
    done = eos_cluster_module.bootstrap(
        mode="discover", port=master_ports[1], publish_port=master_ports[0], dry_run=True
    )
    assert done["discovered"]["address"] == "127.0.0.1"
    assert done["master"] == "127.0.0.1"
    done = eos_cluster_module.bootstrap(
        mode="discover", port=master_ports[1], publish_port=master_ports[0]
    )
    assert done["result"] is True, done
    assert drop_in(etc)["eos_bootstrap"] == {
        "mode": "discover",
        "master": "127.0.0.1",
        "port": master_ports[1],
        "cluster": None,
    }


def test_discover_lists_several_masters_and_changes_nothing(etc, tmp_path, ssdp):
    ssdp.answers = {
        ("192.0.2.10", 4520): [{"mapping": {"eos_cluster": "prod"}}],
        ("192.0.2.11", 4520): [{"mapping": {"eos_cluster": "test"}}],
    }
    before = snapshot(tmp_path)
    done = eos_cluster_module.bootstrap(mode="discover")
    assert done["result"] is False
    assert done["failed_step"] == "discover"
    assert "192.0.2.10 (cluster prod), 192.0.2.11 (cluster test)" in done["error"]
    assert snapshot(tmp_path) == before
    only = eos_cluster_module.bootstrap(mode="discover", cluster="test", dry_run=True)
    assert only["master"] == "192.0.2.11"


def test_discover_with_no_master_says_so(etc, ssdp):
    done = eos_cluster_module.bootstrap(mode="discover", cluster="prod")
    assert done["failed_step"] == "discover"
    assert "no EOS master of cluster 'prod' answered SSDP discovery" in done["error"]


# --- single --------------------------------------------------------------------------------------


def test_single_writes_the_master_and_minion_drop_ins(etc, monkeypatch, master_ports):
    monkeypatch.setattr(eos_cluster_module, "_ports_open", lambda host, ports: True)
    done = eos_cluster_module.bootstrap(mode="single", cluster="prod")
    assert done["result"] is True, done
    master = salt.utils.yaml.safe_load((etc / "master.d" / "eos.conf").read_text())
    assert master["discovery"] == {"mapping": {"eos_cluster": "prod"}}
    assert master["eos"] == {"join": {"state": "eos.roles"}}
    assert drop_in(etc)["master"] == "127.0.0.1"
    assert drop_in(etc)["eos_bootstrap"]["mode"] == "single"


# --- the state -----------------------------------------------------------------------------------


def test_the_state_with_test_true_shows_the_plan(etc, tmp_path, master_ports):
    before = snapshot(tmp_path)
    eos_cluster_state.__opts__["test"] = True
    ret = eos_cluster_state.bootstrapped(
        "eos", mode="join", master="127.0.0.1", port=master_ports[1], publish_port=master_ports[0]
    )
    assert ret["result"] is None
    assert [step["step"] for step in ret["changes"]["plan"]][:3] == [
        "health",
        "checkpoint",
        "minion_config",
    ]
    assert "would bootstrap this node (join, master 127.0.0.1)" in ret["comment"]
    assert snapshot(tmp_path) == before


def test_the_state_is_idempotent(etc, master_ports):
    args = {"mode": "join", "master": "127.0.0.1", "port": master_ports[1]}
    args["publish_port"] = master_ports[0]
    first = eos_cluster_state.bootstrapped("eos", **args)
    assert first["result"] is True, first
    assert first["changes"]["outcome"] == {"status": "active", "roles": ["data"]}
    assert f"node {MINION_ID} is active" in first["comment"]
    second = eos_cluster_state.bootstrapped("eos", **args)
    assert second["result"] is True
    assert second["changes"] == {}
    assert "already bootstrapped" in second["comment"]


def test_the_state_fails_with_the_step_on_an_unreachable_master(etc, closed_port):
    ret = eos_cluster_state.bootstrapped("eos", mode="join", master=f"127.0.0.1:{closed_port}")
    assert ret["result"] is False
    assert ret["comment"].startswith("bootstrap failed at step health: critical health checks")
    assert not (etc / "minion.d" / "eos.conf").exists()


def test_the_state_reports_bad_input(etc):
    ret = eos_cluster_state.bootstrapped("eos", mode="mesh")
    assert ret["result"] is False
    assert "mode: 'mesh' is not one of" in ret["comment"]


def test_the_module_docstring_shows_the_bootstrap_config():
    assert "bootstrap:" in eos_cluster_module.__doc__
    assert "CLI Example" in eos_cluster_module.bootstrap.__doc__
    assert pathlib.Path(eos_cluster_state.__file__).name == "eos_cluster.py"


def test_single_refuses_to_hide_keys_of_the_main_master_file(etc, tmp_path):
    (etc / "master").write_text(
        "reactor:\n  - 'site/tag': [salt://site.sls]\neos: {accept: auto}\n"
    )
    before = snapshot(tmp_path)
    with pytest.raises(CommandExecutionError, match="sets eos, reactor: Salt lays") as refused:
        eos_cluster_module.bootstrap(mode="single", dry_run=True)
    assert "master.d/site.conf" in str(refused.value)
    assert snapshot(tmp_path) == before


def test_a_join_state_set_by_the_site_is_not_written(etc, monkeypatch):
    monkeypatch.setattr(eos_cluster_module, "_ports_open", lambda host, ports: True)
    (etc / "master").write_text("eos: {join: {state: highstate}, accept: auto}\n")
    done = eos_cluster_module.bootstrap(mode="single")
    assert done["result"] is True, done
    master = salt.utils.yaml.safe_load((etc / "master.d" / "eos.conf").read_text())
    assert "eos" not in master


def test_the_drop_in_keeps_the_nodes_own_eos_settings(etc, master_ports):
    """Salt replaces a main-file key with a drop-in's: the drop-in must not carry ``eos``."""
    import salt.config

    (etc / "minion").write_text("eos: {manage_software: false}\n")
    join(master_ports)
    opts = salt.config.minion_config(str(etc / "minion"), cache_minion_id=False)
    assert opts["eos"] == {"manage_software": False}
    assert opts["master"] == "127.0.0.1"
    assert opts["startup_states"] == "sls"


# --- master_finger -------------------------------------------------------------------------------

RIGHT = ":".join(["4f"] * 31 + ["9a"])
OTHER = ":".join(["c3"] * 32)


def test_a_pinned_join_writes_salts_master_finger(etc, master_ports):
    done = join(master_ports, master_finger=RIGHT.upper())
    assert done["result"] is True, done
    assert drop_in(etc)["master_finger"] == RIGHT
    assert drop_in(etc)["eos_bootstrap"]["master_finger"] == RIGHT
    # Salt reads it from the drop-in: salt-minion refuses a master with another key.
    opts = salt.config.minion_config(str(etc / "minion"), cache_minion_id=False)
    assert opts["master_finger"] == RIGHT
    assert join(master_ports, master_finger=RIGHT)["already"] is True
    assert "already" not in join(master_ports, master_finger=OTHER)


@pytest.mark.parametrize(
    "finger, message",
    [
        ("4f:1e", "master_finger: '4f:1e' has 2 bytes, but a sha256 fingerprint has 32"),
        ("not a finger", "is not a key fingerprint as `salt-key -F master` prints it"),
    ],
)
def test_a_malformed_master_finger_changes_nothing(etc, tmp_path, master_ports, finger, message):
    before = snapshot(tmp_path)
    with pytest.raises(SaltInvocationError, match=re.escape(message)):
        join(master_ports, master_finger=finger)
    assert snapshot(tmp_path) == before


def test_master_finger_follows_the_minions_hash_type(etc, master_ports, configure_loader_modules):
    eos_cluster_module.__opts__["hash_type"] = "sha512"
    with pytest.raises(SaltInvocationError, match="has 32 bytes, but a sha512 fingerprint has 64"):
        join(master_ports, master_finger=RIGHT, dry_run=True)
    longer = ":".join(["4f"] * 64)
    assert join(master_ports, master_finger=longer, dry_run=True)["result"] is True


def test_a_master_with_another_key_is_refused_with_both_fingerprints(
    etc, tmp_path, master_ports, salt_calls, monkeypatch
):
    (etc / "minion.d" / "eos.conf").write_text("master: old-master\n")
    before = snapshot(etc)
    refusal = (
        "[CRITICAL] The specified fingerprint in the master configuration file:\n"
        f"{RIGHT}\nDoes not match the authenticating master's key:\n{OTHER}\n"
        "Verify that the configured fingerprint matches the fingerprint of the correct master"
    )

    def wrong_master(args, timeout):
        salt_calls["calls"].append(args)
        return {"retcode": 42, "data": None, "stderr": refusal}

    monkeypatch.setattr(eos_cluster_module, "_salt_call", wrong_master)
    done = join(master_ports, master_finger=RIGHT)
    assert done["result"] is False
    assert done["failed_step"] == "register"
    assert f"presents a key with fingerprint {OTHER}, not master_finger {RIGHT}" in done["error"]
    assert done["rollback"]["done"] is True
    assert snapshot(etc) == before
    assert eos_cluster_module.__context__["retcode"] == 1


def test_discover_joins_the_master_announcing_the_fingerprint(etc, ssdp, master_ports):
    ssdp.answers = {
        ("127.0.0.1", 4520): [{"mapping": {"eos_cluster": "prod", "eos_master_finger": RIGHT}}],
        ("127.0.0.2", 4520): [{"mapping": {"eos_cluster": "prod", "eos_master_finger": OTHER}}],
        ("127.0.0.3", 4520): [{"mapping": {"eos_cluster": "prod"}}],
    }
    found = eos_cluster_module.bootstrap(
        mode="discover",
        port=master_ports[1],
        publish_port=master_ports[0],
        master_finger=RIGHT,
    )
    assert found["result"] is True, found
    assert found["discovered"]["address"] == "127.0.0.1"
    assert drop_in(etc)["master"] == "127.0.0.1"
    assert drop_in(etc)["master_finger"] == RIGHT


def test_discover_refuses_when_every_master_announces_another_key(etc, tmp_path, ssdp):
    ssdp.answers = {
        ("192.0.2.10", 4520): [{"mapping": {"eos_cluster": "prod", "eos_master_finger": OTHER}}],
    }
    before = snapshot(tmp_path)
    done = eos_cluster_module.bootstrap(mode="discover", master_finger=RIGHT)
    assert done["result"] is False
    assert done["failed_step"] == "discover"
    assert f"has the key master_finger {RIGHT}: 192.0.2.10 announces {OTHER}" in done["error"]
    assert snapshot(tmp_path) == before


def test_the_state_passes_master_finger(etc, tmp_path, master_ports):
    eos_cluster_state.__opts__["test"] = True
    ret = eos_cluster_state.bootstrapped(
        "eos",
        mode="join",
        master="127.0.0.1",
        port=master_ports[1],
        publish_port=master_ports[0],
        master_finger=RIGHT,
    )
    assert ret["result"] is None
    config_step = next(s for s in ret["changes"]["plan"] if s["step"] == "minion_config")
    assert f"master_finger {RIGHT}" in config_step["action"]
    eos_cluster_state.__opts__["test"] = False
    refused = eos_cluster_state.bootstrapped("eos", mode="single", master_finger=RIGHT)
    assert refused["result"] is False
    assert "drop master_finger=" in refused["comment"]
