"""The cluster registry over an in-memory stand-in for salt.cache: rules, not storage."""

import copy
import threading
import time

import pytest

from saltext.eos.utils import config
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import roles
from saltext.eos.utils.storage import thresholds
from tests.support.memory_cache import MemoryCache

MANUAL = registry.AcceptancePolicy()
AUTO = registry.AcceptancePolicy(auto=True)


class Clock:
    def __init__(self, start=1_750_000_000.0):
        self.now = start

    def __call__(self):
        self.now += 1
        return self.now


@pytest.fixture
def reg(events):
    return registry.Registry(
        MemoryCache(),
        clock=Clock(),
        on_change=lambda node_id, status, record: events.append((node_id, status)),
    )


def payload(**resources):
    return {
        "resources": {"cpu_cores": 4, "memory_bytes": 8 * 1024**3, **resources},
        "health": {"passed": True, "checks": [check("os_supported")]},
        "preferred_role": None,
        "sent_at_ms": 1000,
        "signature": "c2ln",
    }


def check(name, critical=True, passed=True):
    return {"name": name, "critical": critical, "passed": passed, "detail": ""}


def signed_by_anyone(node_id, message, signature):
    return True


def registration(sent_at_ms=1000, health_passed=True, **resources):
    body = payload(**resources)
    body["sent_at_ms"] = sent_at_ms
    body["health"]["checks"] = [check("os_supported", passed=health_passed)]
    return registry.check_registration("node-1", body, signed_by_anyone)


def never_matches(node_id, expression):
    return False


def bootstrap(reg):
    """A cluster whose first node is already in, so that the policy decides for the rest."""
    reg.register("first", registration(), MANUAL, never_matches)


# --- scale ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "scale"),
    [
        (0, "single"),
        (1, "single"),
        (2, "small"),
        (3, "small"),
        (4, "medium"),
        (6, "medium"),
        (7, "distributed"),
        (10_000, "distributed"),
    ],
)
def test_default_scale_boundaries(members, scale):
    assert registry.scale_for(members) == scale


def test_boundaries_can_move_one_scale():
    layers = config.Layers([("master config", {"scale_boundaries": {"distributed": 10}})])
    boundaries = registry.scale_boundaries(layers)
    assert boundaries == {"small": 2, "medium": 4, "distributed": 10}
    assert registry.scale_for(9, boundaries) == "medium"
    assert registry.scale_for(10, boundaries) == "distributed"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"huge": 9}, "unknown scale 'huge'"),
        ({"single": 1}, "unknown scale 'single'"),
        ({"small": "2"}, "eos:scale_boundaries:small: '2' is not a whole number"),
        ({"small": 1}, "must be >= 2"),
        ({"medium": 8}, "distributed must start above medium"),
        ([2, 4, 7], "is not a mapping"),
    ],
)
def test_bad_boundaries_name_the_key(given, message):
    layers = config.Layers([("master config", {"scale_boundaries": given})])
    with pytest.raises(registry.InvalidBoundaries, match=message):
        registry.scale_boundaries(layers)


def test_scale_profile_takes_thresholds_from_the_threshold_engine():
    for scale in thresholds.PROFILES:
        profile = registry.scale_profile(scale)
        assert profile["thresholds"] == thresholds.profile(scale)
        assert profile["monitoring_interval"] > 0
        assert profile["cleanup"]["automatic_up_to"] in thresholds.LEVELS


# --- acceptance policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, MANUAL),
        ("manual", MANUAL),
        ("auto", AUTO),
        ({"auto": True}, registry.AcceptancePolicy(auto=True, require_health=True)),
        (
            {"auto": True, "match": "G@os:Debian"},
            registry.AcceptancePolicy(auto=True, match="G@os:Debian", require_health=True),
        ),
        ({"auto": True, "require_health": False}, AUTO),
        ({"auto": False, "match": "*"}, registry.AcceptancePolicy(match="*", require_health=True)),
    ],
)
def test_acceptance_policy_shapes(value, expected):
    conf = {} if value is None else {"accept": value}
    assert registry.acceptance_policy(config.Layers([("master config", conf)])) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sometimes", "eos:accept: 'sometimes' is not manual, auto or a mapping"),
        ({"auto": "yes"}, "eos:accept:auto: 'yes' is not true or false"),
        ({"auto": True, "match": ""}, "eos:accept:match: '' is not a target"),
        ({"auto": True, "grains": "x"}, "unknown field 'grains'"),
    ],
)
def test_bad_policy_names_the_key(value, message):
    with pytest.raises(registry.InvalidPolicy, match=message):
        registry.acceptance_policy(config.Layers([("master config", {"accept": value})]))


def test_first_node_is_accepted_whatever_the_policy():
    decision = registry.decide(MANUAL, {"id": "a", "health": None}, True, never_matches)
    assert decision == registry.Decision(True, "first node of a new cluster")


def test_manual_policy_waits_for_an_operator():
    decision = registry.decide(MANUAL, {"id": "a", "health": None}, False, never_matches)
    assert not decision.accept
    assert "eos_cluster.accept" in decision.reason


def test_auto_policy_accepts_without_health():
    assert registry.decide(AUTO, {"id": "a", "health": None}, False, never_matches).accept


def test_health_and_match_policy():
    policy = registry.AcceptancePolicy(auto=True, match="G@role:db", require_health=True)
    asked = []

    def matches(node_id, expression):
        asked.append((node_id, expression))
        return node_id == "good"

    unknown = registry.decide(policy, {"id": "good", "health": None}, False, matches)
    assert (unknown.accept, unknown.reason) == (
        False,
        "waiting for its registration and health checks",
    )
    sick = {"passed": False, "checks": [check("root_free_space", passed=False)]}
    failed = registry.decide(policy, {"id": "good", "health": sick}, False, matches)
    assert not failed.accept
    assert "root_free_space" in failed.reason
    healthy = {"passed": True, "checks": []}
    assert not registry.decide(policy, {"id": "other", "health": healthy}, False, matches).accept
    assert registry.decide(policy, {"id": "good", "health": healthy}, False, matches).accept
    assert asked == [("other", "G@role:db"), ("good", "G@role:db")]


# --- payload validation --------------------------------------------------------------------------


def test_a_valid_payload_is_normalised():
    body = payload(
        disks=[
            {
                "name": "sda",
                "size_bytes": 10,
                "free_bytes": 5,
                "storage_type": "ssd",
                "rotational": False,
                "mounts": ["/"],
            }
        ],
        failure_domain={"datacenter": "dc1", "rack": 3},
        labels={"gpu": "a100", "ssd": None},
    )
    got = registry.check_registration("node-1", body, signed_by_anyone)
    assert got.resources["cpu_cores"] == 4
    assert got.resources["disks"][0]["free_bytes"] == 5
    assert got.resources["failure_domain"] == {"datacenter": "dc1", "rack": "3", "host": None}
    assert got.resources["labels"] == {"gpu": "a100", "ssd": None}
    assert got.health["passed"] is True
    assert got.claimed_id is None


def test_the_master_decides_whether_health_passed():
    body = payload()
    body["health"] = {"passed": True, "checks": [check("master_reachable", passed=False)]}
    assert registry.check_registration("n", body, signed_by_anyone).health["passed"] is False
    body["health"] = {"passed": False, "checks": [check("memory", critical=False, passed=False)]}
    assert registry.check_registration("n", body, signed_by_anyone).health["passed"] is True


def big_list(count, item):
    return [copy.deepcopy(item) for _ in range(count)]


DISK = {"name": "sda", "size_bytes": 1}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["resources"].update(cpu_cores="4"), "resources:cpu_cores: '4' is not a whole"),
        (lambda p: p["resources"].update(cpu_cores=True), "resources:cpu_cores: True is not a"),
        (lambda p: p["resources"].update(memory_bytes=-1), "memory_bytes: -1 is outside"),
        (lambda p: p["resources"].pop("cpu_cores"), "payload:resources: missing cpu_cores"),
        (lambda p: p["resources"].update(owner="root"), "resources: unknown field 'owner'"),
        (lambda p: p.update(extra=1), "payload: unknown field 'extra'"),
        (lambda p: p.pop("signature"), "payload: missing signature"),
        (lambda p: p.update(signature=5), "payload:signature: not a signature"),
        (lambda p: p.update(signature="***"), "payload:signature: not base64"),
        (lambda p: p.update(health="fine"), "payload:health: 'fine' is not a mapping"),
        (
            lambda p: p["health"]["checks"].append(
                {"name": "x", "critical": "yes", "passed": True}
            ),
            "health:checks\\[1\\]:critical: 'yes' is not true or false",
        ),
        (lambda p: p.update(preferred_role="Data Node"), "preferred_role: 'Data Node' is not a"),
        (lambda p: p.update(preferred_role="data\n"), "preferred_role: 'data\\\\n' is not a"),
        (
            lambda p: p["resources"].update(
                disks=[{"name": "sda", "size_bytes": 1, "storage_type": "floppy"}]
            ),
            "disks\\[0\\]:storage_type: 'floppy' is not one of nvme, ssd, hdd",
        ),
        (lambda p: p["resources"].update(disks=big_list(300, DISK)), "300 items, over the cap"),
        (lambda p: p["resources"].update(labels=["a"]), "resources:labels: \\['a'\\] is not a"),
        (lambda p: p["resources"].update(hostname="h" * 300), "hostname: longer than 253"),
        (lambda p: p.update(sent_at_ms=1.5), "sent_at_ms: 1.5 is not a whole number"),
        (lambda p: p["resources"].update(network={"link_speed_mbps": -5}), "outside 0..10000000"),
    ],
)
def test_malformed_payloads_are_refused_with_the_reason(change, message):
    body = payload()
    change(body)
    with pytest.raises(registry.InvalidPayload, match=message):
        registry.check_registration("node-1", body, signed_by_anyone)


def test_the_whole_payload_is_capped():
    body = payload(labels={f"l{i}": "x" * 100 for i in range(60)})
    body["health"]["checks"] = [check("c" * 60) | {"detail": "d" * 2000} for _ in range(30)]
    with pytest.raises(registry.InvalidPayload, match="over the 65536 byte cap"):
        registry.check_registration("node-1", body, signed_by_anyone)


def test_a_payload_that_is_not_a_mapping_is_refused():
    with pytest.raises(registry.InvalidPayload, match="payload: None is not a mapping"):
        registry.check_registration("node-1", None, signed_by_anyone)


def test_only_a_signature_of_the_sender_is_accepted():
    body = payload()
    seen = []

    def verify(node_id, message, signature):
        seen.append((node_id, message, signature))
        return False

    with pytest.raises(registry.InvalidPayload, match="not signed by node-1's accepted Salt key"):
        registry.check_registration("node-1", body, verify)
    node_id, message, signature = seen[0]
    assert node_id == "node-1"
    assert message == registry.signing_message("node-1", body)
    assert signature == b"sig"


def test_the_signed_message_is_canonical_and_names_the_sender():
    body = payload()
    reordered = dict(reversed(list(body.items())))
    assert registry.signing_message("a", body) == registry.signing_message("a", reordered)
    assert registry.signing_message("a", body) != registry.signing_message("b", body)
    # The signature itself and a claimed id are not part of what is signed.
    assert registry.signing_message("a", body) == registry.signing_message(
        "a", {**body, "signature": "other", "id": "b"}
    )


def test_a_claimed_id_is_kept_aside_not_used():
    body = {**payload(), "id": "victim"}
    assert registry.check_registration("node-1", body, signed_by_anyone).claimed_id == "victim"


@pytest.mark.parametrize(
    "node_id",
    ["web-1", "web_1", "WEB01", "_build", "10.0.0.7", "web-1.example.com", "fqdn.", "x" * 253],
)
def test_host_names_and_fqdns_are_node_ids(node_id):
    assert registry.check_node_id(node_id) == node_id


# Every character with a meaning to Salt's targeting (glob, list, compound, grain and range
# targets, pcre), to a path, a shell or salt-run's key=value.
TARGETING_CHARACTERS = "*?[]!@,:|&(){}^~%$#\"';<>=/\\+`"


@pytest.mark.parametrize("char", TARGETING_CHARACTERS)
def test_a_targeting_character_is_refused_naming_the_id_and_the_character(char):
    node_id = f"web{char}1"
    with pytest.raises(registry.InvalidNodeId) as refused:
        registry.check_node_id(node_id)
    assert str(refused.value).startswith(f"node id {node_id!r}: {char!r} at position 4 is ")


@pytest.mark.parametrize(
    ("node_id", "message"),
    [
        ("", "node id '' is not a non-empty string"),
        (None, "node id None is not a non-empty string"),
        ("web-1\n", "'\\n' (U+000A) at position 6 is whitespace"),
        ("node 1", "' ' (a space) at position 5 is whitespace"),
        ("tab\there", "'\\t' (U+0009) at position 4 is whitespace"),
        ("nul\x00", "(U+0000) at position 4 is a control character"),
        ("w\u0435b-1", "'\u0435' (U+0435) at position 2 is not ASCII"),
        ("web\u00a01", "(U+00A0) at position 4 is not ASCII"),
        (".", "starts with '.'"),
        ("..", "starts with '.'"),
        (".hidden", "starts with '.'"),
        ("-rf", "starts with '-': a command line reads it as an option"),
        ("x" * 254, "254 characters, longer than 253"),
    ],
)
def test_node_ids_breaking_the_rule_are_refused_with_the_reason(node_id, message):
    with pytest.raises(registry.InvalidNodeId) as refused:
        registry.check_node_id(node_id)
    assert message in str(refused.value)


def test_a_node_with_a_glob_id_gets_no_record(reg):
    bootstrap(reg)
    with pytest.raises(registry.InvalidNodeId, match="glob wildcard"):
        reg.register("first*", registration(), AUTO, never_matches)
    with pytest.raises(registry.InvalidNodeId, match="glob character class"):
        reg.note_pending_key("fir[st]", AUTO, never_matches)
    assert reg.node_ids() == ["first"]


# --- records and transitions ---------------------------------------------------------------------


def test_the_first_node_bootstraps_the_cluster(reg, events):
    outcome = reg.register("first", registration(), MANUAL, never_matches)
    assert outcome.transitions == ["pending", "accepted"]
    record = reg.get("first")
    assert record["status"] == "accepted"
    assert [h["status"] for h in record["history"]] == ["pending", "accepted"]
    assert record["history"][1]["reason"] == "first node of a new cluster"
    assert record["accepted_at"] is not None
    assert record["resources"]["cpu_cores"] == 4
    summary = reg.summary()
    assert summary["first_node"] == "first"
    assert summary["node_count"] == 1
    assert summary["scale"] == "single"
    assert len(summary["cluster_id"]) == 32
    assert events == [("first", "pending"), ("first", "accepted")]


def test_later_nodes_wait_under_the_manual_policy(reg, events):
    bootstrap(reg)
    reg.register("second", registration(), MANUAL, never_matches)
    record = reg.get("second")
    assert record["status"] == "pending"
    assert "eos_cluster.accept" in record["pending_reason"]
    assert reg.summary()["counts"]["pending"] == 1
    assert events[-1] == ("second", "pending")


def test_accepting_changes_the_scale(reg, events):
    bootstrap(reg)
    reg.register("second", registration(), MANUAL, never_matches)
    assert reg.summary()["scale"] == "single"
    outcome = reg.accept("second")
    assert outcome.transitions == ["accepted"]
    assert reg.get("second")["pending_reason"] is None
    summary = reg.summary()
    assert summary["counts"] == {
        "pending": 0,
        "accepted": 2,
        "active": 0,
        "failed": 0,
        "unreachable": 0,
        "down": 0,
        "drained": 0,
        "rejected": 0,
    }
    assert (summary["node_count"], summary["scale"]) == (2, "small")
    assert events[-1] == ("second", "accepted")


def test_accepting_a_member_again_changes_nothing(reg, events):
    bootstrap(reg)
    before = len(events)
    outcome = reg.accept("first")
    assert not outcome.changed
    assert outcome.note == "already accepted"
    assert len(events) == before


def test_a_pending_node_is_accepted_when_it_registers_healthy(reg):
    bootstrap(reg)
    policy = registry.AcceptancePolicy(auto=True, require_health=True)
    reg.register("n", registration(health_passed=False), policy, never_matches)
    assert reg.get("n")["status"] == "pending"
    assert "os_supported" in reg.get("n")["pending_reason"]
    reg.register("n", registration(sent_at_ms=2000), policy, never_matches)
    assert reg.get("n")["status"] == "accepted"


def test_an_older_registration_does_not_overwrite_a_newer_one(reg):
    reg.register("first", registration(sent_at_ms=2000, cpu_cores=8), MANUAL, never_matches)
    outcome = reg.register("first", registration(sent_at_ms=1000), MANUAL, never_matches)
    assert outcome.note == "older than the registration already recorded"
    assert reg.get("first")["resources"]["cpu_cores"] == 8


SKEW = registry.DEFAULT_MAX_CLOCK_SKEW


def master_ms(reg):
    """The registry clock's next reading, in ms (the Clock moves 1 s per reading)."""
    return int((reg.clock.now + 1) * 1000)


def test_a_registration_from_a_clock_too_far_ahead_is_refused_and_writes_nothing(reg, events):
    ahead = master_ms(reg) + (SKEW + 60) * 1000
    with pytest.raises(registry.ClockSkew) as refused:
        reg.register("n", registration(sent_at_ms=ahead), AUTO, never_matches)
    message = str(refused.value)
    assert "sent 360 s ahead of the master's clock" in message
    assert "eos:registration:max_clock_skew_seconds (300 s)" in message
    assert "set n's clock right" in message
    assert reg.get("n") is None
    assert reg.summary()["cluster_id"] is None
    assert events == []


def test_a_registration_within_the_skew_is_recorded(reg):
    ahead = master_ms(reg) + (SKEW - 10) * 1000
    reg.register("n", registration(sent_at_ms=ahead, cpu_cores=2), MANUAL, never_matches)
    assert reg.get("n")["registration_sent_at_ms"] == ahead
    assert reg.get("n")["resources"]["cpu_cores"] == 2


def test_the_skew_is_the_master_setting(tmp_path):
    opts = {"cachedir": str(tmp_path), "__role": "master"}
    assert registry.open_registry(opts, cache=MemoryCache()).max_clock_skew == SKEW
    opts["eos"] = {"registration": {"max_clock_skew_seconds": 30}}
    reg = registry.open_registry(opts, cache=MemoryCache())
    assert reg.max_clock_skew == 30
    with pytest.raises(registry.ClockSkew, match=r"over .*max_clock_skew_seconds \(30 s\)"):
        reg.register(
            "n", registration(sent_at_ms=int((time.time() + 60) * 1000)), MANUAL, never_matches
        )
    opts["eos"] = {"registration": {"max_clock_skew_seconds": -1}}
    with pytest.raises(config.InvalidConfig, match="max_clock_skew_seconds: -1 must be >= 0"):
        registry.open_registry(opts, cache=MemoryCache())


def test_a_record_stored_from_a_clock_far_ahead_does_not_lock_the_node_out(reg):
    # Stored before the skew check, or before the master's clock was set back.
    reg.register("n", registration(sent_at_ms=master_ms(reg), cpu_cores=2), MANUAL, never_matches)
    record = reg.get("n")
    record["registration_sent_at_ms"] = master_ms(reg) + 86_400_000
    reg.cache.store(registry.NODES_BANK, "n", record)
    outcome = reg.register(
        "n", registration(sent_at_ms=master_ms(reg), cpu_cores=8), MANUAL, never_matches
    )
    assert outcome.note != "older than the registration already recorded"
    assert reg.get("n")["resources"]["cpu_cores"] == 8
    # From then on the order holds again.
    newest = reg.get("n")["registration_sent_at_ms"]
    outcome = reg.register("n", registration(sent_at_ms=newest - 1), MANUAL, never_matches)
    assert outcome.note == "older than the registration already recorded"
    assert reg.get("n")["resources"]["cpu_cores"] == 8


def test_a_record_ahead_within_the_skew_still_orders_registrations(reg):
    ahead = master_ms(reg) + 60_000
    reg.register("n", registration(sent_at_ms=ahead, cpu_cores=8), MANUAL, never_matches)
    outcome = reg.register("n", registration(sent_at_ms=ahead - 1), MANUAL, never_matches)
    assert outcome.note == "older than the registration already recorded"
    assert reg.get("n")["resources"]["cpu_cores"] == 8


def test_a_rejected_node_stays_rejected(reg, events):
    bootstrap(reg)
    reg.register("bad", registration(), MANUAL, never_matches)
    reg.reject("bad")
    outcome = reg.register("bad", registration(sent_at_ms=5000), AUTO, never_matches)
    assert outcome.note == "rejected: registration ignored"
    assert reg.get("bad")["status"] == "rejected"
    assert reg.summary()["counts"]["rejected"] == 1


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (["active"], False),  # pending -> active skips acceptance
        (["accept", "active", "failed", "active"], True),
        (["accept", "failed", "accept", "active"], True),
        (["reject", "accept"], True),
    ],
)
def test_status_transitions(reg, path, allowed):
    bootstrap(reg)
    reg.register("n", registration(), MANUAL, never_matches)
    steps = {
        "accept": lambda: reg.accept("n"),
        "reject": lambda: reg.reject("n"),
        "active": lambda: reg.set_status("n", "active", "highstate done"),
        "failed": lambda: reg.set_status("n", "failed", "highstate failed"),
    }
    if not allowed:
        with pytest.raises(registry.InvalidTransition, match="cannot go from pending to active"):
            for step in path:
                steps[step]()
        assert reg.get("n")["status"] == "pending"
        return
    for step in path:
        steps[step]()
    assert [h["status"] for h in reg.get("n")["history"]][1:] == [
        {"accept": "accepted", "reject": "rejected"}.get(step, step) for step in path
    ]


def test_set_status_takes_only_active_or_failed(reg):
    bootstrap(reg)
    with pytest.raises(
        registry.InvalidTransition,
        match="set_status takes active, failed, unreachable, down, drained, not",
    ):
        reg.set_status("first", "accepted", "why")


def test_unknown_nodes_are_clear_errors(reg):
    for change in (reg.accept, reg.reject, reg.remove):
        with pytest.raises(registry.UnknownNode, match="ghost: no such node in the registry"):
            change("ghost")


def test_removing_a_node_forgets_it_and_counts(reg, events):
    bootstrap(reg)
    outcome = reg.remove("first")
    assert outcome.transitions == [registry.REMOVED]
    assert outcome.record["history"][-1]["status"] == "removed"
    assert reg.get("first") is None
    assert reg.summary()["node_count"] == 0
    assert events[-1] == ("first", "removed")
    # The cluster was bootstrapped once: a new node does not take over as first node.
    reg.register("next", registration(), MANUAL, never_matches)
    assert reg.get("next")["status"] == "pending"


def test_a_pending_key_creates_a_pending_record_once(reg, events):
    bootstrap(reg)
    reg.note_pending_key("new", MANUAL, never_matches)
    assert reg.get("new")["status"] == "pending"
    assert reg.get("new")["resources"] is None
    outcome = reg.note_pending_key("new", MANUAL, never_matches)
    assert not outcome.changed
    assert reg.get("new")["status"] == "pending"
    assert events.count(("new", "pending")) == 1


def test_a_pending_key_seen_again_meets_the_current_policy(reg, events):
    bootstrap(reg)
    reg.note_pending_key("new", MANUAL, never_matches)
    outcome = reg.note_pending_key("new", AUTO, never_matches)
    assert outcome.transitions == ["accepted"]
    assert events[-1] == ("new", "accepted")


def test_a_pending_key_of_a_member_does_not_demote_it(reg):
    bootstrap(reg)
    reg.note_pending_key("first", MANUAL, never_matches)
    assert reg.get("first")["status"] == "accepted"


def test_a_pending_key_of_an_accepted_node_is_accepted_again_under_the_policy(reg, events):
    # Salt lost the acceptance (two first authentications raced): the node has not joined
    # yet, so the policy that accepted it accepts its key again, without a new acceptance.
    bootstrap(reg)
    reg.note_pending_key("new", AUTO, never_matches)
    token = reg.get("new")["join_token"]
    outcome = reg.note_pending_key("new", AUTO, never_matches)
    assert outcome.accept_key is True
    assert outcome.transitions == []
    assert reg.get("new")["join_token"] == token
    assert events.count(("new", "accepted")) == 1


def test_a_pending_key_of_an_accepted_node_waits_under_a_manual_policy(reg):
    bootstrap(reg)
    reg.note_pending_key("new", AUTO, never_matches)
    assert reg.note_pending_key("new", MANUAL, never_matches).accept_key is False


def test_a_pending_key_of_the_first_node_is_accepted_again_whatever_the_policy(reg):
    # The first node is accepted for being the first; a manual policy would never accept it.
    reg.note_pending_key("first", MANUAL, never_matches)
    assert reg.get("first")["status"] == "accepted"
    outcome = reg.note_pending_key("first", MANUAL, never_matches)
    assert outcome.accept_key is True
    assert outcome.transitions == []


def test_a_pending_key_of_an_active_member_waits_for_the_operator(reg):
    # A member's key pending again is a key rotation: never accepted by itself.
    bootstrap(reg)
    reg.set_status("first", "active", "up")
    outcome = reg.note_pending_key("first", AUTO, never_matches)
    assert outcome.accept_key is False
    assert reg.get("first")["status"] == "active"


def test_the_auto_policy_accepts_a_pending_key(reg):
    bootstrap(reg)
    outcome = reg.note_pending_key("new", AUTO, never_matches)
    assert outcome.transitions == ["pending", "accepted"]


def test_history_is_bounded(reg):
    bootstrap(reg)
    for _ in range(registry.HISTORY_LIMIT):
        reg.set_status("first", "active", "up")
        reg.set_status("first", "failed", "down")
    history = reg.get("first")["history"]
    assert len(history) == registry.HISTORY_LIMIT
    assert history[-1]["status"] == "failed"


# --- roles and the summary -----------------------------------------------------------------------


def test_storing_an_assignment_gives_nodes_their_roles(reg):
    bootstrap(reg)
    reg.register("second", registration(), AUTO, never_matches)
    result = reg.store_assignment({"first": ["edge"], "second": ["core"]})
    assert result == {
        "version": 1,
        "changes": {
            "first": {"old": [], "new": ["edge"]},
            "second": {"old": [], "new": ["core"]},
        },
    }
    assert reg.get("second")["roles"] == ["core"]
    summary = reg.summary()
    assert (summary["roles"], summary["assignment_version"]) == ({"core": 1, "edge": 1}, 1)
    again = reg.store_assignment({"first": ["edge"], "second": ["data"]})
    assert again == {"version": 2, "changes": {"second": {"old": ["core"], "new": ["data"]}}}
    assert reg.assignment()["assignments"] == {"first": ["edge"], "second": ["data"]}


def test_an_assignment_naming_an_unknown_node_writes_nothing(reg):
    bootstrap(reg)
    with pytest.raises(registry.UnknownNode, match="no record for ghost"):
        reg.store_assignment({"first": ["edge"], "ghost": ["core"]})
    assert reg.get("first")["roles"] == []
    assert reg.summary()["assignment_version"] == 0


def test_a_rejected_node_loses_its_roles(reg):
    bootstrap(reg)
    reg.store_assignment({"first": ["monolith"]})
    reg.reject("first")
    assert reg.get("first")["roles"] == []
    assert reg.summary()["roles"] == {}


def test_recount_repairs_the_summary(reg):
    bootstrap(reg)
    reg.register("second", registration(), MANUAL, never_matches)
    reg.cache.store(
        registry.CLUSTER_BANK,
        registry.SUMMARY_KEY,
        {**reg.summary(), "counts": dict.fromkeys(registry.STATUSES, 7)},
    )
    summary = reg.rebuild_summary()
    assert summary["counts"]["pending"] == 1
    assert summary["counts"]["accepted"] == 1
    assert summary["node_count"] == 1


def test_records_filter_by_status(reg):
    bootstrap(reg)
    reg.register("b", registration(), MANUAL, never_matches)
    assert [r["id"] for r in reg.records()] == ["b", "first"]
    assert [r["id"] for r in reg.records("pending")] == ["b"]
    with pytest.raises(registry.RegistryError, match="status 'gone'"):
        reg.records("gone")


def test_a_record_becomes_a_role_solver_node(reg):
    bootstrap(reg)
    record = reg.get("first")
    record["resources"].update(
        memory_bytes=int(15.6 * 1024**3),
        disks=[
            {"name": "nvme0n1", "size_bytes": 500 * 10**9, "storage_type": "nvme"},
            {"name": "sda", "size_bytes": 2000 * 10**9, "storage_type": "hdd"},
        ],
        failure_domain={"datacenter": "dc1", "rack": "r1", "host": None},
        labels={"gpu": "a100"},
    )
    node = registry.as_role_node(record)
    assert node["memory_gb"] == 16  # a 16 GB machine the kernel shows as 15.6 GiB
    assert node["disk_gb"] == 2500
    assert node["storage_type"] == "hdd"  # where most of its data would live
    (parsed,) = roles.nodes([node])
    assert parsed.labels == frozenset({"gpu", "gpu=a100"})
    assert parsed.rack == "r1"


# --- the lifecycle statuses: unreachable, down, drained -----------------------------------------


def member(reg, node_id):
    """An active member (the first node bootstraps the cluster, so the rest are accepted too)."""
    reg.register(node_id, registration(), AUTO, never_matches)
    reg.set_status(node_id, "active", "joined")


def lifecycle_step(reg, node_id, step):
    """One change as the flows make it: accept, reject, or set_status to a flow status."""
    if step == "accepted":
        return reg.accept(node_id, "back through the join flow")
    if step == "rejected":
        return reg.reject(node_id)
    return reg.set_status(node_id, step, f"{step} by the lifecycle")


@pytest.mark.parametrize(
    "path",
    [
        ["unreachable", "active"],  # answered again before it was down: roles untouched
        ["unreachable", "down", "accepted"],  # a down node comes back through its join
        ["unreachable", "down", "rejected"],
        ["unreachable", "drained"],
        ["unreachable", "rejected"],
        ["drained", "accepted"],  # uncordoned after a drain: joins again
        ["drained", "rejected"],
    ],
)
def test_every_lifecycle_transition_is_allowed_and_kept_in_the_history(reg, events, path):
    bootstrap(reg)
    member(reg, "n")
    events.clear()
    for step in path:
        assert lifecycle_step(reg, "n", step).transitions == [step]
    assert reg.get("n")["status"] == path[-1]
    assert [entry["status"] for entry in reg.get("n")["history"]][-len(path) :] == path
    assert events == [("n", step) for step in path]


def test_an_accepted_node_can_be_drained_before_its_join(reg):
    bootstrap(reg)
    reg.register("n", registration(), AUTO, never_matches)
    assert reg.set_status("n", "drained", "drained").transitions == ["drained"]


@pytest.mark.parametrize(
    ("path", "forbidden"),
    [
        (["unreachable", "down"], "active"),  # a down node's roles moved: it must join again
        (["drained"], "active"),  # a drained node must join again
        (["unreachable", "down"], "drained"),  # nothing left to copy from a down node
        (["drained"], "down"),
        ([], "down"),  # down only after unreachable
        (["failed"], "unreachable"),  # the probes watch members only
    ],
)
def test_a_forbidden_lifecycle_transition_changes_nothing(reg, events, path, forbidden):
    bootstrap(reg)
    member(reg, "n")
    for step in path:
        lifecycle_step(reg, "n", step)
    before = reg.get("n")
    summary = reg.summary()
    events.clear()
    was = path[-1] if path else "active"
    with pytest.raises(registry.InvalidTransition, match=f"n: cannot go from {was} to {forbidden}"):
        reg.set_status("n", forbidden, "not allowed")
    assert reg.get("n") == before
    assert reg.summary() == summary
    assert events == []


def test_an_accepted_node_is_not_probed_into_unreachable(reg):
    bootstrap(reg)
    with pytest.raises(registry.InvalidTransition, match="cannot go from accepted to unreachable"):
        reg.set_status("first", "unreachable", "missed probes")


def test_unreachable_nodes_are_members_and_down_or_drained_ones_are_not(reg):
    bootstrap(reg)
    for node_id in ("b", "c", "d"):
        member(reg, node_id)
    assert (reg.summary()["node_count"], reg.summary()["scale"]) == (4, "medium")
    reg.set_status("b", "unreachable", "missed probes")
    assert (reg.summary()["node_count"], reg.summary()["scale"]) == (4, "medium")
    reg.set_status("b", "down", "unreachable too long")
    reg.set_status("c", "drained", "drained")
    summary = reg.summary()
    assert (summary["node_count"], summary["scale"]) == (2, "small")
    assert (summary["counts"]["down"], summary["counts"]["drained"]) == (1, 1)


def test_the_summary_names_the_holders_of_the_roles_edges_are_configured_from(reg):
    bootstrap(reg)
    for node_id in ("b", "c"):
        member(reg, node_id)
    reg.store_assignment({"first": ["monolith"]})
    assert reg.summary()["holders"] == {"core": [], "monolith": ["first"]}
    reg.store_assignment({"first": ["edge"], "c": ["core"], "b": ["core"]})
    assert reg.summary()["holders"] == {"core": ["b", "c"], "monolith": []}
    reg.store_assignment({"first": ["edge"], "c": ["core"], "b": ["data"]})
    assert reg.summary()["holders"] == {"core": ["c"], "monolith": []}


@pytest.mark.parametrize("leaves", ["drained", "rejected"])
def test_a_drained_or_rejected_node_drops_its_roles_and_leaves_the_holders(reg, leaves):
    bootstrap(reg)
    for node_id in ("b", "c"):
        member(reg, node_id)
    reg.store_assignment({"first": ["edge"], "b": ["core"], "c": ["core"]})

    lifecycle_step(reg, "b", leaves)

    assert reg.get("b")["roles"] == []
    summary = reg.summary()
    assert summary["holders"]["core"] == ["c"]
    assert summary["roles"] == {"core": 1, "edge": 1}


@pytest.mark.parametrize("leaves", ["drained", "rejected"])
def test_an_assignment_still_naming_a_drained_or_rejected_node_gives_it_no_role(reg, leaves):
    # What a failed replacement stores: the assignment from before the node left.
    bootstrap(reg)
    for node_id in ("b", "c"):
        member(reg, node_id)
    before = {"first": ["edge"], "b": ["core"], "c": ["core"]}
    reg.store_assignment(before)
    lifecycle_step(reg, "b", leaves)

    stored = reg.store_assignment(before)

    assert reg.get("b")["roles"] == []
    assert stored["changes"] == {}
    summary = reg.summary()
    assert summary["holders"]["core"] == ["c"], "no edge is pointed at it again"
    assert summary["roles"] == {"core": 1, "edge": 1}
    assert reg.assignment()["assignments"]["b"] == ["core"], "still named: a replacement is due"


@pytest.mark.parametrize("path", [["unreachable"], ["unreachable", "down"]])
def test_an_unreachable_or_down_node_keeps_its_roles_until_they_are_replaced(reg, path):
    bootstrap(reg)
    member(reg, "b")
    reg.store_assignment({"first": ["edge"], "b": ["core"]})
    for step in path:
        lifecycle_step(reg, "b", step)
    assert reg.get("b")["roles"] == ["core"]
    assert reg.summary()["holders"]["core"] == ["b"]
    assert reg.assignment()["assignments"]["b"] == ["core"]


def test_a_removed_node_leaves_the_holders(reg):
    bootstrap(reg)
    member(reg, "b")
    reg.store_assignment({"first": ["edge"], "b": ["core"]})
    reg.remove("b")
    assert reg.summary()["holders"]["core"] == []
    assert reg.summary()["roles"] == {"edge": 1}


def test_update_stores_fields_without_a_status_change(reg, events):
    bootstrap(reg)
    member(reg, "b")
    summary = reg.summary()
    history = reg.get("b")["history"]
    events.clear()

    record = reg.update("b", liveness={"missed_since": 12.0})

    assert record["liveness"] == {"missed_since": 12.0}
    assert reg.get("b") == record
    assert (record["status"], record["history"]) == ("active", history)
    assert events == [], "no status change, nothing announced"

    record = reg.update("b", reason="cordoned for a drain", cordoned=True)

    assert reg.get("b")["cordoned"] is True
    assert reg.get("b")["liveness"] == {"missed_since": 12.0}, "other fields are kept"
    assert record["history"][-1]["status"] == "active"
    assert record["history"][-1]["reason"] == "cordoned for a drain"
    assert reg.summary()["counts"] == summary["counts"]
    assert events == []


def test_update_of_an_unknown_node_is_a_clear_error(reg):
    with pytest.raises(registry.UnknownNode, match="ghost: no such node in the registry"):
        reg.update("ghost", cordoned=True)
    assert reg.node_ids() == []


# --- the lock ------------------------------------------------------------------------------------


def test_the_file_lock_serialises_threads(tmp_path):
    lock = registry.FileLock(str(tmp_path / "registry.lock"))
    counter = {"value": 0}

    def bump():
        for _ in range(20):
            with lock:
                seen = counter["value"]
                time.sleep(0.0005)
                counter["value"] = seen + 1

    threads = [threading.Thread(target=bump) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter["value"] == 100


def test_a_lock_held_too_long_is_an_error(tmp_path):
    path = str(tmp_path / "registry.lock")
    holder = registry.FileLock(path)
    waiter = registry.FileLock(path, timeout=0.05)
    with holder, pytest.raises(registry.RegistryBusy, match=r"held for over 0\.05 s"), waiter:
        pass


def test_salt_job_metadata_is_not_part_of_the_payload():
    """``salt <id> event.send tag key=value`` adds the job's __pub_* keys to the data."""
    body = payload()
    seen = []

    def verify(node_id, message, signature):
        seen.append(message)
        return True

    registry.check_registration("n", {**body, "__pub_jid": "1", "__pub_fun": "x"}, verify)
    assert seen == [registry.signing_message("n", body)]


# --- pre-registration and opening a master's registry --------------------------------------------


def test_a_preregistered_node_waits_and_its_minion_registers_later(reg, events):
    bootstrap(reg)
    details = registry.check_preregistration(
        resources={"cpu_cores": 16, "memory_bytes": 64 * 1024**3},
        preferred_role="data",
        labels={"team": "storage"},
        address="10.0.0.9",
    )
    outcome = reg.preregister("node-9", details)
    assert outcome.transitions == ["pending"]
    record = reg.get("node-9")
    assert (record["status"], record["address"], record["preferred_role"]) == (
        "pending",
        "10.0.0.9",
        "data",
    )
    assert record["resources"]["labels"] == {"team": "storage"}
    assert record["history"][0]["reason"] == "pre-registered by an operator"
    assert events[-1] == ("node-9", "pending")
    reg.register("node-9", registration(), MANUAL, never_matches)
    assert reg.get("node-9")["resources"]["cpu_cores"] == 4
    assert reg.get("node-9")["address"] == "10.0.0.9"


def test_preregistering_a_known_id_is_refused(reg):
    bootstrap(reg)
    with pytest.raises(registry.AlreadyRegistered, match="first: already registered"):
        reg.preregister("first", registry.check_preregistration())


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"resources": {"cpu_cores": 0, "memory_bytes": 1}}, "resources:cpu_cores: 0 is outside"),
        ({"preferred_role": "Data"}, "preferred_role: 'Data' is not a role name"),
        ({"labels": ["a"]}, "labels: \\['a'\\] is not a mapping"),
        ({"address": "x" * 300}, "address: longer than 253"),
    ],
)
def test_bad_preregistration_fields_are_named(given, message):
    with pytest.raises(registry.InvalidPayload, match=message):
        registry.check_preregistration(**given)


def test_open_registry_reads_the_master_config(tmp_path):
    opts = {
        "cachedir": str(tmp_path),
        "__role": "master",
        "eos": {"scale_boundaries": {"small": 3}},
    }
    reg = registry.open_registry(opts, cache=MemoryCache())
    assert reg.boundaries == {"small": 3, "medium": 4, "distributed": 7}
    assert reg.lock.path == str(tmp_path / registry.LOCK_FILE)
    with pytest.raises(registry.InvalidBoundaries, match="small: 'x'"):
        registry.open_registry({**opts, "eos": {"scale_boundaries": {"small": "x"}}})
