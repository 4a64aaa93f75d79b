"""The bounded, persistent, tiered usage history."""

import itertools
import logging
import math
import os
import struct

import pytest

from saltext.eos.utils.storage import history

DAY = 86400
# A day boundary that is also a 2-hour one, far enough from 0 for 90 days of history.
T0 = 200 * DAY


def tier_table(path):
    """[(bucket width, bucket count)] from a file's header, read as the docstring lays it out."""
    with open(path, "rb") as handle:
        data = handle.read()
    magic, _, count = struct.unpack_from("<8sdI", data)
    assert magic == history.MAGIC
    return [struct.unpack_from("<II", data, 20 + 8 * index) for index in range(count)]


def write_old_format(path, samples):
    """A file as earlier versions wrote it: bare (t, used, total) doubles."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"".join(struct.pack("<3d", *sample) for sample in samples))


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


def test_raw_tier_keeps_max_samples_up_to_a_ten_minute_boundary(tmp_path):
    store = history.History(tmp_path, max_samples=5, min_interval_seconds=0)
    for t in range(0, 3600, 120):
        store.record("/", t, 10, now=t)
    # The newest 5 start on a 10-minute boundary. With one more they would not, and the raw
    # tier keeps fewer rather than split a bucket.
    assert [s[0] for s in store.samples("/", now=3480)] == [3000, 3120, 3240, 3360, 3480]
    assert store.record("/", 3600, 10, now=3600)
    assert [s[0] for s in store.samples("/", now=3600)] == [3600]
    # Nothing is lost: the samples that left the raw tier are in 10-minute buckets.
    series = store.series("/", now=3600)
    assert [(b.start, b.seconds, b.low, b.high) for b in series.buckets] == [
        (start, 600, start, start + 480) for start in range(0, 3600, 600)
    ]


def test_raw_tier_keeps_raw_seconds(tmp_path):
    store = history.History(tmp_path, raw_seconds=1500, min_interval_seconds=0)
    for t in range(0, 3600, 120):
        store.record("/", t, 10, now=t)
    # Older than 1500 s (before 1980): in buckets, and so is the rest of their 10 minutes.
    assert store.samples("/", now=3480)[0][0] == 2400
    assert store.series("/", now=3480).buckets[-1].start == 1800


def test_buckets_keep_low_high_and_last_across_a_drop(tmp_path):
    store = history.History(tmp_path, raw_seconds=600, min_interval_seconds=0)
    # One 10-minute bucket: a peak, a cleanup, a new rise.
    for t, used in ((6000, 100), (6100, 300), (6200, 50), (6300, 80)):
        store.record("/", used, 1000, now=t)
    store.record("/", 90, 1000, now=7800)
    series = store.series("/", now=7800)
    assert series.raw == [(7800, 90, 1000)]
    assert series.buckets == [history.Bucket(6000, 600, 50, 300, 80, 1000)]


def test_ten_minute_buckets_fold_into_two_hour_ones_after_eight_days(tmp_path):
    store = history.History(tmp_path, raw_seconds=600, min_interval_seconds=0)
    samples = [(T0 + 100, 400), (T0 + 200, 200), (T0 + 6000, 100), (T0 + 6100, 300)]
    samples += [(T0 + 6200, 50), (T0 + 6300, 80), (T0 + 7300, 70)]
    for t, used in samples:
        store.record("/", used, 1000, now=t)
    assert [b.seconds for b in store.series("/", now=T0 + 8 * DAY).buckets] == [600] * 3
    # Past 8 days (and the 2-hour boundary after it) the first two hours are one bucket.
    folded = store.series("/", now=T0 + 8 * DAY + 7200).buckets
    assert folded == [
        history.Bucket(T0, 7200, 50, 400, 80, 1000),
        history.Bucket(T0 + 7200, 600, 70, 70, 70, 1000),
    ]


def test_retention_ages(tmp_path):
    store = history.History(tmp_path, raw_seconds=600, min_interval_seconds=0)
    store.record("/", 5, 10, now=T0)
    store.record("/", 7, 10, now=T0 + 60)
    assert store.series("/", now=T0 + DAY).buckets == [history.Bucket(T0, 600, 5, 7, 7, 10)]
    assert store.series("/", now=T0 + 89 * DAY).buckets == [history.Bucket(T0, 7200, 5, 7, 7, 10)]
    assert store.series("/", now=T0 + 90 * DAY + 1).buckets == []
    # A shorter max_age drops sooner, raw samples as well as buckets.
    short = history.History(tmp_path, raw_seconds=600, max_age_seconds=DAY)
    assert short.series("/", now=T0 + 3600).buckets == [history.Bucket(T0, 600, 5, 7, 7, 10)]
    assert short.series("/", now=T0 + DAY + 1) == history.Series(raw=[], buckets=[])
    shortest = history.History(tmp_path, max_age_seconds=600)
    assert shortest.samples("/", now=T0 + 600) == [(T0, 5, 10), (T0 + 60, 7, 10)]
    assert shortest.samples("/", now=T0 + 661) == []


def test_max_age_longer_than_the_tiers_is_capped_at_90_days(tmp_path):
    store = history.History(tmp_path, max_age_seconds=365 * DAY, raw_seconds=600)
    store.record("/", 5, 10, now=T0)
    assert store.series("/", now=T0 + 89 * DAY).buckets == [history.Bucket(T0, 7200, 5, 5, 5, 10)]
    assert store.series("/", now=T0 + 90 * DAY + 1).buckets == []


def test_series_does_not_depend_on_when_the_file_was_rewritten(tmp_path):
    # Integers below 2**24 are exact in float32, so rewritten buckets compare equal.
    samples = [(T0 + 300 * i, (i * 37) % 1000 + 1000 * (i // 288), 10**6) for i in range(3000)]
    settings = {"max_samples": 50, "raw_seconds": 3 * 3600, "min_interval_seconds": 0}
    rewritten = history.History(tmp_path / "rewritten", **settings)
    for t, used, total in samples:
        rewritten.record("/", used, total, now=t)
    # An old-format file is never rewritten until it is recorded to: the same samples, unfolded.
    unfolded = history.History(tmp_path / "unfolded", **settings)
    write_old_format(unfolded.path_for("/"), samples)
    now = samples[-1][0]
    assert rewritten.series("/", now) == unfolded.series("/", now)
    assert len(rewritten.series("/", now).buckets) > 100


def test_buckets_are_aligned_ordered_and_never_overlap_the_raw_span(tmp_path):
    store = history.History(tmp_path, min_interval_seconds=0)
    for i in range(20 * 288):
        store.record("/", i % 288, 10, now=T0 + 300 * i + 7)
    series = store.series("/", now=T0 + 20 * DAY)
    ends = [b.start + b.seconds for b in series.buckets]
    assert all(b.start % b.seconds == 0 for b in series.buckets)
    assert all(end <= after.start for end, after in zip(ends[:-1], series.buckets[1:], strict=True))
    assert ends[-1] <= series.raw[0][0]
    assert {b.seconds for b in series.buckets} == {600, 7200}


def test_file_is_bounded_with_every_tier_full(tmp_path):
    # max_samples far past what fits, a short raw tier so that the 10-minute tier fills.
    store = history.History(tmp_path, max_samples=10**6, raw_seconds=600, min_interval_seconds=0)
    path = store.path_for("/")
    largest = 0
    t = T0
    # Every 10-minute bucket of 90 days, ending just before a 2-hour boundary (8 days ago),
    # where the 10-minute tier spans the most.
    while t < T0 + 90 * DAY + 7200 - 700:
        store.record("/", t % DAY, 10**6, now=t)
        largest = max(largest, os.path.getsize(path))
        t += 600
    # Then samples as fast as they come: the raw tail fills up to its rewrite.
    for i in range(1000):
        store.record("/", 5, 10**6, now=t + i / 100)
        largest = max(largest, os.path.getsize(path))
    (fine, fine_count), (coarse, coarse_count) = tier_table(path)
    assert (fine, coarse) == (600, 7200)
    assert fine_count == history.MAX_BUCKETS[0]
    assert coarse_count >= history.MAX_BUCKETS[1] - 1
    worst = (
        history.HEADER_BYTES
        + sum(history.MAX_BUCKETS) * history.BUCKET.size
        + history.MAX_RAW_RECORDS * history.RECORD.size
    )
    # Within two buckets of the worst case (the 2-hour tier holds its last bucket only when
    # 8 days ago is a 2-hour boundary, and then the 10-minute tier holds fewer), never past.
    assert worst - 2 * history.BUCKET.size <= largest <= history.MAX_FILE_BYTES


def test_ninety_days_of_a_daily_sawtooth_keep_its_peaks_and_troughs(tmp_path):
    gib = 2**30
    store = history.History(tmp_path)
    path = store.path_for("/")
    minutes = 90 * 1440
    largest = 0
    for i in range(minutes):
        t = T0 + 60 * i
        # Fills 10 GiB to 50 GiB each day; a cleanup at midnight takes it back.
        store.record("/", 10 * gib + 40 * gib * (t % DAY) / DAY, 100 * gib, now=t)
        largest = max(largest, os.path.getsize(path))
    assert largest <= history.MAX_FILE_BYTES
    now = T0 + 60 * (minutes - 1)
    series = store.series("/", now)
    assert series.buckets[0].start - T0 < 3 * 3600
    assert now - series.raw[0][0] <= history.DEFAULT_RAW_SECONDS
    peak, trough = 10 * gib + 40 * gib * (DAY - 60) / DAY, 10 * gib
    for day in range(89):
        start, end = T0 + day * DAY, T0 + (day + 1) * DAY
        buckets = [b for b in series.buckets if start <= b.start < end]
        assert buckets, day
        assert max(b.high for b in buckets) == pytest.approx(peak, rel=1e-6), day
        assert min(b.low for b in buckets) == pytest.approx(trough, rel=1e-6), day
    assert {b.seconds for b in series.buckets} == {600, 7200}


def test_old_format_file_is_read_and_upgraded_by_its_first_record(tmp_path):
    store = history.History(tmp_path, min_interval_seconds=30)
    path = store.path_for("/")
    # A day of minute samples, as today's format kept them (twice max_samples at most).
    samples = [(T0 + 60 * i, 1000 + i, 10**6) for i in range(1440)]
    write_old_format(path, samples)
    now = samples[-1][0]
    before = store.series("/", now)
    assert before.raw == samples[-360:]
    assert before.buckets[0] == history.Bucket(T0, 600, 1000, 1009, 1009, 10**6)
    assert not store.record("/", 5000, 10**6, now=now + 10)
    with open(path, "rb") as handle:
        assert handle.read() == b"".join(struct.pack("<3d", *s) for s in samples)
    assert store.record("/", 5000, 10**6, now=now + 60)
    with open(path, "rb") as handle:
        data = handle.read()
    assert data.startswith(history.MAGIC)
    # An old reader takes the first 8 bytes for a timestamp: a NaN, which it drops.
    assert math.isnan(struct.unpack_from("<d", data)[0])
    after = store.series("/", now + 60)
    assert after.buckets == before.buckets
    assert after.raw == [*before.raw, (now + 60, 5000, 10**6)]


def test_torn_last_record_is_ignored(tmp_path):
    store = history.History(tmp_path, min_interval_seconds=0)
    store.record("/", 1, 2, now=5)
    size = os.path.getsize(store.path_for("/"))
    with open(store.path_for("/"), "ab") as handle:
        handle.write(b"\x01\x02\x03")
    assert store.samples("/", now=5) == [(5, 1, 2)]
    store.record("/", 3, 4, now=6)
    assert store.samples("/", now=6) == [(5, 1, 2), (6, 3, 4)]
    assert os.path.getsize(store.path_for("/")) == size + history.RECORD.size


def test_torn_old_format_record_is_ignored(tmp_path):
    store = history.History(tmp_path)
    write_old_format(store.path_for("/"), [(5, 1, 2)])
    with open(store.path_for("/"), "ab") as handle:
        handle.write(b"\x01\x02\x03")
    assert store.samples("/", now=5) == [(5, 1, 2)]


@pytest.mark.parametrize(
    "content",
    [
        # This version's magic, but more tier entries than any layout has.
        history.MAGIC + struct.pack("<dI", 0, 1000),
        # Bucket counts running past the end of the file.
        history.MAGIC + struct.pack("<dIII", 0, 1, 600, 50) + b"\0" * 20,
        # A truncated header.
        history.MAGIC + b"\0\0",
        # A NaN where a timestamp would be, other than this magic: a format this version lacks.
        struct.pack("<d", float("nan")) + b"\0" * 40,
    ],
)
def test_unreadable_file_is_started_afresh(tmp_path, caplog, content):
    store = history.History(tmp_path, min_interval_seconds=0)
    with open(store.path_for("/"), "wb") as handle:
        handle.write(content)
    with caplog.at_level(logging.WARNING, logger=history.__name__):
        assert store.series("/", now=10) == history.Series(raw=[], buckets=[])
    assert "unreadable" in caplog.text
    assert store.record("/", 1, 2, now=10)
    assert store.series("/", now=10) == history.Series(raw=[(10, 1, 2)], buckets=[])
    assert store.record("/", 3, 4, now=20)
    assert store.samples("/", now=20) == [(10, 1, 2), (20, 3, 4)]


def test_non_finite_records_are_dropped(tmp_path):
    store = history.History(tmp_path)
    with open(store.path_for("/"), "wb") as handle:
        handle.write(struct.pack("<3d", 1, float("nan"), 3))
        handle.write(struct.pack("<3d", 2, float("inf"), 3))
        handle.write(struct.pack("<3d", 2.5, float("-inf"), 3))
        handle.write(struct.pack("<3d", 3, 4, 5))
    assert store.samples("/", now=3) == [(3, 4, 5)]


def test_non_finite_or_unstorable_samples_are_not_recorded(tmp_path):
    store = history.History(tmp_path, min_interval_seconds=0)
    assert not store.record("/", float("nan"), 10, now=1)
    assert not store.record("/", 1, float("inf"), now=2)
    assert not store.record("/", 1, 10, now=-5)
    assert not store.record("/", 1e300, 10, now=3)
    assert not os.path.exists(store.path_for("/"))


def test_samples_denser_than_max_samples_per_ten_minutes_wait_for_the_next_one(tmp_path):
    store = history.History(tmp_path, max_samples=1, min_interval_seconds=0)
    for i in range(1 + store.rewrite_at):
        assert store.record("/", i, 10, now=T0 + i / 1000)
    # The rewrite left one sample in the raw tier: up to the next 10-minute boundary, which
    # is all of them. Until then a sample would fall in a bucket already folded.
    assert store.samples("/", now=T0 + 1) == []
    assert not store.record("/", 1, 10, now=T0 + 1)
    assert store.series("/", now=T0 + 1).buckets == [
        history.Bucket(T0, 600, 0, store.rewrite_at, store.rewrite_at, 10)
    ]
    assert store.record("/", 1, 10, now=T0 + 600)


def test_rewrites_are_at_least_min_appends_apart_and_leave_no_temporary_files(tmp_path):
    store = history.History(tmp_path, max_samples=2, min_interval_seconds=0)
    path = store.path_for("/")
    rewritten_at, size = [], 0
    for index in range(1000):
        assert store.record("/", index, 2, now=300 * index)
        # A record is one appended record, or a rewrite (which folds the tail).
        if os.path.getsize(path) != size + history.RECORD.size:
            rewritten_at.append(index)
        size = os.path.getsize(path)
    assert len(rewritten_at) > 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(rewritten_at)]
    assert min(gaps) > history.MIN_APPENDS_PER_REWRITE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["%2F.samples"]
    assert store.samples("/", now=300 * 999) == [(300 * 998, 998, 2), (300 * 999, 999, 2)]
