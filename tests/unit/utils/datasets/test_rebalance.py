"""The rebalance planner: lower bound, moves, constraints, bad input, and its properties."""

import itertools
import json
import random
from fractions import Fraction

import pytest
from hypothesis import HealthCheck
from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from saltext.eos.utils import config
from saltext.eos.utils.datasets import rebalance


def node(node_id, capacity, used, role="data", cleanup=90, **domain):
    return rebalance.Node(node_id, role, capacity, used, cleanup, **domain)


def datasets_on(node_id, sizes, role="data", **fields):
    return [
        rebalance.Dataset(f"{node_id}/{number:03d}", node_id, size, role, **fields)
        for number, size in enumerate(sizes)
    ]


def units(node_id, count, role="data"):
    """``count`` datasets of one byte each: the finest granularity."""
    return datasets_on(node_id, [1] * count, role)


def moved(plan):
    return [(move.dataset, move.source, move.destination) for move in plan.moves]


def after(plan):
    return {node_id: usage.used_after for node_id, usage in plan.nodes.items()}


# --- independent checks ----------------------------------------------------------------------


def exact_within(plan, nodes, threshold):
    """{id: within} computed with fractions from the plan's before/after usage, per role."""
    balanced = set(plan.roles)
    result = {}
    for role in balanced:
        members = [n for n in nodes if n.role == role]
        if not members:
            continue
        total_used = sum(plan.nodes[n.id].used_before for n in members)
        total_capacity = sum(n.capacity_bytes for n in members)
        mean = Fraction(100 * total_used, total_capacity)
        for n in members:
            percent = Fraction(100 * plan.nodes[n.id].used_after, n.capacity_bytes)
            result[n.id] = abs(percent - mean) <= Fraction(str(threshold))
    return result


def spread(members, nodes_by_id, level):
    return len({nodes_by_id[node_id].domain(level) for node_id in members})


def replay(nodes, datasets, plan):
    """
    Apply the plan's moves in order and check every rule on the way: each dataset moves once,
    from where it is, between nodes of its role, to its pin if it has one, never to or past the
    destination's cleanup level, never into fewer failure domains for its replicas.
    """
    by_id = {n.id: n for n in nodes}
    by_name = {d.name: d for d in datasets}
    location = {d.name: d.node for d in datasets}
    held = dict.fromkeys(by_id, 0)
    for d in datasets:
        held[d.node] += d.bytes
    used = {n.id: max(n.used_bytes, held[n.id]) for n in nodes}
    groups = {}
    for d in datasets:
        if d.replica_group is not None:
            groups.setdefault(d.replica_group, set()).add(d.name)
    seen = set()
    for move in plan.moves:
        dataset = by_name[move.dataset]
        assert move.dataset not in seen, f"{move.dataset} moves twice"
        seen.add(move.dataset)
        assert move.source == location[move.dataset] == dataset.node
        assert move.bytes == dataset.bytes
        destination = by_id[move.destination]
        assert destination.role == dataset.role
        assert by_id[move.source].role == dataset.role
        if dataset.pin is not None:
            assert (move.kind, move.destination) == ("pin", dataset.pin)
        else:
            assert move.kind == "balance"
        spreads_before = {}
        if dataset.replica_group is not None:
            members = groups[dataset.replica_group]
            spreads_before = {
                level: spread([location[m] for m in members], by_id, level)
                for level in rebalance.DOMAIN_LEVELS
            }
        used[move.source] -= move.bytes
        used[move.destination] += move.bytes
        location[move.dataset] = move.destination
        limit = Fraction(str(destination.cleanup_percent)) * destination.capacity_bytes
        assert 100 * used[move.destination] < limit, f"{move.destination} reached cleanup"
        for level, before in spreads_before.items():
            members = groups[dataset.replica_group]
            assert spread([location[m] for m in members], by_id, level) >= before, level
    assert used == after(plan)
    return used


# --- the lower bound -------------------------------------------------------------------------


def test_lower_bound_is_the_excess_when_excess_dominates():
    # mean 50, band 40-60: a is 30 above, d 10 below -> at least 30 must leave a
    nodes = [node("a", 100, 90), node("b", 100, 40), node("c", 100, 40), node("d", 100, 30)]
    assert rebalance.lower_bound_bytes(nodes, 10) == 30


def test_lower_bound_is_the_deficit_when_deficit_dominates():
    # mean 45, band 35-55: a is 15 above, d 25 below -> at least 25 must arrive at d
    nodes = [node("a", 100, 70), node("b", 100, 50), node("c", 100, 50), node("d", 100, 10)]
    assert rebalance.lower_bound_bytes(nodes, 10) == 25


def test_lower_bound_weights_the_mean_by_capacity():
    # The average of 100% and 0% is 50%, but a 4x larger empty node pulls the mean (used over
    # capacity) down to 20%: band 10-30%, so a keeps at most 30 and b needs at least 40.
    nodes = [node("a", 100, 100), node("b", 400, 0)]
    assert rebalance.lower_bound_bytes(nodes, 10) == max(100 - 30, 40 - 0)


def test_lower_bound_is_zero_on_the_edge_of_the_band():
    nodes = [node("a", 100, 60), node("b", 100, 40)]
    assert rebalance.lower_bound_bytes(nodes, 10) == 0
    assert rebalance.lower_bound_bytes(nodes, 9) == 1


def test_lower_bound_counts_whole_bytes():
    # band 1.2-1.8 bytes: a may keep at most 1 (lose 2), b must reach 2 (gain 2)
    nodes = [node("a", 3, 3), node("b", 3, 0)]
    assert rebalance.lower_bound_bytes(nodes, 10) == 2


def test_lower_bound_sums_roles_each_around_its_own_mean():
    nodes = [
        node("a", 100, 90),
        node("b", 100, 10),
        node("x", 100, 20, role="archive"),
        node("y", 100, 20, role="archive"),
    ]
    assert rebalance.lower_bound_bytes(nodes, 10) == 30


def test_lower_bound_takes_mappings():
    nodes = [
        {"id": "a", "role": "data", "capacity_bytes": 100, "used_bytes": 90, "cleanup_percent": 80},
        {"id": "b", "role": "data", "capacity_bytes": 100, "used_bytes": 10, "cleanup_percent": 80},
    ]
    assert rebalance.lower_bound_bytes(nodes) == 30


# --- plans -----------------------------------------------------------------------------------


def test_plan_moves_exactly_the_lower_bound_with_fine_datasets():
    nodes = [node("a", 100, 70), node("b", 100, 50), node("c", 100, 50), node("d", 100, 10)]
    datasets = units("a", 70) + units("b", 50) + units("c", 50) + units("d", 10)
    plan = rebalance.plan(nodes, datasets, threshold=10)
    assert plan.reached
    assert plan.bytes_moved == plan.lower_bound_bytes == 25
    assert exact_within(plan, nodes, 10) == dict.fromkeys("abcd", True)
    replay(nodes, datasets, plan)


def test_plan_shape():
    nodes = [node("a", 100, 90), node("b", 100, 10)]
    datasets = datasets_on("a", [30, 60]) + datasets_on("b", [10])
    plan = rebalance.plan(nodes, datasets)
    data = plan.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["moves"] == [
        {"dataset": "a/000", "from": "a", "to": "b", "bytes": 30, "kind": "balance"}
    ]
    assert data["nodes"]["a"] == {
        "role": "data",
        "capacity_bytes": 100,
        "used_bytes_before": 90,
        "used_bytes_after": 60,
        "percent_before": 90.0,
        "percent_after": 60.0,
        "within": True,
    }
    assert data["roles"]["data"] == {
        "nodes": 2,
        "mean_percent": 50.0,
        "band_percent": [40.0, 60.0],
        "lower_bound_bytes": 30,
        "bytes_moved": 30,
        "max_deviation_before": 40.0,
        "max_deviation_after": 10.0,
        "reached": True,
    }
    assert (data["bytes_moved"], data["lower_bound_bytes"], data["reached"]) == (30, 30, True)
    assert data["reasons"] == []
    assert data["threshold"] == 10


def test_a_balanced_fleet_moves_nothing():
    nodes = [node("a", 100, 55), node("b", 100, 45)]
    plan = rebalance.plan(nodes, units("a", 55) + units("b", 45))
    assert plan.moves == ()
    assert plan.reached
    assert plan.lower_bound_bytes == 0


def test_one_dataset_that_matches_the_excess_moves_alone():
    nodes = [node("a", 100, 90), node("b", 100, 10)]
    datasets = datasets_on("a", [10, 10, 10, 10, 20, 30]) + datasets_on("b", [10])
    plan = rebalance.plan(nodes, datasets)
    assert moved(plan) == [("a/005", "a", "b")]
    assert plan.bytes_moved == plan.lower_bound_bytes == 30


def test_largest_fitting_first_then_the_smallest_that_still_helps():
    # excess 30: 25 fits; the remaining 5 fits no dataset, so the smallest larger (15) goes
    # while it keeps b inside its band and brings both nodes in.
    nodes = [node("a", 100, 90), node("b", 100, 10)]
    datasets = datasets_on("a", [25, 25, 25, 15]) + datasets_on("b", [10])
    plan = rebalance.plan(nodes, datasets)
    assert [move.bytes for move in plan.moves] == [25, 15]
    assert after(plan) == {"a": 50, "b": 50}
    assert plan.reached


def test_a_move_never_pushes_the_destination_past_the_band():
    # the only dataset (70) would take b from 30% to 100%: no move, and the plan says why
    nodes = [node("a", 100, 70), node("b", 100, 30)]
    plan = rebalance.plan(nodes, datasets_on("a", [70]) + datasets_on("b", [30]))
    assert plan.moves == ()
    assert not plan.reached
    assert any(reason.startswith("node a (role data) stays at 70.0%") for reason in plan.reasons)
    assert any("no node of its role has room" in reason for reason in plan.reasons)


def test_datasets_are_sized_by_bytes_not_counted():
    # a holds few large datasets, b many small ones, both 50%: balanced by bytes
    nodes = [node("a", 100, 50), node("b", 100, 50)]
    plan = rebalance.plan(nodes, datasets_on("a", [25, 25]) + units("b", 50))
    assert plan.moves == ()
    assert plan.reached


def test_empty_datasets_never_move():
    nodes = [node("a", 100, 90), node("b", 100, 10)]
    datasets = datasets_on("a", [0, 90]) + datasets_on("b", [10])
    plan = rebalance.plan(nodes, datasets)
    assert "a/000" not in {move.dataset for move in plan.moves}


def test_the_plan_is_deterministic_whatever_the_input_order():
    rng = random.Random(7)
    nodes = [node(f"n{i}", 1000, rng.randrange(900)) for i in range(8)]
    datasets = [d for n in nodes for d in units(n.id, n.used_bytes // 10 * 10)]
    first = rebalance.plan(nodes, datasets)
    shuffled_nodes, shuffled_datasets = list(nodes), list(datasets)
    rng.shuffle(shuffled_nodes)
    rng.shuffle(shuffled_datasets)
    assert rebalance.plan(shuffled_nodes, shuffled_datasets).as_dict() == first.as_dict()


def test_mappings_are_accepted_with_the_default_role():
    nodes = [
        {"id": "a", "role": "data", "capacity_bytes": 100, "used_bytes": 90, "cleanup_percent": 80},
        {"id": "b", "role": "data", "capacity_bytes": 100, "used_bytes": 10, "cleanup_percent": 80,
         "datacenter": "dc1", "rack": 3, "host": "b.example"},
    ]  # fmt: skip
    datasets = [
        {"name": "big", "node": "a", "bytes": 30},
        {"name": "rest", "node": "a", "bytes": 60},
    ]
    plan = rebalance.plan(nodes, datasets)
    assert moved(plan) == [("big", "a", "b")]


def test_a_node_counts_as_at_least_as_full_as_its_datasets():
    # b reports 5 bytes used (an older figure) but holds 10 bytes of datasets
    nodes = [node("a", 100, 90), node("b", 100, 5)]
    plan = rebalance.plan(nodes, datasets_on("a", [30, 60]) + datasets_on("b", [10]))
    assert plan.nodes["b"].used_before == 10
    assert plan.roles["data"].mean_percent == 50.0


def test_usage_outside_datasets_is_reported_when_it_keeps_a_node_above():
    # 80 of a's 90 bytes are not in datasets (the OS, logs): it can only shed 10
    nodes = [node("a", 100, 90), node("b", 100, 10)]
    plan = rebalance.plan(nodes, units("a", 10) + units("b", 10))
    assert plan.nodes["a"].used_after == 80
    assert not plan.reached
    (reason,) = [r for r in plan.reasons if r.startswith("node a ")]
    assert "not in datasets the planner may move" in reason


# --- free space and the cleanup level --------------------------------------------------------


def test_a_destination_never_reaches_its_cleanup_level():
    # b's cleanup level is 30%: it may take up to 29 bytes, never 30, whatever the band says
    nodes = [node("a", 100, 90, cleanup=95), node("b", 100, 10, cleanup=30)]
    datasets = units("a", 90) + units("b", 10)
    plan = rebalance.plan(nodes, datasets)
    assert after(plan) == {"a": 71, "b": 29}
    assert not plan.reached
    replay(nodes, datasets, plan)
    (reason_b,) = [r for r in plan.reasons if r.startswith("node b ")]
    assert "cleanup level is below the band" in reason_b
    assert any(r.startswith("node a ") for r in plan.reasons)


def test_a_fractional_cleanup_level_is_exact():
    nodes = [node("a", 1000, 900, cleanup=95), node("b", 1000, 100, cleanup=30.5)]
    plan = rebalance.plan(nodes, units("a", 900) + units("b", 100))
    assert plan.nodes["b"].used_after == 304  # 305 would be 30.5%


def test_other_nodes_take_what_a_full_one_cannot():
    nodes = [
        node("a", 100, 90, cleanup=95),
        node("b", 100, 10, cleanup=20),
        node("c", 100, 10, cleanup=95),
    ]
    datasets = units("a", 90) + units("b", 10) + units("c", 10)
    plan = rebalance.plan(nodes, datasets)
    replay(nodes, datasets, plan)
    # band 26.7-46.7%: a sheds 44 bytes, b takes what its cleanup level allows, c the rest
    assert plan.nodes["b"].used_after == 19
    assert plan.nodes["a"].within
    assert plan.nodes["c"].within
    assert [r for r in plan.reasons if r.startswith("node ")] == [
        "node b (role data) stays at 19.0%, below the band 26.7-46.7%: "
        "its cleanup level is below the band, and no move may push it there"
    ]


# --- pins ------------------------------------------------------------------------------------


def test_a_dataset_pinned_where_it_lives_never_moves():
    nodes = [node("a", 100, 90), node("b", 100, 10)]
    datasets = datasets_on("a", [90], pin="a") + datasets_on("b", [10])
    plan = rebalance.plan(nodes, datasets)
    assert plan.moves == ()
    (reason,) = [r for r in plan.reasons if r.startswith("node a ")]
    assert "pinned" in reason


def test_a_dataset_pinned_elsewhere_moves_to_its_pin_first():
    nodes = [node("a", 100, 50), node("b", 100, 50), node("c", 100, 50)]
    datasets = (
        datasets_on("a", [10], pin="c")
        + datasets_on("a", [40])
        + datasets_on("b", [50])
        + datasets_on("c", [50])
    )
    datasets[1] = datasets[1]._replace(name="a/rest")
    plan = rebalance.plan(nodes, datasets)
    assert plan.moves[0].as_dict() == {
        "dataset": "a/000", "from": "a", "to": "c", "bytes": 10, "kind": "pin"
    }  # fmt: skip
    replay(nodes, datasets, plan)
    assert plan.reached


def test_a_pin_without_room_stays_and_says_why():
    nodes = [node("a", 100, 40), node("b", 100, 80, cleanup=85)]
    datasets = datasets_on("a", [10], pin="b") + datasets_on("b", [80])
    plan = rebalance.plan(nodes, datasets)
    assert "a/000" not in {move.dataset for move in plan.moves}
    assert any(
        r.startswith("dataset a/000 stays on a, not on its pin b: b would reach its cleanup")
        for r in plan.reasons
    )


def test_a_pin_on_an_excluded_node_stays():
    nodes = [node("a", 100, 40), node("b", 100, 40)]
    datasets = datasets_on("a", [10], pin="b") + datasets_on("b", [40])
    plan = rebalance.plan(nodes, datasets, exclude_nodes=["b"])
    assert plan.moves == ()
    assert "dataset a/000 stays on a, not on its pin b: b is excluded" in plan.reasons


# --- roles -----------------------------------------------------------------------------------


def test_each_role_balances_among_its_own_nodes():
    nodes = [
        node("a", 100, 90),
        node("b", 100, 10),
        node("x", 100, 80, role="archive"),
        node("y", 100, 0, role="archive"),
    ]
    datasets = units("a", 90) + units("b", 10) + units("x", 80, role="archive")
    plan = rebalance.plan(nodes, datasets)
    replay(nodes, datasets, plan)
    assert set(plan.roles) == {"archive", "data"}
    assert plan.roles["data"].mean_percent == 50.0
    assert plan.roles["archive"].mean_percent == 40.0
    assert plan.reached
    assert plan.lower_bound_bytes == (
        plan.roles["data"].lower_bound_bytes + plan.roles["archive"].lower_bound_bytes
    )
    assert plan.roles["archive"].bytes_moved == 30
    assert plan.roles["data"].bytes_moved == 30


def test_nodes_of_roles_without_datasets_are_reported_but_not_balanced():
    nodes = [node("a", 100, 90), node("b", 100, 10), node("edge-1", 100, 95, role="edge")]
    plan = rebalance.plan(nodes, units("a", 90) + units("b", 10))
    assert set(plan.roles) == {"data"}
    assert plan.nodes["edge-1"].within is None
    assert plan.nodes["edge-1"].used_after == 95
    assert plan.reached


def test_data_nodes_are_balanced_even_without_datasets():
    nodes = [node("a", 100, 90), node("b", 100, 10), node("edge-1", 100, 95, role="edge")]
    plan = rebalance.plan(nodes, [])
    assert set(plan.roles) == {"data"}
    assert not plan.reached
    (reason,) = [r for r in plan.reasons if r.startswith("node a ")]
    assert "not in datasets the planner may move" in reason


def test_a_dataset_on_a_node_of_another_role_stays_and_says_why():
    nodes = [node("a", 100, 60), node("b", 100, 40), node("app-1", 100, 50, role="app")]
    datasets = units("a", 60) + units("b", 40) + datasets_on("app-1", [50])
    plan = rebalance.plan(nodes, datasets)
    assert "app-1/000" not in {move.dataset for move in plan.moves}
    assert (
        "dataset app-1/000 (role data) stays on app-1 (role app): "
        "datasets move only between nodes of their role"
    ) in plan.reasons


# --- replicas --------------------------------------------------------------------------------


def test_replicas_never_end_up_in_fewer_racks():
    nodes = [node("a", 100, 90, rack="r1"), node("b", 100, 10, rack="r2")]
    datasets = [
        rebalance.Dataset("copy-1", "a", 30, replica_group="orders"),
        rebalance.Dataset("copy-2", "b", 10, replica_group="orders"),
    ]
    plan = rebalance.plan(nodes, datasets)
    assert plan.moves == ()
    (reason,) = [r for r in plan.reasons if r.startswith("node a ")]
    assert "replicas" in reason


def test_replicas_move_to_a_new_failure_domain():
    nodes = [
        node("a", 100, 90, rack="r1"),
        node("b", 100, 10, rack="r2"),
        node("c", 100, 20, rack="r3"),
    ]
    datasets = [
        rebalance.Dataset("copy-1", "a", 30, replica_group="orders"),
        rebalance.Dataset("copy-2", "b", 10, replica_group="orders"),
    ]
    plan = rebalance.plan(nodes, datasets)
    assert moved(plan) == [("copy-1", "a", "c")]
    replay(nodes, datasets, plan)


def test_replicas_never_share_a_host_when_the_cluster_has_no_racks():
    nodes = [node("a", 100, 90, host="h1"), node("b", 100, 10, host="h2")]
    datasets = [
        rebalance.Dataset("copy-1", "a", 30, replica_group="orders"),
        rebalance.Dataset("copy-2", "b", 10, replica_group="orders"),
    ]
    assert rebalance.plan(nodes, datasets).moves == ()


def test_racks_of_the_same_name_in_two_datacenters_are_two_domains():
    nodes = [
        node("a", 100, 90, datacenter="dc1", rack="r1"),
        node("b", 100, 10, datacenter="dc2", rack="r1"),
        node("c", 100, 30, datacenter="dc2", rack="r2"),
    ]
    datasets = [
        rebalance.Dataset("copy-1", "a", 30, replica_group="orders"),
        rebalance.Dataset("copy-2", "c", 30, replica_group="orders"),
    ]
    plan = rebalance.plan(nodes, datasets)
    # dc1 -> dc2 would leave both copies in dc2: not allowed, although the racks differ
    assert plan.moves == ()


# --- exclusions ------------------------------------------------------------------------------


def test_an_excluded_node_neither_sends_nor_receives_nor_counts():
    nodes = [node("a", 100, 90), node("b", 100, 10), node("c", 100, 0)]
    datasets = units("a", 90) + units("b", 10)
    plan = rebalance.plan(nodes, datasets, exclude_nodes=["c"])
    assert plan.nodes["c"].used_after == 0
    assert plan.nodes["c"].within is None
    assert plan.roles["data"].mean_percent == 50.0
    assert plan.reached


def test_an_excluded_dataset_stays():
    nodes = [node("a", 100, 90), node("b", 100, 10)]
    datasets = datasets_on("a", [30, 60]) + datasets_on("b", [10])
    plan = rebalance.plan(nodes, datasets, exclude_datasets=["a/000"])
    assert "a/000" not in {move.dataset for move in plan.moves}


# --- bad input -------------------------------------------------------------------------------


def good_nodes():
    return [node("a", 100, 50), node("b", 100, 50), node("app-1", 100, 50, role="app")]


@pytest.mark.parametrize("threshold", [0, 0.5, 51, -10, True, "10", None, float("nan")])
def test_a_threshold_outside_1_to_50_is_refused(threshold):
    with pytest.raises(rebalance.InvalidRebalance, match=r"^threshold: .* from 1 to 50"):
        rebalance.plan(good_nodes(), [], threshold=threshold)
    with pytest.raises(rebalance.InvalidRebalance, match=r"^threshold: "):
        rebalance.lower_bound_bytes(good_nodes(), threshold)


@pytest.mark.parametrize("threshold", [1, 2.5, 50])
def test_thresholds_from_1_to_50_are_accepted(threshold):
    assert rebalance.plan(good_nodes(), [], threshold=threshold).threshold == threshold


def test_the_error_is_an_invalid_configuration():
    assert issubclass(rebalance.InvalidRebalance, config.InvalidConfig)


BAD_DATASETS = [
    ({"name": "x", "node": "nowhere", "bytes": 1}, r"\(x\): node 'nowhere' is not a known node"),
    (
        {"name": "x", "node": "a", "bytes": 1, "pin": "nowhere"},
        r"pin 'nowhere' is not a known node",
    ),
    (
        {"name": "x", "node": "a", "bytes": 1, "pin": "app-1"},
        r"\(x\): pin 'app-1' is a node of role 'app', but the dataset's role is 'data'",
    ),
    (
        {"name": "x", "node": "app-1", "bytes": 1, "role": "app", "pin": "a"},
        r"\(x\): pin 'a' is a node of role 'data', but the dataset's role is 'app'",
    ),
    ({"name": "x", "node": "a", "bytes": -1}, r"\(x\): bytes -1 must be >= 0"),
    ({"name": "x", "node": "a", "bytes": 1.5}, r"\(x\): bytes 1.5 is not a whole number"),
    ({"name": "x", "node": "a", "bytes": True}, r"\(x\): bytes True is not a whole number"),
    ({"name": "x", "node": "a"}, r"\(x\): missing bytes"),
    ({"name": "", "node": "a", "bytes": 1}, r"\]: name '' is not a non-empty string"),
    ({"node": "a", "bytes": 1}, r"\]: name None is not a non-empty string"),
    ({"name": "x", "node": "a", "bytes": 1, "size": 2}, r"\]: unknown field 'size'"),
    (
        {"name": "x", "node": "a", "bytes": 1, "replica_group": 3},
        r"\(x\): replica_group 3 is not a non-empty string",
    ),
    ({"name": "x", "node": "a", "bytes": 101}, r"^node a: its datasets hold 101 bytes, more than"),
    ("x", r"\]: 'x' is not a mapping"),
]


@pytest.mark.parametrize(("dataset", "message"), BAD_DATASETS)
def test_bad_datasets_are_refused_naming_the_item(dataset, message):
    with pytest.raises(rebalance.InvalidRebalance, match=message) as error:
        rebalance.plan(good_nodes(), [dataset])
    if not message.startswith("^"):
        assert str(error.value).startswith("datasets[0]")


def test_a_duplicate_dataset_name_is_refused():
    datasets = [{"name": "x", "node": "a", "bytes": 1}, {"name": "x", "node": "b", "bytes": 1}]
    with pytest.raises(rebalance.InvalidRebalance, match=r"datasets\[1\] \(x\): duplicate name"):
        rebalance.plan(good_nodes(), datasets)


def node_fields(**fields):
    return {"id": "a", "role": "data", "capacity_bytes": 100, "used_bytes": 50,
            "cleanup_percent": 80, **fields}  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"id": ""}, r"nodes\[0\]: id '' is not a non-empty string"),
        ({"role": None}, r"nodes\[0\] \(a\): missing role"),
        ({"capacity_bytes": 0}, r"nodes\[0\] \(a\): capacity_bytes 0 must be > 0"),
        ({"capacity_bytes": "1T"}, r"nodes\[0\] \(a\): capacity_bytes '1T' is not a whole"),
        ({"used_bytes": 101}, r"nodes\[0\] \(a\): used_bytes 101 is above capacity_bytes 100"),
        ({"used_bytes": -1}, r"nodes\[0\] \(a\): used_bytes -1 must be >= 0"),
        ({"cleanup_percent": 0}, r"nodes\[0\] \(a\): cleanup_percent 0 is not a percent"),
        ({"cleanup_percent": 101}, r"nodes\[0\] \(a\): cleanup_percent 101 is not a percent"),
        ({"rack": ["r1"]}, r"nodes\[0\] \(a\): rack \['r1'\] is not a string"),
        ({"disk": 1}, r"nodes\[0\]: unknown field 'disk'"),
    ],
)
def test_bad_nodes_are_refused_naming_the_item(fields, message):
    with pytest.raises(rebalance.InvalidRebalance, match=message):
        rebalance.plan([node_fields(**fields)], [])


def test_a_duplicate_node_id_is_refused():
    with pytest.raises(rebalance.InvalidRebalance, match=r"nodes\[1\] \(a\): duplicate id"):
        rebalance.plan([node_fields(), node_fields()], [])


@pytest.mark.parametrize(
    ("keyword", "value", "message"),
    [
        ("exclude_nodes", ["nowhere"], r"exclude_nodes: 'nowhere' is not a known node"),
        ("exclude_datasets", ["nothing"], r"exclude_datasets: 'nothing' is not a known dataset"),
        ("exclude_nodes", 3, r"exclude_nodes: 3 is not a list of node names"),
    ],
)
def test_unknown_exclusions_are_refused(keyword, value, message):
    with pytest.raises(rebalance.InvalidRebalance, match=message):
        rebalance.plan(good_nodes(), units("a", 50), **{keyword: value})


@pytest.mark.parametrize("value", ["nodes", None, {"a": 1}])
def test_nodes_and_datasets_must_be_lists(value):
    with pytest.raises(rebalance.InvalidRebalance, match=r"^nodes: .* is not a list"):
        rebalance.plan(value, [])
    with pytest.raises(rebalance.InvalidRebalance, match=r"^datasets: .* is not a list"):
        rebalance.plan(good_nodes(), value)


# --- properties ------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# For fleets of thousands of datasets per example.
LARGE_PROPERTY_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=40)


def filled_node(rng, node_id, capacity, percent, largest, role="data", other_percent=0.0):
    """A node filled to about ``percent`` with datasets of 1..largest bytes."""
    other = int(capacity * other_percent / 100)
    sizes = []
    total = other
    goal = int(capacity * percent / 100)
    while total < goal:
        size = min(rng.randint(1, largest), goal - total)
        sizes.append(size)
        total += size
    return total, datasets_on(node_id, sizes, role)


@st.composite
def feasible_fleets(draw):
    """
    Fleets where the band is reachable: every dataset is at most a fifth of the narrowest
    half-band, usage outside datasets stays below the band, and every cleanup level is above
    its top.
    """
    count = draw(st.integers(2, 12))
    threshold = draw(st.sampled_from([5, 10, 15, 20]))
    rng = random.Random(draw(st.integers(0, 2**32)))
    shapes = [
        (draw(st.integers(10_000, 40_000)), draw(st.integers(0, 90)), draw(st.integers(0, 3)))
        for _ in range(count)
    ]
    largest = 10_000 * threshold // 100 // 5
    nodes, datasets = [], []
    for index, (capacity, percent, other) in enumerate(shapes):
        node_id = f"n{index:02d}"
        used, held = filled_node(rng, node_id, capacity, max(percent, other), largest,
                                 other_percent=other)  # fmt: skip
        nodes.append((node_id, capacity, used))
        datasets += held
    mean = 100 * sum(n[2] for n in nodes) / sum(n[1] for n in nodes)
    assume(mean + threshold < 99 and mean - threshold > 3)
    cleanup = min(100, int(mean + threshold) + 1 + draw(st.integers(0, 5)))
    return [node(i, c, u, cleanup=cleanup) for i, c, u in nodes], datasets, threshold


@PROPERTY_SETTINGS
@given(fleet=feasible_fleets())
def test_property_every_node_ends_within_the_threshold_where_feasible(fleet):
    nodes, datasets, threshold = fleet
    plan = rebalance.plan(nodes, datasets, threshold)
    replay(nodes, datasets, plan)
    assert plan.reached, plan.reasons
    assert all(exact_within(plan, nodes, threshold).values())
    assert plan.reasons == ()
    assert plan.roles["data"].max_deviation_after <= threshold + 1e-9
    assert plan.bytes_moved >= plan.lower_bound_bytes


@st.composite
def skewed_fleets(draw):
    """Fleets of half full and half empty nodes holding many datasets of 1..50 bytes."""
    count = draw(st.integers(2, 16))
    threshold = draw(st.sampled_from([5, 10]))
    rng = random.Random(draw(st.integers(0, 2**32)))
    nodes, datasets = [], []
    for index in range(count):
        capacity = draw(st.integers(50_000, 100_000))
        percent = draw(st.integers(75, 95) if index % 2 == 0 else st.integers(0, 10))
        node_id = f"n{index:02d}"
        used, held = filled_node(rng, node_id, capacity, percent, largest=50)
        nodes.append(node(node_id, capacity, used, cleanup=100))
        datasets += held
    return nodes, datasets, threshold


@LARGE_PROPERTY_SETTINGS
@given(fleet=skewed_fleets())
def test_property_bytes_moved_are_within_5_percent_of_the_lower_bound(fleet):
    nodes, datasets, threshold = fleet
    plan = rebalance.plan(nodes, datasets, threshold)
    assert plan.reached
    assert plan.lower_bound_bytes <= plan.bytes_moved <= 1.05 * plan.lower_bound_bytes


ROLES = ("data", "data", "data", "archive")


@st.composite
def messy_fleets(draw):
    """
    Anything goes: two roles, uneven capacities, low cleanup levels, usage outside datasets,
    large datasets, pins (where the dataset lives and elsewhere), misplaced datasets and
    replica groups over few hosts, racks and datacenters.
    """
    count = draw(st.integers(1, 10))
    threshold = draw(st.sampled_from([1, 2.5, 5, 10, 25, 50]))
    rng = random.Random(draw(st.integers(0, 2**32)))
    nodes = []
    for index in range(count):
        capacity = rng.randint(1_000, 20_000)
        nodes.append(
            rebalance.Node(
                id=f"n{index:02d}",
                role=rng.choice(ROLES),
                capacity_bytes=capacity,
                used_bytes=0,
                cleanup_percent=rng.choice([50, 70, 85, 90, 99.5, 100]),
                datacenter=rng.choice([None, "dc1", "dc2"]),
                rack=rng.choice([None, "r1", "r2", "r3"]),
                host=rng.choice([None, "h1", "h2", "h3", "h4"]),
            )
        )
    datasets = []
    for n in list(nodes):
        room = n.capacity_bytes
        other = rng.randint(0, room // 10)
        room -= other
        used = other
        for number in range(rng.randint(0, 15)):
            size = min(room, rng.choice([0, rng.randint(1, n.capacity_bytes // 8)]))
            room -= size
            used += size
            role = n.role if rng.random() < 0.9 else rng.choice(ROLES)
            same_role = [m.id for m in nodes if m.role == role]
            pin = None
            if same_role and rng.random() < 0.15:
                pin = rng.choice(same_role)
            datasets.append(
                rebalance.Dataset(
                    f"{n.id}/{number:02d}",
                    n.id,
                    size,
                    role,
                    pin,
                    rng.choice([None, None, "g1", "g2", "g3"]),
                )
            )
        nodes[nodes.index(n)] = n.__class__(**{**_fields(n), "used_bytes": used})
    return nodes, datasets, threshold


def _fields(n):
    return {name: getattr(n, name) for name in rebalance.Node.__slots__}


@PROPERTY_SETTINGS
@given(fleet=messy_fleets())
def test_property_every_rule_holds_on_any_fleet(fleet):
    nodes, datasets, threshold = fleet
    plan = rebalance.plan(nodes, datasets, threshold)
    replay(nodes, datasets, plan)
    within = exact_within(plan, nodes, threshold)
    for node_id, inside in within.items():
        assert plan.nodes[node_id].within == inside
        if not inside:
            assert any(r.startswith(f"node {node_id} ") for r in plan.reasons), node_id
    assert plan.reached == all(within.values())
    if plan.reached:
        assert plan.bytes_moved >= plan.lower_bound_bytes
    # Balancing never pushes a destination past the top of its band.
    pinned_to = {d.pin for d in datasets if d.pin is not None}
    received = {m.destination for m in plan.moves} - pinned_to
    for node_id in received:
        usage = plan.nodes[node_id]
        balance = plan.roles[usage.role]
        assert usage.percent_after <= balance.mean_percent + threshold + 1e-9


@PROPERTY_SETTINGS
@given(fleet=messy_fleets(), seed=st.integers(0, 1000))
def test_property_deterministic_whatever_the_order(fleet, seed):
    nodes, datasets, threshold = fleet
    first = rebalance.plan(nodes, datasets, threshold).as_dict()
    rng = random.Random(seed)
    shuffled_nodes, shuffled_datasets = list(nodes), list(datasets)
    rng.shuffle(shuffled_nodes)
    rng.shuffle(shuffled_datasets)
    assert rebalance.plan(shuffled_nodes, shuffled_datasets, threshold).as_dict() == first
    assert rebalance.plan(nodes, datasets, threshold).as_dict() == first


@PROPERTY_SETTINGS
@given(fleet=messy_fleets())
def test_property_pins_are_honoured(fleet):
    nodes, datasets, threshold = fleet
    plan = rebalance.plan(nodes, datasets, threshold)
    moves = {move.dataset: move for move in plan.moves}
    for dataset in datasets:
        if dataset.pin is None:
            continue
        if dataset.pin == dataset.node:
            assert dataset.name not in moves
        elif dataset.name in moves:
            assert moves[dataset.name].destination == dataset.pin
        else:
            assert any(
                r.startswith(f"dataset {dataset.name} ") and f"not on its pin {dataset.pin}" in r
                for r in plan.reasons
            )


@st.composite
def tiny_fleets(draw):
    """Two or three nodes and up to six datasets: few enough to try every placement."""
    count = draw(st.integers(2, 3))
    threshold = draw(st.sampled_from([1, 5, 10, 20]))
    nodes, datasets = [], []
    for index in range(count):
        node_id = f"n{index}"
        capacity = draw(st.integers(150, 250))  # room for 20 + 3 * 40 bytes
        other = draw(st.integers(0, 20))
        sizes = draw(st.lists(st.integers(1, 40), max_size=6 // count))
        nodes.append(node(node_id, capacity, other + sum(sizes), cleanup=100))
        datasets += datasets_on(node_id, sizes)
    return nodes, datasets, threshold


def cheapest_placement(nodes, datasets, threshold):
    """The fewest bytes moved by any placement that brings every node within the threshold."""
    by_id = {n.id: n for n in nodes}
    fixed = {n.id: n.used_bytes - sum(d.bytes for d in datasets if d.node == n.id) for n in nodes}
    mean = Fraction(100 * sum(n.used_bytes for n in nodes), sum(n.capacity_bytes for n in nodes))
    best = None
    for placement in itertools.product(by_id, repeat=len(datasets)):
        used = dict(fixed)
        for dataset, node_id in zip(datasets, placement, strict=True):
            used[node_id] += dataset.bytes
        if all(
            abs(Fraction(100 * used[i], by_id[i].capacity_bytes) - mean) <= threshold for i in by_id
        ):
            cost = sum(d.bytes for d, i in zip(datasets, placement, strict=True) if i != d.node)
            best = cost if best is None else min(best, cost)
    return best


@PROPERTY_SETTINGS
@given(fleet=tiny_fleets())
def test_property_the_lower_bound_never_exceeds_the_cheapest_placement(fleet):
    nodes, datasets, threshold = fleet
    cheapest = cheapest_placement(nodes, datasets, threshold)
    plan = rebalance.plan(nodes, datasets, threshold)
    if cheapest is not None:
        assert plan.lower_bound_bytes <= cheapest
    if plan.reached:
        assert cheapest is not None
        assert plan.bytes_moved >= cheapest >= plan.lower_bound_bytes
