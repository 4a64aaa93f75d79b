"""
A planned departure, end to end on the master side: cordon, evacuate, hand over, drained.

The drain runs with the real collaborators the runner gives it: ``datasets.Rebalance.evacuate``
(the verified move) and ``replacement.Replacement.run`` (the hand-over under the join lease),
over one in-memory registry and store. Only the minions are stood in for: a fleet whose
datasets are in-memory trees and whose state runs answer as Salt's would.
"""

import pytest

from saltext.eos.utils import config
from saltext.eos.utils import datasets
from saltext.eos.utils import errors
from saltext.eos.utils.cluster import drain
from saltext.eos.utils.cluster import join
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import replacement
from saltext.eos.utils.datasets import execution
from tests.support.clock import Clock
from tests.support.fleet import Fleet
from tests.support.fleet import cluster
from tests.support.fleet import join_flow
from tests.support.memory_cache import MemoryCache

# Two data nodes beside an edge and a core node; d1 holds datasets a and b.
DATA = {"e1": ["edge"], "c1": ["core"], "d1": ["data"], "d2": ["data"]}
# Five members as their joins place them: edge, two core, data, app.
FIVE = {"e1": ["edge"], "c1": ["core"], "c2": ["core"], "d1": ["data"], "a1": ["app"]}
MOVED = execution.MOVED_TAG


class Master:
    """What the runner hands ``drain``: the registry, evacuate, replace and fire."""

    def __init__(self):
        self.clock = Clock()
        self.events = []
        self.registry = registry.Registry(
            MemoryCache(),
            clock=self.clock,
            on_change=lambda node_id, status, record: self.fire(
                f"eos/cluster/node/{node_id}/{status}", record
            ),
        )
        self.fleet = Fleet()
        self.store = datasets.Store(self.registry.cache, clock=self.clock)
        self.flow = join_flow(self.registry, self.fleet, self.events, self.clock)
        self.rebalance = datasets.Rebalance(
            registry=self.registry,
            store=self.store,
            settings=dict(datasets.REBALANCE_DEFAULTS),
            declared=datasets.declarations(
                config.Layers([("master config", {"datasets": {"a": {}, "b": {}}})])
            ),
            call=self.fleet.call,
            fire=self.fire,
        )
        self.replacement = replacement.Replacement(self.flow)

    def fire(self, tag, data):
        self.events.append((tag, data))

    def drain(self, node_id):
        return drain.drain(
            self.registry, self.rebalance.evacuate, self.replacement.run, node_id, fire=self.fire
        )

    def uncordon(self, node_id):
        return drain.uncordon(self.registry, node_id, fire=self.fire)

    def tags(self):
        return [tag for tag, _ in self.events]

    def placed(self):
        return {name: placement["node"] for name, placement in self.store.placements().items()}

    def roles(self):
        return {record["id"]: record["roles"] for record in self.registry.records()}


@pytest.fixture
def here():
    return Master()


@pytest.fixture
def data_cluster(here):
    """DATA, d1 holding a (300 bytes) and b (200 bytes), d2 empty; placements known."""
    cluster(here.registry, DATA)
    here.fleet.hold("d1", a=300, b=200)
    here.rebalance.refresh()
    assert here.placed() == {"a": "d1", "b": "d1"}
    here.events.clear()
    return here


# --- a drain that completes ------------------------------------------------------------------


def test_a_drain_cordons_moves_every_dataset_hands_roles_over_and_marks_drained(data_cluster):
    here = data_cluster

    answer = here.drain("d1")

    assert answer["drained"] is True
    assert (answer["status"], answer["cordoned"]) == ("drained", True)
    assert [move["dataset"] for move in answer["moved"]] == ["a", "b"], "largest first"
    assert all(move["to"] == "d2" and move["kind"] == "drain" for move in answer["moved"])
    assert (answer["failed"], answer["left"], answer["remaining"]) == ([], {}, [])
    assert answer["roles_changed"] == {"d1": {"old": ["data"], "new": []}}
    assert answer["comment"] == "d1 is drained"
    # The data is on d2 now and nothing is left on d1; d1 holds no role and is no member.
    assert here.placed() == {"a": "d2", "b": "d2"}
    assert here.fleet.trees["d1"] == {}
    assert sorted(here.fleet.trees["d2"]) == ["a", "b"]
    record = here.registry.get("d1")
    assert (record["status"], record["roles"], record["cordoned"]) == ("drained", [], True)
    assert "d1" not in here.registry.assignment()["assignments"]
    assert here.registry.summary()["node_count"] == 3
    assert replacement.stale_holders(here.registry) == []
    # Cordoned first, then the moves, the hand-over, and drained at the very end.
    assert here.tags() == [
        "eos/cluster/node/d1/cordoned",
        MOVED,
        MOVED,
        join.ROLES_CHANGED_TAG,
        replacement.DONE_TAG,
        "eos/cluster/node/d1/drained",
    ]


def test_each_copy_is_verified_and_committed_before_its_source_is_removed(data_cluster):
    here = data_cluster
    here.drain("d1")
    for name in ("a", "b"):
        assert here.fleet.steps_of(name) == [
            ("d2", "pull"),
            ("d1", "manifest"),  # the source ...
            ("d2", "manifest"),  # ... against the staged copy
            ("d2", "commit"),
            ("d2", "manifest"),
            ("d1", "remove"),
        ]


def test_draining_a_core_node_gives_its_role_to_a_live_node_and_configures_the_edge(here):
    cluster(here.registry, FIVE)

    answer = here.drain("c2")

    assert answer["drained"] is True
    assert answer["moved"] == [], "no dataset to move"
    assert answer["roles_changed"] == {
        "a1": {"old": ["app"], "new": ["core"]},
        "c2": {"old": ["core"], "new": []},
    }
    assert here.roles() == {
        "e1": ["edge"],
        "c1": ["core"],
        "c2": [],
        "d1": ["data"],
        "a1": ["core"],
    }
    assert here.registry.summary()["holders"]["core"] == ["a1", "c1"]
    assert here.fleet.configured() == ["a1", "e1"]
    assert "state.highstate" not in here.fleet.asked("c2"), "the leaving node is not configured"
    assert here.registry.get("c2")["status"] == "drained"


def test_a_drained_node_is_drained_already(data_cluster):
    here = data_cluster
    here.drain("d1")
    here.fleet.calls.clear()
    here.events.clear()

    answer = here.drain("d1")

    assert (answer["drained"], answer["status"], answer["comment"]) == (
        True,
        "drained",
        "already drained",
    )
    assert here.fleet.calls == [] and here.events == []


# --- a drain that stops ------------------------------------------------------------------------


def test_a_drain_without_room_for_everything_stops_cordoned_and_keeps_what_is_left(data_cluster):
    here = data_cluster
    here.fleet.capacity["d2"] = 400  # takes a (300 bytes) below 90 %, then no room for b
    version = here.registry.assignment()["version"]

    answer = here.drain("d1")

    assert answer["drained"] is False
    assert (answer["status"], answer["cordoned"]) == ("active", True)
    assert [move["dataset"] for move in answer["moved"]] == ["a"]
    assert answer["left"] == {
        "b": "no other node of role data has room for 200 bytes below its cleanup level"
    }
    assert answer["remaining"] == ["b"]
    assert answer["comment"].startswith("drain of d1 stopped; it stays cordoned")
    assert "not moved: b: no other node of role data has room" in answer["comment"]
    assert "still on d1: b" in answer["comment"]
    # b is still where it was, and d1 keeps its role: no hand-over was attempted.
    assert here.placed() == {"a": "d2", "b": "d1"}
    assert list(here.fleet.trees["d1"]) == ["b"]
    assert here.registry.get("d1")["roles"] == ["data"]
    assert here.registry.assignment()["version"] == version
    assert replacement.DONE_TAG not in here.tags()
    assert "eos/cluster/node/d1/drained" not in here.tags()

    # Room made, the drain is run again and goes on from there.
    here.fleet.capacity["d2"] = 1000
    again = here.drain("d1")

    assert again["drained"] is True
    assert [move["dataset"] for move in again["moved"]] == ["b"]
    assert here.tags().count("eos/cluster/node/d1/cordoned") == 1, "cordoned once"


def test_a_failed_copy_stops_the_drain_and_never_removes_the_source(data_cluster):
    here = data_cluster
    here.fleet.corrupting.add("d2")

    answer = here.drain("d1")

    assert answer["drained"] is False
    assert (answer["status"], answer["cordoned"]) == ("active", True)
    assert answer["moved"] == []
    first, second = answer["failed"]
    assert first["dataset"] == "a"
    assert "the copy on d2 differs" in first["error"]
    assert (second["dataset"], second["error"]) == (
        "b",
        "skipped: an earlier move on its nodes failed",
    )
    assert answer["remaining"] == ["a", "b"]
    assert "failed: a: " in answer["comment"]
    assert ("d1", "remove") not in here.fleet.steps_of("a") + here.fleet.steps_of("b")
    assert sorted(here.fleet.trees["d1"]) == ["a", "b"]
    assert here.placed() == {"a": "d1", "b": "d1"}
    assert here.registry.get("d1")["roles"] == ["data"]


def test_a_failed_hand_over_stops_the_drain_rolled_back_and_cordoned(here):
    cluster(here.registry, FIVE)
    here.fleet.failing_state.add("a1")

    answer = here.drain("c2")

    assert answer["drained"] is False
    assert (answer["status"], answer["cordoned"]) == ("active", True)
    assert "handing its roles over failed" in answer["comment"]
    assert "Permission denied" in answer["comment"]
    assert here.roles() == FIVE, "the previous assignment is back"
    assert replacement.FAILED_TAG in here.tags()
    assert "eos/cluster/node/c2/drained" not in here.tags()


def test_a_hand_over_that_waits_for_a_join_in_vain_stops_the_drain_cordoned(here):
    cluster(here.registry, FIVE)
    here.flow.take_lease("n9", "join-of-n9")

    with pytest.raises(join.JoinFailed, match="still holds the lease"):
        here.drain("c2")

    record = here.registry.get("c2")
    assert (record["status"], record["cordoned"], record["roles"]) == ("active", True, ["core"])


# --- refusals ----------------------------------------------------------------------------------


def test_draining_an_unknown_node_is_a_clear_error(here):
    with pytest.raises(errors.NotFound, match="ghost: no such node in the registry"):
        here.drain("ghost")
    assert here.fleet.calls == []


@pytest.mark.parametrize("status", ["pending", "failed", "unreachable", "down", "rejected"])
def test_only_an_active_or_accepted_node_can_be_drained(here, status):
    cluster(here.registry, DATA)
    reg = here.registry
    if status == "pending":
        reg.ensure("p1", "its Salt key is pending")
        node_id = "p1"
    else:
        node_id = "d1"
        if status in ("unreachable", "down"):
            reg.set_status(node_id, "unreachable", "missed probes")
        if status == "down":
            reg.set_status(node_id, "down", "unreachable too long")
        if status == "failed":
            reg.set_status(node_id, "failed", "highstate failed")
        if status == "rejected":
            reg.reject(node_id)
    before = reg.get(node_id)
    here.events.clear()

    with pytest.raises(drain.DrainRefused, match=f"{node_id} is {status}: only an active or"):
        here.drain(node_id)

    assert reg.get(node_id) == before, "not even cordoned"
    assert here.fleet.calls == [] and here.events == []


def test_an_accepted_node_can_be_drained_before_its_join(here):
    cluster(here.registry, FIVE)
    here.registry.ensure("new", "its Salt key is pending")
    here.registry.accept("new")

    answer = here.drain("new")

    assert (answer["drained"], answer["status"]) == (True, "drained")
    assert answer["roles_changed"] == {}, "it held none; the members keep theirs"
    assert here.roles() == {**FIVE, "new": []}


# --- the cordon --------------------------------------------------------------------------------


def test_a_node_left_cordoned_by_a_stopped_drain_takes_no_new_role(here):
    cluster(here.registry, FIVE)
    here.fleet.hold("a1", a=300)
    here.fleet.capacity["d1"] = 100  # nowhere to move a: the drain of a1 stops
    here.rebalance.refresh()
    assert here.drain("a1")["drained"] is False
    here.registry.set_status("c2", "unreachable", "missed probes")
    here.registry.set_status("c2", "down", "unreachable too long")

    record = here.replacement.run("down: c2")

    # Uncordoned, a1 would take c2's core role; cordoned, it keeps only what it holds.
    assert here.roles()["a1"] == ["app"]
    assert record["changes"] == {"c2": {"old": ["core"], "new": []}}
    assert "1 pinned" in record["unplaced"][0]


def test_uncordon_lifts_the_cordon_of_a_stopped_drain(data_cluster):
    here = data_cluster
    here.fleet.capacity["d2"] = 400
    here.drain("d1")
    here.events.clear()

    answer = here.uncordon("d1")

    assert answer == {"id": "d1", "changed": True, "status": "active"}
    record = here.registry.get("d1")
    assert (record["cordoned"], record["status"], record["roles"]) == (False, "active", ["data"])
    assert record["history"][-1]["reason"] == "uncordoned"
    assert here.tags() == ["eos/cluster/node/d1/uncordoned"]


def test_uncordon_of_a_node_that_is_not_cordoned_changes_nothing(data_cluster):
    here = data_cluster
    before = here.registry.get("d2")

    answer = here.uncordon("d2")

    assert answer == {"id": "d2", "changed": False, "status": "active", "comment": "not cordoned"}
    assert here.registry.get("d2") == before
    assert here.events == []


def test_uncordon_of_a_drained_node_accepts_it_again_for_its_join(data_cluster):
    here = data_cluster
    here.drain("d1")
    here.events.clear()

    answer = here.uncordon("d1")

    assert answer == {"id": "d1", "changed": True, "status": "accepted"}
    record = here.registry.get("d1")
    assert (record["status"], record["cordoned"]) == ("accepted", False)
    assert record["join_token"], "the accepted event starts its join"
    assert here.tags() == ["eos/cluster/node/d1/accepted"]
    assert here.registry.summary()["node_count"] == 4


def test_uncordon_of_an_unknown_node_is_a_clear_error(here):
    with pytest.raises(errors.NotFound, match="ghost: no such node"):
        here.uncordon("ghost")
