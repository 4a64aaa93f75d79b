"""Datasets: declarations, settings, the registry banks, the move sequence and recovery."""

import copy
import dataclasses
import threading
from types import SimpleNamespace

import pytest

from saltext.eos.utils import datasets
from saltext.eos.utils import errors
from saltext.eos.utils import master
from saltext.eos.utils.cluster import lease as leases
from saltext.eos.utils.datasets import rebalance
from saltext.eos.utils.datasets import transfer
from saltext.eos.utils.storage import thresholds
from tests.support import layers as support_layers
from tests.support.datasets import rebalance_lease_held_by
from tests.support.datasets import report
from tests.support.memory_cache import MemoryCache

layers = support_layers.master


# --- declarations and settings ------------------------------------------------------------------


def test_declarations_default_role_and_path():
    declared = datasets.declarations(
        layers(datasets={"orders": {"pin": "data-1"}, "media": {"path": "shared/media"}, "x": None})
    )
    assert declared["orders"] == datasets.Declaration("orders", "data", "orders", "data-1")
    assert declared["media"].path == "shared/media"
    assert declared["x"].role == rebalance.DEFAULT_ROLE


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"../etc": {}}, "eos:datasets:../etc: '../etc' is not a dataset name"),
        ({"orders\n": {}}, "eos:datasets:orders\n: 'orders\\n' is not a dataset name"),
        ({"a": {"path": "/etc"}}, "eos:datasets:a:path: '/etc' is not a relative path"),
        ({"a": {"path": "x/../../etc"}}, "must name a directory below the dataset root"),
        ({"a": {"path": ".eos-staging"}}, "must name a directory below the dataset root"),
        ({"a": {"replicas": 2}}, "eos:datasets:a: unknown field 'replicas'"),
        ({"a": {"role": ""}}, "eos:datasets:a:role"),
        ({"a": []}, "eos:datasets:a: [] is not a mapping"),
    ],
)
def test_bad_declarations_name_the_key(given, message):
    with pytest.raises(datasets.InvalidDatasets) as err:
        datasets.declarations(layers(datasets=given))
    assert message in str(err.value)


def test_settings_come_from_one_table_of_defaults():
    assert datasets.rebalance_settings(layers()) == datasets.REBALANCE_DEFAULTS
    assert datasets.node_settings(layers()) == datasets.NODE_DEFAULTS
    tuned = datasets.rebalance_settings(layers(rebalance={"concurrency": 3, "bwlimit_kbps": 10}))
    assert tuned["concurrency"] == 3
    assert tuned["threshold"] == rebalance.DEFAULT_THRESHOLD


@pytest.mark.parametrize(
    ("section", "given", "message"),
    [
        ("rebalance", {"threshold": 0}, "threshold: 0"),
        ("rebalance", {"threshold": 51}, "threshold: 51"),
        ("rebalance", {"transport": "ftp"}, "transport: 'ftp'"),
        ("rebalance", {"concurrency": 0}, "eos:rebalance:concurrency: 0"),
        ("rebalance", {"auto": "yes"}, "eos:rebalance:auto: 'yes'"),
        ("rebalance", {"bwlimit_kbps": -1}, "bwlimit_kbps: -1"),
        ("rebalance", {"speed": 1}, "unknown key 'speed'"),
        ("dataset", {"root": "srv"}, "eos:dataset:root: 'srv'"),
        ("dataset", {"capacity_bytes": 0}, "eos:dataset:capacity_bytes: 0"),
    ],
)
def test_bad_settings_name_the_key(section, given, message):
    check = datasets.rebalance_settings if section == "rebalance" else datasets.node_settings
    with pytest.raises(datasets.InvalidDatasets) as err:
        check(layers(**{section: given}))
    assert message in str(err.value)


# --- the node side --------------------------------------------------------------------------------


def test_sizes_usage_commit_and_cleanup_on_a_dataset_root(tmp_path):
    root = tmp_path / "root"
    (root / "orders").mkdir(parents=True)
    (root / "orders" / "a").write_bytes(b"x" * 300)
    (root / "orders" / "link").symlink_to("a")
    (root / "evil\n").mkdir()  # not a dataset name: never offered as one
    assert datasets.top_level_dirs(str(root)) == ["orders"]
    assert datasets.local_sizes(str(root), {"orders": "orders", "gone": "gone"}) == {"orders": 300}
    assert datasets.node_usage(str(root), capacity_bytes=1000) == (1000, 300)

    staged = tmp_path / "root" / datasets.STAGING_DIR / "media"
    (staged / transfer.PARTIAL_DIR).mkdir(parents=True)
    (staged / "m").write_bytes(b"m")
    datasets.commit_staging(str(root), "media", "media")
    assert (root / "media" / "m").read_bytes() == b"m"
    assert not (root / "media" / transfer.PARTIAL_DIR).exists()
    assert datasets.top_level_dirs(str(root)) == ["media", "orders"]

    with pytest.raises(datasets.MoveFailed, match="no staging copy"):
        datasets.commit_staging(str(root), "media", "media")
    staged.mkdir(parents=True)
    with pytest.raises(datasets.MoveFailed, match="exists already"):
        datasets.commit_staging(str(root), "media", "media")
    assert datasets.clean_partial(str(root), "media", "media") == [str(staged)]
    assert (root / "media").exists(), "an uncommitted cleanup keeps the copy in place"


# --- the registry banks ---------------------------------------------------------------------------


def declared(*names):
    return {name: datasets.Declaration(name, "data", name) for name in names}


def test_reports_place_new_datasets_and_never_trust_a_second_copy():
    store = datasets.Store(MemoryCache(), clock=lambda: 0)
    outcome = datasets.record_reports(
        store,
        {"n1": report({"a": 10, "b": 5, "junk": 1}), "n2": report({"b": 5, "c": 7})},
        declared("a", "b", "c"),
    )
    assert outcome["placed"] == [{"dataset": "a", "node": "n1"}, {"dataset": "c", "node": "n2"}]
    assert outcome["undeclared"] == {"n1": ["junk"]}
    assert "dataset b: found on n1, n2, placed on nowhere yet" in outcome["conflicts"][0]
    assert "b" not in store.placements()

    store.place("b", "n1", 5)
    outcome = datasets.record_reports(
        store, {"n1": report({"a": 12, "b": 5}), "n2": report({"b": 5})}, declared("a", "b")
    )
    assert store.placement("a")["bytes"] == 12
    assert outcome["conflicts"] == [
        "dataset b: found on n2, placed on n1; the extra copies are left alone"
    ]


def test_planner_inputs_take_members_that_reported():
    records = [
        {"id": "n1", "status": "active", "roles": ["data"], "resources": None},
        {
            "id": "n2",
            "status": "active",
            "roles": ["web", "data"],
            "resources": {"failure_domain": {"rack": "r2"}},
        },
        {"id": "n3", "status": "active", "roles": ["data"]},
        {"id": "n4", "status": "rejected", "roles": ["data"]},
    ]
    reports = {"n1": report({"a": 10}, host="h1"), "n2": report({}), "n4": report({})}
    placements = {"a": {"node": "n1", "bytes": 10}, "old": {"node": "n1", "bytes": 3}}
    nodes, planned, unreported = datasets.planner_inputs(
        records, reports, placements, declared("a")
    )
    assert [node["id"] for node in nodes] == ["n1", "n2"]
    assert nodes[1]["role"] == "data" and nodes[1]["rack"] == "r2"
    assert nodes[0]["host"] == "h1"
    assert [dataset["name"] for dataset in planned] == ["a"]
    assert unreported == ["n3"]
    plan = rebalance.plan(nodes, planned, 10)
    assert plan.roles["data"].nodes == 2


def test_failed_data_nodes_and_joins_block_moves():
    records = [
        {"id": "n1", "status": "failed", "roles": ["data"]},
        {"id": "n2", "status": "failed", "roles": ["web"]},
        {"id": "n3", "status": "pending", "roles": []},
        {"id": "n4", "status": "active", "roles": ["data"]},
    ]
    assert datasets.blockers(records, ["data"]) == [
        "node n1 is failed",
        "node n3 is joining (pending)",
    ]


def test_fleet_report_rows_and_time_to_full():
    now = [0]
    store = datasets.Store(MemoryCache(), clock=lambda: now[0])
    store.store_report("n1", report({}, capacity=1000, used=500))
    now[0] = 100
    store.store_report("n1", report({}, capacity=1000, used=600))
    store.place("a", "n1", 10)
    rows = datasets.fleet_report(
        [{"id": "n1", "status": "active", "roles": ["data"]}, {"id": "n2", "status": "pending"}],
        store.reports(),
        store.placements(),
    )
    assert rows["n1"]["usage_percent"] == 60.0
    assert rows["n1"]["level"] == thresholds.level_for(60.0, thresholds.profile("single"))
    assert rows["n1"]["datasets"] == {"a": 10}
    assert rows["n1"]["time_to_full_seconds"] == 400  # 400 bytes left at 1 byte per second
    assert rows["n2"]["capacity_bytes"] is None


# --- moves ----------------------------------------------------------------------------------------


class FakeFleet:
    """MoveSteps over in-memory trees, recording every call; ``fail`` names a step to break."""

    def __init__(self, fail=None):
        self.trees = {"n1": {"a": {"f": b"data"}}, "n2": {}}
        self.staging = {}
        self.calls = []
        self.fail = fail

    def steps(self):
        return datasets.MoveSteps(
            pull=self.pull,
            manifest=self.manifest,
            commit=self.commit,
            remove=self.remove,
            clean_partial=self.clean_partial,
            announce=lambda result: self.calls.append(("announce", result["dataset"])),
        )

    def _step(self, name):
        self.calls.append(name)
        if self.fail == name:
            raise datasets.MoveFailed(f"{name} broke")

    def pull(self, move):
        self._step("pull")
        self.staging[(move["to"], move["dataset"])] = dict(
            self.trees[move["from"]][move["dataset"]]
        )

    def manifest(self, node, name, staged):
        files = self.staging[(node, name)] if staged else self.trees[node][name]
        if staged and self.fail == "verify":
            files = {**files, "f": b"datX"}
        entries = {
            path: {"size": len(body), "sha256": str(hash(body))} for path, body in files.items()
        }
        return {"files": entries, "count": len(entries), "bytes": sum(map(len, files.values()))}

    def commit(self, move):
        self._step("commit")
        self.trees[move["to"]][move["dataset"]] = self.staging.pop((move["to"], move["dataset"]))

    def remove(self, node, name):
        self._step("remove")
        self.trees[node].pop(name, None)

    def clean_partial(self, node, name, committed):
        self.calls.append(("clean", node, committed))
        self.staging.pop((node, name), None)
        if committed:
            self.trees[node].pop(name, None)


MOVE = {"dataset": "a", "from": "n1", "to": "n2", "bytes": 4, "kind": "balance"}


def placed_store():
    store = datasets.Store(MemoryCache(), clock=lambda: 0)
    store.place("a", "n1", 4)
    return store


def test_a_move_switches_the_placement_before_it_removes_the_source():
    store, fleet = placed_store(), FakeFleet()
    result = datasets.execute_move(store, MOVE, fleet.steps())
    assert fleet.calls == ["pull", "commit", ("announce", "a"), "remove"]
    assert result["verified_files"] == 1
    assert store.placement("a")["node"] == "n2"
    assert fleet.trees == {"n1": {}, "n2": {"a": {"f": b"data"}}}
    assert store.journal() == {}


@pytest.mark.parametrize("step", ["pull", "verify", "commit"])
def test_a_move_that_fails_before_the_switch_keeps_the_source_and_recovery_cleans(step):
    store, fleet = placed_store(), FakeFleet(fail=step)
    with pytest.raises(datasets.MoveFailed):
        datasets.execute_move(store, MOVE, fleet.steps())
    assert store.placement("a")["node"] == "n1"
    assert fleet.trees["n1"] == {"a": {"f": b"data"}}
    assert "remove" not in fleet.calls
    assert store.journal()["a"]["stage"] == datasets.PULLING

    fleet.fail = None
    assert datasets.recover(store, fleet.steps()) == [
        {"dataset": "a", "action": "cleaned the partial copy on n2"}
    ]
    assert ("clean", "n2", False) in fleet.calls
    assert store.journal() == {}
    datasets.execute_move(store, MOVE, fleet.steps())
    assert fleet.trees == {"n1": {}, "n2": {"a": {"f": b"data"}}}


def test_a_move_interrupted_after_the_switch_is_finished_by_removing_the_source():
    store, fleet = placed_store(), FakeFleet(fail="remove")
    with pytest.raises(datasets.MoveFailed):
        datasets.execute_move(store, MOVE, fleet.steps())
    assert store.placement("a")["node"] == "n2"
    assert store.journal()["a"]["stage"] == datasets.SWITCHED
    recovered = datasets.recover(store, fleet.steps())
    assert recovered[0]["action"] == "kept in the journal", "a failed cleanup is tried again"
    fleet.fail = None
    assert datasets.recover(store, fleet.steps())[0]["action"] == "removed the source on n1"
    assert fleet.trees["n1"] == {}
    assert store.journal() == {}


def test_recovery_never_touches_a_move_of_the_run_holding_the_lease():
    store, fleet = placed_store(), FakeFleet(fail="commit")
    with pytest.raises(datasets.MoveFailed):
        datasets.execute_move(store, MOVE, fleet.steps(), run="run-a")
    assert store.journal()["a"]["run"] == "run-a"

    fleet.fail = None
    left = datasets.recover(store, fleet.steps(), live_run="run-a")

    assert left == [{"dataset": "a", "action": "left alone: run run-a is moving it"}]
    assert store.journal()["a"]["stage"] == datasets.PULLING
    assert not [call for call in fleet.calls if call[0] == "clean"]
    # Once that run no longer holds the lease, its entry is an interrupted move.
    assert datasets.recover(store, fleet.steps(), live_run="run-b")[0]["action"] == (
        "cleaned the partial copy on n2"
    )


def test_a_run_that_lost_its_lease_stops_before_changing_anything_more():
    store, fleet = placed_store(), FakeFleet()
    leased = iter([None])  # held for the first check, lost after the pull

    def still_leased():
        if next(leased, "lost") == "lost":
            raise datasets.MoveFailed("run run-a lost the rebalance lease")

    steps = dataclasses.replace(fleet.steps(), still_leased=still_leased)
    with pytest.raises(datasets.MoveFailed, match="lost the rebalance lease"):
        datasets.execute_move(store, MOVE, steps, run="run-a")

    assert "commit" not in fleet.calls
    assert store.placement("a")["node"] == "n1"
    assert fleet.trees["n1"] == {"a": {"f": b"data"}}


def test_a_run_that_loses_its_lease_after_the_switch_leaves_the_source_to_its_successor():
    store, fleet = placed_store(), FakeFleet()
    leased = iter([None, None, None])  # held up to the switch, lost before the removal

    def still_leased():
        if next(leased, "lost") == "lost":
            raise datasets.MoveFailed("run run-a lost the rebalance lease")

    steps = dataclasses.replace(fleet.steps(), still_leased=still_leased)
    with pytest.raises(datasets.MoveFailed, match="lost the rebalance lease"):
        datasets.execute_move(store, MOVE, steps, run="run-a")

    assert "remove" not in fleet.calls
    assert store.placement("a")["node"] == "n2"
    assert store.journal()["a"]["stage"] == datasets.SWITCHED
    assert fleet.trees["n1"] == {"a": {"f": b"data"}}, "the source stays for the successor"
    assert datasets.recover(store, fleet.steps(), live_run="run-b")[0]["action"] == (
        "removed the source on n1"
    )


class Fenced:
    """A store fenced by the rebalance lease of run-a, and the clock of that lease."""

    def __init__(self):
        self.now = [1000.0]
        self.lock = threading.Lock()
        self.lease = leases.Lease(
            MemoryCache(), self.lock, "eos/cluster", "rebalance_lease", "rebalance", 60,
            clock=lambda: self.now[0],
        )  # fmt: skip
        self.plain = datasets.Store(self.lease.cache, clock=lambda: 0)
        self.plain.place("a", "n1", 4)
        token = self.lease.take("run-a")["token"]
        self.store = self.plain.fenced(self.lock, self.lease.fence("run-a", token))

    def take_over(self):
        """run-a stalls past its lease; run-b takes it over."""
        self.now[0] += 61
        self.lease.take("run-b")


def test_a_fenced_store_writes_while_its_run_holds_the_lease():
    fenced = Fenced()
    fenced.store.write_journal(MOVE, datasets.PULLING, "run-a")
    fenced.store.switch(MOVE, 4, "run-a")
    assert fenced.plain.placement("a")["node"] == "n2"
    assert fenced.plain.journal()["a"]["stage"] == datasets.SWITCHED
    fenced.store.drop_journal("a")
    fenced.store.store_report("n2", report({"a": 4}))
    assert fenced.plain.journal() == {} and "n2" in fenced.plain.reports()


@pytest.mark.parametrize(
    "write",
    [
        lambda store: store.place("a", "n2", 4),
        lambda store: store.switch(MOVE, 4, "run-a"),
        lambda store: store.write_journal(MOVE, datasets.COMMITTED, "run-a"),
        lambda store: store.drop_journal("a"),
        lambda store: store.store_report("n1", report({"a": 4})),
    ],
)
def test_a_fenced_store_refuses_every_write_of_a_run_whose_lease_was_taken_over(write):
    fenced = Fenced()
    fenced.plain.write_journal(MOVE, datasets.PULLING, "run-a")
    before = copy.deepcopy(fenced.lease.cache.banks)
    fenced.take_over()
    before["eos/cluster"] = fenced.lease.cache.banks["eos/cluster"]  # run-b's lease

    with pytest.raises(leases.LeaseLost, match=r"run run-a \(token 1\) no longer holds .* run-b"):
        write(fenced.store)

    assert fenced.lease.cache.banks == before, "nothing written"
    assert fenced.store.placement("a")["node"] == "n1", "reads are not fenced"


def test_a_move_whose_lease_was_taken_over_before_the_switch_keeps_its_source_placed():
    fenced, fleet = Fenced(), FakeFleet()
    manifest = fleet.manifest

    def stalling_manifest(node, name, staged):
        if node == "n2" and not staged:  # the copy in place, checked right before the switch
            fenced.take_over()
        return manifest(node, name, staged)

    fleet.manifest = stalling_manifest
    with pytest.raises(leases.LeaseLost, match="run-b"):
        datasets.execute_move(fenced.store, MOVE, fleet.steps(), run="run-a")

    assert fenced.plain.placement("a")["node"] == "n1"
    assert fenced.plain.journal()["a"]["stage"] == datasets.COMMITTED
    assert "remove" not in fleet.calls
    assert fleet.trees["n1"] == {"a": {"f": b"data"}}


def test_a_move_whose_dataset_is_no_longer_on_its_source_is_refused():
    store, fleet = placed_store(), FakeFleet()
    store.place("a", "n3", 4)
    with pytest.raises(datasets.MoveFailed, match="placed on n3, not n1"):
        datasets.execute_move(store, MOVE, fleet.steps())
    assert fleet.calls == []


def test_waves_keep_order_and_never_share_a_node():
    moves = [
        {"from": "a", "to": "b"},
        {"from": "c", "to": "d"},
        {"from": "e", "to": "b"},
        {"from": "f", "to": "g"},
    ]
    assert datasets.waves(moves, 1) == [[move] for move in moves]
    assert datasets.waves(moves, 4) == [moves[:2], moves[2:]]


# --- a rebalance on the master: arguments, refusals, the lease, the reaction -------------------


class Minions:
    """
    The ``call`` a Rebalance gets: minions that answer ``eos_dataset.sizes`` with the reports
    in ``sizes`` (a node not in it does not answer) and record who was asked.
    """

    def __init__(self):
        self.sizes = {}
        self.asked = []

    def __call__(self, targets, fun, args=(), kwargs=None, timeout=None):
        self.asked.extend((node, fun) for node in targets)
        if fun != "eos_dataset.sizes":
            return {}
        return {node: master.Answer(self.sizes[node]) for node in targets if node in self.sizes}


@pytest.fixture
def fleet_master():
    """
    Rebalances over an in-memory registry and store with stored reports, whose nodes do not
    answer unless told to: n1 holds datasets a and b, n2 is empty, w1 is a web node.
    """
    from saltext.eos.utils.cluster import registry

    cache = MemoryCache()
    reg = registry.Registry(cache)
    for node_id in ("n1", "n2", "w1"):
        reg.preregister(node_id, registry.check_preregistration())
        reg.accept(node_id)
        reg.set_status(node_id, "active", "test")
    reg.store_assignment({"n1": ["data"], "n2": ["data"], "w1": ["web"]})
    store = datasets.Store(cache, clock=lambda: 0)
    store.store_report("n1", report({"a": 300, "b": 300}))
    store.store_report("n2", report({}))
    store.store_report("w1", report({}))
    store.place("a", "n1", 300)
    store.place("b", "n1", 300)
    fixture = SimpleNamespace(
        declared={"a": {}, "b": {}},
        settings=dict(datasets.REBALANCE_DEFAULTS),
        registry=reg,
        minions=Minions(),
        fired=[],
    )

    def rebalancer():
        return datasets.Rebalance(
            registry=reg,
            store=store,
            settings=fixture.settings,
            declared=datasets.declarations(layers(datasets=fixture.declared)),
            call=fixture.minions,
            fire=lambda tag, data: fixture.fired.append((tag, data)),
        )

    fixture.run = lambda **arguments: rebalancer().run(**arguments)
    fixture.react = lambda node, level=None: rebalancer().react(node, level)
    return fixture


def journal_of(fixture):
    return fixture.registry.cache.banks.get(datasets.JOURNAL_BANK, {})


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"threshold": 0}, "threshold: 0 is not a number of percentage points from 1 to 50"),
        ({"threshold": 51}, "threshold: 51"),
        ({"threshold": "ten"}, "threshold: 'ten'"),
        ({"dry_run": "no"}, "dry_run: 'no' is not true or false"),
        ({"exclude_nodes": ["n9"]}, "exclude_nodes: unknown node 'n9'"),
        ({"exclude_datasets": ["zz"]}, "exclude_datasets: unknown dataset 'zz'"),
    ],
)
def test_bad_arguments_are_refused_before_anything_moves(fleet_master, arguments, message):
    with pytest.raises(errors.InvalidInput) as err:
        fleet_master.run(**{"dry_run": False, **arguments})
    assert message in str(err.value)
    assert journal_of(fleet_master) == {}
    assert fleet_master.minions.asked == [], "no node was asked anything"


def test_a_dataset_pinned_to_a_node_of_another_role_is_a_configuration_error(fleet_master):
    fleet_master.declared = {"a": {"pin": "w1"}, "b": {}}
    with pytest.raises(errors.InvalidConfig, match="w1"):
        fleet_master.run(dry_run=False)
    assert journal_of(fleet_master) == {}


def test_a_dry_run_plans_and_a_failed_data_node_blocks_execution(fleet_master):
    plan = fleet_master.run()
    assert [(move["from"], move["to"]) for move in plan["moves"]] == [("n1", "n2")]
    assert plan["blocked"] == []
    assert "retcode" not in plan, "a plan is not a run"
    assert plan["unreported"] == ["n1", "n2", "w1"], "nobody answered: the stored reports count"
    fleet_master.registry.set_status("n2", "failed", "test")
    refused = fleet_master.run(dry_run=False)
    assert refused["blocked"] == ["node n2 is failed"]
    assert refused["moved"] == [] and refused["failed"] == []
    assert refused["retcode"] == 1
    assert journal_of(fleet_master) == {}


def test_a_second_execution_while_one_holds_the_lease_moves_nothing(fleet_master):
    held = rebalance_lease_held_by(fleet_master.registry, "rebalance-other")

    refused = fleet_master.run(dry_run=False)

    assert refused["moved"] == [] and refused["recovered"] == []
    assert "run rebalance-other holds the rebalance lease" in refused["blocked"][0]
    assert refused["retcode"] == 1
    assert journal_of(fleet_master) == {}
    held.release("rebalance-other")
    assert fleet_master.run(dry_run=True)["moves"], "a plan is still made"


def test_an_execution_releases_its_lease(fleet_master):
    from saltext.eos.utils.cluster import registry

    fleet_master.registry.set_status("n2", "failed", "test")  # blocked: nothing to move
    fleet_master.run(dry_run=False)

    cache = fleet_master.registry.cache
    assert cache.fetch(registry.CLUSTER_BANK, datasets.REBALANCE_LEASE_KEY) == {}


def node_answers(fleet_master, used):
    """n1 answers for itself, a report at ``used`` of 1000 bytes; the others stay silent."""
    fleet_master.minions.sizes = {"n1": report({"a": 300, "b": 300}, used=used)}
    return fleet_master.minions.asked


def test_the_reaction_plans_only_for_data_nodes_from_the_cleanup_level(fleet_master):
    asked = node_answers(fleet_master, used=760)  # 76 %: cleanup on the single profile
    assert "nothing to balance" in fleet_master.react("n1", level="warning")["comment"]
    assert fleet_master.react("w1", level="cleanup")["comment"] == "w1 is not a data node"
    assert asked == [], "neither needed to ask the node"
    reaction = fleet_master.react("n1", level="cleanup")
    assert asked[0] == ("n1", "eos_dataset.sizes"), "the node itself is asked first"
    assert reaction["measured_level"] == "cleanup"
    assert reaction["dry_run"] is True, "eos:rebalance:auto is false by default"
    assert len(reaction["moves"]) == 1
    assert journal_of(fleet_master) == {}


def test_a_forged_level_counts_for_nothing_the_node_measures_its_own(fleet_master):
    node_answers(fleet_master, used=600)  # 60 %: warning

    reaction = fleet_master.react("n1", level="emergency")

    assert reaction["measured_level"] == "warning"
    assert "nothing to balance" in reaction["comment"]
    assert "moves" not in reaction


def test_the_reaction_accepts_degrade_for_degraded(fleet_master):
    node_answers(fleet_master, used=760)
    assert fleet_master.react("n1", level="degrade")["level"] == "degraded"


def test_a_node_that_does_not_answer_is_not_rebalanced_for(fleet_master):
    reaction = fleet_master.react("n1", level="cleanup")
    assert reaction["comment"] == "n1 did not report its usage"
    assert journal_of(fleet_master) == {}


def test_above_automatic_up_to_the_reaction_only_plans_even_with_auto(fleet_master):
    fleet_master.settings["auto"] = True
    node_answers(fleet_master, used=950)  # critical, above the single scale's emergency

    reaction = fleet_master.react("n1", level="critical")

    assert reaction["automatic_up_to"] == "emergency"
    assert reaction["dry_run"] is True
    assert journal_of(fleet_master) == {}


@pytest.mark.parametrize("node", ["*", "data-*", "n1,n2", "n[12]"])
def test_the_reaction_refuses_a_node_id_with_targeting_characters(fleet_master, node):
    with pytest.raises(errors.InvalidInput):
        fleet_master.react(node, level="cleanup")
    assert fleet_master.minions.asked == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"capacity_bytes": 0}, "capacity_bytes 0"),
        ({"used_bytes": 2000}, "used_bytes 2000"),
        ({"used_bytes": True}, "used_bytes True"),
        ({"root": "relative"}, "root 'relative'"),
        ({"cleanup_percent": 150}, "cleanup_percent"),
        ({"datasets": {"a": -1}}, "datasets must map names to sizes"),
        ({"thresholds": None}, "thresholds None"),
    ],
)
def test_a_nodes_report_is_checked_before_it_is_stored(change, message):
    assert datasets.check_report("n1", report({"a": 1})) == report({"a": 1})
    with pytest.raises(datasets.InvalidDatasets) as err:
        datasets.check_report("n1", {**report({"a": 1}), **change})
    assert str(err.value).startswith("report of n1: ")
    assert message in str(err.value)


def test_an_unreachable_data_node_holds_moves_back_and_a_down_one_does_not():
    # Unreachable may come back any second with its replicas; down is out until it rejoins.
    records = [
        {"id": "n1", "status": "unreachable", "roles": ["data"]},
        {"id": "n2", "status": "down", "roles": []},
        {"id": "n3", "status": "active", "roles": ["data"]},
    ]
    assert datasets.blockers(records, ["data"]) == ["node n1 is unreachable"]


def test_unreachable_and_down_nodes_are_not_planned_and_their_datasets_not_moved():
    records = [
        {"id": "n1", "status": "unreachable", "roles": ["data"]},
        {"id": "n2", "status": "down", "roles": ["data"]},
        {"id": "n3", "status": "active", "roles": ["data"]},
    ]
    reports = {node_id: report({}) for node_id in ("n1", "n2", "n3")}
    placements = {"a": {"node": "n1", "bytes": 10}, "b": {"node": "n2", "bytes": 5}}
    nodes, planned, _ = datasets.planner_inputs(records, reports, placements, declared("a", "b"))
    assert [node["id"] for node in nodes] == ["n3"]
    assert planned == []


def test_datasets_on_unreachable_and_down_nodes_are_unavailable():
    records = [
        {"id": "n1", "status": "unreachable"},
        {"id": "n2", "status": "down"},
        {"id": "n3", "status": "active"},
        {"id": "n4", "status": "drained"},
    ]
    placements = {
        "a": {"node": "n1", "bytes": 1},
        "b": {"node": "n2", "bytes": 1},
        "c": {"node": "n3", "bytes": 1},
        "orphan": {"node": "gone", "bytes": 1},
    }
    assert datasets.unavailable_datasets(records, placements) == {
        "a": {"node": "n1", "status": "unreachable"},
        "b": {"node": "n2", "status": "down"},
    }
    rows = datasets.fleet_report(records, {}, placements)
    assert {node: row["available"] for node, row in rows.items()} == {
        "n1": False,
        "n2": False,
        "n3": True,
        "n4": True,
    }
