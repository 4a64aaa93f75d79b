"""The filesystem walk on small trees built in tmp_path."""

import itertools
import os
import subprocess

import pytest

from saltext.eos.utils.storage import walk
from tests.support.filesystems import bind_mount

KIB = 1024


def write(path, kib):
    """A file of ``kib`` KiB of incompressible data, so its allocated size tracks its length."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(kib * KIB))
    return path


def allocated(path):
    return os.lstat(path).st_blocks * 512


def listed(entries):
    return {entry["path"]: entry["bytes"] for entry in entries}


def frozen_clock():
    return 0.0


@pytest.fixture
def tree(tmp_path):
    """root/{small,big}, root/logs/{a,b}, root/logs/old/c, root/empty/."""
    root = tmp_path / "root"
    write(root / "small", 8)
    write(root / "big", 400)
    write(root / "logs" / "a", 100)
    write(root / "logs" / "b", 40)
    write(root / "logs" / "old" / "c", 200)
    (root / "empty").mkdir()
    return root


def test_files_are_sorted_by_allocated_bytes(tree):
    result = walk.largest(tree)
    names = ["big", "logs/old/c", "logs/a", "logs/b", "small"]
    assert [entry["path"] for entry in result["files"]] == [str(tree / name) for name in names]
    for entry in result["files"]:
        assert entry["bytes"] == allocated(entry["path"])
    assert result["path"] == str(tree)
    assert result["complete"] is True
    assert result["errors"] == 0
    assert result["scanned_files"] == 5
    assert result["scanned_directories"] == 4


def test_directory_sizes_are_cumulative_and_exclude_the_root(tree):
    result = walk.largest(tree)
    old = allocated(tree / "logs" / "old" / "c")
    logs = allocated(tree / "logs" / "a") + allocated(tree / "logs" / "b") + old
    assert result["directories"] == [
        {"path": str(tree / "logs"), "bytes": logs},
        {"path": str(tree / "logs" / "old"), "bytes": old},
        {"path": str(tree / "empty"), "bytes": 0},
    ]


def test_n_limits_files_and_directories(tree):
    result = walk.largest(tree, n=2)
    assert [entry["path"] for entry in result["files"]] == [
        str(tree / "big"),
        str(tree / "logs" / "old" / "c"),
    ]
    assert [entry["path"] for entry in result["directories"]] == [
        str(tree / "logs"),
        str(tree / "logs" / "old"),
    ]
    assert result["scanned_files"] == 5


def test_ties_are_ordered_by_path(tmp_path):
    for name in ("d", "b", "c", "a"):
        write(tmp_path / name, 16)
    result = walk.largest(tmp_path, n=3)
    assert [entry["path"] for entry in result["files"]] == [
        str(tmp_path / name) for name in ("a", "b", "c")
    ]


def test_symlink_to_a_big_file_outside_is_not_counted(tmp_path):
    big = write(tmp_path / "outside" / "big", 500)
    root = tmp_path / "root"
    write(root / "own", 4)
    (root / "link").symlink_to(big)
    result = walk.largest(root)
    assert listed(result["files"]) == {str(root / "own"): allocated(root / "own")}
    assert result["scanned_files"] == 1


def test_symlinked_directory_is_not_descended(tmp_path):
    write(tmp_path / "outside" / "inside", 50)
    root = tmp_path / "root"
    write(root / "sub" / "own", 4)
    (root / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    result = walk.largest(root)
    assert [entry["path"] for entry in result["files"]] == [str(root / "sub" / "own")]
    assert [entry["path"] for entry in result["directories"]] == [str(root / "sub")]
    assert result["scanned_directories"] == 2


def test_hard_links_are_counted_once(tmp_path):
    original = write(tmp_path / "a" / "data", 300)
    (tmp_path / "b").mkdir()
    os.link(original, tmp_path / "b" / "data")
    size = allocated(original)
    result = walk.largest(tmp_path)
    assert len(result["files"]) == 1
    assert result["files"][0]["bytes"] == size
    assert sum(listed(result["directories"]).values()) == size
    assert result["scanned_files"] == 2


def test_exhausted_time_budget_returns_an_incomplete_result(tree):
    # Each reading of this clock is one second later than the previous one.
    ticking_clock = itertools.count().__next__
    result = walk.largest(tree, time_budget_seconds=3, clock=ticking_clock)
    assert result["complete"] is False
    assert result["scanned_files"] < 5


def test_an_unexhausted_budget_is_complete(tree):
    result = walk.largest(tree, time_budget_seconds=0.001, clock=frozen_clock)
    assert result["complete"] is True
    assert result["scanned_files"] == 5


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"n": 0}, "n"),
        ({"n": -3}, "n"),
        ({"n": 2.5}, "n"),
        ({"n": True}, "n"),
        ({"n": "5"}, "n"),
        ({"time_budget_seconds": 0}, "time_budget_seconds"),
        ({"time_budget_seconds": -1.0}, "time_budget_seconds"),
        ({"time_budget_seconds": float("nan")}, "time_budget_seconds"),
        ({"time_budget_seconds": True}, "time_budget_seconds"),
        ({"time_budget_seconds": "10"}, "time_budget_seconds"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(tmp_path, arguments, named):
    with pytest.raises(walk.InvalidWalk, match=f"^{named} ") as caught:
        walk.largest(tmp_path, **arguments)
    assert repr(arguments[named]) in str(caught.value)


@pytest.mark.parametrize("kind", ["missing", "file", "not a path"])
def test_bad_root_raises_naming_root(tmp_path, kind):
    roots = {
        "missing": tmp_path / "missing",
        "file": write(tmp_path / "file", 1),
        "not a path": 42,
    }
    with pytest.raises(walk.InvalidWalk, match=r"^root ") as caught:
        walk.largest(roots[kind])
    assert repr(roots[kind]) in str(caught.value)
    with pytest.raises(walk.InvalidWalk, match=r"^root "):
        walk.iter_files(roots[kind])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 directory regardless")
def test_unreadable_directory_counts_an_error(tree):
    locked = tree / "logs" / "old"
    locked.chmod(0)
    try:
        result = walk.largest(tree)
    finally:
        locked.chmod(0o755)
    assert result["errors"] == 1
    assert result["complete"] is True
    assert str(locked / "c") not in listed(result["files"])
    assert result["scanned_files"] == 4


def test_a_directory_that_cannot_be_listed_counts_an_error(tree, monkeypatch):
    # Simulates a directory removed (or locked) between being found and being read, which
    # also covers the unreadable case when the tests run as root.
    vanished = str(tree / "logs" / "old")
    real_scandir = os.scandir

    def scandir(path):
        if path == vanished:
            raise FileNotFoundError(path)
        return real_scandir(path)

    monkeypatch.setattr(walk.os, "scandir", scandir)
    result = walk.largest(tree)
    assert result["errors"] == 1
    assert result["complete"] is True
    assert result["scanned_files"] == 4
    assert result["scanned_directories"] == 3
    assert set(dict(walk.iter_files(tree))) == {
        str(tree / name) for name in ("small", "big", "logs/a", "logs/b")
    }


def test_iter_files_yields_regular_files_only(tmp_path):
    big = write(tmp_path / "outside" / "big", 20)
    root = tmp_path / "root"
    write(root / "one", 4)
    write(root / "deep" / "er" / "two", 4)
    (root / "link").symlink_to(big)
    (root / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    os.mkfifo(root / "pipe")
    found = dict(walk.iter_files(root))
    assert set(found) == {str(root / "one"), str(root / "deep" / "er" / "two")}
    assert found[str(root / "one")].st_size == 4 * KIB


def test_iter_files_yields_every_hard_link(tmp_path):
    original = write(tmp_path / "data", 4)
    os.link(original, tmp_path / "again")
    found = dict(walk.iter_files(tmp_path))
    assert set(found) == {str(original), str(tmp_path / "again")}
    assert all(status.st_nlink == 2 for status in found.values())


@pytest.fixture
def tmpfs_below(tmp_path):
    """tmp_path/root with a tmpfs mounted at tmp_path/root/mnt, unmounted afterwards."""
    mountpoint = tmp_path / "root" / "mnt"
    mountpoint.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)],
        check=True,
        capture_output=True,
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True, capture_output=True)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_filesystem_mounted_below_root_is_not_counted(tmpfs_below):
    root = tmpfs_below.parent
    write(tmpfs_below / "on-tmpfs", 1024)
    write(root / "own", 4)
    result = walk.largest(root)
    assert [entry["path"] for entry in result["files"]] == [str(root / "own")]
    assert result["directories"] == []
    assert result["scanned_directories"] == 1
    assert {path for path, _status in walk.iter_files(root)} == {str(root / "own")}
    crossing = {path for path, _status in walk.iter_files(root, one_filesystem=False)}
    assert str(tmpfs_below / "on-tmpfs") in crossing


# --------------------------------------------------------------------------- mounts

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 27 254:0 /home /tmp/chroot\\040dir/home rw,relatime shared:1 - ext4 /dev/vda rw
31 30 0:40 / /tmp/chroot\\040dir/home/tab\\011and\\134back rw - tmpfs tmpfs rw
40 27 0:50 / /srv rw - xfs /dev/vdb rw
41 40 0:51 / /srv/a rw - tmpfs tmpfs rw
42 41 0:52 / /srv/a/b rw - tmpfs tmpfs rw
43 40 0:53 / /srv rw - tmpfs tmpfs rw
50 27 0:60 / /data/x/y rw - tmpfs tmpfs rw
51 27 0:61 / /data/x rw - tmpfs tmpfs rw
"""


@pytest.fixture
def table():
    return walk.MountTable.parse(MOUNTINFO)


def test_mountinfo_paths_are_unescaped(table):
    bound = next(mount for mount in table.mounts if mount.mount_id == 30)
    assert bound == walk.Mount(30, 27, "254:0", "/home", "/tmp/chroot dir/home")
    assert table.is_mount_point("/tmp/chroot dir/home/tab\tand\\back")
    assert not table.is_mount_point("/tmp/chroot\\040dir/home")


def test_mountinfo_lines_are_read_as_bytes_like_directory_names():
    table = walk.MountTable.parse(
        b"27 1 8:1 / / rw - ext4 sda rw\n28 27 8:2 / /caf\xe9 rw - x y z\n"
    )
    assert table.is_mount_point(os.fsdecode(b"/caf\xe9"))


@pytest.mark.parametrize(
    ("path", "mount_id"),
    [
        ("/", 27),
        ("/tmp/chroot dir", 27),
        ("/tmp/chroot dir/home/alice", 30),
        ("/tmp/chroot dir/home/tab\tand\\back/x", 31),
        ("/tmp/chroot dir/homework", 27),
        ("/proc/1", 22),
        # 43 is stacked on /srv over 40, and hides 41 and 42, mounted inside 40.
        ("/srv/a/b/c", 43),
        # 51 was mounted on /data/x after 50 on /data/x/y, both on the root: 51 hides 50.
        ("/data/x/y/z", 51),
    ],
)
def test_the_mount_holding_a_path_is_the_one_in_view(table, path, mount_id):
    assert table.mount_at(path).mount_id == mount_id


def test_a_line_that_is_not_a_mount_is_an_error():
    with pytest.raises(ValueError, match=r"mountinfo line 2 is not a mount"):
        walk.MountTable.parse("27 1 254:0 / / rw - ext4 /dev/vda rw\ngarbage\n")


def test_the_mount_table_of_this_process_holds_its_root():
    table = walk.MountTable.read()
    assert table.mount_at("/") is not None
    assert table.is_mount_point("/")


def test_a_directory_that_the_table_names_a_mount_point_is_not_entered(tree):
    # A bind mount of the same filesystem has the same st_dev: only the table tells.
    bound = tree / "logs" / "old"
    real = walk.MountTable.read()
    holder = real.mount_at(str(bound.resolve()))
    extra = walk.Mount(10**9, holder.mount_id, holder.device, "/home", str(bound.resolve()))
    table = walk.MountTable((*real.mounts, extra))
    result = walk.largest(tree, mount_table=table)
    assert str(bound / "c") not in listed(result["files"])
    assert str(bound) not in listed(result["directories"])
    assert str(bound / "c") not in dict(walk.iter_files(tree, mount_table=table))
    assert str(bound / "c") in dict(walk.iter_files(tree))


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounting needs root")
def test_a_bind_mount_of_the_same_filesystem_is_not_entered(tmp_path):
    source = tmp_path / "home"
    write(source / "alice" / "thesis.tex", 64)
    root = tmp_path / "root"
    write(root / "own", 4)
    with bind_mount(source, root / "chroot dir" / "home") as bound:
        assert os.stat(bound).st_dev == os.stat(root).st_dev
        result = walk.largest(root)
        files = {path for path, _status in walk.iter_files(root)}
    assert [entry["path"] for entry in result["files"]] == [str(root / "own")]
    assert files == {str(root / "own")}
    assert listed(result["directories"]) == {str(root / "chroot dir"): 0}
