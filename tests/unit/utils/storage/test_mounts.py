"""Mount selection and statvfs figures, including a mount that never answers."""

import os
import threading
from types import SimpleNamespace

import pytest

from saltext.eos.utils.storage import mounts


def statvfs_result(blocks=1000, bfree=300, bavail=250, files=100, ffree=40, frsize=4096, flag=0):
    return SimpleNamespace(
        f_blocks=blocks,
        f_bfree=bfree,
        f_bavail=bavail,
        f_files=files,
        f_ffree=ffree,
        f_frsize=frsize,
        f_flag=flag,
    )


def test_reserved_blocks_count_as_used_like_df():
    figures = mounts.figures_from_statvfs(statvfs_result())
    assert figures.total_bytes == 1000 * 4096
    assert figures.used_bytes == 700 * 4096
    assert figures.free_bytes == 250 * 4096
    # used / (used + available): 700 / 950, not 700 / 1000
    assert figures.usage_percent == pytest.approx(73.68, abs=0.01)
    assert figures.inode_percent == 60.0
    assert figures.read_only is False


def test_filesystem_without_inode_table_reports_none():
    figures = mounts.figures_from_statvfs(statvfs_result(files=0, ffree=0))
    assert figures.inodes_total is None
    assert figures.inode_percent is None


def test_read_only_flag():
    assert mounts.figures_from_statvfs(statvfs_result(flag=os.ST_RDONLY)).read_only


@pytest.mark.parametrize(
    ("mountpoint", "fstype", "include_tmpfs", "real"),
    [
        ("/", "overlay", False, True),
        ("/proc", "proc", False, False),
        ("/sys/fs/cgroup", "cgroup2", False, False),
        ("/snap/core/1", "squashfs", False, False),
        ("/dev/shm", "tmpfs", False, False),
        ("/dev/shm", "tmpfs", True, True),
        ("/var/lib/docker/overlay2/x/merged", "overlay", False, False),
        ("/srv", "xfs", False, True),
        ("/mnt/nfs", "nfs4", False, True),
    ],
)
def test_is_real(mountpoint, fstype, include_tmpfs, real):
    mount = mounts.Mount(mountpoint, "dev", fstype, "rw")
    assert mounts.is_real(mount, include_tmpfs=include_tmpfs) is real


def test_unknown_mount_names_the_path():
    with pytest.raises(mounts.UnknownMount, match="'/definitely/not/mounted'"):
        mounts.find("/definitely/not/mounted")


def test_find_normalises_trailing_slash():
    assert mounts.find("/").mountpoint == "/"


def test_a_hanging_mount_times_out_while_others_report():
    release = threading.Event()

    def statvfs(path):
        if path == "/dead-nfs":
            release.wait(30)
        return statvfs_result()

    root = mounts.Mount("/", "/dev/vda", "ext4", "rw")
    dead = mounts.Mount("/dead-nfs", "server:/export", "nfs4", "rw")
    try:
        results = mounts.measure([root, dead], timeout_seconds=0.3, statvfs=statvfs)
        assert isinstance(results["/"], mounts.Figures)
        assert results["/dead-nfs"] == "statvfs did not answer within 0.3s"
        # The stuck probe is not started again while it still hangs.
        again = mounts.measure([dead], timeout_seconds=0.3, statvfs=statvfs)
        assert "still blocked" in again["/dead-nfs"]
    finally:
        release.set()


@pytest.mark.parametrize("fstype", ["ext4", "fuse.sshfs"])
def test_statvfs_error_is_reported_per_mount(fstype):
    def statvfs(path):
        raise PermissionError(13, "Permission denied")

    mount = mounts.Mount("/x", "dev", fstype, "rw")
    assert mounts.measure([mount], statvfs=statvfs)["/x"] == "statvfs failed: Permission denied"


@pytest.mark.parametrize(
    ("fstype", "blocks"),
    [("nfs4", True), ("cifs", True), ("fuse.sshfs", True), ("ext4", False), ("xfs", False)],
)
def test_only_network_and_fuse_mounts_may_block(fstype, blocks):
    assert mounts.may_block(mounts.Mount("/m", "dev", fstype, "rw")) is blocks
