"""
Joins in waves over an in-memory registry and a fake fleet (``tests.support.fleet``): which
nodes a wave pings, checkpoints, configures and rolls back, who fails alone, what runs in the
next wave, and how a wave whose master died is undone.
"""

import pytest

from saltext.eos.utils import config
from saltext.eos.utils.cluster import join
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import wave
from tests.support.fleet import Fleet
from tests.support.fleet import join_flow
from tests.support.fleet import members
from tests.support.memory_cache import MemoryCache


class Died(BaseException):
    """The master running the wave stops here (nothing in the flow catches it)."""


@pytest.fixture
def reg(clock, events):
    def announce(node_id, status, record):
        # As the master announces them; a join's failed event comes from the flow itself.
        if status != "failed":
            events.append((f"eos/cluster/node/{node_id}/{status}", record))

    return registry.Registry(MemoryCache(), clock=clock, on_change=announce)


@pytest.fixture
def fleet(reg):
    return CountingFleet(reg=reg)


class CountingFleet(Fleet):
    """A fleet that also keeps each call's targets, and runs ``during[fun]`` inside a call."""

    def __init__(self, reg):
        super().__init__(reg=reg)
        self.batches = []
        self.during = {}

    def call(self, targets, fun, args=(), kwargs=None, timeout=None):
        self.batches.append((fun, list(targets)))
        hook = self.during.pop(fun, None)
        if hook is not None:
            hook()
        return super().call(targets, fun, args=args, kwargs=kwargs, timeout=timeout)

    def targets_of(self, fun):
        return [targets for called, targets in self.batches if called == fun]


@pytest.fixture
def flow(reg, fleet, events, clock):
    return join_flow(reg, fleet, events, clock)


@pytest.fixture
def waves(flow):
    return wave.Waves(flow)


def accepted(reg, *node_ids):
    """Nodes accepted as the acceptance policy accepts them; their join tokens."""
    tokens = {}
    for node_id in node_ids:
        reg.ensure(node_id, "its Salt key is pending")
        tokens[node_id] = reg.accept(node_id).record["join_token"]
    return tokens


def queue_all(waves, reg, tokens):
    """Every node queued as its reactor run would, without leading (a wave runs already)."""
    for node_id, token in tokens.items():
        waves.flow.joinable(node_id, token)
        waves._enqueue(node_id, f"run-{node_id}")


def tags(events, suffix):
    return sorted(tag.split("/")[3] for tag, _ in events if tag.endswith(suffix))


EIGHT = [f"n{number}" for number in range(1, 9)]


def test_eight_nodes_accepted_together_join_in_one_wave(reg, fleet, waves, events):
    tokens = accepted(reg, *EIGHT)
    first, *others = EIGHT
    queue_all(waves, reg, {node: tokens[node] for node in others})

    outcome = waves.join(first, "run-n1", token=tokens[first])

    (led,) = outcome["led"]
    assert led["nodes"] == EIGHT and led["active"] == EIGHT and led["failed"] == {}
    assert all(reg.get(node)["status"] == "active" for node in EIGHT)
    assert tags(events, "/active") == EIGHT
    # One health pass, one checkpoint and one state run for the whole wave.
    assert fleet.targets_of("test.ping") == [EIGHT]
    assert fleet.targets_of("eos_cluster.register") == [EIGHT]
    assert fleet.targets_of("eos_cluster.checkpoint") == [EIGHT]
    assert fleet.targets_of("state.highstate") == [EIGHT]
    assert [tag for tag, _ in events].count(join.ROLES_CHANGED_TAG) == 1
    assert reg.assignment()["version"] == 1
    assert sorted(node for node, roles in reg.assignment()["assignments"].items() if roles)
    current = waves.current()
    assert current["status"] == "done" and current["nodes"] == EIGHT
    for node in EIGHT:
        record = waves.flow.record(node)
        assert record["wave"] == current["id"] and record["status"] == "active"
        assert record["done"] == ["start", "health", "checkpoint", "assign", "configure", "finish"]
    assert waves.flow.lease() is None and waves.queue() == {}


def test_a_node_failing_its_states_is_rolled_back_alone(reg, fleet, waves, events):
    tokens = accepted(reg, *EIGHT)
    queue_all(waves, reg, {node: tokens[node] for node in EIGHT[1:]})
    fleet.failing_state.add("n5")

    (led,) = waves.join("n1", "run-n1", token=tokens["n1"])["led"]

    assert led["failed"].keys() == {"n5"} and led["failed"]["n5"]["step"] == "configure"
    assert "Permission denied" in led["failed"]["n5"]["error"]
    assert led["active"] == [node for node in EIGHT if node != "n5"]
    assert reg.get("n5")["status"] == "failed" and reg.get("n5")["roles"] == []
    assert not reg.assignment()["assignments"].get("n5")
    # Its minion went back to its checkpoint; nobody else's did.
    assert fleet.rolled_back == [("n5", fleet.checkpoints["n5"])]
    (failed,) = [data for tag, data in events if tag == "eos/cluster/node/n5/failed"]
    assert failed["step"] == "configure"
    assert tags(events, "/active") == led["active"]
    # Its roles went to the others: every role the catalogue needs is still held.
    assert led["rounds"] == 2
    assert registry_roles_valid(waves)


def registry_roles_valid(waves):
    solved = waves.flow.solve_roles(waves.flow.placement_members(()))
    stored = waves.registry.assignment()["assignments"]
    return {node: roles for node, roles in solved["assignments"].items() if roles} == {
        node: roles for node, roles in stored.items() if roles
    }


def test_unhealthy_and_silent_nodes_fail_at_health_and_are_never_touched(
    reg, fleet, waves, events, clock
):
    tokens = accepted(reg, "n1", "n2", "n3")
    queue_all(waves, reg, {"n2": tokens["n2"], "n3": tokens["n3"]})
    fleet.unhealthy.add("n2")
    fleet.silent.add("n3")
    began = clock()

    (led,) = waves.join("n1", "run-n1", token=tokens["n1"])["led"]

    assert led["active"] == ["n1"]
    assert {node: failure["step"] for node, failure in led["failed"].items()} == {
        "n2": "health",
        "n3": "health",
    }
    assert "connection refused" in led["failed"]["n2"]["error"]
    assert "did not answer within 120 s" in led["failed"]["n3"]["error"]
    assert clock() - began < 120 + 30  # one wait for every silent node, not one each
    assert fleet.targets_of("eos_cluster.checkpoint") == [["n1"]]
    assert fleet.configured() == ["n1"]
    assert tags(events, "/failed") == ["n2", "n3"]


def test_a_node_accepted_while_a_wave_runs_joins_the_next_wave(reg, fleet, waves, events):
    tokens = accepted(reg, "n1", "n2")
    queue_all(waves, reg, {"n2": tokens["n2"]})
    late = {}

    def accept_during_the_state_run():
        late.update(accepted(reg, "n3"))
        late["outcome"] = wave.Waves(waves.flow).join("n3", "run-n3", token=late["n3"])

    fleet.during["state.highstate"] = accept_during_the_state_run
    outcome = waves.join("n1", "run-n1", token=tokens["n1"])

    assert late["outcome"] == {"node": "n3", "queued": True, "wave_run": "run-n1"}
    first, second = outcome["led"]
    assert first["nodes"] == ["n1", "n2"] and second["nodes"] == ["n3"]
    assert second["active"] == ["n3"] and second["wave"] != first["wave"]
    assert all(reg.get(node)["status"] == "active" for node in ("n1", "n2", "n3"))
    assert waves.flow.lease() is None


def test_a_join_into_a_settled_cluster_touches_only_the_nodes_it_changes(
    reg, fleet, flow, waves, events
):
    # A large cluster whose roles are settled and configured for its scale.
    settled = [f"m{number:02}" for number in range(1, 31)]
    members(reg, settled)
    solved = flow.solve_roles(flow.placement_members(()))
    reg.store_assignment(solved["assignments"])
    flow.note_configured_scale("setup")
    scale = reg.summary()["scale"]
    tokens = accepted(reg, "new")
    assert reg.summary()["scale"] == scale, "the test needs a join that keeps the scale"

    (led,) = waves.join("new", "run-new", token=tokens["new"])["led"]

    assert led["active"] == ["new"]
    changed = {node for node in reg.assignment()["assignments"] if node != "new"} & set(
        current_changes(waves)
    )
    touched = {"new", *changed, *waves.current()["dependents"]}
    assert set(fleet.called("eos_cluster.checkpoint")) == touched
    assert set(fleet.called("saltutil.refresh_pillar")) == touched
    assert len(touched) < len(settled) / 2
    assert fleet.called("test.ping") == ["new"]


def current_changes(waves):
    return waves.current()["changed"]


def test_a_member_failing_its_states_rolls_the_whole_wave_back(reg, fleet, flow, waves, events):
    members(reg, ["m1"])
    reg.store_assignment(flow.solve_roles(flow.placement_members(()))["assignments"])
    flow.note_configured_scale("setup")
    before = reg.assignment()
    tokens = accepted(reg, "n1", "n2")
    queue_all(waves, reg, {"n2": tokens["n2"]})
    fleet.failing_state.add("m1")  # the monolith splits: m1 is configured again, and fails

    (led,) = waves.join("n1", "run-n1", token=tokens["n1"])["led"]

    assert led["active"] == []
    assert led["failed"].keys() == {"n1", "n2"}
    assert "members already in the cluster: m1" in led["error"]
    assert reg.get("m1")["status"] == "active"
    assert {reg.get(node)["status"] for node in ("n1", "n2")} == {"failed"}
    assert reg.assignment()["assignments"] == before["assignments"]
    assert {minion for minion, _ in fleet.rolled_back} == {"m1", "n1", "n2"}
    assert waves.flow.lease() is None


def test_state_runs_go_in_batches(reg, fleet, events, clock):
    flow = join_flow(reg, fleet, events, clock, batch=3)
    waves = wave.Waves(flow)
    tokens = accepted(reg, *EIGHT)
    queue_all(waves, reg, {node: tokens[node] for node in EIGHT[1:]})

    waves.join("n1", "run-n1", token=tokens["n1"])

    highstates = fleet.targets_of("state.highstate")
    assert [len(batch) for batch in highstates] == [3, 3, 2]
    assert sorted(node for batch in highstates for node in batch) == EIGHT


def test_the_leader_gathers_for_wave_seconds_before_it_starts(reg, fleet, events, clock):
    flow = join_flow(reg, fleet, events, clock, wave_seconds=7)
    tokens = accepted(reg, "n1")
    began = clock()
    wave.Waves(flow).join("n1", "run-n1", token=tokens["n1"])
    (first_ping,) = [index for index, (fun, _) in enumerate(fleet.batches) if fun == "test.ping"]
    assert first_ping == 0 and clock() - began >= 7


def test_a_forged_token_queues_nothing(reg, fleet, waves):
    accepted(reg, "n1")
    with pytest.raises(join.JoinFailed, match="not its current acceptance's"):
        waves.join("n1", "forged", token="guessed")
    assert waves.queue() == {} and fleet.calls == [] and waves.flow.lease() is None


def test_a_wave_whose_master_died_is_rolled_back_and_its_nodes_join_again(
    reg, fleet, waves, events, clock
):
    tokens = accepted(reg, "n1", "n2")
    queue_all(waves, reg, {"n2": tokens["n2"]})

    def die():
        # Accepted meanwhile: queued behind the wave that is about to die.
        late = accepted(reg, "n3")
        wave.Waves(waves.flow).join("n3", "run-n3", token=late["n3"])
        raise Died

    fleet.during["state.highstate"] = die
    with pytest.raises(Died):
        waves.join("n1", "run-n1", token=tokens["n1"])
    assert waves.current()["status"] == "running"

    clock.sleep(join.DEFAULTS["lease_seconds"] + 1)
    recovered = waves.flow.recover_abandoned()

    assert recovered["rolled_back"] is True and recovered["nodes"] == ["n1", "n2"]
    assert recovered["rejoining"] == ["n1", "n2", "n3"]
    assert reg.assignment()["assignments"] == {}
    for node in ("n1", "n2", "n3"):
        record = reg.get(node)
        assert record["status"] == "accepted" and record["join_token"], record
        assert "abandoned" in record["history"][-1]["reason"]
    assert {minion for minion, _ in fleet.rolled_back} == {"n1", "n2"}
    assert waves.queue() == {} and waves.flow.lease() is None
    assert waves.current()["status"] == "failed"


def test_a_new_leader_takes_an_expired_wave_over(reg, fleet, waves, events, clock):
    tokens = accepted(reg, "n1")

    def die():
        raise Died

    fleet.during["state.highstate"] = die
    with pytest.raises(Died):
        waves.join("n1", "run-n1", token=tokens["n1"])
    clock.sleep(join.DEFAULTS["lease_seconds"] + 1)
    late = accepted(reg, "n2")

    outcome = wave.Waves(waves.flow).join("n2", "run-n2", token=late["n2"])

    (led,) = outcome["led"]
    assert led["nodes"] == ["n2"] and led["active"] == ["n2"]
    # The dead wave's node was rolled back and accepted again, for a join of its own.
    assert reg.get("n1")["status"] == "accepted" and reg.get("n1")["join_token"]


def test_a_wave_waits_behind_a_single_join_and_then_leads(reg, fleet, flow, waves, clock):
    tokens = accepted(reg, "n1", "n2")
    flow.start("n1", "by-hand")
    released = []

    def release_after_a_while(seconds):
        clock.now += seconds
        if clock.now > 1_750_000_030 and not released:
            released.append(flow.rollback("n1", "by-hand"))

    flow.sleep = release_after_a_while
    outcome = waves.join("n2", "run-n2", token=tokens["n2"])
    assert released and outcome["led"][0]["active"] == ["n2"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"wave_seconds": -1}, "eos:join:wave_seconds: -1 must be >= 0"),
        ({"batch": 0}, "eos:join:batch: 0 must be >= 1"),
        ({"batch": 2.5}, "eos:join:batch: 2.5 is not a whole number of nodes"),
        ({"batch": "ten"}, "eos:join:batch: 'ten' is not a number"),
    ],
)
def test_bad_wave_settings_are_named(settings, message):
    layers = config.Layers([("master config", {"join": settings})])
    with pytest.raises(config.InvalidConfig, match=message):
        join.settings(layers)


def test_wave_seconds_zero_starts_at_once():
    layers = config.Layers([("master config", {"join": {"wave_seconds": 0, "batch": 50}})])
    assert (join.settings(layers).wave_seconds, join.settings(layers).batch) == (0, 50)


def test_a_wave_gathers_while_nodes_keep_arriving_up_to_six_windows(reg, fleet, events, clock):
    flow = join_flow(reg, fleet, events, clock, wave_seconds=5)
    waves = wave.Waves(flow)
    tokens = accepted(reg, *[f"n{number}" for number in range(1, 21)])
    arrivals = iter(sorted(tokens)[1:])
    began = clock()
    next_arrival = [began + 4]

    def sleep_and_accept(seconds):
        # A node comes up every 4 s: each one restarts the 5 s quiet window.
        clock.now += seconds
        while clock.now >= next_arrival[0]:
            node = next(arrivals, None)
            if node is None:
                next_arrival[0] = float("inf")
                break
            waves.flow.joinable(node, tokens[node])
            waves._enqueue(node, f"run-{node}")
            next_arrival[0] += 4

    flow.sleep = sleep_and_accept
    led = waves.join("n1", "run-n1", token=tokens["n1"])["led"]

    first = led[0]
    # Six windows of 5 s at most: the nodes that came up within 30 s are in the first wave.
    assert wave_started(reg, first["wave"]) - began == pytest.approx(30, abs=1)
    assert first["nodes"] == sorted(["n1", *sorted(tokens)[1 : 1 + 30 // 4]])
    assert first["active"] == first["nodes"]


def wave_started(reg, wave_id):
    return reg.cache.fetch(wave.WAVES_BANK, wave_id)["started_at"]


def test_a_wave_longer_than_its_lease_keeps_it_between_state_batches(reg, fleet, events, clock):
    flow = join_flow(reg, fleet, events, clock, batch=3)
    other_master = join_flow(reg, fleet, events, clock)
    tokens = accepted(reg, *EIGHT)
    waves = wave.Waves(flow)
    queue_all(waves, reg, {node: tokens[node] for node in EIGHT[1:]})
    looked = []
    answer = fleet.call

    def slow_state_runs(targets, fun, args=(), kwargs=None, timeout=None):
        if fun == "state.highstate":
            # Each batch takes two thirds of the lease; another master looks in between.
            clock.sleep(join.DEFAULTS["lease_seconds"] * 2 / 3)
            looked.append(other_master.recover_abandoned())
        return answer(targets, fun, args=args, kwargs=kwargs, timeout=timeout)

    flow.call = slow_state_runs
    (led,) = waves.join("n1", "run-n1", token=tokens["n1"])["led"]

    assert looked == [None, None, None]  # never found expired: nothing taken over
    assert led["active"] == EIGHT


def test_nodes_queued_for_the_next_wave_are_not_touched_by_this_one(reg, fleet, waves):
    tokens = accepted(reg, "n1", "n2")
    late = {}

    def accept_during_the_health_pass():
        late.update(accepted(reg, "n3"))

    fleet.during["eos_cluster.register"] = accept_during_the_health_pass
    queue_all(waves, reg, {"n2": tokens["n2"]})

    (led,) = waves.join("n1", "run-n1", token=tokens["n1"])["led"]

    # n3, accepted meanwhile (its own join not started yet), was neither checkpointed nor
    # configured, though this first wave of the cluster configured every member it had.
    assert led["active"] == ["n1", "n2"]
    assert "n3" in late
    touched = {node for fun, targets in fleet.batches if fun != "test.ping" for node in targets}
    assert touched == {"n1", "n2"}, fleet.batches
    assert reg.get("n3")["status"] == "accepted" and reg.get("n3")["roles"] == []
