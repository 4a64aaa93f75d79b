"""
A bounded, persistent history of usage samples per mount, for growth and time to full.

One JSON file (under the minion cachedir) holds every mount's samples. It is replaced
atomically (temp file + rename), so a crash never leaves half a file, and it is trimmed on
every write by age and count, so it never grows without bound.
"""

import contextlib
import json
import logging
import os
import tempfile
import time

log = logging.getLogger(__name__)

DEFAULT_MAX_SAMPLES = 720
DEFAULT_MAX_AGE_SECONDS = 24 * 3600
DEFAULT_MIN_INTERVAL_SECONDS = 30.0


class History:
    """Samples of (timestamp, used_bytes, total_bytes) per mount, oldest first."""

    def __init__(
        self,
        path,
        max_samples=DEFAULT_MAX_SAMPLES,
        max_age_seconds=DEFAULT_MAX_AGE_SECONDS,
        min_interval_seconds=DEFAULT_MIN_INTERVAL_SECONDS,
    ):
        self.path = os.fspath(path)
        self.max_samples = max_samples
        self.max_age_seconds = max_age_seconds
        self.min_interval_seconds = min_interval_seconds
        self.mounts = self._load()

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            # A damaged history costs only the growth estimate, never the analysis.
            log.warning("Ignoring unreadable storage history %s: %s", self.path, err)
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            mount: [tuple(sample) for sample in samples if _valid_sample(sample)]
            for mount, samples in data.get("mounts", {}).items()
            if isinstance(samples, list)
        }

    def samples(self, mount):
        return list(self.mounts.get(mount, ()))

    def record(self, mount, used_bytes, total_bytes, now=None):
        """Add a sample unless the last one is younger than min_interval_seconds."""
        now = time.time() if now is None else now
        samples = self.mounts.setdefault(mount, [])
        if samples and now - samples[-1][0] < self.min_interval_seconds:
            return False
        samples.append((now, int(used_bytes), int(total_bytes)))
        return True

    def trim(self, now=None):
        now = time.time() if now is None else now
        oldest = now - self.max_age_seconds
        for mount in list(self.mounts):
            kept = [s for s in self.mounts[mount] if s[0] >= oldest][-self.max_samples :]
            if kept:
                self.mounts[mount] = kept
            else:
                del self.mounts[mount]

    def save(self, now=None):
        self.trim(now)
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, temp_path = tempfile.mkstemp(dir=directory, prefix=".history-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"version": 1, "mounts": self.mounts}, handle, separators=(",", ":"))
            os.replace(temp_path, self.path)
        except BaseException:
            _remove_quietly(temp_path)
            raise


def _valid_sample(sample):
    return (
        isinstance(sample, list)
        and len(sample) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sample)
    )


def _remove_quietly(path):
    with contextlib.suppress(OSError):
        os.unlink(path)
