"""
The registry in Salt's real cache backends: localfs, and redis with a real redis-server.

Registrations from many threads and processes at once must all be recorded, with exact
counts; a new cache object (a restarted master, or a second master on the same redis) sees
everything; the ext_pillar, loaded by Salt's pillar loader, reads one record and the summary.
"""

import concurrent.futures
import multiprocessing

import pytest
import salt.cache
import salt.loader

from saltext.eos.utils.cluster import registry

AUTO = registry.AcceptancePolicy(auto=True)
MANUAL = registry.AcceptancePolicy()


def open_registry(opts, policy_events=None):
    return registry.Registry(
        salt.cache.factory(opts),
        lock=registry.FileLock(f"{opts['cachedir']}.lock"),
        on_change=(lambda *event: policy_events.append(event))
        if policy_events is not None
        else None,
    )


def registration(cpu=4, sent_at_ms=1):
    return registry.Registration(
        resources={
            "cpu_cores": cpu,
            "memory_bytes": 8 * 1024**3,
            "disks": [],
            "network": {"interfaces": [], "link_speed_mbps": None},
            "failure_domain": {"datacenter": None, "rack": None, "host": None},
            "labels": {},
            "hostname": "h",
        },
        health={"passed": True, "checks": []},
        preferred_role=None,
        sent_at_ms=sent_at_ms,
    )


def never_matches(node_id, expression):
    return False


def register_many(opts, node_ids):
    """Register nodes with a registry of their own, as one master process would."""
    reg = open_registry(opts)
    for node_id in node_ids:
        reg.register(node_id, registration(), MANUAL, never_matches)
    return len(node_ids)


def test_one_key_per_node_in_the_nodes_bank(master_opts):
    reg = open_registry(master_opts)
    reg.register("alpha", registration(cpu=2), MANUAL, never_matches)
    reg.register("beta", registration(cpu=8), MANUAL, never_matches)
    cache = salt.cache.factory(master_opts)
    assert sorted(cache.list(registry.NODES_BANK)) == ["alpha", "beta"]
    assert cache.fetch(registry.NODES_BANK, "alpha")["resources"]["cpu_cores"] == 2
    assert cache.fetch(registry.NODES_BANK, "beta")["resources"]["cpu_cores"] == 8
    summary = cache.fetch(registry.CLUSTER_BANK, registry.SUMMARY_KEY)
    assert summary["counts"]["accepted"] == 1  # alpha bootstrapped the cluster
    assert summary["counts"]["pending"] == 1


def test_parallel_threads_lose_no_registration(master_opts):
    first = open_registry(master_opts)
    first.register("first", registration(), MANUAL, never_matches)
    batches = [[f"t{worker}-{i}" for i in range(10)] for worker in range(8)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        done = sum(pool.map(lambda ids: register_many(master_opts, ids), batches))
    assert done == 80
    reg = open_registry(master_opts)
    assert len(reg.node_ids()) == 81
    summary = reg.summary()
    assert summary["counts"]["pending"] == 80
    assert summary["node_count"] == 1


def test_parallel_processes_lose_no_registration(master_opts):
    open_registry(master_opts).register("first", registration(), MANUAL, never_matches)
    batches = [[f"p{worker}-{i}" for i in range(15)] for worker in range(4)]
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        done = sum(pool.map(register_many, [master_opts] * len(batches), batches))
    assert done == 60
    reg = open_registry(master_opts)
    assert reg.summary()["counts"]["pending"] == 60
    assert {r["status"] for r in reg.records() if r["id"] != "first"} == {"pending"}


def test_concurrent_updates_of_one_node_keep_the_newest(master_opts):
    reg = open_registry(master_opts)
    reg.register("n", registration(cpu=1, sent_at_ms=1), MANUAL, never_matches)
    stamps = list(range(2, 42))
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda ms: open_registry(master_opts).register(
                    "n", registration(cpu=ms, sent_at_ms=ms), MANUAL, never_matches
                ),
                stamps,
            )
        )
    assert reg.get("n")["resources"]["cpu_cores"] == 41


def test_a_new_cache_object_sees_every_record(master_opts):
    """What a restarted master, or a second master on the same redis, reads."""
    events = []
    reg = open_registry(master_opts, events)
    for index in range(5):
        reg.register(f"n{index}", registration(), AUTO, never_matches)
    reg.set_status("n0", "active", "configured")
    reg.store_assignment({"n0": ["edge"], "n1": ["core"]})
    before = (reg.records(), reg.summary(), reg.assignment())

    reopened = open_registry(master_opts)
    assert (reopened.records(), reopened.summary(), reopened.assignment()) == before
    assert reopened.summary()["scale"] == "medium"
    assert ("n0", "active", events[-1][2]) == events[-1]


def test_remove_deletes_the_key(master_opts):
    reg = open_registry(master_opts)
    reg.register("gone", registration(), MANUAL, never_matches)
    reg.remove("gone")
    assert "gone" not in salt.cache.factory(master_opts).list(registry.NODES_BANK)
    assert reg.summary()["node_count"] == 0


class CountingCache:
    """A real cache that counts how it is read."""

    def __init__(self, cache):
        self.cache = cache
        self.calls = []

    def __getattr__(self, name):
        method = getattr(self.cache, name)

        def counted(*args, **kwargs):
            self.calls.append((name, args[0] if args else None))
            return method(*args, **kwargs)

        return counted


@pytest.fixture
def pillar_of(master_opts, monkeypatch):
    """Compile the eos ext_pillar of a minion through Salt's pillar loader; count cache use."""
    caches = []
    real_factory = salt.cache.factory

    def counting_factory(*args, **kwargs):
        caches.append(CountingCache(real_factory(*args, **kwargs)))
        return caches[-1]

    monkeypatch.setattr(salt.cache, "factory", counting_factory)

    def compile_for(minion_id, pillar=None):
        # Loaded per call: a test may change the master config first.
        opts = {**master_opts, "ext_pillar": [{"eos": {}}]}
        ext_pillar = salt.loader.pillars(opts, {})["eos"]
        caches.clear()
        result = ext_pillar(minion_id, pillar or {})
        return result["eos"], [call for cache in caches for call in cache.calls]

    return compile_for


def test_the_pillar_reads_one_record_and_the_summary(master_opts, pillar_of):
    reg = open_registry(master_opts)
    for index in range(30):
        reg.register(f"n{index:02}", registration(), AUTO, never_matches)
    reg.store_assignment({"n03": ["data"]})
    eos, calls = pillar_of("n03")
    assert calls == [
        ("fetch", registry.CLUSTER_BANK),
        ("fetch", registry.NODES_BANK),
    ]
    assert eos["scale"] == "distributed"
    assert eos["node_count"] == 30
    assert eos["roles"] == ["data"]
    assert eos["node_status"] == "accepted"
    assert eos["thresholds"] == {
        "warning": 70,
        "compress": 80,
        "cleanup": 85,
        "degraded": 90,
        "emergency": 93,
        "critical": 95,
    }
    assert eos["profile"]["monitoring_interval"] == 300


def test_the_pillar_keeps_pillar_overrides_and_applies_role_overrides(master_opts, pillar_of):
    master_opts["eos"] = {"thresholds": {"roles": {"data": {"critical": 92}}}}
    reg = open_registry(master_opts)
    reg.register("n1", registration(), AUTO, never_matches)
    reg.store_assignment({"n1": ["data"]})
    eos, _ = pillar_of("n1", {"eos": {"thresholds": {"warning": 50}}})
    assert eos["thresholds"]["warning"] == 50
    assert eos["thresholds"]["critical"] == 92
    assert eos["scale"] == "single"


def test_the_pillar_of_an_unknown_minion(pillar_of):
    eos, _ = pillar_of("stranger")
    assert eos["roles"] == []
    assert eos["node_status"] is None
    assert (eos["scale"], eos["node_count"]) == ("single", 0)
