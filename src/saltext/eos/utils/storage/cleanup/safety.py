"""The safety rules every touched file passes, and the facts and simulated view they read."""

import fnmatch
import logging
import math
import os
import re
from dataclasses import dataclass

from saltext.eos.utils.storage import protected
from saltext.eos.utils.storage import walk

from .options import GLOB_CHARACTER
from .options import _key

log = logging.getLogger(__name__)

COMPRESSED_SUFFIXES = (".gz", ".xz", ".bz2", ".zst", ".zip")
# syslog.1, syslog.2.gz, app.log-20240101, app.log-2024010112.xz, app.log.old. "\Z", not "$":
# "$" also matches before a trailing newline, and "app.log.1\n" is not a rotated log.
ROTATED_NAME = re.compile(r"(\.\d+|[-.]\d{8}(\d{2})?|\.old)(\.(gz|xz|bz2|zst|zip))?\Z")
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Keep(Exception):
    """A file a step wanted but must leave alone; the message says why."""


class Protection:
    """
    The protected classes and ``preserve_paths``: which paths no step may ever touch, and
    why. A reason names the rule and the class (or the setting) it comes from.
    """

    def __init__(self, preserve_paths=(), classes=protected.BUILTIN):
        preserved = protected.ProtectedClass(
            name=_key("preserve_paths"),
            reason="the site said so",
            paths=tuple(rule for rule in preserve_paths if rule.startswith("/")),
            names=tuple(
                protected.NamePattern.glob(rule) for rule in preserve_paths if "/" not in rule
            ),
        )
        self._classes = (*classes, preserved)

    def reason(self, path):
        """Why ``path`` (absolute, symlink-free) is preserved, or None when it is not."""
        for protecting in self._classes:
            rule = protecting.rule_for(path)
            if rule is not None:
                return f"preserved: {rule} ({protecting.name})"
        return None

    def covers_part_of(self, directory):
        """Whether some preserved path lies below ``directory`` (a tool there could touch it)."""
        return any(
            _may_lie_below(rule, directory)
            for protecting in self._classes
            for rule in protecting.paths
        )


def _may_lie_below(rule, directory):
    prefix = directory.rstrip("/") + "/"
    literal = GLOB_CHARACTER.split(rule, maxsplit=1)[0]
    if literal == rule:
        return rule.startswith(prefix)
    # A glob's wildcards can reach below the directory from anywhere above or below it.
    return literal.startswith(prefix) or prefix.startswith(literal)


@dataclass(frozen=True)
class FileFacts:
    """What a step knows about one regular file when it decides."""

    path: str
    device: int
    inode: int
    links: int
    size: int
    allocated: int
    atime: float
    mtime: float
    ctime: float
    mtime_ns: int

    @classmethod
    def from_stat(cls, path, status):
        return cls(
            path=path,
            device=status.st_dev,
            inode=status.st_ino,
            links=status.st_nlink,
            size=status.st_size,
            allocated=walk.allocated_bytes(status),
            atime=status.st_atime,
            mtime=status.st_mtime,
            ctime=status.st_ctime,
            mtime_ns=status.st_mtime_ns,
        )

    @property
    def name(self):
        return os.path.basename(self.path)


class Overlay:
    """
    The disk as a dry run has left it so far: files removed, shrunk or created by the steps
    already simulated. A real run leaves it empty, since the disk itself has changed.
    """

    def __init__(self):
        self._replaced = {}
        self._added = {}
        self._next_fake_inode = -1

    def replace(self, path, leaves):
        """Record that the file at ``path`` became ``leaves`` (FileFacts, or None: gone)."""
        # Forget what was there: a file on disk is hidden, a simulated one dropped.
        if path in self._added:
            del self._added[path]
        else:
            self._replaced[path] = None
        # Then record what is there now, in place of the old file or as a new one.
        if leaves is None:
            return
        if leaves.path == path and path in self._replaced:
            self._replaced[path] = leaves
        else:
            self._added[leaves.path] = leaves

    def fake_inode(self):
        # Created files have no inode yet; negative numbers never collide with real ones.
        self._next_fake_inode -= 1
        return self._next_fake_inode

    def exists(self, path):
        if path in self._added:
            return True
        if path in self._replaced:
            return self._replaced[path] is not None
        return os.path.lexists(path)

    def view(self, root, walked):
        """The FileFacts below ``root``, as the simulated disk would show them."""
        for on_disk in walked:
            now = self._replaced.get(on_disk.path, on_disk)
            if now is not None:
                yield now
        for path, facts in list(self._added.items()):
            if _is_below(path, root):
                yield facts


def _is_below(path, directory):
    return path.startswith(directory.rstrip("/") + "/")


def _walk_files(root, mount_table):
    for path, status in walk.iter_files(root, mount_table=mount_table):
        yield FileFacts.from_stat(path, status)


def _real_path(path):
    # Resolve the parents (a root may sit below a symlinked /var) but never the root itself.
    parent, name = os.path.split(os.path.normpath(path))
    return os.path.join(os.path.realpath(parent), name)


def _real_paths(paths):
    return [_real_path(path) for path in paths]


def _allocated_for(size, block_size):
    return math.ceil(size / block_size) * block_size if size else 0


def _is_compressed(name):
    return name.endswith(COMPRESSED_SUFFIXES)


def _is_rotated(name):
    return ROTATED_NAME.search(name) is not None


def _matches_any(name, patterns):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
