"""
The README's "Master configuration" block, pasted as it is, is enough for a node to join.

The master gets exactly that block (read out of README.md, so the two cannot drift) and
nothing EOS-specific besides: no top file, no ``eos:`` settings, default acceptance policy.
The minion does not set ``publish_port``: like any Salt minion it connects to the port the
master announces, and the ``master_reachable`` health check must probe that one, not 4505.
"""

import pathlib

import pytest
import salt.utils.yaml

from tests.support import readme
from tests.support.cluster import minion_overrides
from tests.support.cluster import read_registry
from tests.support.cluster import run_ok
from tests.support.cluster import wait_for

JOIN_TIMEOUT = 240


@pytest.fixture(scope="module")
def master_config_overrides():
    return readme.master_block()


@pytest.fixture(scope="module")
def node_config_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("readme-node") / "eos"


@pytest.fixture(scope="module")
def minion_config_overrides(master, node_config_dir):
    overrides = minion_overrides(
        master, eos={"manage_software": False, "config_dir": str(node_config_dir)}
    )
    # As most minion configs: the publish port is whatever the master announces.
    overrides.pop("publish_port")
    return overrides


def test_the_master_runs_the_readme_block_and_no_top_file(master):
    block = readme.master_block()
    written = salt.utils.yaml.safe_load(pathlib.Path(master.config_file).read_text())
    # Every setting as the README gives it; the test framework adds its own event-forwarding
    # engine to the list, after the README's.
    written["engines"] = [engine for engine in written["engines"] if engine != "pytest"]
    assert {key: written[key] for key in block} == block
    assert "eos" not in written
    for root in master.config["file_roots"]["base"]:
        assert not list(pathlib.Path(root).glob("**/top.sls")), root


def test_the_health_check_probes_the_publish_port_the_master_announced(minion, salt_cli, master):
    ret = salt_cli.run("eos_cluster.health_check", minion_tgt=minion.id)

    assert ret.returncode == 0, ret
    check = next(c for c in ret.data["checks"] if c["name"] == "master_reachable")
    assert check["passed"], check
    assert str(master.config["publish_port"]) in check["detail"]
    assert str(master.config["ret_port"]) in check["detail"]


def test_the_first_node_joins_and_gets_its_role_states(minion, salt_cli, salt_run_cli, master,
                                                       node_config_dir):  # fmt: skip
    run_ok(salt_cli, "eos_cluster.register", minion_tgt=minion.id)

    record = wait_for(
        lambda: _ended(read_registry(master).get(minion.id)),
        f"the join of {minion.id}",
        timeout=JOIN_TIMEOUT,
        interval=1,
    )

    joined = run_ok(salt_run_cli, "eos_join.status", minion.id)
    assert record["status"] == "active", joined
    assert record["roles"] == ["monolith"]
    # The role states ran without a top file: eos.roles wrote the node's role file.
    role_file = salt.utils.yaml.safe_load((node_config_dir / "role.yaml").read_text())
    assert role_file["roles"] == ["monolith"]


def _ended(record):
    return record if record and record["status"] in ("active", "failed") else None
