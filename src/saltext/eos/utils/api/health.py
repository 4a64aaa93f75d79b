"""
``GET /health`` answered from the event loop: a watch checks the master and the registry
every second on a worker of its own, and the answer is its latest check.

A check that hangs (a registry backend that stopped answering) never holds the answer: once
the latest check is older than ``stale_after`` seconds, ``/health`` says ``degraded`` and how
old its knowledge is, at once.
"""

import threading
import time

from saltext.eos import __version__

CHECK_INTERVAL_SECONDS = 1.0
STALE_AFTER_SECONDS = 10.0


class HealthWatch:
    """
    The latest health check of ``backend`` (``master_running()``, ``registry_state()``);
    ``check()`` runs one (blocking), ``answer()`` never blocks.
    """

    def __init__(self, backend, api_version, clock=time.monotonic, stale_after=None):
        self.backend = backend
        self.api_version = api_version
        self.clock = clock
        self.stale_after = STALE_AFTER_SECONDS if stale_after is None else stale_after
        self.lock = threading.Lock()
        self.latest = None  # (master up, registry state, when)

    def check(self):
        master_up = self.backend.master_running()
        registry_state = self.backend.registry_state()
        with self.lock:
            self.latest = (master_up, registry_state, self.clock())

    def answer(self):
        """The ``/health`` data: from the latest check, or degraded when it is too old."""
        with self.lock:
            latest = self.latest
        if latest is None:
            return self._data(False, "unknown", "not checked yet")
        master_up, registry_state, checked = latest
        age = self.clock() - checked
        if age > self.stale_after:
            return self._data(
                False, "unknown", f"the last check is {age:.0f} s old: it did not finish since"
            )
        return self._data(master_up, registry_state, None, age)

    def _data(self, master_up, registry_state, problem, age=None):
        healthy = master_up and registry_state in ("ok", "empty") and problem is None
        data = {
            "status": "ok" if healthy else "degraded",
            "api_version": self.api_version,
            "version": __version__,
            "master": "running" if master_up else "not running",
            "registry": registry_state,
            "checked_seconds_ago": None if age is None else round(age, 3),
        }
        if problem is not None:
            data["problem"] = problem
            data["master"] = "unknown"
        return data
