"""The role catalogue, the target counts by cluster size, and checked solver inputs."""

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from saltext.eos.utils import config
from saltext.eos.utils.cluster import roles

# Monotone in n: every role but the single-node role and the remainder.
MONOTONE_ROLES = [
    r for r in roles.CATALOG if r not in (roles.SINGLE_NODE_ROLE, roles.REMAINDER_ROLE)
]


def nonzero(counts):
    return {role: count for role, count in counts.items() if count}


def node(**fields):
    return {"id": "web-4", "cpu": 4, "memory_gb": 8, "disk_gb": 100, **fields}


# --- catalogue -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "minimums"),
    [
        ("monolith", (2, 4, 50)),
        ("edge", (2, 4, 50)),
        ("core", (4, 8, 100)),
        ("data", (4, 16, 500)),
        ("message", (2, 8, 100)),
        ("observe", (4, 8, 200)),
        ("compute", (8, 32, 100)),
        ("app", (2, 4, 50)),
    ],
)
def test_default_minimums(role, minimums):
    spec = roles.catalog()[role]
    assert (spec.cpu, spec.memory_gb, spec.disk_gb) == minimums


def test_catalogue_order_is_fixed():
    assert roles.catalog().names == (
        "monolith", "edge", "core", "data", "message", "observe", "compute", "app"
    )  # fmt: skip


def test_override_changes_only_named_fields():
    catalogue = roles.catalog({"data": {"memory_gb": 32, "labels": ["ssd"], "quorum": True}})
    data = catalogue["data"]
    assert (data.cpu, data.memory_gb, data.disk_gb) == (4, 32, 500)
    assert data.labels == ("ssd",)
    assert data.quorum is True
    assert data.spread == "rack"  # the default stays
    assert catalogue["edge"] == roles.catalog()["edge"]


def test_override_can_drop_spread():
    assert roles.catalog({"data": {"spread": None}})["data"].spread is None


def test_a_new_role_is_added_after_the_defaults():
    catalogue = roles.catalog({"gpu": {"cpu": 16, "labels": "gpu", "count": 2}})
    assert catalogue.names[-1] == "gpu"
    assert catalogue["gpu"].labels == ("gpu",)
    assert roles.targets(10, catalogue)["gpu"] == 2


def test_catalog_passes_a_catalogue_through():
    catalogue = roles.catalog({"edge": {"cpu": 1}})
    assert roles.catalog(catalogue) is catalogue


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data": {"memory_gb": -1}}, "eos:roles:catalog:data:memory_gb: -1 must be >= 0"),
        ({"data": {"cpu": "many"}}, "eos:roles:catalog:data:cpu: 'many' is not a number"),
        ({"data": {"count": -1}}, "eos:roles:catalog:data:count: -1 must be >= 0"),
        ({"data": {"count": 1.5}}, "eos:roles:catalog:data:count: 1.5 is not a whole number"),
        ({"data": {"count": {"min": -2}}}, "eos:roles:catalog:data:count:min: -2 must be >= 0"),
        ({"data": {"count": {"share": 2}}}, "eos:roles:catalog:data:count:share: 2 must be <= 1"),
        ({"data": {"count": {"min": 3, "max": 2}}}, "eos:roles:catalog:data:count: max 2 is below"),
        ({"data": {"count": {"every": 2}}}, "eos:roles:catalog:data:count: unknown field 'every'"),
        ({"data": {"memroy_gb": 8}}, "eos:roles:catalog:data: unknown field 'memroy_gb'"),
        ({"data": {"spread": "zone"}}, "eos:roles:catalog:data:spread: 'zone' is not one of"),
        ({"data": {"quorum": "yes"}}, "eos:roles:catalog:data:quorum: 'yes' is not true or false"),
        ({"data": {"labels": [1]}}, "eos:roles:catalog:data:labels: [1] is not a list of strings"),
        ({"data": 5}, "eos:roles:catalog:data: 5 is not a mapping"),
        ({"app": {"count": 3}}, "eos:roles:catalog:app:count: app's count is not configurable"),
        ({"monolith": {"count": 1}}, "eos:roles:catalog:monolith:count: monolith's count is not"),
        ([1], "eos:roles:catalog: [1] is not a mapping"),
        ({3: {}}, "eos:roles:catalog:3: a role name must be a non-empty string"),
    ],
)
def test_bad_catalogue_names_the_entry(overrides, message):
    with pytest.raises(roles.InvalidRoles) as err:
        roles.catalog(overrides)
    assert str(err.value).startswith(message)


def test_invalid_roles_is_invalid_config():
    assert issubclass(roles.InvalidRoles, config.InvalidConfig)


# --- target counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, {"monolith": 1}),
        (2, {"edge": 1, "core": 1}),
        (3, {"edge": 1, "core": 1, "data": 1}),
        (4, {"edge": 1, "core": 2, "data": 1}),
        (5, {"edge": 1, "core": 2, "data": 1, "app": 1}),
        (6, {"edge": 1, "core": 2, "data": 1, "message": 1, "app": 1}),
        (7, {"edge": 2, "core": 2, "data": 1, "message": 1, "app": 1}),
        (8, {"edge": 2, "core": 2, "data": 2, "message": 1, "observe": 1}),
    ],
)
def test_small_cluster_table(n, expected):
    assert nonzero(roles.targets(n)) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        # The original formula went negative from 9 to 14 nodes and over-allocated at 7, 11-14.
        (9, {"edge": 2, "core": 2, "data": 2, "message": 1, "observe": 1, "app": 1}),
        (10, {"edge": 2, "core": 2, "data": 2, "message": 1, "observe": 1, "compute": 1, "app": 1}),
        (11, {"edge": 2, "core": 2, "data": 2, "message": 1, "observe": 1, "compute": 1, "app": 2}),
        (12, {"edge": 2, "core": 2, "data": 2, "message": 1, "observe": 1, "compute": 1, "app": 3}),
        (13, {"edge": 2, "core": 2, "data": 2, "message": 1, "observe": 1, "compute": 1, "app": 4}),
        (14, {"edge": 2, "core": 2, "data": 2, "message": 1, "observe": 1, "compute": 1, "app": 5}),
    ],
)
def test_former_bug_sizes_have_no_negative_and_no_over_allocation(n, expected):
    counts = roles.targets(n)
    assert nonzero(counts) == expected
    assert min(counts.values()) >= 0
    assert sum(counts.values()) == n


def test_large_clusters_follow_the_shares():
    counts = roles.targets(1000)
    assert nonzero(counts) == {
        "edge": 100, "core": 30, "data": 200, "message": 7, "observe": 50, "compute": 100,
        "app": 513,
    }  # fmt: skip


def test_targets_for_every_size_up_to_ten_thousand():
    previous = roles.targets(1)
    for n in range(1, 10_001):
        counts = roles.targets(n)
        assert sum(counts.values()) == n, n
        assert min(counts.values()) >= 0, n
        assert counts["message"] in (0, *roles.QUORUM_SIZES), n
        for role in MONOTONE_ROLES:
            assert counts[role] >= previous[role], (n, role)
        previous = counts


def test_empty_cluster_has_no_targets():
    assert nonzero(roles.targets(0)) == {}


def test_quorum_override_rounds_down_to_odd_and_caps_at_seven():
    catalogue = roles.catalog({"core": {"quorum": True}})
    assert roles.targets(4, catalogue)["core"] == 1
    assert roles.targets(4, catalogue)["app"] == 1  # the node freed from core
    catalogue = roles.catalog({"data": {"quorum": True}})
    assert [roles.targets(n, catalogue)["data"] for n in (3, 8, 15, 25, 35, 100)] == [
        1, 1, 3, 5, 7, 7
    ]  # fmt: skip


@pytest.mark.parametrize(("wanted", "size"), [(0, 0), (1, 1), (2, 1), (3, 3), (6, 5), (40, 7)])
def test_quorum_size(wanted, size):
    assert roles.quorum_size(wanted) == size


def test_fixed_count_applies_from_two_nodes():
    catalogue = roles.catalog({"observe": {"count": 1}})
    assert roles.targets(1, catalogue)["observe"] == 0  # one node is always the monolith
    assert roles.targets(5, catalogue)["observe"] == 1
    assert roles.targets(5000, catalogue)["observe"] == 1


def test_count_rule_with_share_min_and_max():
    catalogue = roles.catalog({"compute": {"count": {"share": 0.29, "min": 1, "max": 40}}})
    assert roles.targets(2, catalogue)["compute"] == 0  # trimmed: two nodes are edge + core
    assert roles.targets(10, catalogue)["compute"] == 2
    assert roles.targets(100, catalogue)["compute"] == 29  # integer basis points, not 28
    assert roles.targets(1000, catalogue)["compute"] == 40


def test_overrides_beyond_the_cluster_size_are_trimmed():
    # Built-in counts give way first, least essential first; edge, core and data keep one.
    catalogue = roles.catalog({"data": {"count": 3}, "observe": {"count": 2}})
    assert nonzero(roles.targets(7, catalogue)) == {"edge": 1, "core": 1, "data": 3, "observe": 2}
    assert nonzero(roles.targets(4, catalogue)) == {"edge": 1, "core": 1, "data": 2}
    assert nonzero(roles.targets(2, catalogue)) == {"edge": 1, "data": 1}


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=3000),
    counts=st.dictionaries(
        st.sampled_from(MONOTONE_ROLES),
        st.one_of(
            st.integers(min_value=0, max_value=50),
            st.fixed_dictionaries(
                {"share": st.floats(min_value=0, max_value=1), "min": st.integers(0, 20)}
            ),
        ),
    ),
    quorum=st.lists(st.sampled_from(MONOTONE_ROLES), unique=True),
)
def test_any_count_overrides_sum_to_n(n, counts, quorum):
    overrides = {role: {"count": count} for role, count in counts.items()}
    for role in quorum:
        overrides.setdefault(role, {})["quorum"] = True
    catalogue = roles.catalog(overrides)
    targets = roles.targets(n, catalogue)
    assert sum(targets.values()) == n
    assert min(targets.values()) >= 0
    for role in quorum:
        assert targets[role] in (0, *roles.QUORUM_SIZES)


@pytest.mark.parametrize(
    ("n", "required"), [(0, ()), (1, ()), (2, ("edge", "core")), (3, ("edge", "core", "data"))]
)
def test_required_roles(n, required):
    assert roles.required_roles(n) == required


# --- nodes -----------------------------------------------------------------------------------


def test_nodes_are_parsed_and_sorted_by_id():
    parsed = roles.nodes(
        [
            node(id="b", labels={"disk": "ssd", "gpu": None}, rack=3, roles=["data"]),
            node(id="a", labels=["zone=eu", "fast"], preferred_role="edge", storage_type="nvme"),
        ]
    )
    assert [n.id for n in parsed] == ["a", "b"]
    a, b = parsed
    assert a.labels == {"zone", "zone=eu", "fast"}
    assert a.preferred_role == "edge"
    assert a.storage_type == "nvme"
    assert b.labels == {"disk", "disk=ssd", "gpu"}
    assert b.rack == "3"
    assert b.roles == ("data",)


def test_failure_domains():
    a, b, c = roles.nodes(
        [
            node(id="a", datacenter="dc1", rack="r1"),
            node(id="b", datacenter="dc2", rack="r1"),
            node(id="c", host="hv-1"),
        ]
    )
    assert a.domain("rack") != b.domain("rack")  # r1 of dc1 is not r1 of dc2
    assert a.domain("datacenter") == "dc1"
    assert c.domain("rack") == c.domain("datacenter") == ""  # unknown
    assert c.domain("host") == "hv-1"
    assert a.domain("host") == "a"


@pytest.mark.parametrize(
    ("descriptions", "message"),
    [
        (
            [node(id="w1"), node(id="w2"), node(id="w3"), node(id="web-4", memory_gb=-2)],
            "nodes[3] (id web-4): memory_gb -2 must be >= 0",
        ),
        ([{"id": "web-4", "cpu": 4, "disk_gb": 10}], "nodes[0] (id web-4): missing memory_gb"),
        ([node(cpu="4")], "nodes[0] (id web-4): cpu '4' is not a number"),
        ([node(cpu=True)], "nodes[0] (id web-4): cpu True is not a number"),
        ([node(disk_gb=float("nan"))], "nodes[0] (id web-4): disk_gb nan is not a number"),
        ([{"cpu": 1}], "nodes[0]: missing id"),
        ([node(id=7)], "nodes[0]: id 7 is not a non-empty string"),
        (["web-4"], "nodes[0]: 'web-4' is not a mapping"),
        ([node(), node()], "nodes[1] (id web-4): duplicate id (also nodes[0])"),
        ([node(ram=4)], "nodes[0] (id web-4): unknown field 'ram'"),
        ([node(labels=5)], "nodes[0] (id web-4): labels 5 is not a list of strings or a mapping"),
        ([node(roles=[None])], "nodes[0] (id web-4): roles: [None] is not a list of strings"),
        ([node(datacenter=["a"])], "nodes[0] (id web-4): datacenter ['a'] is not a string"),
        ("web-4", "nodes: 'web-4' is not a list"),
    ],
)
def test_bad_nodes_name_the_node(descriptions, message):
    with pytest.raises(roles.InvalidRoles) as err:
        roles.nodes(descriptions)
    assert str(err.value) == message


# --- policy ----------------------------------------------------------------------------------


def test_policy_is_checked_and_normalised():
    checked = roles.policy(
        {
            "pins": {"n2": "data", "n1": ["edge", "core"]},
            "exclude": ["n9"],
            "labels": {"data": "ssd"},
        }
    )
    assert checked.pins == {"n1": ("edge", "core"), "n2": ("data",)}
    assert checked.exclude == {"n9"}
    assert checked.labels == {"data": ("ssd",)}
    assert roles.policy(checked) == checked
    assert roles.policy(None) == roles.Policy()


def test_pins_may_name_a_custom_role():
    catalogue = roles.catalog({"gpu": {"cpu": 8}})
    assert roles.policy({"pins": {"n1": ["gpu"]}}, catalogue).pins == {"n1": ("gpu",)}


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        (
            {"pins": {"node-7": ["dta"]}},
            "eos:roles:pins:node-7: unknown role 'dta'; expected one of",
        ),
        ({"pins": {"node-7": []}}, "eos:roles:pins:node-7: no roles; to keep a node without roles"),
        ({"pins": {"node-7": [3]}}, "eos:roles:pins:node-7: [3] is not a list of strings"),
        ({"pins": ["node-7"]}, "eos:roles:pins: ['node-7'] is not a mapping"),
        (
            {"pins": {"node-7": "data"}, "exclude": ["node-7"]},
            "eos:roles:pins:node-7: node node-7 is both pinned and excluded",
        ),
        ({"exclude": "node-7"}, None),
        ({"exclude": [1]}, "eos:roles:exclude: [1] is not a list of strings"),
        ({"labels": {"dta": ["ssd"]}}, "eos:roles:labels:dta: unknown role 'dta'"),
        ({"labels": {"data": 1}}, "eos:roles:labels:data: 1 is not a list of strings"),
        ("pins", "eos:roles: 'pins' is not a mapping"),
    ],
)
def test_bad_policy_names_the_item(settings_, message):
    if message is None:
        assert roles.policy(settings_).exclude == {"node-7"}
        return
    with pytest.raises(roles.InvalidRoles) as err:
        roles.policy(settings_)
    assert str(err.value).startswith(message)
