"""
Walk one filesystem below a directory: its largest files and directories, or all its files.

The walk answers "what would cleanup free here?", so it follows the rules of that question:

- sizes are allocated bytes (``st_blocks * 512``), not apparent sizes: a sparse file frees
  only what it occupies;
- a hard-linked inode is counted once, since its space is freed only with its last link;
- symlinks are never followed, so nothing outside the tree is counted or walked;
- a directory that is the mount point of another mount is skipped: another filesystem's space
  is not this one's, and a bind mount shows files of this filesystem (or another) under
  names that are not theirs. Devices (``st_dev``) cannot tell a bind mount of the same
  filesystem apart, so mount points come from ``/proc/self/mountinfo``, read once per walk.

The walk is iterative (no recursion limit on deep trees) and, for :func:`largest`, bounded in
time: a huge tree returns what was found so far, marked incomplete.
"""

import contextlib
import heapq
import os
import re
import stat
import time
from dataclasses import dataclass

from saltext.eos.utils import errors

# st_blocks is counted in 512-byte units whatever the filesystem's block size (POSIX).
STAT_BLOCK_BYTES = 512
MOUNTINFO = "/proc/self/mountinfo"
# The kernel writes space, tab, newline and backslash in mountinfo paths as \ooo (octal).
MOUNTINFO_ESCAPE = re.compile(rb"\\([0-7]{3})")


class InvalidWalk(errors.InvalidInput):
    """An argument that makes no sense for a walk."""


def largest(root, n=10, time_budget_seconds=10.0, clock=time.monotonic, mount_table=None):
    """
    The ``n`` largest files and directories below ``root``, on root's mount.

    Directory sizes are cumulative; the root itself is not listed. ``scanned_directories``
    counts the directories whose entries were read, the root included. ``errors`` counts
    directories that could not be read and entries that vanished or could not be examined.
    When ``time_budget_seconds`` runs out, what was found so far is returned with
    ``complete`` False. ``clock`` returns seconds and is injectable for tests;
    ``mount_table`` (a MountTable) is read from /proc when not given.
    """
    root_path = _checked_root(root)
    _check_count(n)
    _check_budget(time_budget_seconds)
    deadline = clock() + time_budget_seconds
    walker = _Walker(root_path, one_filesystem=True, mount_table=mount_table)
    tally = _Tally(n)
    complete = True
    with contextlib.closing(walker.entries()) as entries:
        for parent, path, status in entries:
            if clock() >= deadline:
                complete = False
                break
            tally.add(parent, path, status)
    return {
        "path": root_path,
        "directories": tally.largest_directories(),
        "files": tally.largest_files(),
        "scanned_files": tally.scanned_files,
        "scanned_directories": walker.scanned_directories,
        "complete": complete,
        "errors": walker.errors,
    }


def iter_files(root, one_filesystem=True, mount_table=None):
    """
    Yield ``(path, os.stat_result)`` for every regular file below ``root``.

    Symlinks are not followed; with ``one_filesystem`` directories on another device, and
    mount points in ``mount_table`` (read from /proc when not given), are not entered.
    Unreadable directories and vanished entries are skipped silently. Every link of a
    hard-linked file is yielded (``st_nlink`` tells them apart), since deleting one link frees
    nothing. ``root`` is checked at once, so a bad root raises InvalidWalk before iteration.
    """
    walker = _Walker(_checked_root(root), one_filesystem=one_filesystem, mount_table=mount_table)
    return (
        (path, status) for _parent, path, status in walker.entries() if stat.S_ISREG(status.st_mode)
    )


def allocated_bytes(status):
    """The bytes a file occupies on disk, which is what deleting it would free."""
    return status.st_blocks * STAT_BLOCK_BYTES


def _checked_root(root):
    try:
        path = os.fspath(root)
    except TypeError:
        raise InvalidWalk(f"root must be a path, got {root!r}") from None
    if not isinstance(path, str) or not os.path.isdir(path):
        raise InvalidWalk(f"root must be an existing directory, got {root!r}")
    return path


def _check_count(n):
    # bool is an int subclass, but largest(n=True) is a mistake, not a request for one entry.
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidWalk(f"n must be an integer >= 1, got {n!r}")


def _check_budget(seconds):
    is_number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    # Written as "not >" so that NaN is refused too.
    if not is_number or not seconds > 0:
        raise InvalidWalk(f"time_budget_seconds must be a number > 0, got {seconds!r}")


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo, as far as telling mounts apart needs it."""

    mount_id: int
    parent_id: int
    # "major:minor" of the filesystem: the same for every bind mount of it.
    device: str
    # The directory of that filesystem mounted here: "/" unless it is a bind mount.
    root: str
    mount_point: str


class MountTable:
    """The mounts of this process's mount namespace, from one reading of mountinfo."""

    def __init__(self, mounts):
        self.mounts = tuple(mounts)
        self.mount_points = frozenset(mount.mount_point for mount in self.mounts)
        self._children = {}
        for mount in self.mounts:
            self._children.setdefault(mount.parent_id, []).append(mount)

    @classmethod
    def read(cls, path=MOUNTINFO):
        """The current MountTable; OSError when it cannot be read, ValueError when malformed."""
        with open(path, "rb") as handle:
            return cls.parse(handle.read())

    @classmethod
    def parse(cls, text):
        """A MountTable from mountinfo text (bytes, or str as in tests)."""
        if isinstance(text, str):
            text = os.fsencode(text)
        return cls(
            _mount_from_line(number, line)
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        )

    def is_mount_point(self, path):
        return path in self.mount_points

    def mount_at(self, path):
        """
        The mount that holds ``path`` (absolute, symlink-free) in this namespace, or None when
        the table has no root mount.

        Not simply the longest mount point above it: a mount can hide others, both those
        stacked below it on its own mount point and those mounted on directories below it
        before it came. The kernel's tree of parents says which mount is on top.
        """
        current = self._on_top(self._root_mount())
        while current is not None:
            below = [
                child
                for child in self._children.get(current.mount_id, ())
                if child.mount_point != current.mount_point and _is_within(path, child.mount_point)
            ]
            if not below:
                return current
            # Two children of one mount, one inside the other: the outer one came later (the
            # inner one's parent would be the outer one otherwise) and hides the inner one.
            current = self._on_top(min(below, key=lambda child: len(child.mount_point)))
        return None

    def _root_mount(self):
        roots = [mount for mount in self.mounts if mount.mount_point == "/"]
        ids = {mount.mount_id for mount in roots}
        bottom = [mount for mount in roots if mount.parent_id not in ids]
        return (bottom or roots or [None])[0]

    def _on_top(self, mount):
        """The last mount stacked on ``mount``'s mount point, which is the one in view."""
        seen = set()
        while mount is not None and mount.mount_id not in seen:
            seen.add(mount.mount_id)
            stacked = [
                child
                for child in self._children.get(mount.mount_id, ())
                if child.mount_point == mount.mount_point and child.mount_id not in seen
            ]
            if not stacked:
                return mount
            mount = stacked[-1]
        return mount


def _mount_from_line(number, line):
    # mount_id parent_id major:minor root mount_point options [optional...] - fstype source ...
    fields = line.split(b" ")
    try:
        if len(fields) < 5 or b":" not in fields[2]:
            raise ValueError
        return Mount(
            mount_id=int(fields[0]),
            parent_id=int(fields[1]),
            device=fields[2].decode("ascii"),
            root=_unescape(fields[3]),
            mount_point=_unescape(fields[4]),
        )
    except ValueError:
        raise ValueError(f"{MOUNTINFO} line {number} is not a mount: {line!r}") from None


def _unescape(raw):
    # os.fsdecode, as os.scandir does, so that undecodable names compare equal too.
    return os.fsdecode(MOUNTINFO_ESCAPE.sub(lambda found: bytes([int(found[1], 8)]), raw))


def _is_within(path, directory):
    return directory in ("/", path) or path.startswith(directory + "/")


def _mount_points(mount_table):
    if mount_table is not None:
        return mount_table.mount_points
    try:
        return MountTable.read().mount_points
    except (OSError, ValueError):
        # A walk only reads: without the table it still stays on the device.
        return frozenset()


class _Walker:
    """An iterative, symlink-blind walk that counts what it read and what failed."""

    def __init__(self, root, one_filesystem, mount_table=None):
        self.root = root
        self.one_filesystem = one_filesystem
        self.root_device = os.stat(root).st_dev
        # Mount points are real paths; the root may have been named through a symlink.
        self.real_root = os.path.realpath(root)
        self.mount_points = _mount_points(mount_table) if one_filesystem else frozenset()
        self.scanned_directories = 0
        self.errors = 0

    def entries(self):
        """
        Yield ``(parent, path, lstat)`` for each regular file and each directory to be walked.

        A directory is yielded when found, before its own entries; symlinks, other file types
        and directories on another device are not yielded.
        """
        pending = [(self.root, self.real_root)]
        while pending:
            directory, real_directory = pending.pop()
            try:
                with os.scandir(directory) as listing:
                    self.scanned_directories += 1
                    for entry in listing:
                        real = os.path.join(real_directory, entry.name)
                        status = self._examine(entry, real)
                        if status is None:
                            continue
                        if stat.S_ISDIR(status.st_mode):
                            pending.append((entry.path, real))
                        yield directory, entry.path, status
            except OSError:
                # Unreadable, or removed since it was found: the rest of the tree still counts.
                self.errors += 1

    def _examine(self, entry, real):
        """The lstat of an entry worth yielding, or None."""
        try:
            if entry.is_symlink():
                return None
            status = entry.stat(follow_symlinks=False)
        except OSError:
            self.errors += 1
            return None
        if stat.S_ISREG(status.st_mode):
            return status
        if stat.S_ISDIR(status.st_mode) and self._on_walked_mount(status, real):
            return status
        return None

    def _on_walked_mount(self, status, real):
        if not self.one_filesystem:
            return True
        return status.st_dev == self.root_device and real not in self.mount_points


class _Tally:
    """Sizes gathered during a walk: a bounded top of files, and every directory's own bytes."""

    def __init__(self, n):
        self.scanned_files = 0
        self._n = n
        self._top_files = _TopN(n)
        self._seen_inodes = set()
        self._own_bytes = {}
        # Insertion order is discovery order: every directory comes after its parent.
        self._parent_of = {}

    def add(self, parent, path, status):
        if stat.S_ISDIR(status.st_mode):
            self._parent_of[path] = parent
            self._own_bytes.setdefault(path, 0)
            return
        self.scanned_files += 1
        if self._seen_before(status):
            return
        size = allocated_bytes(status)
        self._own_bytes[parent] = self._own_bytes.get(parent, 0) + size
        self._top_files.offer(path, size)

    def largest_files(self):
        return self._top_files.ranked()

    def largest_directories(self):
        totals = self._cumulative_bytes()
        top = _TopN(self._n)
        for path in self._parent_of:
            top.offer(path, totals[path])
        return top.ranked()

    def _seen_before(self, status):
        # Only files with several links can repeat; remembering just those keeps the set small.
        if status.st_nlink < 2:
            return False
        inode = (status.st_dev, status.st_ino)
        if inode in self._seen_inodes:
            return True
        self._seen_inodes.add(inode)
        return False

    def _cumulative_bytes(self):
        totals = dict(self._own_bytes)
        # Children were discovered after their parents, so in reverse discovery order each
        # directory's total is final before it is added to its parent.
        for path in reversed(self._parent_of):
            parent = self._parent_of[path]
            totals[parent] = totals.get(parent, 0) + totals[path]
        return totals


class _Sized:
    """A path and its bytes, ordered by rank: more bytes first, then by path."""

    __slots__ = ("bytes", "path")

    def __init__(self, path, size):
        self.path = path
        self.bytes = size

    def __lt__(self, other):
        # "Less than" means "ranks lower": on equal bytes the later path ranks lower, so a
        # descending sort yields ties in ascending path order.
        if self.bytes != other.bytes:
            return self.bytes < other.bytes
        return self.path > other.path


class _TopN:
    """The ``n`` highest-ranked paths offered, kept in a min-heap so memory stays bounded."""

    def __init__(self, n):
        self._n = n
        self._heap = []

    def offer(self, path, size):
        candidate = _Sized(path, size)
        if len(self._heap) < self._n:
            heapq.heappush(self._heap, candidate)
        elif self._heap[0] < candidate:
            heapq.heapreplace(self._heap, candidate)

    def ranked(self):
        return [
            {"path": item.path, "bytes": item.bytes} for item in sorted(self._heap, reverse=True)
        ]
