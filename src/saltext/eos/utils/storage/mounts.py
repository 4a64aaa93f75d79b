"""
Which mounts are real filesystems, and their figures from statvfs, each within a time limit.

A mount that does not answer (a dead NFS server) blocks statvfs in the kernel. Each network
or FUSE mount is measured in its own daemon thread with a deadline, so one dead mount
reports an error while the others report normally; a mount whose earlier probe is still
stuck is not probed again.
"""

import fnmatch
import os
import threading
import time
from dataclasses import dataclass

import psutil

from saltext.eos.utils import errors

# Filesystems that hold no user data worth watching.
PSEUDO_FSTYPES = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fuse.gvfsd-fuse",
        "fuse.lxcfs",
        "fuse.portal",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "sysfs",
        "tracefs",
        "iso9660",
        "nullfs",
        "aufs",
    }
)
TMPFS_TYPES = frozenset({"tmpfs"})
# Filesystems whose statvfs can block on a server that does not answer. Local filesystems
# answer from memory, so they are measured directly and skip the thread's cost.
REMOTE_FSTYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "glusterfs",
        "9p",
        "afs",
        "lustre",
        "gpfs",
        "beegfs",
        "ocfs2",
        "gfs2",
        "davfs",
        "sshfs",
    }
)
DEFAULT_TIMEOUT_SECONDS = 5.0


class UnknownMount(errors.NotFound):
    """A path that is not a mount point."""


@dataclass(frozen=True)
class Mount:
    mountpoint: str
    device: str
    fstype: str
    options: str


@dataclass(frozen=True)
class Figures:
    """What statvfs says of one filesystem, in the units a user reads."""

    total_bytes: int
    used_bytes: int
    free_bytes: int
    usage_percent: float
    inodes_total: int | None
    inodes_used: int | None
    inode_percent: float | None
    read_only: bool


def all_mounts():
    """Every mount, the last mount on a mount point winning (it hides the ones below)."""
    by_point = {}
    for part in psutil.disk_partitions(all=True):
        by_point[part.mountpoint] = Mount(part.mountpoint, part.device, part.fstype, part.opts)
    return by_point


def is_real(mount, include_tmpfs=False):
    if mount.mountpoint == "/":
        # The root filesystem is always watched, even when it is an overlay (containers).
        return True
    if mount.fstype in TMPFS_TYPES:
        return include_tmpfs
    return mount.fstype not in PSEUDO_FSTYPES


def real_mounts(include_tmpfs=False, exclude=()):
    """The mounts worth analysing, sorted by mount point."""
    return [
        mount
        for point, mount in sorted(all_mounts().items())
        if is_real(mount, include_tmpfs)
        and not any(fnmatch.fnmatchcase(point, pattern) for pattern in exclude)
    ]


def find(mountpoint):
    """The Mount at exactly ``mountpoint`` (pseudo or not), or UnknownMount."""
    normalised = os.path.normpath(str(mountpoint)) if mountpoint else mountpoint
    mounts = all_mounts()
    if normalised not in mounts:
        raise UnknownMount(f"mount {mountpoint!r} is not a mount point on this system")
    return mounts[normalised]


def figures_from_statvfs(result):
    """Figures from an os.statvfs_result; used counts reserved blocks as used, as df does."""
    total = result.f_blocks * result.f_frsize
    used = (result.f_blocks - result.f_bfree) * result.f_frsize
    available = result.f_bavail * result.f_frsize
    denominator = used + available
    usage_percent = round(100.0 * used / denominator, 2) if denominator else 0.0
    if result.f_files:
        inodes_used = result.f_files - result.f_ffree
        inode_percent = round(100.0 * inodes_used / result.f_files, 2)
        inodes_total = result.f_files
    else:
        # btrfs and some network filesystems have no fixed inode table.
        inodes_used = inode_percent = inodes_total = None
    return Figures(
        total_bytes=total,
        used_bytes=used,
        free_bytes=available,
        usage_percent=usage_percent,
        inodes_total=inodes_total,
        inodes_used=inodes_used,
        inode_percent=inode_percent,
        read_only=bool(result.f_flag & os.ST_RDONLY),
    )


_stuck_probes = {}
_stuck_lock = threading.Lock()


def may_block(mount):
    """Whether statvfs on this mount can hang on an unresponsive server."""
    return mount.fstype in REMOTE_FSTYPES or mount.fstype.startswith("fuse")


def measure(selected, timeout_seconds=DEFAULT_TIMEOUT_SECONDS, statvfs=os.statvfs):
    """
    {mountpoint: Figures or an error string} for the given Mounts.

    Mounts that may block are each given ``timeout_seconds``; ``statvfs`` is injectable so
    that a hanging filesystem can be simulated in tests.
    """
    results = {}
    probes = {}
    for mount in selected:
        point = mount.mountpoint
        if not may_block(mount):
            results[point] = _measure_directly(point, statvfs)
            continue
        with _stuck_lock:
            stuck = _stuck_probes.get(point)
            if stuck is not None and stuck.is_alive():
                results[point] = "statvfs still blocked since an earlier check"
                continue
        probe = _Probe(point, statvfs)
        probe.start()
        probes[point] = probe

    deadline = time.monotonic() + timeout_seconds
    for point, probe in probes.items():
        probe.join(max(0.0, deadline - time.monotonic()))
        if probe.is_alive():
            with _stuck_lock:
                _stuck_probes[point] = probe
            results[point] = f"statvfs did not answer within {timeout_seconds:g}s"
        elif probe.error is not None:
            results[point] = f"statvfs failed: {probe.error}"
        else:
            results[point] = figures_from_statvfs(probe.result)
    return {mount.mountpoint: results[mount.mountpoint] for mount in selected}


def _measure_directly(point, statvfs):
    try:
        return figures_from_statvfs(statvfs(point))
    except OSError as err:
        return f"statvfs failed: {err.strerror or err}"


class _Probe(threading.Thread):
    def __init__(self, point, statvfs):
        super().__init__(name=f"eos-statvfs:{point}", daemon=True)
        self.point = point
        self.statvfs = statvfs
        self.result = None
        self.error = None

    def run(self):
        try:
            self.result = self.statvfs(self.point)
        except OSError as err:
            self.error = err.strerror or str(err)
