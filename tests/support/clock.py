"""A clock a test moves by hand, and a lock that tells the time as a shared lock does."""

import threading


class Clock:
    """Call it for the time, ``sleep`` to let time pass."""

    def __init__(self, now=1_750_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class ClockedLock:
    """A registry lock with the coordination store's clock (``now``), as a shared lock has."""

    def __init__(self, now):
        self.now = now
        self._lock = threading.Lock()

    def __enter__(self):
        self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()
