"""
The lock and the join lease that several masters share, on Salt's real cache backends:
localfs, and redis with a real redis-server.

"Two masters" are two master configs with their own cachedirs on one cache: with localfs they
are one master's processes (the file lock is in the cachedir), with redis they share nothing
but the redis server, as two machines would.
"""

import concurrent.futures
import multiprocessing
import threading
import time

import pytest

from saltext.eos.utils import config
from saltext.eos.utils.cluster import join
from saltext.eos.utils.cluster import registry
from tests.functional.test_registry_cache import MANUAL
from tests.functional.test_registry_cache import never_matches
from tests.functional.test_registry_cache import registration


def second_master(opts, tmp_path):
    """The opts of another master on the same cache: its own cachedir, hence its own disk."""
    if opts["cache"] == "localfs":
        return opts  # one disk: the second master is another process of the same one
    return {**opts, "cachedir": str(tmp_path / "second-master")}


def register_many(opts, node_ids):
    reg = registry.open_registry(opts)
    for node_id in node_ids:
        reg.register(node_id, registration(), MANUAL, never_matches)
    return len(node_ids)


def test_the_lock_follows_the_cache_backend(master_opts):
    lock = registry.open_registry(master_opts).lock
    expected = registry.RedisLock if master_opts["cache"] == "redis" else registry.FileLock
    assert isinstance(lock, expected)


def test_two_masters_registering_at_once_keep_the_counts_exact(master_opts, tmp_path):
    masters = [master_opts, second_master(master_opts, tmp_path)]
    registry.open_registry(masters[0]).register("first", registration(), MANUAL, never_matches)
    batches = [[f"m{worker}-{i}" for i in range(15)] for worker in range(4)]
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        done = sum(pool.map(register_many, [masters[worker % 2] for worker in range(4)], batches))
    assert done == 60
    for opts in masters:
        reg = registry.open_registry(opts)
        # Exact from the summary alone: no recount was needed.
        assert reg.summary()["counts"]["pending"] == 60
        assert reg.summary()["counts"]["accepted"] == 1
        assert len(reg.node_ids()) == 61


def test_the_lock_excludes_the_other_masters(master_opts, tmp_path):
    first = registry.open_registry(master_opts).lock
    second = registry.open_registry(second_master(master_opts, tmp_path)).lock
    inside = []

    def hold(lock, name):
        for _ in range(30):
            with lock:
                inside.append(name)
                assert inside == [name], inside
                time.sleep(0.001)
                inside.remove(name)

    threads = [threading.Thread(target=hold, args=pair) for pair in ((first, "a"), (second, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert inside == []


def redis_lock(opts, **limits):
    layers = config.Layers([("master config", {"coordination": limits})])
    return registry.lock_for(opts, layers)


@pytest.mark.parametrize("master_opts", ["redis"], indirect=True)
def test_a_busy_redis_lock_is_refused_after_the_timeout_naming_the_key(master_opts):
    holder = redis_lock(master_opts)
    waiter = redis_lock(master_opts, lock_timeout_seconds=1)
    with holder:
        started = time.monotonic()
        with pytest.raises(registry.RegistryBusy, match="eos:lock:registry"), waiter:
            pass
        assert time.monotonic() - started >= 1


@pytest.mark.parametrize("master_opts", ["redis"], indirect=True)
def test_a_redis_lock_held_past_its_ttl_frees_itself_and_its_late_release_frees_nothing(
    master_opts,
):
    stalled = redis_lock(master_opts, lock_ttl_seconds=1)
    successor = redis_lock(master_opts, lock_timeout_seconds=5)
    stalled.__enter__()
    time.sleep(1.2)  # a master stalled (or died) inside the lock
    successor.__enter__()  # the lock freed itself
    held = stalled.client.get(successor.key)
    # The stalled master wakes up and leaves: it is told, and the successor keeps the lock.
    with pytest.raises(registry.LockLost, match="expired while held"):
        stalled.__exit__(None, None, None)
    assert stalled.client.get(successor.key) == held
    successor.__exit__(None, None, None)
    assert stalled.client.get(successor.key) is None


def join_flow(opts, now, lease_seconds=30, lease_wait=5):
    """A join flow on ``opts`` whose clock is ``now[0]``; waiting moves that clock on."""
    layers = config.Layers(
        [("master config", {"join": {"lease_seconds": lease_seconds, "lease_wait": lease_wait}})]
    )
    return join.Join(
        registry=registry.open_registry(opts),
        call=lambda *args, **kwargs: {},
        fire=lambda tag, data: None,
        layers=layers,
        settings=join.settings(layers),
        clock=lambda: now[0],
        sleep=lambda seconds: now.__setitem__(0, now[0] + seconds),
    )


def test_a_stale_lease_holder_cannot_store_an_assignment(master_opts, tmp_path):
    now = [1000.0]
    first = join_flow(master_opts, now)
    second = join_flow(second_master(master_opts, tmp_path), now)
    first.registry.register("n1", registration(), MANUAL, never_matches)

    first.take_lease("n1", "run-a")
    token_a = first.lease()["token"]
    # run-a's master stalls past the lease; the other master's run takes over.
    now[0] += 31
    second.take_lease("n1", "run-b")
    assert second.lease()["token"] > token_a

    with pytest.raises(join.NotOwner, match="run run-a no longer holds the join lease"):
        first.registry.store_assignment({"n1": ["monolith"]}, fence=first.fence("run-a"))
    assert first.registry.assignment() is None

    stored = second.registry.store_assignment({"n1": ["monolith"]}, fence=second.fence("run-b"))
    assert stored["version"] == 1
    assert first.registry.get("n1")["roles"] == ["monolith"]


def test_a_lease_renewed_in_time_stays_with_its_run(master_opts, tmp_path):
    now = [1000.0]
    first = join_flow(master_opts, now)
    second = join_flow(second_master(master_opts, tmp_path), now)
    first.registry.register("n1", registration(), MANUAL, never_matches)
    first.take_lease("n1", "run-a")
    token = first.lease()["token"]
    for _ in range(3):
        now[0] += 20
        first.take_lease("n1", "run-a")  # a renewal: the same run, the same token
    assert first.lease()["token"] == token
    # Renewed 20 s ago, good for 30: the other master waits its lease_wait (5 s) in vain.
    with pytest.raises(join.JoinFailed, match="still holds the lease"):
        second.take_lease("n2", "run-b")
    first.registry.store_assignment({"n1": ["monolith"]}, fence=first.fence("run-a"))
    first.release_lease("run-a")
    second.take_lease("n2", "run-b")
    assert second.lease()["token"] == token + 1
