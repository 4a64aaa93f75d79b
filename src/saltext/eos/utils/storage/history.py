"""
A bounded, persistent, tiered history of usage per mount, for growth and time to full.

A disk-full forecast must see daily and weekly cleanup cycles at least twice, yet recording
runs on every analyze. So, as RRD and Netdata do, old data is kept ever coarser:

- raw: full-resolution samples ``(t, used_bytes, total_bytes)`` of the recent hours, at most
  ``max_samples`` of them and none older than ``raw_seconds`` (whichever keeps fewer);
- then buckets (``TIERS``): 10-minute ones for 8 days, 2-hour ones for 90 days. A bucket
  keeps the lowest, highest and last usage of its span (and the last total), so the peaks
  and troughs of a sawtooth survive downsampling. Samples leaving the raw tier fold into
  10-minute buckets, those fold into 2-hour buckets after 8 days (low: min, high: max,
  last: the newer), and buckets older than 90 days (or ``max_age_seconds``) are dropped.

Tier boundaries are aligned to the coarser width (the raw one to 10 minutes), so no bucket
straddles a boundary: buckets of different tiers never overlap, nor the raw span.

File format (one file per mount, ``<quoted mount>.samples``, little-endian)::

    header   8s magic   b"eosH\\x01\\x00\\xf8\\x7f"  (read as a double: a NaN, see below)
             d  horizon  every bucket ends by it, every raw sample is at or after it
             I  tiers    number of tier entries that follow
    tier     I  seconds  bucket width          } once per tier, finest first
             I  count    buckets stored        }
    buckets  I start, f low, f high, f last, f total  (20 bytes; float32 is plenty for
             coarse values: relative error 6e-8), ``count`` per tier, oldest first
    raw      d t, d used, d total  (24 bytes), oldest first, up to the end of the file

The raw tail is append-only: recording a sample is one fixed-size ``O_APPEND`` write after
reading the header and the last record, whatever the length of the history. When the tail
holds twice ``max_samples`` records (at least 128 more, at most what the bound below
leaves: 939), the next sample rewrites the file (temp file + rename), folding the tail into
the tiers. A rewrite costs O(file), at most 64 KiB and 2148 buckets, and leaves at most
``max_samples`` raw records, so at least ``MIN_APPENDS_PER_REWRITE`` (128; 219 with the
defaults) appends separate two rewrites: a sample costs O(1) amortised, one 24-byte append
plus at most 512 bytes (64 KiB / 128) of rewrite.

Bound: at most ``MAX_FILE_BYTES`` (64 KiB) per mount whatever the settings. With every tier
full (1164 10-minute buckets: 8 days plus the alignment to 2 hours; 984 2-hour buckets: the
82 days after those) and the tail at its rewrite point (939 records) a file is 36 + 2148 x
20 + 939 x 24 = 65532 bytes. ``max_samples`` is capped (at 811) to keep that.

Crash safety: appends are the only in-place writes, and a crash mid-append leaves a torn
last record, which is ignored (and truncated by the next append); rewrites are atomic. A
file whose header cannot be read is not fatal: it is logged and started afresh. Non-finite
values (and times that do not fit the format) are never recorded and dropped on reading.

Upgrade: the files of earlier versions are a bare sequence of raw records. The magic's first
8 bytes are a NaN as a double, so an old reader never takes it for a timestamp and this one
tells the formats apart; an old file is read as raw samples and rewritten in this format by
its first new sample.

What is served (``series``, ``samples``) is the history as a rewrite at that moment would
store it, so answers do not depend on when the last rewrite happened (but for the float32
rounding of bucket values).
"""

import array
import bisect
import logging
import math
import os
import struct
import time
import urllib.parse
from dataclasses import dataclass
from typing import NamedTuple

from saltext.eos.utils import atomic

log = logging.getLogger(__name__)

# (bucket width, kept until this age) in seconds, finest first. Each width divides the next,
# so a coarser bucket is a whole number of finer ones.
TIERS = ((600, 8 * 86400), (7200, 90 * 86400))
DEFAULT_MAX_SAMPLES = 720
DEFAULT_RAW_SECONDS = 6 * 3600
DEFAULT_MAX_AGE_SECONDS = 90 * 86400
DEFAULT_MIN_INTERVAL_SECONDS = 30.0
MAX_FILE_BYTES = 64 * 1024

MAGIC = b"eosH\x01\x00\xf8\x7f"
HEADER = struct.Struct("<8sdI")
TIER = struct.Struct("<II")
BUCKET = struct.Struct("<I4f")
# A raw sample: today's record, unchanged, so an old file is a raw tail without a header.
RECORD = struct.Struct("<3d")

# More tier entries than this: a damaged header, not a layout of any version.
MAX_TIER_ENTRIES = 16
# Bucket starts are uint32 seconds (until 2106) and values float32: a sample outside these
# ranges cannot be stored and is not recorded.
TIME_LIMIT = 2.0**32
VALUE_LIMIT = 1e38
# Fewest appends between two rewrites: what keeps a sample's cost O(1) amortised.
MIN_APPENDS_PER_REWRITE = 128


def _max_buckets(tiers):
    """Per tier, the most buckets it can hold (see the module docstring)."""
    counts, younger = [], 0
    for index, (width, age) in enumerate(tiers):
        # A tier's lower boundary is aligned down to the next tier's width.
        coarser = tiers[index + 1][0] if index + 1 < len(tiers) else 0
        counts.append(math.ceil((age - younger + coarser) / width))
        younger = age
    return tuple(counts)


MAX_BUCKETS = _max_buckets(TIERS)
HEADER_BYTES = HEADER.size + TIER.size * len(TIERS)
MAX_RAW_RECORDS = (MAX_FILE_BYTES - HEADER_BYTES - sum(MAX_BUCKETS) * BUCKET.size) // RECORD.size


class Bucket(NamedTuple):
    """The usage over ``[start, start + seconds)``: lowest, highest, last; the last total."""

    start: float
    seconds: float
    low: float
    high: float
    last: float
    total: float


@dataclass(frozen=True)
class Series:
    """A mount's history: ``raw`` samples (t, used, total) and the ``buckets`` before them."""

    raw: list
    buckets: list


@dataclass(frozen=True)
class _Stored:
    """A file's content: ``sources`` are (width, [(start, low, high, last, total)]) per tier."""

    horizon: float
    sources: list
    raw: list


_EMPTY = _Stored(0.0, [], [])


class _Unreadable(ValueError):
    """A file in no format this version reads."""


class History:
    """The tiered usage history of each mount, one file per mount under ``directory``."""

    def __init__(
        self,
        directory,
        max_samples=DEFAULT_MAX_SAMPLES,
        max_age_seconds=DEFAULT_MAX_AGE_SECONDS,
        min_interval_seconds=DEFAULT_MIN_INTERVAL_SECONDS,
        raw_seconds=DEFAULT_RAW_SECONDS,
    ):
        self.directory = os.fspath(directory)
        self.max_samples = max_samples
        self.max_age_seconds = max_age_seconds
        self.min_interval_seconds = min_interval_seconds
        self.raw_seconds = raw_seconds
        # Capped so that the raw tail leaves room for the appends between two rewrites.
        self.raw_cap = max(1, min(int(max_samples), MAX_RAW_RECORDS - MIN_APPENDS_PER_REWRITE))
        # Raw records the file's tail may hold: the rewrite comes with the next sample.
        self.rewrite_at = min(
            max(2 * self.raw_cap, self.raw_cap + MIN_APPENDS_PER_REWRITE), MAX_RAW_RECORDS
        )
        # Nothing is kept longer than the coarsest tier.
        self.retention = min(max_age_seconds, TIERS[-1][1])

    def path_for(self, mount):
        return os.path.join(self.directory, urllib.parse.quote(mount, safe="") + ".samples")

    def record(self, mount, used_bytes, total_bytes, now=None):
        """
        Store a sample; False when it is not recorded: closer than min_interval_seconds to
        the last one, older than what is stored, or not a finite, storable value.
        """
        now = time.time() if now is None else now
        sample = (float(now), float(used_bytes), float(total_bytes))
        if not _storable(sample):
            return False
        path = self.path_for(mount)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            tail = _tail(fd)
            if tail is not None:
                records, newest, horizon = tail
                if not self._accepts(now, newest, horizon):
                    return False
                if records < self.rewrite_at:
                    os.write(fd, RECORD.pack(*sample))
                    return True
        finally:
            os.close(fd)
        # A new file, an old-format one, a damaged one or a full tail: rewrite it whole.
        return self._rewrite(path, sample)

    def series(self, mount, now=None):
        """The mount's history younger than max_age_seconds: raw samples and buckets."""
        now = time.time() if now is None else now
        tiers, raw, _ = self._folded(_load(self.path_for(mount)), now)
        buckets = [
            Bucket(start, width, low, high, last, total)
            for (width, _), rows in reversed(list(zip(TIERS, tiers, strict=True)))
            for start, low, high, last, total in rows
        ]
        return Series(raw=raw, buckets=buckets)

    def samples(self, mount, now=None):
        """The mount's raw tier, (t, used_bytes, total_bytes) oldest first."""
        now = time.time() if now is None else now
        stored = _load(self.path_for(mount), buckets=False)
        start = self._raw_start(stored, now)
        return stored.raw[bisect.bisect_left(stored.raw, (start,)) :]

    def _accepts(self, now, newest, horizon):
        if newest is not None and now - newest < self.min_interval_seconds:
            return False
        # Before the horizon the sample would land in a bucket already folded.
        return now >= horizon

    def _rewrite(self, path, sample):
        stored = _load(path)
        newest = stored.raw[-1][0] if stored.raw else None
        if not self._accepts(sample[0], newest, stored.horizon):
            return False
        grown = _Stored(stored.horizon, stored.sources, [*stored.raw, sample])
        tiers, raw, horizon = self._folded(grown, sample[0])
        atomic.write_file(path, _encode(horizon, tiers, raw), 0o600)
        return True

    def _folded(self, stored, now):
        """(tiers, raw, horizon) as a rewrite at ``now`` would store them."""
        start = self._raw_start(stored, now)
        split = bisect.bisect_left(stored.raw, (start,))
        # As buckets of no width; float32 cannot hold a value past VALUE_LIMIT (only an old
        # or damaged file has one: record refuses them).
        leaving = [
            (t, used, used, used, total)
            for t, used, total in stored.raw[:split]
            if abs(used) <= VALUE_LIMIT and abs(total) <= VALUE_LIMIT
        ]
        tiers = _fold(stored.sources, leaving, _bounds(now, self.retention))
        return tiers, stored.raw[split:], start

    def _raw_start(self, stored, now):
        """Where the raw tier begins: earlier samples belong to the buckets."""
        raw = stored.raw
        too_old = bisect.bisect_left(raw, (now - min(self.raw_seconds, self.retention),))
        leaving = max(too_old, len(raw) - self.raw_cap)
        if leaving <= 0:
            return stored.horizon
        # Up to the next 10-minute boundary, so that no bucket straddles the raw span.
        width = TIERS[0][0]
        return max(stored.horizon, (raw[leaving - 1][0] // width + 1) * width)


def _storable(sample):
    t, used, total = sample
    if not (math.isfinite(t) and math.isfinite(used) and math.isfinite(total)):
        return False
    return 0 <= t < TIME_LIMIT and abs(used) <= VALUE_LIMIT and abs(total) <= VALUE_LIMIT


def _tail(fd):
    """
    (raw records, newest raw time or None, horizon) of a file in this format, after
    truncating a torn last record; None when the file must be rewritten whole (empty, old
    format, damaged). Reads the header and the last record only: recording stays O(1).
    """
    size = os.fstat(fd).st_size
    head = os.pread(fd, HEADER.size + TIER.size * MAX_TIER_ENTRIES, 0)
    try:
        horizon, layout, raw_offset = _layout(head, size)
    except _Unreadable:
        return None
    records, torn = divmod(size - raw_offset, RECORD.size)
    if torn:
        # A crash mid-append; drop the partial record so that appends stay aligned.
        os.ftruncate(fd, size - torn)
    if layout != [width for width, _ in TIERS]:
        return None
    if not records:
        return 0, None, horizon
    last = os.pread(fd, RECORD.size, raw_offset + (records - 1) * RECORD.size)
    return records, RECORD.unpack(last)[0], horizon


def _layout(data, size):
    """(horizon, tier widths, offset of the raw tail) of a file of ``size`` bytes."""
    if data[: len(MAGIC)] != MAGIC:
        raise _Unreadable("not this format")
    if len(data) < HEADER.size:
        raise _Unreadable("truncated header")
    _, horizon, count = HEADER.unpack_from(data)
    offset = HEADER.size + count * TIER.size
    if count > MAX_TIER_ENTRIES or offset > len(data) or not math.isfinite(horizon):
        raise _Unreadable("damaged header")
    entries = list(TIER.iter_unpack(data[HEADER.size : offset]))
    offset += sum(buckets for _, buckets in entries) * BUCKET.size
    if offset > size or not all(width for width, _ in entries):
        raise _Unreadable("damaged tier table")
    return horizon, [width for width, _ in entries], offset


def _load(path, buckets=True):
    """
    A file's content (without its buckets unless ``buckets``); nothing if it is missing or
    unreadable (logged: it starts afresh).
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return _EMPTY
    try:
        return _parse(data, buckets)
    except _Unreadable as error:
        log.warning("Usage history %s is unreadable (%s); starting it afresh", path, error)
        return _EMPTY


def _parse(data, buckets=True):
    if data[: len(MAGIC)] != MAGIC:
        if len(data) >= 8 and math.isnan(struct.unpack_from("<d", data)[0]):
            # A timestamp is never NaN: this is a header, of a format this version lacks.
            raise _Unreadable("unknown format")
        # An earlier version's file: raw records only.
        return _Stored(0.0, [], _raw_samples(data))
    horizon, widths, _ = _layout(data, len(data))
    offset = HEADER.size + len(widths) * TIER.size
    sources = []
    for width, count in TIER.iter_unpack(data[HEADER.size : offset]):
        end = offset + count * BUCKET.size
        if buckets:
            sources.append((width, list(BUCKET.iter_unpack(data[offset:end]))))
        offset = end
    return _Stored(horizon, sources, _raw_samples(data[offset:]))


def _raw_samples(data):
    """The raw records of ``data`` oldest first, without a torn last one or bad values."""
    data = data[: len(data) - len(data) % RECORD.size]
    samples = list(RECORD.iter_unpack(data))
    values = array.array("d", data)
    times = values[0::3]
    # Checked in C over all values at once (a NaN or an infinity makes the sum non-finite);
    # only a file with a bad value is filtered sample by sample.
    if not (
        math.isfinite(sum(values)) and (not times or 0 <= min(times) <= max(times) < TIME_LIMIT)
    ):
        samples = [sample for sample in samples if _storable(sample)]
    # Samples are appended in time order; sorting an ordered list is one linear pass.
    return sorted(samples)


def _bounds(now, retention):
    """
    Per tier (lower, keep): a bucket starting before ``lower`` belongs to a coarser tier,
    one starting before ``keep`` is too old to keep. Both are multiples of the tier's width,
    and ``lower`` of the next one's, so no bucket straddles either.
    """
    oldest = now - retention
    bounds = []
    for index, (width, age) in enumerate(TIERS):
        keep = math.ceil(oldest / width) * width
        if index + 1 < len(TIERS) and age < retention:
            coarser = TIERS[index + 1][0]
            lower = (now - age) // coarser * coarser
        else:
            # The last tier in use: nothing moves on, what is too old is dropped.
            lower = -math.inf
        bounds.append((lower, keep))
    return bounds


def _fold(sources, leaving, bounds):
    """Every stored bucket and the samples leaving the raw tier, placed in TIERS."""
    tiers = [[] for _ in TIERS]
    # Coarsest first, then the raw samples: oldest data first, so "last" stays the newest.
    for width, rows in sorted(sources, key=lambda source: -source[0]):
        _place(rows, width, bounds, tiers)
    _place(leaving, 0, bounds, tiers)
    return tiers


def _place(rows, width, bounds, tiers):
    """Fold ``rows`` (buckets of ``width`` seconds, sorted) into the tier each belongs to."""
    end = len(rows)
    for (tier_width, _), (lower, keep), target in zip(TIERS, bounds, tiers, strict=True):
        if tier_width < width:
            # Never split a bucket into a finer tier.
            continue
        begin = bisect.bisect_left(rows, (lower,), hi=end)
        segment = rows[max(begin, bisect.bisect_left(rows, (keep,), hi=end)) : end]
        if segment and width == tier_width and (not target or target[-1][0] < segment[0][0]):
            # Buckets staying in their tier: copied whole, the common case.
            target.extend(segment)
        else:
            _merge(target, segment, tier_width)
        end = begin
        if not end:
            return


def _merge(target, rows, width):
    """Combine ``rows`` into the ``width``-second buckets at the end of ``target``."""
    for start, low, high, last, total in rows:
        key = int(start // width) * width
        if target and target[-1][0] == key:
            _, was_low, was_high, _, _ = target[-1]
            target[-1] = (key, min(was_low, low), max(was_high, high), last, total)
        elif not target or target[-1][0] < key:
            target.append((key, low, high, last, total))
        # Else it is older than the tier's newest bucket: only a damaged file gets here, and
        # dropping it keeps every tier in time order.


def _encode(horizon, tiers, raw):
    # Each part is cut to its worst-case size: the 64 KiB bound holds by construction.
    kept = [rows[-limit:] for rows, limit in zip(tiers, MAX_BUCKETS, strict=True)]
    parts = [HEADER.pack(MAGIC, horizon, len(TIERS))]
    parts += [TIER.pack(width, len(rows)) for (width, _), rows in zip(TIERS, kept, strict=True)]
    parts += [BUCKET.pack(*row) for rows in kept for row in rows]
    parts += [RECORD.pack(*sample) for sample in raw[-MAX_RAW_RECORDS:]]
    return b"".join(parts)
