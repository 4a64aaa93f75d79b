"""
Which regular files are open right now, by which process, and whether for writing.

Space recovery needs this twice: compressing or deleting a file that a process holds open
frees nothing until the process closes it (and a writer would go on writing into the
unlinked inode), and a live log can only be shrunk by truncating it in place.

The answer comes from ``/proc/<pid>/fd`` (which inode each descriptor points at) and
``/proc/<pid>/fdinfo/<fd>`` (the ``flags:`` line holds the open mode). It is collected once
per cleanup run: a snapshot, keyed by ``(st_dev, st_ino)`` so that it matches whatever path
the file is reached by.
"""

import os
import stat
from dataclasses import dataclass

PROC = "/proc"


@dataclass(frozen=True)
class Holder:
    """One process holding a file open; ``writing`` when any of its descriptors can write."""

    pid: int
    command: str
    writing: bool

    def describe(self):
        mode = "for writing" if self.writing else "for reading"
        return f"open {mode} by pid {self.pid} ({self.command})"


class OpenFiles:
    """A snapshot of open regular files: ``(st_dev, st_ino)`` -> the Holder that matters most."""

    def __init__(self, holders=None):
        self._holders = dict(holders or {})

    def holder(self, device, inode):
        """The Holder of an inode (a writer when there is one), or None when nobody has it open."""
        return self._holders.get((device, inode))

    def add(self, device, inode, holder):
        known = self._holders.get((device, inode))
        # A writer is the reason that matters to the user, so it wins over a reader.
        if known is None or (holder.writing and not known.writing):
            self._holders[(device, inode)] = holder

    def __len__(self):
        return len(self._holders)


def scan(proc=PROC):
    """
    The OpenFiles of every process this user may inspect.

    Processes that exit during the scan, and descriptors closed meanwhile, are skipped: the
    snapshot is as good as the moment allows, never an error.
    """
    found = OpenFiles()
    for pid in _pids(proc):
        command = _command(proc, pid)
        for fd, status in _regular_file_descriptors(proc, pid):
            writing = _opened_for_writing(proc, pid, fd)
            if writing is None:
                continue
            found.add(status.st_dev, status.st_ino, Holder(pid, command, writing))
    return found


def _pids(proc):
    try:
        names = os.listdir(proc)
    except OSError:
        return []
    return [int(name) for name in names if name.isdigit()]


def _command(proc, pid):
    try:
        with open(os.path.join(proc, str(pid), "comm"), encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return "?"


def _regular_file_descriptors(proc, pid):
    fd_dir = os.path.join(proc, str(pid), "fd")
    try:
        descriptors = os.listdir(fd_dir)
    except OSError:
        # Gone, or another user's process while not root.
        return
    for fd in descriptors:
        try:
            # stat() follows the magic link to the open inode, even when its path was unlinked.
            status = os.stat(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if stat.S_ISREG(status.st_mode):
            yield fd, status


def _opened_for_writing(proc, pid, fd):
    """True or False from the descriptor's open flags, or None when it closed meanwhile."""
    try:
        with open(os.path.join(proc, str(pid), "fdinfo", fd), encoding="ascii") as handle:
            for line in handle:
                if line.startswith("flags:"):
                    flags = int(line.split(":", 1)[1].strip(), 8)
                    return flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    except (OSError, ValueError):
        return None
    return None
