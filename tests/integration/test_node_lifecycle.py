"""
Nodes that fail, return, drain and leave: a real master running the README's master block
(the ``eos_lifecycle`` engine, the join reactor, orchestration, role states and ext_pillar)
and four minions that join through the join flow.

The catalogue gives a data node to every second node, so four nodes are an edge, a core and
two data nodes. The detector's timings are cut to seconds. The minions keep their EOS files
and datasets apart (``eos:config_dir`` by pillar, ``eos:dataset:root`` by minion config) and
move datasets with the local transport: they share this host. Tests build on each other, in
file order; each prints what it measured.
"""

import concurrent.futures
import pathlib
import signal
import time

import psutil
import pytest
import salt.cache
from saltfactories.utils import random_string

from saltext.eos.utils import datasets
from tests.support.cluster import SMALL_CATALOGUE
from tests.support.cluster import join_master_block
from tests.support.cluster import minion_overrides
from tests.support.cluster import read_registry
from tests.support.cluster import run_ok
from tests.support.cluster import started_together
from tests.support.cluster import wait_for
from tests.support.datasets import MB
from tests.support.datasets import tree_digest
from tests.support.datasets import write_dataset

GRACE = 10
DOWN_AFTER = 8
INTERVAL = 3
PROBE_TIMEOUT = 2
# The documented bound is grace + one interval + one probe timeout; the event then has to
# reach the test's listener, and a pass also reads and writes the registry.
DETECTION_BOUND = GRACE + INTERVAL + PROBE_TIMEOUT
SLACK = 3
JOIN_TIMEOUT = 240
SHARE = 60 * MB
# A data node for every second node: four nodes are an edge, a core and two data nodes.
CATALOGUE = {
    **SMALL_CATALOGUE,
    "data": {**SMALL_CATALOGUE["data"], "count": {"min": 1, "share": 0.5}},
}
DATASETS = {"core-set": {"role": "core"}, "logs": {}, "media": {}}

pytestmark = [pytest.mark.skip_if_binaries_missing("rsync")]


@pytest.fixture(scope="module")
def names():
    return {name: random_string(f"{name}-") for name in ("alpha", "bravo", "charlie", "delta")}


@pytest.fixture(scope="module")
def trees(tmp_path_factory, names):
    root = tmp_path_factory.mktemp("lifecycle")
    states, pillar = root / "states", root / "pillar"
    states.mkdir()
    pillar.mkdir()
    (states / "top.sls").write_text("base:\n  '*':\n    - eos.roles\n")
    top = ["base:"]
    for minion_id in names.values():
        sls = minion_id.replace("-", "_")
        # manage_software by pillar, not minion config: a command's pillar then overrides it
        # to render the edge's haproxy configuration (config.get reads minion config first).
        (pillar / f"{sls}.sls").write_text(
            f"eos:\n  config_dir: {root / 'nodes' / minion_id / 'eos'}\n  manage_software: false\n"
        )
        top += [f"  '{minion_id}':", f"    - {sls}"]
    (pillar / "top.sls").write_text("\n".join(top) + "\n")
    return {"root": root, "states": states, "pillar": pillar}


@pytest.fixture(scope="module")
def master(salt_factories, master_id, trees):
    factory = salt_factories.salt_master_daemon(
        master_id,
        # The README's block: its engine runs the detector, its reactor the joins.
        overrides={
            **join_master_block(),
            "file_roots": {"base": [str(trees["states"])]},
            "pillar_roots": {"base": [str(trees["pillar"])]},
            "eos": {
                "accept": {"auto": True},
                "roles": {"catalog": CATALOGUE},
                "join": {"minion_wait": 120},
                "lifecycle": {
                    "grace_seconds": GRACE,
                    "down_after_seconds": DOWN_AFTER,
                    "probe_interval_seconds": INTERVAL,
                    "probe_timeout_seconds": PROBE_TIMEOUT,
                },
                "datasets": DATASETS,
                "rebalance": {"transport": "local"},
            },
        },
    )
    with factory.started():
        yield factory


def dataset_root(trees, minion_id):
    return trees["root"] / "datasets" / minion_id


@pytest.fixture(scope="module")
def minions(master, names, trees):
    """{minion id: factory}, started together and registered together, as booted machines."""
    factories = {}
    for minion_id in names.values():
        root = dataset_root(trees, minion_id)
        root.mkdir(parents=True)
        factories[minion_id] = master.salt_minion_daemon(
            minion_id,
            overrides=minion_overrides(
                master,
                # Reconnect at once after a restart, not after a random 1-11 s.
                recon_randomize=False,
                eos={"dataset": {"root": str(root), "capacity_bytes": SHARE}},
            ),
        )
    with started_together(factories):
        yield factories


def register(master, minion_id):
    # One CLI each: a CLI object runs one process at a time.
    return master.salt_cli(timeout=180).run("eos_cluster.register", minion_tgt=minion_id)


@pytest.fixture(scope="module")
def cluster(master, minions):
    """Every minion registered at once and joined; {role: [ids]} once all four are active."""
    with concurrent.futures.ThreadPoolExecutor(len(minions)) as pool:
        for ret in pool.map(lambda minion_id: register(master, minion_id), minions):
            assert ret.returncode == 0, ret
    deadline = time.monotonic() + JOIN_TIMEOUT * len(minions)
    while time.monotonic() < deadline:
        statuses = {node: status(master, node) for node in minions}
        if all(value in ("active", "failed") for value in statuses.values()):
            break
        time.sleep(1)
    records = {node: read_registry(master).get(node) or {} for node in minions}
    for node, record in records.items():
        assert record.get("status") == "active", (node, record.get("history"), records)
    return holders_by_role(master)


def status(master, minion_id):
    record = read_registry(master).get(minion_id)
    return record["status"] if record else None


def holders_by_role(master):
    by_role = {}
    for record in read_registry(master).records():
        for role in record.get("roles") or []:
            by_role.setdefault(role, []).append(record["id"])
    return {role: sorted(ids) for role, ids in by_role.items()}


def only(ids):
    (single,) = ids
    return single


def node_events(event_listener, master, minion_id, since):
    events = event_listener.get_events(
        [(master.id, f"eos/cluster/node/{minion_id}/*")], after_time=since
    )
    # In the order they were fired: the engine and the join's runner fire from two processes.
    return [event.tag.rsplit("/", 1)[-1] for event in sorted(events, key=lambda e: e.stamp)]


def wait_event(event_listener, master, tag, since, timeout):
    matched = event_listener.wait_for_events([(master.id, tag)], after_time=since, timeout=timeout)
    assert matched.found_all_events, f"no {tag} within {timeout} s"
    return next(iter(matched.matches))


def haproxy_servers(salt_cli, edge):
    """The core servers the edge's haproxy would be given now, as the role state renders it."""
    ret = salt_cli.run(
        "state.show_sls",
        "eos.roles.edge",
        'pillar={"eos": {"manage_software": true}}',
        minion_tgt=edge,
    )
    assert ret.returncode == 0, ret
    arguments = ret.data["eos_edge_haproxy_config"]["file"]
    (context,) = [arg["context"] for arg in arguments if isinstance(arg, dict) and "context" in arg]
    return [server["name"] for server in context["servers"]]


def crash(factory):
    """SIGKILL the minion's processes, as a crash or a power cut would; returns when."""
    processes = [psutil.Process(factory.pid), *psutil.Process(factory.pid).children(True)]
    killed_at = time.time()
    for process in processes:
        process.kill()
    psutil.wait_procs(processes, timeout=10)
    factory.terminate()  # the factory's own bookkeeping: the processes are gone already
    return killed_at


def pause(factory):
    """SIGSTOP the minion's processes: it is alive but answers nothing until resumed."""
    processes = [psutil.Process(factory.pid), *psutil.Process(factory.pid).children(True)]
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    return processes


def resume(processes):
    for process in processes:
        if process.is_running():
            process.send_signal(signal.SIGCONT)


def liveness(master, minion_id):
    return read_registry(master).get(minion_id).get("liveness") or {}


def test_four_minions_join_as_an_edge_a_core_and_two_data_nodes(cluster, salt_cli):
    assert {role: len(ids) for role, ids in cluster.items()} == {"edge": 1, "core": 1, "data": 2}
    # The edge's upstream is the core node.
    assert haproxy_servers(salt_cli, only(cluster["edge"])) == cluster["core"]


def test_a_minion_stopped_for_less_than_the_grace_period_changes_nothing(
    master, minions, cluster, salt_run_cli, event_listener
):
    edge = only(cluster["edge"])
    shown = run_ok(salt_run_cli, "eos_roles.show")
    since = time.time()
    stopped = pause(minions[edge])
    try:
        # The detector notices the silence (it counts the missed probes)...
        noticed = wait_for(
            lambda: liveness(master, edge).get("missed_probes", 0) >= 1,
            "a missed probe",
            timeout=GRACE - 1,
        )
        assert noticed
        time.sleep(max(0.0, since + GRACE / 2 - time.time()))
    finally:
        resume(stopped)
    paused_for = time.time() - since
    # ...and forgets it once the node answers again.
    wait_for(
        lambda: liveness(master, edge).get("missed_since") is None,
        "the detector to see the node answer again",
        timeout=2 * INTERVAL + PROBE_TIMEOUT + SLACK,
    )
    # Wait out the grace period from the start of the pause: nothing may fire in it.
    time.sleep(max(0.0, since + GRACE + INTERVAL - time.time()))
    assert node_events(event_listener, master, edge, since) == []
    assert not event_listener.get_events(
        [(master.id, "eos/cluster/replacement/*"), (master.id, "eos/roles/changed")],
        after_time=since,
    )
    assert status(master, edge) == "active"
    assert run_ok(salt_run_cli, "eos_roles.show") == shown
    print(f"\nstopped {paused_for:.1f} s (grace {GRACE} s): no event, no role change")


@pytest.fixture(scope="module")
def core_failure(master, minions, cluster, trees, salt_run_cli, event_listener):
    """The core node (holding a dataset of role core) crashed: the times of what followed."""
    core = only(cluster["core"])
    write_dataset(dataset_root(trees, core) / "core-set", 1)
    placed = run_ok(salt_run_cli, "eos_storage.report")
    assert set(placed["nodes"][core]["datasets"]) == {"core-set"}

    killed_at = crash(minions[core])
    bound = DETECTION_BOUND + SLACK
    unreachable = wait_event(
        event_listener, master, f"eos/cluster/node/{core}/unreachable", killed_at, bound + 30
    )
    down = wait_event(
        event_listener,
        master,
        f"eos/cluster/node/{core}/down",
        killed_at,
        DOWN_AFTER + INTERVAL + PROBE_TIMEOUT + 60,
    )
    replaced = wait_event(
        event_listener, master, "eos/cluster/replacement/done", killed_at, JOIN_TIMEOUT
    )
    times = {
        "detection": unreachable.stamp.timestamp() - killed_at,
        "down": down.stamp.timestamp() - unreachable.stamp.timestamp(),
        "replacement": replaced.stamp.timestamp() - down.stamp.timestamp(),
    }
    print(
        f"\nkilled {core}: unreachable after {times['detection']:.1f} s "
        f"(bound {DETECTION_BOUND} s), "
        f"down {times['down']:.1f} s later (down_after {DOWN_AFTER} s), roles re-placed and "
        f"the edge reconfigured {times['replacement']:.1f} s after that"
    )
    return {
        "core": core,
        "times": times,
        "bound": bound,
        "unreachable": unreachable.data,
        "replacement": replaced.data,
    }


def test_a_killed_minion_is_unreachable_within_the_grace_and_one_probe_interval(core_failure):
    assert core_failure["times"]["detection"] <= core_failure["bound"]
    # Not long before the grace period either: silence counts from the last probe it
    # answered, which it may have answered up to one probe timeout before it died.
    assert core_failure["times"]["detection"] >= GRACE - PROBE_TIMEOUT
    record = core_failure["unreachable"]
    assert record["status"] == "unreachable"
    # Unreachable keeps its roles: nothing moves until it is down.
    assert record["roles"] == ["core"]


def test_it_is_down_after_down_after_seconds_and_its_roles_are_re_placed(
    master, cluster, core_failure, salt_run_cli
):
    core = core_failure["core"]
    assert DOWN_AFTER <= core_failure["times"]["down"] <= DOWN_AFTER + INTERVAL + SLACK
    record = read_registry(master).get(core)
    assert record["status"] == "down"
    assert record["roles"] == []

    replacement = core_failure["replacement"]
    assert replacement["outcome"] == "done"
    assert replacement["changes"][core] == {"old": ["core"], "new": []}
    now = holders_by_role(master)
    new_core = only(now["core"])
    # The new core was a data node; the edge and the other data node kept their roles.
    assert new_core in cluster["data"]
    assert now["edge"] == cluster["edge"]
    assert set(replacement["changes"]) == {core, new_core}
    # Highstate ran where roles changed and on the edge, whose upstream changed; the scale
    # changed with the node count, so the last node got the EOS part again too.
    assert {new_core, *cluster["edge"]} <= set(replacement["configured"])
    assert core not in replacement["configured"]
    if not replacement["scale_changed"]:
        assert replacement["configured"] == sorted({new_core, *cluster["edge"]})
    assert run_ok(salt_run_cli, "eos_roles.validate")["valid"] is True
    nodes = run_ok(salt_run_cli, "eos_cluster.nodes")
    assert {node["id"]: node["status"] for node in nodes}[core] == "down"


def test_the_edge_upstream_no_longer_lists_the_down_node(master, cluster, core_failure, salt_cli):
    servers = haproxy_servers(salt_cli, only(cluster["edge"]))
    assert core_failure["core"] not in servers
    assert servers == holders_by_role(master)["core"]


def test_the_datasets_of_the_down_node_are_reported_unavailable(core_failure, salt_run_cli):
    core = core_failure["core"]
    report = run_ok(salt_run_cli, "eos_storage.report")
    assert report["unavailable"] == {"core-set": {"node": core, "status": "down"}}
    assert report["nodes"][core]["available"] is False
    shown = salt_run_cli.run("eos_storage.report", "refresh=False", "--out=eos_storage")
    assert shown.returncode == 0, shown
    assert f"unavailable: core-set ({core}, down)" in shown.stdout


def test_the_down_node_restarted_rejoins_through_the_join_flow(
    master, minions, core_failure, salt_run_cli, event_listener
):
    core = core_failure["core"]
    since = time.time()
    minions[core].start()
    wait_for(
        lambda: status(master, core) == "active",
        f"{core} to rejoin",
        JOIN_TIMEOUT,
    )
    rejoined = time.time() - since
    wait_event(event_listener, master, f"eos/cluster/node/{core}/active", since, 30)
    assert node_events(event_listener, master, core, since)[:2] == ["accepted", "active"]
    joined = run_ok(salt_run_cli, "eos_join.status", core)
    assert joined["status"] == "active"
    assert joined["done"] == ["start", "health", "checkpoint", "assign", "configure", "finish"]
    assert joined["started_at"] >= since
    # Whatever the solver gives it now: four nodes again, an edge, a core, two data nodes.
    now = holders_by_role(master)
    assert {role: len(ids) for role, ids in now.items()} == {"edge": 1, "core": 1, "data": 2}
    assert read_registry(master).get(core)["roles"]
    assert run_ok(salt_run_cli, "eos_roles.validate")["valid"] is True
    print(f"\n{core} restarted: active again through the join flow after {rejoined:.1f} s")


@pytest.fixture(scope="module")
def drained(master, core_failure, trees, salt_run_cli):
    """Two datasets on the data node that did not fail, then that node drained."""
    data = holders_by_role(master)["data"]
    leaving = next(node for node in data if node != core_failure["core"])
    staying = only(set(data) - {leaving})
    for name, size_mb in (("logs", 3), ("media", 2)):
        write_dataset(dataset_root(trees, leaving) / name, size_mb)
    digests = {name: tree_digest(dataset_root(trees, leaving) / name) for name in ("logs", "media")}
    report = run_ok(salt_run_cli, "eos_storage.report")
    assert set(report["nodes"][leaving]["datasets"]) == {"logs", "media"}
    started = time.time()
    answer = run_ok(salt_run_cli, "eos_cluster.drain", leaving)
    took = time.time() - started
    print(f"\ndrain of {leaving} (2 datasets, 5 MB): {took:.1f} s")
    return {"leaving": leaving, "staying": staying, "digests": digests, "answer": answer}


def test_a_drain_moves_every_dataset_with_verified_contents(master, trees, drained):
    leaving, staying = drained["leaving"], drained["staying"]
    answer = drained["answer"]
    assert answer["drained"] is True, answer
    assert sorted(move["dataset"] for move in answer["moved"]) == ["logs", "media"]
    assert answer["remaining"] == [] and answer["failed"] == [] and answer["left"] == {}
    placements = datasets.Store(salt.cache.factory(master.config)).placements()
    for name, digest in drained["digests"].items():
        assert placements[name]["node"] == staying
        assert tree_digest(dataset_root(trees, staying) / name) == digest
        # Removed from the source only once the copy was verified.
        assert not (dataset_root(trees, leaving) / name).exists()


def test_the_drained_node_holds_no_role_and_the_cluster_is_still_valid(
    master, drained, salt_run_cli
):
    leaving = drained["leaving"]
    record = read_registry(master).get(leaving)
    assert record["status"] == "drained"
    assert record["roles"] == []
    now = holders_by_role(master)
    assert leaving not in [node for ids in now.values() for node in ids]
    assert now["data"] == [drained["staying"]]
    assert run_ok(salt_run_cli, "eos_roles.validate")["valid"] is True


def test_a_drain_with_no_room_stops_and_loses_nothing(master, trees, drained, salt_run_cli):
    last = drained["staying"]  # the last data node: no other node takes data
    before = {name: tree_digest(dataset_root(trees, last) / name) for name in ("logs", "media")}
    ret = salt_run_cli.run("eos_cluster.drain", last)
    assert ret.returncode == 1, ret
    answer = ret.data
    assert answer["drained"] is False, answer
    assert set(answer["left"]) >= {"logs", "media"}
    assert "no other node of role data" in answer["left"]["logs"]
    assert {"logs", "media"} <= set(answer["remaining"])
    assert "stopped" in answer["comment"]
    record = read_registry(master).get(last)
    assert record["status"] == "active"
    assert record["cordoned"] is True
    assert record["roles"] == ["data"]
    for name, digest in before.items():
        assert tree_digest(dataset_root(trees, last) / name) == digest
    placements = datasets.Store(salt.cache.factory(master.config)).placements()
    assert placements["logs"]["node"] == placements["media"]["node"] == last


def test_uncordon_lifts_the_cordon(master, drained, salt_run_cli):
    last = drained["staying"]
    answer = run_ok(salt_run_cli, "eos_cluster.uncordon", last)
    assert answer["changed"] is True
    assert read_registry(master).get(last).get("cordoned") is False


def test_remove_of_the_drained_node_deletes_its_record_and_key(master, drained, salt_run_cli):
    leaving = drained["leaving"]
    run_ok(salt_run_cli, "eos_cluster.remove", leaving)
    assert read_registry(master).get(leaving) is None
    accepted = pathlib.Path(master.config["pki_dir"]) / "minions" / leaving
    assert not accepted.exists()
