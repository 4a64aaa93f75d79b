"""The filesystem advice rules, on a fake minion (kernel, tools) and fake devices."""

import os
import stat
import types

import pytest

from saltext.eos.utils import commands
from saltext.eos.utils import config
from saltext.eos.utils.storage import fsadvice

MIB = fsadvice.MIB
GIB = fsadvice.GIB
TIB = fsadvice.TIB
ALL_FILESYSTEMS = ("ext4", "xfs", "btrfs")


class FakeHost(fsadvice.World):
    """A minion whose kernel lists ``kernel``, with mkfs for ``tools`` and maybe modprobe."""

    def __init__(self, tmp_path, kernel=ALL_FILESYSTEMS, tools=ALL_FILESYSTEMS, modprobe=None):
        proc = tmp_path / "filesystems"
        proc.write_text("nodev\tsysfs\nnodev\tproc\n" + "".join(f"\t{fs}\n" for fs in kernel))
        programs = {f"mkfs.{fs}" for fs in tools}
        if modprobe is not None:
            programs.add("modprobe")
        self.probed = []
        self.modprobe_loads = modprobe or ()

        def run(argv):
            self.probed.append(argv)
            return commands.CommandResult(0 if argv[-1] in self.modprobe_loads else 1, "", "")

        super().__init__(
            run=run,
            which=lambda name: f"/usr/sbin/{name}" if name in programs else None,
            proc_filesystems=str(proc),
            modules_dir=str(tmp_path / "modules"),
        )


@pytest.fixture
def host(tmp_path):
    return FakeHost(tmp_path)


def device(size_bytes=100 * GIB, rotational=None):
    return fsadvice.DeviceFacts("/dev/sdx", "sdx", size_bytes, rotational, "8:16")


# ----------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(
    ("workload", "filesystem"),
    [
        ("database", "xfs"),
        ("container", "ext4"),
        ("backup", "btrfs"),
        ("media", "xfs"),
        ("general", "ext4"),
        ("high-performance", "xfs"),
        ("snapshots", "btrfs"),
    ],
)
def test_each_workload_starts_from_the_original_tools_choice(host, workload, filesystem):
    advice = fsadvice.recommend(workload, world=host).as_dict()

    assert advice["filesystem"] == filesystem
    assert advice["reason"] == fsadvice.WORKLOADS[workload].choices[0].reason
    assert filesystem not in [alt["filesystem"] for alt in advice["alternatives"]]
    assert advice["alternatives"], "every workload has an alternative"


def test_distributed_points_to_a_distributed_store(host):
    advice = fsadvice.recommend("distributed", world=host).as_dict()

    assert advice["filesystem"] is None
    assert advice["mount_options"] == []
    assert "distributed store" in advice["reason"]
    assert [alt["filesystem"] for alt in advice["alternatives"]] == ["xfs", "ext4"]
    assert advice["alternatives"][0]["mkfs_options"] == ["-i", "size=512"]


def test_a_database_on_xfs_gets_noatime_and_larger_log_buffers(host):
    advice = fsadvice.recommend("database", world=host).as_dict()

    assert advice["mount_options"] == ["noatime", "logbsize=256k"]
    assert advice["mkfs_options"] == []


@pytest.mark.parametrize("workload", list(fsadvice.WORKLOADS))
def test_no_recommendation_carries_an_unsafe_option(host, workload):
    advice = fsadvice.recommend(workload, device(rotational=False), host).as_dict()

    offered = [advice["mount_options"]] + [a["mount_options"] for a in advice["alternatives"]]
    for options in offered:
        assert not set(options) & set(fsadvice.UNSAFE_MOUNT_OPTIONS)
    assert advice["warnings"] == []


def test_the_table_itself_holds_no_unsafe_option():
    for workload in fsadvice.WORKLOADS.values():
        for choice in workload.choices:
            assert fsadvice.unsafe_options(choice.mount_options) == {}


# ----------------------------------------------------------------------------- unsafe opt-in


def test_allow_unsafe_adds_what_ext4_accepts_each_with_a_warning(host):
    advice = fsadvice.recommend("container", world=host, allow_unsafe=True).as_dict()

    assert advice["mount_options"] == ["noatime", "nobarrier", "data=writeback"]
    assert advice["warnings"] == [
        "nobarrier: turns off write barriers: a power failure can corrupt the filesystem",
        "data=writeback: journals metadata only: after a power failure recently written "
        "files can hold stale or garbage data",
    ]


def test_allow_unsafe_on_xfs_adds_nothing_and_says_why(host):
    advice = fsadvice.recommend("database", world=host, allow_unsafe=True).as_dict()

    assert advice["mount_options"] == ["noatime", "logbsize=256k"]
    [warning] = advice["warnings"]
    assert "xfs dropped nobarrier in Linux 4.19" in warning


def test_allow_unsafe_on_btrfs_adds_nobarrier(host):
    advice = fsadvice.recommend("backup", world=host, allow_unsafe=True).as_dict()

    assert advice["mount_options"][-1] == "nobarrier"


# ----------------------------------------------------------------------------- fallbacks


def test_a_missing_mkfs_falls_back_to_the_next_choice_and_says_why(tmp_path):
    host = FakeHost(tmp_path, tools=("ext4", "btrfs"))

    advice = fsadvice.recommend("database", world=host).as_dict()

    assert advice["filesystem"] == "ext4"
    assert advice["mount_options"] == ["noatime"]
    assert (
        "instead of xfs: xfs is not usable: mkfs.xfs is not installed (package xfsprogs)"
        in (advice["reason"])
    )
    [xfs] = advice["alternatives"]
    assert xfs["filesystem"] == "xfs"
    assert xfs["usable"] is False
    assert xfs["why_not"] == "mkfs.xfs is not installed (package xfsprogs)"


def test_a_filesystem_the_kernel_lacks_falls_back(tmp_path):
    host = FakeHost(tmp_path, kernel=("ext4", "xfs"), modprobe=())

    advice = fsadvice.recommend("backup", world=host).as_dict()

    assert advice["filesystem"] == "xfs"
    assert "modprobe finds no btrfs module" in advice["reason"]
    assert ["modprobe", "--dry-run", "--quiet", "btrfs"] in host.probed


def test_a_module_that_modprobe_would_load_counts_as_support(tmp_path):
    host = FakeHost(tmp_path, kernel=("ext4",), modprobe=("btrfs",))

    advice = fsadvice.recommend("backup", world=host).as_dict()

    assert advice["filesystem"] == "btrfs"
    assert host.kernel_support("btrfs") == (True, "modprobe finds the btrfs module")


def test_without_modprobe_the_module_directory_is_read(tmp_path):
    host = FakeHost(tmp_path, kernel=("ext4",))
    module = tmp_path / "modules" / "kernel" / "fs" / "btrfs" / "btrfs.ko.zst"
    module.parent.mkdir(parents=True)
    module.write_bytes(b"")
    (tmp_path / "modules" / "modules.builtin").write_text("kernel/fs/xfs/xfs.ko\n")

    assert host.kernel_support("btrfs")[0] is True
    assert host.kernel_support("xfs")[0] is True
    supported, why = host.kernel_support("ext2")
    assert supported is False
    assert "has no ext2 module" in why
    assert host.probed == [], "no modprobe, so nothing was run"


def test_a_device_too_small_for_xfs_gets_ext4(host):
    advice = fsadvice.recommend("database", device(size_bytes=200 * MIB), host).as_dict()

    assert advice["filesystem"] == "ext4"
    assert (
        "the device has 200 MiB: mkfs.xfs refuses devices smaller than 300 MiB"
        in (advice["reason"])
    )


def test_a_device_beyond_ext4s_advised_size_gets_xfs(host):
    advice = fsadvice.recommend("general", device(size_bytes=60 * TIB), host).as_dict()

    assert advice["filesystem"] == "xfs"
    assert "ext4 is supported up to 50 TiB" in advice["reason"]


def test_nothing_usable_is_an_error_naming_every_reason(tmp_path):
    host = FakeHost(tmp_path, tools=())

    with pytest.raises(fsadvice.NoUsableFilesystem) as caught:
        fsadvice.recommend("media", world=host)

    assert "xfs: mkfs.xfs is not installed (package xfsprogs)" in str(caught.value)
    assert "ext4: mkfs.ext4 is not installed (package e2fsprogs)" in str(caught.value)


# ----------------------------------------------------------------------------- device tuning


def test_a_small_btrfs_gets_mixed_block_groups(host):
    advice = fsadvice.recommend("backup", device(size_bytes=512 * MIB), host).as_dict()

    assert advice["mkfs_options"] == ["--mixed"]
    assert any("mixed block groups" in note for note in advice["notes"])


def test_a_large_btrfs_does_not(host):
    advice = fsadvice.recommend("backup", device(size_bytes=2 * GIB), host).as_dict()

    assert advice["mkfs_options"] == []


def test_an_ssd_gets_lighter_btrfs_compression(host):
    ssd = fsadvice.recommend("backup", device(rotational=False), host).as_dict()
    hdd = fsadvice.recommend("backup", device(rotational=True), host).as_dict()

    assert ssd["mount_options"] == ["noatime", "compress=zstd:1"]
    assert any(note.startswith("SSD: compress=zstd:1 instead of") for note in ssd["notes"])
    assert hdd["mount_options"] == ["noatime", "compress=zstd:3"]


def test_an_ssd_is_advised_periodic_trim_not_the_discard_option(host):
    advice = fsadvice.recommend("database", device(rotational=False), host).as_dict()

    assert "discard" not in advice["mount_options"]
    assert any("fstrim.timer" in note for note in advice["notes"])


def test_a_database_on_a_rotational_disk_is_told_so(host):
    advice = fsadvice.recommend("database", device(rotational=True), host).as_dict()

    assert any(note.startswith("rotational disk") for note in advice["notes"])


def test_without_a_device_nothing_is_tuned(host):
    advice = fsadvice.recommend("backup", world=host).as_dict()

    assert advice["notes"] == []
    assert advice["device_facts"] is None


# ----------------------------------------------------------------------------- arguments


def test_an_unknown_workload_names_the_argument_and_the_choices(host):
    with pytest.raises(fsadvice.InvalidAdvice, match=r"workload: 'webscale' is not one of"):
        fsadvice.recommend("webscale", world=host)


def test_a_workload_or_a_filesystem_is_needed(host):
    with pytest.raises(fsadvice.InvalidAdvice, match="workload or filesystem"):
        fsadvice.recommend(world=host)


def test_a_named_filesystem_gets_the_workloads_options_for_it(host):
    advice = fsadvice.recommend("database", world=host, filesystem="ext4").as_dict()

    assert advice["filesystem"] == "ext4"
    assert advice["mount_options"] == ["noatime"]
    assert advice["warnings"] == []


def test_a_named_filesystem_outside_the_workloads_advice_is_warned(host):
    advice = fsadvice.recommend("database", world=host, filesystem="btrfs").as_dict()

    assert advice["mount_options"] == []
    assert advice["warnings"] == [
        "btrfs is not among the filesystems advised for database (xfs, ext4); it gets no "
        "workload-specific options"
    ]


def test_a_named_filesystem_that_cannot_be_made_is_an_error(tmp_path):
    host = FakeHost(tmp_path, tools=("ext4",))

    with pytest.raises(fsadvice.NoUsableFilesystem, match=r"mkfs\.xfs is not installed"):
        fsadvice.recommend(filesystem="xfs", world=host)


def test_an_unknown_filesystem_names_the_argument(host):
    with pytest.raises(fsadvice.InvalidAdvice, match=r"filesystem: 'zfs' is not one of"):
        fsadvice.recommend(filesystem="zfs", world=host)


# ----------------------------------------------------------------------------- /sys


@pytest.fixture
def sys_tree(tmp_path):
    """/sys with a rotational disk sdx (8:16) with one partition sdx1 (8:17) held by dm-0."""
    disk = tmp_path / "devices" / "pci0" / "block" / "sdx"
    (disk / "queue").mkdir(parents=True)
    (disk / "queue" / "rotational").write_text("1\n")
    (disk / "size").write_text("2097152\n")
    (disk / "holders").mkdir()
    part = disk / "sdx1"
    part.mkdir()
    (part / "partition").write_text("1\n")
    (part / "size").write_text("1048576\n")
    (part / "dev").write_text("8:17\n")
    (part / "holders").mkdir()
    (part / "holders" / "dm-0").mkdir()
    by_number = tmp_path / "dev" / "block"
    by_number.mkdir(parents=True)
    (by_number / "8:16").symlink_to(disk)
    (by_number / "8:17").symlink_to(part)
    return by_number


def block_device(major, minor):
    return lambda _path: types.SimpleNamespace(
        st_mode=stat.S_IFBLK | 0o660, st_rdev=os.makedev(major, minor)
    )


def test_device_facts_of_a_disk(sys_tree):
    facts = fsadvice.device_facts("/dev/sdx", str(sys_tree), block_device(8, 16))

    assert facts.kernel_name == "sdx"
    assert facts.size_bytes == 1 * GIB
    assert facts.rotational is True
    assert facts.partitions == ("sdx1",)
    assert facts.is_or_contains("8:17")
    assert facts.holders == ()


def test_a_partition_takes_the_rotational_flag_of_its_disk(sys_tree):
    facts = fsadvice.device_facts("/dev/disk/by-id/x-part1", str(sys_tree), block_device(8, 17))

    assert facts.kernel_name == "sdx1"
    assert facts.size_bytes == 512 * MIB
    assert facts.rotational is True
    assert facts.holders == ("dm-0",)


def test_a_device_without_a_rotational_flag_is_unknown(sys_tree):
    (sys_tree / "8:16" / "queue" / "rotational").unlink()

    facts = fsadvice.device_facts("/dev/sdx", str(sys_tree), block_device(8, 16))

    assert facts.rotational is None


def test_a_missing_device_names_the_argument(sys_tree):
    with pytest.raises(fsadvice.InvalidDevice, match=r"device: '/dev/nope': No such file"):
        fsadvice.device_facts("/dev/nope", str(sys_tree))


def test_a_regular_file_is_not_a_device(tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(b"")

    with pytest.raises(fsadvice.InvalidDevice, match="is not a block device"):
        fsadvice.device_facts(str(image))
    assert fsadvice.device_number(str(image)) is None


# ----------------------------------------------------------------------------- mounted


def test_a_database_on_ext4_without_noatime_is_advised_it():
    advice = fsadvice.mount_advice("ext4", ["rw", "relatime"], "database")

    [item] = advice
    assert item["severity"] == "advice"
    assert item["message"].startswith("a database on ext4 is mounted without noatime, advised")


def test_a_mount_with_the_advised_options_gets_no_advice():
    assert fsadvice.mount_advice("xfs", ["rw", "noatime", "logbsize=256k"], "database") == []


def test_an_option_with_another_value_counts_as_set():
    # compress=zstd:1 on an SSD is the advice for backups too, so it is not flagged.
    assert fsadvice.mount_advice("btrfs", ["rw", "noatime", "compress=zstd:1"], "backup") == []


def test_unsafe_live_options_are_warnings_whatever_the_workload():
    advice = fsadvice.mount_advice("ext4", ["rw", "nobarrier", "data=writeback"], None)

    assert [item["severity"] for item in advice] == ["warning", "warning"]
    assert advice[0]["message"].startswith("mounted with nobarrier: turns off write barriers")


def test_a_filesystem_outside_the_workloads_advice_is_named():
    [item] = fsadvice.mount_advice("btrfs", ["rw", "noatime"], "database")

    assert item["message"] == (
        "btrfs is not among the filesystems advised for database (xfs, ext4)"
    )


def test_configured_workload_globs_add_to_the_known_paths():
    layers = config.Layers([("pillar", {"filesystems": {"workloads": {"/srv/pg*": "database"}}})])

    paths = fsadvice.workload_paths(layers)

    assert fsadvice.workload_of("/srv/pg16", paths) == ("database", "/srv/pg*")
    assert fsadvice.workload_of("/var/lib/docker", paths) == ("container", "/var/lib/docker*")
    assert fsadvice.workload_of("/home", paths) == (None, None)


def test_the_most_specific_glob_wins():
    paths = {"/data/*": "general", "/data/media*": "media"}

    assert fsadvice.workload_of("/data/media1", paths) == ("media", "/data/media*")


@pytest.mark.parametrize(
    "configured",
    [["/srv"], {"/srv": "webscale"}, {"/srv": None}],
)
def test_invalid_workload_config_names_the_key(configured):
    layers = config.Layers([("minion config", {"filesystems": {"workloads": configured}})])

    with pytest.raises(config.InvalidConfig, match=r"^eos:filesystems:workloads: "):
        fsadvice.workload_paths(layers)


def test_mounted_report_lists_live_options_and_advice():
    mount = types.SimpleNamespace(
        mountpoint="/var/lib/postgresql", device="/dev/sdb", fstype="ext4", options="rw,relatime"
    )

    report = fsadvice.mounted_report(mount, fsadvice.WORKLOAD_PATHS)

    assert report["options"] == ["rw", "relatime"]
    assert report["workload"] == "database"
    assert report["workload_from"] == "/var/lib/postgresql*"
    assert len(report["advice"]) == 1
