"""
Re-placing roles when members leave, over an in-memory registry and a fake fleet of minions.

The clusters are set up as their joins would have left them (active members with resources
and an assignment); then a member goes down, is rejected, removed or leaves, and the
replacement runs under the join lease. The fleet answers like Salt's LocalClient would and
keeps what each minion was asked.
"""

import pytest

from saltext.eos.utils.cluster import join
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import replacement
from tests.support.fleet import SMALL
from tests.support.fleet import Fleet
from tests.support.fleet import cluster
from tests.support.fleet import join_flow
from tests.support.memory_cache import MemoryCache

# Five members as their joins place them: edge, two core, data, app.
FIVE = {"e1": ["edge"], "c1": ["core"], "c2": ["core"], "d1": ["data"], "a1": ["app"]}


@pytest.fixture
def reg(clock, events):
    return registry.Registry(
        MemoryCache(),
        clock=clock,
        on_change=lambda node_id, status, record: events.append(
            (f"eos/cluster/node/{node_id}/{status}", record)
        ),
    )


@pytest.fixture
def fleet():
    return Fleet()


@pytest.fixture
def flow(reg, fleet, events, clock):
    return join_flow(reg, fleet, events, clock, lease_wait=60)


@pytest.fixture
def replace(flow):
    return replacement.Replacement(flow)


def joined(reg, flow, assignment, **sizes):
    """The cluster its joins left: members configured for the current scale."""
    cluster(reg, assignment, sizes=sizes)
    flow.note_configured_scale("n-last")


def goes_down(reg, node_id):
    reg.set_status(node_id, "unreachable", "missed probes")
    reg.set_status(node_id, "down", "unreachable too long")


def roles(reg):
    return {record["id"]: record["roles"] for record in reg.records()}


def tags(events):
    return [tag for tag, _ in events]


# --- which holders are stale -------------------------------------------------------------------


def test_stale_holders_are_the_assigned_nodes_that_are_no_longer_members(reg):
    cluster(
        reg,
        {
            "ok": ["edge"],
            "away": ["core"],  # unreachable: keeps its roles until it is down
            "dead": ["core"],
            "empty": ["data"],
            "banned": ["app"],
            "gone": ["app"],
            "idle": [],  # down but held nothing
        },
    )
    reg.set_status("away", "unreachable", "missed probes")
    goes_down(reg, "dead")
    goes_down(reg, "idle")
    reg.set_status("empty", "drained", "drained")
    reg.reject("banned")
    reg.remove("gone")

    assert replacement.stale_holders(reg) == ["banned", "dead", "empty", "gone"]


def test_no_assignment_means_nothing_stale(reg):
    assert replacement.stale_holders(reg) == []


# --- nothing to do -----------------------------------------------------------------------------


def test_a_replacement_with_every_holder_still_a_member_changes_nothing(
    reg, flow, fleet, events, replace
):
    joined(reg, flow, FIVE)
    version = reg.assignment()["version"]
    events.clear()

    record = replace.run("periodic check")

    assert record["outcome"] == "unchanged"
    assert fleet.calls == [], "no checkpoint, no pillar refresh, no state run"
    assert events == []
    assert reg.assignment()["version"] == version
    assert roles(reg) == FIVE
    assert replace.last() == record
    assert flow.lease() is None


# --- a member went down ------------------------------------------------------------------------


def test_a_down_core_holder_is_replaced_keeping_every_live_nodes_roles(
    reg, flow, fleet, events, replace
):
    joined(reg, flow, FIVE)
    goes_down(reg, "c2")
    events.clear()

    record = replace.run("down: c2")

    assert record["outcome"] == "done"
    # Four members now: edge, two core, data. The free app node takes the missing core; every
    # other live node keeps what it holds.
    assert record["changes"] == {
        "a1": {"old": ["app"], "new": ["core"]},
        "c2": {"old": ["core"], "new": []},
    }
    assert roles(reg) == {"e1": ["edge"], "c1": ["core"], "c2": [], "d1": ["data"], "a1": ["core"]}
    assert reg.summary()["holders"]["core"] == ["a1", "c1"]
    assert replacement.stale_holders(reg) == []
    # Configured: the node whose roles changed, then the edge, whose upstreams are the core
    # nodes. Nothing is asked of the down node; the others only refresh their pillar.
    assert record["configured"] == ["a1", "e1"]
    highstates = [minion for minion, fun, _, _ in fleet.calls if fun == "state.highstate"]
    assert highstates == ["a1", "e1"]
    assert fleet.checkpoints == {"a1": f"a1-{record['run']}", "e1": f"e1-{record['run']}"}
    assert record["minion_checkpoints"] == fleet.checkpoints
    assert fleet.asked("c2") == []
    assert fleet.asked("c1") == fleet.asked("d1") == ["saltutil.refresh_pillar"]
    assert record["scale_changed"] is False
    assert record["assignment_version"] == reg.assignment()["version"] == 2
    assert tags(events) == [join.ROLES_CHANGED_TAG, replacement.DONE_TAG]
    assert events[0][1]["reason"] == "down: c2"
    assert events[1][1] == record
    assert replace.last() == record
    assert flow.lease() is None


def test_unreachable_members_keep_their_roles_and_are_not_configured(reg, flow, fleet, replace):
    joined(reg, flow, FIVE)
    reg.set_status("e1", "unreachable", "missed probes")
    goes_down(reg, "c2")

    record = replace.run("down: c2")

    assert record["outcome"] == "done"
    assert roles(reg)["e1"] == ["edge"]
    assert "e1" not in record["changes"]
    # The edge would follow the new core node; unreachable, it is configured when it returns.
    assert record["configured"] == ["a1"]
    assert fleet.asked("e1") == []
    assert fleet.configured() == ["a1"]


def test_a_node_still_waiting_for_its_join_is_left_to_it(reg, flow, fleet, replace):
    joined(reg, flow, FIVE)
    reg.ensure("new", "its Salt key is pending")
    reg.accept("new")
    reg.update("new", resources=reg.get("c1")["resources"])
    goes_down(reg, "c2")

    record = replace.run("down: c2")

    assert record["changes"]["a1"]["new"] == ["core"]
    assert roles(reg)["new"] == []
    assert fleet.asked("new") == ["saltutil.refresh_pillar"], "its own join configures it"


def test_a_scale_change_reapplies_the_common_state_on_the_other_members(reg, flow, fleet, replace):
    joined(reg, flow, {"e1": ["edge"], "c1": ["core"], "c2": ["core"], "d1": ["data"]})
    goes_down(reg, "c2")  # three members: medium -> small

    record = replace.run("down: c2")

    assert record["outcome"] == "done"
    assert record["changes"] == {"c2": {"old": ["core"], "new": []}}
    assert record["scale_changed"] is True
    assert record["configured"] == ["c1", "d1", "e1"]
    assert fleet.configured() == ["e1"], "the edge loses an upstream: configured again"
    common = [minion for minion, _, args, _ in fleet.calls if args == (join.COMMON_STATE,)]
    assert common == ["c1", "d1"]
    assert flow.configured_scale() == "small"


def test_a_role_no_live_node_can_hold_is_reported_with_the_reason(reg, flow, fleet, replace):
    joined(reg, flow, {"e1": ["edge"], "c1": ["core"], "a1": ["app"]}, e1=SMALL, a1=SMALL)
    goes_down(reg, "c1")

    record = replace.run("down: c1")

    assert record["outcome"] == "done"
    assert record["unplaced"] == [
        "no node meets core's minimum of 4 cpu cores and 8 GB memory and 100 GB disk"
    ]
    assert roles(reg) == {"e1": ["edge"], "c1": [], "a1": ["app"]}
    assert fleet.configured() == ["e1"], "the edge drops the core node it proxied to"


# --- a member was rejected or removed -----------------------------------------------------------


@pytest.mark.parametrize("leaves", ["reject", "remove"])
def test_a_rejected_or_removed_holders_roles_are_replaced(reg, flow, fleet, replace, leaves):
    joined(reg, flow, FIVE)
    getattr(reg, leaves)("c2")

    record = replace.run(f"{leaves} of c2")

    assert record["outcome"] == "done"
    assert roles(reg)["a1"] == ["core"]
    assert record["configured"] == ["a1", "e1"]
    assert replacement.stale_holders(reg) == []


# --- a member leaves (a drain) -----------------------------------------------------------------


def test_a_leaving_member_hands_its_roles_over_and_is_not_configured(reg, flow, fleet, replace):
    joined(reg, flow, FIVE)

    record = replace.run("drain of d1", leaving=["d1"])

    assert record["outcome"] == "done"
    assert record["leaving"] == ["d1"]
    assert record["changes"] == {
        "a1": {"old": ["app"], "new": ["data"]},
        "d1": {"old": ["data"], "new": []},
    }
    assert reg.get("d1")["roles"] == []
    assert reg.get("d1")["status"] == "active", "the drain marks it drained, not this"
    assert record["configured"] == ["a1"], "no core moved: the edge is left alone"
    assert fleet.asked("d1") == []


def test_a_leaving_member_keeps_no_role_even_when_the_site_pins_one(reg, fleet, events, clock):
    flow = join_flow(reg, fleet, events, clock, roles={"pins": {"d1": ["data"]}})
    joined(reg, flow, FIVE)

    record = replacement.Replacement(flow).run("drain of d1", leaving=["d1"])

    assert record["changes"]["d1"] == {"old": ["data"], "new": []}
    assert roles(reg)["a1"] == ["data"]


# --- failures ----------------------------------------------------------------------------------


def test_a_failing_highstate_restores_the_assignment_and_rolls_the_minions_back(
    reg, flow, fleet, events, replace
):
    joined(reg, flow, FIVE)
    goes_down(reg, "c2")
    before = reg.assignment()
    fleet.failing_state.add("a1")
    events.clear()

    record = replace.run("down: c2")

    assert record["outcome"] == "failed"
    assert "a1: eos_role_file: Permission denied" in record["error"]
    assert reg.assignment()["assignments"] == before["assignments"]
    assert reg.assignment()["version"] > before["version"], "versions only grow"
    assert roles(reg) == FIVE, "every record has its previous roles again"
    # Both configured nodes go back to this run's checkpoints and get their old roles again.
    assert sorted(fleet.rolled_back) == [(node, f"{node}-{record['run']}") for node in ("a1", "e1")]
    rollback = record["rollback"]
    assert rollback["minions"] == {"a1": "restored", "e1": "restored"}
    assert rollback["reapplied"] == ["a1", "e1"]
    assert rollback["assignment_version"] == reg.assignment()["version"]
    assert "a1" in rollback["problems"]
    # The down node still holds its roles in the assignment: a later run tries again.
    assert replacement.stale_holders(reg) == ["c2"]
    assert tags(events) == [join.ROLES_CHANGED_TAG, join.ROLES_CHANGED_TAG, replacement.FAILED_TAG]
    assert events[1][1]["restored_from"] == before["version"]
    assert events[-1][1] == record
    assert replace.last()["outcome"] == "failed"
    assert flow.lease() is None

    fleet.failing_state.clear()
    assert replace.run("retry")["outcome"] == "done"
    assert roles(reg)["a1"] == ["core"]


def test_a_failed_replacement_gives_a_rejected_node_no_role_back(reg, flow, fleet, replace):
    joined(reg, flow, FIVE)
    reg.reject("c2")
    fleet.failing_state.add("a1")

    record = replace.run("rejection of c2")

    assert record["outcome"] == "failed"
    assert reg.get("c2")["roles"] == []
    # The edges are configured again from the holders: never towards the rejected node.
    assert reg.summary()["holders"]["core"] == ["c1"]
    assert replacement.stale_holders(reg) == ["c2"], "a later run tries again"


def test_a_node_that_takes_no_checkpoint_stops_the_replacement_before_any_change(
    reg, flow, fleet, events, replace
):
    joined(reg, flow, FIVE)
    goes_down(reg, "c2")
    fleet.silent.add("e1")
    events.clear()

    record = replace.run("down: c2")

    assert record["outcome"] == "failed"
    assert "no checkpoint on e1: nothing changed" in record["error"]
    assert record["rollback"] == {"comment": "nothing was changed"}
    assert reg.assignment()["version"] == 1
    assert roles(reg)["a1"] == ["app"]
    assert fleet.configured() == []
    assert fleet.rolled_back == []
    assert tags(events) == [replacement.FAILED_TAG]
    assert flow.lease() is None


def test_a_replacement_waits_for_a_running_join_and_gives_up_changing_nothing(
    reg, flow, fleet, events, clock, replace
):
    joined(reg, flow, FIVE)
    goes_down(reg, "c2")
    flow.take_lease("n9", "join-of-n9")
    events.clear()
    started = clock()

    with pytest.raises(join.JoinFailed, match=r"n9 \(run join-of-n9\) still holds the lease"):
        replace.run("down: c2")

    assert 60 <= clock() - started < 70, "it waited eos:join:lease_wait"
    assert fleet.calls == []
    assert events == []
    assert reg.assignment()["version"] == 1
    assert replace.last() is None
    assert flow.lease()["run"] == "join-of-n9", "the join keeps its lease"

    flow.release_lease("join-of-n9")
    assert replace.run("down: c2")["outcome"] == "done"
