"""
Rebalancing datasets of real files through a real salt-master and three minions.

The three minions share this host, so the moves use the local transport; each has its own
dataset root and a share of 60 MB of the filesystem (``eos:dataset:capacity_bytes``), so the
planner sees one full node and two empty ones. Every minion's rsync is a wrapper that, while a
flag file exists, kills the real rsync a moment into the copy: a move killed midway.

The registry records (three active data nodes) are written directly, as the role runner would
leave them. Tests build on each other, in file order.
"""

import hashlib
import os
import pathlib
import stat
import time

import pytest
import salt.cache
from saltfactories.utils import random_string

from saltext.eos.utils import datasets
from saltext.eos.utils import registry

MB = 1024 * 1024
SHARE = 60 * MB
# alpha holds eight datasets of 4 MB (32 MB of its 60 MB), bravo one of 2 MB, charlie nothing.
LAYOUT = {"alpha": {f"set-{number}": 4 for number in range(8)}, "bravo": {"small": 2}}
DECLARED = {name: {} for sets in LAYOUT.values() for name in sets}

pytestmark = [pytest.mark.skip_if_binaries_missing("rsync", "timeout")]


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fleet")


@pytest.fixture(scope="module")
def kill_flag(fleet_dir):
    return fleet_dir / "kill-rsync"


@pytest.fixture(scope="module")
def rsync_wrapper(fleet_dir, kill_flag):
    wrapper = fleet_dir / "rsync"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ -e "{kill_flag}" ]; then\n'
        '  exec timeout -s KILL 1 rsync --bwlimit=1000 "$@"\n'
        "fi\n"
        'exec rsync "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


@pytest.fixture(scope="module")
def master(salt_factories, master_id):
    factory = salt_factories.salt_master_daemon(
        master_id,
        overrides={
            "eos": {"datasets": DECLARED, "rebalance": {"transport": "local"}},
        },
    )
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def fleet(master, fleet_dir, rsync_wrapper):
    """{name: (minion factory, dataset root)}; their files, and the registry records."""
    started = {}
    try:
        for name in ("alpha", "bravo", "charlie"):
            root = fleet_dir / name
            root.mkdir()
            for dataset, size_mb in LAYOUT.get(name, {}).items():
                write_dataset(root / dataset, size_mb)
            factory = master.salt_minion_daemon(
                random_string(f"{name}-"),
                overrides={
                    "eos": {
                        "dataset": {
                            "root": str(root),
                            "capacity_bytes": SHARE,
                            "rsync": str(rsync_wrapper),
                        }
                    }
                },
            )
            factory.start()
            started[name] = (factory, root)
        register_data_nodes(master, [factory.id for factory, _ in started.values()])
        yield started
    finally:
        for factory, _ in started.values():
            factory.terminate()


def write_dataset(directory, size_mb):
    """Files of random bytes (a nested directory and a symbolic link too) adding to size_mb."""
    (directory / "nested").mkdir(parents=True)
    for number in range(size_mb):
        where = directory if number % 2 else directory / "nested"
        (where / f"part-{number}.bin").write_bytes(os.urandom(MB))
    (directory / "latest").symlink_to("part-1.bin")


def register_data_nodes(master, node_ids):
    reg = registry.Registry(salt.cache.factory(master.config))
    for node_id in node_ids:
        reg.preregister(node_id, registry.check_preregistration())
        reg.accept(node_id)
        reg.set_status(node_id, "active", "configured by the test")
    reg.store_assignment({node_id: ["data"] for node_id in node_ids})


def store(master):
    return datasets.Store(salt.cache.factory(master.config))


def tree_digest(directory):
    """{relative path: sha256 or link target} of everything under directory."""
    found = {}
    for path in sorted(pathlib.Path(directory).rglob("*")):
        relative = str(path.relative_to(directory))
        if path.is_symlink():
            found[relative] = "-> " + os.readlink(path)
        elif path.is_file():
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


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
