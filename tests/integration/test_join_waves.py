"""
Joins in waves through real daemons: a master with the README's join reactions, eight
minions started and registered together, and a ninth accepted while a wave runs.

One of the eight gets a fault in its pillar (a config dir that cannot be created), which fails
its role state: it must be rolled back and failed alone while the other seven become active,
all within two waves. The top file gives every node ``eos.roles`` and ``hold``: a node's
highstate waits while its hold file exists, which keeps a wave in its configure phase for as
long as the last test needs it there. Tests build on each other, in file order.
"""

import itertools
import time

import pytest
import salt.cache
import salt.client
import salt.utils.yaml
from saltfactories.utils import random_string

from saltext.eos.utils.cluster import wave as waves
from tests.support.cluster import SMALL_CATALOGUE
from tests.support.cluster import join_master_block
from tests.support.cluster import minion_overrides
from tests.support.cluster import read_registry
from tests.support.cluster import run_ok
from tests.support.cluster import started_together
from tests.support.cluster import wait_for
from tests.support.cluster import write_hold_state

JOIN_TIMEOUT = 300
FAULTY_CONFIG_DIR = "/proc/eos-fault"  # /proc refuses new directories, even to root
EIGHT = 8


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("join-waves")
    for name in ("states", "pillar"):
        (root / name).mkdir()
    (root / "states" / "top.sls").write_text("base:\n  '*':\n    - eos.roles\n    - hold\n")
    write_hold_state(root)
    return root


@pytest.fixture(scope="module")
def names():
    return [random_string(f"wave{number}-") for number in range(EIGHT)]


@pytest.fixture(scope="module")
def faulty(names):
    return names[-1]


def config_dir(trees, minion_id):
    return trees / "nodes" / minion_id / "eos"


def write_pillar(trees, minion_ids, faulty=()):
    """Each minion's eos:config_dir; a faulty one points where nothing can be created."""
    top = ["base:"]
    for minion_id in minion_ids:
        sls = minion_id.replace("-", "_")
        where = (
            f"{FAULTY_CONFIG_DIR}/{minion_id}"
            if minion_id in faulty
            else config_dir(trees, minion_id)
        )
        (trees / "pillar" / f"{sls}.sls").write_text(f"eos:\n  config_dir: {where}\n")
        top += [f"  '{minion_id}':", f"    - {sls}"]
    (trees / "pillar" / "top.sls").write_text("\n".join(top) + "\n")


@pytest.fixture(scope="module")
def late():
    return random_string("late-")


@pytest.fixture(scope="module")
def master(salt_factories, master_id, trees, names, faulty, late):
    write_pillar(trees, [*names, late], faulty={faulty})
    factory = salt_factories.salt_master_daemon(
        master_id,
        overrides={
            **join_master_block(),
            "file_roots": {"base": [str(trees / "states")]},
            "pillar_roots": {"base": [str(trees / "pillar")]},
            "eos": {
                "accept": {"auto": True},
                "roles": {"catalog": SMALL_CATALOGUE},
                "join": {"minion_wait": 120, "wave_seconds": 5},
            },
        },
    )
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def salt_run_cli(master):
    return master.salt_run_cli(timeout=180)


def minion_factory(master, minion_id):
    return master.salt_minion_daemon(
        minion_id, overrides=minion_overrides(master, eos={"manage_software": False})
    )


@pytest.fixture(scope="module")
def fleet_started_at(master):
    """When the fleet started: a node can join as soon as its minion starts."""
    return time.time()


@pytest.fixture(scope="module")
def fleet(master, names, fleet_started_at):
    """The eight minions, started together; each registers as a machine's first start would."""
    factories = {minion_id: minion_factory(master, minion_id) for minion_id in names}
    with started_together(factories):
        yield factories


def register_together(master, minion_ids):
    """
    ``eos_cluster.register`` on every minion in one publish, as machines racked together
    register within moments of each other (a CLI process per minion would spread them out
    by the time two cores take to start them).
    """
    with salt.client.get_local_client(mopts=master.config.copy()) as client:
        answers = client.cmd(
            list(minion_ids), "eos_cluster.register", tgt_type="list", timeout=180, full_return=True
        )
    for minion_id in minion_ids:
        answer = answers.get(minion_id) or {}
        assert not answer.get("retcode") and (answer.get("ret") or {}).get("sent"), (
            minion_id,
            answer,
        )


def settled(master, minion_ids):
    records = {node: read_registry(master).get(node) for node in minion_ids}
    if all(record and record["status"] in ("active", "failed") for record in records.values()):
        return records
    return None


def join_record(master, node_id):
    return salt.cache.factory(master.config).fetch("eos/joins", node_id) or {}


def wave_record(master, wave_id):
    return salt.cache.factory(master.config).fetch(waves.WAVES_BANK, wave_id) or {}


def role_file(trees, minion_id):
    path = config_dir(trees, minion_id) / "role.yaml"
    return salt.utils.yaml.safe_load(path.read_text()) if path.exists() else None


@pytest.fixture(scope="module")
def first_waves(master, fleet, fleet_started_at, names, event_listener):
    """
    Every node registered at once, then settled: (records, seconds from the registrations,
    when the fleet started; a node's events can precede the registrations sent here).
    """
    since = time.time()
    register_together(master, names)
    records = wait_for(lambda: settled(master, names), "the eight joins", JOIN_TIMEOUT, 1)
    return records, time.time() - since, fleet_started_at


def test_eight_nodes_registered_together_settle_in_at_most_two_waves(
    master, names, faulty, first_waves
):
    records, seconds, _ = first_waves
    statuses = {node: record["status"] for node, record in records.items()}
    assert statuses == {node: "failed" if node == faulty else "active" for node in names}
    joined = {node: join_record(master, node) for node in names}
    wave_ids = sorted({record["wave"] for record in joined.values()})
    assert 1 <= len(wave_ids) <= 2, wave_ids
    led = [wave_record(master, wave_id) for wave_id in wave_ids]
    # Every node was in exactly one wave, and each wave is done.
    assert sorted(node for wave in led for node in wave["nodes"]) == sorted(names)
    assert all(wave["status"] == "done" for wave in led), led
    spans = sorted((wave["started_at"], wave["finished_at"]) for wave in led)
    for earlier, later in itertools.pairwise(spans):
        assert earlier[1] <= later[0], spans
    print(
        f"\n{EIGHT} nodes registered together: settled in {seconds:.1f} s, "
        f"{len(led)} wave(s) of {[len(wave['nodes']) for wave in led]} nodes"
    )


def test_the_node_whose_role_state_failed_was_rolled_back_alone(
    master, trees, names, faulty, first_waves, salt_run_cli, event_listener
):
    _, _, since = first_waves
    record = read_registry(master).get(faulty)
    assert record["roles"] == []
    assert "join failed at configure" in record["history"][-1]["reason"]
    joined = join_record(master, faulty)
    assert joined["status"] == "failed" and joined["failed_step"] == "configure", joined
    assert FAULTY_CONFIG_DIR in joined["error"]
    matched = event_listener.wait_for_events(
        [(master.id, f"eos/cluster/node/{faulty}/failed")], after_time=since, timeout=30
    )
    assert matched.found_all_events
    assert next(iter(matched.matches)).data["step"] == "configure"
    # The assignment gives it nothing; the other seven hold what their role files say.
    shown = run_ok(salt_run_cli, "eos_roles.show")
    assert not shown["assignments"].get(faulty)
    assert run_ok(salt_run_cli, "eos_roles.validate")["valid"] is True
    registry_now = read_registry(master)
    for node in names:
        if node == faulty:
            continue
        written = role_file(trees, node)
        assert written is not None, f"{node} has no role.yaml"
        assert written["roles"] == registry_now.get(node)["roles"], node
    # Each of the seven got its active event.
    matched = event_listener.wait_for_events(
        [(master.id, f"eos/cluster/node/{node}/active") for node in names if node != faulty],
        after_time=since,
        timeout=30,
    )
    assert matched.found_all_events, matched.missed


def test_a_node_accepted_while_a_wave_runs_joins_the_next_wave(
    master, trees, names, faulty, late, fleet, salt_run_cli
):
    write_pillar(trees, [*names, late])
    hold = trees / f"hold-{faulty}"
    hold.touch()
    factory = minion_factory(master, late)
    try:
        run_ok(salt_run_cli, "eos_cluster.accept", faulty)
        # The retried node's wave waits in its configure phase, on its hold file.
        wait_for(
            lambda: (
                join_record(master, faulty).get("step") == "configure"
                and join_record(master, faulty).get("status") == "running"
            ),
            f"the wave of {faulty} to reach its configure phase",
            JOIN_TIMEOUT,
            0.2,
        )
        held = join_record(master, faulty)["wave"]
        factory.start()
        register_together(master, [late])
        wait_for(
            lambda: late in run_ok(salt_run_cli, "eos_join.status")["queue"],
            f"{late} to be queued behind the running wave",
            JOIN_TIMEOUT,
            0.2,
        )
        assert wave_record(master, held)["status"] == "running"
    finally:
        hold.unlink(missing_ok=True)
    try:
        records = wait_for(lambda: settled(master, [faulty, late]), "both joins", JOIN_TIMEOUT, 1)
        assert {node: record["status"] for node, record in records.items()} == {
            faulty: "active",
            late: "active",
        }
        first, second = (
            wave_record(master, held),
            wave_record(master, join_record(master, late)["wave"]),
        )
        assert first["id"] != second["id"]
        assert first["nodes"] == [faulty] and second["nodes"] == [late]
        assert first["finished_at"] <= second["started_at"]
        assert run_ok(salt_run_cli, "eos_roles.validate")["valid"] is True
        status = run_ok(salt_run_cli, "eos_join.status")
        assert status["lease"] is None and status["queue"] == []
        assert status["wave"]["id"] == second["id"] and status["wave"]["status"] == "done"
    finally:
        factory.terminate()
