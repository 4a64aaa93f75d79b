"""
The cluster registry through a real salt-master, its reactor and ext_pillar, and minions.

One master and three minions for the whole module: ``alpha`` (the first node, which
bootstraps the cluster), ``bravo`` (waits for an operator) and ``charlie`` (its grain matches
the master's auto-accept policy). A fourth minion, whose Salt key is left pending, is started
for the manual-accept test. The master serves the reactor SLS with the package's ``eos``
fileserver backend. Tests build on each other, in file order.
"""

import concurrent.futures
import json
import os
import pathlib
import time

import psutil
import pytest
import salt.cache
import salt.crypt
import salt.utils.event
import salt.wheel
from saltfactories.daemons.minion import SaltMinion
from saltfactories.utils import random_string

from saltext.eos.utils.cluster import registry
from tests.support.cluster import minion_overrides
from tests.support.cluster import read_registry
from tests.support.cluster import run_ok
from tests.support.cluster import wait_for

REGISTER_TAG = "eos/cluster/register"
AUTO_GRAIN = {"eos_join": "auto"}
ACCEPT_POLICY = {"auto": True, "match": "G@eos_join:auto"}


class PendingKeyMinion(SaltMinion):
    """A minion the test does not wait for: its key stays pending until someone accepts it."""

    def get_check_events(self):
        return []


# --- the cluster ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def held_minions():
    """Ids whose pending key the test master leaves alone (salt-factories accepts the rest)."""
    return set()


@pytest.fixture(scope="module")
def master(salt_factories, master_id, held_minions):
    def accept_unless_held(factory, payload):
        if payload.get("act") == "pend" and payload["id"] not in held_minions:
            factory.salt_key_cli().run("--yes", "--accept", payload["id"])

    factory = salt_factories.salt_master_daemon(
        master_id,
        overrides={
            "fileserver_backend": ["roots", "eos"],
            "reactor": [
                {"salt/auth": ["salt://eos/reactor/node_join.sls"]},
                {REGISTER_TAG: ["salt://eos/reactor/node_join.sls"]},
            ],
            "ext_pillar": [{"eos": {}}],
            "eos": {"accept": ACCEPT_POLICY},
        },
        on_auth_event_callback=accept_unless_held,
    )
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def salt_cli(master):
    return master.salt_cli(timeout=120)


@pytest.fixture(scope="module")
def salt_run_cli(master):
    return master.salt_run_cli(timeout=120)


def record_of(master, node_id):
    return read_registry(master).get(node_id)


def registered(master, node_id, after_ms=0):
    record = record_of(master, node_id)
    if record and (record.get("registration_sent_at_ms") or 0) > after_ms:
        return record
    return None


def start_minion(master, minion_id, **overrides):
    factory = master.salt_minion_daemon(minion_id, overrides=minion_overrides(master, **overrides))
    factory.start()
    return factory


@pytest.fixture(scope="module")
def cluster(master, salt_cli):
    """alpha registers first and bootstraps the cluster; then bravo and charlie start."""
    started = []
    try:
        alpha = start_minion(master, random_string("alpha-"))
        started.append(alpha)
        run_ok(salt_cli, "eos_cluster.register", minion_tgt=alpha.id)
        wait_for(lambda: registered(master, alpha.id), "alpha's registration")
        bravo = start_minion(master, random_string("bravo-"))
        charlie = start_minion(master, random_string("charlie-"), grains=AUTO_GRAIN)
        started += [bravo, charlie]
        yield {"alpha": alpha, "bravo": bravo, "charlie": charlie}
    finally:
        for factory in reversed(started):
            factory.terminate()


def info(salt_run_cli):
    return run_ok(salt_run_cli, "eos_cluster.info")


def pillar_eos(salt_cli, minion):
    """The minion's eos pillar as the master compiles it now."""
    return run_ok(salt_cli, "pillar.items", "unmask=True", minion_tgt=minion.id)["eos"]


# --- registration, policy, pending keys ----------------------------------------------------------


def test_the_first_node_registers_with_resources_and_health(cluster, master, salt_run_cli):
    alpha = cluster["alpha"]
    (record,) = [r for r in run_ok(salt_run_cli, "eos_cluster.nodes") if r["id"] == alpha.id]
    assert record["status"] == "accepted"
    assert "first node of a new cluster" in [h["reason"] for h in record["history"]]
    resources = record["resources"]
    assert resources["cpu_cores"] == psutil.cpu_count()
    assert resources["memory_bytes"] == psutil.virtual_memory().total
    assert resources["hostname"]
    assert all(disk["storage_type"] in ("nvme", "ssd", "hdd", None) for disk in resources["disks"])
    checks = {check["name"]: check for check in record["health"]["checks"]}
    assert len(checks) == 9
    assert checks["master_reachable"]["passed"], checks["master_reachable"]
    assert checks["minion_configured"]["passed"]
    assert record["health"]["passed"] is True, record["health"]
    summary = info(salt_run_cli)
    assert summary["first_node"] == alpha.id
    assert len(summary["cluster_id"]) == 32


def test_the_auto_policy_accepts_only_matching_healthy_nodes(
    cluster, master, salt_cli, salt_run_cli, event_listener
):
    bravo, charlie = cluster["bravo"], cluster["charlie"]
    since = time.time()
    for minion in (bravo, charlie):
        result = run_ok(salt_cli, "eos_cluster.register", minion_tgt=minion.id)
        assert result["sent"] is True
    charlie_record = wait_for(
        lambda: (r := record_of(master, charlie.id)) and r["status"] == "accepted" and r,
        "charlie accepted by the policy",
    )
    assert charlie_record["history"][-1]["reason"] == (
        "eos:accept policy (auto, health passed, matches 'G@eos_join:auto')"
    )
    bravo_record = wait_for(lambda: registered(master, bravo.id), "bravo's registration")
    assert bravo_record["status"] == "pending"
    assert bravo_record["pending_reason"] == "does not match eos:accept:match 'G@eos_join:auto'"
    assert [r["id"] for r in run_ok(salt_run_cli, "eos_cluster.pending")] == [bravo.id]
    matched = event_listener.wait_for_events(
        [(master.id, f"eos/cluster/node/{charlie.id}/accepted")], after_time=since, timeout=30
    )
    assert matched.found_all_events, matched
    assert next(iter(matched.matches)).data["id"] == charlie.id


def test_manual_accept_of_a_pending_key(
    master, cluster, held_minions, salt_run_cli, salt_cli, event_listener
):
    delta_id = random_string("delta-")
    held_minions.add(delta_id)
    factory = master.salt_minion_daemon(
        delta_id, overrides=minion_overrides(master), factory_class=PendingKeyMinion
    )
    with factory.started():
        record = wait_for(lambda: record_of(master, delta_id), "delta's pending record")
        assert record["status"] == "pending"
        assert record["history"][0]["reason"] == "its Salt key is pending"
        keys = run_ok(master.salt_key_cli(), "--list", "pre")
        assert delta_id in keys["minions_pre"]
        assert delta_id in [r["id"] for r in run_ok(salt_run_cli, "eos_cluster.pending")]

        since = time.time()
        result = run_ok(salt_run_cli, "eos_cluster.accept", delta_id)
        assert result["status"] == "accepted"
        assert result["key"] == "accepted (was pending)"
        assert delta_id in run_ok(master.salt_key_cli(), "--list", "acc")["minions"]
        matched = event_listener.wait_for_events(
            [(master.id, f"eos/cluster/node/{delta_id}/accepted")], after_time=since, timeout=30
        )
        assert matched.found_all_events

        # With its key accepted the minion connects (its start event) and answers.
        started = event_listener.wait_for_events(
            [(master.id, f"salt/minion/{delta_id}/start")], after_time=since, timeout=120
        )
        assert started.found_all_events, "delta did not connect once its key was accepted"
        assert run_ok(salt_cli, "test.ping", minion_tgt=delta_id) is True


def test_a_node_preregistered_before_its_minion_exists(master, salt_run_cli):
    node_id = random_string("epsilon-")
    created = run_ok(
        salt_run_cli,
        "eos_cluster.preregister",
        node_id,
        "address=10.0.0.9",
        "resources={cpu_cores: 16, memory_bytes: 68719476736}",
        "labels={team: storage}",
        "preferred_role=data",
    )
    assert (created["status"], created["transitions"]) == ("pending", ["pending"])
    record = record_of(master, node_id)
    assert (record["address"], record["preferred_role"]) == ("10.0.0.9", "data")
    assert record["resources"]["labels"] == {"team": "storage"}
    again = salt_run_cli.run("eos_cluster.preregister", node_id)
    assert f"{node_id}: already registered (pending)" in again.stdout + again.stderr, again


def test_unknown_ids_are_clear_errors(salt_run_cli):
    for function in ("eos_cluster.accept", "eos_cluster.reject", "eos_cluster.remove"):
        ret = salt_run_cli.run(function, "no-such-node")
        assert "no-such-node: no such node" in ret.stdout + ret.stderr, ret


# --- the pillar follows the scale ----------------------------------------------------------------


def test_the_pillar_shows_the_scale_which_changes_when_a_node_is_accepted(
    cluster, master, salt_cli, salt_run_cli
):
    members = info(salt_run_cli)["node_count"]
    assert members == 3, "alpha, charlie and delta are members (earlier tests)"
    for minion in cluster.values():
        eos = pillar_eos(salt_cli, minion)
        assert (eos["scale"], eos["node_count"]) == ("small", 3)
        assert eos["thresholds"]["warning"] == 65  # the small profile
    assert pillar_eos(salt_cli, cluster["bravo"])["node_status"] == "pending"

    run_ok(salt_run_cli, "eos_cluster.accept", cluster["bravo"].id)

    for minion in cluster.values():
        eos = pillar_eos(salt_cli, minion)
        assert (eos["scale"], eos["node_count"]) == ("medium", 4), minion.id
        assert eos["thresholds"]["warning"] == 70  # the medium profile
        assert eos["profile"]["monitoring_interval"] == 120

    # The scale changed, so the master asked every minion to refresh its pillar: the analyzer
    # on each minion follows without any edit.
    def analyzer_scale(minion):
        return run_ok(salt_cli, "eos_storage.thresholds", minion_tgt=minion.id)

    for minion in cluster.values():
        limits = wait_for(
            lambda m=minion: (found := analyzer_scale(m))["scale"] == "medium" and found,
            f"{minion.id}'s analyzer to use the medium scale",
        )
        assert limits["levels"]["warning"]["percent"] == 70


# --- trust ---------------------------------------------------------------------------------------


def signed_payload(minion, **changes):
    """A registration signed with this minion's own key, as eos_cluster.register makes it."""
    payload = {
        "resources": {"cpu_cores": 1, "memory_bytes": 1024**3, "hostname": "forged"},
        "health": {"passed": True, "checks": []},
        "preferred_role": None,
        "sent_at_ms": int(time.time() * 1000),
        **changes,
    }
    key = salt.crypt.PrivateKey.from_file(os.path.join(minion.config["pki_dir"], "minion.pem"))
    message = registry.signing_message(minion.id, payload)
    signature = key.sign(message, algorithm=registry.SIGNATURE_ALGORITHM)
    return {**payload, "signature": registry.encode_signature(signature)}


def test_a_payload_naming_another_id_is_recorded_as_its_sender(cluster, master, salt_cli):
    bravo = cluster["bravo"]
    victim = random_string("victim-")
    before = record_of(master, bravo.id)["registration_sent_at_ms"]
    payload = signed_payload(bravo, id=victim)
    run_ok(salt_cli, "event.send", REGISTER_TAG, f"data={json.dumps(payload)}", minion_tgt=bravo.id)
    record = wait_for(lambda: registered(master, bravo.id, before), "bravo's new registration")
    assert record["resources"]["hostname"] == "forged"
    assert record_of(master, victim) is None
    log_text = pathlib.Path(master.config["log_file"]).read_text()
    assert f"registration sent by {bravo.id} names id '{victim}'" in log_text


def test_a_minion_cannot_register_for_another_node(cluster, master, salt_cli):
    alpha, bravo = cluster["alpha"], cluster["bravo"]
    alpha_before = record_of(master, alpha.id)
    victim = random_string("victim-")
    # 1. Unsigned data claiming another id.
    run_ok(salt_cli, "event.send", REGISTER_TAG, f"id={victim}", minion_tgt=bravo.id)
    # 2. A forged envelope through the batched-events path, which Salt forwards as it is:
    #    the data names alpha (an existing node) and a new id, with bravo's own signature.
    forged = [
        {"tag": REGISTER_TAG, "data": {"id": target, "data": signed_payload(bravo)}}
        for target in (alpha.id, victim)
    ]
    run_ok(
        salt_cli,
        "event.fire_master",
        "{}",
        "eos/test/ignored",
        f"preload={json.dumps({'events': forged})}",
        minion_tgt=bravo.id,
    )
    log_file = pathlib.Path(master.config["log_file"])
    refusals = (
        f"registration of '{bravo.id}' refused: payload: missing signature",
        f"registration of '{alpha.id}' refused: payload:signature: not signed by {alpha.id}'s",
        f"registration of '{victim}' refused: payload:signature: not signed by {victim}'s",
    )
    wait_for(
        lambda: all(line in log_file.read_text() for line in refusals),
        "the master to refuse the forged registrations",
    )
    assert record_of(master, victim) is None
    assert record_of(master, alpha.id) == alpha_before


def test_reject_and_remove_act_on_the_salt_key(master, salt_run_cli, event_listener):
    node_id = random_string("gamma-")
    with salt.wheel.WheelClient(master.config) as wheel:
        wheel.cmd("key.gen_accept", [node_id], print_event=False)
        wheel.mminion.destroy()
    since = time.time()
    rejected = run_ok(salt_run_cli, "eos_cluster.reject", node_id)
    assert (rejected["status"], rejected["key"]) == ("rejected", "rejected (was accepted)")
    assert node_id in run_ok(master.salt_key_cli(), "--list", "rej")["minions_rejected"]
    removed = run_ok(salt_run_cli, "eos_cluster.remove", node_id)
    assert removed == {"id": node_id, "removed": True, "key": "deleted (was rejected)"}
    assert record_of(master, node_id) is None
    keys = run_ok(master.salt_key_cli(), "--list", "all")
    assert node_id not in [key for listed in keys.values() for key in listed]
    statuses = ("pending", "rejected", "removed")
    matched = event_listener.wait_for_events(
        [(master.id, f"eos/cluster/node/{node_id}/{status}") for status in statuses],
        after_time=since,
        timeout=30,
    )
    assert matched.found_all_events, matched


# --- many at once, and a restart -----------------------------------------------------------------


def test_twenty_registrations_at_once_are_all_recorded(master, cluster):
    """Twenty nodes with accepted keys register at the same moment."""
    node_ids = [random_string("burst-") for _ in range(20)]
    with salt.wheel.WheelClient(master.config) as wheel:
        keys = {
            node_id: wheel.cmd("key.gen_accept", [node_id], print_event=False)
            for node_id in node_ids
        }
        wheel.mminion.destroy()  # made by the client's first cmd, not closed by it
    envelopes = []
    for index, node_id in enumerate(node_ids):
        payload = {
            "resources": {"cpu_cores": index + 1, "memory_bytes": 1024**3},
            "health": {"passed": True, "checks": []},
            "sent_at_ms": int(time.time() * 1000),
        }
        message = registry.signing_message(node_id, payload)
        key = salt.crypt.PrivateKey.from_str(keys[node_id]["priv"])
        payload["signature"] = registry.encode_signature(
            key.sign(message, algorithm=registry.SIGNATURE_ALGORITHM)
        )
        # What the master puts on its bus for an event.send from that minion.
        envelopes.append(
            {"id": node_id, "tag": REGISTER_TAG, "data": payload, "cmd": "_minion_event"}
        )
    pending_before = read_registry(master).summary()["counts"]["pending"]

    def fire(envelope):
        with salt.utils.event.get_master_event(
            master.config, master.config["sock_dir"], listen=False
        ) as event:
            return event.fire_event(envelope, REGISTER_TAG)

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        assert all(pool.map(fire, envelopes))

    def all_recorded():
        records = [record_of(master, node_id) for node_id in node_ids]
        return all(r and r["resources"] for r in records) and records

    records = wait_for(all_recorded, "twenty records", timeout=90)
    assert sorted(r["resources"]["cpu_cores"] for r in records) == list(range(1, 21))
    assert {r["status"] for r in records} == {"pending"}  # no grain matches the policy
    counts = read_registry(master).summary()["counts"]
    assert counts["pending"] == pending_before + 20


def test_a_master_restart_keeps_every_record(master, cluster, salt_run_cli, salt_cli):
    nodes_before = run_ok(salt_run_cli, "eos_cluster.nodes")
    info_before = info(salt_run_cli)
    assert len(nodes_before) >= 25
    master.terminate()
    master.start()
    assert run_ok(salt_run_cli, "eos_cluster.nodes") == nodes_before
    assert info(salt_run_cli) == info_before
    alpha = cluster["alpha"]
    quick_cli = master.salt_cli(timeout=10)
    wait_for(
        lambda: quick_cli.run("test.ping", minion_tgt=alpha.id).data is True,
        "alpha to reconnect",
        timeout=120,
    )
    assert pillar_eos(salt_cli, alpha)["scale"] == "medium"


# --- role placement over the registry -------------------------------------------------------


def test_roles_calculate_apply_and_the_pillar_shows_them(
    master, cluster, salt_run_cli, salt_cli, event_listener
):
    members = {
        record["id"]
        for status in ("accepted", "active")
        for record in run_ok(salt_run_cli, "eos_cluster.nodes", f"status={status}")
    }
    stored_before = run_ok(salt_run_cli, "eos_roles.show")["version"]

    plan = run_ok(salt_run_cli, "eos_roles.calculate")
    assert set(plan["assignments"]) == members
    assert plan["version"] == stored_before + 1
    # calculate changes nothing
    assert run_ok(salt_run_cli, "eos_roles.show")["version"] == stored_before

    since = time.time()
    applied = run_ok(salt_run_cli, "eos_roles.apply")
    assert applied["version"] == stored_before + 1
    # The event bus stamps what it fires; the runner's return is not that dict.
    assert not [key for key in applied if key.startswith("_")], applied
    event_listener.wait_for_events([(master.id, "eos/roles/changed")], after_time=since)
    stored = run_ok(salt_run_cli, "eos_roles.show")
    assert stored["assignments"] == plan["assignments"]

    alpha = cluster["alpha"]
    assert pillar_eos(salt_cli, alpha)["roles"] == plan["assignments"][alpha.id]
    why = run_ok(salt_run_cli, "eos_roles.explain", alpha.id)
    assert why["roles"] == plan["assignments"][alpha.id]
    assert "valid" in run_ok(salt_run_cli, "eos_roles.validate")

    # A second calculation over the same cluster is stable: nobody changes role.
    again = run_ok(salt_run_cli, "eos_roles.calculate")
    assert again["churn"] == 0
    assert again["assignments"] == plan["assignments"]


def test_roles_what_if_over_inline_nodes_and_bad_input(salt_run_cli):
    nodes = [
        {
            "id": f"w{i}",
            "cpu": 8,
            "memory_gb": 32,
            "disk_gb": 1000,
            "storage_type": "ssd",
            "datacenter": "dc1",
            "rack": f"r{i % 2}",
        }
        for i in range(3)
    ]
    plan = run_ok(salt_run_cli, "eos_roles.calculate", f"nodes={json.dumps(nodes)}")
    assert sorted(role for roles in plan["assignments"].values() for role in roles) == [
        "core",
        "data",
        "edge",
    ]
    bad = [{**nodes[0], "memory_gb": -2}]
    ret = salt_run_cli.run("eos_roles.calculate", f"nodes={json.dumps(bad)}")
    assert "memory_gb -2 must be >= 0" in str(ret.data) + ret.stdout
