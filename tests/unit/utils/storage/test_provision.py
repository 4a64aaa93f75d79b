"""
Provisioning decisions and guards, on a fake device whose contents the fake commands change.

The mount point and fstab are real paths under tmp_path; mkfs, blkid, wipefs and mount are
fakes, so these tests need neither root nor a block device.
"""

import functools
import json
import os
import re
import stat
import types

import pytest

from saltext.eos.utils import commands
from saltext.eos.utils.storage import fsadvice
from saltext.eos.utils.storage import mounts
from saltext.eos.utils.storage import provision

GIB = fsadvice.GIB
DEVICE = "/dev/sdx"
OTHER_LINE = "UUID=1111-2222\t/home\text4\tdefaults\t0\t2"


class FakeDisk:
    """/dev/sdx (8:16, partition sdx1 8:17): blkid and wipefs report what mkfs last made."""

    def __init__(self):
        self.facts = fsadvice.DeviceFacts(
            DEVICE, "sdx", 10 * GIB, False, "8:16", ("sdx1",), ("8:17",)
        )
        self.found = {}
        self.head = b"\0" * 4096
        self.live = {}
        self.commands = []
        self.mount_error = None
        self.numbers = {DEVICE: "8:16", "/dev/sdx1": "8:17", "/dev/sdy": "8:32"}
        self.made = 0
        self.partition_holders = {}
        self.swaps = []

    def holds(self, filesystem, label=None, uuid="old-uuid"):
        self.found = {"TYPE": filesystem, "USAGE": "filesystem", "UUID": uuid}
        if label:
            self.found["LABEL"] = label

    def run(self, argv):
        self.commands.append(list(argv))
        program = argv[0]
        if program == "blkid":
            if not self.found:
                return commands.CommandResult(2, "", "")
            text = "\n".join(f"{key}={value}" for key, value in self.found.items())
            return commands.CommandResult(0, text, "")
        if program == "wipefs" and "--no-act" in argv:
            kind = self.found.get("TYPE") or self.found.get("PTTYPE")
            listed = [{"type": kind, "offset": "0x438"}] if kind else []
            return commands.CommandResult(0, json.dumps({"signatures": listed}), "")
        if program == "wipefs":
            self.found = {}
            return commands.CommandResult(0, "", "")
        if program.startswith("mkfs."):
            self.made += 1
            label = argv[argv.index("-L") + 1] if "-L" in argv else None
            self.holds(program.removeprefix("mkfs."), label, uuid=f"new-uuid-{self.made}")
            return commands.CommandResult(0, "", "")
        if program in ("e2label", "xfs_admin", "xfs_io", "btrfs"):
            self.found["LABEL"] = "relabelled"
            return commands.CommandResult(0, "", "")
        return commands.CommandResult(127, "", f"{program}: command not found")

    def mount(self, name, device, mkmnt=False, fstype="", opts="defaults"):
        if self.mount_error:
            return self.mount_error
        if mkmnt:
            os.makedirs(name, exist_ok=True)
        self._mounted(name, device, fstype, opts)
        return True

    def remount(self, name, device, mkmnt=False, fstype="", opts="defaults"):
        self._mounted(name, device, fstype, opts)
        return True

    def _mounted(self, name, device, fstype, opts):
        shown = [o for o in opts.split(",") if provision.is_shown(o)]
        options = ",".join(["rw", *(shown if "noatime" in shown else ["relatime", *shown])])
        point = os.path.realpath(name)
        self.live[point] = mounts.Mount(point, device, fstype, options)

    def system(self):
        return provision.World(
            run=self.run,
            mount=self.mount,
            remount=self.remount,
            live_mounts=lambda: dict(self.live),
            device_facts=lambda _device: self.facts,
            device_number=self.numbers.get,
            read_head=lambda _device: self.head,
            partition_holders=lambda _facts: dict(self.partition_holders),
            swap_devices=lambda: tuple(self.swaps),
        )

    def ran(self, program):
        return [argv for argv in self.commands if argv[0] == program]


@pytest.fixture
def disk():
    return FakeDisk()


@pytest.fixture
def fstab(tmp_path):
    path = tmp_path / "fstab"
    path.write_text(f"# static file system information\n{OTHER_LINE}\n")
    return path


@pytest.fixture
def point(tmp_path):
    return tmp_path / "srv" / "data"


def make_request(point, fstab, filesystem="ext4", **extra):
    return provision.request(str(point), DEVICE, filesystem, fstab=str(fstab), **extra)


# ----------------------------------------------------------------------------- a full run


def test_a_fresh_device_is_formatted_mounted_and_persisted_then_left_alone(disk, point, fstab):
    req = make_request(point, fstab, mount_options="noatime", label="data")

    first = provision.apply(req, disk.system())

    assert list(first.changes) == ["filesystem", "mount", "fstab"]
    assert first.changes["filesystem"] == {"old": None, "new": "ext4"}
    assert disk.ran("mkfs.ext4") == [["mkfs.ext4", "-q", "-L", "data", DEVICE]]
    assert first.uuid == "new-uuid-1"
    line = f"UUID=new-uuid-1\t{point}\text4\tnoatime\t0\t2"
    assert fstab.read_text() == f"# static file system information\n{OTHER_LINE}\n{line}\n"
    assert first.changes["fstab"] == {"old": None, "new": line}

    disk.commands.clear()
    second = provision.apply(req, disk.system())

    assert second.changes == {}
    assert second.uuid == "new-uuid-1"
    assert disk.ran("mkfs.ext4") == []
    assert fstab.read_text().count("new-uuid-1") == 1


def test_a_plan_lists_the_steps_and_changes_nothing(disk, point, fstab):
    before = fstab.read_text()
    req = make_request(point, fstab, filesystem="xfs", mode="0750")

    planned = provision.plan(req, disk.system())

    assert list(planned.changes) == ["filesystem", "mount", "fstab", "mode"]
    assert planned.changes["fstab"]["new"].startswith("UUID=<assigned-by-mkfs>\t")
    assert planned.changes["mode"] == {"old": "0755", "new": "0750"}
    assert {argv[0] for argv in disk.commands} == {"blkid", "wipefs"}
    assert ["wipefs", "--no-act", "--json", DEVICE] in disk.commands
    assert fstab.read_text() == before
    assert not point.exists()
    assert disk.live == {}


def test_persist_false_leaves_fstab_alone(disk, point, fstab):
    before = fstab.read_text()

    done = provision.apply(make_request(point, fstab, persist=False), disk.system())

    assert list(done.changes) == ["filesystem", "mount"]
    assert fstab.read_text() == before


def test_mode_is_set_on_the_mounted_root_once(disk, point, fstab):
    req = make_request(point, fstab, mode=700)

    done = provision.apply(req, disk.system())

    assert done.changes["mode"]["new"] == "0700"
    assert stat.S_IMODE(os.stat(point).st_mode) == 0o700
    assert provision.apply(req, disk.system()).changes == {}


def test_a_failed_mount_reports_the_steps_already_done(disk, point, fstab):
    disk.mount_error = "mount: wrong fs type, bad option"

    with pytest.raises(provision.StepFailed) as caught:
        provision.apply(make_request(point, fstab), disk.system())

    assert "mount of" in str(caught.value)
    assert "wrong fs type" in str(caught.value)
    assert list(caught.value.changes) == ["filesystem"]
    assert str(point) not in fstab.read_text()


# ----------------------------------------------------------------------------- the device


def test_another_filesystem_is_refused_without_force_and_nothing_runs(disk, point, fstab):
    disk.holds("ext4", label="precious")

    with pytest.raises(provision.Refused) as caught:
        provision.apply(make_request(point, fstab, filesystem="xfs"), disk.system())

    assert str(caught.value) == (
        f"{DEVICE} already holds a ext4 filesystem (UUID old-uuid, label precious); it is "
        "formatted only with force=True"
    )
    assert {argv[0] for argv in disk.commands} == {"blkid", "wipefs"}
    assert ["wipefs", "--all", DEVICE] not in disk.commands


def test_force_wipes_the_old_signatures_then_formats_with_the_force_flag(disk, point, fstab):
    disk.holds("ext4")

    done = provision.apply(make_request(point, fstab, filesystem="xfs", force=True), disk.system())

    assert done.changes["filesystem"] == {"old": "a ext4 filesystem (UUID old-uuid)", "new": "xfs"}
    wipe = disk.commands.index(["wipefs", "--all", DEVICE])
    assert disk.commands[wipe + 1] == ["mkfs.xfs", "-q", "-f", DEVICE]


def test_the_wanted_filesystem_is_never_formatted_even_with_force(disk, point, fstab):
    disk.holds("xfs")

    done = provision.apply(make_request(point, fstab, filesystem="xfs", force=True), disk.system())

    assert "filesystem" not in done.changes
    assert disk.ran("mkfs.xfs") == []
    assert done.uuid == "old-uuid"
    assert f"UUID=old-uuid\t{point}\txfs" in fstab.read_text()


@pytest.mark.parametrize(
    ("found", "described"),
    [
        ({"PTTYPE": "gpt"}, "a gpt partition table"),
        (
            {"TYPE": "LVM2_member", "USAGE": "raid", "UUID": "pv"},
            "a LVM2_member signature (UUID pv)",
        ),
        ({"TYPE": "crypto_LUKS", "USAGE": "crypto"}, "a crypto_LUKS signature"),
    ],
)
def test_anything_else_on_the_device_is_refused(disk, point, fstab, found, described):
    disk.found = found

    with pytest.raises(provision.Refused, match="already holds") as caught:
        provision.apply(make_request(point, fstab), disk.system())

    assert described in str(caught.value)


def test_data_no_signature_explains_is_refused(disk, point, fstab):
    disk.head = b"\0" * 512 + b"rows of a table" + b"\0" * 512

    with pytest.raises(provision.Refused, match="non-zero data in its first 1 MiB"):
        provision.apply(make_request(point, fstab), disk.system())


def test_a_partition_mounted_elsewhere_is_refused_even_with_force(disk, point, fstab):
    disk.live["/boot"] = mounts.Mount("/boot", "/dev/sdx1", "ext4", "rw")

    with pytest.raises(provision.Refused) as caught:
        provision.apply(make_request(point, fstab, force=True), disk.system())

    assert str(caught.value) == (
        f"{DEVICE}: its partition sdx1 is mounted at /boot (/dev/sdx1); the device is never "
        "touched while it or a partition of it is in use"
    )
    assert disk.commands == []


def fake_sysfs(root):
    """
    A /sys tree for /dev/sdx (8:16): partition sdx1 under LVM (dm-0, vg0-data), sdx2 in an md
    RAID (md0), sdx3 unused. Returns (/sys/dev/block, a stat for /dev/sdx).
    """
    disk = root / "devices" / "pci0000:00" / "block" / "sdx"
    (disk / "holders").mkdir(parents=True)
    (disk / "size").write_text("20971520\n")
    (disk / "dev").write_text("8:16\n")
    dm0 = root / "devices" / "virtual" / "block" / "dm-0"
    (dm0 / "dm").mkdir(parents=True)
    (dm0 / "dm" / "name").write_text("vg0-data\n")
    md0 = root / "devices" / "virtual" / "block" / "md0"
    md0.mkdir(parents=True)
    for number, holder in ((1, dm0), (2, md0), (3, None)):
        partition = disk / f"sdx{number}"
        (partition / "holders").mkdir(parents=True)
        (partition / "partition").write_text(f"{number}\n")
        (partition / "dev").write_text(f"8:{16 + number}\n")
        if holder is not None:
            (partition / "holders" / holder.name).symlink_to(holder)
    by_number = root / "dev" / "block"
    by_number.mkdir(parents=True)
    (by_number / "8:16").symlink_to(disk)
    status = types.SimpleNamespace(st_mode=stat.S_IFBLK | 0o660, st_rdev=os.makedev(8, 16))
    return str(by_number), lambda _path: status


def test_holders_of_partitions_are_read_from_sys(tmp_path):
    sys_dev_block, stat_path = fake_sysfs(tmp_path / "sys")
    facts = fsadvice.device_facts(DEVICE, sys_dev_block, stat_path)

    assert facts.partitions == ("sdx1", "sdx2", "sdx3")
    assert facts.holders == ()  # the disk itself: nothing is built on it directly
    assert provision.partition_holders(facts, sys_dev_block) == {
        "sdx1": ("dm-0 (vg0-data)",),
        "sdx2": ("md0",),
    }


def test_a_partition_with_holders_is_refused_even_with_force(disk, point, fstab, tmp_path):
    sys_dev_block, stat_path = fake_sysfs(tmp_path / "sys")
    system = disk.system()
    system.device_facts = functools.partial(
        fsadvice.device_facts, sys_dev_block=sys_dev_block, stat_path=stat_path
    )
    system.partition_holders = functools.partial(
        provision.partition_holders, sys_dev_block=sys_dev_block
    )

    with pytest.raises(provision.Refused) as caught:
        provision.apply(make_request(point, fstab, force=True), system)

    assert str(caught.value) == (
        f"{DEVICE}: its partition sdx1 is in use by dm-0 (vg0-data); its partition sdx2 is "
        "in use by md0 (device-mapper such as LVM or LUKS, md RAID or bcache); the device is "
        "never touched while it or a partition of it is in use"
    )
    assert disk.commands == []
    assert not point.exists()


def test_a_device_without_partitions_has_no_partition_holders(tmp_path):
    facts = fsadvice.DeviceFacts(DEVICE, "sdx", GIB, False, "8:16")

    assert provision.partition_holders(facts, str(tmp_path)) == {}


@pytest.mark.parametrize(
    ("swap", "refused"),
    [
        ("/dev/sdx1", f"{DEVICE}: its partition sdx1 is in use as swap (/dev/sdx1 in /proc/swaps)"),
        (DEVICE, f"{DEVICE} is in use as swap ({DEVICE} in /proc/swaps)"),
    ],
)
def test_swap_on_the_device_or_a_partition_is_refused_even_with_force(
    disk, point, fstab, swap, refused
):
    disk.swaps = ["/dev/sdy", swap]

    with pytest.raises(provision.Refused) as caught:
        provision.apply(make_request(point, fstab, force=True), disk.system())

    assert str(caught.value).startswith(refused)
    assert str(caught.value).endswith(f"swapoff {swap} first")
    assert disk.commands == []


def test_swap_on_another_device_is_no_obstacle(disk, point, fstab):
    disk.swaps = ["/dev/sdy"]

    assert "filesystem" in provision.apply(make_request(point, fstab), disk.system()).changes


def test_swap_devices_are_read_from_proc_swaps(tmp_path):
    swaps = tmp_path / "swaps"
    swaps.write_text(
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        "/dev/sdx2                               partition\t2097148\t\t0\t\t-2\n"
        "/swap\\040file                          file\t\t1048572\t\t0\t\t-3\n"
        "/dev/mapper/vg0-swap\\040x              partition\t1048572\t\t0\t\t-4\n"
    )

    assert provision.swap_devices(str(swaps)) == ("/dev/sdx2", "/dev/mapper/vg0-swap x")
    assert provision.swap_devices(str(tmp_path / "missing")) == ()


def test_a_device_with_holders_is_refused_even_with_force(disk, point, fstab):
    disk.facts = fsadvice.DeviceFacts(DEVICE, "sdx", GIB, False, "8:16", holders=("dm-0",))

    with pytest.raises(provision.Refused, match="in use by dm-0"):
        provision.apply(make_request(point, fstab, force=True), disk.system())


def test_a_device_mounted_here_with_another_filesystem_is_never_formatted(disk, point, fstab):
    disk.holds("ext4")
    disk.mount(str(point), DEVICE, mkmnt=True, fstype="ext4")

    with pytest.raises(provision.Refused, match="a mounted filesystem is never formatted"):
        provision.apply(make_request(point, fstab, filesystem="xfs", force=True), disk.system())


def test_blkid_failing_is_an_error_not_an_empty_device(disk, point, fstab):
    def broken(argv):
        return commands.CommandResult(4, "", "blkid: cannot open /dev/sdx: Permission denied")

    system = disk.system()
    system.run = broken

    with pytest.raises(provision.CommandFailed, match="Permission denied"):
        provision.probe(DEVICE, system)


def test_blkid_export_escapes_are_read(disk):
    disk.found = {"TYPE": "ext4", "USAGE": "filesystem", "LABEL": r"my\ disk"}

    assert provision.probe(DEVICE, disk.system()).label == "my disk"


# ----------------------------------------------------------------------------- the mount point


def test_another_device_on_the_mount_point_is_refused(disk, point, fstab):
    point.mkdir(parents=True)
    disk.live[str(point)] = mounts.Mount(str(point), "/dev/sdy", "xfs", "rw")

    with pytest.raises(provision.Refused, match="already a mount point of /dev/sdy"):
        provision.apply(make_request(point, fstab), disk.system())


def test_a_non_empty_directory_is_mounted_over_only_with_force(disk, point, fstab):
    point.mkdir(parents=True)
    (point / "old-data").write_text("x")

    with pytest.raises(provision.Refused, match="holds 1 entries that the mount would hide"):
        provision.apply(make_request(point, fstab), disk.system())
    assert disk.ran("mkfs.ext4") == [], "refused before anything was formatted"

    done = provision.apply(make_request(point, fstab, force=True), disk.system())
    assert "mount" in done.changes


def test_a_file_as_mount_point_is_refused(disk, point, fstab):
    point.parent.mkdir(parents=True)
    point.write_text("")

    with pytest.raises(provision.Refused, match="is not a directory"):
        provision.apply(make_request(point, fstab), disk.system())


def test_a_missing_visible_option_is_added_by_a_remount(disk, point, fstab):
    provision.apply(make_request(point, fstab), disk.system())

    done = provision.apply(make_request(point, fstab, mount_options="noatime"), disk.system())

    assert done.changes["remount"] == {"old": "rw,relatime", "new": "noatime"}
    assert "noatime" in disk.live[str(point)].options


def test_options_the_kernel_never_shows_do_not_cause_a_remount(disk, point, fstab):
    req = make_request(point, fstab, mount_options="noatime,nofail,x-systemd.device-timeout=5")
    provision.apply(req, disk.system())

    assert provision.apply(req, disk.system()).changes == {}


def test_a_relabel_uses_the_mounted_or_unmounted_tool(disk, point, fstab):
    disk.holds("xfs", label="old")

    offline = provision.plan(make_request(point, fstab, "xfs", label="new"), disk.system())
    disk.mount(str(point), DEVICE, mkmnt=True, fstype="xfs")
    step = provision.filesystem_step(
        make_request(point, fstab, "xfs", label="new"),
        provision.probe(DEVICE, disk.system()),
        disk.live[str(point)],
    )

    assert offline.changes["label"] == {"old": "old", "new": "new"}
    assert step.commands == (("xfs_io", "-c", "label -s new", str(point)),)
    unmounted = provision.filesystem_step(
        make_request(point, fstab, "xfs", label="new"), provision.probe(DEVICE, disk.system()), None
    )
    assert unmounted.commands == (("xfs_admin", "-L", "new", DEVICE),)


# ----------------------------------------------------------------------------- fstab


def test_fstab_line_for_the_mount_point_is_replaced_in_place(disk, point, fstab):
    fstab.write_text(f"/dev/sdx\t{point}\text4\tdefaults\t0\t0\n{OTHER_LINE}\n")
    disk.holds("ext4", uuid="abc")
    disk.mount(str(point), DEVICE, mkmnt=True, fstype="ext4")

    done = provision.apply(make_request(point, fstab), disk.system())

    assert done.changes["fstab"]["old"] == f"/dev/sdx\t{point}\text4\tdefaults\t0\t0"
    assert fstab.read_text() == f"UUID=abc\t{point}\text4\tdefaults\t0\t2\n{OTHER_LINE}\n"


def test_fstab_naming_the_device_elsewhere_is_refused_before_formatting(disk, point, fstab):
    fstab.write_text(f"{OTHER_LINE}\n/dev/sdx1\t/old\text4\tdefaults\t0\t2\n")

    with pytest.raises(provision.Refused, match=r"line 2 already mounts /dev/sdx \(/dev/sdx1\)"):
        provision.apply(make_request(point, fstab), disk.system())
    assert disk.ran("mkfs.ext4") == []


def test_fstab_naming_the_current_uuid_elsewhere_is_refused(disk, point, fstab):
    disk.holds("ext4", uuid="abc")
    fstab.write_text("UUID=abc\t/old\text4\tdefaults\t0\t2\n")

    with pytest.raises(provision.Refused, match="line 1 already mounts"):
        provision.apply(make_request(point, fstab, filesystem="xfs", force=True), disk.system())


def test_two_fstab_lines_for_the_mount_point_are_refused(disk, point, fstab):
    fstab.write_text(f"UUID=a\t{point}\text4\tdefaults\t0\t2\nUUID=b\t{point}/\text4\tdefaults\n")

    with pytest.raises(provision.Refused, match=r"has 2 lines for .* \(lines 1, 2\)"):
        provision.apply(make_request(point, fstab), disk.system())


def test_fstab_fields_are_escaped_and_read_back():
    entry = provision.FstabEntry("UUID=x", "/srv/my data", "ext4", "noatime")

    line = entry.line()

    assert line == "UUID=x\t/srv/my\\040data\text4\tnoatime\t0\t0"
    assert provision.FstabEntry.parse(line) == entry
    assert provision.FstabEntry.parse("# UUID=x /srv ext4 defaults 0 0") is None
    assert provision.FstabEntry.parse("UUID=x /srv") is None


def test_the_fstab_rewrite_is_atomic_and_keeps_mode_and_link(tmp_path):
    real = tmp_path / "etc" / "fstab.real"
    real.parent.mkdir()
    real.write_text("old\n")
    real.chmod(0o600)
    link = tmp_path / "etc" / "fstab"
    link.symlink_to(real)

    provision.write_atomically(str(link), "new\n")

    assert link.is_symlink()
    assert real.read_text() == "new\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert sorted(p.name for p in real.parent.iterdir()) == ["fstab", "fstab.real"]


# ----------------------------------------------------------------------------- the request


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"name": "srv/data"}, "name: 'srv/data' is not an absolute mount point path"),
        ({"name": "/"}, "name: '/' is the root filesystem"),
        ({"device": "sdb"}, "device: 'sdb' is not a device path"),
        ({"filesystem": "zfs"}, "filesystem: 'zfs' is not one of ext4, xfs, btrfs"),
        ({"label": "thirteen-char", "filesystem": "xfs"}, "longer than the 12 bytes xfs allows"),
        ({"label": "my disk"}, "label: 'my disk' contains whitespace"),
        ({"mode": "0999"}, "mode: '0999' is not an octal mode such as 0750"),
        ({"mode": 1.5}, "mode: 1.5 is not an octal mode"),
        ({"user": "no-such-user-eos"}, "user: 'no-such-user-eos' is not a user on this minion"),
        ({"group": "no-such-group-eos"}, "group: 'no-such-group-eos' is not a group"),
        ({"force": "yes"}, "force: 'yes' is not True or False"),
        ({"mount_options": "noatime, no atime"}, "options: 'no atime' is not a single mount"),
        ({"mount_options": 7}, "options: 7 is not a list of mount options"),
        ({"mount_options": "noatime,nobarrier"}, "options: nobarrier turns off write barriers"),
        ({"fstab": "fstab"}, "fstab: 'fstab' is not an absolute file path"),
        ({"fstab": "/no/such/dir/fstab"}, "fstab: the directory of '/no/such/dir/fstab'"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(arguments, message):
    values = {"name": "/srv/data", "device": DEVICE, "filesystem": "ext4", **arguments}

    with pytest.raises(ValueError, match=re.escape(message)):
        provision.request(**values)


def test_unsafe_options_need_the_opt_in_and_then_warn():
    req = provision.request(
        "/srv/data", DEVICE, "ext4", mount_options=["data=writeback"], allow_unsafe=True
    )

    assert req.mount_options == ("data=writeback",)
    assert req.warnings[0].startswith("data=writeback: journals metadata only")


@pytest.mark.parametrize(
    ("given", "mode"),
    [("0750", 0o750), ("750", 0o750), (750, 0o750), (700, 0o700), ("0o2775", 0o2775), (None, None)],
)
def test_modes_are_read_as_octal_however_they_arrive(given, mode):
    assert provision.parse_mode(given) == mode


def test_numeric_owner_ids_are_accepted():
    req = provision.request("/srv/data/", DEVICE, "ext4", user=0, group="0")

    assert (req.uid, req.gid) == (0, 0)
    assert req.mount_point == "/srv/data"


def test_ownership_steps_name_only_what_differs():
    req = provision.request("/srv/data", DEVICE, "ext4", user=0, mode="0755")

    assert provision.ownership_steps(req, 0, 0, 0o755) == []
    [owner] = provision.ownership_steps(req, 1000, 0, 0o755)
    assert (owner.name, owner.new, owner.payload) == ("owner", "root:root", (0, 0))
