"""
The lock and the join lease that several masters share, on Salt's real cache backends:
localfs, redis with a real redis-server, and etcd with a real etcd (Salt's cache on its v2
API, the lock on its v3 leases).

"Two masters" are two master configs with their own cachedirs on one cache: with localfs they
are one master's processes (the file lock is in the cachedir), with redis or etcd they share
nothing but the server, as two machines would.
"""

import concurrent.futures
import logging
import multiprocessing
import threading
import time

import pytest
import salt.cache

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


LOCKS = {"localfs": registry.FileLock, "redis": registry.RedisLock, "etcd": registry.EtcdLock}
# The backends whose lock lives in a shared store, with a TTL.
SHARED = ["redis", "etcd"]


def test_the_lock_follows_the_cache_backend(master_opts):
    # The registry journals what is written under it: the backend's lock is inside.
    lock = registry.open_registry(master_opts).lock.lock
    assert type(lock) is LOCKS[master_opts["cache"]]


def test_the_lock_tells_the_time_of_its_store(master_opts):
    lock = registry.open_registry(master_opts).lock
    first = lock.now()
    # One machine here: the store's clock is this one's.
    assert abs(first - time.time()) < 2
    time.sleep(0.05)
    assert lock.now() >= first + 0.04


def count_under_the_lock(opts, times):
    """Read, increment and store a counter in the cache ``times`` times, each under the lock."""
    lock = registry.open_registry(opts).lock
    cache = salt.cache.factory(opts)
    for _ in range(times):
        with lock:
            value = cache.fetch("eos/test", "counter") or {"n": 0}
            time.sleep(0.001)  # widen the window a missing lock would lose an update in
            cache.store("eos/test", "counter", {"n": value["n"] + 1})
    return times


def test_processes_of_two_masters_count_exactly_under_the_lock(master_opts, tmp_path):
    masters = [master_opts, second_master(master_opts, tmp_path)]
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        done = sum(pool.map(count_under_the_lock, [masters[w % 2] for w in range(4)], [20] * 4))
    assert done == 80
    assert salt.cache.factory(master_opts).fetch("eos/test", "counter") == {"n": 80}


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


def shared_lock(opts, **limits):
    layers = config.Layers([("master config", {"coordination": limits})])
    return registry.lock_for(opts, layers)


@pytest.mark.parametrize("master_opts", SHARED, indirect=True)
def test_a_busy_shared_lock_is_refused_after_the_timeout_naming_the_key(master_opts, tmp_path):
    holder = shared_lock(master_opts)
    waiter = shared_lock(second_master(master_opts, tmp_path), lock_timeout_seconds=1)
    with holder:
        started = time.monotonic()
        with pytest.raises(registry.RegistryBusy, match=f"{waiter.key} in "), waiter:
            pass
        assert time.monotonic() - started >= 1
    with waiter:  # free again: the waiter left nothing behind
        pass


@pytest.mark.parametrize("master_opts", SHARED, indirect=True)
def test_a_shared_lock_held_past_its_ttl_frees_itself_and_its_late_release_frees_nothing(
    master_opts, tmp_path, caplog
):
    # etcd's shortest lease is 2 s by default (it grants at least that).
    stalled = shared_lock(master_opts, lock_ttl_seconds=2)
    successor = shared_lock(second_master(master_opts, tmp_path), lock_timeout_seconds=10)
    stalled.__enter__()
    started = time.monotonic()
    successor.__enter__()  # waits until the stalled (or dead) master's lock frees itself
    assert time.monotonic() - started >= 1.5
    held = successor.client.get(successor.key)
    assert held is not None
    # The stalled master wakes up and leaves: it is told, and the successor keeps the lock.
    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(registry.LockLost, match="expired while held"),
    ):
        stalled.__exit__(None, None, None)
    assert "expired while held" in caplog.text
    assert successor.client.get(successor.key) == held
    successor.__exit__(None, None, None)
    assert successor.client.get(successor.key) is None


@pytest.mark.parametrize("master_opts", SHARED, indirect=True)
def test_threads_sharing_one_lock_object_each_hold_their_own_token(master_opts):
    lock = shared_lock(master_opts)
    order = []

    def wait_then_hold():
        with lock:
            order.append("waiter holds it")

    with lock:
        waiter = threading.Thread(target=wait_then_hold)
        waiter.start()
        time.sleep(0.2)
        order.append("holder leaves")
    waiter.join(timeout=10)
    assert order == ["holder leaves", "waiter holds it"]
    with lock:  # both released with their own tokens: free again
        pass


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
