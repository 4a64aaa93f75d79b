"""
Rebalancing datasets of real files through a real salt-master and three minions (a fourth
joins for the concurrent moves).

The three minions share this host, so the moves use the local transport; each has its own
dataset root and a share of 60 MB of the filesystem (``eos:dataset:capacity_bytes``), so the
planner sees one full node and two empty ones. Every minion's rsync is a wrapper that, while a
flag file exists, kills the real rsync a moment into the copy: a move killed midway; while
another exists, it waits before copying; and it logs when each copy starts and ends.

The master serves the package's SLS (``fileserver_backend: [roots, eos]``) and has the reactor
configuration documented in ``reactor/storage_rebalance.sls``, so the orchestration and the
beacon reaction run for real. The minions' space recovery is configured to touch nothing: the
beacon reaction runs it too.

The registry records (three active data nodes) are written directly, as the role runner would
leave them. Tests build on each other, in file order.
"""

import concurrent.futures
import json
import os
import pathlib
import stat
import time

import psutil
import pytest
import salt.cache
import yaml
from saltfactories.utils import random_string

from saltext.eos.utils import datasets
from saltext.eos.utils import formatting
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.storage import mounts
from tests.support.cluster import wait_for
from tests.support.datasets import MB
from tests.support.datasets import tree_digest
from tests.support.datasets import write_dataset

SHARE = 60 * MB
# alpha holds eight datasets of 4 MB (32 MB of its 60 MB), bravo one of 2 MB, charlie nothing.
LAYOUT = {"alpha": {f"set-{number}": 4 for number in range(8)}, "bravo": {"small": 2}}
# Declared from the start, written by the later tests: the orchestration's and the reactor's
# imbalance, and two small datasets pinned elsewhere for the concurrent moves.
LATER = {"orch": 20, "burst": 16, "pin-a": 2, "pin-b": 2, "race": 12}
# Space recovery that has nothing to act on: the beacon reaction runs it on the real mount.
INERT_CLEANUP = {
    "log_dirs": [],
    "package_caches": {},
    "tmp_dirs": [],
    "docker_prune": False,
    "journal_dirs": [],
    "services": [],
    "user_cache_dirs": [],
}
# The master configuration documented in reactor/storage_rebalance.sls.
REACTOR = [
    {
        "salt/beacon/*/eos_storage/*": [
            "salt://eos/reactor/storage_threshold.sls",
            "salt://eos/reactor/storage_rebalance.sls",
        ]
    }
]

pytestmark = [pytest.mark.skip_if_binaries_missing("rsync", "timeout")]


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fleet")


@pytest.fixture(scope="module")
def kill_flag(fleet_dir):
    return fleet_dir / "kill-rsync"


@pytest.fixture(scope="module")
def slow_flag(fleet_dir):
    return fleet_dir / "slow-rsync"


@pytest.fixture(scope="module")
def rsync_trace(fleet_dir):
    """Lines ``start|end <epoch seconds> <staging path>``, one per copy start and end."""
    return fleet_dir / "rsync.trace"


@pytest.fixture(scope="module")
def rsync_wrapper(fleet_dir, kill_flag, slow_flag, rsync_trace):
    wrapper = fleet_dir / "rsync"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for last in "$@"; do :; done\n'
        f'echo "start $(date +%s.%N) $last" >> "{rsync_trace}"\n'
        f'if [ -e "{kill_flag}" ]; then\n'
        '  exec timeout -s KILL 1 rsync --bwlimit=1000 "$@"\n'
        "fi\n"
        # The flag file may hold the seconds to wait; empty, one.
        f'if [ -e "{slow_flag}" ]; then sleep "$(cat "{slow_flag}")" 2>/dev/null || sleep 1; fi\n'
        'rsync "$@"\n'
        "status=$?\n"
        f'echo "end $(date +%s.%N) $last" >> "{rsync_trace}"\n'
        'exit "$status"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


@pytest.fixture(scope="module")
def node_ids():
    """The minion ids, known before the master starts: its configuration pins to them."""
    return {name: random_string(f"{name}-") for name in ("alpha", "bravo", "charlie", "delta")}


@pytest.fixture(scope="module")
def master(salt_factories, master_id, node_ids):
    declared = {name: {} for sets in [*LAYOUT.values(), LATER] for name in sets}
    declared["pin-a"] = {"pin": node_ids["delta"]}
    declared["pin-b"] = {"pin": node_ids["charlie"]}
    factory = salt_factories.salt_master_daemon(
        master_id,
        overrides={
            "fileserver_backend": ["roots", "eos"],
            "reactor": REACTOR,
            "eos": {"datasets": declared, "rebalance": {"transport": "local"}},
        },
    )
    with factory.started():
        yield factory


def data_node(master, node_id, root, rsync_wrapper):
    """A minion factory (not started) keeping its datasets under root."""
    return master.salt_minion_daemon(
        node_id,
        overrides={
            # Beacon intervals count loop_interval ticks: one a second.
            "loop_interval": 1,
            # Reconnect at once after the master restarts, not after a random 1-11 s.
            "recon_randomize": False,
            "eos": {
                "dataset": {
                    "root": str(root),
                    "capacity_bytes": SHARE,
                    "rsync": str(rsync_wrapper),
                },
                "cleanup": INERT_CLEANUP,
                # The beacon watches the datasets' mount, a tmpfs on some machines.
                "analyzer": {"include_tmpfs": True},
            },
        },
    )


@pytest.fixture(scope="module")
def minions(master, fleet_dir, rsync_wrapper, node_ids):
    """
    {name: (minion factory, dataset root)}, started together; their files. delta is not a
    member until a test registers it.
    """
    nodes = {}
    for name in ("alpha", "bravo", "charlie", "delta"):
        root = fleet_dir / name
        root.mkdir()
        for dataset, size_mb in LAYOUT.get(name, {}).items():
            write_dataset(root / dataset, size_mb)
        nodes[name] = (data_node(master, node_ids[name], root, rsync_wrapper), root)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        starts = [pool.submit(factory.start) for factory, _ in nodes.values()]
        try:
            for start in starts:
                start.result()
            yield nodes
        finally:
            for stop in [pool.submit(factory.terminate) for factory, _ in nodes.values()]:
                stop.result()


@pytest.fixture(scope="module")
def fleet(master, minions):
    """{name: (minion factory, dataset root)} of the three data nodes, and their records."""
    started = {name: minions[name] for name in ("alpha", "bravo", "charlie")}
    register_data_nodes(master, [factory.id for factory, _ in started.values()])
    return started


def register_data_nodes(master, node_ids, members=()):
    """Make node_ids active data nodes; ``members``, already registered, keep their role."""
    reg = registry.Registry(salt.cache.factory(master.config))
    for node_id in node_ids:
        reg.preregister(node_id, registry.check_preregistration())
        reg.accept(node_id)
        reg.set_status(node_id, "active", "configured by the test")
    reg.store_assignment({node_id: ["data"] for node_id in [*members, *node_ids]})


def store(master):
    return datasets.Store(salt.cache.factory(master.config))


@pytest.fixture(scope="module")
def originals(fleet):
    return {
        dataset: tree_digest(fleet[name][1] / dataset)
        for name, sets in LAYOUT.items()
        for dataset in sets
    }


@pytest.fixture(scope="module")
def salt_run_cli(master):
    return master.salt_run_cli(timeout=300)


def run_ok(cli, *args):
    ret = cli.run(*args)
    assert ret.returncode == 0, ret
    return ret.data


def ids(fleet):
    return {name: factory.id for name, (factory, _) in fleet.items()}


def moved_events(master, event_listener, since):
    events = event_listener.get_events([(master.id, "eos/storage/rebalance/moved")], since)
    return {event.data["dataset"] for event in events}


def test_the_report_and_a_dry_run_plan_move_nothing(fleet, originals, master, salt_run_cli):
    node = ids(fleet)
    report = run_ok(salt_run_cli, "eos_storage.report")
    alpha = report["nodes"][node["alpha"]]
    assert alpha["capacity_bytes"] == SHARE
    assert alpha["used_bytes"] >= 32 * MB
    assert sorted(alpha["datasets"]) == sorted(LAYOUT["alpha"])

    plan = run_ok(salt_run_cli, "eos_storage.rebalance")
    assert plan["dry_run"] is True
    assert plan["moves"], plan
    assert all(move["from"] == node["alpha"] for move in plan["moves"])
    assert plan["bytes_moved"] >= plan["lower_bound_bytes"] > 0
    assert plan["reached"] is True
    assert plan["blocked"] == []
    for dataset in LAYOUT["alpha"]:
        assert tree_digest(fleet["alpha"][1] / dataset) == originals[dataset]


def test_bad_input_is_a_clear_error_and_moves_nothing(fleet, salt_run_cli):
    for argument, named in (
        ("threshold=0", "threshold"),
        ("threshold=51", "threshold"),
        ("exclude_nodes=[nosuch-node]", "nosuch-node"),
        ("exclude_datasets=[nosuch-set]", "nosuch-set"),
    ):
        ret = salt_run_cli.run("eos_storage.rebalance", argument, "dry_run=False")
        assert named in str(ret.stdout) + str(ret.stderr) + str(ret.data), argument
    assert sorted(os.listdir(fleet["charlie"][1])) == []


def test_a_move_killed_midway_keeps_the_source_and_its_placement(
    fleet, originals, master, salt_run_cli, kill_flag
):
    node = ids(fleet)
    kill_flag.touch()
    try:
        ret = salt_run_cli.run("eos_storage.rebalance", "dry_run=False")
    finally:
        kill_flag.unlink()
    assert ret.returncode != 0, "a failed move must not look like a finished rebalance"
    result = ret.data
    assert result["moved"] == []
    assert result["failed"], result
    failed = result["failed"][0]
    assert "rsync" in failed["error"] or "differs" in failed["error"], failed
    placements = store(master).placements()
    for dataset in LAYOUT["alpha"]:
        assert placements[dataset]["node"] == node["alpha"]
        assert tree_digest(fleet["alpha"][1] / dataset) == originals[dataset]
    journal = store(master).journal()
    assert failed["dataset"] in journal
    # The partial copy is where the killed pull left it, out of place.
    destination_root = next(root for _, (f, root) in fleet.items() if f.id == failed["to"])
    assert not (destination_root / failed["dataset"]).exists()


def test_the_next_run_cleans_up_and_completes_every_move(
    fleet, originals, master, salt_run_cli, event_listener
):
    node = ids(fleet)
    since = time.time()
    result = run_ok(salt_run_cli, "eos_storage.rebalance", "dry_run=False")
    assert result["failed"] == [], result
    assert result["moved"], result
    assert [entry["action"] for entry in result["recovered"]] and all(
        entry["action"].startswith("cleaned") for entry in result["recovered"]
    )
    assert store(master).journal() == {}
    placements = store(master).placements()
    roots = {factory.id: root for factory, root in fleet.values()}
    for move in result["moved"]:
        dataset = move["dataset"]
        assert placements[dataset]["node"] == move["to"]
        assert tree_digest(roots[move["to"]] / dataset) == originals[dataset]
        assert not (roots[move["from"]] / dataset).exists()
        assert not (roots[move["to"]] / datasets.STAGING_DIR / dataset).exists()
    # Every dataset exists exactly once, where its placement says.
    for dataset, original in originals.items():
        holders = [node_id for node_id, root in roots.items() if (root / dataset).exists()]
        assert holders == [placements[dataset]["node"]]
        assert tree_digest(roots[holders[0]] / dataset) == original
    wanted = {move["dataset"] for move in result["moved"]}
    deadline = time.time() + 30
    while moved_events(master, event_listener, since) < wanted and time.time() < deadline:
        time.sleep(0.25)
    assert moved_events(master, event_listener, since) == wanted
    again = run_ok(salt_run_cli, "eos_storage.rebalance")
    assert again["moves"] == []
    assert again["reached"] is True
    assert node["charlie"] in {move["to"] for move in result["moved"]}


# --- the outputter, the orchestration, the beacon reaction and concurrent moves ---------------


def roots_by_id(fleet):
    return {factory.id: root for factory, root in fleet.values()}


def on_disk(roots):
    """{dataset: (node id, tree digest)} of every dataset directory, each on exactly one node."""
    found = {}
    for node_id, root in roots.items():
        for name in datasets.top_level_dirs(root):
            assert name not in found, f"{name} on {found[name][0]} and {node_id}"
            found[name] = (node_id, tree_digest(root / name))
    return found


def assert_moved(master, roots, before, moves):
    """Each move arrived byte-identical, placed on its destination, gone from its source."""
    placements = store(master).placements()
    for move in moves:
        name = move["dataset"]
        assert before[name][0] == move["from"], move
        assert placements[name]["node"] == move["to"], move
        assert tree_digest(roots[move["to"]] / name) == before[name][1], move
        assert not (roots[move["from"]] / name).exists(), move
        assert not (roots[move["to"]] / datasets.STAGING_DIR / name).exists(), move
    after = on_disk(roots)
    assert set(after) == set(before)
    moved = {move["dataset"] for move in moves}
    for name in set(before) - moved:
        assert after[name] == before[name]
    assert store(master).journal() == {}


def assert_nothing_moved(master, roots, before):
    assert on_disk(roots) == before
    placements = store(master).placements()
    for name, (node_id, _) in before.items():
        assert placements[name]["node"] == node_id
    assert store(master).journal() == {}


def add_cleanup_beacon(salt_cli, minion_id, mount):
    """
    The eos_storage beacon on ``mount`` with thresholds around its real usage that put it at
    the cleanup level: the beacon's first check fires salt/beacon/<id>/eos_storage/cleanup.
    """
    if not mounts.is_real(mounts.find(mount), include_tmpfs=True):
        pytest.skip(f"{mount} is a pseudo filesystem, which the beacon does not watch")
    limits = limits_at_cleanup(psutil.disk_usage(mount).percent, mount)
    beacon = [
        {"interval": 1},
        {"mounts": [mount]},
        {"thresholds": {mount: limits}},
        {"inodes": False},
        {"time_to_full": {"warning": 0, "critical": 0}},
    ]
    ret = salt_cli.run("beacons.add", "eos_storage", json.dumps(beacon), minion_tgt=minion_id)
    assert ret.returncode == 0, ret
    assert ret.data["result"] is True, ret.data


def limits_at_cleanup(percent, what):
    """Thresholds around ``percent`` that put it at the cleanup level."""
    if not 1 <= percent <= 95:
        pytest.skip(f"{what} is {percent}% full: no room for thresholds around it")
    room = 100 - percent
    limits = {
        "warning": percent / 6,
        "compress": percent / 3,
        "cleanup": percent / 2,
        "degraded": percent + room / 2,
        "emergency": percent + 2 * room / 3,
        "critical": percent + 5 * room / 6,
    }
    return {level: round(value, 2) for level, value in limits.items()}


def put_share_at_cleanup(master, salt_cli, minion_id):
    """
    Pillar thresholds that put the node's dataset share at cleanup: the reaction does not
    trust the event's level, it asks the node, which measures its share by its thresholds.
    """
    report = salt_cli.run("eos_dataset.sizes", minion_tgt=minion_id)
    assert report.returncode == 0, report
    percent = 100 * report.data["used_bytes"] / report.data["capacity_bytes"]
    write_node_pillar(
        master, minion_id, {"eos": {"thresholds": limits_at_cleanup(percent, "share")}}
    )
    refresh_pillar(salt_cli, minion_id)


def write_node_pillar(master, minion_id, data):
    pillar_root = pathlib.Path(master.config["pillar_roots"]["base"][0])
    pillar_root.mkdir(parents=True, exist_ok=True)
    sls = minion_id.replace("-", "_")
    if data is None:
        (pillar_root / f"{sls}.sls").unlink(missing_ok=True)
    else:
        (pillar_root / f"{sls}.sls").write_text(yaml.safe_dump(data))
    entries = sorted(path.stem for path in pillar_root.glob("*.sls") if path.stem != "top")
    top = {"base": {name.replace("_", "-"): [name] for name in entries}}
    (pillar_root / "top.sls").write_text(yaml.safe_dump(top))


def refresh_pillar(salt_cli, minion_id):
    ret = salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt=minion_id)
    assert ret.returncode == 0, ret


def delete_beacon(salt_cli, minion_id):
    ret = salt_cli.run("beacons.delete", "eos_storage", minion_tgt=minion_id)
    assert ret.returncode == 0, ret


def reaction(master, event_listener, node_id, since, timeout=90):
    """The return of the runner eos_storage.react that the reactor ran for node_id."""

    def finished():
        for event in event_listener.get_events([(master.id, "salt/run/*/ret")], since):
            if str(event.data.get("fun", "")).endswith("eos_storage.react"):
                result = event.data["return"]
                if isinstance(result, dict) and result.get("node") == node_id:
                    return result
        return None

    return wait_for(finished, f"the reactor's eos_storage.react for {node_id}", timeout)


def restart_master(master, fleet, **rebalance):
    """Restart the master with ``eos:rebalance`` updated; returns once every minion answers."""
    path = pathlib.Path(master.config_file)
    config = yaml.safe_load(path.read_text())
    config["eos"]["rebalance"].update(rebalance)
    path.write_text(yaml.safe_dump(config, default_flow_style=False))
    master.terminate()
    master.start()
    quick = master.salt_cli(timeout=5)
    for factory, _ in fleet.values():
        wait_for(
            lambda minion_id=factory.id: quick.run("test.ping", minion_tgt=minion_id).data is True,
            f"{factory.id} to reconnect",
            timeout=120,
        )


def copy_spans(trace, dataset):
    """[(start, end)] of each finished copy of dataset into staging, from the wrapper's log."""
    started, spans = {}, []
    for line in trace.read_text().splitlines():
        what, when, target = line.split(" ", 2)
        if f"/{datasets.STAGING_DIR}/{dataset}/" not in target + "/":
            continue
        if what == "start":
            started[target] = float(when)
        elif target in started:
            spans.append((started.pop(target), float(when)))
    return spans


def test_the_report_renders_as_a_table_with_the_eos_storage_outputter(fleet, master, salt_run_cli):
    ret = salt_run_cli.run("eos_storage.report", "--out=eos_storage")
    assert ret.returncode == 0, ret
    lines = [formatting.ANSI_ESCAPE.sub("", line) for line in ret.stdout.splitlines()]
    assert lines[0].split()[:4] == ["NODE", "STATUS", "CAPACITY", "USED"]
    placements = store(master).placements()
    total_used = 0
    for factory, root in fleet.values():
        row = next(line for line in lines if line.split()[:1] == [factory.id])
        used = datasets.tree_bytes(root)
        total_used += used
        count = sum(1 for placement in placements.values() if placement["node"] == factory.id)
        assert row.split()[1] == "active"
        assert f"{formatting.human_bytes(SHARE)}  {formatting.human_bytes(used)}" in row
        assert f"{100 * used / SHARE:.1f}%  {formatting.usage_bar(100 * used / SHARE)}" in row
        assert f"  {count} (" in row
    assert f"total: 3 nodes, {formatting.human_bytes(3 * SHARE)} capacity" in ret.stdout
    assert f"{formatting.human_bytes(total_used)} used" in ret.stdout


def test_the_orchestration_plans_then_executes(fleet, master, salt_run_cli):
    roots = roots_by_id(fleet)
    write_dataset(fleet["charlie"][1] / "orch", LATER["orch"])
    before = on_disk(roots)

    ret = salt_run_cli.run("state.orchestrate", "eos.orchestrate.rebalance")
    assert ret.returncode == 0, ret
    states = ret.data.get("data", ret.data)
    (steps,) = states.values()
    steps = {step["__id__"]: step for step in steps.values()}
    assert [steps[name]["result"] for name in ("eos_rebalance_plan", "eos_rebalance_execute")] == [
        True,
        True,
    ], steps
    plan = steps["eos_rebalance_plan"]["changes"]["return"]
    done = steps["eos_rebalance_execute"]["changes"]["return"]
    assert plan["dry_run"] is True
    assert plan["moves"], plan
    assert done["dry_run"] is False
    assert done["failed"] == [], done
    assert [(m["dataset"], m["from"], m["to"]) for m in done["moved"]] == [
        (m["dataset"], m["from"], m["to"]) for m in plan["moves"]
    ]
    assert_moved(master, roots, before, done["moved"])


def test_a_beacon_at_cleanup_plans_and_moves_nothing_without_auto(
    fleet, master, fleet_dir, salt_cli, event_listener
):
    roots = roots_by_id(fleet)
    bravo = fleet["bravo"][0]
    write_dataset(fleet["bravo"][1] / "burst", LATER["burst"])
    before = on_disk(roots)
    put_share_at_cleanup(master, salt_cli, bravo.id)
    since = time.time()
    add_cleanup_beacon(salt_cli, bravo.id, datasets.mount_point(str(fleet_dir)))
    try:
        result = reaction(master, event_listener, bravo.id, since)
    finally:
        delete_beacon(salt_cli, bravo.id)
        write_node_pillar(master, bravo.id, None)
        refresh_pillar(salt_cli, bravo.id)
    (fired,) = event_listener.get_events(
        [(master.id, f"salt/beacon/{bravo.id}/eos_storage/cleanup")], since
    )
    assert fired.data["id"] == bravo.id
    assert result["level"] == "cleanup"
    assert result["measured_level"] == "cleanup"
    assert result["dry_run"] is True
    assert result["moves"], result
    assert "moved" not in result
    assert_nothing_moved(master, roots, before)
    assert store(master).placements()["burst"]["node"] == bravo.id


def test_with_auto_the_beacon_reaction_executes_the_plan(
    fleet, master, fleet_dir, salt_cli, event_listener
):
    restart_master(master, fleet, auto=True, concurrency=2)
    roots = roots_by_id(fleet)
    charlie = fleet["charlie"][0]
    before = on_disk(roots)
    put_share_at_cleanup(master, salt_cli, charlie.id)
    since = time.time()
    add_cleanup_beacon(salt_cli, charlie.id, datasets.mount_point(str(fleet_dir)))
    try:
        result = reaction(master, event_listener, charlie.id, since)
    finally:
        delete_beacon(salt_cli, charlie.id)
        write_node_pillar(master, charlie.id, None)
        refresh_pillar(salt_cli, charlie.id)
    assert result["dry_run"] is False
    assert result["blocked"] == []
    assert result["failed"] == [], result
    assert result["moved"], result
    assert result["retcode"] == 0
    assert_moved(master, roots, before, result["moved"])


def test_two_moves_run_at_once_with_concurrency_2(
    fleet, minions, master, slow_flag, rsync_trace, salt_run_cli
):
    node = ids(fleet)
    delta, delta_root = minions["delta"]
    register_data_nodes(master, [delta.id], members=list(node.values()))
    write_dataset(fleet["alpha"][1] / "pin-a", LATER["pin-a"])
    write_dataset(fleet["bravo"][1] / "pin-b", LATER["pin-b"])
    roots = {**roots_by_id(fleet), delta.id: delta_root}
    before = on_disk(roots)
    slow_flag.touch()
    try:
        # Threshold 50: every node is within it, so the two pin moves are the whole plan.
        result = run_ok(salt_run_cli, "eos_storage.rebalance", "threshold=50", "dry_run=False")
    finally:
        slow_flag.unlink()
    assert result["failed"] == [], result
    assert sorted((m["dataset"], m["from"], m["to"], m["kind"]) for m in result["moved"]) == [
        ("pin-a", node["alpha"], delta.id, "pin"),
        ("pin-b", node["bravo"], node["charlie"], "pin"),
    ]
    assert_moved(master, roots, before, result["moved"])
    # Each copy waited a second before it started: they ran at once only if they overlap.
    ((a_start, a_end),) = copy_spans(rsync_trace, "pin-a")
    ((b_start, b_end),) = copy_spans(rsync_trace, "pin-b")
    assert a_start < b_end and b_start < a_end, ((a_start, a_end), (b_start, b_end))


def test_two_executions_started_together_move_once(fleet, minions, master, slow_flag):
    delta, delta_root = minions["delta"]
    roots = {**roots_by_id(fleet), delta.id: delta_root}
    write_dataset(fleet["alpha"][1] / "race", LATER["race"])
    before = on_disk(roots)
    # Slow copies: the first execution still holds the lease when the second asks for it.
    slow_flag.write_text("4")
    clis = [master.salt_run_cli(timeout=300) for _ in range(2)]
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            runs = [pool.submit(cli.run, "eos_storage.rebalance", "dry_run=False") for cli in clis]
            results = [run.result().data for run in runs]
    finally:
        slow_flag.unlink()
    moving = [result for result in results if result["moved"]]
    idle = [result for result in results if not result["moved"]]
    assert len(moving) == 1 and len(idle) == 1, results
    assert moving[0]["failed"] == [], moving[0]
    assert "holds the rebalance lease" in idle[0]["blocked"][0], idle[0]
    assert idle[0]["recovered"] == []
    # Every dataset exists exactly once, byte-identical, where its placement says.
    assert_moved(master, roots, before, moving[0]["moved"])
    assert store(master).journal() == {}
    assert read_lease(master) is None


def read_lease(master):
    held = salt.cache.factory(master.config).fetch(
        registry.CLUSTER_BANK, datasets.REBALANCE_LEASE_KEY
    )
    return held or None
