"""
The eos_lifecycle runner's public functions over a real registry in an in-memory Salt cache.

Only the outside world is stood in for: the Salt cache backend, the master's event bus and a
LocalClient whose minions answer as EOS minions do (the ``silent`` ones answer nothing).
Expectations come from the runner's documentation.
"""

import copy
import time

import pytest
from salt.exceptions import CommandExecutionError

from saltext.eos.runners import eos_lifecycle
from saltext.eos.utils.cluster import registry
from tests.support.master import SilentClient
from tests.support.master import salt_world

GB = 1000**3
SMALL_CATALOGUE = {
    role: {"cpu": 1, "memory_gb": 1, "disk_gb": 1}
    for role in ("monolith", "edge", "core", "data", "app")
}
RESOURCES = {
    "cpu_cores": 4,
    "memory_bytes": 8 * 1024**3,
    "disks": [{"name": "vda", "size_bytes": 100 * GB, "storage_type": "ssd"}],
}
NODE_EVENT = "eos/cluster/node/{id}/{status}"
DONE = "eos/cluster/replacement/done"
FAILED = "eos/cluster/replacement/failed"
PROBE_FIELDS = {"probed", "answered", "missing", "changes", "held", "hold_down"}


class Fleet(SilentClient):
    """
    Salt's LocalClient over EOS minions: ``silent`` minions answer nothing, ``failing_state``
    minions fail their state runs. Every job is kept in ``calls`` as (minion, function).
    """

    def __init__(self):
        super().__init__()
        self.silent = set()
        self.failing_state = set()
        self.calls = []

    def cmd(self, tgt, fun, arg=(), timeout=None, tgt_type="glob", full_return=False, kwarg=None,
            **kwargs):  # fmt: skip
        assert tgt_type == "list"
        answers = {}
        for minion in tgt:
            self.calls.append((minion, fun))
            if minion not in self.silent:
                ret, retcode = self.answer(minion, fun, dict(kwarg or {}))
                answers[minion] = {"ret": ret, "retcode": retcode, "jid": "1"}
        return answers

    def answer(self, minion, fun, kwargs):
        if fun in ("test.ping", "saltutil.refresh_pillar"):
            return True, 0
        if fun == "eos_cluster.checkpoint":
            return {"id": f"{kwargs['label']}-{minion}"}, 0
        if fun == "eos_cluster.rollback":
            return {"id": kwargs["checkpoint_id"]}, 0
        if fun == "state.show_top":
            return {"base": ["eos.roles"]}, 0
        if fun in ("state.highstate", "state.apply"):
            failed = minion in self.failing_state
            chunk = {
                "__id__": "eos_role_file",
                "__run_num__": 0,
                "result": not failed,
                "comment": "Permission denied" if failed else "File is in the correct state",
            }
            return {"file_|-eos_role_file_|-/etc/eos/role.yaml_|-managed": chunk}, 2 * failed
        raise AssertionError(f"{minion} was asked to run {fun}")

    def asked(self, fun):
        return sorted({minion for minion, called in self.calls if called == fun})


@pytest.fixture
def client():
    return Fleet()


@pytest.fixture
def opts(tmp_path):
    (tmp_path / "cache").mkdir()
    return {
        "__role": "master",
        "cache": "localfs",
        "cachedir": str(tmp_path / "cache"),
        "sock_dir": str(tmp_path / "sock"),
        "conf_file": str(tmp_path / "master"),
        "eos": {"roles": {"catalog": SMALL_CATALOGUE}},
    }


@pytest.fixture
def configure_loader_modules(opts, context):
    return {eos_lifecycle: {"__opts__": opts, "__context__": context}}


@pytest.fixture(autouse=True)
def world(cache, bus, client):
    with salt_world(cache, bus, client):
        yield


# --- helpers ------------------------------------------------------------------------------


def seeded(cache):
    """The registry over the same cache, to set up a cluster without the runner."""
    return registry.Registry(cache)


def cluster(cache, *node_ids):
    """Active members with resources: n1 edge, n2 core, n3 data (as the solver places them)."""
    reg = seeded(cache)
    for node_id in node_ids:
        reg.ensure(node_id, "its Salt key is pending")
        reg.accept(node_id)
        record = reg.get(node_id)
        record["resources"] = copy.deepcopy(RESOURCES)
        cache.store(registry.NODES_BANK, node_id, record)
        reg.set_status(node_id, "active", "joined")
    return reg


def with_roles(cache):
    reg = cluster(cache, "n1", "n2", "n3")
    reg.store_assignment({"n1": ["edge"], "n2": ["core"], "n3": ["data"]})
    return reg


def unreachable_for(cache, node_id, seconds):
    """``node_id`` went unreachable ``seconds`` ago and has missed the probes since."""
    since = time.time() - seconds
    seeded(cache).set_status(
        node_id,
        "unreachable",
        "missed probes",
        liveness={
            "missed_since": since - 60,
            "missed_probes": 5,
            "unreachable_since": since,
            "unreachable_probes": 10,
            "answering_since": None,
            "returns": [],
        },
    )


def down(cache, node_id):
    unreachable_for(cache, node_id, 700)
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
    assert client.asked("test.ping") == ["n1", "n2", "n3"]
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
    unreachable_for(cache, "n3", 30)
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
    unreachable_for(cache, "n2", 700)
    client.silent = {"n2"}
    bus.fired.clear()

    answer = eos_lifecycle.probe()

    assert [(c["id"], c["to"]) for c in answer["changes"]] == [("n2", "down")]
    assert seeded(cache).get("n2")["status"] == "down"
    (announced,) = bus.data(NODE_EVENT.format(id="n2", status="down"))
    assert announced["status"] == "down"
    # The probe only probes: the roles move with replace (or the engine's next pass).
    assert assigned(cache)["n2"] == ["core"]
    assert client.asked("state.highstate") == []
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
    unreachable_for(cache, "n2", 700)
    unreachable_for(cache, "n3", 700)
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

    assert client.calls == []
    assert cache.banks == before


@pytest.mark.parametrize(
    "call", [eos_lifecycle.probe, eos_lifecycle.status], ids=["probe", "status"]
)
def test_a_bad_registry_setting_is_a_command_error_naming_the_key(opts, cache, client, call):
    cluster(cache, "n1")
    opts["eos"]["scale_boundaries"] = {"medium": 1}

    with pytest.raises(CommandExecutionError, match="eos:scale_boundaries:medium"):
        call()

    assert client.calls == []


# --- replace ------------------------------------------------------------------------------


def test_replace_with_every_holder_a_member_changes_nothing(cache, bus, client, context):
    with_roles(cache)
    before = assigned(cache)

    record = eos_lifecycle.replace()

    assert record["outcome"] == "unchanged"
    assert record["reason"] == "by an operator"
    assert assigned(cache) == before
    assert client.asked("state.highstate") == []
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
    assert client.asked("state.highstate") == ["n1", "n3"]
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
    unreachable_for(cache, "n4", 30)
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
