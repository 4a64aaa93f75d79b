"""The eos_cluster execution module with mocked Salt dunders."""

import socket
from unittest.mock import MagicMock

import pytest
import salt.crypt
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.modules import eos_cluster as eos_cluster_module
from saltext.eos.utils.cluster import registry

MINION_ID = "node-7"


@pytest.fixture(scope="module")
def keypair():
    return salt.crypt.gen_keys(2048)


@pytest.fixture
def pki_dir(tmp_path, keypair):
    directory = tmp_path / "pki"
    directory.mkdir()
    (directory / "minion.pem").write_text(keypair[0])
    return directory


@pytest.fixture
def master_ports():
    """Two listening sockets standing in for the master's publish and return ports."""
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
def eos_config():
    return {"health": {"supported_os": {"Debian": "11"}, "min_root_free_gb": 0}}


@pytest.fixture
def event_send():
    return MagicMock(return_value=True)


@pytest.fixture
def run_all():
    return MagicMock(return_value={"retcode": 0, "stdout": "yes\n", "stderr": ""})


@pytest.fixture
def configure_loader_modules(pki_dir, master_ports, eos_config, event_send, run_all):
    return {
        eos_cluster_module: {
            "__opts__": {
                "id": MINION_ID,
                "pki_dir": str(pki_dir),
                "master": "127.0.0.1",
                "publish_port": master_ports[0],
                "master_port": master_ports[1],
                "eos": eos_config,
            },
            "__grains__": {"id": MINION_ID, "os": "Debian", "osrelease": "12", "rack": "r9"},
            "__pillar__": {},
            "__salt__": {"event.send": event_send, "cmd.run_all": run_all},
        }
    }


def test_resources_describe_this_machine():
    found = eos_cluster_module.resources()
    assert found["cpu_cores"] >= 1
    assert found["memory_bytes"] > 0
    assert found["failure_domain"] == {"datacenter": None, "rack": "r9", "host": None}


def test_node_config_wins_over_grains(eos_config):
    eos_config["node"] = {"rack": "r1", "labels": ["ssd"]}
    found = eos_cluster_module.resources()
    assert found["failure_domain"]["rack"] == "r1"
    assert found["labels"] == {"ssd": None}


def test_bad_node_config_is_a_command_error(eos_config):
    eos_config["node"] = {"labels": "ssd"}
    with pytest.raises(CommandExecutionError, match="eos:node:labels: 'ssd' is not a mapping"):
        eos_cluster_module.resources()


def test_health_check_reaches_the_configured_master(run_all):
    report = eos_cluster_module.health_check()
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["master_reachable"]["passed"], checks["master_reachable"]
    assert checks["minion_configured"]["passed"]
    assert checks["os_supported"]["passed"]
    # Commands run through Salt's cmd.run_all, without a shell.
    for call in run_all.call_args_list:
        assert call.kwargs["python_shell"] is False


def test_health_check_against_another_master_fails_the_configuration_check():
    report = eos_cluster_module.health_check(master="192.0.2.1")
    checks = {check["name"]: check for check in report["checks"]}
    assert not checks["minion_configured"]["passed"]
    assert report["passed"] is False


@pytest.mark.parametrize("master", ["", "  ", 5])
def test_health_check_refuses_a_bad_master_argument(master):
    with pytest.raises(SaltInvocationError, match=r"master: .* is not an address or name"):
        eos_cluster_module.health_check(master=master)


def test_bad_health_config_is_a_command_error(eos_config):
    eos_config["health"]["required_ports"] = ["http"]
    with pytest.raises(CommandExecutionError, match="eos:health:required_ports: 'http'"):
        eos_cluster_module.health_check()


def test_register_sends_a_registration_the_master_accepts(event_send, keypair):
    result = eos_cluster_module.register(preferred_role="data")
    (tag, sent), _ = event_send.call_args
    assert tag == "eos/cluster/register"
    assert result["sent"] is True
    assert result["preferred_role"] == "data"
    assert sent["preferred_role"] == "data"
    public = salt.crypt.PublicKey.from_str(keypair[1])

    def verify(node_id, message, signature):
        return node_id == MINION_ID and public.verify(
            message, signature, algorithm=registry.SIGNATURE_ALGORITHM
        )

    checked = registry.check_registration(MINION_ID, sent, verify)
    assert checked.resources["cpu_cores"] == result["resources"]["cpu_cores"]
    assert len(checked.health["checks"]) == 9
    # The same payload is refused for any other id: the signature names the sender.
    with pytest.raises(registry.InvalidPayload, match="not signed by node-8"):
        registry.check_registration(
            "node-8",
            sent,
            lambda n, m, s: public.verify(m, s, algorithm=registry.SIGNATURE_ALGORITHM),
        )


def test_register_takes_the_preferred_role_from_config(eos_config, event_send):
    eos_config["node"] = {"preferred_role": "edge"}
    eos_cluster_module.register()
    assert event_send.call_args.args[1]["preferred_role"] == "edge"


@pytest.mark.parametrize("role", ["Data", "data node", 7, "data\n"])
def test_register_refuses_a_bad_role(role, event_send):
    with pytest.raises(SaltInvocationError, match=r"preferred_role: .* is not a role name"):
        eos_cluster_module.register(preferred_role=role)
    event_send.assert_not_called()


def test_register_says_when_the_event_was_not_sent(event_send):
    event_send.return_value = False
    with pytest.raises(CommandExecutionError, match="could not send eos/cluster/register"):
        eos_cluster_module.register()


def test_register_without_a_minion_key_is_a_command_error(pki_dir):
    (pki_dir / "minion.pem").unlink()
    with pytest.raises(CommandExecutionError, match="cannot read this minion's key"):
        eos_cluster_module.register()
