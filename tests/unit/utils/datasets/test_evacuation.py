"""
Emptying a node that leaves: the plan (``evacuation.plan``) and its execution
(``Rebalance.evacuate``), the verified move with minions standing in over in-memory trees.
"""

import pytest

from saltext.eos.utils import config
from saltext.eos.utils import datasets
from saltext.eos.utils.cluster import lease as leases
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.datasets import evacuation
from saltext.eos.utils.datasets import execution
from tests.support.clock import Clock
from tests.support.clock import ClockedLock
from tests.support.datasets import rebalance_lease_held_by
from tests.support.fleet import Fleet
from tests.support.fleet import cluster
from tests.support.memory_cache import MemoryCache


def node(node_id, used=0, capacity=1000, role="data", cleanup=90, host=None):
    return {
        "id": node_id,
        "role": role,
        "capacity_bytes": capacity,
        "used_bytes": used,
        "cleanup_percent": cleanup,
        "host": host,
    }


def dataset(name, on, size, role="data", pin=None, replica_group=None):
    return {
        "name": name,
        "node": on,
        "bytes": size,
        "role": role,
        "pin": pin,
        "replica_group": replica_group,
    }


def destinations(moves):
    return {move["dataset"]: move["to"] for move in moves}


# --- the plan ----------------------------------------------------------------------------------


def test_every_dataset_of_the_leaving_node_goes_where_it_fits_largest_first():
    nodes = [node("out", used=600), node("n1", used=100), node("n2", used=300)]
    placed = [
        dataset("small", "out", 100),
        dataset("big", "out", 300),
        dataset("mid", "out", 200),
        dataset("stays", "n1", 100),
    ]

    moves, left = evacuation.plan(nodes, placed, "out")

    assert left == {}
    assert [move["dataset"] for move in moves] == ["big", "mid", "small"]
    assert all(move["from"] == "out" and move["kind"] == "drain" for move in moves)
    # Each goes to the node least full after taking it: big to n1 (40 %), mid to n2 (50 %
    # against n1's 60 %), small to n1 or n2, whichever ends emptier (n1: 50 %, n2: 60 %).
    assert destinations(moves) == {"big": "n1", "mid": "n2", "small": "n1"}
    assert moves[0] == {"dataset": "big", "from": "out", "to": "n1", "bytes": 300, "kind": "drain"}


def test_datasets_of_other_nodes_are_not_moved():
    nodes = [node("out"), node("n1", used=850), node("n2")]
    moves, left = evacuation.plan(nodes, [dataset("x", "n1", 850)], "out")
    assert (moves, left) == ([], {})


def test_a_dataset_goes_only_to_nodes_of_its_role():
    nodes = [node("out", role="archive"), node("d1"), node("ar1", role="archive", used=500)]
    moves, _ = evacuation.plan(nodes, [dataset("cold", "out", 100, role="archive")], "out")
    assert destinations(moves) == {"cold": "ar1"}


def test_excluded_nodes_take_nothing():
    nodes = [node("out"), node("cordoned"), node("busy", used=500)]
    moves, _ = evacuation.plan(nodes, [dataset("a", "out", 100)], "out", excluded={"cordoned"})
    assert destinations(moves) == {"a": "busy"}


def test_no_destination_reaches_its_cleanup_level():
    # n1 may hold up to just under 900 bytes: 800 + 100 would reach the level.
    nodes = [node("out"), node("n1", used=800)]
    moves, left = evacuation.plan(nodes, [dataset("a", "out", 100), dataset("b", "out", 99)], "out")
    assert destinations(moves) == {"b": "n1"}
    assert left == {
        "a": "no other node of role data has room for 100 bytes below its cleanup level"
    }


def test_the_room_a_move_takes_is_counted_for_the_next():
    nodes = [node("out"), node("n1", used=400)]
    placed = [dataset("a", "out", 300), dataset("b", "out", 300)]
    moves, left = evacuation.plan(nodes, placed, "out")
    assert destinations(moves) == {"a": "n1"}
    assert list(left) == ["b"]


def test_without_another_node_of_its_role_a_dataset_stays_and_says_why():
    nodes = [node("out"), node("w1", role="web")]
    moves, left = evacuation.plan(nodes, [dataset("a", "out", 10)], "out", excluded=())
    assert moves == []
    assert left == {"a": "no other node of role data that has reported its datasets"}


def test_a_dataset_pinned_to_the_leaving_node_stays_until_its_pin_changes():
    nodes = [node("out"), node("n1")]
    moves, left = evacuation.plan(nodes, [dataset("a", "out", 10, pin="out")], "out")
    assert moves == []
    assert left == {"a": "pinned to out: change its pin first"}


def test_a_dataset_pinned_elsewhere_goes_to_its_pin_or_stays_when_that_is_full():
    nodes = [node("out"), node("n1"), node("pin", used=500)]
    moves, _ = evacuation.plan(nodes, [dataset("a", "out", 100, pin="pin")], "out")
    assert destinations(moves) == {"a": "pin"}, "not the emptier n1"

    nodes = [node("out"), node("n1"), node("pin", used=850)]
    moves, left = evacuation.plan(nodes, [dataset("a", "out", 100, pin="pin")], "out")
    assert moves == []
    assert left == {"a": "pinned to pin, which cannot take 100 bytes"}


@pytest.mark.parametrize(
    ("n2_used", "destination"),
    [
        pytest.param(600, "n2", id="to-a-host-without-one-even-when-it-is-fuller"),
        pytest.param(850, "n1", id="sharing-a-host-when-no-other-host-has-room"),
    ],
)
def test_a_replica_goes_to_a_host_without_one_unless_none_has_room(n2_used, destination):
    nodes = [
        node("out", host="h0"),
        node("n1", host="h1"),  # holds the other replica
        node("n2", used=n2_used, host="h2"),
    ]
    placed = [
        dataset("orders-1", "out", 100, replica_group="orders"),
        dataset("orders-2", "n1", 100, replica_group="orders"),
    ]
    moves, left = evacuation.plan(nodes, placed, "out")
    assert destinations(moves) == {"orders-1": destination}
    assert left == {}, "moved, rather than left on a leaving node"


def test_two_replicas_leaving_together_go_to_different_hosts():
    # Alone, r2 would follow r1 to n1, which stays the emptier: 20 % against n2's 25 %.
    nodes = [node("out", host="h0"), node("n1", host="h1"), node("n2", used=150, host="h2")]
    placed = [
        dataset("r1", "out", 100, replica_group="g"),
        dataset("r2", "out", 100, replica_group="g"),
    ]
    moves, _ = evacuation.plan(nodes, placed, "out")
    assert sorted(destinations(moves).values()) == ["n1", "n2"]


def test_the_plan_does_not_depend_on_the_input_order():
    nodes = [node("out"), node("n1", used=100), node("n2", used=100)]
    placed = [dataset(name, "out", 100) for name in ("a", "b", "c", "d")]
    forward = evacuation.plan(nodes, placed, "out")
    backward = evacuation.plan(nodes[::-1], placed[::-1], "out")
    assert forward == backward


# --- the execution: Rebalance.evacuate ---------------------------------------------------------


class Master:
    """A registry with d1, d2, d3 (data) and w1 (web), a dataset store, and their minions."""

    def __init__(self, declared=None):
        self.registry = registry.Registry(MemoryCache())
        cluster(self.registry, {"d1": ["data"], "d2": ["data"], "d3": ["data"], "w1": ["web"]})
        self.store = datasets.Store(self.registry.cache, clock=lambda: 0)
        self.fleet = Fleet()
        self.fired = []
        layers = config.Layers([("master config", {"datasets": declared or {"a": {}, "b": {}}})])
        self.rebalance = datasets.Rebalance(
            registry=self.registry,
            store=self.store,
            settings=dict(datasets.REBALANCE_DEFAULTS),
            declared=datasets.declarations(layers),
            call=self.fleet.call,
            fire=lambda tag, data: self.fired.append((tag, data)),
        )

    def placed(self):
        return {name: placement["node"] for name, placement in self.store.placements().items()}


@pytest.fixture
def here():
    """d1 holds a (300 bytes) and b (200 bytes); the others are empty. Placements are known."""
    master = Master()
    master.fleet.hold("d1", a=300, b=200)
    master.rebalance.refresh()
    master.fleet.calls.clear()
    return master


def test_evacuate_moves_every_dataset_off_the_node_each_copy_verified_first(here):
    outcome = here.rebalance.evacuate("d1")

    assert [(move["dataset"], move["kind"]) for move in outcome["moved"]] == [
        ("a", "drain"),
        ("b", "drain"),
    ]
    assert all(move["verified_files"] == 1 for move in outcome["moved"])
    assert (outcome["failed"], outcome["left"], outcome["blocked"]) == ([], {}, [])
    assert outcome["remaining"] == []
    assert set(here.placed().values()) <= {"d2", "d3"}
    assert here.fleet.trees["d1"] == {}
    for name in ("a", "b"):
        to = here.placed()[name]
        assert here.fleet.steps_of(name) == [
            (to, "pull"),
            ("d1", "manifest"),
            (to, "manifest"),
            (to, "commit"),
            (to, "manifest"),
            ("d1", "remove"),
        ]
    assert [tag for tag, _ in here.fired] == [execution.MOVED_TAG] * 2


def test_a_copy_that_differs_is_never_switched_to_and_its_source_stays(here):
    here.fleet.corrupting |= {"d2", "d3"}

    outcome = here.rebalance.evacuate("d1")

    assert outcome["moved"] == []
    assert "the copy on" in outcome["failed"][0]["error"]
    assert "differ in size or sha256: file" in outcome["failed"][0]["error"]
    assert outcome["remaining"] == ["a", "b"]
    assert here.placed() == {"a": "d1", "b": "d1"}
    assert sorted(here.fleet.trees["d1"]) == ["a", "b"]
    assert not {step for _, step, _ in here.fleet.dataset_steps} & {"commit", "remove"}

    # The next evacuation first cleans what the failed one left, then moves.
    here.fleet.corrupting.clear()
    again = here.rebalance.evacuate("d1")

    assert [entry["action"] for entry in again["recovered"]] == [
        f"cleaned the partial copy on {outcome['failed'][0]['to']}"
    ]
    assert again["remaining"] == []
    assert here.store.journal() == {}


def test_cordoned_nodes_take_nothing_from_an_evacuation(here):
    here.registry.update("d2", cordoned=True)

    outcome = here.rebalance.evacuate("d1")

    assert {move["to"] for move in outcome["moved"]} == {"d3"}
    assert "d2" not in [minion for minion, _, _ in here.fleet.dataset_steps]


def test_what_finds_no_room_is_left_on_the_node_with_the_reason(here):
    here.fleet.capacity |= {"d2": 250, "d3": 250}

    outcome = here.rebalance.evacuate("d1")

    assert [move["dataset"] for move in outcome["moved"]] == ["b"]
    assert outcome["left"] == {
        "a": "no other node of role data has room for 300 bytes below its cleanup level"
    }
    assert outcome["remaining"] == ["a"]
    assert list(here.fleet.trees["d1"]) == ["a"]


def test_a_node_that_does_not_report_is_not_evacuated(here):
    here.fleet.silent.add("d1")

    outcome = here.rebalance.evacuate("d1")

    assert outcome["blocked"] == ["d1 did not report its datasets: nothing moved"]
    assert outcome["moved"] == [] and outcome["remaining"] == ["a", "b"]
    assert here.fleet.dataset_steps == []


def test_an_evacuation_waits_for_no_rebalance_and_moves_nothing_while_one_runs(here):
    held = rebalance_lease_held_by(here.registry, "rebalance-other")

    outcome = here.rebalance.evacuate("d1")

    assert "run rebalance-other holds the rebalance lease" in outcome["blocked"][0]
    assert outcome["blocked"][0].endswith(": nothing moved")
    assert outcome["remaining"] == ["a", "b"]
    assert here.fleet.calls == [], "no node was even asked for its sizes"
    assert held.holder()["run"] == "rebalance-other"


def test_an_evacuation_releases_its_lease(here):
    here.rebalance.evacuate("d1")
    assert here.registry.cache.fetch(registry.CLUSTER_BANK, datasets.REBALANCE_LEASE_KEY) == {}


@pytest.mark.parametrize("node_id", ["d*", "d1,d2"])
def test_an_evacuation_refuses_a_targeting_node_id(here, node_id):
    with pytest.raises(registry.InvalidNodeId):
        here.rebalance.evacuate(node_id)
    assert here.fleet.calls == []


def test_a_rebalance_moves_nothing_onto_a_cordoned_node():
    here = Master(declared={name: {} for name in "abcd"})
    here.fleet.hold("d1", a=200, b=200, c=200, d=200)
    here.registry.update("d2", cordoned=True)
    here.registry.update("d3", cordoned=True)

    plan = here.rebalance.run(threshold=5)

    assert plan["moves"] == []

    here.registry.update("d2", cordoned=False)
    assert {move["to"] for move in here.rebalance.run(threshold=5)["moves"]} == {"d2"}


# --- a run that lost its lease is fenced off --------------------------------------------------


@pytest.fixture
def clock():
    return Clock()


def stalling_at(here, clock, step):
    """
    Minions whose first answer to ``eos_dataset.<step>`` outlasts the rebalance lease, while a
    run of another master takes the expired lease over; returns that run's lease.
    """
    successor = leases.Lease(
        here.registry.cache,
        here.registry.lock,
        registry.CLUSTER_BANK,
        datasets.REBALANCE_LEASE_KEY,
        "rebalance",
        60,
        master="master-b",
    )
    answer = here.rebalance.call
    stalled = []

    def call(targets, fun, args=(), kwargs=None, timeout=None):
        answers = answer(targets, fun, args=args, kwargs=kwargs, timeout=timeout)
        if fun == f"eos_dataset.{step}" and not stalled:
            stalled.append(fun)
            clock.now += here.rebalance.settings["lease_seconds"] + 1
            successor.take("rebalance-next")
        return answers

    here.rebalance.call = call
    return successor


def test_a_drain_that_lost_its_lease_mid_move_writes_and_removes_nothing_after_its_successor(
    here, clock
):
    here.registry.lock = ClockedLock(clock)
    here.rebalance.new_run = lambda: "rebalance-stalled"
    successor = stalling_at(here, clock, "commit")

    outcome = here.rebalance.evacuate("d1")

    assert outcome["moved"] == []
    error = outcome["failed"][0]["error"]
    assert "no longer holds the rebalance lease: run rebalance-next" in error
    assert "run rebalance-stalled (token 1) no longer holds" in error
    assert "(token 2, master master-b)" in error
    # The journal entry stays as it was before the commit (the run's commit on the node itself
    # cannot be taken back): its successor's recovery sees an interrupted move.
    entry = here.store.journal()[outcome["failed"][0]["dataset"]]
    assert (entry["stage"], entry["run"]) == (datasets.PULLING, "rebalance-stalled")
    assert here.placed() == {"a": "d1", "b": "d1"}, "no placement switched"
    assert sorted(here.fleet.trees["d1"]) == ["a", "b"], "no source removed"
    assert "remove" not in {step for _, step, _ in here.fleet.dataset_steps}
    assert successor.holder()["run"] == "rebalance-next", "the stale run released nothing"


def test_a_rebalance_that_lost_its_lease_mid_move_switches_no_placement(here, clock):
    here.registry.lock = ClockedLock(clock)
    here.rebalance.new_run = lambda: "rebalance-stalled"
    stalling_at(here, clock, "commit")

    outcome = here.rebalance.run(dry_run=False)

    assert outcome["moved"] == []
    assert (
        "rebalance-stalled (token 1) no longer holds the rebalance lease: run rebalance-next"
        in (outcome["failed"][0]["error"])
    )
    assert outcome["retcode"] == 1
    assert here.placed() == {"a": "d1", "b": "d1"}
    assert sorted(here.fleet.trees["d1"]) == ["a", "b"]
    assert {entry["stage"] for entry in here.store.journal().values()} == {datasets.PULLING}
