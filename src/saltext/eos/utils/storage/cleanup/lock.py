"""The per-node lock that keeps two real runs from running at once."""

import contextlib
import fcntl
import json
import os
import time

from saltext.eos.utils import errors

STATE_DIR = "eos"
LOCK_FILE = "cleanup.lock"


class CleanupBusy(errors.Busy):
    """Another cleanup holds the lock on this node."""


def state_dir(cachedir):
    """Where cleanup keeps its lock and the degraded services, below the minion cachedir."""
    return os.path.join(cachedir, STATE_DIR)


@contextlib.contextmanager
def exclusive(directory, now=time.time):
    """
    Hold the node's cleanup lock, or raise CleanupBusy naming the holder.

    flock, not a pid file: the kernel drops the lock when its process dies, so a crash never
    leaves it held. The file records the holder's pid and start time for the message.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, LOCK_FILE)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CleanupBusy(_busy_message(descriptor)) from None
        holder = json.dumps({"pid": os.getpid(), "started": now()}).encode()
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, holder, 0)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)


def _busy_message(descriptor):
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
    except ValueError:
        holder = {}
    pid = holder.get("pid", "unknown") if isinstance(holder, dict) else "unknown"
    started = holder.get("started") if isinstance(holder, dict) else None
    since = (
        time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        if isinstance(started, (int, float))
        else ""
    )
    return (
        f"another cleanup is already running on this node (pid {pid}{since}); "
        "refusing to start a second one"
    )
