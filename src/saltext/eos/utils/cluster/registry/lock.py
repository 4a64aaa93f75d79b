"""The lock that serialises registry writes across a master's processes."""

import fcntl
import os
import threading
import time

from .refusals import RegistryBusy


class FileLock:
    """
    An exclusive lock for every process and thread of this host that uses the same path.

    ``flock`` locks an open file description, so each acquisition opens the file anew: two
    threads of one process exclude each other just as two processes do. Not re-entrant.
    """

    def __init__(self, path, timeout=30.0, poll=0.005):
        self.path = path
        self.timeout = timeout
        self.poll = poll
        self._handles = threading.local()

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        handle = open(self.path, "a+b")  # closed in __exit__
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.close()
                    raise RegistryBusy(
                        f"the registry lock {self.path} was held for over {self.timeout:g} s"
                    ) from None
                time.sleep(self.poll)
        self._handles.current = handle
        return self

    def __exit__(self, *exc):
        handle = self._handles.current
        self._handles.current = None
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
