"""
The node-addition steps over an in-memory registry and a fake fleet of minions
(``tests.support.fleet``): a minion that is down does not answer; a registration reaches the
registry as the reactor records it; a state run returns its state chunks. The fleet keeps
what each minion was asked, so a test checks which nodes were configured, checkpointed and
rolled back.
"""

import time

import pytest

from saltext.eos.utils import config
from saltext.eos.utils import master
from saltext.eos.utils.cluster import join
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import roles as role_rules
from tests.support.clock import ClockedLock
from tests.support.fleet import Fleet
from tests.support.fleet import join_flow
from tests.support.memory_cache import MemoryCache


@pytest.fixture
def reg(clock):
    return registry.Registry(MemoryCache(), clock=clock)


@pytest.fixture
def fleet(reg):
    return Fleet(reg=reg)


@pytest.fixture
def flow(reg, fleet, events, clock):
    return join_flow(reg, fleet, events, clock)


def accept(reg, node_id):
    reg.ensure(node_id, "its Salt key is pending")
    reg.accept(node_id)


def add(flow, node_id, run=None):
    """The whole orchestration: every step, then rollback when one fails."""
    run = run or f"run-{node_id}"
    try:
        for step in join.STEPS:
            getattr(flow, step)(node_id, run)
    except join.JoinFailed:
        return flow.rollback(node_id, run)
    return None


def roles(reg):
    return {record["id"]: record["roles"] for record in reg.records()}


def test_nodes_join_one_after_another_and_the_cluster_grows(reg, fleet, flow, events):
    accept(reg, "n1")
    assert add(flow, "n1") is None
    assert roles(reg) == {"n1": ["monolith"]}
    assert reg.get("n1")["status"] == "active"

    accept(reg, "n2")
    assert add(flow, "n2") is None
    assert sorted(role for node_roles in roles(reg).values() for role in node_roles) == [
        "core",
        "edge",
    ]
    # n1 changed role (monolith -> edge or core), so it was configured again.
    assert fleet.configured() == ["n1", "n2"]

    accept(reg, "n3")
    fleet.calls.clear()
    assert add(flow, "n3") is None
    assert roles(reg)["n3"] == ["data"]
    # A stable placement: nobody else changed, so only n3 was configured.
    assert fleet.configured() == ["n3"]
    assert reg.summary()["scale"] == "small"
    assert flow.lease() is None
    assert [tag for tag, _ in events].count(join.ROLES_CHANGED_TAG) == 3


def test_a_scale_change_reapplies_the_eos_part_on_the_other_members(reg, fleet, flow):
    for node_id in ("n1", "n2", "n3"):
        accept(reg, node_id)
        add(flow, node_id)
    accept(reg, "n4")  # 4 members: small -> medium
    fleet.calls.clear()
    assert add(flow, "n4") is None
    refreshed = fleet.called("state.apply")
    changed = set(fleet.configured())
    assert "n4" in changed
    assert set(refreshed) == {"n1", "n2", "n3"} - changed
    applied = [args for _, fun, args, _ in fleet.calls if fun == "state.apply"]
    assert all(args == (join.COMMON_STATE,) for args in applied)


def test_a_failed_role_state_rolls_everything_back(reg, fleet, flow, events):
    for node_id in ("n1", "n2"):
        accept(reg, node_id)
        add(flow, node_id)
    before = reg.assignment()
    roles_before = roles(reg)

    accept(reg, "n3")
    fleet.failing_state.add("n3")
    events.clear()
    outcome = add(flow, "n3")

    assert outcome["rolled_back"] is True
    assert outcome["failed_step"] == "configure"
    assert "eos_role_file: Permission denied" in outcome["error"]
    assert reg.get("n3")["status"] == "failed"
    assert reg.get("n3")["roles"] == []
    assert {node: r for node, r in roles(reg).items() if node != "n3"} == {
        node: r for node, r in roles_before.items()
    }
    assert reg.assignment()["assignments"] == before["assignments"]
    assert reg.assignment()["version"] > before["version"]  # versions only grow
    # Only the node that was configured is rolled back, to the checkpoint of this join.
    assert fleet.rolled_back == [("n3", fleet.checkpoints["n3"])]
    (failed,) = [data for tag, data in events if tag == "eos/cluster/node/n3/failed"]
    assert failed["step"] == "configure" and "Permission denied" in failed["error"]
    assert flow.lease() is None

    # The fault removed, the operator accepts n3 again: the next run succeeds.
    fleet.failing_state.clear()
    reg.accept("n3", "retry after the fix")
    assert add(flow, "n3") is None
    assert reg.get("n3")["status"] == "active"
    assert reg.get("n3")["roles"] == ["data"]


def test_a_critical_health_check_stops_the_join_before_any_change(reg, fleet, flow):
    accept(reg, "n1")
    add(flow, "n1")
    version = reg.assignment()["version"]
    accept(reg, "n2")
    fleet.unhealthy.add("n2")
    outcome = add(flow, "n2")
    assert outcome["failed_step"] == "health"
    assert "master_reachable: connection refused" in outcome["error"]
    assert reg.assignment()["version"] == version
    assert fleet.rolled_back == []
    assert reg.get("n2")["status"] == "failed"


def test_a_minion_that_never_answers_fails_the_join_within_its_wait(reg, fleet, events, clock):
    flow = join_flow(reg, fleet, events, clock, minion_wait=30)
    accept(reg, "n1")
    fleet.silent.add("n1")
    started = clock()
    outcome = add(flow, "n1")
    assert outcome["failed_step"] == "health"
    assert "did not answer within 30 s" in outcome["error"]
    assert clock() - started < 40


def test_running_the_flow_again_for_an_active_node_changes_nothing(reg, fleet, flow, events):
    for node_id in ("n1", "n2", "n3"):
        accept(reg, node_id)
        add(flow, node_id)
    version = reg.assignment()["version"]
    history = len(reg.get("n3")["history"])
    assert add(flow, "n3", run="again") is None
    assert reg.get("n3")["status"] == "active"
    assert len(reg.get("n3")["history"]) == history
    assert roles(reg)["n3"] == ["data"]
    assert reg.assignment()["version"] == version + 1  # stored again, with no change
    last = [data for tag, data in events if tag == join.ROLES_CHANGED_TAG][-1]
    assert last["changes"] == {}


def test_a_second_join_waits_for_the_lease_and_gives_up_when_it_is_not_released(
    reg, fleet, events, clock
):
    flow = join_flow(reg, fleet, events, clock, lease_wait=60)
    accept(reg, "n1")
    accept(reg, "n2")
    flow.start("n1", "first")
    with pytest.raises(join.JoinFailed, match=r"n1 .*still holds the lease after 60 s"):
        flow.start("n2", "second")
    # The holder is undisturbed, and a step of another run is refused.
    assert flow.lease()["run"] == "first"
    with pytest.raises(join.NotOwner):
        flow.health("n1", "second")
    assert flow.rollback("n2", "second")["rolled_back"] is False
    assert reg.get("n2")["status"] == "accepted"


def test_an_expired_lease_of_a_dead_run_is_taken_over(reg, fleet, events, clock):
    flow = join_flow(reg, fleet, events, clock, lease_seconds=100, lease_wait=500)
    accept(reg, "n1")
    accept(reg, "n2")
    flow.start("n1", "dead")
    clock.now += 101
    flow.start("n2", "alive")
    assert flow.lease()["node"] == "n2"
    with pytest.raises(join.NotOwner):
        flow.health("n1", "dead")


def abandoned_midway(reg, fleet, events, clock, lease_seconds=100):
    """n1 and n2 joined; n3's join ran up to its assignment, then its master died."""
    flow = join_flow(reg, fleet, events, clock, lease_seconds=lease_seconds, lease_wait=500)
    for node_id in ("n1", "n2"):
        accept(reg, node_id)
        assert add(flow, node_id) is None
    before = reg.assignment()
    accept(reg, "n3")
    for step in ("start", "health", "checkpoint", "assign"):
        getattr(flow, step)("n3", "dead")
    assert reg.get("n3")["roles"], "the dead run stored its assignment"
    return flow, before


def test_an_abandoned_join_is_rolled_back_once_its_lease_expires_and_the_node_joins_again(
    reg, fleet, events, clock
):
    flow, before = abandoned_midway(reg, fleet, events, clock)
    assert flow.recover_abandoned() is None, "not before the lease expired"

    clock.now += 101
    recovered = flow.recover_abandoned()

    assert recovered["abandoned_run"] == "dead"
    assert recovered["rolled_back"] is True
    assert "abandoned at step assign" in recovered["error"]
    # The checkpointed assignment is back (a new version), nothing is left held...
    assert reg.assignment()["assignments"] == before["assignments"]
    assert reg.assignment()["version"] > before["version"]
    assert flow.lease() is None
    # ...and the node is accepted again with a new token: its join starts afresh.
    assert recovered["rejoining"] is True
    record = reg.get("n3")
    assert record["status"] == "accepted" and record["roles"] == []
    assert add(flow, "n3", run="afresh") is None
    assert reg.get("n3")["status"] == "active"


def test_a_join_waiting_for_an_expired_lease_rolls_the_abandoned_join_back_first(
    reg, fleet, events, clock
):
    flow, before = abandoned_midway(reg, fleet, events, clock)
    accept(reg, "n4")
    clock.now += 101
    flow.start("n4", "next")
    assert flow.lease()["run"] == "next"
    assert reg.get("n3")["status"] == "accepted"  # rolled back, waiting for its new join
    assert reg.assignment()["assignments"] == before["assignments"]


def test_the_dead_run_cannot_write_once_taken_over(reg, fleet, events, clock):
    flow, _ = abandoned_midway(reg, fleet, events, clock)
    clock.now += 101
    flow.recover_abandoned()
    with pytest.raises(join.NotOwner):
        reg.store_assignment({"n3": ["data"]}, fence=flow.fence("dead"))
    assert reg.get("n3")["roles"] == []


def test_each_join_gets_a_higher_lease_token_and_keeps_it_through_its_steps(reg, flow):
    accept(reg, "n1")
    flow.start("n1", "run-1")
    token = flow.lease()["token"]
    for step in ("health", "checkpoint", "assign", "configure"):
        getattr(flow, step)("n1", "run-1")
        assert flow.lease()["token"] == token, f"{step} renews the same holding"
    flow.finish("n1", "run-1")

    accept(reg, "n2")
    flow.start("n2", "run-2")

    assert flow.lease()["token"] == token + 1
    assert reg.cache.fetch(registry.CLUSTER_BANK, join.LEASE_TOKEN_KEY) == {"token": token + 1}


def test_the_join_lease_names_its_node_and_master(reg, flow, clock):
    accept(reg, "n1")
    flow.master = "master-a"
    flow.start("n1", "run-1")
    lease = flow.lease()
    assert (lease["node"], lease["run"], lease["kind"], lease["master"]) == (
        "n1",
        "run-1",
        "join",
        "master-a",
    )
    assert lease["expires_at"] == clock.now + join.DEFAULTS["lease_seconds"]


class StalledSolver:
    """``solve_roles`` of a run whose master stalls past its lease right before it stores."""

    def __init__(self, flow, clock, successor, node_id):
        self.solve = flow.solve_roles
        self.clock, self.successor, self.node_id = clock, successor, node_id

    def __call__(self, *args, **kwargs):
        solved = self.solve(*args, **kwargs)
        self.clock.now += 101
        self.successor.start(self.node_id, "next")  # another master takes the lease over
        return solved


def test_a_stalled_run_cannot_store_its_assignment_after_a_successor_took_over(
    reg, fleet, events, clock
):
    stalled = join_flow(reg, fleet, events, clock, lease_seconds=100, lease_wait=500)
    successor = join_flow(reg, fleet, events, clock, lease_seconds=100, lease_wait=500)
    successor.master = "master-b"
    accept(reg, "n1")
    accept(reg, "n2")
    for step in ("start", "health", "checkpoint"):
        getattr(stalled, step)("n1", "stalled")
    stalled.solve_roles = StalledSolver(stalled, clock, successor, "n2")

    with pytest.raises(
        join.NotOwner,
        match=r"run stalled no longer holds the join lease: run next \(token 2, master "
        r"master-b\) holds it; its assignment is not stored",
    ):
        stalled.assign("n1", "stalled")

    assert reg.assignment() is None, "the stalled run stored nothing"
    assert reg.get("n1")["roles"] == []
    # The successor rolled the abandoned join back; the stalled run did not write over that.
    assert stalled.record("n1")["status"] == "failed"
    assert "rollback" in stalled.record("n1")
    assert successor.lease()["run"] == "next"


def test_a_stalled_run_cannot_write_its_join_record_over_its_successors(reg, fleet, events, clock):
    stalled = join_flow(reg, fleet, events, clock, lease_seconds=100, lease_wait=500)
    successor = join_flow(reg, fleet, events, clock, lease_seconds=100, lease_wait=500)
    accept(reg, "n1")
    accept(reg, "n2")
    for step in ("start", "health", "checkpoint", "assign"):
        getattr(stalled, step)("n1", "stalled")
    apply_state = stalled.apply_state

    def stalling_state_run(targets):
        results = apply_state(targets)
        clock.now += 101  # the state run outlasts the lease; another master takes it over
        successor.start("n2", "next")
        return results

    stalled.apply_state = stalling_state_run

    with pytest.raises(
        join.NotOwner, match=r"run next .* holds it.*the join record is not written"
    ):
        stalled.configure("n1", "stalled")

    record = stalled.record("n1")
    assert record["status"] == "failed", "the successor's rollback stands"
    assert "configure" not in record["done"]
    assert successor.lease()["run"] == "next"


def test_the_join_lease_reads_the_registry_locks_clock_when_the_flow_has_none(fleet, events, clock):
    reg = registry.Registry(MemoryCache(), lock=ClockedLock(clock), clock=clock)
    flow = join_flow(reg, fleet, events, clock, lease_seconds=100)
    flow.clock = time.time  # the flow's own clock: this host's
    accept(reg, "n1")
    accept(reg, "n2")

    flow.take_lease("n1", "first")

    assert flow.lease()["expires_at"] == clock.now + 100
    clock.now += 101  # expired by the coordination store's clock, whatever this host says
    assert flow.take_lease("n2", "second")["run"] == "first"
    assert flow.lease()["token"] == 2


def test_an_expired_lease_of_a_finished_run_is_only_released(reg, fleet, events, clock):
    flow = join_flow(reg, fleet, events, clock, lease_seconds=100)
    accept(reg, "n1")
    assert add(flow, "n1") is None
    flow.take_lease("replacement", "replace-1")  # a replacement whose master died
    clock.now += 101
    assert flow.recover_abandoned() == {
        "abandoned_run": "replace-1",
        "node": "replacement",
        "rolled_back": False,
    }
    assert flow.lease() is None
    assert reg.get("n1")["status"] == "active"


def test_recovery_by_another_master_in_progress_is_not_waited_for(reg, fleet, events, clock):
    flow, _ = abandoned_midway(reg, fleet, events, clock)
    clock.now += 101
    flow.take_lease(join.RECOVERY_HOLDER, "recover-elsewhere")  # the other master's engine
    started = clock.now
    assert flow.recover_abandoned() is None
    assert clock.now == started, "nothing waited"
    assert flow.lease()["run"] == "recover-elsewhere"


def test_accepted_nodes_waiting_for_their_own_join_are_not_placed(reg, fleet, flow):
    accept(reg, "n1")
    add(flow, "n1")
    accept(reg, "n2")
    accept(reg, "n3")  # accepted together; n3 waits for its own join
    add(flow, "n2")
    assert roles(reg)["n3"] == []
    assert "n3" not in fleet.configured()
    add(flow, "n3")
    assert roles(reg)["n3"] == ["data"]


@pytest.mark.parametrize(
    ("status", "hint"),
    [("pending", "accept it first"), ("failed", "accept it again"), ("rejected", "rejected")],
)
def test_only_accepted_or_active_nodes_can_join(reg, flow, status, hint):
    reg.ensure("n1", "key pending")
    if status != "pending":
        reg.accept("n1")
        if status == "failed":
            reg.set_status("n1", "failed", "broken")
        else:
            reg.reject("n1")
    with pytest.raises(join.JoinFailed, match=f"n1 is {status}, not accepted: .*{hint}"):
        flow.start("n1", "r")
    assert flow.lease() is None


def test_unknown_nodes_and_bad_settings_are_named(reg, flow):
    with pytest.raises(join.JoinFailed, match="ghost: no such node"):
        flow.start("ghost", "r")
    with pytest.raises(config.InvalidConfig, match="eos:join:minion_wait: -1 must be >= 1"):
        join.settings(config.Layers([("master config", {"join": {"minion_wait": -1}})]))
    with pytest.raises(config.InvalidConfig, match="eos:join:state: '' is not"):
        join.settings(config.Layers([("master config", {"join": {"state": ""}})]))


def test_state_problems_reads_salt_state_returns():
    assert join.state_problems(None) == ["no answer"]
    assert join.state_problems(master.Answer(["Rendering SLS failed"], 1)) == [
        "Rendering SLS failed"
    ]
    ok = {"a": {"__id__": "a", "result": True, "comment": "", "__run_num__": 0}}
    assert join.state_problems(master.Answer(ok)) == []
    assert join.state_problems(master.Answer(ok, 1)) == ["retcode 1"]
    bad = {
        "b": {"__id__": "second", "result": False, "comment": "no", "__run_num__": 2},
        "c": {"__id__": "first", "result": False, "comment": "boom", "__run_num__": 1},
    }
    assert join.state_problems(master.Answer(bad, 2)) == ["first: boom", "second: no"]


def test_edges_are_configured_again_after_a_new_core_node(reg, fleet, flow):
    for node_id in ("n1", "n2", "n3"):
        accept(reg, node_id)
        add(flow, node_id)
    (edge,) = [node for node, node_roles in roles(reg).items() if node_roles == ["edge"]]
    accept(reg, "n4")  # a fourth node: a second core
    fleet.calls.clear()
    assert add(flow, "n4") is None
    assert roles(reg)["n4"] == ["core"]
    highstates = [minion for minion, fun, _, _ in fleet.calls if fun == "state.highstate"]
    # The new core node first (it publishes its address), then the edge that proxies to it.
    assert highstates == ["n4", edge]
    assert flow.record("n4")["dependents"] == [edge]


def test_dependents_are_holders_of_roles_configured_from_a_moved_role():
    assignments = {"e1": ["edge"], "c1": ["core"], "d1": ["data"], "e2": ["edge"]}
    assert join.dependents({"c1": {"old": [], "new": ["core"]}}, assignments) == ["e1", "e2"]
    assert join.dependents({"d1": {"old": [], "new": ["data"]}}, assignments) == []
    assert join.dependents({"c1": {"old": ["monolith"], "new": ["edge"]}}, assignments) == [
        "e1",
        "e2",
    ]


# --- the configuration state without a top file -----------------------------------------------


def test_a_node_no_top_file_targets_gets_its_role_states(reg, fleet, flow):
    fleet.untopped = {"n1"}
    accept(reg, "n1")

    assert add(flow, "n1") is None

    assert reg.get("n1")["status"] == "active"
    assert ("n1", "state.apply", (join.ROLES_STATE,), {}) in fleet.calls
    assert fleet.called("state.highstate") == []


def test_nodes_the_top_file_targets_get_highstate_and_the_rest_eos_roles(reg, fleet, flow):
    fleet.untopped = {"n2"}
    accept(reg, "n1")
    add(flow, "n1")
    accept(reg, "n2")
    fleet.calls.clear()

    assert add(flow, "n2") is None

    # n1 changed role (monolith -> edge or core): both were configured, each its own way.
    assert fleet.called("state.highstate") == ["n1"]
    assert fleet.called("state.apply") == ["n2"]


def test_a_failing_role_state_without_a_top_file_fails_the_join(reg, fleet, flow):
    fleet.untopped = {"n1"}
    fleet.failing_state = {"n1"}
    accept(reg, "n1")

    rolled_back = add(flow, "n1")

    assert rolled_back["rolled_back"] is True
    assert reg.get("n1")["status"] == "failed"


@pytest.mark.parametrize(
    ("answer", "targeted"),
    [
        (None, True),  # no answer: highstate runs and reports it
        (master.Answer(["Rendering SLS 'top' failed"]), True),
        (master.Answer({}), False),
        (master.Answer({"base": []}), False),
        (master.Answer({"base": ["eos.roles"]}), True),
    ],
)
def test_targeted_by_top(answer, targeted):
    assert join.targeted_by_top(answer) is targeted


# --- the join token: a forged or repeated accepted event starts nothing ------------------------


def test_acceptance_gives_the_record_a_join_token_and_activation_clears_it(reg, flow):
    accept(reg, "n1")
    token = reg.get("n1")["join_token"]
    assert isinstance(token, str) and len(token) >= 20

    flow.start("n1", "run-1", token=token)

    assert reg.get("n1")["join_token"] is None, "a token starts one join"


@pytest.mark.parametrize("token", ["", "guessed", None])
def test_a_join_with_a_wrong_token_starts_nothing(reg, fleet, flow, token):
    accept(reg, "n1")
    real = reg.get("n1")["join_token"]

    with pytest.raises(join.JoinFailed, match="forged or repeated"):
        flow.start("n1", "run-forged", token=token if token is not None else 42)

    assert flow.lease() is None
    assert fleet.calls == []
    assert reg.get("n1")["join_token"] == real, "the real event can still start the join"
    assert flow.rollback("n1", "run-forged")["rolled_back"] is False
    assert reg.get("n1")["status"] == "accepted"


def test_a_forged_accepted_event_for_an_active_node_changes_nothing(reg, fleet, flow):
    accept(reg, "n1")
    add(flow, "n1")
    accept(reg, "n2")
    add(flow, "n2")
    fleet.calls.clear()
    before = roles(reg)

    for attempt in range(3):
        with pytest.raises(join.JoinFailed, match="not awaiting a join"):
            flow.start("n1", f"forged-{attempt}", token="anything")

    assert fleet.calls == [], "no checkpoint, no state run on any member"
    assert roles(reg) == before
    assert reg.get("n1")["status"] == "active"


def test_a_repeated_event_with_a_used_token_starts_nothing(reg, flow):
    accept(reg, "n1")
    token = reg.get("n1")["join_token"]
    flow.start("n1", "run-1", token=token)

    with pytest.raises(join.JoinFailed, match="forged or repeated"):
        flow.start("n1", "run-2", token=token)
    assert flow.lease()["run"] == "run-1"


def test_a_retry_after_a_failed_join_gets_a_new_token(reg, fleet, flow):
    fleet.failing_state = {"n1"}
    accept(reg, "n1")
    first = reg.get("n1")["join_token"]
    add(flow, "n1")
    assert reg.get("n1")["status"] == "failed"
    assert reg.get("n1")["join_token"] is None

    reg.accept("n1")

    assert reg.get("n1")["join_token"] not in (None, first)


# --- cordons and leaving nodes in the placement ------------------------------------------------


def pinned(policy):
    return {node: list(held) for node, held in policy.pins.items()}


def test_a_cordoned_node_keeps_the_roles_it_holds_and_gets_no_new_one():
    site = role_rules.policy({"pins": {"pinned": ["edge"]}, "exclude": ["spare"]})
    records = [
        {"id": "c1", "cordoned": True, "roles": ["core"]},
        {"id": "idle", "cordoned": True, "roles": []},
        {"id": "pinned", "cordoned": True, "roles": ["data"]},  # the site's pin stands
        {"id": "free", "roles": ["app"]},
    ]

    policy = join.placement_policy(site, records)

    assert pinned(policy) == {"c1": ["core"], "pinned": ["edge"]}
    assert policy.exclude == frozenset({"idle", "spare"})
    assert pinned(site) == {"pinned": ["edge"]}, "the site's policy itself is left as it was"


def test_a_leaving_node_is_excluded_whatever_the_site_pins():
    site = role_rules.policy({"pins": {"out": ["data"], "other": ["edge"]}})
    records = [{"id": "out", "cordoned": True, "roles": ["data"]}]

    policy = join.placement_policy(site, records, leaving=["out"])

    assert pinned(policy) == {"other": ["edge"]}
    assert policy.exclude == frozenset({"out"})


def test_the_join_places_no_role_on_a_cordoned_node(reg, fleet, flow):
    for node_id in ("n1", "n2"):
        accept(reg, node_id)
        add(flow, node_id)
    accept(reg, "n3")
    fleet.register("n3")
    reg.update("n3", cordoned=True)
    members = [record for record in reg.records() if record["status"] in ("accepted", "active")]

    solved = flow.solve_roles(members)

    assert solved["assignments"].get("n3", []) == [], "uncordoned, n3 would be the data node"
    reg.update("n3", cordoned=False)
    members = [record for record in reg.records() if record["status"] in ("accepted", "active")]
    assert flow.solve_roles(members)["assignments"]["n3"] == ["data"]
