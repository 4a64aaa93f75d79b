"""
The eos_lifecycle engine over a real registry in an in-memory Salt cache.

Only the outside world is stood in for: the Salt cache backend, the master's event bus, a
LocalClient whose minions answer as EOS minions do (the ``silent`` ones answer nothing), and
the engine's clock (its ``time`` module: wall clock, monotonic clock and sleep). Expectations
come from the engine's documentation.
"""

import logging
import time

import pytest

from saltext.eos.engines import eos_lifecycle as engine
from saltext.eos.utils import master
from saltext.eos.utils.cluster import replacement
from tests.support.cluster import SMALL_CATALOGUE
from tests.support.fleet import Fleet
from tests.support.fleet import members
from tests.support.fleet import unreachable_for
from tests.support.master import master_opts
from tests.support.master import seeded

DONE = "eos/cluster/replacement/done"
FAILED = "eos/cluster/replacement/failed"

pytestmark = pytest.mark.usefixtures("master_world")


class EngineTime:
    """The engine's ``time`` module: the wall clock ``ahead`` of the real one, a monotonic
    clock each pass of which lasts ``pass_seconds``, and a sleep that calls ``on_sleep``."""

    def __init__(self):
        self.ahead = 0.0
        self.mono = 0.0
        self.pass_seconds = 0.0
        self.slept = []
        self.on_sleep = lambda seconds: None

    def time(self):
        return time.time() + self.ahead

    def monotonic(self):
        self.mono += self.pass_seconds  # read at the start and at the end of a pass
        return self.mono

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.on_sleep(seconds)


class Stop(Exception):
    """Ends the engine's loop from its sleep: the master stops."""


@pytest.fixture
def fleet():
    return Fleet()


@pytest.fixture
def client(fleet):
    """The LocalClient publishes to the fleet."""
    return fleet


@pytest.fixture
def opts(tmp_path):
    return master_opts(
        tmp_path, roles={"catalog": SMALL_CATALOGUE}, lifecycle={"retry_seconds": 60}
    )


@pytest.fixture
def configure_loader_modules(opts):
    return {engine: {"__opts__": opts}}


@pytest.fixture
def clock(monkeypatch):
    fake = EngineTime()
    monkeypatch.setattr(engine, "time", fake)
    return fake


def cluster(opts, cache, *node_ids):
    """Active members with resources and the roles the solver gives them; {id: roles}."""
    reg = seeded(cache)
    members(reg, node_ids)
    solved = master.Master(opts).join_flow().solve_roles(reg.records())
    reg.store_assignment(solved["assignments"])
    return {record["id"]: record["roles"] for record in reg.records()}


def assigned(cache):
    return seeded(cache).assignment()["assignments"]


def last_replacement(opts):
    return master.Master(opts).replacement().last()


def test_a_pass_over_a_healthy_cluster_probes_and_replaces_nothing(opts, cache, bus, fleet):
    cluster(opts, cache, "n1", "n2", "n3")
    before = assigned(cache)

    probe, every = engine.one_pass(master.Master(opts))

    assert every == 15
    assert probe.answered == ["n1", "n2", "n3"]
    assert fleet.called("test.ping") == ["n1", "n2", "n3"]
    assert fleet.called("state.highstate") == []
    assert last_replacement(opts) is None
    assert assigned(cache) == before
    assert bus.tags() == []


def test_a_pass_marks_a_node_down_and_hands_its_roles_to_the_live_members(opts, cache, bus, fleet):
    roles = cluster(opts, cache, "n1", "n2", "n3")
    assert roles == {"n1": ["edge"], "n2": ["core"], "n3": ["data"]}
    unreachable_for(seeded(cache), "n2", 700)
    fleet.silent = {"n2"}

    engine.one_pass(master.Master(opts))

    reg = seeded(cache)
    assert reg.get("n2")["status"] == "down"
    assert reg.get("n2")["roles"] == []
    assert not assigned(cache).get("n2")
    # Two live members: the core goes to n3; n1's edge, which proxies to the core, follows.
    assert assigned(cache)["n3"] == ["core"]
    assert assigned(cache)["n1"] == ["edge"]
    assert replacement.stale_holders(reg) == []
    record = last_replacement(opts)
    assert record["outcome"] == "done"
    assert record["reason"] == "down: n2"
    assert record["configured"] == ["n1", "n3"]
    assert fleet.called("state.highstate") == ["n1", "n3"]
    tags = bus.tags()
    assert tags.index("eos/cluster/node/n2/down") < tags.index(DONE)
    assert bus.data("eos/cluster/node/n2/down")[0]["status"] == "down"


def test_a_pass_re_places_the_roles_of_a_node_removed_while_it_held_some(opts, cache, bus, fleet):
    assert cluster(opts, cache, "n1", "n2", "n3")["n2"] == ["core"]
    seeded(cache).remove("n2")

    engine.one_pass(master.Master(opts))

    record = last_replacement(opts)
    assert record["outcome"] == "done"
    assert record["reason"] == "roles held by nodes that left: n2"
    assert assigned(cache)["n3"] == ["core"]
    assert replacement.stale_holders(seeded(cache)) == []
    assert DONE in bus.tags()


def failed_replacement(opts, cache, fleet, down="n2"):
    """A pass in which ``down`` goes down and its replacement fails; its record."""
    unreachable_for(seeded(cache), down, 700)
    fleet.silent = {down}
    fleet.failing_state = set(seeded(cache).node_ids()) - {down}
    engine.one_pass(master.Master(opts))
    fleet.failing_state = set()
    failed = last_replacement(opts)
    assert failed["outcome"] == "failed"
    return failed


def test_a_failed_replacement_is_tried_again_only_after_retry_seconds(
    opts, cache, bus, fleet, clock
):
    cluster(opts, cache, "n1", "n2", "n3")
    before = assigned(cache)

    failed = failed_replacement(opts, cache, fleet)

    assert FAILED in bus.tags()
    # Rolled back: n2 still holds its roles in the assignment, a replacement is still due.
    assert assigned(cache) == before
    assert replacement.stale_holders(seeded(cache)) == ["n2"]

    # Within retry_seconds (60) nothing is tried again, however many passes run.
    here = master.Master(opts)
    fleet.calls.clear()
    clock.ahead = 59
    engine.one_pass(here)
    engine.one_pass(here)
    assert last_replacement(opts)["run"] == failed["run"]
    assert fleet.called("test.ping") == ["n1", "n2", "n3"]
    assert fleet.called("eos_cluster.checkpoint") == []

    clock.ahead = 61
    engine.one_pass(here)
    retried = last_replacement(opts)
    assert retried["run"] != failed["run"]
    assert retried["outcome"] == "done"
    assert retried["reason"] == "roles held by nodes that left: n2"
    assert assigned(cache)["n3"] == ["core"]
    assert replacement.stale_holders(seeded(cache)) == []


def test_the_retry_delay_comes_from_the_config(opts, cache, fleet, clock):
    opts["eos"]["lifecycle"]["retry_seconds"] = 600
    cluster(opts, cache, "n1", "n2", "n3")
    failed = failed_replacement(opts, cache, fleet)
    here = master.Master(opts)

    clock.ahead = 300
    engine.one_pass(here)
    assert last_replacement(opts)["run"] == failed["run"]

    clock.ahead = 601
    engine.one_pass(here)
    assert last_replacement(opts)["outcome"] == "done"


def test_a_node_going_down_is_replaced_at_once_even_after_a_failed_replacement(
    opts, cache, fleet, clock
):
    cluster(opts, cache, "n1", "n2", "n3", "n4")
    failed = failed_replacement(opts, cache, fleet, down="n4")

    unreachable_for(seeded(cache), "n3", 700)
    fleet.silent = {"n3", "n4"}
    engine.one_pass(master.Master(opts))

    assert seeded(cache).get("n3")["status"] == "down"
    retried = last_replacement(opts)
    assert retried["run"] != failed["run"]
    assert retried["reason"] == "down: n3"
    assert retried["outcome"] == "done"
    assert replacement.stale_holders(seeded(cache)) == []


def test_a_bad_setting_is_logged_and_the_next_pass_runs_with_the_fixed_config(
    opts, cache, fleet, clock, caplog
):
    cluster(opts, cache, "n1", "n2")
    engine.__opts__["eos"]["lifecycle"] = {"probe_timeout_seconds": 20}
    clock.pass_seconds = 2

    def operator_fixes_the_config_then_the_master_stops(seconds):
        if len(clock.slept) == 1:
            engine.__opts__["eos"]["lifecycle"] = {"probe_interval_seconds": 30}
        else:
            raise Stop

    clock.on_sleep = operator_fixes_the_config_then_the_master_stops

    with caplog.at_level(logging.ERROR, logger=engine.__name__), pytest.raises(Stop):
        engine.start()

    # The first pass failed on the setting and said which; the engine waited the default
    # interval, then read the config again and probed.
    assert "eos:lifecycle:probe_timeout_seconds" in caplog.text
    assert "this pass failed" in caplog.text
    assert fleet.called("test.ping") == ["n1", "n2"]
    # Each wait is the interval less the pass's 2 s: 15 s by default, then the new 30 s.
    assert clock.slept == [13, 28]


def test_the_interval_argument_overrides_the_configured_one(opts, cache, fleet, clock):
    cluster(opts, cache, "n1", "n2")

    def stop_after_two_passes(seconds):
        if len(clock.slept) == 2:
            raise Stop

    clock.on_sleep = stop_after_two_passes

    with pytest.raises(Stop):
        engine.start(interval=5)

    assert clock.slept == [5, 5]
    assert [fun for _, fun, _, _ in fleet.calls].count("test.ping") == 4


def test_a_failed_replacement_for_a_removed_node_is_still_tried_again(
    opts, cache, bus, fleet, clock
):
    roles = cluster(opts, cache, "n1", "n2", "n3")
    assert roles["n2"] == ["core"]
    # The operator removes the core node and the hand-over fails: its rollback restores an
    # assignment that cannot name a node without a record, so no stale holder is left...
    seeded(cache).remove("n2")
    fleet.failing_state = {"n1", "n3"}
    failed = master.Master(opts).replacement().run("n2 removed")
    fleet.failing_state = set()
    assert failed["outcome"] == "failed"
    assert replacement.stale_holders(seeded(cache)) == []
    # ...yet the core role is still missing, so the engine tries again.
    here = master.Master(opts)
    clock.ahead = 61
    engine.one_pass(here)

    retried = last_replacement(opts)
    assert retried["run"] != failed["run"]
    assert retried["reason"] == f"retry of the failed replacement {failed['run']}"
    assert retried["outcome"] == "done"
    assert "core" in [role for roles in assigned(cache).values() for role in roles]

    # Done: later passes leave it alone.
    clock.ahead = 200
    engine.one_pass(here)
    assert last_replacement(opts)["run"] == retried["run"]


def test_a_pass_rolls_back_a_join_whose_master_died_and_the_node_joins_again(
    opts, cache, bus, fleet
):
    opts["eos"]["join"] = {"lease_seconds": 1}
    before = cluster(opts, cache, "n1", "n2")
    reg = seeded(cache)
    reg.ensure("n3", "its Salt key is pending")
    reg.accept("n3")
    flow = master.Master(opts).join_flow()
    flow.start("n3", "dead")  # its master dies right after taking the lease
    time.sleep(1.1)

    engine.one_pass(master.Master(opts))

    assert flow.lease() is None
    assert flow.record("n3")["status"] == "failed"
    assert "abandoned at step start" in flow.record("n3")["error"]
    assert seeded(cache).get("n3")["status"] == "accepted"  # joins again
    assert "eos/cluster/node/n3/accepted" in bus.tags()
    assert assigned(cache) == before
