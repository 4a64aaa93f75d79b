"""
A bounded, persistent history of usage samples per mount, for growth and time to full.

Each mount has one small file of fixed-size binary records (timestamp, used bytes, total
bytes as three little-endian doubles) under the minion cachedir. A sample is one appended
record, so recording costs a single small write whatever the length of the history, and
reading is one read decoded in C. A crash can at worst leave a torn last record, which is
ignored. When a file holds twice ``max_samples`` records it is rewritten (temp file +
rename) with the newest ``max_samples`` that are younger than ``max_age_seconds``, so it
never grows without bound.
"""

import array
import bisect
import math
import os
import struct
import time
import urllib.parse

from saltext.eos.utils import atomic

DEFAULT_MAX_SAMPLES = 720
DEFAULT_MAX_AGE_SECONDS = 24 * 3600
DEFAULT_MIN_INTERVAL_SECONDS = 30.0

RECORD = struct.Struct("<3d")


class History:
    """Samples of (timestamp, used_bytes, total_bytes) per mount, oldest first."""

    def __init__(
        self,
        directory,
        max_samples=DEFAULT_MAX_SAMPLES,
        max_age_seconds=DEFAULT_MAX_AGE_SECONDS,
        min_interval_seconds=DEFAULT_MIN_INTERVAL_SECONDS,
    ):
        self.directory = os.fspath(directory)
        self.max_samples = max_samples
        self.max_age_seconds = max_age_seconds
        self.min_interval_seconds = min_interval_seconds

    def path_for(self, mount):
        return os.path.join(self.directory, urllib.parse.quote(mount, safe="") + ".samples")

    def samples(self, mount, now=None):
        """The mount's samples younger than max_age_seconds, oldest first."""
        return self._fresh(self._read(self.path_for(mount)), now)

    def record(self, mount, used_bytes, total_bytes, now=None):
        """Append a sample unless the last one is younger than min_interval_seconds."""
        now = time.time() if now is None else now
        path = self.path_for(mount)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        sample = (float(now), float(used_bytes), float(total_bytes))
        # Only the last record and the file's length are read: recording stays O(1).
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            records, torn = divmod(size, RECORD.size)
            if torn:
                # A crash mid-append; drop the partial record so that appends stay aligned.
                os.ftruncate(fd, records * RECORD.size)
            if records:
                last = RECORD.unpack(os.pread(fd, RECORD.size, (records - 1) * RECORD.size))
                if now - last[0] < self.min_interval_seconds:
                    return False
            if records + 1 < 2 * self.max_samples:
                os.write(fd, RECORD.pack(*sample))
                return True
        finally:
            os.close(fd)
        stored = self._fresh(self._read(path), now)
        self._rewrite(path, [*stored, sample][-self.max_samples :])
        return True

    def _fresh(self, samples, now):
        now = time.time() if now is None else now
        # Samples are appended in time order; sorting an ordered list is one linear pass.
        ordered = sorted(samples)
        return ordered[bisect.bisect_left(ordered, (now - self.max_age_seconds,)) :]

    @staticmethod
    def _read(path):
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return []
        # A torn last record (crash mid-write) is dropped.
        data = data[: len(data) - len(data) % RECORD.size]
        samples = list(RECORD.iter_unpack(data))
        # One C-level sum tells whether any value is NaN or infinite; only then filter.
        if not math.isfinite(math.fsum(array.array("d", data))):
            samples = [sample for sample in samples if all(map(math.isfinite, sample))]
        return samples

    def _rewrite(self, path, samples):
        atomic.write_file(path, b"".join(RECORD.pack(*sample) for sample in samples), 0o600)
