"""
Failure detection: the settings, the verdict on one node after one probe (``assess``), and
whole probes (``Lifecycle.probe``) over a real registry in an in-memory cache.

Only the minions and the clock are stood in for: a fleet whose silent minions do not answer
``test.ping``, and a clock the test moves by whole probe intervals. Expectations come from the
module's documentation (the states, grace, down_after, hold_down, damping).
"""

import copy

import pytest

from saltext.eos.utils import config
from saltext.eos.utils import master
from saltext.eos.utils.cluster import lifecycle
from saltext.eos.utils.cluster import registry
from tests.support.clock import Clock
from tests.support.memory_cache import MemoryCache

T0 = 1_750_000_000.0


def limits(**lifecycle_config):
    """The settings a master with ``eos:lifecycle: lifecycle_config`` runs with."""
    return lifecycle.settings(config.Layers([("master config", {"lifecycle": lifecycle_config})]))


DEFAULT = limits()
EVERY = DEFAULT.probe_interval_seconds


# --- settings ------------------------------------------------------------------------------


def test_every_setting_has_the_documented_default():
    assert lifecycle.settings(config.Layers([])) == lifecycle.Settings(
        grace_seconds=60,
        down_after_seconds=600,
        probe_interval_seconds=15,
        probe_timeout_seconds=5,
        flap_limit=3,
        flap_window_seconds=3600,
        flap_hold_seconds=300,
        max_unreachable_fraction=0.5,
        retry_seconds=300,
    )
    assert isinstance(DEFAULT.flap_limit, int)


def test_the_master_config_overrides_each_key_and_leaves_the_others():
    chosen = limits(grace_seconds=30, flap_limit=5, max_unreachable_fraction=1)
    assert (chosen.grace_seconds, chosen.flap_limit, chosen.max_unreachable_fraction) == (30, 5, 1)
    assert chosen.down_after_seconds == 600
    assert chosen.probe_interval_seconds == 15


@pytest.mark.parametrize("fraction", [0, 1])
def test_a_fraction_may_be_anything_from_0_to_1(fraction):
    assert limits(max_unreachable_fraction=fraction).max_unreachable_fraction == fraction


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"probe_timeout_seconds": 15}, "eos:lifecycle:probe_timeout_seconds"),
        (
            {"probe_interval_seconds": 10, "probe_timeout_seconds": 20},
            "eos:lifecycle:probe_timeout_seconds",
        ),
        ({"max_unreachable_fraction": 1.5}, "eos:lifecycle:max_unreachable_fraction"),
        ({"max_unreachable_fraction": -0.1}, "eos:lifecycle:max_unreachable_fraction"),
        ({"flap_limit": 1.5}, "eos:lifecycle:flap_limit"),
        ({"flap_limit": 0}, "eos:lifecycle:flap_limit"),
        ({"grace_seconds": "60"}, "eos:lifecycle:grace_seconds"),
        ({"grace_seconds": 0}, "eos:lifecycle:grace_seconds"),
        ({"down_after_seconds": True}, "eos:lifecycle:down_after_seconds"),
        ({"retry_seconds": None}, "eos:lifecycle:retry_seconds"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(given, named):
    with pytest.raises(config.InvalidConfig, match=named):
        limits(**given)


def test_a_probe_timeout_not_below_the_interval_names_both_keys():
    with pytest.raises(config.InvalidConfig) as refused:
        limits(probe_interval_seconds=10, probe_timeout_seconds=10)
    assert "eos:lifecycle:probe_timeout_seconds" in str(refused.value)
    assert "eos:lifecycle:probe_interval_seconds" in str(refused.value)


# --- assess: one node, one probe -----------------------------------------------------------


def probes(status, answers, start=T0, liveness=None, settings=DEFAULT, every=EVERY):
    """
    Run ``assess`` for one probe per entry of ``answers`` (True: answered), ``every`` seconds
    apart from ``start``, keeping the liveness and following each status change, as the
    probe stores them. Returns [(time, verdict)].
    """
    verdicts = []
    for number, answered in enumerate(answers):
        now = start + number * every
        verdict = lifecycle.assess(status, liveness, answered, now, settings)
        verdicts.append((now, verdict))
        liveness = verdict.liveness
        status = verdict.status or status
    return verdicts


def changes(verdicts):
    return [(now, verdict.status) for now, verdict in verdicts if verdict.status is not None]


def test_a_node_that_answers_stays_active_with_nothing_to_store():
    verdict = lifecycle.assess("active", None, True, T0, DEFAULT)
    assert verdict.status is None
    assert verdict.liveness == lifecycle.empty_liveness()


def test_an_active_node_is_unreachable_once_it_missed_every_probe_for_the_grace():
    verdicts = probes("active", [False] * 6)

    # Missed first at T0; the grace (60 s) is over at the fifth probe.
    assert changes(verdicts) == [(T0 + 60, "unreachable")]
    now, verdict = verdicts[4]
    assert verdict.liveness["missed_since"] == T0
    assert verdict.liveness["missed_probes"] == 5
    assert verdict.liveness["unreachable_since"] == now
    assert "grace 60 s" in verdict.reason
    for _, held in verdicts[:4]:
        assert held.status is None


def test_missing_probes_is_counted_in_the_liveness_before_the_grace_ends():
    _, verdict = probes("active", [False, False])[-1]
    assert verdict.status is None
    assert verdict.liveness["missed_since"] == T0
    assert verdict.liveness["missed_probes"] == 2


@pytest.mark.parametrize("ahead", [0, 60, 3600, 10**6])
def test_one_missed_probe_never_makes_a_node_unreachable_whatever_the_clock_says(ahead):
    verdict = lifecycle.assess("active", None, False, T0 + ahead, DEFAULT)
    assert verdict.status is None
    assert verdict.liveness["missed_probes"] == 1


def test_a_clock_jumping_past_the_grace_after_one_miss_waits_for_a_second_missed_probe():
    # The clock jumps an hour ahead between the first missed probe and the next one: the
    # grace is over by the clock, but it still takes a second missed probe.
    first = lifecycle.assess("active", None, False, T0, DEFAULT)
    assert first.status is None
    second = lifecycle.assess("active", first.liveness, False, T0 + 3600, DEFAULT)
    assert second.status == "unreachable"
    assert second.liveness["missed_probes"] == lifecycle.MIN_MISSED_PROBES


def test_silence_counts_from_the_last_probe_the_node_answered_when_it_is_known():
    # It answered the probe sent at T0 and missed the next: silent since T0 at most, so the
    # grace ends one probe interval sooner than counted from the first miss.
    first = lifecycle.assess("active", None, False, T0 + EVERY, DEFAULT, heard_at=T0)
    assert first.liveness["missed_since"] == T0
    verdicts = probes("active", [False] * 4, start=T0 + 2 * EVERY, liveness=first.liveness)
    assert changes(verdicts) == [(T0 + 60, "unreachable")]


def test_the_last_answer_does_not_move_a_count_already_running():
    first = lifecycle.assess("active", None, False, T0, DEFAULT)
    second = lifecycle.assess("active", first.liveness, False, T0 + EVERY, DEFAULT, heard_at=T0)
    assert second.liveness["missed_since"] == T0


def test_an_answer_within_the_grace_starts_the_count_again():
    verdicts = probes("active", [False, False, False, True, False, False, False, False, False])

    assert verdicts[3][1].liveness["missed_since"] is None
    assert verdicts[3][1].liveness["missed_probes"] == 0
    # Missed again from the fifth probe: the grace counts from there, not from T0.
    assert changes(verdicts) == [(T0 + 8 * EVERY, "unreachable")]


def unreachable_liveness(since, probes_missed=0, returns=()):
    return {
        **lifecycle.empty_liveness(),
        "missed_since": since - 60,
        "missed_probes": 5,
        "unreachable_since": since,
        "unreachable_probes": probes_missed,
        "returns": list(returns),
    }


def test_an_unreachable_node_that_answers_is_active_again_with_its_return_recorded():
    verdict = lifecycle.assess("unreachable", unreachable_liveness(T0), True, T0 + 30, DEFAULT)

    assert verdict.status == "active"
    assert verdict.liveness == {**lifecycle.empty_liveness(), "returns": [T0 + 30]}
    assert verdict.reason


def test_an_unreachable_node_is_down_after_down_after_seconds():
    verdicts = probes("unreachable", [False] * 42, liveness=unreachable_liveness(T0), start=T0)

    # unreachable at T0; every probe after misses; 600 s later it is down.
    assert changes(verdicts) == [(T0 + 600, "down")]
    assert "down after 600 s" in verdicts[40][1].reason


def test_a_clock_jumping_past_down_after_needs_more_missed_probes_too():
    liveness = unreachable_liveness(T0)
    first = lifecycle.assess("unreachable", liveness, False, T0 + 10**5, DEFAULT)
    assert first.status is None
    second = lifecycle.assess("unreachable", first.liveness, False, T0 + 10**5 + 15, DEFAULT)
    assert second.status == "down"


def test_no_node_is_marked_down_while_too_many_members_miss_the_probe():
    due = unreachable_liveness(T0, probes_missed=10)

    held = lifecycle.assess("unreachable", due, False, T0 + 700, DEFAULT, hold_down=True)
    assert held.status is None
    assert "down held" in held.reason
    assert held.liveness["unreachable_probes"] == 11

    # The next probe that most members answer marks it down.
    after = lifecycle.assess("unreachable", held.liveness, False, T0 + 715, DEFAULT)
    assert after.status == "down"


def test_hold_down_does_not_stop_an_active_node_becoming_unreachable():
    missing = {**lifecycle.empty_liveness(), "missed_since": T0, "missed_probes": 4}
    verdict = lifecycle.assess("active", missing, False, T0 + 60, DEFAULT, hold_down=True)
    assert verdict.status == "unreachable"


def test_a_down_node_that_answers_is_accepted_again_with_its_return_recorded():
    down = unreachable_liveness(T0 - 600, probes_missed=40)
    verdict = lifecycle.assess("down", down, True, T0, DEFAULT)

    assert verdict.status == "accepted"
    assert verdict.liveness == {**lifecycle.empty_liveness(), "returns": [T0]}
    assert "down" in verdict.reason


def test_a_down_node_that_stays_silent_has_nothing_new_to_store():
    down = unreachable_liveness(T0 - 600, probes_missed=40)
    verdict = lifecycle.assess("down", down, False, T0, DEFAULT)
    assert verdict.status is None
    assert verdict.liveness == down


def test_assess_leaves_the_stored_liveness_as_it_was():
    stored = unreachable_liveness(T0, probes_missed=3, returns=[T0 - 10, T0 - 5000])
    before = copy.deepcopy(stored)
    for status in lifecycle.PROBED_STATUSES:
        for answered in (True, False):
            lifecycle.assess(status, stored, answered, T0 + 900, DEFAULT)
    assert stored == before


# --- assess: damping -----------------------------------------------------------------------


@pytest.mark.parametrize(("earlier_returns", "damped"), [(2, False), (3, True), (5, True)])
def test_a_node_is_damped_after_flap_limit_returns_within_the_window(earlier_returns, damped):
    returns = [T0 - 100 * (number + 1) for number in range(earlier_returns)]
    verdict = lifecycle.assess(
        "unreachable", unreachable_liveness(T0 - 60, returns=returns), True, T0, DEFAULT
    )
    if damped:
        assert verdict.status is None
        assert verdict.reason.startswith("damped")
        assert verdict.liveness["answering_since"] == T0
    else:
        assert verdict.status == "active"


def test_the_flap_limit_comes_from_the_config():
    liveness = unreachable_liveness(T0 - 60, returns=[T0 - 100, T0 - 200])
    verdict = lifecycle.assess("unreachable", liveness, True, T0, limits(flap_limit=2))
    assert verdict.status is None
    assert verdict.reason.startswith("damped")


def flapped(since):
    """A node that came back three times in the last hour and is gone again since ``since``."""
    returns = [since - 900, since - 600, since - 300]
    return unreachable_liveness(since, probes_missed=3, returns=returns)


def test_a_damped_node_comes_back_only_after_answering_for_the_hold():
    verdicts = probes("unreachable", [True] * 22, liveness=flapped(T0 - 100))

    # Answering from T0; back once it has answered for flap_hold_seconds (300 s).
    assert changes(verdicts) == [(T0 + 300, "active")]
    for _, verdict in verdicts[:20]:
        assert verdict.status is None
        assert verdict.reason.startswith("damped")
        assert verdict.liveness["answering_since"] == T0
    back = verdicts[20][1].liveness
    assert back["returns"] == [T0 - 1000, T0 - 700, T0 - 400, T0 + 300]


def test_a_damped_node_holding_on_answers_needs_no_new_write_after_the_first():
    _, first = probes("unreachable", [True], liveness=flapped(T0 - 100))[0]
    later = lifecycle.assess("unreachable", first.liveness, True, T0 + 15, DEFAULT)
    assert later.status is None
    assert later.liveness == first.liveness


def test_a_missed_probe_starts_the_hold_again():
    answers = [True] * 10 + [False] + [True] * 30
    verdicts = probes("unreachable", answers, liveness=flapped(T0 - 100))

    missed_at = T0 + 10 * EVERY
    assert verdicts[10][1].liveness["answering_since"] is None
    assert verdicts[11][1].liveness["answering_since"] == missed_at + EVERY
    # 300 s of answers counted from after the miss, not from T0.
    assert changes(verdicts) == [(missed_at + EVERY + 300, "active")]


def test_a_damped_down_node_stays_down_until_the_hold_is_over():
    verdicts = probes("down", [True] * 21, liveness=flapped(T0 - 1000))
    assert changes(verdicts) == [(T0 + 300, "accepted")]


def test_returns_older_than_the_window_are_forgotten():
    old = [T0 - 3601, T0 - 3700, T0 - 5000]
    verdict = lifecycle.assess(
        "unreachable", unreachable_liveness(T0 - 60, returns=old), True, T0, DEFAULT
    )
    assert verdict.status == "active"
    assert verdict.liveness["returns"] == [T0]


def test_the_window_comes_from_the_config():
    returns = [T0 - 400, T0 - 500, T0 - 600]
    liveness = unreachable_liveness(T0 - 60, returns=returns)
    assert lifecycle.assess("unreachable", liveness, True, T0, DEFAULT).status is None
    narrow = limits(flap_window_seconds=300)
    assert lifecycle.assess("unreachable", liveness, True, T0, narrow).status == "active"


# --- Lifecycle.probe over a registry -------------------------------------------------------


class Fleet:
    """Minions that answer test.ping, but the ``silent`` ones; every call is kept."""

    def __init__(self):
        self.silent = set()
        self.calls = []
        self.during_call = None  # run while the ping is out: an operator acting meanwhile

    def call(self, targets, fun, args=(), kwargs=None, timeout=None):
        self.calls.append((sorted(targets), fun, timeout))
        if self.during_call is not None:
            self.during_call()
        return {minion: master.Answer(True) for minion in targets if minion not in self.silent}


class CountingCache(MemoryCache):
    def __init__(self):
        super().__init__()
        self.stores = []

    def store(self, bank, key, data):
        self.stores.append((bank, key))
        super().store(bank, key, data)


@pytest.fixture
def clock():
    return Clock(T0)


@pytest.fixture
def cache():
    return CountingCache()


@pytest.fixture
def reg(cache, clock, events):
    return registry.Registry(
        cache,
        clock=clock,
        on_change=lambda node_id, status, record: events.append((node_id, status, record)),
    )


@pytest.fixture
def fleet():
    return Fleet()


def detector(reg, fleet, clock, **lifecycle_config):
    return lifecycle.Lifecycle(
        registry=reg, call=fleet.call, settings=limits(**lifecycle_config), clock=clock
    )


def active(reg, *node_ids):
    for node_id in node_ids:
        reg.ensure(node_id, "its Salt key is pending")
        reg.accept(node_id)
        reg.set_status(node_id, "active", "joined")


def unreachable_since(reg, node_id, since):
    """An active node the probes found unreachable at ``since`` and that missed 3 probes since."""
    reg.set_status(node_id, "unreachable", "missed probes", liveness=unreachable_liveness(since, 3))


def status(reg, node_id):
    return reg.get(node_id)["status"]


def run_probes(detector_, clock, count):
    """``count`` probes one interval apart; the Probe of each."""
    outcomes = []
    for _ in range(count):
        outcomes.append(detector_.probe())
        clock.sleep(detector_.settings.probe_interval_seconds)
    return outcomes


def test_a_probe_counts_silence_from_the_previous_probe_the_node_answered(reg, fleet, clock):
    active(reg, "n1", "n2", "n3")
    watch = detector(reg, fleet, clock, grace_seconds=30)
    previous = watch.probe()  # sent at T0, everyone answers
    assert previous.sent_at == T0
    clock.sleep(EVERY)
    fleet.silent = {"n2"}
    missed = watch.probe(previous)
    assert reg.get("n2")["liveness"]["missed_since"] == T0
    clock.sleep(EVERY)
    watch.probe(missed)
    # 30 s after T0, the last probe it answered, not after T0 + 15, its first miss.
    assert status(reg, "n2") == "unreachable"


def test_a_previous_probe_from_long_ago_is_not_taken_for_the_last_answer(reg, fleet, clock):
    active(reg, "n1", "n2", "n3")
    watch = detector(reg, fleet, clock)
    previous = watch.probe()
    clock.sleep(10 * EVERY)  # a replacement ran in between: nobody was asked meanwhile
    fleet.silent = {"n2"}
    watch.probe(previous)
    assert reg.get("n2")["liveness"]["missed_since"] == T0 + 10 * EVERY


def test_silence_counts_from_when_the_probe_was_sent_not_when_its_wait_ended(reg, clock):
    active(reg, "n1", "n2", "n3")

    def slow_ping(targets, fun, args=(), kwargs=None, timeout=None):
        clock.sleep(timeout)  # the wait for the silent one
        return {minion: master.Answer(True) for minion in targets if minion != "n2"}

    watch = lifecycle.Lifecycle(registry=reg, call=slow_ping, settings=DEFAULT, clock=clock)
    watch.probe()
    assert reg.get("n2")["liveness"]["missed_since"] == T0


def test_a_silent_node_goes_unreachable_then_down_and_is_accepted_when_it_answers(
    reg, fleet, clock, events
):
    active(reg, "n1", "n2", "n3")
    (first_token,) = [
        record["join_token"] for node, to, record in events if (node, to) == ("n3", "accepted")
    ]
    events.clear()
    fleet.silent = {"n3"}
    lifecycle_ = detector(reg, fleet, clock)

    # Missed first at T0: unreachable at the fifth probe, after the 60 s grace.
    before = run_probes(lifecycle_, clock, 4)
    assert status(reg, "n3") == "active"
    assert events == []
    assert all(outcome.changes == [] for outcome in before)
    assert reg.get("n3")["liveness"]["missed_probes"] == 4

    (unreachable,) = lifecycle_.probe().changes
    assert unreachable == {
        "id": "n3",
        "from": "active",
        "to": "unreachable",
        "reason": unreachable["reason"],
    }
    assert [(node, to) for node, to, _ in events] == [("n3", "unreachable")]
    announced = events[-1][2]
    assert announced["status"] == "unreachable"
    assert announced["liveness"]["unreachable_since"] == T0 + 60
    assert announced == reg.get("n3")
    # Unreachable, it still counts toward the scale and keeps its place.
    assert reg.summary()["node_count"] == 3

    # Down 600 s after it went unreachable.
    clock.sleep(EVERY)
    outcomes = run_probes(lifecycle_, clock, 40)
    assert [o.went_down for o in outcomes if o.went_down] == [["n3"]]
    down_at = T0 + 60 + 600
    assert status(reg, "n3") == "down"
    assert [(node, to) for node, to, _ in events] == [("n3", "unreachable"), ("n3", "down")]
    assert events[-1][2]["status"] == "down"
    assert reg.get("n3")["history"][-1]["reason"].startswith("unreachable for 600 s")
    assert clock() == down_at + EVERY
    assert reg.summary()["node_count"] == 2

    # It answers again: accepted afresh, with a join token the join flow can claim.
    fleet.silent = set()
    (back,) = lifecycle_.probe().changes
    assert (back["from"], back["to"]) == ("down", "accepted")
    record = reg.get("n3")
    assert record["status"] == "accepted"
    assert record["join_token"] and record["join_token"] != first_token
    assert record["liveness"] == {**lifecycle.empty_liveness(), "returns": [clock()]}
    assert events[-1][:2] == ("n3", "accepted")
    assert events[-1][2]["join_token"] == record["join_token"]
    assert reg.claim_join("n3", record["join_token"])["id"] == "n3"


def test_an_unreachable_node_that_answers_is_active_again_and_announced(reg, fleet, clock, events):
    active(reg, "n1", "n2", "n3")
    unreachable_since(reg, "n3", T0 - 30)
    events.clear()

    outcome = detector(reg, fleet, clock).probe()

    assert [(c["id"], c["from"], c["to"]) for c in outcome.changes] == [
        ("n3", "unreachable", "active")
    ]
    assert status(reg, "n3") == "active"
    assert reg.get("n3")["liveness"]["returns"] == [T0]
    assert [(node, to) for node, to, _ in events] == [("n3", "active")]


def test_a_healthy_fleet_probed_twice_writes_nothing(reg, fleet, clock, cache, events):
    active(reg, "n1", "n2", "n3")
    before = copy.deepcopy(cache.banks)
    cache.stores.clear()
    events.clear()

    outcomes = run_probes(detector(reg, fleet, clock), clock, 2)

    assert cache.stores == []
    assert cache.banks == before
    assert events == []
    assert [o.as_dict() for o in outcomes] == [
        {
            "probed": 3,
            "answered": 3,
            "missing": [],
            "changes": [],
            "held": [],
            "hold_down": False,
        }
    ] * 2


def test_a_node_missing_a_probe_costs_one_write_and_no_event(reg, fleet, clock, cache, events):
    active(reg, "n1", "n2", "n3")
    fleet.silent = {"n2"}
    cache.stores.clear()
    events.clear()

    outcome = detector(reg, fleet, clock).probe()

    assert [key for bank, key in cache.stores if bank == registry.NODES_BANK] == ["n2"]
    journal = cache.fetch(registry.CLUSTER_BANK, registry.JOURNAL_KEY)
    assert journal["changes"][-1] == [journal["generation"], "n2"]
    assert events == []
    assert outcome.as_dict()["missing"] == ["n2"]
    assert status(reg, "n2") == "active"


def test_the_probe_pings_only_active_unreachable_and_down_nodes_with_the_timeout(reg, fleet, clock):
    active(reg, "n1", "n2", "n3")
    unreachable_since(reg, "n2", T0)
    reg.set_status("n2", "down", "unreachable too long")
    unreachable_since(reg, "n3", T0)
    for node_id in ("waiting", "joining", "broken", "emptied", "refused"):
        reg.ensure(node_id, "its Salt key is pending")
    for node_id in ("joining", "broken", "emptied"):
        reg.accept(node_id)
    reg.set_status("broken", "failed", "highstate failed")
    reg.set_status("emptied", "active", "joined")
    reg.set_status("emptied", "drained", "drained")
    reg.reject("refused")

    outcome = detector(reg, fleet, clock, probe_timeout_seconds=3).probe()

    assert fleet.calls == [(["n1", "n2", "n3"], "test.ping", 3)]
    assert sorted(outcome.probed) == ["n1", "n2", "n3"]


def test_a_registry_with_no_member_to_probe_calls_no_minion(reg, fleet, clock):
    reg.ensure("waiting", "its Salt key is pending")
    outcome = detector(reg, fleet, clock).probe()
    assert fleet.calls == []
    assert outcome.as_dict()["probed"] == 0


def test_an_answer_that_is_not_true_counts_as_a_miss(reg, clock):
    active(reg, "n1", "n2")

    def call(targets, fun, args=(), kwargs=None, timeout=None):
        return {
            "n1": master.Answer(True),
            "n2": master.Answer("Minion did not return. [Not connected]", 1, False),
        }

    outcome = lifecycle.Lifecycle(registry=reg, call=call, settings=DEFAULT, clock=clock).probe()

    assert outcome.answered == ["n1"]
    assert reg.get("n2")["liveness"]["missed_probes"] == 1


def test_no_node_is_marked_down_while_two_of_three_members_miss_the_probe(
    reg, fleet, clock, events
):
    active(reg, "n1", "n2", "n3")
    unreachable_since(reg, "n2", T0 - 700)
    unreachable_since(reg, "n3", T0 - 700)
    fleet.silent = {"n2", "n3"}
    events.clear()
    lifecycle_ = detector(reg, fleet, clock)

    outcome = lifecycle_.probe()

    assert outcome.hold_down is True
    assert outcome.went_down == []
    assert [held["id"] for held in outcome.held] == ["n2", "n3"]
    assert all("down held" in held["reason"] for held in outcome.held)
    assert (status(reg, "n2"), status(reg, "n3")) == ("unreachable", "unreachable")
    assert events == []

    # n2 answers again: one of three missing is no network fault of the master's; n3 is down.
    fleet.silent = {"n3"}
    clock.sleep(EVERY)
    outcome = lifecycle_.probe()
    assert outcome.hold_down is False
    assert outcome.went_down == ["n3"]
    assert (status(reg, "n2"), status(reg, "n3")) == ("active", "down")


@pytest.mark.parametrize(
    ("live", "missing", "held"),
    [
        (3, 1, False),  # a single missing node is never held: it is the likely fault
        (2, 2, True),
        (4, 2, False),  # half is not more than half
        (5, 3, True),
        (5, 2, False),
    ],
)
def test_hold_down_needs_more_than_the_fraction_of_live_members_missing(
    reg, fleet, clock, live, missing, held
):
    node_ids = [f"n{number}" for number in range(1, live + 1)]
    active(reg, *node_ids)
    for node_id in node_ids[:missing]:
        unreachable_since(reg, node_id, T0 - 700)
    fleet.silent = set(node_ids[:missing])

    outcome = detector(reg, fleet, clock).probe()

    assert outcome.hold_down is held
    assert sorted(outcome.went_down) == ([] if held else node_ids[:missing])


def test_the_unreachable_fraction_comes_from_the_config(reg, fleet, clock):
    active(reg, "n1", "n2", "n3", "n4", "n5")
    unreachable_since(reg, "n1", T0 - 700)
    unreachable_since(reg, "n2", T0 - 700)
    fleet.silent = {"n1", "n2"}

    outcome = detector(reg, fleet, clock, max_unreachable_fraction=0.25).probe()

    assert outcome.hold_down is True
    assert outcome.went_down == []


def test_down_nodes_do_not_count_toward_holding_others_down(reg, fleet, clock):
    active(reg, "n1", "n2", "n3", "old1", "old2")
    for node_id in ("old1", "old2"):
        unreachable_since(reg, node_id, T0 - 7000)
        reg.set_status(node_id, "down", "unreachable too long")
    unreachable_since(reg, "n3", T0 - 700)
    fleet.silent = {"old1", "old2", "n3"}

    outcome = detector(reg, fleet, clock).probe()

    assert outcome.hold_down is False
    assert outcome.went_down == ["n3"]


def test_a_flapping_node_is_damped_in_a_real_probe(reg, fleet, clock, events):
    active(reg, "n1", "n2", "n3")
    reg.set_status("n3", "unreachable", "missed probes", liveness=flapped(T0 - 60))
    events.clear()
    lifecycle_ = detector(reg, fleet, clock)

    outcome = lifecycle_.probe()

    assert outcome.changes == []
    assert [held["id"] for held in outcome.held] == ["n3"]
    assert outcome.held[0]["reason"].startswith("damped")
    assert status(reg, "n3") == "unreachable"
    assert reg.get("n3")["liveness"]["answering_since"] == T0
    assert events == []

    clock.sleep(300)
    (back,) = lifecycle_.probe().changes
    assert (back["id"], back["to"]) == ("n3", "active")
    assert [(node, to) for node, to, _ in events] == [("n3", "active")]


def test_a_node_removed_while_it_is_probed_is_left_removed(reg, fleet, clock, events):
    active(reg, "n1", "n2", "n3")
    unreachable_since(reg, "n3", T0 - 700)
    fleet.silent = {"n3"}
    fleet.during_call = lambda: reg.remove("n3")
    events.clear()

    outcome = detector(reg, fleet, clock).probe()

    assert reg.get("n3") is None
    assert outcome.changes == []
    assert [(node, to) for node, to, _ in events] == [("n3", registry.REMOVED)]


def test_a_missing_node_removed_while_it_is_probed_gets_no_record_back(reg, fleet, clock):
    active(reg, "n1", "n2", "n3")
    fleet.silent = {"n3"}
    fleet.during_call = lambda: reg.remove("n3")

    outcome = detector(reg, fleet, clock).probe()

    assert reg.get("n3") is None
    assert reg.node_ids() == ["n1", "n2"]
    assert outcome.as_dict()["missing"] == ["n3"]


def test_a_down_node_rejected_while_it_is_probed_stays_rejected(reg, fleet, clock, events):
    active(reg, "n1", "n2", "n3")
    unreachable_since(reg, "n3", T0 - 700)
    reg.set_status("n3", "down", "unreachable too long")
    fleet.during_call = lambda: reg.reject("n3", "rejected by an operator")
    events.clear()

    outcome = detector(reg, fleet, clock).probe()

    assert status(reg, "n3") == "rejected"
    assert outcome.changes == []
    assert [(node, to) for node, to, _ in events] == [("n3", "rejected")]
