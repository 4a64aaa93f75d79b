"""
The eos_lifecycle runner's public functions over a real registry in an in-memory Salt cache.

Only the outside world is stood in for: the Salt cache backend, the master's event bus and a
LocalClient whose minions answer as EOS minions do (the ``silent`` ones answer nothing).
Expectations come from the runner's documentation.
"""

import copy

import pytest
from salt.exceptions import CommandExecutionError

from saltext.eos.runners import eos_lifecycle
from tests.support.cluster import SMALL_CATALOGUE
from tests.support.fleet import Fleet
from tests.support.fleet import members
from tests.support.fleet import unreachable_for
from tests.support.master import master_opts
from tests.support.master import seeded

NODE_EVENT = "eos/cluster/node/{id}/{status}"
DONE = "eos/cluster/replacement/done"
FAILED = "eos/cluster/replacement/failed"
PROBE_FIELDS = {"probed", "answered", "missing", "changes", "held", "hold_down"}

pytestmark = pytest.mark.usefixtures("master_world")


@pytest.fixture
def client():
    return Fleet()


@pytest.fixture
def opts(tmp_path):
    return master_opts(tmp_path, roles={"catalog": SMALL_CATALOGUE})


@pytest.fixture
def configure_loader_modules(opts, context):
    return {eos_lifecycle: {"__opts__": opts, "__context__": context}}


# --- helpers ------------------------------------------------------------------------------


def cluster(cache, *node_ids):
    """Active members with resources, holding no role yet."""
    reg = seeded(cache)
    members(reg, node_ids)
    return reg


def with_roles(cache):
    """n1 edge, n2 core, n3 data, as the solver places them."""
    reg = cluster(cache, "n1", "n2", "n3")
    reg.store_assignment({"n1": ["edge"], "n2": ["core"], "n3": ["data"]})
    return reg


def down(cache, node_id):
    unreachable_for(seeded(cache), node_id, 700)
    seeded(cache).set_status(node_id, "down", "unreachable for 700 s")


def assigned(cache):
    return seeded(cache).assignment()["assignments"]


# --- probe --------------------------------------------------------------------------------


def test_probing_a_healthy_cluster_changes_nothing_and_fires_nothing(cache, bus, client):
    cluster(cache, "n1", "n2", "n3")
    before = copy.deepcopy(cache.banks)
    bus.fired.clear()

    answer = eos_lifecycle.probe()

    assert answer == {
        "probed": 3,
        "answered": 3,
        "missing": [],
        "changes": [],
        "held": [],
        "hold_down": False,
    }
    assert client.called("test.ping") == ["n1", "n2", "n3"]
    assert cache.banks == before
    assert bus.tags() == []


def test_a_probe_names_the_members_that_did_not_answer(cache, bus, client):
    cluster(cache, "n1", "n2", "n3")
    client.silent = {"n3"}

    answer = eos_lifecycle.probe()

    assert set(answer) == PROBE_FIELDS
    assert (answer["probed"], answer["answered"], answer["missing"]) == (3, 2, ["n3"])
    assert answer["changes"] == []
    assert seeded(cache).get("n3")["status"] == "active"
    assert seeded(cache).get("n3")["liveness"]["missed_probes"] == 1


def test_an_unreachable_node_that_answers_is_active_again_and_announced(cache, bus):
    cluster(cache, "n1", "n2", "n3")
    unreachable_for(seeded(cache), "n3", 30)
    bus.fired.clear()

    answer = eos_lifecycle.probe()

    (change,) = answer["changes"]
    assert (change["id"], change["from"], change["to"]) == ("n3", "unreachable", "active")
    assert change["reason"]
    assert seeded(cache).get("n3")["status"] == "active"
    assert bus.node_tags() == [NODE_EVENT.format(id="n3", status="active")]
    (announced,) = bus.data(NODE_EVENT.format(id="n3", status="active"))
    assert (announced["id"], announced["status"]) == ("n3", "active")


def test_a_node_unreachable_too_long_is_marked_down_and_its_roles_left_to_replace(
    cache, bus, client
):
    with_roles(cache)
    unreachable_for(seeded(cache), "n2", 700)
    client.silent = {"n2"}
    bus.fired.clear()

    answer = eos_lifecycle.probe()

    assert [(c["id"], c["to"]) for c in answer["changes"]] == [("n2", "down")]
    assert seeded(cache).get("n2")["status"] == "down"
    (announced,) = bus.data(NODE_EVENT.format(id="n2", status="down"))
    assert announced["status"] == "down"
    # The probe only probes: the roles move with replace (or the engine's next pass).
    assert assigned(cache)["n2"] == ["core"]
    assert client.called("state.highstate") == []
    assert eos_lifecycle.status()["stale_holders"] == ["n2"]


def test_a_down_node_that_answers_is_accepted_with_a_join_token(cache, bus):
    cluster(cache, "n1", "n2", "n3")
    down(cache, "n3")
    bus.fired.clear()

    answer = eos_lifecycle.probe()

    assert [(c["id"], c["from"], c["to"]) for c in answer["changes"]] == [
        ("n3", "down", "accepted")
    ]
    record = seeded(cache).get("n3")
    assert record["status"] == "accepted"
    (announced,) = bus.data(NODE_EVENT.format(id="n3", status="accepted"))
    assert announced["join_token"] == record["join_token"]
    assert record["join_token"]


def test_a_probe_holds_nodes_down_while_most_members_miss_it(cache, bus, client):
    cluster(cache, "n1", "n2", "n3")
    unreachable_for(seeded(cache), "n2", 700)
    unreachable_for(seeded(cache), "n3", 700)
    client.silent = {"n2", "n3"}
    bus.fired.clear()

    answer = eos_lifecycle.probe()

    assert answer["hold_down"] is True
    assert answer["changes"] == []
    assert [held["id"] for held in answer["held"]] == ["n2", "n3"]
    assert all(held["reason"] for held in answer["held"])
    assert {seeded(cache).get(n)["status"] for n in ("n2", "n3")} == {"unreachable"}
    assert bus.tags() == []


@pytest.mark.parametrize(
    ("lifecycle", "named"),
    [
        ({"probe_timeout_seconds": 15}, "eos:lifecycle:probe_timeout_seconds"),
        ({"max_unreachable_fraction": 2}, "eos:lifecycle:max_unreachable_fraction"),
        ({"flap_limit": 2.5}, "eos:lifecycle:flap_limit"),
    ],
)
def test_a_bad_lifecycle_setting_is_a_command_error_naming_the_key(
    opts, cache, bus, client, lifecycle, named
):
    cluster(cache, "n1")
    opts["eos"]["lifecycle"] = lifecycle
    before = copy.deepcopy(cache.banks)

    with pytest.raises(CommandExecutionError, match=named):
        eos_lifecycle.probe()

    assert client.published == []
    assert cache.banks == before


@pytest.mark.parametrize(
    "call", [eos_lifecycle.probe, eos_lifecycle.status], ids=["probe", "status"]
)
def test_a_bad_registry_setting_is_a_command_error_naming_the_key(opts, cache, client, call):
    cluster(cache, "n1")
    opts["eos"]["scale_boundaries"] = {"medium": 1}

    with pytest.raises(CommandExecutionError, match="eos:scale_boundaries:medium"):
        call()

    assert client.published == []


# --- replace ------------------------------------------------------------------------------


def test_replace_with_every_holder_a_member_changes_nothing(cache, bus, client, context):
    with_roles(cache)
    before = assigned(cache)

    record = eos_lifecycle.replace()

    assert record["outcome"] == "unchanged"
    assert record["reason"] == "by an operator"
    assert assigned(cache) == before
    assert client.called("state.highstate") == []
    assert DONE not in bus.tags()
    assert "retcode" not in context


def test_replace_hands_a_down_nodes_roles_to_the_live_members(cache, bus, client, context):
    with_roles(cache)
    down(cache, "n2")
    bus.fired.clear()

    record = eos_lifecycle.replace(reason="n2 was lost in the fire")

    assert record["outcome"] == "done"
    assert record["reason"] == "n2 was lost in the fire"
    assert record["changes"]["n2"] == {"old": ["core"], "new": []}
    assert record["changes"]["n3"] == {"old": ["data"], "new": ["core"]}
    assert record["configured"] == ["n1", "n3"]
    assert client.called("state.highstate") == ["n1", "n3"]
    assert assigned(cache)["n3"] == ["core"]
    assert not assigned(cache).get("n2")
    assert bus.data(DONE) == [record]
    assert "retcode" not in context
    assert eos_lifecycle.status()["stale_holders"] == []


def test_a_failed_replacement_is_rolled_back_and_sets_the_retcode(cache, bus, client, context):
    with_roles(cache)
    before = assigned(cache)
    down(cache, "n2")
    client.failing_state = {"n3"}

    record = eos_lifecycle.replace()

    assert record["outcome"] == "failed"
    assert "n3" in record["error"]
    assert record["rollback"]["assignment_version"]
    assert context["retcode"] == 1
    assert assigned(cache) == before
    stored = {key: value for key, value in record.items() if key != "retcode"}
    assert bus.data(FAILED) == [stored]
    assert eos_lifecycle.status()["stale_holders"] == ["n2"]


# --- status -------------------------------------------------------------------------------


def test_status_lists_the_members_by_lifecycle_state_and_the_last_replacement(cache, client):
    reg = with_roles(cache)
    cluster(cache, "n4", "n5")
    unreachable_for(seeded(cache), "n4", 30)
    down(cache, "n2")
    reg.set_status("n5", "drained", "drained", cordoned=True)
    reg.update("n1", cordoned=True)
    reg.ensure("waiting", "its Salt key is pending")

    before = eos_lifecycle.status()

    nodes = before["nodes"]
    assert set(nodes) == {"active", "unreachable", "down", "drained"}
    assert nodes["active"] == [
        {"id": "n1", "cordoned": True, "liveness": {}},
        {"id": "n3", "cordoned": False, "liveness": {}},
    ]
    assert [n["id"] for n in nodes["unreachable"]] == ["n4"]
    assert nodes["unreachable"][0]["liveness"]["unreachable_probes"] == 10
    assert [n["id"] for n in nodes["down"]] == ["n2"]
    assert nodes["drained"] == [{"id": "n5", "cordoned": True, "liveness": {}}]
    assert before["stale_holders"] == ["n2"]
    assert before["last_replacement"] is None

    record = eos_lifecycle.replace()

    after = eos_lifecycle.status()
    assert after["last_replacement"] == record
    assert after["stale_holders"] == []


def test_status_of_an_empty_registry(cache):
    assert eos_lifecycle.status() == {"nodes": {}, "stale_holders": [], "last_replacement": None}
