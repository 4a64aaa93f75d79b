"""
The cluster-wide lease: one run at a time, expiry, renewal, a stale run's renewal refused,
fencing tokens and the fence a write calls, and whose clock the lease reads.
"""

import threading
import time

import pytest

from saltext.eos.utils.cluster import lease as leases
from tests.support.clock import ClockedLock
from tests.support.memory_cache import MemoryCache


def new_lease(clock, cache=None, lock=None, **fields):
    return leases.Lease(
        cache=MemoryCache() if cache is None else cache,
        lock=threading.Lock() if lock is None else lock,
        bank="eos/cluster",
        key="rebalance_lease",
        kind="rebalance",
        seconds=60,
        **({"clock": clock} if clock is not None else {}),
        **fields,
    )


@pytest.fixture
def lease(clock):
    return new_lease(clock, master="m1")


def test_a_free_lease_is_taken_and_names_its_run_its_master_and_its_token(lease, clock):
    taken = lease.take("run-a", by="test")

    assert taken == {
        "run": "run-a",
        "kind": "rebalance",
        "master": "m1",
        "token": 1,
        "by": "test",
        "taken_at": clock.now,
        "expires_at": clock.now + 60,
    }
    assert lease.holder() == taken
    assert lease.cache.fetch("eos/cluster", "rebalance_lease_token") == {"token": 1}


def test_a_second_run_is_refused_while_the_first_holds_it(lease):
    lease.take("run-a")

    with pytest.raises(leases.LeaseBusy, match="the rebalance run run-a holds") as busy:
        lease.take("run-b")

    assert busy.value.holder["run"] == "run-a"
    assert lease.holder()["run"] == "run-a"


def test_the_same_run_may_take_it_again(lease):
    lease.take("run-a")
    assert lease.take("run-a")["run"] == "run-a"


def test_an_expired_lease_is_taken_over(lease, clock):
    lease.take("run-a")
    clock.now += 61

    assert lease.take("run-b")["run"] == "run-b"


def test_renewal_keeps_the_lease_alive(lease, clock):
    lease.take("run-a")
    clock.now += 50
    lease.renew("run-a")
    clock.now += 50

    with pytest.raises(leases.LeaseBusy):
        lease.take("run-b")


def test_a_run_that_lost_its_lease_cannot_renew_it(lease, clock):
    lease.take("run-a")
    clock.now += 61
    lease.take("run-b")

    with pytest.raises(leases.LeaseLost, match="run run-a lost the rebalance lease"):
        lease.renew("run-a")
    assert lease.holder()["run"] == "run-b"


def test_release_frees_only_the_holders_lease(lease):
    lease.take("run-a")
    lease.release("run-b")
    assert lease.holder()["run"] == "run-a"

    lease.release("run-a")
    assert lease.holder() is None


def test_two_runs_racing_get_one_lease(lease):
    barrier = threading.Barrier(8)
    winners = []

    def contend(run):
        barrier.wait()
        try:
            lease.take(run)
            winners.append(run)
        except leases.LeaseBusy:
            pass

    threads = [threading.Thread(target=contend, args=(f"run-{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(winners) == 1
    assert lease.holder()["run"] == winners[0]


# --- fencing tokens ---------------------------------------------------------------------------


def test_every_new_holder_gets_a_token_above_every_earlier_one(lease, clock):
    assert lease.take("run-a")["token"] == 1
    lease.release("run-a")
    assert lease.take("run-b")["token"] == 2, "the counter outlives a release"
    clock.now += 61
    assert lease.take("run-c")["token"] == 3, "a take-over is a new holder"
    # Another master's lease object on the same cache continues the same counter.
    other = new_lease(clock, cache=lease.cache, lock=lease.lock, master="m2")
    other.release("run-c")
    taken = other.take("run-d")
    assert (taken["token"], taken["master"]) == (4, "m2")


def test_a_renewal_and_a_second_take_by_the_same_run_keep_its_token(lease, clock):
    taken = lease.take("run-a", by="first")
    clock.now += 50
    renewed = lease.renew("run-a")
    clock.now += 50
    again = lease.take("run-a", by="second")

    assert renewed["token"] == again["token"] == taken["token"] == 1
    assert again["taken_at"] == taken["taken_at"], "the same holding"
    assert again["expires_at"] == clock.now + 60
    assert again["by"] == "second"
    assert lease.cache.fetch("eos/cluster", "rebalance_lease_token") == {"token": 1}


def test_a_record_written_before_tokens_gets_one_on_renewal_and_a_higher_one_on_take_over(
    lease, clock
):
    lease.cache.store(
        "eos/cluster", "rebalance_lease", {"run": "old", "expires_at": clock.now + 60}
    )
    assert lease.renew("old")["token"] == 1
    clock.now += 61
    record, replaced = lease.acquire("new")
    assert (replaced["run"], replaced["token"], record["token"]) == ("old", 1, 2)


def test_acquire_names_the_expired_lease_it_replaced(lease, clock):
    assert lease.acquire("run-a")[1] is None
    assert lease.acquire("run-a")[1] is None, "its own lease replaces nothing"
    clock.now += 61
    record, replaced = lease.acquire("run-b")
    assert replaced["run"] == "run-a" and replaced["token"] == 1
    assert record["run"] == "run-b" and record["token"] == 2


def test_the_fence_lets_the_holder_write(lease):
    token = lease.take("run-a")["token"]
    with lease.lock:
        assert lease.fence("run-a")()["run"] == "run-a"
        assert lease.fence("run-a", token)()["token"] == token


def test_a_stale_holder_is_fenced_off_once_another_run_took_over_its_expired_lease(lease, clock):
    token = lease.take("run-a")["token"]
    fence = lease.fence("run-a", token)  # made before the stall, checked after it
    clock.now += 61
    lease.take("run-b")

    with pytest.raises(leases.LeaseLost) as lost:
        fence()

    assert str(lost.value) == (
        "run run-a (token 1) no longer holds the rebalance lease: "
        "run run-b (token 2, master m1) holds it"
    )
    assert lost.value.holder["run"] == "run-b"


def test_an_expired_lease_fences_its_run_off_even_before_anyone_took_it_over(lease, clock):
    lease.take("run-a")
    clock.now += 60
    with pytest.raises(leases.LeaseLost, match=r"run run-a no longer holds .*: it expired 0 s ago"):
        lease.fence("run-a")()
    clock.now -= 1
    lease.fence("run-a")()


def test_the_fence_of_an_earlier_holding_refuses_a_later_one_of_the_same_run(lease):
    token = lease.take("run-a")["token"]
    lease.release("run-a")
    lease.take("run-a")

    with pytest.raises(leases.LeaseLost, match="it holds it again, with token 2"):
        lease.fence("run-a", token)()
    lease.release("run-a")
    with pytest.raises(leases.LeaseLost, match="nobody holds it"):
        lease.fence("run-a")()


def test_a_busy_lease_names_its_master_and_token(lease):
    lease.take("run-a")
    with pytest.raises(
        leases.LeaseBusy, match=r"run-a holds the rebalance lease \(master m1, token 1"
    ):
        lease.take("run-b")


def test_a_lost_renewal_names_the_holder(lease, clock):
    lease.take("run-a")
    clock.now += 61
    lease.take("run-b")
    with pytest.raises(
        leases.LeaseLost, match=r"\(run run-b \(token 2, master m1\) holds it\)"
    ) as lost:
        lease.renew("run-a")
    assert lost.value.holder["token"] == 2


def test_a_renewal_expecting_other_details_is_refused(lease):
    lease.take("run-a", node="n1")
    assert lease.renew("run-a", node="n1")["node"] == "n1"
    with pytest.raises(leases.LeaseLost):
        lease.renew("run-a", node="n2")


# --- whose clock ------------------------------------------------------------------------------


def test_the_lease_reads_the_clock_of_its_lock_when_the_lock_has_one(clock):
    lease = new_lease(None, lock=ClockedLock(clock))
    assert lease.take("run-a")["expires_at"] == clock.now + 60
    clock.now += 61
    assert lease.take("run-b")["token"] == 2, "expired by the lock's clock"
    fence = lease.fence("run-b")
    clock.now += 61
    with lease.lock, pytest.raises(leases.LeaseLost, match="expired 1 s ago"):
        fence()


def test_a_lock_without_a_clock_leaves_the_host_clock_and_a_given_clock_wins(clock):
    assert new_lease(None).clock is time.time
    assert new_lease(clock, lock=ClockedLock(lambda: 0.0)).take("run-a")["taken_at"] == clock.now
