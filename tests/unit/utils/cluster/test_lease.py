"""The cluster-wide lease: one run at a time, expiry, renewal, a stale run's renewal refused."""

import threading

import pytest

from saltext.eos.utils.cluster import lease as leases
from tests.support.memory_cache import MemoryCache


@pytest.fixture
def lease(clock):
    return leases.Lease(
        cache=MemoryCache(),
        lock=threading.Lock(),
        bank="eos/cluster",
        key="rebalance_lease",
        kind="rebalance",
        seconds=60,
        clock=clock,
    )


def test_a_free_lease_is_taken_and_names_its_run(lease, clock):
    taken = lease.take("run-a", by="test")

    assert taken == {
        "run": "run-a",
        "kind": "rebalance",
        "by": "test",
        "taken_at": clock.now,
        "expires_at": clock.now + 60,
    }
    assert lease.holder()["run"] == "run-a"


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
