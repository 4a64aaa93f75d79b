"""
The eos_join runner's steps over a real registry in an in-memory Salt cache.

The outside world is stood in for: the Salt cache backend, the master's event bus, and a
LocalClient whose minions answer as EOS minions do. A minion asked to register sends its
registration, which reaches the registry as the reactor would record it. Expectations come
from the runner's documentation and the orchestration it serves.
"""

import copy
import fnmatch
import time

import pytest
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.runners import eos_join
from saltext.eos.utils.cluster import registry
from tests.support.master import SilentClient
from tests.support.master import salt_world

GIB = 1024**3
STEPS = ("start", "health", "checkpoint", "assign", "configure", "finish")
ROLES_CHANGED = "eos/roles/changed"
NODE_EVENT = "eos/cluster/node/{id}/{status}"
RESOURCES = {
    "cpu_cores": 8,
    "memory_bytes": 32 * GIB,
    "disks": [
        {
            "name": "vda",
            "size_bytes": 1000 * 1000**3,
            "free_bytes": 900 * 1000**3,
            "storage_type": "ssd",
            "rotational": False,
            "mounts": ["/"],
        }
    ],
}


# --- the outside world --------------------------------------------------------------------


class Fleet(SilentClient):
    """
    Salt's LocalClient over EOS minions. ``silent`` {function: minions} do not answer that
    function; ``unhealthy`` minions fail a critical health check; ``failing_state`` minions
    fail their state runs. Every job is kept in ``calls`` as (minion, function, args, kwargs).
    """

    def __init__(self, opts, cache):
        super().__init__()
        self.reg = registry.open_registry(opts, cache=cache)
        self.silent = {}
        self.unhealthy = set()
        self.failing_state = set()
        self.calls = []
        self.checkpoints = {}
        self.rolled_back = []
        self.sent_at_ms = 0

    def cmd(self, tgt, fun, arg=(), timeout=None, tgt_type="glob", full_return=False, kwarg=None,
            **kwargs):  # fmt: skip
        answers = {}
        for minion in self.targeted(tgt, tgt_type):
            self.calls.append((minion, fun, tuple(arg), dict(kwarg or {})))
            if minion in self.silent.get(fun, ()):
                continue
            ret, retcode = self.answer(minion, fun, list(arg), dict(kwarg or {}))
            answers[minion] = {"ret": ret, "retcode": retcode, "jid": "1"} if full_return else ret
        return answers

    def targeted(self, tgt, tgt_type):
        """The minions a target reaches, as Salt matches them: a list, or a glob over ids."""
        if tgt_type == "list":
            return tgt.split(",") if isinstance(tgt, str) else list(tgt)
        if tgt_type == "glob" and isinstance(tgt, str):
            return fnmatch.filter(self.reg.node_ids(), tgt)
        return []

    def cmd_async(self, tgt, fun, arg=(), tgt_type="glob", kwarg=None, **kwargs):
        self.calls.append((tgt, fun, tuple(arg), dict(kwarg or {})))
        return "1"

    def answer(self, minion, fun, args, kwargs):
        if fun in ("test.ping", "saltutil.refresh_pillar"):
            return True, 0
        if fun == "eos_cluster.register":
            return self.register(minion), 0
        if fun == "eos_cluster.checkpoint":
            checkpoint_id = f"{kwargs['label']}-{minion}-{len(self.calls)}"
            self.checkpoints[minion] = checkpoint_id
            return {"id": checkpoint_id, "label": kwargs["label"]}, 0
        if fun == "eos_cluster.rollback":
            self.rolled_back.append((minion, kwargs["checkpoint_id"]))
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
        raise AssertionError(f"{minion} was asked to run {fun}, which no join step runs")

    def register(self, minion):
        passed = minion not in self.unhealthy
        checks = [
            {
                "name": "master_reachable",
                "critical": True,
                "passed": passed,
                "detail": "port 4506 open" if passed else "connection refused",
            }
        ]
        self.sent_at_ms = max(self.sent_at_ms + 1, int(time.time() * 1000))
        payload = {
            "resources": RESOURCES,
            "health": {"passed": passed, "checks": checks},
            "preferred_role": None,
            "sent_at_ms": self.sent_at_ms,
            "signature": "c2lnbmVk",
        }
        # What the reactor makes of the registration event the minion fires.
        registration = registry.check_registration(minion, payload, lambda *signed: True)
        self.reg.register(minion, registration, registry.AcceptancePolicy(), lambda *m: False)
        return {"sent": True, "tag": "eos/cluster/register", "preferred_role": None,
                "resources": payload["resources"], "health": payload["health"]}  # fmt: skip

    def asked(self, fun):
        return sorted({minion for minion, called, _, _ in self.calls if called == fun})

    def jobs(self, minion):
        return [fun for asked, fun, _, _ in self.calls if asked == minion]


@pytest.fixture
def opts(tmp_path):
    return {
        "__role": "master",
        "cache": "localfs",
        "cachedir": str(tmp_path / "cache"),
        "sock_dir": str(tmp_path / "sock"),
        "conf_file": str(tmp_path / "master"),
        # A minion that does not answer fails a join in seconds, not the default two minutes.
        "eos": {"join": {"minion_wait": 2}},
    }


@pytest.fixture
def fleet(opts, cache):
    return Fleet(opts, cache)


@pytest.fixture
def configure_loader_modules(opts):
    return {eos_join: {"__opts__": opts}}


@pytest.fixture(autouse=True)
def world(cache, bus, fleet):
    with salt_world(cache, bus, fleet):
        yield


# --- helpers ------------------------------------------------------------------------------


def seeded(cache):
    """The registry over the same cache, to set up a cluster without the runner."""
    return registry.Registry(cache)


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
    assert fleet.jobs("n1") == ["test.ping", "eos_cluster.register"]
    assert seeded(cache).get("n1")["resources"]["cpu_cores"] == 8

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
    assert "saltutil.refresh_pillar" in fleet.jobs("n1")
    assert "state.highstate" in fleet.jobs("n1")

    finished = eos_join.finish("n1", "run-1")
    assert finished == {"node": "n1", "status": "active", "roles": assigned["roles"]}
    assert seeded(cache).get("n1")["status"] == "active"
    (active,) = bus.data(NODE_EVENT.format(id="n1", status="active"))
    assert (active["id"], active["status"]) == ("n1", "active")
    assert eos_join.status() == {"lease": None}

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
    assert eos_join.status() == {"lease": None}


def test_the_configuration_state_comes_from_the_master_config(opts, cache, fleet):
    opts["eos"]["join"]["state"] = "eos.roles"
    assert join("n1", "run-1", token=accepted(cache, "n1")) is None
    applied = [args for minion, fun, args, _ in fleet.calls if fun == "state.apply"]
    assert applied == [("eos.roles",)]
    assert fleet.asked("state.highstate") == []


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
    assert fleet.calls == []
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
    assert eos_join.status() == {"lease": None}
    assert fleet.calls == []
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
    assert fleet.calls == []
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
    assert fleet.asked("eos_cluster.checkpoint") == []
    assert fleet.asked("state.highstate") == []
    assert seeded(cache).assignment() is None
    assert eos_join.status() == {"lease": None}
    assert eos_join.status("n1")["error"] == undone["error"]


def test_a_node_that_cannot_take_a_checkpoint_fails_the_step(cache, fleet):
    accepted(cache, "n1")
    fleet.silent["eos_cluster.checkpoint"] = {"n1"}
    eos_join.start("n1", "run-1")
    eos_join.health("n1", "run-1")
    with pytest.raises(CommandExecutionError, match="checkpoint"):
        eos_join.checkpoint("n1", "run-1")
    assert eos_join.status("n1")["failed_step"] == "checkpoint"


def test_members_that_do_not_answer_the_checkpoint_are_reported(cache, fleet):
    join("n1", "run-1", token=accepted(cache, "n1"))
    accepted(cache, "n2")
    fleet.silent["eos_cluster.checkpoint"] = {"n1"}
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
    configured = set(fleet.asked("state.highstate"))
    assert "n2" in configured
    assert sorted(fleet.rolled_back) == sorted((m, fleet.checkpoints[m]) for m in configured)
    assert eos_join.status() == {"lease": None}


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
    assert eos_join.status() == {"lease": None}
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
    fleet.calls.clear()

    for node_id, run in (("n1", "run-1"), ("n1", "never-started"), ("ghost", "run-9")):
        assert eos_join.rollback(node_id, run)["rolled_back"] is False

    assert snapshot(cache) == before
    assert seeded(cache).get("n1")["status"] == "active"
    assert fleet.calls == []
    assert bus.fired == []


# --- status -------------------------------------------------------------------------------


def test_status_without_a_join(cache):
    accepted(cache, "n1")
    assert eos_join.status() == {"lease": None}
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
    assert fleet.calls == []
    assert bus.fired == []


@pytest.mark.parametrize("function", [*STEPS, "rollback"])
@pytest.mark.parametrize("run", ["", "   ", None, 7, ["run-1"]])
def test_a_run_that_is_not_a_token_is_refused(cache, bus, fleet, function, run):
    accepted(cache, "n1")
    before = snapshot(cache)
    with pytest.raises(SaltInvocationError, match="run"):
        _every_function("n1", run)[function]()
    assert snapshot(cache) == before
    assert fleet.calls == []
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
    assert fleet.calls == []
    assert bus.fired == []
