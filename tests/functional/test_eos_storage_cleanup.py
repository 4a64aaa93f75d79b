"""
eos_storage.cleanup through Salt's real loader on a real, loop-mounted ext4 filesystem.

Every directory setting points inside the loop mount and every external tool is switched off,
so nothing outside the test filesystem can be touched. A test cannot set ctime with utime, so
``LoopTree.backdate_ctimes`` unmounts the image, sets ctime with debugfs and mounts it again.
"""

import contextlib
import gzip
import hashlib
import os
import subprocess
import sys
import time

import pytest
from salt.exceptions import CommandExecutionError

from tests.support.filesystems import bind_mount
from tests.support.filesystems import fill_to
from tests.support.filesystems import loop_ext4
from tests.support.protected_data import EXAMPLES

pytestmark = pytest.mark.root

DAY = 86400
MIB = 1024 * 1024
# Below any usage, even of an empty filesystem (ext4 does not count its own metadata as
# used): no step stops early.
FORCE = 0.001


class LoopTree:
    """The test filesystem: its directories, planted files and the configuration for them."""

    def __init__(self, mount, outside):
        self.mount = mount
        self.log = mount / "log"
        self.tmp = mount / "tmp"
        self.cache = mount / "cache"
        self.outside = outside
        for directory in (self.log, self.tmp, self.cache):
            directory.mkdir()

    def config(self, **overrides):
        return {
            "cleanup": {
                "log_dirs": [str(self.log)],
                "tmp_dirs": [str(self.tmp)],
                "user_cache_dirs": [str(self.cache)],
                "preserve_paths": [str(self.log / "keep")],
                "truncate_over": "2M",
                "journal_dirs": [],
                "package_caches": {},
                "docker_prune": False,
                "services": [],
                **overrides,
            }
        }

    def text(self, path, mib, age_days):
        line = b"2024-01-01T12:00:00 web[311]: GET /api/v1/items 200 12ms user=alice\n"
        return self._write(path, line * (mib * MIB // len(line)), age_days)

    def noise(self, path, size, age_days):
        return self._write(path, os.urandom(size), age_days)

    def _write(self, path, content, age_days):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        self.age(path, age_days)
        return path

    def age(self, path, days, follow_symlinks=True):
        when = time.time() - days * DAY
        os.utime(path, (when, when), follow_symlinks=follow_symlinks)

    def backdate_ctimes(self, paths, days):
        """Set the ctime of ``paths`` ``days`` back: offline, with debugfs."""
        image = self.mount.parent / "disk.img"
        when = int(time.time() - days * DAY)
        subprocess.run(["umount", str(self.mount)], check=True)
        try:
            for path in paths:
                inside = "/" + str(path.relative_to(self.mount))
                subprocess.run(
                    ["debugfs", "-w", "-R", f"sif {inside} ctime @{when}", str(image)],
                    check=True,
                    capture_output=True,
                )
        finally:
            subprocess.run(["mount", "-o", "loop", str(image), str(self.mount)], check=True)

    def used_bytes(self):
        os.sync()
        stats = os.statvfs(self.mount)
        return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


@pytest.fixture
def tree(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    with loop_ext4(size_mib=64) as mount:
        yield LoopTree(mount, outside)


@contextlib.contextmanager
def configured(loaders, tree, **overrides):
    """
    Point eos:cleanup at the test filesystem, and back to the defaults after.

    A loaded module keeps the copy of ``opts["eos"]`` it first read (Salt's copy-on-write
    opts), so the loaders are reloaded on the way in and out. Reloading also empties the
    minion cachedir.
    """
    loaders.reload_all()
    loaders.opts["eos"] = tree.config(**overrides)
    try:
        yield
    finally:
        loaders.reload_all()


@contextlib.contextmanager
def held_open_for_writing(path):
    """A child process that keeps ``path`` open for appending, as a daemon keeps its log."""
    with open(path, "ab") as handle:
        child = subprocess.Popen(["sleep", "60"], stdout=handle)
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def allocated(path):
    return path.stat().st_blocks * 512


def step(result, name):
    return next(item for item in result["steps"] if item["name"] == name)


def kept(step_result):
    return {entry["path"]: entry["reason"] for entry in step_result["kept"]}


def plant_logs(tree):
    """Logs of every kind the compress and emergency steps tell apart."""
    return {
        "old": tree.text(tree.log / "app.log", 2, age_days=10),
        "rotated": tree.text(tree.log / "app.log.1", 1, age_days=10),
        "young": tree.text(tree.log / "young.log", 1, age_days=1),
        "live": tree.text(tree.log / "live.log", 3, age_days=10),
        "key": tree.text(tree.log / "server.key", 1, age_days=10),
        "preserved": tree.text(tree.log / "keep" / "audit.log", 1, age_days=10),
    }


def plant_tmp(tree):
    """Tmp files of several ages, a hard link, a certificate and two symlink traps."""
    files = {
        "old": tree.noise(tree.tmp / "build" / "old.o", 512 * 1024, age_days=30),
        "extracted": tree.noise(tree.tmp / "extracted.tar", 256 * 1024, age_days=30),
        "recent": tree.noise(tree.tmp / "recent.bin", 256 * 1024, age_days=30),
        "linked": tree.noise(tree.tmp / "linked.bin", 256 * 1024, age_days=30),
        "pem": tree.noise(tree.tmp / "site.pem", 4096, age_days=30),
        "precious": tree.noise(tree.outside / "precious.db", 64 * 1024, age_days=30),
    }
    os.link(files["linked"], tree.tmp / "linked-twin.bin")
    (tree.tmp / "trap").symlink_to(files["precious"])
    tree.age(tree.tmp / "trap", 30, follow_symlinks=False)
    (tree.tmp / "dir-trap").symlink_to(tree.outside)
    tree.backdate_ctimes([files["old"], files["linked"], files["pem"]], days=30)
    # Read yesterday: its atime is recent, so it stays.
    os.utime(files["recent"], (time.time() - DAY, time.time() - 30 * DAY))
    return files


def test_compress_gzips_old_logs_and_keeps_live_young_and_preserved_ones(loaders, tree):
    logs = plant_logs(tree)
    sums = {name: digest(path) for name, path in logs.items()}
    sizes = {name: allocated(path) for name, path in logs.items()}
    used_before = tree.used_bytes()
    with configured(loaders, tree), held_open_for_writing(logs["live"]):
        result = loaders.modules.eos_storage.cleanup(
            level="compress", mount=str(tree.mount), target_percent=FORCE
        )

    for name in ("old", "rotated"):
        packed = logs[name].with_name(logs[name].name + ".gz")
        assert not logs[name].exists()
        assert hashlib.sha256(gzip.decompress(packed.read_bytes())).hexdigest() == sums[name]
    for name in ("young", "live", "key", "preserved"):
        assert digest(logs[name]) == sums[name]
    reasons = kept(step(result, "compress_logs"))
    assert "open for writing by pid" in reasons[str(logs["live"])]
    assert reasons[str(logs["key"])] == r"preserved: .*\.key (critical)"
    assert "eos:cleanup:preserve_paths" in reasons[str(logs["preserved"])]

    expected = sum(
        sizes[name] - allocated(logs[name].with_name(logs[name].name + ".gz"))
        for name in ("old", "rotated")
    )
    assert result["freed_bytes"] == expected
    assert used_before - tree.used_bytes() == pytest.approx(expected, rel=0.01)


def test_cleanup_removes_only_old_tmp_files_and_never_follows_a_symlink(loaders, tree):
    files = plant_tmp(tree)
    precious = digest(files["precious"])
    with configured(loaders, tree):
        result = loaders.modules.eos_storage.cleanup(
            level="cleanup", mount=str(tree.mount), target_percent=FORCE
        )

    tmp_step = step(result, "tmp_files")
    assert not files["old"].exists()
    assert [entry["path"] for entry in tmp_step["files"]] == [str(files["old"])]
    for name in ("extracted", "recent", "linked", "pem"):
        assert files[name].exists(), name
    assert (tree.tmp / "trap").is_symlink()
    assert digest(files["precious"]) == precious
    reasons = kept(tmp_step)
    assert "hard link (2 links)" in reasons[str(files["linked"])]
    assert reasons[str(files["pem"])] == r"preserved: .*\.pem (critical)"
    for name in ("package_caches", "docker_prune", "journal_vacuum"):
        assert step(result, name)["skipped"]


def test_cleanup_stays_on_its_filesystem_and_out_of_symlinked_roots(loaders, tree):
    # With no minimum age every regular file in the roots qualifies: only the rules protect.
    doomed = tree.noise(tree.tmp / "doomed.bin", 4096, age_days=0)
    other = tree.tmp / "other-fs"
    other.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "eos-test", str(other)], check=True)
    try:
        on_other = tree.noise(other / "resident.bin", 4096, age_days=30)
        victim = tree.noise(tree.outside / "victim.bin", 4096, age_days=30)
        alias = tree.mount / "tmp-alias"
        alias.symlink_to(tree.outside)
        with configured(loaders, tree, tmp_dirs=[str(tree.tmp), str(alias)], tmp_after_days=0):
            result = loaders.modules.eos_storage.cleanup(
                level="cleanup", mount=str(tree.mount), target_percent=FORCE
            )
        assert on_other.exists()
    finally:
        subprocess.run(["umount", str(other)], check=True)
    assert not doomed.exists()
    assert victim.exists()
    assert "symlink" in kept(step(result, "tmp_files"))[str(alias)]


def test_emergency_frees_rotated_logs_live_logs_and_caches_but_keeps_critical_data(loaders, tree):
    logs = plant_logs(tree)
    blob = tree.noise(tree.cache / "pip" / "wheel.whl", 2 * MIB, age_days=0)
    live_bytes, blob_bytes = allocated(logs["live"]), allocated(blob)
    with configured(loaders, tree), held_open_for_writing(logs["live"]) as writer:
        used_before = tree.used_bytes()
        result = loaders.modules.eos_storage.cleanup(
            level="emergency", mount=str(tree.mount), dry_run=False, target_percent=FORCE
        )
        # Truncated in place: the space is back although the writer still holds the file.
        assert writer.poll() is None
        assert logs["live"].stat().st_size == 0
        used_after = tree.used_bytes()

    assert not logs["rotated"].exists()
    assert not logs["rotated"].with_name("app.log.1.gz").exists()
    assert logs["old"].with_name("app.log.gz").exists()
    assert not blob.exists()
    assert logs["key"].exists()
    assert logs["preserved"].exists()
    assert logs["young"].stat().st_size > 0
    truncated = step(result, "truncate_live_logs")["files"]
    assert truncated == [{"path": str(logs["live"]), "bytes": live_bytes}]
    assert step(result, "user_caches")["freed_bytes"] == blob_bytes
    assert used_before - used_after == pytest.approx(result["freed_bytes"], rel=0.01)


def test_the_dry_run_changes_nothing_and_matches_the_real_run(loaders, tree):
    logs = plant_logs(tree)
    files = plant_tmp(tree)
    tree.noise(tree.cache / "blob", 1 * MIB, age_days=0)
    everything = [p for p in tree.mount.rglob("*") if p.is_file() and not p.is_symlink()]
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_atime_ns) for p in everything}
    with configured(loaders, tree), held_open_for_writing(logs["live"]):
        predicted = loaders.modules.eos_storage.cleanup(
            level="emergency", mount=str(tree.mount), target_percent=FORCE
        )
        assert predicted["dry_run"] is True
        assert {
            p: (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_atime_ns) for p in everything
        } == before
        used_before = tree.used_bytes()
        done = loaders.modules.eos_storage.cleanup(
            level="emergency", mount=str(tree.mount), dry_run=False, target_percent=FORCE
        )
        freed_on_disk = used_before - tree.used_bytes()

    assert not files["old"].exists()
    assert predicted["freed_bytes"] > 7 * MIB
    assert done["freed_bytes"] == pytest.approx(predicted["freed_bytes"], rel=0.01)
    assert freed_on_disk == pytest.approx(done["freed_bytes"], rel=0.01)
    for ahead, behind in zip(predicted["steps"], done["steps"], strict=True):
        assert behind["freed_bytes"] == pytest.approx(ahead["freed_bytes"], rel=0.01), ahead["name"]
        assert {f["path"] for f in behind["files"]} == {f["path"] for f in ahead["files"]}


def test_the_run_stops_at_the_target_oldest_first(loaders, tree):
    ages = (40, 35, 30, 25, 20, 15)
    parts = [tree.noise(tree.tmp / f"part-{age}d", 5 * MIB, age_days=age) for age in ages]
    tree.backdate_ctimes(parts, days=40)
    fill_to(tree.mount, 80)
    start = loaders.modules.eos_storage.analyze(mount=str(tree.mount))[str(tree.mount)]
    assert start["usage_percent"] >= 79
    with configured(loaders, tree, target_margin=0):
        # The target defaults to the cleanup threshold: 75% on the single profile.
        predicted = loaders.modules.eos_storage.cleanup(
            level="cleanup", mount=str(tree.mount), dry_run=True
        )
        done = loaders.modules.eos_storage.cleanup(level="cleanup", mount=str(tree.mount))

    assert done["target_percent"] == 75
    assert done["target_reached"]
    assert 70 < done["after_percent"] < 75
    tmp_step = step(done, "tmp_files")
    assert tmp_step["stopped_at_target"]
    assert [p.exists() for p in parts] == [False, True, True, True, True, True]
    for later in ("docker_prune", "journal_vacuum"):
        assert step(done, later)["skip_reason"].startswith("target reached")
    assert predicted["after_percent"] == pytest.approx(done["after_percent"], abs=0.2)
    assert {f["path"] for f in step(predicted, "tmp_files")["files"]} == {str(parts[0])}


def test_a_second_run_is_refused_while_another_process_holds_the_lock(loaders, tree, minion_opts):
    old = tree.noise(tree.tmp / "old.bin", 4096, age_days=30)
    lock_dir = os.path.join(minion_opts["cachedir"], "eos")
    # Configured first: reloading the loaders empties the cachedir, lock file included.
    with configured(loaders, tree, tmp_after_days=0):
        refused, holder_pid = _run_while_another_process_holds(loaders, tree, lock_dir)
    assert f"pid {holder_pid}" in str(refused.value)
    assert old.exists()
    # The kernel dropped the lock with its holder: no stale lock to clear by hand.
    with configured(loaders, tree, tmp_after_days=0):
        loaders.modules.eos_storage.cleanup(
            level="cleanup", mount=str(tree.mount), target_percent=FORCE
        )
    assert not old.exists()


def _run_while_another_process_holds(loaders, tree, lock_dir):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from saltext.eos.utils.storage import cleanup\n"
            "with cleanup.exclusive(sys.argv[1]):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
            lock_dir,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CommandExecutionError, match="already running") as refused:
            loaders.modules.eos_storage.cleanup(
                level="cleanup", mount=str(tree.mount), target_percent=FORCE
            )
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    return refused, holder.pid


def small_log(tree, path, age_days=30):
    """A 20 KiB log that gzip shrinks, ``age_days`` old: every age rule would take it."""
    line = b"2024-01-01T12:00:00 db[42]: checkpoint complete: wrote 12 buffers\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(line * (20 * 1024 // len(line)))
    tree.age(path, age_days)
    return path


def test_no_level_touches_protected_data_or_what_a_bind_mount_shows(loaders, tree):
    protected_files = {
        small_log(tree, root / name / relative): name
        for name, relatives in EXAMPLES.items()
        for relative in relatives
        for root in (tree.log, tree.tmp)
    }
    # Another directory of this filesystem shown again below the tmp and log dirs: a bind
    # mount has the st_dev of what it shows, so only the mount table tells it apart.
    elsewhere = tree.mount / "elsewhere"
    shown = [small_log(tree, elsewhere / name) for name in ("old.bin", "app.log.1", "big.log")]
    compressed = small_log(tree, tree.log / "app.log")
    rotated = small_log(tree, tree.log / "app.log.1")
    old_tmp = small_log(tree, tree.tmp / "build" / "old.o")
    live = small_log(tree, tree.log / "live.log", age_days=0)
    sums = {path: digest(path) for path in (*protected_files, *shown)}
    levels = {
        "compress": lambda: not compressed.exists() and compressed.with_suffix(".log.gz").exists(),
        "cleanup": lambda: not old_tmp.exists(),
        "degrade": lambda: True,
        "emergency": lambda: (
            not any(p.exists() for p in (rotated, rotated.with_suffix(".1.gz")))
            and live.stat().st_size == 0
        ),
    }
    results = []
    with contextlib.ExitStack() as mounts:
        for parent in (tree.tmp, tree.log):
            bound = mounts.enter_context(bind_mount(elsewhere, parent / "chroot dir" / "srv"))
            assert os.stat(bound).st_dev == os.stat(parent).st_dev
        with configured(loaders, tree, tmp_after_days=0, truncate_over="1K"):
            for level, done in levels.items():
                results.append(
                    loaders.modules.eos_storage.cleanup(
                        level=level,
                        mount=str(tree.mount),
                        dry_run=False,
                        target_percent=FORCE,
                        services=False,
                    )
                )
                assert done(), level
                assert {path: digest(path) for path in sums} == sums, level

    assert not [p for p in (*protected_files, *shown) if p.with_name(p.name + ".gz").exists()]
    reported = [
        (entry["path"], entry.get("reason"))
        for result in results
        for step_result in result["steps"]
        for entry in (*step_result["files"], *step_result["kept"])
    ]
    assert not [path for path, _why in reported if "chroot dir" in path]
    reasons = {}
    for path, why in reported:
        if why is not None:
            reasons.setdefault(path, set()).add(why)
    for path, name in protected_files.items():
        assert reasons[str(path)] and all(why.endswith(f"({name})") for why in reasons[str(path)])
