"""The registry's change journal and the reader's view it keeps current (RegistryView)."""

import threading

import pytest

from saltext.eos.utils.cluster import registry
from tests.support.memory_cache import MemoryCache

AUTO = registry.AcceptancePolicy(auto=True)


class CountingCache(MemoryCache):
    """Counts the node records fetched: what a reader pays per read."""

    def __init__(self):
        super().__init__()
        self.record_fetches = 0

    def fetch(self, bank, key):
        if bank == registry.NODES_BANK:
            self.record_fetches += 1
        return super().fetch(bank, key)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def never_matches(node_id, expression):
    return False


@pytest.fixture
def cache():
    return CountingCache()


@pytest.fixture
def writer(cache):
    """The master's registry: every write goes through it."""
    return registry.Registry(cache)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def view(cache, clock):
    """The API's copy, on the same cache, as another process would open it."""
    return registry.RegistryView(registry.Registry(cache), clock=clock)


def add(writer, *node_ids):
    for node_id in node_ids:
        writer.note_pending_key(node_id, AUTO, never_matches)


def test_every_write_moves_the_generation_and_names_the_record(writer, cache):
    add(writer, "n1")
    first = cache.fetch(registry.CLUSTER_BANK, registry.GENERATION_KEY)
    add(writer, "n2")
    second = cache.fetch(registry.CLUSTER_BANK, registry.GENERATION_KEY)
    journal = cache.fetch(registry.CLUSTER_BANK, registry.JOURNAL_KEY)
    assert second["epoch"] == first["epoch"]
    assert second["generation"] == first["generation"] + 1
    assert [second["generation"], "n2"] in journal["changes"]


def test_an_unchanged_registry_costs_no_record_fetch(writer, view, cache):
    add(writer, "n1", "n2", "n3")
    first = view.snapshot()
    cache.record_fetches = 0
    again = view.snapshot()
    assert again is first
    assert cache.record_fetches == 0


def test_a_write_is_read_at_once_and_costs_only_its_record(writer, view, cache):
    add(writer, *(f"n{i:02}" for i in range(20)))
    before = view.snapshot()
    writer.set_status("n07", "active", "joined")
    cache.record_fetches = 0
    after = view.snapshot()
    assert after.records["n07"]["status"] == "active"
    assert before.records["n07"]["status"] == "accepted", "a reading given out never changes"
    assert after.tag != before.tag
    assert cache.record_fetches == 1
    assert after.summary["counts"]["active"] == 1


def test_added_and_removed_records_keep_the_ids_sorted(writer, view):
    add(writer, "b", "d")
    view.snapshot()
    add(writer, "a", "c")
    writer.remove("d", "gone")
    reading = view.snapshot()
    assert reading.ids == ("a", "b", "c")
    assert set(reading.records) == {"a", "b", "c"}


def test_a_journal_that_no_longer_reaches_back_reloads_everything(writer, view, monkeypatch):
    monkeypatch.setattr(registry.journal, "JOURNAL_LIMIT", 3)
    add(writer, "n1")
    view.snapshot()
    loads = view.full_reloads
    add(writer, "n2", "n3", "n4", "n5")
    reading = view.snapshot()
    assert view.full_reloads == loads + 1
    assert reading.ids == ("n1", "n2", "n3", "n4", "n5")


def test_a_flushed_and_restarted_bank_is_a_new_epoch(writer, view, cache):
    add(writer, "n1")
    old = view.snapshot()
    cache.flush(registry.CLUSTER_BANK)
    cache.flush(registry.NODES_BANK)
    add(writer, "n9")
    reading = view.snapshot()
    assert reading.epoch != old.epoch
    assert reading.ids == ("n9",)


def test_records_written_before_the_journal_existed_are_read(cache, view):
    cache.store(registry.NODES_BANK, "old", {"id": "old", "status": "active"})
    reading = view.snapshot()
    assert reading.ids == ("old",)
    # The view started the journal, so the next read costs one small fetch, not a reload.
    assert view.snapshot() is reading


def test_the_periodic_reload_catches_what_the_journal_missed(writer, view, cache, clock):
    add(writer, "n1")
    view.snapshot()
    # A writer that died between its record and its journal entry.
    cache.store(registry.NODES_BANK, "n1", {**writer.get("n1"), "status": "failed"})
    assert view.snapshot().records["n1"]["status"] == "accepted"
    clock.now += registry.FULL_RELOAD_SECONDS + 1
    assert view.snapshot().records["n1"]["status"] == "failed"


def test_readers_go_on_with_the_journal_while_one_reloads(writer, cache, clock):
    add(writer, "n1")
    release = threading.Event()
    entered = threading.Event()

    class SlowRegistry(registry.Registry):
        def records(self, status=None):
            if view.full_reloads:  # the first load is quick; the periodic one waits
                entered.set()
                release.wait(10)
            return super().records(status)

    view = registry.RegistryView(SlowRegistry(cache), clock=clock)
    view.snapshot()
    clock.now += registry.FULL_RELOAD_SECONDS + 1
    reloading = threading.Thread(target=view.snapshot)
    reloading.start()
    assert entered.wait(10)
    add(writer, "n2")
    reading = view.snapshot()  # would wait for the reload if it held the view's lock
    release.set()
    reloading.join(10)
    assert reading.ids == ("n1", "n2")
    assert view.snapshot().ids == ("n1", "n2")


def test_a_failed_write_still_journals_what_it_stored(writer, view, cache):
    add(writer, "n1")
    view.snapshot()
    with pytest.raises(RuntimeError), writer.lock:
        writer.lock.touch("n1")
        cache.store(registry.NODES_BANK, "n1", {**writer.get("n1"), "status": "failed"})
        raise RuntimeError("the writer broke after storing")
    assert view.snapshot().records["n1"]["status"] == "failed"
