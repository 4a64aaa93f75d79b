"""
The eos_join runner's steps over a real registry in an in-memory Salt cache.

The outside world is stood in for: the Salt cache backend, the master's event bus, and a
LocalClient whose minions answer as EOS minions do. A minion asked to register sends its
registration, which reaches the registry as the reactor would record it. Expectations come
from the runner's documentation and the orchestration it serves.
"""

import copy

import pytest
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.runners import eos_join
from saltext.eos.utils import master
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import wave
from tests.support.fleet import BIG
from tests.support.fleet import Fleet
from tests.support.master import master_opts
from tests.support.master import seeded

STEPS = ("start", "health", "checkpoint", "assign", "configure", "finish")
ROLES_CHANGED = "eos/roles/changed"
NODE_EVENT = "eos/cluster/node/{id}/{status}"

pytestmark = pytest.mark.usefixtures("master_world")


@pytest.fixture
def opts(tmp_path):
    # A minion that does not answer fails a join in seconds, not the default two minutes;
    # a wave starts without gathering.
    return master_opts(tmp_path, join={"minion_wait": 2, "wave_seconds": 0})


@pytest.fixture
def fleet(opts, cache):
    """EOS minions whose registrations reach the runner's registry, as the reactor records them."""
    return Fleet(reg=registry.open_registry(opts, cache=cache))


@pytest.fixture
def client(fleet):
    """The LocalClient publishes to the fleet."""
    return fleet


@pytest.fixture
def configure_loader_modules(opts):
    return {eos_join: {"__opts__": opts}}


# --- helpers ------------------------------------------------------------------------------


def accepted(cache, node_id):
    """Accept node_id as an operator would; its join token, as the accepted event carries it."""
    reg = seeded(cache)
    reg.ensure(node_id, "its Salt key is pending")
    return reg.accept(node_id).record["join_token"]


def join(node_id, run, token=None):
    """The orchestration: every step, then rollback when one fails; the rollback or None."""
    try:
        eos_join.start(node_id, run, token=token)
        for step in STEPS[1:]:
            getattr(eos_join, step)(node_id, run)
    except CommandExecutionError:
        return eos_join.rollback(node_id, run)
    return None


def snapshot(cache):
    return copy.deepcopy(cache.banks)


def roles(cache):
    return {record["id"]: record["roles"] for record in seeded(cache).records()}


def scale(cache):
    return seeded(cache).summary()["scale"]


# --- the whole join -----------------------------------------------------------------------


def test_a_node_joins_step_by_step(cache, bus, fleet):
    token = accepted(cache, "n1")

    started = eos_join.start("n1", "run-1", token=token)
    assert started["node"] == "n1"
    assert started["run"] == "run-1"
    assert started["checkpoint"]["version"] == 0
    assert started["checkpoint"]["assignments"] == {}
    assert started["checkpoint"]["scale"] == scale(cache)
    lease = eos_join.status()["lease"]
    assert (lease["node"], lease["run"]) == ("n1", "run-1")

    checked = eos_join.health("n1", "run-1")
    assert [c["name"] for c in checked["health"]["checks"]] == ["master_reachable"]
    assert fleet.asked("n1") == ["test.ping", "eos_cluster.register"]
    assert seeded(cache).get("n1")["resources"]["cpu_cores"] == BIG["cpu_cores"]

    taken = eos_join.checkpoint("n1", "run-1")
    assert taken["checkpoints"] == {"n1": fleet.checkpoints["n1"]}
    assert taken["unreachable"] == []
    (label,) = [kw["label"] for _, fun, _, kw in fleet.calls if fun == "eos_cluster.checkpoint"]
    assert label == "join-n1"

    assigned = eos_join.assign("n1", "run-1")
    assert assigned["version"] == 1
    assert seeded(cache).assignment()["assignments"] == {"n1": assigned["roles"]}
    assert seeded(cache).get("n1")["roles"] == assigned["roles"]
    assert bus.data(ROLES_CHANGED) == [
        {"version": assigned["version"], "changes": assigned["changes"]}
    ]

    configured = eos_join.configure("n1", "run-1")
    assert configured["configured"] == ["n1"]
    assert "saltutil.refresh_pillar" in fleet.asked("n1")
    assert "state.highstate" in fleet.asked("n1")

    finished = eos_join.finish("n1", "run-1")
    assert finished == {"node": "n1", "status": "active", "roles": assigned["roles"]}
    assert seeded(cache).get("n1")["status"] == "active"
    (active,) = bus.data(NODE_EVENT.format(id="n1", status="active"))
    assert (active["id"], active["status"]) == ("n1", "active")
    assert eos_join.status() == {"lease": None, "wave": None, "queue": []}

    last = eos_join.status("n1")
    assert (last["node"], last["run"], last["status"]) == ("n1", "run-1", "active")
    assert last["step"] == "finish"
    assert last["error"] is None
    assert last["minion_checkpoints"] == taken["checkpoints"]


def test_nodes_join_one_after_another_and_every_member_keeps_a_role(cache, fleet):
    for node_id in ("n1", "n2", "n3"):
        assert join(node_id, f"run-{node_id}", token=accepted(cache, node_id)) is None
    assert {record["status"] for record in seeded(cache).records()} == {"active"}
    assert all(roles(cache).values())
    assert eos_join.status() == {"lease": None, "wave": None, "queue": []}


def test_the_configuration_state_comes_from_the_master_config(opts, cache, fleet):
    opts["eos"]["join"]["state"] = "eos.roles"
    assert join("n1", "run-1", token=accepted(cache, "n1")) is None
    applied = [args for minion, fun, args, _ in fleet.calls if fun == "state.apply"]
    assert applied == [("eos.roles",)]
    assert fleet.called("state.highstate") == []


def test_running_the_join_again_for_an_active_node_changes_nothing(cache, fleet):
    join("n1", "run-1", token=accepted(cache, "n1"))
    before = seeded(cache).get("n1")

    assert join("n1", "again") is None  # by hand: no token

    after = seeded(cache).get("n1")
    assert after["status"] == "active"
    assert after["roles"] == before["roles"]
    assert after["history"] == before["history"]


# --- start --------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "forged-token", None], ids=["empty", "forged", "used"])
def test_start_with_a_token_that_is_not_the_current_acceptances_starts_nothing(
    cache, bus, fleet, token
):
    real = accepted(cache, "n1")
    if token is None:  # a repeated event: the token was used up by the first start
        eos_join.start("n1", "first", token=real)
        token = real
    before = snapshot(cache)

    with pytest.raises(CommandExecutionError, match="n1"):
        eos_join.start("n1", "second", token=token)

    assert snapshot(cache) == before
    assert eos_join.status("n1").get("run") != "second"
    assert fleet.published == []
    assert bus.fired == []


@pytest.mark.parametrize(
    ("status", "hint"),
    [("pending", "accept"), ("failed", "accept"), ("rejected", "rejected"), (None, "no such")],
)
def test_start_refuses_a_node_that_is_not_accepted(cache, bus, fleet, status, hint):
    reg = seeded(cache)
    if status is not None:
        reg.ensure("n1", "its Salt key is pending")
        if status != "pending":
            reg.accept("n1")
            if status == "failed":
                reg.set_status("n1", "failed", "its highstate failed")
            else:
                reg.reject("n1")
    before = snapshot(cache)

    with pytest.raises(CommandExecutionError, match=f"n1.*{hint}"):
        eos_join.start("n1", "run-1")

    assert snapshot(cache) == before
    assert eos_join.status() == {"lease": None, "wave": None, "queue": []}
    assert fleet.published == []
    assert bus.fired == []


def test_a_second_join_waits_for_the_lease_and_gives_up_after_lease_wait(opts, cache, fleet):
    opts["eos"]["join"]["lease_wait"] = 1
    accepted(cache, "n1")
    accepted(cache, "n2")
    eos_join.start("n1", "run-1")

    with pytest.raises(CommandExecutionError, match="n1"):
        eos_join.start("n2", "run-2")

    lease = eos_join.status()["lease"]
    assert (lease["node"], lease["run"]) == ("n1", "run-1")
    assert eos_join.status("n2") == {}
    assert seeded(cache).get("n2")["status"] == "accepted"


# --- steps that fail ----------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS[1:])
def test_a_step_of_a_run_that_does_not_hold_the_lease_is_refused(cache, bus, fleet, step):
    accepted(cache, "n1")
    accepted(cache, "n2")
    eos_join.start("n1", "run-1")
    before = snapshot(cache)
    bus.fired.clear()

    with pytest.raises(CommandExecutionError, match="lease"):
        getattr(eos_join, step)("n1", "run-other")
    with pytest.raises(CommandExecutionError, match="lease"):
        getattr(eos_join, step)("n2", "run-1")

    assert snapshot(cache) == before
    assert fleet.published == []
    assert bus.fired == []


def test_a_failed_critical_health_check_stops_the_join_and_rollback_fails_the_node(
    cache, bus, fleet
):
    accepted(cache, "n1")
    fleet.unhealthy.add("n1")
    eos_join.start("n1", "run-1")

    with pytest.raises(CommandExecutionError, match="master_reachable"):
        eos_join.health("n1", "run-1")
    undone = eos_join.rollback("n1", "run-1")

    assert undone["rolled_back"] is True
    assert undone["failed_step"] == "health"
    assert "master_reachable" in undone["error"]
    assert seeded(cache).get("n1")["status"] == "failed"
    (failed,) = bus.data(NODE_EVENT.format(id="n1", status="failed"))
    assert failed["id"] == "n1"
    assert failed["step"] == "health"
    assert "master_reachable" in failed["error"]
    assert fleet.called("eos_cluster.checkpoint") == []
    assert fleet.called("state.highstate") == []
    assert seeded(cache).assignment() is None
    assert eos_join.status() == {"lease": None, "wave": None, "queue": []}
    assert eos_join.status("n1")["error"] == undone["error"]


def test_a_node_that_cannot_take_a_checkpoint_fails_the_step(cache, fleet):
    accepted(cache, "n1")
    fleet.silent_to["eos_cluster.checkpoint"] = {"n1"}
    eos_join.start("n1", "run-1")
    eos_join.health("n1", "run-1")
    with pytest.raises(CommandExecutionError, match="checkpoint"):
        eos_join.checkpoint("n1", "run-1")
    assert eos_join.status("n1")["failed_step"] == "checkpoint"


def test_members_that_do_not_answer_the_checkpoint_are_reported(cache, fleet):
    join("n1", "run-1", token=accepted(cache, "n1"))
    accepted(cache, "n2")
    fleet.silent_to["eos_cluster.checkpoint"] = {"n1"}
    eos_join.start("n2", "run-2")
    eos_join.health("n2", "run-2")
    taken = eos_join.checkpoint("n2", "run-2")
    assert set(taken["checkpoints"]) == {"n2"}
    assert taken["unreachable"] == ["n1"]


def test_an_invalid_role_catalogue_fails_assign_before_anything_is_stored(opts, cache, bus, fleet):
    accepted(cache, "n1")
    eos_join.start("n1", "run-1")
    eos_join.health("n1", "run-1")
    eos_join.checkpoint("n1", "run-1")
    opts["eos"]["roles"] = {"catalog": {"data": {"memory_gb": -1}}}

    with pytest.raises(CommandExecutionError, match="memory_gb"):
        eos_join.assign("n1", "run-1")

    assert seeded(cache).assignment() is None
    assert seeded(cache).get("n1")["roles"] == []
    assert ROLES_CHANGED not in bus.tags()


def test_a_failed_configuration_is_rolled_back_everywhere_it_ran(cache, bus, fleet):
    join("n1", "run-1", token=accepted(cache, "n1"))
    before = seeded(cache).assignment()
    roles_before = roles(cache)
    token = accepted(cache, "n2")
    fleet.failing_state.add("n2")
    fleet.calls.clear()
    bus.fired.clear()

    undone = join("n2", "run-2", token=token)

    assert undone["rolled_back"] is True
    assert undone["failed_step"] == "configure"
    assert "Permission denied" in undone["error"]
    # The assignment as it was, stored again as a newer version.
    assert seeded(cache).assignment()["assignments"] == before["assignments"]
    assert seeded(cache).assignment()["version"] > before["version"]
    assert undone["restored_from"] == before["version"]
    (restored,) = [data for data in bus.data(ROLES_CHANGED) if "restored_from" in data]
    assert restored["restored_from"] == before["version"]
    assert roles(cache)["n1"] == roles_before["n1"]
    assert seeded(cache).get("n2")["status"] == "failed"
    assert seeded(cache).get("n2")["roles"] == []
    (failed,) = bus.data(NODE_EVENT.format(id="n2", status="failed"))
    assert failed["step"] == "configure"
    assert "Permission denied" in failed["error"]
    # Every minion the join configured goes back to the checkpoint it took in this join.
    configured = set(fleet.called("state.highstate"))
    assert "n2" in configured
    assert sorted(fleet.rolled_back) == sorted((m, fleet.checkpoints[m]) for m in configured)
    assert eos_join.status() == {"lease": None, "wave": None, "queue": []}


@pytest.mark.parametrize("operator", ["reject", "remove"])
def test_a_failed_finish_is_what_the_join_record_and_the_rollback_report(cache, fleet, operator):
    join("n1", "run-1", token=accepted(cache, "n1"))
    accepted(cache, "n2")
    for step in STEPS[:-1]:
        getattr(eos_join, step)("n2", "run-2")
    getattr(seeded(cache), operator)("n2")  # an operator acts while the node joins

    with pytest.raises(CommandExecutionError, match="n2"):
        eos_join.finish("n2", "run-2")
    undone = eos_join.rollback("n2", "run-2")

    assert undone["rolled_back"] is True
    assert eos_join.status() == {"lease": None, "wave": None, "queue": []}
    assert undone["failed_step"] == "finish"
    last = eos_join.status("n2")
    assert last["failed_step"] == "finish"
    assert last["error"]


def test_a_failed_node_joins_after_the_fault_is_fixed_and_it_is_accepted_again(cache, fleet):
    fleet.failing_state.add("n1")
    join("n1", "run-1", token=accepted(cache, "n1"))
    assert seeded(cache).get("n1")["status"] == "failed"

    fleet.failing_state.clear()
    token = seeded(cache).accept("n1", "retry after the fix").record["join_token"]

    assert join("n1", "run-2", token=token) is None
    assert seeded(cache).get("n1")["status"] == "active"


def test_rollback_without_the_lease_has_nothing_to_undo(cache, bus, fleet):
    join("n1", "run-1", token=accepted(cache, "n1"))
    before = snapshot(cache)
    bus.fired.clear()
    fleet.published.clear()

    for node_id, run in (("n1", "run-1"), ("n1", "never-started"), ("ghost", "run-9")):
        assert eos_join.rollback(node_id, run)["rolled_back"] is False

    assert snapshot(cache) == before
    assert seeded(cache).get("n1")["status"] == "active"
    assert fleet.published == []
    assert bus.fired == []


# --- status -------------------------------------------------------------------------------


def test_status_without_a_join(cache):
    accepted(cache, "n1")
    assert eos_join.status() == {"lease": None, "wave": None, "queue": []}
    assert eos_join.status("n1") == {}
    assert eos_join.status("ghost") == {}


# --- bad arguments and settings -----------------------------------------------------------


def _every_function(node_id, run):
    calls = {step: (lambda step=step: getattr(eos_join, step)(node_id, run)) for step in STEPS}
    calls["rollback"] = lambda: eos_join.rollback(node_id, run)
    return calls


BAD_IDS = ["n*", "n1,n2", "-n1", "", "G@os:Debian", None]


@pytest.mark.parametrize(
    ("function", "node_id"),
    # status() without a node is the lease, not a bad id.
    [(f, n) for f in (*STEPS, "rollback", "status") for n in BAD_IDS if (f, n) != ("status", None)],
)
def test_an_invalid_node_id_is_refused_before_anything_happens(
    cache, bus, fleet, function, node_id
):
    accepted(cache, "n1")
    before = snapshot(cache)
    call = _every_function(node_id, "run-1").get(function, lambda: eos_join.status(node_id))
    with pytest.raises(SaltInvocationError, match="node id"):
        call()
    assert snapshot(cache) == before
    assert fleet.published == []
    assert bus.fired == []


@pytest.mark.parametrize("function", [*STEPS, "rollback"])
@pytest.mark.parametrize("run", ["", "   ", None, 7, ["run-1"]])
def test_a_run_that_is_not_a_token_is_refused(cache, bus, fleet, function, run):
    accepted(cache, "n1")
    before = snapshot(cache)
    with pytest.raises(SaltInvocationError, match="run"):
        _every_function("n1", run)[function]()
    assert snapshot(cache) == before
    assert fleet.published == []
    assert bus.fired == []


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"lease_wait": 0}, "eos:join:lease_wait"),
        ({"lease_seconds": "long"}, "eos:join:lease_seconds"),
        ({"minion_wait": -1}, "eos:join:minion_wait"),
        ({"state": ""}, "eos:join:state"),
        ({"state_timeout": True}, "eos:join:state_timeout"),
    ],
)
@pytest.mark.parametrize("function", [*STEPS, "rollback", "status"])
def test_a_bad_join_setting_is_a_command_error_naming_the_key(
    opts, cache, bus, fleet, setting, named, function
):
    accepted(cache, "n1")
    opts["eos"]["join"].update(setting)
    before = snapshot(cache)
    call = _every_function("n1", "run-1").get(function, lambda: eos_join.status("n1"))
    with pytest.raises(CommandExecutionError, match=named):
        call()
    assert snapshot(cache) == before
    assert fleet.published == []
    assert bus.fired == []


# --- waves ----------------------------------------------------------------------------------


def test_join_runs_the_queued_nodes_as_one_wave_and_status_shows_it(cache, bus, fleet, opts):
    tokens = {node: accepted(cache, node) for node in ("n1", "n2", "n3")}
    # n2 and n3 were queued by their own reactor runs while n1's run gathered.
    queued = wave.Waves(master.Master(opts).join_flow())
    for node in ("n2", "n3"):
        queued.flow.joinable(node, tokens[node])
        queued._enqueue(node, f"run-{node}")

    outcome = eos_join.join("n1", "run-1", token=tokens["n1"])

    (led,) = outcome["led"]
    assert led["nodes"] == ["n1", "n2", "n3"] and led["active"] == ["n1", "n2", "n3"]
    for node in ("n1", "n2", "n3"):
        (active,) = bus.data(NODE_EVENT.format(id=node, status="active"))
        assert active["id"] == node
        assert eos_join.status(node)["wave"] == led["wave"]
    status = eos_join.status()
    assert status["lease"] is None and status["queue"] == []
    assert status["wave"]["id"] == led["wave"] and status["wave"]["status"] == "done"


def test_join_refuses_a_forged_token_and_bad_arguments(cache, fleet):
    accepted(cache, "n1")
    with pytest.raises(CommandExecutionError, match="not its current acceptance's"):
        eos_join.join("n1", "run-1", token="guessed")
    with pytest.raises(SaltInvocationError, match="run: '' must be a non-empty token"):
        eos_join.join("n1", "")
    with pytest.raises(SaltInvocationError, match="node id"):
        eos_join.join("web*", "run-1")
    assert eos_join.status()["queue"] == [] and fleet.calls == []
