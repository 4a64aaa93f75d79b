"""
Adding nodes end to end: a real master with the package's reactor, orchestration, role states
and ext_pillar, and three minions that join one after another.

Each minion registers itself (as a node's startup would); the master accepts it by policy,
the reactor starts its join (``eos_join.join``), and highstate (top file ``'*': [eos.roles]``)
configures it. The minions keep their EOS files apart through ``eos:config_dir``, given by
pillar. The third node first joins with a fault in its pillar (a config dir that cannot be
created), which fails its role state: the join is rolled back, then retried after the fix.
Tests build on each other, in file order.
"""

import concurrent.futures
import pathlib
import time

import pytest
import salt.utils.yaml
from saltfactories.utils import random_string

from tests.support.cluster import SMALL_CATALOGUE
from tests.support.cluster import join_master_block
from tests.support.cluster import minion_overrides
from tests.support.cluster import read_registry
from tests.support.cluster import run_ok
from tests.support.cluster import wait_for

JOIN_TIMEOUT = 240
FORGE_MODULES = pathlib.Path(__file__).parent / "files"
# /proc refuses new directories, even to root: the role state writing role.yaml fails.
FAULTY_CONFIG_DIR = "/proc/eos-fault"


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("node-addition")
    states, pillar = root / "states", root / "pillar"
    states.mkdir()
    pillar.mkdir()
    (states / "top.sls").write_text("base:\n  '*':\n    - eos.roles\n")
    return {"root": root, "states": states, "pillar": pillar}


@pytest.fixture(scope="module")
def names():
    return {
        name: random_string(f"{name}-") for name in ("alpha", "bravo", "charlie", "delta", "echo")
    }


def config_dir(trees, minion_id):
    return trees["root"] / "nodes" / minion_id / "eos"


def write_pillar(trees, names, faulty=()):
    """Each minion's eos:config_dir; a faulty one points where nothing can be created."""
    top = ["base:"]
    for minion_id in names.values():
        sls = minion_id.replace("-", "_")
        where = (
            f"{FAULTY_CONFIG_DIR}/{minion_id}"
            if minion_id in faulty
            else config_dir(trees, minion_id)
        )
        (trees["pillar"] / f"{sls}.sls").write_text(f"eos:\n  config_dir: {where}\n")
        top += [f"  '{minion_id}':", f"    - {sls}"]
    (trees["pillar"] / "top.sls").write_text("\n".join(top) + "\n")


@pytest.fixture(scope="module")
def master(salt_factories, master_id, trees, names):
    write_pillar(trees, names)
    factory = salt_factories.salt_master_daemon(
        master_id,
        overrides={
            **join_master_block(),
            "file_roots": {"base": [str(trees["states"])]},
            "pillar_roots": {"base": [str(trees["pillar"])]},
            "eos": {
                "accept": {"auto": True},
                "roles": {"catalog": SMALL_CATALOGUE},
                "join": {"minion_wait": 120},
            },
        },
    )
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def salt_cli(master):
    return master.salt_cli(timeout=180)


@pytest.fixture(scope="module")
def salt_run_cli(master):
    return master.salt_run_cli(timeout=180)


@pytest.fixture(scope="module")
def minions(master):
    started = {}
    yield started
    for factory in reversed(list(started.values())):
        factory.terminate()


def join(master, minions, salt_cli, name, minion_id):
    """Start a minion and register it, as a new machine would on its first start."""
    factory = master.salt_minion_daemon(
        minion_id,
        # eos_forge: a member that sends events in another's name, as any minion can.
        overrides=minion_overrides(
            master, eos={"manage_software": False}, module_dirs=[str(FORGE_MODULES)]
        ),
    )
    factory.start()
    minions[name] = factory
    run_ok(salt_cli, "eos_cluster.register", minion_tgt=minion_id)
    return factory


def settled(master, minion_id):
    record = read_registry(master).get(minion_id)
    if record and record["status"] in ("active", "failed"):
        return record
    return None


def wait_settled(master, minion_id):
    return wait_for(lambda: settled(master, minion_id), f"the join of {minion_id}", JOIN_TIMEOUT)


def role_file(trees, minion_id):
    path = config_dir(trees, minion_id) / "role.yaml"
    return salt.utils.yaml.safe_load(path.read_text()) if path.exists() else None


def ask(salt_cli, minion_id, *args):
    """A read-only query, asked again when a busy minion (two cores, five minions) misses it."""
    for _ in range(3):
        ret = salt_cli.run(*args, minion_tgt=minion_id)
        if ret.returncode == 0:
            return ret.data
        time.sleep(2)
    pytest.fail(f"{minion_id} did not answer {args}: {ret}")


def pillar_eos(salt_cli, minion_id):
    return ask(salt_cli, minion_id, "pillar.items", "unmask=True")["eos"]


def eos_beacon(salt_cli, minion_id):
    beacons = ask(salt_cli, minion_id, "beacons.list", "return_yaml=False")
    options = {}
    for item in beacons.get("eos_storage") or []:
        options.update(item)
    return options


def assert_node_matches(master, trees, salt_cli, minion_id):
    """role.yaml, pillar, registry and beacon agree on this node."""
    record = read_registry(master).get(minion_id)
    pillar = pillar_eos(salt_cli, minion_id)
    written = role_file(trees, minion_id)
    assert written is not None, f"{minion_id} has no role.yaml"
    assert written["roles"] == pillar["roles"] == record["roles"]
    assert written["scale"] == pillar["scale"]
    assert written["cluster_id"] == pillar["cluster_id"]
    assert eos_beacon(salt_cli, minion_id)["interval"] == pillar["profile"]["monitoring_interval"]
    return written


def test_the_first_node_becomes_a_monolith(master, minions, names, trees, salt_cli):
    alpha = names["alpha"]
    join(master, minions, salt_cli, "alpha", alpha)
    record = wait_settled(master, alpha)
    assert record["status"] == "active", record["history"]
    assert record["roles"] == ["monolith"]
    written = assert_node_matches(master, trees, salt_cli, alpha)
    assert written["scale"] == "single"


def test_the_second_node_splits_the_monolith_and_the_scale_becomes_small(
    master, minions, names, trees, salt_cli, salt_run_cli
):
    alpha, bravo = names["alpha"], names["bravo"]
    join(master, minions, salt_cli, "bravo", bravo)
    record = wait_settled(master, bravo)
    assert record["status"] == "active", record["history"]
    roles = {node: read_registry(master).get(node)["roles"] for node in (alpha, bravo)}
    assert sorted(role for node_roles in roles.values() for role in node_roles) == ["core", "edge"]
    for node in (alpha, bravo):
        assert assert_node_matches(master, trees, salt_cli, node)["scale"] == "small"
    status = run_ok(salt_run_cli, "eos_join.status", bravo)
    assert status["status"] == "active"
    assert status["done"] == ["start", "health", "checkpoint", "assign", "configure", "finish"]


def test_a_failing_role_state_on_the_third_node_is_rolled_back(
    master, minions, names, trees, salt_cli, salt_run_cli, event_listener
):
    alpha, bravo, charlie = names["alpha"], names["bravo"], names["charlie"]
    before = {node: role_file(trees, node) for node in (alpha, bravo)}
    mtimes = {node: (config_dir(trees, node) / "role.yaml").stat().st_mtime for node in before}
    assignment = run_ok(salt_run_cli, "eos_roles.show")
    write_pillar(trees, names, faulty={charlie})

    since = time.time()
    join(master, minions, salt_cli, "charlie", charlie)
    record = wait_settled(master, charlie)
    assert record["status"] == "failed"
    assert record["roles"] == []
    assert "join failed at configure" in record["history"][-1]["reason"]

    matched = event_listener.wait_for_events(
        [(master.id, f"eos/cluster/node/{charlie}/failed")], after_time=since, timeout=30
    )
    assert matched.found_all_events
    failed = next(iter(matched.matches)).data
    assert failed["step"] == "configure"
    assert FAULTY_CONFIG_DIR in failed["error"]

    # The previous assignment is back; the other nodes were not touched.
    restored = run_ok(salt_run_cli, "eos_roles.show")
    assert restored["assignments"] == assignment["assignments"]
    assert restored["version"] > assignment["version"]
    for node in (alpha, bravo):
        assert role_file(trees, node) == before[node]
        assert (config_dir(trees, node) / "role.yaml").stat().st_mtime == mtimes[node]
    info = run_ok(salt_run_cli, "eos_cluster.info")
    assert info["node_count"] == 2
    assert run_ok(salt_run_cli, "eos_join.status")["lease"] is None


def test_the_third_node_joins_once_the_fault_is_fixed(
    master, minions, names, trees, salt_cli, salt_run_cli
):
    charlie = names["charlie"]
    write_pillar(trees, names)
    run_ok(salt_run_cli, "eos_cluster.accept", charlie)
    record = wait_for(
        lambda: (settled(master, charlie) or {}).get("status") == "active",
        f"{charlie} to become active",
        JOIN_TIMEOUT,
    )
    record = read_registry(master).get(charlie)
    assert record["roles"] == ["data"]
    roles = []
    for node in (names["alpha"], names["bravo"], charlie):
        written = assert_node_matches(master, trees, salt_cli, node)
        assert written["scale"] == "small"
        roles += written["roles"]
    assert sorted(roles) == ["core", "data", "edge"]
    assert run_ok(salt_run_cli, "eos_roles.validate")["valid"] is True


def test_running_the_orchestration_again_changes_nothing(
    master, names, trees, salt_run_cli, salt_cli
):
    charlie = names["charlie"]
    before = role_file(trees, charlie)
    shown = run_ok(salt_run_cli, "eos_roles.show")
    ret = salt_run_cli.run(
        "state.orchestrate",
        "eos.orchestrate.node_addition",
        f'pillar={{"eos_join": {{"node": "{charlie}"}}}}',
    )
    assert ret.returncode == 0, ret
    assert read_registry(master).get(charlie)["status"] == "active"
    assert run_ok(salt_run_cli, "eos_roles.show")["assignments"] == shown["assignments"]
    assert role_file(trees, charlie) == before


def test_forged_accepted_events_for_an_active_node_change_nothing(
    master, names, trees, salt_run_cli, salt_cli, event_listener
):
    alpha, charlie = names["alpha"], names["charlie"]
    checkpoints = {
        node: [c["id"] for c in ask(salt_cli, node, "eos_cluster.checkpoints")]
        for node in (alpha, names["bravo"], charlie)
    }
    shown = run_ok(salt_run_cli, "eos_roles.show")
    mtime = (config_dir(trees, charlie) / "role.yaml").stat().st_mtime
    since = time.time()
    tag = f"eos/cluster/node/{charlie}/accepted"
    forged = [
        {"tag": tag, "data": {"id": charlie, "status": "accepted"}},
        {"tag": tag, "data": {"id": charlie, "status": "accepted", "join_token": "guessed"}},
    ] * 5  # ten, as many as the checkpoints a node keeps

    ret = salt_cli.run("eos_forge.batch", events=forged, minion_tgt=alpha)
    assert ret.returncode == 0, ret

    # Each forged event starts a join, which must stop before it queues the node.
    wait_for(
        lambda: len(reactor_joins(event_listener, master, since)) >= len(forged),
        "the reactor's joins of the forged events",
        timeout=120,
        interval=1,
    )
    assert read_registry(master).get(charlie)["status"] == "active"
    assert run_ok(salt_run_cli, "eos_roles.show") == shown
    assert (config_dir(trees, charlie) / "role.yaml").stat().st_mtime == mtime
    for node, ids in checkpoints.items():
        assert [c["id"] for c in ask(salt_cli, node, "eos_cluster.checkpoints")] == ids, node
    assert run_ok(salt_run_cli, "eos_join.status")["lease"] is None


def reactor_joins(event_listener, master, since):
    """The returns of the joins the reactor started since ``since``."""
    events = event_listener.get_events([(master.id, "salt/run/*/ret")], after_time=since)
    return [event.data for event in events if event.data.get("fun") == "runner.eos_join.join"]


def test_two_nodes_joining_together_join_in_one_wave_and_every_node_becomes_medium(
    master, minions, names, trees, salt_cli, salt_run_cli
):
    delta, echo = names["delta"], names["echo"]
    for name in ("delta", "echo"):
        factory = master.salt_minion_daemon(
            names[name], overrides=minion_overrides(master, eos={"manage_software": False})
        )
        factory.start()
        minions[name] = factory

    # Both register at once, as machines booted together would.
    # One CLI each: a CLI object runs one process at a time.
    def register(node):
        return master.salt_cli(timeout=180).run("eos_cluster.register", minion_tgt=node)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for ret in pool.map(register, (delta, echo)):
            assert ret.returncode == 0, ret
    for node in (delta, echo):
        record = wait_settled(master, node)
        assert record["status"] == "active", record["history"]
    joins = {node: run_ok(salt_run_cli, "eos_join.status", node) for node in (delta, echo)}
    # Registered together, well within the gathering window: one wave took both.
    assert joins[delta]["wave"] == joins[echo]["wave"], joins
    wave = run_ok(salt_run_cli, "eos_join.status")["wave"]
    assert wave["id"] == joins[delta]["wave"] and wave["status"] == "done", wave
    assert sorted(wave["active"]) == sorted((delta, echo)) and wave["failed"] == {}
    roles = []
    for node in names.values():
        written = assert_node_matches(master, trees, salt_cli, node)
        assert written["scale"] == "medium"
        roles += written["roles"]
    assert sorted(roles) == ["app", "core", "core", "data", "edge"]
    assert run_ok(salt_run_cli, "eos_join.status")["lease"] is None


def test_an_unknown_node_fails_the_orchestration_clearly(salt_run_cli):
    ret = salt_run_cli.run(
        "state.orchestrate",
        "eos.orchestrate.node_addition",
        'pillar={"eos_join": {"node": "no-such-node"}}',
    )
    assert ret.returncode != 0
    assert "no-such-node: no such node in the registry" in ret.stdout
