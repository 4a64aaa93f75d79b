"""Real small filesystems for root-only tests: a loop-mounted ext4 image, always cleaned up."""

import contextlib
import os
import pathlib
import subprocess
import tempfile

MIB = 1024 * 1024


@contextlib.contextmanager
def loop_ext4(size_mib=64, reserved_percent=0):
    """Mount a fresh ext4 image; yield its mount point; unmount and delete it after."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="eos-loopfs-"))
    image = workdir / "disk.img"
    mount_point = workdir / "mnt"
    mount_point.mkdir()
    with open(image, "wb") as handle:
        handle.truncate(size_mib * MIB)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-m", str(reserved_percent), "-O", "^has_journal", str(image)],
        check=True,
    )
    subprocess.run(["mount", "-o", "loop", str(image), str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        # umount of a loop mount made with -o loop also detaches the loop device.
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        image.unlink(missing_ok=True)
        mount_point.rmdir()
        workdir.rmdir()


def usage(path):
    """(used bytes, capacity) of the filesystem holding ``path``, as df and the analyzer count:
    blocks reserved for root are used, the capacity is used plus available."""
    stats = os.statvfs(path)
    used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    return used, used + stats.f_bavail * stats.f_frsize


def usage_percent(path):
    used, capacity = usage(path)
    return 100.0 * used / capacity


def fill_to(mount_point, percent, name="fill.bin"):
    """Grow (or shrink) one file on the mount until the filesystem is at ``percent`` used."""
    target = pathlib.Path(mount_point) / name
    used, capacity = usage(mount_point)
    current = target.stat().st_size if target.exists() else 0
    wanted = max(0, int(capacity * percent / 100) - (used - current))
    with open(target, "ab") as handle:
        handle.truncate(wanted)
    # truncate makes a sparse file; write the bytes so the blocks are really used.
    with open(target, "r+b") as handle:
        handle.seek(current)
        remaining = max(0, wanted - current)
        chunk = b"\0" * MIB
        while remaining > 0:
            written = handle.write(chunk[: min(MIB, remaining)])
            remaining -= written
        handle.flush()
        os.fsync(handle.fileno())
    return target


@contextlib.contextmanager
def bind_mount(source, target):
    """Bind-mount directory ``source`` on ``target`` (created); unmount it after, always."""
    target = pathlib.Path(target)
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)
