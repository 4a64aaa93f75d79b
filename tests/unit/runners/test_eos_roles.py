"""The eos_roles runner over a real registry in a localfs Salt cache."""

from unittest.mock import patch

import pytest
import salt.cache
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.runners import eos_roles
from saltext.eos.utils.cluster import registry

GIB = 1024**3


@pytest.fixture
def opts(tmp_path):
    return {"cachedir": str(tmp_path), "cache": "localfs", "__role": "master", "sock_dir": ""}


@pytest.fixture
def configure_loader_modules(opts):
    return {eos_roles: {"__opts__": opts}}


@pytest.fixture
def fired():
    events = []
    with patch.object(eos_roles, "_fire", lambda tag, data: events.append((tag, data))):
        yield events


def add_member(opts, node_id, cpu=8, memory_gb=32, disk_gb=1000):
    reg = registry.open_registry(opts, cache=salt.cache.factory(opts))
    record = registry.new_record(node_id, 0)
    record["status"] = "accepted"
    record["resources"] = {
        "cpu_cores": cpu,
        "memory_bytes": memory_gb * GIB,
        "disks": [
            {
                "name": "sda",
                "size_bytes": disk_gb * 1000**3,
                "free_bytes": 0,
                "storage_type": "ssd",
                "rotational": False,
                "mounts": ["/"],
            }
        ],
        "failure_domain": {},
        "labels": {},
    }
    reg._store(record)
    reg.rebuild_summary()


def test_calculate_changes_nothing_and_apply_stores_a_version(opts, fired):
    for name in ("n1", "n2", "n3"):
        add_member(opts, name)
    plan = eos_roles.calculate()
    assert sorted(r for roles in plan["assignments"].values() for r in roles) == [
        "core",
        "data",
        "edge",
    ]
    assert plan["version"] == 1
    assert plan["scale"] == "small"
    assert eos_roles.show()["version"] == 0
    assert fired == []

    applied = eos_roles.apply()
    assert applied["version"] == 1
    assert fired == [("eos/roles/changed", {"version": 1, "changes": applied["changes"]})]
    assert set(applied["changes"]) == {"n1", "n2", "n3"}
    assert eos_roles.show()["assignments"] == plan["assignments"]
    assert eos_roles.calculate()["churn"] == 0


def test_a_node_joining_keeps_the_others_in_their_roles(opts, fired):
    for name in ("n1", "n2", "n3"):
        add_member(opts, name)
    first = eos_roles.apply()
    add_member(opts, "n4")
    plan = eos_roles.calculate()
    kept = [
        n
        for n in ("n1", "n2", "n3")
        if plan["assignments"][n] == eos_roles.show()["assignments"][n]
    ]
    # From 3 to 4 nodes the targets add a second core: at most the new node moves.
    assert len(kept) >= 2
    assert plan["churn"] <= 1
    assert first["version"] == 1


def test_unplaceable_roles_are_reported_with_the_reason(opts):
    add_member(opts, "small-1", cpu=2, memory_gb=4, disk_gb=60)
    add_member(opts, "small-2", cpu=2, memory_gb=4, disk_gb=60)
    add_member(opts, "small-3", cpu=2, memory_gb=4, disk_gb=60)
    plan = eos_roles.calculate()
    assert any(item["role"] == "data" for item in plan["unplaced"])
    assert any("data" in line for line in plan["explanation"])


def test_explain_and_validate(opts):
    for name in ("n1", "n2", "n3"):
        add_member(opts, name)
    with patch.object(eos_roles, "_fire"):
        eos_roles.apply()
    assert eos_roles.explain("n1")["id"] == "n1"
    assert eos_roles.validate() == {"valid": True, "problems": []}
    with pytest.raises(SaltInvocationError, match="'ghost' is not an accepted or active member"):
        eos_roles.explain("ghost")
    with pytest.raises(SaltInvocationError, match="node id 'n\\*': '\\*' at position 2"):
        eos_roles.explain("n*")


def test_bad_inline_nodes_name_the_item(opts):
    with pytest.raises(SaltInvocationError, match="memory_gb -2 must be >= 0"):
        eos_roles.calculate(nodes=[{"id": "x", "cpu": 2, "memory_gb": -2, "disk_gb": 10}])


def test_bad_catalogue_is_a_configuration_error(opts):
    opts["eos"] = {"roles": {"catalog": {"data": {"memory_gb": -1}}}}
    with pytest.raises(CommandExecutionError, match="memory_gb"):
        eos_roles.calculate(nodes=[])
