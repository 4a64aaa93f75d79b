"""The bounded, persistent sample history."""

import os
import struct

from saltext.eos.utils import history


def test_samples_survive_a_new_instance(tmp_path):
    store = history.History(tmp_path, min_interval_seconds=0)
    store.record("/", 10, 100, now=1000)
    store.record("/", 20, 100, now=1060)
    assert history.History(tmp_path).samples("/", now=1060) == [(1000, 10, 100), (1060, 20, 100)]


def test_mounts_are_kept_apart(tmp_path):
    store = history.History(tmp_path, min_interval_seconds=0)
    store.record("/", 1, 10, now=5)
    store.record("/var/lib", 2, 10, now=5)
    assert store.samples("/", now=5) == [(5, 1, 10)]
    assert store.samples("/var/lib", now=5) == [(5, 2, 10)]


def test_samples_closer_than_min_interval_are_not_recorded(tmp_path):
    store = history.History(tmp_path, min_interval_seconds=30)
    assert store.record("/", 1, 10, now=0)
    assert not store.record("/", 2, 10, now=10)
    assert store.record("/", 3, 10, now=40)
    assert [s[1] for s in store.samples("/", now=40)] == [1, 3]


def test_history_is_bounded_by_count_and_age(tmp_path):
    store = history.History(tmp_path, max_samples=5, max_age_seconds=1000, min_interval_seconds=0)
    for t in range(0, 2000, 100):
        store.record("/", t, 10, now=t)
        assert os.path.getsize(store.path_for("/")) < 2 * 5 * history.RECORD.size
    assert [s[0] for s in store.samples("/", now=1900)] == [1500, 1600, 1700, 1800, 1900]
    # Samples older than max_age are not served even before the file is rewritten.
    assert store.samples("/", now=2850) == [(1900, 1900, 10)]


def test_torn_last_record_is_ignored(tmp_path):
    store = history.History(tmp_path, min_interval_seconds=0)
    store.record("/", 1, 2, now=5)
    with open(store.path_for("/"), "ab") as handle:
        handle.write(b"\x01\x02\x03")
    assert store.samples("/", now=5) == [(5, 1, 2)]
    store.record("/", 3, 4, now=6)
    assert store.samples("/", now=6)[0] == (5, 1, 2)


def test_non_finite_records_are_dropped(tmp_path):
    store = history.History(tmp_path)
    with open(store.path_for("/"), "wb") as handle:
        handle.write(struct.pack("<3d", 1, float("nan"), 3))
        handle.write(struct.pack("<3d", 2, float("inf"), 3))
        handle.write(struct.pack("<3d", 3, 4, 5))
    assert store.samples("/", now=3) == [(3, 4, 5)]


def test_rewrite_leaves_no_temporary_files(tmp_path):
    store = history.History(tmp_path, max_samples=2, min_interval_seconds=0)
    for t in range(10):
        store.record("/", t, 2, now=t)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["%2F.samples"]
