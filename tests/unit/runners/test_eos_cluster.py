"""
The eos_cluster runner's public functions over a real registry in an in-memory Salt cache.

Salt's own key store is real (``salt.key`` over a temporary ``pki_dir``); only the outside
world is stood in for: the Salt cache backend, the master's event bus and the LocalClient
that publishes jobs to minions. Expectations come from the runner's documentation.
"""

import copy
import getpass
import json
import pathlib
import re
import time

import pytest
import salt.cache
import salt.client
import salt.config
import salt.crypt
import salt.utils.event
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.runners import eos_cluster
from saltext.eos.utils import master
from saltext.eos.utils.cluster import join
from saltext.eos.utils.cluster import registry
from tests.support.clock import Clock
from tests.support.fleet import Fleet
from tests.support.fleet import cluster as fleet_cluster
from tests.support.master import salt_world
from tests.support.master import seeded

GIB = 1024**3
NODE_EVENT = "eos/cluster/node/{id}/{status}"
# Where Salt keeps a minion's public key, by key state.
KEY_DIRS = {"accepted": "minions", "pending": "minions_pre", "rejected": "minions_rejected"}
RECORD_FIELDS = {
    "id",
    "status",
    "resources",
    "health",
    "preferred_role",
    "roles",
    "registered_at",
    "accepted_at",
    "last_seen",
    "pending_reason",
    "history",
}
INFO_FIELDS = {
    "cluster_id",
    "created_at",
    "node_count",
    "scale",
    "profile",
    "nodes",
    "roles",
    "assignment_version",
    "first_node",
    "accept",
    "scale_boundaries",
}

pytestmark = pytest.mark.usefixtures("master_world")


# --- the outside world --------------------------------------------------------------------


@pytest.fixture(scope="module")
def keypair():
    """(private, public) PEM of the minions' Salt keys."""
    return salt.crypt.gen_keys(2048)


@pytest.fixture(scope="module")
def stranger_keypair():
    return salt.crypt.gen_keys(2048)


@pytest.fixture
def opts(tmp_path):
    master = copy.deepcopy(salt.config.DEFAULT_MASTER_OPTS)
    master.update(
        id="master",
        __role="master",
        user=getpass.getuser(),
        cachedir=str(tmp_path / "cache"),
        pki_dir=str(tmp_path / "pki"),
        sock_dir=str(tmp_path / "sock"),
        conf_file=str(tmp_path / "master"),
    )
    pathlib.Path(master["cachedir"]).mkdir()
    for directory in (*KEY_DIRS.values(), "minions_denied"):
        (tmp_path / "pki" / directory).mkdir(parents=True)
    return master


@pytest.fixture
def configure_loader_modules(opts, context):
    return {eos_cluster: {"__opts__": opts, "__context__": context}}


# --- helpers ------------------------------------------------------------------------------


def member(cache, node_id, status="accepted"):
    reg = seeded(cache)
    reg.ensure(node_id, "its Salt key is pending")
    if status in ("accepted", "active", "failed"):
        reg.accept(node_id)
    if status in ("active", "failed"):
        reg.set_status(node_id, status, f"marked {status}")
    if status == "rejected":
        reg.reject(node_id)
    return reg.get(node_id)


def give_key(opts, node_id, state, public_key):
    pathlib.Path(opts["pki_dir"], KEY_DIRS[state], node_id).write_text(public_key)


def key_states(opts):
    """{minion id: key state} as Salt's pki_dir holds them."""
    return {
        path.name: state
        for state, directory in KEY_DIRS.items()
        for path in pathlib.Path(opts["pki_dir"], directory).iterdir()
        if not path.name.startswith(".")
    }


def check(name, critical=True, passed=True):
    return {"name": name, "critical": critical, "passed": passed, "detail": ""}


def signed_payload(node_id, private_key, sent_at_ms=None, checks=None, resources=None, **fields):
    """A registration as the minion's eos_cluster.register sends it, signed with its key."""
    checks = [check("os_supported")] if checks is None else checks
    payload = {
        "resources": resources or {"cpu_cores": 4, "memory_bytes": 8 * GIB},
        "health": {"passed": all(c["passed"] for c in checks if c["critical"]), "checks": checks},
        "preferred_role": None,
        "sent_at_ms": int(time.time() * 1000) if sent_at_ms is None else sent_at_ms,
        **fields,
    }
    payload = json.loads(json.dumps(payload))
    key = salt.crypt.PrivateKey.from_str(private_key)
    signature = key.sign(
        registry.signing_message(node_id, payload), algorithm=registry.SIGNATURE_ALGORITHM
    )
    payload["signature"] = registry.encode_signature(signature)
    return payload


def without(mapping, key):
    return {name: value for name, value in mapping.items() if name != key}


def snapshot(cache, opts):
    """Everything a refusal must leave as it was: the cache banks and the Salt keys."""
    return copy.deepcopy(cache.banks), key_states(opts)


# --- register: pending Salt keys ----------------------------------------------------------


def test_the_first_pending_key_of_a_new_cluster_is_accepted_with_its_salt_key(
    opts, cache, bus, keypair
):
    give_key(opts, "web-1", "pending", keypair[1])

    answer = eos_cluster.register("web-1", pending_key=True)

    assert answer["id"] == "web-1"
    assert answer["registered"] is True
    assert answer["status"] == "accepted"
    assert answer["transitions"] == ["pending", "accepted"]
    assert seeded(cache).get("web-1")["status"] == "accepted"
    assert key_states(opts) == {"web-1": "accepted"}
    assert bus.node_tags() == [
        NODE_EVENT.format(id="web-1", status="pending"),
        NODE_EVENT.format(id="web-1", status="accepted"),
    ]
    assert all(data["id"] == "web-1" for _, data in bus.node_events())


def test_the_accepted_event_carries_the_join_token_of_the_acceptance(opts, cache, bus, keypair):
    give_key(opts, "web-1", "pending", keypair[1])
    eos_cluster.register("web-1", pending_key=True)
    (accepted,) = [data for tag, data in bus.node_events() if tag.endswith("/accepted")]
    assert accepted["join_token"]
    assert accepted["join_token"] == seeded(cache).get("web-1")["join_token"]


def test_a_pending_key_in_a_manual_cluster_waits_for_an_operator(opts, cache, bus, keypair):
    member(cache, "first")
    give_key(opts, "web-2", "pending", keypair[1])

    answer = eos_cluster.register("web-2", pending_key=True)

    record = seeded(cache).get("web-2")
    assert (answer["registered"], answer["status"]) == (True, "pending")
    assert answer["transitions"] == ["pending"]
    assert record["status"] == "pending"
    assert "eos_cluster.accept" in record["pending_reason"]
    assert answer["comment"] == record["pending_reason"]
    assert key_states(opts) == {"web-2": "pending"}
    assert bus.node_tags() == [NODE_EVENT.format(id="web-2", status="pending")]


def test_a_pending_key_under_the_auto_policy_is_accepted_with_its_key(opts, cache, keypair):
    opts["eos"] = {"accept": "auto"}
    member(cache, "first")
    give_key(opts, "web-2", "pending", keypair[1])

    answer = eos_cluster.register("web-2", pending_key=True)

    assert answer["status"] == "accepted"
    assert seeded(cache).get("web-2")["status"] == "accepted"
    assert key_states(opts) == {"web-2": "accepted"}


def test_a_key_salt_put_back_in_pending_after_its_acceptance_is_accepted_again(
    opts, cache, bus, keypair
):
    # Two first authentications at once: the later one stores the key as pending again after
    # the policy accepted it, and its minion would wait for a key nobody accepts.
    opts["eos"] = {"accept": "auto"}
    member(cache, "first")
    give_key(opts, "web-2", "pending", keypair[1])
    eos_cluster.register("web-2", pending_key=True)
    pathlib.Path(opts["pki_dir"], KEY_DIRS["accepted"], "web-2").unlink()
    give_key(opts, "web-2", "pending", keypair[1])

    answer = eos_cluster.register("web-2", pending_key=True)

    assert answer["status"] == "accepted"
    assert answer["transitions"] == []
    assert answer["key"] == "accepted (was pending)"
    assert key_states(opts) == {"web-2": "accepted"}
    accepted = [tag for tag in bus.node_tags() if tag.endswith("/accepted")]
    assert accepted == [NODE_EVENT.format(id="web-2", status="accepted")]  # no second join


def test_a_registry_emptied_by_removal_is_not_a_new_cluster(opts, cache, keypair):
    give_key(opts, "web-1", "pending", keypair[1])
    eos_cluster.register("web-1", pending_key=True)  # the first node: accepted
    eos_cluster.remove("web-1")
    give_key(opts, "web-2", "pending", keypair[1])

    answer = eos_cluster.register("web-2", pending_key=True)

    assert answer["status"] == "pending"
    assert key_states(opts) == {"web-2": "pending"}


@pytest.mark.parametrize("key_state", [None, "accepted", "rejected"])
def test_a_pending_key_notice_without_a_pending_salt_key_is_refused(
    opts, cache, bus, context, keypair, key_state
):
    if key_state is not None:
        give_key(opts, "web-1", key_state, keypair[1])
    before = snapshot(cache, opts)

    answer = eos_cluster.register("web-1", pending_key=True)

    assert answer["id"] == "web-1"
    assert answer["registered"] is False
    assert "pending key" in answer["comment"]
    assert context["retcode"] == 1
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []


def test_a_pending_key_for_a_known_member_keeps_its_standing(opts, cache, bus, keypair):
    member(cache, "web-1", "active")
    give_key(opts, "web-1", "pending", keypair[1])  # its key rotated

    answer = eos_cluster.register("web-1", pending_key=True)

    assert answer["registered"] is True
    assert answer["status"] == "active"
    assert answer["transitions"] == []
    assert seeded(cache).get("web-1")["status"] == "active"
    assert bus.node_events() == []


# --- register: signed registrations -------------------------------------------------------


def test_a_signed_registration_is_recorded_under_the_minion_that_signed_it(opts, cache, keypair):
    member(cache, "first")
    give_key(opts, "web-2", "accepted", keypair[1])
    payload = signed_payload("web-2", keypair[0], preferred_role="data")

    answer = eos_cluster.register("web-2", payload=payload)

    record = seeded(cache).get("web-2")
    assert (answer["id"], answer["registered"], answer["status"]) == ("web-2", True, "pending")
    assert record["resources"]["cpu_cores"] == 4
    assert record["resources"]["memory_bytes"] == 8 * GIB
    assert record["health"]["passed"] is True
    assert [c["name"] for c in record["health"]["checks"]] == ["os_supported"]
    assert record["preferred_role"] == "data"


def test_an_id_inside_the_payload_is_ignored(opts, cache, keypair):
    member(cache, "first")
    give_key(opts, "web-2", "accepted", keypair[1])
    payload = {**signed_payload("web-2", keypair[0]), "id": "web-9"}

    answer = eos_cluster.register("web-2", payload=payload)

    assert answer["registered"] is True
    assert answer["id"] == "web-2"
    assert seeded(cache).node_ids() == ["first", "web-2"]


def test_salts_job_metadata_on_the_payload_does_not_spoil_the_signature(opts, cache, keypair):
    member(cache, "first")
    give_key(opts, "web-2", "accepted", keypair[1])
    payload = {
        **signed_payload("web-2", keypair[0]),
        "__pub_fun": "event.send",
        "__pub_jid": "20250101000000000000",
        "__pub_tgt": "web-2",
    }

    answer = eos_cluster.register("web-2", payload=payload)

    assert answer["registered"] is True
    assert seeded(cache).get("web-2")["resources"]["cpu_cores"] == 4


@pytest.mark.parametrize(
    "forgery",
    ["signed by another key", "signed for another minion", "key only pending", "no key"],
)
def test_a_registration_not_signed_by_the_minions_accepted_key_is_refused(
    opts, cache, bus, context, keypair, stranger_keypair, forgery
):
    member(cache, "first")
    if forgery == "signed by another key":
        give_key(opts, "web-2", "accepted", keypair[1])
        payload = signed_payload("web-2", stranger_keypair[0])
    elif forgery == "signed for another minion":
        give_key(opts, "web-2", "accepted", keypair[1])
        payload = signed_payload("web-3", keypair[0])
    elif forgery == "key only pending":
        give_key(opts, "web-2", "pending", keypair[1])
        payload = signed_payload("web-2", keypair[0])
    else:
        payload = signed_payload("web-2", keypair[0])
    before = snapshot(cache, opts)

    answer = eos_cluster.register("web-2", payload=payload)

    assert answer["registered"] is False
    assert "web-2" in answer["comment"]
    assert "signed" in answer["comment"]
    assert context["retcode"] == 1
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda payload: None, "payload"),
        (lambda payload: "resources=4", "payload"),
        (lambda payload: without(payload, "resources"), "resources"),
        (lambda payload: without(payload, "sent_at_ms"), "sent_at_ms"),
        (lambda payload: {**payload, "shell": "rm -rf /"}, "shell"),
        (lambda payload: {**payload, "preferred_role": "Data Store"}, "preferred_role"),
        (
            lambda payload: {**payload, "resources": {"cpu_cores": 0, "memory_bytes": GIB}},
            "cpu_cores",
        ),
        (lambda payload: {**payload, "padding": "x" * (80 * 1024)}, "payload"),
    ],
    ids=[
        "none",
        "not a mapping",
        "no resources",
        "no sent_at_ms",
        "unknown field",
        "bad role",
        "no cpu",
        "too large",
    ],
)
def test_a_malformed_registration_is_refused_and_writes_nothing(
    opts, cache, bus, context, keypair, damage, named
):
    member(cache, "first")
    give_key(opts, "web-2", "accepted", keypair[1])
    payload = damage(signed_payload("web-2", keypair[0]))
    before = snapshot(cache, opts)

    answer = eos_cluster.register("web-2", payload=payload)

    assert answer["registered"] is False
    assert named in answer["comment"]
    assert context["retcode"] == 1
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []


def test_the_clock_skew_bound_comes_from_the_master_config(opts, cache, context, keypair):
    opts["eos"] = {"registration": {"max_clock_skew_seconds": 10}}
    member(cache, "first")
    give_key(opts, "web-2", "accepted", keypair[1])
    ahead = int((time.time() + 60) * 1000)
    before = snapshot(cache, opts)

    answer = eos_cluster.register("web-2", payload=signed_payload("web-2", keypair[0], ahead))

    assert answer["registered"] is False
    assert "max_clock_skew_seconds" in answer["comment"]
    assert context["retcode"] == 1
    assert snapshot(cache, opts) == before


def test_health_required_by_the_policy_keeps_a_failing_node_pending(opts, cache, keypair):
    opts["eos"] = {"accept": {"auto": True}}  # require_health defaults to true in this form
    member(cache, "first")
    give_key(opts, "sick", "accepted", keypair[1])
    give_key(opts, "well", "accepted", keypair[1])
    failing = [check("os_supported"), check("ports_free", passed=False)]

    sick = eos_cluster.register("sick", payload=signed_payload("sick", keypair[0], checks=failing))
    well = eos_cluster.register("well", payload=signed_payload("well", keypair[0]))

    assert sick["status"] == "pending"
    assert "ports_free" in seeded(cache).get("sick")["pending_reason"]
    assert well["status"] == "accepted"


def test_the_policy_match_is_evaluated_on_the_grains_the_master_cached(opts, cache, keypair):
    expression = "G@os:Debian and G@eos_join:yes"
    opts["eos"] = {"accept": {"auto": True, "match": expression}}
    member(cache, "first")
    cache.store("grains", "deb", {"id": "deb", "os": "Debian", "eos_join": "yes"})
    cache.store("grains", "rhel", {"id": "rhel", "os": "RedHat", "eos_join": "yes"})
    for node_id in ("deb", "rhel", "unseen"):
        give_key(opts, node_id, "accepted", keypair[1])
        eos_cluster.register(node_id, payload=signed_payload(node_id, keypair[0]))

    reg = seeded(cache)
    assert reg.get("deb")["status"] == "accepted"
    assert reg.get("rhel")["status"] == "pending"
    assert expression in reg.get("rhel")["pending_reason"]
    assert reg.get("unseen")["status"] == "pending"  # no cached grains: nothing to match


def test_a_rejected_nodes_registration_is_ignored(opts, cache, keypair):
    rejected = member(cache, "web-2", "rejected")
    give_key(opts, "web-2", "accepted", keypair[1])

    answer = eos_cluster.register("web-2", payload=signed_payload("web-2", keypair[0]))

    assert answer["status"] == "rejected"
    assert seeded(cache).get("web-2") == rejected


def test_an_older_registration_never_replaces_a_newer_one(opts, cache, keypair):
    member(cache, "first")
    give_key(opts, "web-2", "accepted", keypair[1])
    now = int(time.time() * 1000)
    big = {"cpu_cores": 16, "memory_bytes": 64 * GIB}
    newer = signed_payload("web-2", keypair[0], sent_at_ms=now, resources=big)
    older = signed_payload("web-2", keypair[0], sent_at_ms=now - 60_000)

    eos_cluster.register("web-2", payload=newer)
    eos_cluster.register("web-2", payload=older)

    record = seeded(cache).get("web-2")
    assert record["resources"]["cpu_cores"] == 16
    assert record["registration_sent_at_ms"] == now


# --- preregister --------------------------------------------------------------------------


def test_preregister_records_a_pending_node_with_what_the_operator_gave(cache, bus):
    answer = eos_cluster.preregister(
        "node-9",
        address="10.0.0.9",
        resources={"cpu_cores": 16, "memory_bytes": 64 * GIB},
        preferred_role="data",
        labels={"rack": "r2"},
    )

    assert answer["id"] == "node-9"
    assert answer["status"] == "pending"  # even as the first node: it waits for accept
    assert answer["changed"] is True
    record = seeded(cache).get("node-9")
    assert record["status"] == "pending"
    assert record["address"] == "10.0.0.9"
    assert record["preferred_role"] == "data"
    assert record["resources"]["cpu_cores"] == 16
    assert record["resources"]["memory_bytes"] == 64 * GIB
    assert record["resources"]["labels"] == {"rack": "r2"}
    assert bus.node_tags() == [NODE_EVENT.format(id="node-9", status="pending")]


def test_a_preregistered_node_is_registered_by_its_minion_under_the_same_id(opts, cache, keypair):
    eos_cluster.preregister("node-9", address="10.0.0.9")
    give_key(opts, "node-9", "accepted", keypair[1])

    answer = eos_cluster.register("node-9", payload=signed_payload("node-9", keypair[0]))

    assert answer["registered"] is True
    assert seeded(cache).node_ids() == ["node-9"]
    record = seeded(cache).get("node-9")
    assert record["resources"]["cpu_cores"] == 4
    assert record["address"] == "10.0.0.9"


def test_preregistering_an_id_already_held_is_an_error(opts, cache, bus):
    member(cache, "node-9")
    before = snapshot(cache, opts)
    with pytest.raises(SaltInvocationError, match="already registered"):
        eos_cluster.preregister("node-9", address="10.0.0.9")
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"node_id": "node*9"}, "node id"),
        ({"node_id": "-node"}, "node id"),
        ({"node_id": ""}, "node id"),
        ({"node_id": "n", "resources": {"cpu_cores": 4}}, "memory_bytes"),
        ({"node_id": "n", "resources": "big"}, "resources"),
        ({"node_id": "n", "preferred_role": "Data!"}, "preferred_role"),
        ({"node_id": "n", "labels": ["rack"]}, "labels"),
        ({"node_id": "n", "address": ["10.0.0.9"]}, "address"),
    ],
)
def test_a_bad_preregistration_is_an_error_and_writes_nothing(opts, cache, bus, kwargs, named):
    member(cache, "first")
    before = snapshot(cache, opts)
    with pytest.raises(SaltInvocationError, match=named):
        eos_cluster.preregister(**kwargs)
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []


# --- nodes and pending --------------------------------------------------------------------


def test_nodes_lists_every_record_sorted_by_id_or_those_of_one_status(cache):
    member(cache, "m-3")
    member(cache, "a-1", "active")
    member(cache, "z-9", "pending")
    member(cache, "b-2", "rejected")
    member(cache, "c-4", "accepted")

    everyone = eos_cluster.nodes()

    assert [record["id"] for record in everyone] == ["a-1", "b-2", "c-4", "m-3", "z-9"]
    assert all(set(record) >= RECORD_FIELDS for record in everyone)
    assert [r["id"] for r in eos_cluster.nodes(status="accepted")] == ["c-4", "m-3"]
    assert [r["id"] for r in eos_cluster.nodes(status="rejected")] == ["b-2"]
    assert eos_cluster.nodes(status="failed") == []


def test_each_record_keeps_the_history_of_its_status_changes(cache):
    member(cache, "web-1", "active")
    (record,) = eos_cluster.nodes()
    assert [entry["status"] for entry in record["history"]] == ["pending", "accepted", "active"]
    assert all({"status", "at", "reason"} <= set(entry) for entry in record["history"])


def test_a_record_stored_under_an_id_that_breaks_the_rule_is_listed_but_not_taken(opts, cache, bus):
    legacy = {**registry.new_record("web*", "2024-01-01T00:00:00+00:00"), "status": "pending"}
    cache.store(registry.NODES_BANK, "web*", legacy)

    assert [record["id"] for record in eos_cluster.nodes()] == ["web*"]
    before = snapshot(cache, opts)
    for call in (eos_cluster.accept, eos_cluster.reject, eos_cluster.remove):
        with pytest.raises(SaltInvocationError, match=re.escape("node id 'web*'")):
            call("web*")
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []


@pytest.mark.parametrize("status", ["removed", "Accepted", "bogus", ""])
def test_nodes_with_a_status_that_is_not_one_is_an_error(cache, status):
    member(cache, "web-1")
    with pytest.raises(SaltInvocationError, match="status"):
        eos_cluster.nodes(status=status)


def test_pending_lists_the_waiting_nodes_with_what_each_waits_for(opts, cache, keypair):
    member(cache, "first")
    member(cache, "web-9", "rejected")
    give_key(opts, "web-2", "pending", keypair[1])
    eos_cluster.register("web-2", pending_key=True)

    waiting = eos_cluster.pending()

    assert [record["id"] for record in waiting] == ["web-2"]
    assert "eos_cluster.accept" in waiting[0]["pending_reason"]


# --- accept -------------------------------------------------------------------------------


def test_accept_makes_a_pending_node_a_member_and_accepts_its_pending_key(
    opts, cache, bus, keypair
):
    member(cache, "first")
    member(cache, "web-2", "pending")
    give_key(opts, "web-2", "pending", keypair[1])

    answer = eos_cluster.accept("web-2")

    assert answer["id"] == "web-2"
    assert answer["status"] == "accepted"
    assert answer["changed"] is True
    assert "accepted" in answer["key"]
    assert seeded(cache).get("web-2")["status"] == "accepted"
    assert key_states(opts) == {"web-2": "accepted"}
    assert bus.node_tags() == [NODE_EVENT.format(id="web-2", status="accepted")]
    (_, data) = bus.node_events()[0]
    assert data["id"] == "web-2"
    assert data["status"] == "accepted"


@pytest.mark.parametrize("key_state", ["pending", "rejected"])
def test_accept_takes_a_minion_known_only_by_its_salt_key(opts, cache, keypair, key_state):
    member(cache, "first")
    give_key(opts, "web-2", key_state, keypair[1])

    answer = eos_cluster.accept("web-2")

    assert answer["status"] == "accepted"
    assert seeded(cache).get("web-2")["status"] == "accepted"
    assert key_states(opts) == {"web-2": "accepted"}


def test_accepting_a_member_again_changes_nothing(opts, cache, bus, keypair):
    before = member(cache, "web-1")
    give_key(opts, "web-1", "accepted", keypair[1])

    answer = eos_cluster.accept("web-1")

    assert answer["status"] == "accepted"
    assert answer["changed"] is False
    assert seeded(cache).get("web-1") == before
    assert key_states(opts) == {"web-1": "accepted"}
    assert bus.node_events() == []


def test_accept_retries_a_failed_node(cache):
    member(cache, "web-1", "failed")
    assert eos_cluster.accept("web-1")["status"] == "accepted"
    assert seeded(cache).get("web-1")["status"] == "accepted"


@pytest.mark.parametrize("node_id", ["ghost", "web*", "web 1", None])
def test_accept_of_an_unknown_or_invalid_id_is_an_error_that_changes_nothing(
    opts, cache, bus, keypair, node_id
):
    member(cache, "first")
    give_key(opts, "web-1", "pending", keypair[1])
    before = snapshot(cache, opts)
    with pytest.raises(SaltInvocationError, match=re.escape(str(node_id))):
        eos_cluster.accept(node_id)
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []


def test_a_change_of_scale_asks_every_minion_to_refresh_its_pillar(cache, client):
    member(cache, "n1")
    member(cache, "n2", "pending")
    member(cache, "n3", "pending")

    eos_cluster.accept("n2")  # 2 members: single -> small
    assert client.published == [("*", "saltutil.refresh_pillar")]
    assert eos_cluster.info()["scale"] == "small"

    client.published.clear()
    eos_cluster.accept("n3")  # 3 members: still small
    assert client.published == []


def test_scale_boundaries_from_the_master_config_decide_the_refresh(opts, cache, client):
    opts["eos"] = {"scale_boundaries": {"small": 3, "medium": 5, "distributed": 9}}
    member(cache, "n1")
    member(cache, "n2", "pending")
    member(cache, "n3", "pending")

    eos_cluster.accept("n2")
    assert client.published == []
    eos_cluster.accept("n3")
    assert client.published == [("*", "saltutil.refresh_pillar")]


# --- reject -------------------------------------------------------------------------------


def test_reject_takes_a_members_roles_and_rejects_its_accepted_key(opts, cache, bus, keypair):
    member(cache, "web-1")
    member(cache, "web-2")
    seeded(cache).store_assignment({"web-1": ["core"], "web-2": ["data"]})
    give_key(opts, "web-2", "accepted", keypair[1])

    answer = eos_cluster.reject("web-2")

    assert answer["status"] == "rejected"
    assert answer["changed"] is True
    assert "rejected" in answer["key"]
    record = seeded(cache).get("web-2")
    assert record["status"] == "rejected"
    assert record["roles"] == []
    assert eos_cluster.info()["roles"] == {"core": 1}
    assert key_states(opts) == {"web-2": "rejected"}
    assert bus.node_tags() == [NODE_EVENT.format(id="web-2", status="rejected")]


def test_reject_takes_a_minion_known_only_by_its_pending_key(opts, cache, keypair):
    member(cache, "first")
    give_key(opts, "web-2", "pending", keypair[1])

    answer = eos_cluster.reject("web-2")

    assert answer["status"] == "rejected"
    assert seeded(cache).get("web-2")["status"] == "rejected"
    assert key_states(opts) == {"web-2": "rejected"}


@pytest.mark.parametrize("node_id", ["ghost", "web[12]"])
def test_reject_of_an_unknown_or_invalid_id_is_an_error_that_changes_nothing(
    opts, cache, bus, node_id
):
    member(cache, "first")
    before = snapshot(cache, opts)
    with pytest.raises(SaltInvocationError, match=re.escape(node_id)):
        eos_cluster.reject(node_id)
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []


# --- remove -------------------------------------------------------------------------------


def test_remove_deletes_the_record_and_the_salt_key(opts, cache, bus, keypair):
    member(cache, "web-1")
    last = member(cache, "web-2")
    give_key(opts, "web-1", "accepted", keypair[1])
    give_key(opts, "web-2", "accepted", keypair[1])

    answer = eos_cluster.remove("web-2")

    assert answer["id"] == "web-2"
    assert answer["removed"] is True
    assert seeded(cache).get("web-2") is None
    assert key_states(opts) == {"web-1": "accepted"}
    assert eos_cluster.info()["nodes"]["accepted"] == 1
    ((tag, data),) = bus.node_events()
    assert tag == NODE_EVENT.format(id="web-2", status="removed")
    assert data["id"] == "web-2"
    assert data["registered_at"] == last["registered_at"]


def test_remove_deletes_the_key_of_a_minion_without_a_record(opts, cache, keypair):
    member(cache, "first")
    give_key(opts, "web-2", "pending", keypair[1])

    answer = eos_cluster.remove("web-2")

    assert answer["removed"] is False
    assert key_states(opts) == {}
    assert seeded(cache).node_ids() == ["first"]


def test_remove_deletes_a_record_whose_minion_has_no_key(opts, cache):
    member(cache, "node-9", "pending")
    answer = eos_cluster.remove("node-9")
    assert answer["removed"] is True
    assert seeded(cache).node_ids() == []


def test_a_removed_node_may_join_again_as_new(opts, cache, keypair):
    member(cache, "first")
    member(cache, "web-2", "active")
    give_key(opts, "web-2", "accepted", keypair[1])
    eos_cluster.remove("web-2")

    give_key(opts, "web-2", "pending", keypair[1])
    answer = eos_cluster.register("web-2", pending_key=True)

    assert answer["status"] == "pending"
    assert [e["status"] for e in seeded(cache).get("web-2")["history"]] == ["pending"]


def test_removing_a_member_that_changes_the_scale_refreshes_every_pillar(cache, client):
    member(cache, "n1")
    member(cache, "n2")
    eos_cluster.remove("n2")  # 1 member: small -> single
    assert client.published == [("*", "saltutil.refresh_pillar")]


@pytest.mark.parametrize("node_id", ["ghost", "web?"])
def test_remove_of_an_unknown_or_invalid_id_is_an_error_that_changes_nothing(
    opts, cache, bus, keypair, node_id
):
    member(cache, "first")
    give_key(opts, "first", "accepted", keypair[1])
    before = snapshot(cache, opts)
    with pytest.raises(SaltInvocationError, match=re.escape(node_id)):
        eos_cluster.remove(node_id)
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []


# --- set_status ---------------------------------------------------------------------------


def test_set_status_marks_an_accepted_node_active(cache, bus):
    member(cache, "web-1")
    answer = eos_cluster.set_status("web-1", "active")
    assert (answer["id"], answer["status"], answer["changed"]) == ("web-1", "active", True)
    assert seeded(cache).get("web-1")["status"] == "active"
    assert bus.node_tags() == [NODE_EVENT.format(id="web-1", status="active")]


def test_set_status_keeps_the_reason_in_the_history(cache):
    member(cache, "web-1", "active")
    eos_cluster.set_status("web-1", "failed", reason="highstate failed")
    last = seeded(cache).get("web-1")["history"][-1]
    assert (last["status"], last["reason"]) == ("failed", "highstate failed")


def test_a_pending_node_must_be_accepted_before_it_is_marked(opts, cache, bus):
    member(cache, "web-1", "pending")
    before = snapshot(cache, opts)
    with pytest.raises(SaltInvocationError, match="web-1"):
        eos_cluster.set_status("web-1", "active")
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []


@pytest.mark.parametrize(
    "status",
    ["accepted", "rejected", "pending", "removed", "done", "unreachable", "down", "drained"],
)
def test_set_status_takes_only_active_or_failed(opts, cache, bus, status):
    member(cache, "web-1")
    before = snapshot(cache, opts)
    with pytest.raises(SaltInvocationError, match=repr(status)):
        eos_cluster.set_status("web-1", status)
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []


@pytest.mark.parametrize("node_id", ["ghost", "keyed-only", "web,1"])
def test_set_status_of_a_node_without_a_record_is_an_error(opts, cache, bus, keypair, node_id):
    member(cache, "first")
    give_key(opts, "keyed-only", "pending", keypair[1])
    before = snapshot(cache, opts)
    with pytest.raises(SaltInvocationError, match=node_id):
        eos_cluster.set_status(node_id, "active")
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []


# --- drain, uncordon and the hand-over of roles -------------------------------------------

FIVE = {"e1": ["edge"], "c1": ["core"], "c2": ["core"], "d1": ["data"], "a1": ["app"]}
DRAIN_FIELDS = {
    "id",
    "drained",
    "status",
    "cordoned",
    "moved",
    "failed",
    "left",
    "remaining",
    "roles_changed",
    "unplaced",
    "comment",
    "retcode",
}


@pytest.fixture
def minions(cache, bus):
    """Minions that answer as EOS minions do, in place of the silent ones."""
    fleet = Fleet()
    with salt_world(cache, bus, fleet):
        yield fleet


@pytest.fixture
def join_clock(monkeypatch):
    """The clock of the join flow the runner builds: waiting for its lease takes no real time."""
    clock = Clock(time.time())
    build = master.Master.join_flow

    def join_flow(self):
        flow = build(self)
        flow.clock, flow.sleep = clock, clock.sleep
        return flow

    monkeypatch.setattr(master.Master, "join_flow", join_flow)
    return clock


def five(cache):
    """Five active members with the roles their joins gave them."""
    fleet_cluster(seeded(cache), FIVE)


def test_drain_hands_a_nodes_roles_over_and_marks_it_drained(cache, bus, context, minions):
    five(cache)

    answer = eos_cluster.drain("c2")

    assert set(answer) == DRAIN_FIELDS
    assert (answer["id"], answer["drained"], answer["status"]) == ("c2", True, "drained")
    assert answer["roles_changed"]["a1"] == {"old": ["app"], "new": ["core"]}
    assert answer["retcode"] == context.get("retcode", 0) == 0
    assert seeded(cache).get("c2")["roles"] == []
    assert seeded(cache).get("a1")["roles"] == ["core"]
    assert minions.configured() == ["a1", "e1"]
    assert bus.node_tags() == [
        NODE_EVENT.format(id="c2", status="cordoned"),
        NODE_EVENT.format(id="c2", status="drained"),
    ]
    assert bus.tags()[-1] == NODE_EVENT.format(id="c2", status="drained")
    assert "eos/cluster/replacement/done" in bus.tags()


def test_a_drain_that_cannot_complete_exits_non_zero_leaving_the_node_cordoned(
    cache, bus, context, client
):
    five(cache)  # the minions do not answer: d1 cannot even report its datasets

    answer = eos_cluster.drain("d1")

    assert set(answer) == DRAIN_FIELDS
    assert (answer["drained"], answer["status"], answer["cordoned"]) == (False, "active", True)
    assert "d1 did not report its datasets: nothing moved" in answer["comment"]
    assert answer["retcode"] == context["retcode"] == 1, "salt-run exits non-zero"
    record = seeded(cache).get("d1")
    assert (record["status"], record["cordoned"], record["roles"]) == ("active", True, ["data"])
    assert bus.node_tags() == [NODE_EVENT.format(id="d1", status="cordoned")]


@pytest.mark.parametrize(
    ("node_id", "message"),
    [
        ("ghost", r"ghost: no such node in the registry \[not_found\]"),
        ("c*", "c\\*"),
        ("down-1", r"down-1 is down: only an active or accepted node can be drained.*\[conflict\]"),
    ],
)
def test_drain_of_an_unknown_invalid_or_down_node_is_an_error_that_changes_nothing(
    opts, cache, bus, client, node_id, message
):
    fleet_cluster(seeded(cache), {**FIVE, "down-1": []})
    seeded(cache).set_status("down-1", "unreachable", "missed probes")
    seeded(cache).set_status("down-1", "down", "unreachable too long")
    before = snapshot(cache, opts)

    with pytest.raises(SaltInvocationError, match=message):
        eos_cluster.drain(node_id)

    assert snapshot(cache, opts) == before
    assert bus.fired == []
    assert client.published == []


def test_uncordon_lifts_the_cordon_a_stopped_drain_left(cache, bus, client):
    five(cache)
    eos_cluster.drain("d1")
    bus.fired.clear()

    answer = eos_cluster.uncordon("d1")

    assert answer == {"id": "d1", "changed": True, "status": "active"}
    assert seeded(cache).get("d1")["cordoned"] is False
    assert bus.node_tags() == [NODE_EVENT.format(id="d1", status="uncordoned")]


def test_uncordon_of_a_drained_node_accepts_it_again_with_a_join_token(cache, bus, minions):
    five(cache)
    eos_cluster.drain("c2")
    bus.fired.clear()

    answer = eos_cluster.uncordon("c2")

    assert answer == {"id": "c2", "changed": True, "status": "accepted"}
    ((tag, accepted),) = bus.node_events()
    assert tag == NODE_EVENT.format(id="c2", status="accepted")
    assert accepted["join_token"] == seeded(cache).get("c2")["join_token"]
    assert accepted["cordoned"] is False


@pytest.mark.parametrize(
    ("node_id", "message"), [("ghost", r"ghost: no such node.*\[not_found\]"), ("c 2", "c 2")]
)
def test_uncordon_of_an_unknown_or_invalid_id_is_an_error(opts, cache, bus, node_id, message):
    five(cache)
    before = snapshot(cache, opts)
    with pytest.raises(SaltInvocationError, match=message):
        eos_cluster.uncordon(node_id)
    assert snapshot(cache, opts) == before
    assert bus.fired == []


def test_removing_a_drained_node_deletes_it_and_has_no_role_to_hand_over(
    opts, cache, bus, keypair, minions
):
    five(cache)
    give_key(opts, "c2", "accepted", keypair[1])
    eos_cluster.drain("c2")
    version = seeded(cache).assignment()["version"]
    minions.calls.clear()

    answer = eos_cluster.remove("c2")

    assert answer == {"id": "c2", "removed": True, "key": "deleted (was accepted)"}
    assert seeded(cache).get("c2") is None
    assert key_states(opts) == {}
    assert seeded(cache).assignment()["version"] == version
    assert minions.calls == []


def test_removing_a_role_holder_hands_its_roles_over_to_the_live_members(
    cache, bus, context, minions
):
    five(cache)

    answer = eos_cluster.remove("c2")

    assert answer["removed"] is True
    replaced = answer["replacement"]
    assert replaced["outcome"] == "done"
    assert replaced["reason"] == "removal of c2"
    assert replaced["changes"]["a1"] == {"old": ["app"], "new": ["core"]}
    assert seeded(cache).get("a1")["roles"] == ["core"]
    assert "c2" not in seeded(cache).assignment()["assignments"]
    assert minions.configured() == ["a1", "e1"]
    assert context.get("retcode", 0) == 0
    assert bus.data("eos/cluster/replacement/done")[0]["run"] == replaced["run"]


def test_a_hand_over_that_fails_is_rolled_back_and_exits_non_zero(cache, context, minions):
    five(cache)
    minions.failing_state.add("a1")

    answer = eos_cluster.reject("c2")

    assert answer["status"] == "rejected"
    assert answer["replacement"]["outcome"] == "failed"
    assert seeded(cache).get("a1")["roles"] == ["app"], "rolled back"
    assert seeded(cache).get("c2")["roles"] == [], "a rejected node gets no role back"
    assert context["retcode"] == 1


def test_a_hand_over_while_a_join_holds_the_lease_is_postponed(cache, bus, join_clock, minions):
    five(cache)
    cache.store(
        registry.CLUSTER_BANK,
        join.LEASE_KEY,
        {"node": "web-9", "run": "join-of-web-9", "expires_at": join_clock() + 3600},
    )

    answer = eos_cluster.reject("c2")

    assert answer["status"] == "rejected", "the rejection itself stands"
    assert answer["replacement"]["outcome"] == "postponed"
    assert "web-9 (run join-of-web-9) still holds the lease" in answer["replacement"]["error"]
    # Nothing moved: the assignment still names c2, for the lifecycle engine to re-place later.
    assert seeded(cache).assignment()["assignments"]["c2"] == ["core"]
    assert seeded(cache).get("a1")["roles"] == ["app"]
    assert minions.calls == []
    assert cache.fetch(registry.CLUSTER_BANK, join.LEASE_KEY)["run"] == "join-of-web-9"


# --- info ---------------------------------------------------------------------------------


def test_info_of_an_empty_registry(cache):
    summary = eos_cluster.info()
    assert set(summary) == INFO_FIELDS
    assert summary["node_count"] == 0
    assert summary["scale"] == "single"
    assert summary["nodes"] == dict.fromkeys(registry.STATUSES, 0)
    assert summary["accept"] == "manual"
    assert summary["scale_boundaries"] == {"small": 2, "medium": 4, "distributed": 7}
    assert summary["profile"]["scale"] == "single"
    assert summary["profile"]["monitoring_interval"] == 60
    assert summary["profile"]["cleanup"] == {"automatic_up_to": "emergency"}


def test_info_counts_nodes_per_status_and_members_for_the_scale(cache):
    for node_id, status in [
        ("a", "pending"),
        ("b", "accepted"),
        ("c", "active"),
        ("d", "failed"),
        ("e", "rejected"),
        ("f", "active"),
        ("g", "active"),
    ]:
        member(cache, node_id, status)
    seeded(cache).store_assignment({"b": ["core"], "c": ["data"], "f": ["data"]})

    summary = eos_cluster.info()

    assert summary["nodes"] == {
        "pending": 1,
        "accepted": 1,
        "active": 3,
        "failed": 1,
        "unreachable": 0,
        "down": 0,
        "drained": 0,
        "rejected": 1,
    }
    assert summary["node_count"] == 4  # accepted and active ones
    assert summary["scale"] == "medium"
    assert summary["profile"]["scale"] == "medium"
    assert summary["profile"]["monitoring_interval"] == 120
    assert summary["roles"] == {"core": 1, "data": 2}
    assert summary["assignment_version"] == 1
    assert summary["first_node"] == "b"
    assert summary["cluster_id"]
    assert summary["created_at"]


def test_info_shows_the_configured_policy_and_boundaries(opts, cache):
    opts["eos"] = {
        "accept": {"auto": True, "match": "G@os:Debian"},
        "scale_boundaries": {"medium": 5, "distributed": 10},
    }
    for node_id in ("a", "b", "c", "d"):
        member(cache, node_id)
    summary = eos_cluster.info()
    assert summary["scale_boundaries"] == {"small": 2, "medium": 5, "distributed": 10}
    assert summary["scale"] == "small"
    assert "auto" in summary["accept"]
    assert "G@os:Debian" in summary["accept"]


def test_info_recount_repairs_counts_that_drifted(cache):
    member(cache, "a", "pending")
    member(cache, "b")
    member(cache, "c", "active")
    seeded(cache).store_assignment({"b": ["core"], "c": ["data"]})
    drifted = cache.fetch(registry.CLUSTER_BANK, registry.SUMMARY_KEY)
    drifted["counts"].update(pending=5, accepted=0)
    drifted["roles"] = {"core": 3}
    cache.store(registry.CLUSTER_BANK, registry.SUMMARY_KEY, drifted)

    assert eos_cluster.info()["nodes"]["pending"] == 5
    recounted = eos_cluster.info(recount=True)

    assert recounted["nodes"]["pending"] == 1
    assert recounted["nodes"]["accepted"] == 1
    assert recounted["nodes"]["active"] == 1
    assert recounted["node_count"] == 2
    assert recounted["roles"] == {"core": 1, "data": 1}
    assert eos_cluster.info()["nodes"] == recounted["nodes"]  # the repair is stored


# --- configuration errors -----------------------------------------------------------------


def _calls(*names):
    every = {
        "register": lambda: eos_cluster.register("web-1", pending_key=True),
        "preregister": lambda: eos_cluster.preregister("web-2"),
        "nodes": eos_cluster.nodes,
        "accept": lambda: eos_cluster.accept("web-1"),
        "reject": lambda: eos_cluster.reject("web-1"),
        "remove": lambda: eos_cluster.remove("web-1"),
        "set_status": lambda: eos_cluster.set_status("web-1", "failed"),
        "info": eos_cluster.info,
    }
    return pytest.mark.parametrize("call", [every[name] for name in names], ids=names)


@pytest.mark.parametrize(
    ("eos", "named"),
    [
        ({"scale_boundaries": {"medium": 1}}, "eos:scale_boundaries:medium"),
        ({"scale_boundaries": {"medium": 8}}, "eos:scale_boundaries"),
        ({"registration": {"max_clock_skew_seconds": -5}}, "max_clock_skew_seconds"),
    ],
)
@_calls("register", "preregister", "nodes", "accept", "reject", "remove", "set_status", "info")
def test_a_bad_registry_setting_is_a_command_error_naming_the_key(
    opts, cache, bus, keypair, eos, named, call
):
    member(cache, "web-1")
    give_key(opts, "web-1", "pending", keypair[1])
    opts["eos"] = eos
    before = snapshot(cache, opts)
    with pytest.raises(CommandExecutionError, match=named):
        call()
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []


@pytest.mark.parametrize(
    ("accept", "named"),
    [
        ("sometimes", "eos:accept"),
        ({"auto": "yes"}, "eos:accept:auto"),
        ({"auto": True, "match": ""}, "eos:accept:match"),
        ({"auto": True, "when": "always"}, "eos:accept"),
    ],
)
@_calls("register", "info")
def test_a_bad_acceptance_policy_is_a_command_error_naming_the_key(
    opts, cache, bus, keypair, accept, named, call
):
    member(cache, "first")
    give_key(opts, "web-1", "pending", keypair[1])
    opts["eos"] = {"accept": accept}
    before = snapshot(cache, opts)
    with pytest.raises(CommandExecutionError, match=named):
        call()
    assert snapshot(cache, opts) == before
    assert bus.node_events() == []
