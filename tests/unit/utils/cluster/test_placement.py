"""The role solver: feasibility, targets, stability, policy, spread, explanations, validate."""

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from saltext.eos.utils.cluster import placement
from saltext.eos.utils.cluster import roles

BIG = {"cpu": 16, "memory_gb": 64, "disk_gb": 1000}  # meets every default role
SMALL = {"cpu": 2, "memory_gb": 4, "disk_gb": 50}  # edge or app only


def node(node_id, size=BIG, **fields):
    return {"id": node_id, **size, **fields}


def cluster(n, size=BIG, prefix="n", **fields):
    return [node(f"{prefix}{i:03d}", size, **fields) for i in range(n)]


def counts(result):
    return Counter(role for held in result.assignments.values() for role in held)


def holders(result, role):
    return sorted(node_id for node_id, held in result.assignments.items() if role in held)


def with_roles(nodes, result):
    """The same nodes, each now holding the roles ``result`` gave it."""
    return [{**n, "roles": result.assignments[n["id"]]} for n in nodes]


def nonzero(mapping):
    return {key: value for key, value in mapping.items() if value}


# --- targets on real clusters ----------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 9))
def test_small_clusters_get_exactly_the_table(n):
    result = placement.solve(cluster(n))
    assert counts(result) == nonzero(roles.targets(n))
    assert all(len(held) == 1 for held in result.assignments.values())
    assert result.unplaced == []
    assert placement.validate(result.assignments, cluster(n)) == []


@pytest.mark.parametrize("n", [7, 9, 10, 11, 12, 13, 14, 100])
def test_former_bug_sizes_place_every_node_once(n):
    result = placement.solve(cluster(n))
    assert sum(counts(result).values()) == n
    assert counts(result) == nonzero(roles.targets(n))


def test_empty_cluster():
    result = placement.solve([])
    assert result.assignments == {}
    assert result.unplaced == []


def test_one_node_is_the_monolith():
    result = placement.solve([node("solo", SMALL)])
    assert result.assignments == {"solo": ["monolith"]}
    assert result.first_assignments == 1


def test_one_node_below_the_monolith_minimums_is_reported():
    result = placement.solve([node("solo", {"cpu": 1, "memory_gb": 2, "disk_gb": 50})])
    assert result.assignments == {"solo": []}
    assert result.unplaced == [
        {
            "role": "monolith",
            "missing": 1,
            "target": 1,
            "reason": "no node meets monolith's minimum of 2 cpu cores and 4 GB memory",
        }
    ]


def test_second_node_turns_the_monolith_into_a_real_role():
    first = placement.solve([node("a")])
    result = placement.solve([*with_roles([node("a")], first), node("b")])
    assert sorted(r for held in result.assignments.values() for r in held) == ["core", "edge"]
    assert (result.churn, result.first_assignments) == (1, 1)
    assert result.changes["a"]["old"] == ["monolith"]
    assert result.changes["b"]["old"] == []


# --- resources -------------------------------------------------------------------------------


def test_a_role_goes_only_to_nodes_that_meet_its_minimums():
    nodes = [node("big", {"cpu": 4, "memory_gb": 16, "disk_gb": 500}), *cluster(2, SMALL)]
    result = placement.solve(nodes)
    assert result.assignments["big"] == ["data"]
    # Core needs 4 cpu / 8 GB: only "big" meets it, and data (more demanding) took it first.
    assert [entry["role"] for entry in result.unplaced] == ["core"]


def test_unplaceable_role_names_the_minimum_nobody_meets():
    nodes = [node(f"n{i}", {"cpu": 8, "memory_gb": 8, "disk_gb": 1000}) for i in range(3)]
    result = placement.solve(nodes)
    assert result.unplaced == [
        {
            "role": "data",
            "missing": 1,
            "target": 1,
            "reason": "no node meets data's minimum of 16 GB memory",
        }
    ]
    assert "data" not in counts(result)


def test_unplaceable_when_no_node_meets_all_minimums_together():
    nodes = [
        node("mem", {"cpu": 2, "memory_gb": 16, "disk_gb": 50}),
        node("disk", {"cpu": 4, "memory_gb": 8, "disk_gb": 500}),
        node("edge", {"cpu": 4, "memory_gb": 8, "disk_gb": 100}),
    ]
    (data,) = placement.solve(nodes).unplaced
    assert data["reason"].startswith("no node meets all of data's requirements")


def test_unplaceable_when_the_able_nodes_are_taken_says_by_what():
    nodes = [node("only", {"cpu": 4, "memory_gb": 16, "disk_gb": 500}), *cluster(2, SMALL)]
    result = placement.solve(nodes, policy={"pins": {"only": "edge"}})
    reasons = {entry["role"]: entry["reason"] for entry in result.unplaced}
    assert "are taken: 0 hold data, 1 pinned" in reasons["data"]
    assert "are taken: 0 hold core, 1 pinned" in reasons["core"]


def test_nodes_meeting_no_role_are_reported_under_the_remainder():
    tiny = {"cpu": 1, "memory_gb": 1, "disk_gb": 10}
    result = placement.solve([*cluster(5), node("tiny", tiny)])
    assert result.assignments["tiny"] == []
    (app,) = result.unplaced
    assert app["role"] == "app"
    assert app["reason"].startswith("1 node(s) (tiny) meet no role that still had room")


def test_scarce_roles_are_placed_first():
    # Only "fat" meets data; it also meets edge and core, which come first in the catalogue.
    nodes = [
        node("a-fat", {"cpu": 4, "memory_gb": 16, "disk_gb": 500}),
        node("b", {"cpu": 4, "memory_gb": 8, "disk_gb": 100}),
        node("c", {"cpu": 4, "memory_gb": 8, "disk_gb": 100}),
    ]
    result = placement.solve(nodes)
    assert result.assignments["a-fat"] == ["data"]
    assert result.unplaced == []


def test_least_waste_keeps_the_big_node_for_the_role_that_needs_it():
    just_fits = {"cpu": 4, "memory_gb": 16, "disk_gb": 500}
    nodes = [node("a-huge", {"cpu": 32, "memory_gb": 128, "disk_gb": 2000}), node("b", just_fits)]
    nodes += cluster(8, {"cpu": 4, "memory_gb": 8, "disk_gb": 200}, prefix="m")
    result = placement.solve(nodes, catalogue={"data": {"count": 1}})
    assert result.assignments["b"] == ["data"]
    assert result.assignments["a-huge"] == ["compute"]


def test_fit_score_balance_and_least_waste():
    spec = roles.catalog()["data"]  # 4 cpu, 16 GB, 500 GB
    snug = roles.nodes([node("snug", {"cpu": 4, "memory_gb": 16, "disk_gb": 500})])[0]
    roomy = roles.nodes([node("roomy", {"cpu": 8, "memory_gb": 32, "disk_gb": 1000})])[0]
    lopsided = roles.nodes([node("lop", {"cpu": 64, "memory_gb": 16, "disk_gb": 500})])[0]
    assert placement.fit(snug, spec) == placement.Fit(balance=1.0, fit=1.0)
    assert placement.fit(snug, spec).score == 100
    assert placement.fit(roomy, spec) == placement.Fit(balance=1.0, fit=0.5)
    lop = placement.fit(lopsided, spec)
    assert lop.balance < 1.0
    assert placement.fit(roomy, spec).score > lop.score


def test_a_role_asking_for_nothing_fits_everywhere_equally():
    spec = roles.catalog({"free": {}})["free"]
    (anything,) = roles.nodes([node("x")])
    assert placement.fit(anything, spec).score == 50


def test_feasibility_forces_a_swap_when_nothing_free_fits():
    # "a" holds edge but is the only node able to hold data; the new node "d" can take edge.
    data_sized = {"cpu": 4, "memory_gb": 16, "disk_gb": 500}
    core_sized = {"cpu": 4, "memory_gb": 8, "disk_gb": 100}
    nodes = [
        node("a", data_sized, roles=["edge"]),
        node("b", core_sized, roles=["core"]),
        node("c", SMALL, roles=["app"]),
    ]
    result = placement.solve(nodes)
    assert result.assignments == {"a": ["data"], "b": ["core"], "c": ["edge"]}
    assert result.churn == 2
    assert result.explain("a")["reason"].startswith("moved from edge to data")
    assert result.explain("c")["reason"] == "took over edge from a, which moved to data"


def test_a_short_quorum_role_stays_odd():
    # message wants 3 at 60 nodes; only two nodes meet its 8 GB memory minimum.
    nodes = [*cluster(58, SMALL), *cluster(2, {"cpu": 2, "memory_gb": 8, "disk_gb": 100}, "m")]
    result = placement.solve(nodes, catalogue={"edge": {"count": 0}, "core": {"count": 0}})
    assert result.targets["message"] == 3
    assert len(holders(result, "message")) == 1
    (message,) = [entry for entry in result.unplaced if entry["role"] == "message"]
    assert message["missing"] == 2
    assert message["reason"] == (
        "only 2 node(s) could hold message, and a quorum needs an odd count, so it has 1"
    )


# --- stability -------------------------------------------------------------------------------


def test_solving_a_solved_cluster_changes_nothing():
    nodes = cluster(50)
    first = placement.solve(nodes)
    again = placement.solve(with_roles(nodes, first))
    assert again.assignments == first.assignments
    assert (again.churn, again.first_assignments, again.changes) == (0, 0, {})


def test_joining_node_takes_the_free_slot_without_churn():
    nodes = cluster(20)
    before = placement.solve(nodes)
    after = placement.solve([*with_roles(nodes, before), node("new")])
    assert roles.targets(21) == {**roles.targets(20), "app": roles.targets(20)["app"] + 1}
    assert after.churn == 0
    assert after.changes == {"new": {"old": [], "new": ["app"]}}


def test_joining_node_causes_only_the_churn_new_targets_require():
    nodes = cluster(29)
    before = placement.solve(nodes)
    after = placement.solve([*with_roles(nodes, before), node("new")])
    grown = {r: roles.targets(30)[r] - roles.targets(29)[r] for r in roles.targets(30)}
    assert nonzero(grown) == {"edge": 1, "data": 1, "compute": 1, "app": -2}
    # Three new slots: the new node fills one, two app nodes move.
    assert after.churn == 2
    assert after.first_assignments == 1
    assert all(change["old"] in (["app"], []) for change in after.changes.values())


def test_current_roles_are_kept_even_when_another_node_fits_better():
    nodes = [
        node("a", {"cpu": 16, "memory_gb": 64, "disk_gb": 2000}, roles=["data"]),
        node("b", {"cpu": 4, "memory_gb": 16, "disk_gb": 500}, roles=["app"]),
        *cluster(3, prefix="m", roles=["app"]),
    ]
    result = placement.solve(nodes)
    assert result.assignments["a"] == ["data"]
    assert result.explain("a")["reason"].startswith("kept its current role")


def test_a_role_no_longer_feasible_is_dropped_and_counted_as_churn():
    nodes = [node("a", SMALL, roles=["data"]), *cluster(2, prefix="m")]
    result = placement.solve(nodes)
    assert result.assignments["a"] == ["edge"]
    assert result.changes["a"] == {"old": ["data"], "new": ["edge"]}
    assert result.churn == 1


def test_roles_above_target_are_released():
    nodes = cluster(3, roles=["data"])
    result = placement.solve(nodes)
    assert counts(result) == {"edge": 1, "core": 1, "data": 1}
    assert result.churn == 2


# --- policy ----------------------------------------------------------------------------------


def test_pinned_node_gets_exactly_its_pins_counted_toward_targets():
    nodes = cluster(8)
    result = placement.solve(nodes, policy={"pins": {"n005": ["data", "observe"]}})
    assert result.assignments["n005"] == ["data", "observe"]
    assert counts(result)["observe"] == 1  # the pin is the one observe
    assert counts(result)["data"] == 2
    assert result.explain("n005")["reason"] == "pinned to data, observe by eos:roles:pins"
    assert result.explain("n005")["alternatives"] == []


def test_pins_win_over_minimums_with_a_warning():
    result = placement.solve(cluster(3, SMALL), policy={"pins": {"n000": "data"}})
    assert result.assignments["n000"] == ["data"]
    assert result.warnings == [
        "n000 is pinned to data but has 2 cpu cores < data's minimum of 4; "
        "4 GB memory < data's minimum of 16; 50 GB disk < data's minimum of 500"
    ]


def test_pins_above_a_target_are_warned_about():
    result = placement.solve(cluster(3), policy={"pins": {"n000": "data", "n001": "data"}})
    assert counts(result)["data"] == 2
    assert "pins give data 2 node(s), above its target of 1; other roles get fewer" in (
        result.warnings
    )


def test_a_pin_for_an_absent_node_has_no_effect():
    result = placement.solve(cluster(3), policy={"pins": {"ghost": "data"}})
    assert counts(result) == {"edge": 1, "core": 1, "data": 1}


def test_excluded_nodes_get_no_role_and_do_not_count():
    nodes = [*cluster(3), node("out", roles=["data"])]
    result = placement.solve(nodes, policy={"exclude": ["out"]})
    assert result.assignments["out"] == []
    assert result.targets == roles.targets(3)
    assert result.changes["out"] == {"old": ["data"], "new": []}
    assert result.explain("out")["reason"].startswith("excluded by policy")


def test_required_labels_from_policy_and_catalogue():
    nodes = [*cluster(3), node("ssd-1", labels=["ssd"]), node("ssd-2", labels={"disk": "ssd"})]
    result = placement.solve(nodes, policy={"labels": {"data": ["ssd"]}})
    assert holders(result, "data") == ["ssd-1"]
    result = placement.solve(nodes, catalogue={"core": {"labels": ["disk=ssd"]}})
    assert holders(result, "core") == ["ssd-2"]


def test_missing_labels_are_the_reason():
    result = placement.solve(cluster(3), policy={"labels": {"data": ["ssd"]}})
    assert result.unplaced[0]["reason"] == "no node carries the labels data requires (ssd)"
    assert "missing label(s) ssd" in {
        alt["rejected"] for alt in result.explain("n000")["alternatives"]
    }


def test_storage_types():
    nodes = [*cluster(3, storage_type="hdd"), node("fast", storage_type="nvme")]
    result = placement.solve(nodes, catalogue={"data": {"storage_types": ["nvme", "ssd"]}})
    assert holders(result, "data") == ["fast"]
    result = placement.solve(cluster(3), catalogue={"data": {"storage_types": ["nvme"]}})
    assert result.unplaced[0]["reason"] == "no node has a storage type data accepts (nvme)"


def test_preferred_role_is_honoured_when_feasible_and_needed():
    nodes = [*cluster(7), node("n999", preferred_role="observe")]
    result = placement.solve(nodes)
    assert result.assignments["n999"] == ["observe"]
    assert result.explain("n999")["reason"].startswith("its preferred role observe")


def test_preferred_role_is_ignored_when_infeasible_or_not_needed():
    nodes = [node("a", SMALL, preferred_role="data"), *cluster(2, prefix="m")]
    assert placement.solve(nodes).assignments["a"] != ["data"]
    nodes = cluster(3, preferred_role="core")
    assert counts(placement.solve(nodes))["core"] == 1


def test_nodes_preferring_app_are_left_for_the_remainder():
    nodes = [*cluster(4, preferred_role="app", prefix="a"), *cluster(5, prefix="z")]
    result = placement.solve(nodes)
    # One app slot at 9 nodes: every other node was needed, but none preferring app was spared.
    assert len(holders(result, "app")) == 1
    assert holders(result, "app")[0].startswith("a")


def test_unknown_preferred_role_is_a_warning():
    result = placement.solve([*cluster(2), node("x", preferred_role="gpu")])
    assert result.warnings == ["x prefers unknown role 'gpu'; ignored"]


# --- spread ----------------------------------------------------------------------------------


def test_spread_uses_different_racks():
    # Rack r0 sorts first and holds the best-fitting nodes; data's spread still takes r1.
    nodes = cluster(8, {"cpu": 4, "memory_gb": 16, "disk_gb": 500}, datacenter="dc1", rack="r0")
    nodes += cluster(4, BIG, prefix="x", datacenter="dc1", rack="r1")
    result = placement.solve(nodes, catalogue={"data": {"count": 2}})
    racks = {n["id"]: n["rack"] for n in nodes}
    assert sorted(racks[i] for i in holders(result, "data")) == ["r0", "r1"]
    assert placement.validate(result.assignments, nodes, {"data": {"count": 2}}) == []


def test_spread_over_datacenters():
    nodes = [node(f"n{i:02d}", datacenter=f"dc{i % 3}") for i in range(30)]
    result = placement.solve(nodes)
    edge = holders(result, "edge")
    assert len(edge) == 3
    assert sorted(int(i[1:]) % 3 for i in edge) == [0, 1, 2]


def test_host_spread_keeps_members_off_one_hypervisor():
    nodes = [node(f"vm{i}", host=f"hv{i // 2}") for i in range(8)]
    result = placement.solve(nodes, catalogue={"core": {"spread": "host"}})
    hosts = {f"vm{i}": f"hv{i // 2}" for i in range(8)}
    assert len({hosts[i] for i in holders(result, "core")}) == 2


# --- determinism and explanation --------------------------------------------------------------


def test_input_order_does_not_matter():
    nodes = heterogeneous(random.Random(7), 200)
    shuffled = list(nodes)
    random.Random(3).shuffle(shuffled)
    assert placement.solve(nodes).as_dict() == placement.solve(shuffled).as_dict()


def test_as_dict_shape():
    shape = placement.solve(cluster(3)).as_dict()
    assert set(shape) == {
        "targets", "assignments", "changes", "churn", "first_assignments", "unplaced", "warnings"
    }  # fmt: skip


def test_explanation_of_a_placed_node():
    nodes = [*cluster(3), node("tiny", SMALL)]
    result = placement.solve(nodes)
    explained = result.explain(holders(result, "data")[0])
    assert explained["reason"].startswith("best candidate for data among")
    assert explained["fit"]["data"]["score"] > 0
    rejected = {alt["role"]: alt["rejected"] for alt in result.explain("tiny")["alternatives"]}
    assert rejected["monolith"] == "monolith is only for a one-node cluster"
    assert rejected["data"].startswith("2 cpu cores < data's minimum of 4")
    assert result.assignments["tiny"] == ["edge"]
    (data,) = holders(result, "data")
    rejected = {alt["role"]: alt["rejected"] for alt in result.explain(data)["alternatives"]}
    assert rejected["observe"] == "not needed: its target is 0 at 4 node(s)"
    assert rejected["edge"].startswith("its 1 slot(s) went to")
    assert rejected["app"] == "not needed: its target is 0 at 4 node(s)"


def test_explanation_of_the_remainder_and_of_unknown_nodes():
    result = placement.solve(cluster(5))
    (app,) = holders(result, "app")
    assert result.explain(app)["reason"].startswith("app is the remainder")
    with pytest.raises(KeyError):
        result.explain("nope")


# --- validate --------------------------------------------------------------------------------


def test_validate_missing_essential_roles():
    nodes = cluster(3)
    problems = placement.validate({"n000": ["app"], "n001": ["app"], "n002": ["edge"]}, nodes)
    assert [(p["check"], p["role"]) for p in problems] == [("missing", "core"), ("missing", "data")]
    assert problems[0]["message"] == "no core node in a 3-node cluster"
    assert placement.validate({"n000": ["edge"], "n001": ["core"]}, cluster(2)) == []


def test_validate_quorum_requirements_and_unknown_nodes():
    nodes = [*cluster(3), node("small", SMALL), node("x")]
    assignments = {
        "n000": ["message"],
        "n001": ["message", "edge"],
        "n002": ["core"],
        "small": ["data"],
        "ghost": ["edge"],
        "x": [],
    }
    problems = placement.validate(assignments, nodes)
    assert sorted((p["check"], p["role"] or "") for p in problems) == [
        ("quorum", "message"),
        ("requirements", "data"),
        ("unknown", ""),
    ]
    messages = {p["check"]: p["message"] for p in problems}
    assert messages["quorum"] == "message has 2 members; a quorum needs an odd count"
    assert messages["unknown"] == "assignments name unknown node ghost"
    assert messages["requirements"].startswith("small holds data but has 2 cpu cores")


def test_validate_accepts_pins_below_minimums():
    nodes = [*cluster(2), node("small", SMALL)]
    assignments = {"n000": ["edge"], "n001": ["core"], "small": ["data"]}
    assert placement.validate(assignments, nodes, policy={"pins": {"small": ["data"]}}) == []


def test_validate_spread():
    nodes = [node(f"n{i}", datacenter="dc1", rack=f"r{i % 2}") for i in range(4)]
    bad = {"n0": ["data"], "n2": ["data"], "n1": ["edge"], "n3": ["core"]}
    (problem,) = placement.validate(bad, nodes)
    assert problem["check"] == "spread"
    assert problem["message"] == (
        "data's 2 members use 1 rack(s) while 2 rack(s) have nodes that meet its requirements"
    )


def test_validate_unknown_role():
    problems = placement.validate({"n000": ["gpu"]}, cluster(1))
    assert problems == [
        {"check": "unknown", "role": "gpu", "message": "n000 holds unknown role gpu"}
    ]


def test_validate_ignores_excluded_nodes_in_the_size():
    assignments = {"n000": ["edge"], "n001": ["core"], "n002": []}
    assert placement.validate(assignments, cluster(3), policy={"exclude": ["n002"]}) == []
    assignments["n002"] = ["data"]
    assert placement.validate(assignments, cluster(3), policy={"exclude": ["n002"]}) == [
        {"check": "excluded", "role": "data", "message": "n002 is excluded but holds data"}
    ]


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"nodes": [*cluster(3), node("web-4", memory_gb=-2)]},
            "nodes[3] (id web-4): memory_gb -2 must be >= 0",
        ),
        ({"nodes": [{"id": "a", "cpu": 1}]}, "nodes[0] (id a): missing memory_gb"),
        ({"policy": {"pins": {"n0": ["dta"]}}}, "eos:roles:pins:n0: unknown role 'dta'"),
        ({"catalogue": {"data": {"count": -1}}}, "eos:roles:catalog:data:count: -1 must be >= 0"),
        ({"catalogue": {"edge": {"cpu": -1}}}, "eos:roles:catalog:edge:cpu: -1 must be >= 0"),
    ],
)
def test_bad_input_raises_naming_the_item(kwargs, message):
    kwargs = {"nodes": cluster(2), **kwargs}
    with pytest.raises(roles.InvalidRoles) as err:
        placement.solve(kwargs.pop("nodes"), **kwargs)
    assert str(err.value).startswith(message)


def test_a_misspelt_node_field_is_rejected_not_ignored():
    with pytest.raises(roles.InvalidRoles, match=r"unknown field 'memory'"):
        placement.solve([{"id": "a", "cpu": 1, "memory": 4, "memory_gb": 4, "disk_gb": 1}])


# --- properties over random clusters ---------------------------------------------------------

CPUS = (1, 2, 4, 8, 16)
MEMORY = (2, 4, 8, 16, 32, 64)
DISK = (20, 50, 100, 200, 500, 1000)


def heterogeneous(rng, n, prefix="n"):
    return [
        {
            "id": f"{prefix}{i:05d}",
            "cpu": rng.choice(CPUS),
            "memory_gb": rng.choice(MEMORY),
            "disk_gb": rng.choice(DISK),
            "datacenter": f"dc{rng.randrange(3)}",
            "rack": f"r{rng.randrange(4)}",
        }
        for i in range(n)
    ]


node_shapes = st.fixed_dictionaries(
    {
        "cpu": st.sampled_from(CPUS),
        "memory_gb": st.sampled_from(MEMORY),
        "disk_gb": st.sampled_from(DISK),
        "datacenter": st.sampled_from(["dc0", "dc1", "dc2"]),
        "rack": st.sampled_from(["r0", "r1", "r2"]),
        "labels": st.lists(st.sampled_from(["ssd", "gpu"]), unique=True, max_size=2),
        "preferred_role": st.sampled_from([None, None, None, "edge", "data", "app"]),
    }
)
clusters = st.lists(node_shapes, min_size=1, max_size=30).map(
    lambda shapes: [{"id": f"n{i:03d}", **shape} for i, shape in enumerate(shapes)]
)
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def meets(description, role, catalogue, policy=None):
    (parsed,) = roles.nodes([description])
    return placement.Requirements.of(catalogue[role], policy).met_by(parsed)


@PROPERTY_SETTINGS
@given(nodes=clusters)
def test_property_every_role_is_feasible_on_its_node(nodes):
    catalogue = roles.catalog()
    result = placement.solve(nodes)
    by_id = {n["id"]: n for n in nodes}
    for node_id, held in result.assignments.items():
        assert len(held) <= 1
        for role in held:
            assert meets(by_id[node_id], role, catalogue)
    problems = placement.validate(result.assignments, nodes)
    assert [p for p in problems if p["check"] in ("quorum", "requirements", "unknown")] == []


@PROPERTY_SETTINGS
@given(nodes=clusters)
def test_property_counts_are_the_targets_or_the_shortfall_is_reported(nodes):
    result = placement.solve(nodes)
    placed = counts(result)
    missing = {entry["role"]: entry["missing"] for entry in result.unplaced}
    for role, target in result.targets.items():
        if role == roles.REMAINDER_ROLE:
            continue
        assert placed.get(role, 0) + missing.get(role, 0) == target, role
    for entry in result.unplaced:
        assert entry["reason"]
    # Nothing that could be placed was left: a node without a role meets no role still short.
    catalogue = roles.catalog()
    by_id = {n["id"]: n for n in nodes}
    for node_id, held in result.assignments.items():
        if not held:
            assert not any(meets(by_id[node_id], role, catalogue) for role in missing)


@PROPERTY_SETTINGS
@given(shapes=st.lists(node_shapes.map(lambda s: {**s, **BIG}), min_size=1, max_size=30))
def test_property_when_every_node_fits_the_counts_are_exactly_the_targets(shapes):
    nodes = [{"id": f"n{i:03d}", **shape, "labels": []} for i, shape in enumerate(shapes)]
    result = placement.solve(nodes)
    assert counts(result) == nonzero(result.targets)
    assert result.unplaced == []


@PROPERTY_SETTINGS
@given(nodes=clusters, seed=st.integers(0, 1000))
def test_property_deterministic_whatever_the_order(nodes, seed):
    shuffled = list(nodes)
    random.Random(seed).shuffle(shuffled)
    first = placement.solve(nodes)
    assert placement.solve(shuffled).as_dict() == first.as_dict()
    assert placement.solve(nodes).as_dict() == first.as_dict()


@PROPERTY_SETTINGS
@given(nodes=clusters)
def test_property_solving_again_changes_nothing(nodes):
    first = placement.solve(nodes)
    again = placement.solve(with_roles(nodes, first))
    assert again.assignments == first.assignments
    assert again.churn == 0


def required_churn(n):
    """Nodes the new targets force to change when the cluster grows from n to n + 1."""
    before, after = roles.targets(n), roles.targets(n + 1)
    grown = sum(
        max(0, after[role] - before[role])
        for role in before
        if role not in (roles.REMAINDER_ROLE, roles.SINGLE_NODE_ROLE)
    )
    return grown + before[roles.SINGLE_NODE_ROLE] - after[roles.SINGLE_NODE_ROLE]


@PROPERTY_SETTINGS
@given(nodes=clusters, joining=node_shapes)
def test_property_a_joining_node_causes_minimal_churn(nodes, joining):
    before = placement.solve(nodes)
    after = placement.solve([*with_roles(nodes, before), {"id": "zzz-new", **joining}])
    moved = sum(
        1 for node_id in after.changes if after.explain(node_id)["reason"].startswith("moved from")
    )
    assert after.churn <= required_churn(len(nodes)) + moved
    assert moved <= 1  # only the new node can make a swap possible that was not before
    assert after.first_assignments <= 1


@PROPERTY_SETTINGS
@given(
    nodes=clusters,
    data=st.data(),
)
def test_property_pins_and_exclusions_are_honoured(nodes, data):
    ids = [n["id"] for n in nodes]
    excluded = data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=3))
    pinnable = [i for i in ids if i not in excluded]
    pins = {}
    if pinnable:
        pins = data.draw(
            st.dictionaries(
                st.sampled_from(pinnable),
                st.lists(st.sampled_from(["edge", "core", "data", "app"]), min_size=1, unique=True),
                max_size=3,
            )
        )
    policy = {"pins": pins, "exclude": excluded}
    result = placement.solve(nodes, policy=policy)
    for node_id in excluded:
        assert result.assignments[node_id] == []
    for node_id, pinned in pins.items():
        assert sorted(result.assignments[node_id]) == sorted(pinned)
    assert result.targets == roles.targets(len(nodes) - len(excluded))
    catalogue = roles.catalog()
    by_id = {n["id"]: n for n in nodes}
    for node_id, held in result.assignments.items():
        if node_id not in pins:
            assert all(meets(by_id[node_id], role, catalogue) for role in held)
