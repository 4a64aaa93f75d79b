"""
eos_storage.provisioned, provision, recommend_filesystem and filesystems on real loop devices.

Every test makes its own sparse image file and loop device under tmp_path, and a fstab there:
the host's /etc/fstab is never read or written. The fixture unmounts, detaches and deletes
everything it made, then checks that no loop device or mount is left behind.
"""

import os
import pathlib
import shutil
import stat
import subprocess

import pytest
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

pytestmark = pytest.mark.root

MIB = 1024 * 1024
# mkfs.xfs refuses devices under 300 MiB; the images are sparse, so size costs nothing.
IMAGE_MIB = 320

needs_xfs = pytest.mark.skipif(
    shutil.which("mkfs.xfs") is None, reason="mkfs.xfs is missing (package xfsprogs)"
)
needs_btrfs = pytest.mark.skipif(
    shutil.which("mkfs.btrfs") is None, reason="mkfs.btrfs is missing (package btrfs-progs)"
)


def sh(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def live_mounts():
    with open("/proc/self/mounts", encoding="utf-8") as stream:
        return [line.split() for line in stream]


def live_options(mount_point):
    for device, point, _fstype, options, *_ in live_mounts():
        if point == str(mount_point):
            return device, options.split(",")
    return None, []


def blkid(device):
    done = subprocess.run(
        ["blkid", "--probe", "--output", "export", device],
        capture_output=True,
        text=True,
        check=False,
    )
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


class Loop:
    """A loop device over a sparse image, its mount point (not created) and a private fstab."""

    def __init__(self, tmp_path):
        self.image = tmp_path / "disk.img"
        with open(self.image, "wb") as handle:
            handle.truncate(IMAGE_MIB * MIB)
        self.device = sh("losetup", "--find", "--show", str(self.image)).strip()
        self.mount_point = tmp_path / "mnt"
        self.fstab = tmp_path / "fstab"
        self.fstab.write_text("# test fstab\nUUID=0000-OTHER\t/elsewhere\text4\tdefaults\t0\t2\n")

    def args(self, **extra):
        return {
            "name": str(self.mount_point),
            "device": self.device,
            "fstab": str(self.fstab),
            **extra,
        }

    def fstab_lines(self):
        return [
            line.split("\t")
            for line in self.fstab.read_text().splitlines()
            if line and not line.startswith("#") and "/elsewhere" not in line
        ]

    def remove(self):
        for device, point, *_ in reversed(live_mounts()):
            if device == self.device or point.startswith(str(self.mount_point)):
                subprocess.run(["umount", point], check=False)
        subprocess.run(["losetup", "--detach", self.device], check=False)
        self.image.unlink(missing_ok=True)
        # The test's entries go with it; the unrelated line stays, as on a real host.
        if self.fstab.exists():
            kept = [
                line
                for line in self.fstab.read_text().splitlines(keepends=True)
                if str(self.mount_point) not in line
            ]
            self.fstab.write_text("".join(kept))

    def leftovers(self):
        attached = sh("losetup", "--list", "--noheadings", "--output", "BACK-FILE")
        mounted = [point for _, point, *_ in live_mounts() if point == str(self.mount_point)]
        return [line for line in attached.splitlines() if str(self.image) in line] + mounted


@pytest.fixture
def loop(tmp_path):
    device = Loop(tmp_path)
    try:
        yield device
    finally:
        device.remove()
    assert device.leftovers() == []
    assert str(device.mount_point) not in device.fstab.read_text()


@pytest.fixture
def provisioned(loaders):
    return loaders.states.eos_storage.provisioned


@pytest.mark.parametrize(
    ("filesystem", "workload"),
    [
        pytest.param("ext4", "container", id="ext4"),
        pytest.param("xfs", "database", id="xfs", marks=needs_xfs),
        pytest.param("btrfs", "snapshots", id="btrfs", marks=needs_btrfs),
    ],
)
def test_a_workload_is_provisioned_once_with_its_recommended_options(
    loop, provisioned, eos_storage, filesystem, workload
):
    advice = eos_storage.recommend_filesystem(workload, device=loop.device)
    assert advice["filesystem"] == filesystem

    first = provisioned(**loop.args(workload=workload))

    assert first.result is True, first.comment
    assert list(first.changes) == ["filesystem", "mount", "fstab"]
    found = blkid(loop.device)
    assert found["TYPE"] == filesystem
    device, options = live_options(loop.mount_point)
    assert device == loop.device
    assert advice["mount_options"]
    assert set(advice["mount_options"]) <= set(options)
    [line] = loop.fstab_lines()
    expected_pass = "2" if filesystem == "ext4" else "0"
    assert line == [
        f"UUID={found['UUID']}",
        str(loop.mount_point),
        filesystem,
        ",".join(advice["mount_options"]),
        "0",
        expected_pass,
    ]

    again = provisioned(**loop.args(workload=workload))

    assert again.result is True, again.comment
    assert again.changes == {}
    assert "already provisioned" in again.comment
    assert blkid(loop.device)["UUID"] == found["UUID"]
    assert len(loop.fstab_lines()) == 1


def test_test_mode_reports_each_step_and_changes_nothing(loop, provisioned):
    fstab_before = loop.fstab.read_text()

    ret = provisioned(**loop.args(workload="general"), test=True)

    assert ret.result is None
    assert list(ret.changes) == ["filesystem", "mount", "fstab"]
    assert ret.changes["fstab"]["new"].startswith("UUID=<assigned-by-mkfs>")
    assert ret.comment.startswith("Would change ext4")
    assert blkid(loop.device) == {}
    assert live_options(loop.mount_point) == (None, [])
    assert not loop.mount_point.exists()
    assert loop.fstab.read_text() == fstab_before


@needs_xfs
def test_a_device_with_another_filesystem_is_refused_without_force(loop, provisioned):
    sh("mkfs.ext4", "-q", "-L", "precious", loop.device)
    before = blkid(loop.device)
    fstab_before = loop.fstab.read_text()

    ret = provisioned(**loop.args(filesystem="xfs"))

    assert ret.result is False
    assert ret.changes == {}
    assert f"already holds a ext4 filesystem (UUID {before['UUID']}, label precious)" in (
        ret.comment
    )
    assert "force=True" in ret.comment
    assert blkid(loop.device) == before
    assert live_options(loop.mount_point) == (None, [])
    assert loop.fstab.read_text() == fstab_before


@needs_xfs
def test_force_formats_a_device_that_holds_another_filesystem(loop, provisioned):
    sh("mkfs.ext4", "-q", loop.device)
    old_uuid = blkid(loop.device)["UUID"]

    ret = provisioned(**loop.args(workload="database", force=True))

    assert ret.result is True, ret.comment
    assert ret.changes["filesystem"] == {
        "old": f"a ext4 filesystem (UUID {old_uuid})",
        "new": "xfs",
    }
    found = blkid(loop.device)
    assert found["TYPE"] == "xfs"
    assert "ext4" not in sh("wipefs", "--no-act", loop.device)
    assert loop.fstab_lines()[0][0] == f"UUID={found['UUID']}"
    # force never formats a device that already holds the wanted filesystem.
    again = provisioned(**loop.args(workload="database", force=True))
    assert again.changes == {}
    assert blkid(loop.device)["UUID"] == found["UUID"]


def test_data_without_a_signature_is_refused(loop, provisioned):
    with open(loop.device, "r+b") as disk:
        disk.seek(4096)
        disk.write(b"a database file that lost its superblock")

    ret = provisioned(**loop.args(filesystem="ext4"))

    assert ret.result is False
    assert "non-zero data in its first 1 MiB that no signature explains" in ret.comment
    assert blkid(loop.device) == {}


def test_a_non_empty_mount_point_is_not_mounted_over(loop, provisioned):
    loop.mount_point.mkdir()
    (loop.mount_point / "keep.txt").write_text("hidden by a mount")

    ret = provisioned(**loop.args(filesystem="ext4"))

    assert ret.result is False
    assert "holds 1 entries that the mount would hide" in ret.comment
    assert blkid(loop.device) == {}, "nothing is formatted when the mount would be refused"


def test_owner_and_mode_are_set_on_the_mounted_root(loop, provisioned):
    args = loop.args(workload="general", user="nobody", group="nogroup", mode="0750")

    ret = provisioned(**args)

    assert ret.result is True, ret.comment
    status = os.stat(loop.mount_point)
    assert (status.st_uid, stat.S_IMODE(status.st_mode)) == (65534, 0o750)
    assert ret.changes["owner"] == {"old": "root:root", "new": "nobody:nogroup"}
    assert ret.changes["mode"] == {"old": "0755", "new": "0750"}
    assert provisioned(**args).changes == {}


def test_a_missing_option_is_added_by_a_remount(loop, provisioned):
    provisioned(**loop.args(filesystem="ext4", options=""))
    assert "noatime" not in live_options(loop.mount_point)[1]

    ret = provisioned(**loop.args(filesystem="ext4", options="noatime"))

    assert ret.result is True, ret.comment
    assert set(ret.changes) == {"remount", "fstab"}
    assert "noatime" in live_options(loop.mount_point)[1]
    assert loop.fstab_lines()[0][3] == "noatime"


@needs_xfs
def test_a_mounted_xfs_is_relabelled_in_place(loop, provisioned):
    provisioned(**loop.args(filesystem="xfs", label="first"))

    ret = provisioned(**loop.args(filesystem="xfs", label="second"))

    assert ret.changes == {"label": {"old": "first", "new": "second"}}
    assert blkid(loop.device)["LABEL"] == "second"


def test_unsafe_options_need_allow_unsafe_and_warn(loop, provisioned):
    refused = provisioned(**loop.args(filesystem="ext4", options="noatime,data=writeback"))
    assert refused.result is False
    assert "options: data=writeback" in refused.comment
    assert "allow_unsafe=True" in refused.comment
    assert blkid(loop.device) == {}

    ret = provisioned(
        **loop.args(filesystem="ext4", options="noatime,data=writeback", allow_unsafe=True)
    )

    assert ret.result is True, ret.comment
    assert "warning: data=writeback: journals metadata only" in ret.comment
    assert "data=writeback" in live_options(loop.mount_point)[1]


def test_the_execution_module_has_the_same_guards(loop, eos_storage):
    sh("mkfs.ext4", "-q", loop.device)

    with pytest.raises(CommandExecutionError, match="already holds a ext4 filesystem"):
        eos_storage.provision(**loop.args(filesystem="btrfs"))

    done = eos_storage.provision(**loop.args(workload="container"))
    assert done["filesystem"] == "ext4"
    assert list(done["changes"]) == ["mount", "fstab"]
    assert done["uuid"] == blkid(loop.device)["UUID"]


def test_device_facts_come_from_sys(loop, eos_storage):
    advice = eos_storage.recommend_filesystem("backup", device=loop.device)

    name = pathlib.Path(loop.device).name
    rotational = pathlib.Path(f"/sys/block/{name}/queue/rotational").read_text().strip()
    assert advice["device_facts"]["size_bytes"] == IMAGE_MIB * MIB
    assert advice["device_facts"]["rotational"] is (rotational == "1")
    assert advice["device_facts"]["kernel_name"] == name


def test_filesystems_advises_noatime_for_a_database_on_ext4(eos_config, loop, eos_storage):
    eos_storage.provision(**loop.args(filesystem="ext4"))
    eos_config({"filesystems": {"workloads": {str(loop.mount_point): "database"}}})

    report = eos_storage.filesystems(str(loop.mount_point))[str(loop.mount_point)]

    assert report["fstype"] == "ext4"
    assert report["workload"] == "database"
    assert report["workload_from"] == str(loop.mount_point)
    messages = [item["message"] for item in report["advice"]]
    assert any(m.startswith("a database on ext4 is mounted without noatime") for m in messages)


def test_argument_errors_name_the_argument(loop, eos_storage, provisioned):
    with pytest.raises(SaltInvocationError, match=r"^device: '/dev/eos-no-such-disk': No such"):
        eos_storage.provision(**loop.args(workload="general", device="/dev/eos-no-such-disk"))
    with pytest.raises(SaltInvocationError, match="distributed store"):
        eos_storage.provision(**loop.args(workload="distributed"))

    ret = provisioned(**loop.args(workload="webscale"))

    assert ret.result is False
    assert ret.comment.startswith("workload: 'webscale' is not one of database, container")
    assert blkid(loop.device) == {}


def test_a_distributed_workload_provisions_the_named_local_filesystem(loop, eos_storage):
    done = eos_storage.provision(**loop.args(workload="distributed", filesystem="ext4"))

    assert done["filesystem"] == "ext4"
    assert done["mount_options"] == ["noatime"]
    assert "noatime" in live_options(loop.mount_point)[1]
