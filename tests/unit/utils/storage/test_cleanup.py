"""
The cleanup planner and executor on a fake filesystem below tmp_path, without root or Salt.

Every root (logs, tmp, caches, journal, package caches, docker) points into the test tree and
every tool is a fake, so no test can touch the machine that runs it. ``ctime`` cannot be set
by a test, so the tests move the clock instead: ``World.now`` is 30 days ahead, which makes
every file's ctime 30 days old, and a file's age is then set with atime and mtime.
"""

import gzip
import os
import subprocess
import sys
import time

import pytest

from saltext.eos import PACKAGE_ROOT
from saltext.eos.utils import commands
from saltext.eos.utils import config
from saltext.eos.utils.storage import cleanup
from saltext.eos.utils.storage import openfiles
from saltext.eos.utils.storage import protected
from saltext.eos.utils.storage import thresholds
from saltext.eos.utils.storage import walk
from tests.support import layers as support_layers
from tests.support.protected_data import EXAMPLES
from tests.support.protected_data import LOOKALIKES

DAY = 86400
MIB = 1024 * 1024
CLOCK_AHEAD = 30 * DAY
# Far below any real usage, so that no step stops early unless a test asks for it.
NO_EARLY_STOP = 0.001


class Tools:
    """Fake tools: only those installed are found, and each runs a Python side effect."""

    def __init__(self, installed=None):
        self.installed = dict(installed or {})
        self.commands = []

    def which(self, name):
        return f"/usr/bin/{name}" if name in self.installed else None

    def run(self, argv, timeout):
        self.commands.append(list(argv))
        behaviour = self.installed[argv[0]]
        return behaviour(argv) or commands.CommandResult(0, "", "")


class Tree:
    """A fake filesystem: the directories every setting points at, below one root."""

    def __init__(self, root):
        self.root = root
        self.log = root / "log"
        self.tmp = root / "tmp"
        self.cache = root / "cache"
        self.journal = root / "log" / "journal"
        self.apt = root / "apt"
        self.docker = root / "docker"
        self.state = root.parent / "state"
        self.outside = root.parent / "outside"
        for directory in (self.log, self.tmp, self.cache, self.journal, self.apt, self.outside):
            directory.mkdir(parents=True)
        self.now = time.time() + CLOCK_AHEAD

    def settings(self, **overrides):
        conf = {
            "log_dirs": [str(self.log)],
            "tmp_dirs": [str(self.tmp)],
            "user_cache_dirs": [str(self.cache)],
            "journal_dirs": [str(self.journal)],
            "package_caches": {"apt": [str(self.apt)]},
            "docker_root": str(self.docker),
            "services": [],
            **overrides,
        }
        return cleanup.settings(config.Layers([("minion config", {"cleanup": conf})]))

    def world(self, tools=None, **overrides):
        tools = tools or Tools()
        values = {
            "run_command": tools.run,
            "which": tools.which,
            "open_files": openfiles.OpenFiles,
            "now": lambda: self.now,
            **overrides,
        }
        return cleanup.World(**values)

    def filesystem(self):
        return cleanup.Filesystem(str(self.root), os.stat(self.root).st_dev)

    def run(self, level, dry_run, target=NO_EARLY_STOP, settings=None, world=None):
        return cleanup.cleanup(
            self.filesystem(),
            cleanup.request(level, dry_run=dry_run),
            target,
            settings or self.settings(),
            world or self.world(),
            str(self.state),
        )

    def file(self, path, size=4096, age_days=30, content=None):
        """A file of ``size`` random (incompressible) bytes or ``content``, ``age_days`` old."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if content is not None else os.urandom(size))
        self.age(path, age_days)
        return path

    def log_file(self, path, lines=20000, age_days=30):
        """A compressible log file."""
        text = "".join(
            f"2024-01-01 12:00:{i % 60:02d} app[42]: request {i} done\n" for i in range(lines)
        )
        return self.file(path, content=text.encode(), age_days=age_days)

    def age(self, path, days, follow_symlinks=True):
        when = self.now - days * DAY
        os.utime(path, (when, when), follow_symlinks=follow_symlinks)

    def allocated(self):
        total = 0
        for directory, _subdirs, files in os.walk(self.root):
            for name in files:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
        return total


@pytest.fixture
def tree(tmp_path):
    return Tree(tmp_path / "fs")


def step(result, name):
    return next(item for item in result["steps"] if item["name"] == name)


def paths(step_result):
    return {entry["path"] for entry in step_result["files"]}


def kept(step_result):
    return {entry["path"]: entry["reason"] for entry in step_result["kept"]}


# --------------------------------------------------------------------------- levels and requests


def test_levels_include_the_steps_of_every_lower_level_in_order():
    names = {level: [s.name for s in cleanup.steps_for(level)] for level in cleanup.LEVELS}
    assert names["compress"] == ["compress_logs"]
    assert names["cleanup"] == [
        "compress_logs",
        "package_caches",
        "tmp_files",
        "docker_prune",
        "journal_vacuum",
    ]
    assert names["degrade"] == [*names["cleanup"], "stop_services"]
    assert names["emergency"] == [
        *names["degrade"],
        "user_caches",
        "rotated_logs",
        "journal_vacuum_emergency",
        "truncate_live_logs",
    ]


@pytest.mark.parametrize(
    ("level", "dry_run"),
    [("compress", False), ("cleanup", False), ("degrade", True), ("emergency", True)],
)
def test_dry_run_defaults_to_true_only_for_the_costly_levels(level, dry_run):
    assert cleanup.request(level).dry_run is dry_run
    assert cleanup.request(level, dry_run=not dry_run).dry_run is (not dry_run)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"level": "panic"}, "level: 'panic' is not one of compress, cleanup"),
        ({"level": "cleanup", "dry_run": "yes"}, "dry_run: 'yes' is not True or False"),
        ({"level": "cleanup", "target_percent": 0}, "target_percent: 0 is not a number"),
        ({"level": "cleanup", "target_percent": 100}, "target_percent: 100 is not"),
        ({"level": "cleanup", "target_percent": -5}, "target_percent: -5 is not"),
        ({"level": "cleanup", "target_percent": "70"}, "target_percent: '70' is not"),
        ({"level": "cleanup", "target_percent": True}, "target_percent: True is not"),
    ],
)
def test_bad_requests_name_the_argument_and_value(arguments, message):
    with pytest.raises(cleanup.InvalidRequest, match=message):
        cleanup.request(**arguments)


@pytest.mark.parametrize(
    ("level", "expected"),
    [("compress", 65), ("cleanup", 70), ("degrade", 75), ("emergency", 80)],
)
def test_default_target_is_the_level_threshold_minus_the_margin(level, expected):
    limits = thresholds.effective(config.Layers([]))
    assert cleanup.default_target(level, limits, 5) == expected


def test_a_margin_that_leaves_no_target_is_a_configuration_error():
    limits = thresholds.effective(config.Layers([]))
    with pytest.raises(config.InvalidConfig, match="eos:cleanup:target_margin: 70"):
        cleanup.default_target("compress", limits, 70)


# --------------------------------------------------------------------------- settings


def layers(**conf):
    return support_layers.minion({"cleanup": conf})


def test_defaults_come_from_the_one_table():
    settings = cleanup.settings(config.Layers([]))
    assert settings.log_dirs == tuple(cleanup.DEFAULTS["log_dirs"])
    assert settings.tmp_after_seconds == cleanup.DEFAULTS["tmp_after_days"] * DAY
    assert settings.journal_max_bytes == 500 * MIB
    assert settings.emergency_journal_max_bytes == 100 * MIB
    assert settings.truncate_over_bytes == 100 * MIB
    assert settings.services == ("jenkins", "gitlab-runner", "elasticsearch")
    assert settings.user_cache_dirs == ("/root/.cache",)


def test_pillar_beats_minion_config_per_key():
    merged = config.Layers(
        [
            ("minion config", {"cleanup": {"tmp_after_days": 3, "services": ["a"]}}),
            ("pillar", {"cleanup": {"tmp_after_days": 2}}),
        ]
    )
    settings = cleanup.settings(merged)
    assert settings.tmp_after_seconds == 2 * DAY
    assert settings.services == ("a",)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"tmp_after_days": -1}, "eos:cleanup:tmp_after_days: -1 must be >= 0"),
        ({"compress_after_days": "week"}, "eos:cleanup:compress_after_days: 'week' is not"),
        ({"truncate_over": "-5M"}, "eos:cleanup:truncate_over: '-5M' must be >= 0"),
        ({"truncate_over": -1}, "eos:cleanup:truncate_over: -1 must be >= 0"),
        ({"journal_max_size": "lots"}, "eos:cleanup:journal_max_size: 'lots' is not a size"),
        ({"tmp_dirs": ["relative/tmp"]}, "eos:cleanup:tmp_dirs: 'relative/tmp' is not an abs"),
        ({"tmp_dirs": "/tmp"}, "eos:cleanup:tmp_dirs: '/tmp' is not a list"),
        ({"log_dirs": ["/"]}, "eos:cleanup:log_dirs: '/' is too broad"),
        ({"services": "jenkins"}, "eos:cleanup:services: 'jenkins' is not a list"),
        ({"docker_prune": "yes"}, "eos:cleanup:docker_prune: 'yes' is not true/false"),
        ({"compress_level": 12}, "eos:cleanup:compress_level: 12 must be <= 9"),
        ({"max_listed_files": -1}, "eos:cleanup:max_listed_files: -1 must be >= 0"),
        ({"package_caches": {"pacman": []}}, "eos:cleanup:package_caches:pacman: unknown"),
        ({"preserve_paths": ["data/keep"]}, "eos:cleanup:preserve_paths: 'data/keep' must"),
        ({"tmp_after_day": 3}, "eos:cleanup:tmp_after_day: unknown setting"),
        ({"protected": ["/srv/ledger"]}, r"eos:cleanup:protected: \['/srv/ledger'\] is not a map"),
        ({"protected": {"ledger": "/srv"}}, "eos:cleanup:protected:ledger: '/srv' is not a map"),
        (
            {"protected": {"led ger": {"paths": ["/srv"], "reason": "r"}}},
            "eos:cleanup:protected:led ger: 'led ger' is not a class name",
        ),
        (
            {"protected": {"ledger": {"paths": ["srv"], "reason": "r"}}},
            "eos:cleanup:protected:ledger:paths: 'srv' is not an absolute path",
        ),
        (
            {"protected": {"ledger": {"paths": "/srv", "reason": "r"}}},
            "eos:cleanup:protected:ledger:paths: '/srv' is not a list",
        ),
        (
            {"protected": {"ledger": {"names": ["/srv/*.db"], "reason": "r"}}},
            "eos:cleanup:protected:ledger:names: '/srv/\\*.db' is not a name pattern",
        ),
        (
            {"protected": {"ledger": {"names": ["data//x"], "reason": "r"}}},
            "eos:cleanup:protected:ledger:names: 'data//x' is not a name pattern",
        ),
        (
            {"protected": {"ledger": {"names": ["../x"], "reason": "r"}}},
            "eos:cleanup:protected:ledger:names: '../x' is not a name pattern",
        ),
        (
            {"protected": {"ledger": {"paths": ["/srv/ledger"]}}},
            "eos:cleanup:protected:ledger:reason: None is not a text",
        ),
        (
            {"protected": {"ledger": {"paths": ["/srv/ledger"], "reason": " "}}},
            "eos:cleanup:protected:ledger:reason: ' ' is not a text",
        ),
        (
            {"protected": {"ledger": {"reason": "money"}}},
            "eos:cleanup:protected:ledger: protects nothing",
        ),
        (
            {"protected": {"ledger": {"path": ["/srv"], "reason": "r"}}},
            "eos:cleanup:protected:ledger:path: unknown field; expected one of paths, names",
        ),
        (
            {"protected": {"mysql-binlog": {"paths": ["/srv/binlogs"], "reason": "mine"}}},
            "eos:cleanup:protected:mysql-binlog:reason: a built-in class keeps its reason",
        ),
    ],
)
def test_bad_configuration_names_the_key_and_value(conf, message):
    with pytest.raises(config.InvalidConfig, match=message):
        cleanup.settings(layers(**conf))


@pytest.mark.parametrize("path", ["/", "//", "///", "/./", "/tmp/..", "//tmp/../"])
@pytest.mark.parametrize("name", ["tmp_dirs", "log_dirs", "user_cache_dirs", "journal_dirs"])
def test_every_spelling_of_the_root_is_too_broad_to_clean(name, path):
    with pytest.raises(config.InvalidConfig, match=f"eos:cleanup:{name}: '{path}' is too broad"):
        cleanup.settings(layers(**{name: [path]}))


def test_paths_are_normalised_before_they_are_used():
    settings = cleanup.settings(
        layers(tmp_dirs=["//tmp//build/./"], preserve_paths=["//srv//keep/"], docker_root="//d")
    )
    assert settings.tmp_dirs == ("/tmp/build",)
    assert settings.docker_root == "/d"
    assert cleanup.Protection(settings.preserve_paths).reason("/srv/keep/a")


def test_a_cleanup_section_that_is_not_a_mapping_is_an_error():
    with pytest.raises(config.InvalidConfig, match="eos:cleanup: 'all' is not a mapping"):
        cleanup.settings(config.Layers([("pillar", {"cleanup": "all"})]))


@pytest.mark.parametrize(
    ("text", "expected"),
    [(0, 0), (1024, 1024), ("500M", 500 * MIB), ("100MiB", 100 * MIB), ("1.5G", 1536 * MIB)],
)
def test_sizes_read_like_journalctl(text, expected):
    assert cleanup.parse_size(text, "key") == expected


def test_a_size_is_the_whole_text():
    # Surrounding whitespace (a trailing newline too) is padding; anything after it is not.
    assert cleanup.parse_size(" 500M\n", "key") == 500 * MIB
    for text in ("500M\nrm", "500Mx", "5 00M"):
        with pytest.raises(config.InvalidConfig, match="is not a size such as 500M"):
            cleanup.parse_size(text, "key")


@pytest.mark.parametrize(
    ("name", "rotated"),
    [
        ("syslog.1", True),
        ("syslog.2.gz", True),
        ("app.log-20240101", True),
        ("app.log.old", True),
        ("syslog", False),
        ("syslog.1\n", False),
        ("app.log.old\n", False),
        ("syslog.2.gz\n", False),
    ],
)
def test_only_names_ending_in_a_rotation_suffix_are_rotated_logs(name, rotated):
    assert cleanup.safety._is_rotated(name) is rotated


# --------------------------------------------------------------------------- protection


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/home/alice/.cache/big",
        "/var/lib/mysql/ibdata1",
        "/var/lib/postgresql/15/main/base/1",
        "/var/lib/vault/core",
        "/tmp/server.key",
        "/var/tmp/certs/site.crt",
        "/tmp/bundle.pem/inside",
    ],
)
def test_critical_data_is_always_preserved(path):
    assert cleanup.Protection().reason(path).startswith("preserved:")


@pytest.mark.parametrize(
    "path",
    [
        "/etcetera/x",
        "/homework/x",
        "/tmp/key",
        "/tmp/a.keys",
        "/var/log/mysqld.log.1",
        "/var/lib/etcd2/x.1",
        "/tmp/kafka-logs.old/x",
        "/var/log/app.log.1",
        "/var/log/journal/x.log.1",
        "/var/lib/postgresql-old/x",
    ],
)
def test_lookalikes_of_critical_data_are_not_preserved(path):
    assert cleanup.Protection().reason(path) is None


def test_preserve_paths_take_paths_globs_and_names():
    protection = cleanup.Protection(["/srv/keep", "/data/*/models", "*.sqlite"])
    assert "eos:cleanup:preserve_paths" in protection.reason("/srv/keep/a")
    assert protection.reason("/data/x/models/m.bin")
    assert protection.reason("/var/tmp/app.sqlite")
    assert protection.reason("/srv/keeper/a") is None


def test_the_examples_cover_every_protected_class():
    assert set(EXAMPLES) == set(protected.BUILTIN_BY_NAME)


@pytest.mark.parametrize(
    ("name", "location"),
    [(each.name, path) for each in protected.BUILTIN for path in each.paths],
)
def test_every_protected_location_is_kept_whole(name, location):
    inside = location.replace("*", "15") + "/any/file.log.1"
    assert cleanup.Protection().reason(inside) == f"preserved: {location} ({name})"


def plant(tree, roots, relative_paths):
    """Old compressible files at each relative path below each root."""
    return [
        tree.log_file(root / relative, lines=500, age_days=30)
        for root in roots
        for relative in relative_paths
    ]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_protected_data_in_log_and_tmp_dirs_survives_every_step(tree, name):
    log_copies = plant(tree, [tree.log / name], EXAMPLES[name])
    tmp_copies = plant(tree, [tree.tmp / name], EXAMPLES[name])
    ordinary = plant(tree, [tree.log, tree.tmp], ["app.log.1"])
    before = {path: path.read_bytes() for path in (*log_copies, *tmp_copies)}
    # Every file qualifies for some step: old, and live logs of any size are truncated.
    result = tree.run("emergency", dry_run=False, settings=tree.settings(truncate_over="0"))
    assert {path: path.read_bytes() for path in before} == before
    assert not any(path.with_name(path.name + ".gz").exists() for path in before)
    assert not any(path.exists() for path in ordinary)
    first_refusals = [("compress_logs", log_copies), ("tmp_files", tmp_copies)]
    for step_name, copies in first_refusals:
        reasons = kept(step(result, step_name))
        assert all(reasons[str(path)].endswith(f"({name})") for path in copies), reasons
    for later in ("rotated_logs", "truncate_live_logs"):
        assert all(why.endswith(f"({name})") for why in kept(step(result, later)).values())


def test_lookalikes_of_protected_data_are_still_cleaned(tree):
    lookalikes = plant(tree, [tree.log, tree.tmp], LOOKALIKES)
    result = tree.run("emergency", dry_run=False)
    assert [path for path in lookalikes if path.exists()] == []
    assert [p for p in tree.root.rglob("*") if p.is_file() and p.name.endswith(".gz")] == []
    assert paths(step(result, "rotated_logs")) == {
        f"{path}.gz" for path in lookalikes if path.is_relative_to(tree.log)
    }


def test_a_site_adds_protected_classes_and_locations_of_built_in_ones(tree):
    ledger = plant(tree, [tree.tmp / "books", tree.log], ["2024.ledger.1"])
    binlogs = plant(tree, [tree.log / "binlogs"], ["host.000001", "host.index"])
    doomed = plant(tree, [tree.log], ["app.log.1"])
    site = {
        "ledger": {"paths": [str(tree.tmp / "books")], "names": ["*.ledger.*"], "reason": "$"},
        "mysql-binlog": {"paths": [str(tree.log / "binlogs")]},
    }
    result = tree.run("emergency", dry_run=False, settings=tree.settings(protected=site))
    assert all(path.exists() for path in (*ledger, *binlogs))
    assert not any(path.exists() for path in doomed)
    reasons = {**kept(step(result, "compress_logs")), **kept(step(result, "tmp_files"))}
    assert reasons[str(ledger[0])] == f"preserved: {tree.tmp / 'books'} (ledger)"
    assert reasons[str(ledger[1])] == "preserved: *.ledger.* (ledger)"
    assert reasons[str(binlogs[0])] == f"preserved: {tree.log / 'binlogs'} (mysql-binlog)"


def test_site_classes_merge_class_by_class_and_never_drop_a_built_in_one():
    merged = config.Layers(
        [
            ("minion config", {"cleanup": {"protected": {"a": {"names": ["x"], "reason": "1"}}}}),
            ("pillar", {"cleanup": {"protected": {"b": {"names": ["y"], "reason": "2"}}}}),
        ]
    )
    classes = {each.name: each for each in cleanup.settings(merged).protected}
    assert set(classes) == {*protected.BUILTIN_BY_NAME, "a", "b"}
    assert cleanup.Protection(classes=tuple(classes.values())).reason("/srv/y") == (
        "preserved: y (b)"
    )


def test_docs_show_the_protected_classes_table():
    docs = PACKAGE_ROOT.parents[2] / "docs" / "cleanup.md"
    # On a mismatch, paste protected.markdown() into the "Protected data" section.
    assert protected.markdown() in docs.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- compress


def test_compress_gzips_old_logs_and_keeps_their_content_and_times(tree):
    old = tree.log_file(tree.log / "app.log", age_days=10)
    original = old.read_bytes()
    mtime = old.stat().st_mtime
    result = tree.run("compress", dry_run=False)
    packed = tree.log / "app.log.gz"
    assert not old.exists()
    assert gzip.decompress(packed.read_bytes()) == original
    assert packed.stat().st_mtime == mtime
    assert step(result, "compress_logs")["freed_bytes"] > 0


def test_compress_skips_young_logs_compressed_files_and_excluded_names(tree):
    young = tree.log_file(tree.log / "young.log", age_days=2)
    done = [
        tree.file(tree.log / f"old.log{suffix}", age_days=30)
        for suffix in cleanup.COMPRESSED_SUFFIXES
    ]
    wtmp = tree.file(tree.log / "wtmp", age_days=30)
    journal = tree.file(tree.journal / "system@1-2-3.journal", age_days=30)
    tree.run("compress", dry_run=False)
    for path in (young, *done, wtmp, journal):
        assert path.exists()
    assert not list(tree.log.rglob("*.gz.gz"))


def test_compress_leaves_a_file_that_would_not_shrink(tree):
    noise = tree.file(tree.log / "random.log", size=64 * 1024, age_days=30)
    result = tree.run("compress", dry_run=False)
    assert noise.exists()
    assert not (tree.log / "random.log.gz").exists()
    assert kept(step(result, "compress_logs"))[str(noise)] == "would not shrink when compressed"


def test_compress_skips_a_log_open_for_writing(tree):
    live = tree.log_file(tree.log / "live.log", age_days=30)
    with open(live, "a", encoding="utf-8"):
        result = tree.run("compress", dry_run=False, world=tree.world(open_files=openfiles.scan))
    assert live.exists()
    assert "open for writing by pid" in kept(step(result, "compress_logs"))[str(live)]


def test_the_dry_run_sizes_compression_exactly_and_writes_nothing(tree):
    for index in range(5):
        tree.log_file(tree.log / f"app.log.{index}", lines=5000 * (index + 1), age_days=20)
    before = sorted(p.name for p in tree.log.iterdir())
    predicted = tree.run("compress", dry_run=True)
    assert sorted(p.name for p in tree.log.iterdir()) == before
    allocated_before = tree.allocated()
    done = tree.run("compress", dry_run=False)
    assert predicted["freed_bytes"] == done["freed_bytes"]
    assert paths(step(predicted, "compress_logs")) == paths(step(done, "compress_logs"))
    assert allocated_before - tree.allocated() == done["freed_bytes"]


# --------------------------------------------------------------------------- tmp


def test_tmp_files_go_only_when_accessed_modified_and_changed_long_ago(tree):
    old = tree.file(tree.tmp / "old.bin", age_days=10)
    recent_access = tree.file(tree.tmp / "read-yesterday.bin", age_days=10)
    os.utime(recent_access, (tree.now - DAY, tree.now - 10 * DAY))
    recent_change = tree.file(tree.tmp / "modified-yesterday.bin", age_days=1)
    tree.run("cleanup", dry_run=False)
    assert not old.exists()
    assert recent_access.exists()
    assert recent_change.exists()


def test_a_tmp_file_with_an_old_mtime_but_a_new_ctime_survives(tree):
    # Just extracted from an archive: old atime and mtime, but its ctime is now.
    extracted = tree.file(tree.tmp / "extracted.txt", age_days=60)
    world_at_real_time = tree.world(now=time.time)
    os.utime(extracted, (time.time() - 60 * DAY, time.time() - 60 * DAY))
    tree.run("cleanup", dry_run=False, world=world_at_real_time)
    assert extracted.exists()
    tree.run("cleanup", dry_run=False)  # thirty days later, its ctime is old too
    assert not extracted.exists()


def test_tmp_cleanup_never_follows_symlinks(tree):
    precious = tree.file(tree.outside / "precious.db", content=b"keep me", age_days=60)
    link = tree.tmp / "link"
    link.symlink_to(precious)
    tree.age(link, 60, follow_symlinks=False)
    outside_dir = tree.outside / "dir"
    outside_file = tree.file(outside_dir / "deep.bin", age_days=60)
    (tree.tmp / "dirlink").symlink_to(outside_dir)
    tree.run("emergency", dry_run=False)
    assert precious.read_bytes() == b"keep me"
    assert outside_file.exists()


def test_a_root_that_is_a_symlink_is_not_followed(tree):
    victim = tree.file(tree.outside / "old.bin", age_days=60)
    alias = tree.root / "tmp-alias"
    alias.symlink_to(tree.outside)
    result = tree.run("cleanup", dry_run=False, settings=tree.settings(tmp_dirs=[str(alias)]))
    assert victim.exists()
    tmp_step = step(result, "tmp_files")
    assert tmp_step["skipped"]
    assert "symlink" in kept(tmp_step)[str(alias)]


def test_a_directory_swapped_for_a_symlink_after_planning_leads_nowhere(tree, monkeypatch):
    planned = tree.file(tree.tmp / "sub" / "victim.bin", age_days=60)
    target = tree.file(tree.outside / "victim.bin", content=b"keep me", age_days=60)
    real_walk = cleanup.run._walk_files

    def walk_then_swap(root, mount_table):
        found = list(real_walk(root, mount_table))
        if root == str(tree.tmp):
            # An attacker replaces the directory once the plan is made.
            planned.unlink()
            planned.parent.rmdir()
            planned.parent.symlink_to(tree.outside)
        return iter(found)

    monkeypatch.setattr(cleanup.run, "_walk_files", walk_then_swap)
    result = tree.run("cleanup", dry_run=False)
    assert target.read_bytes() == b"keep me"
    errors = step(result, "tmp_files")["errors"]
    assert len(errors) == 1
    assert errors[0].startswith(f"{planned}: ")
    assert step(result, "tmp_files")["freed_bytes"] == 0


def test_hard_linked_files_are_reported_not_removed(tree):
    original = tree.file(tree.tmp / "original.bin", age_days=60)
    twin = tree.tmp / "twin.bin"
    os.link(original, twin)
    result = tree.run("cleanup", dry_run=False)
    assert original.exists()
    assert twin.exists()
    reasons = kept(step(result, "tmp_files"))
    assert "hard link (2 links)" in reasons[str(original)]
    assert "hard link (2 links)" in reasons[str(twin)]


def test_files_held_open_are_not_deleted(tree):
    held = tree.file(tree.tmp / "held.bin", age_days=60)
    with open(held, "rb"):
        result = tree.run("cleanup", dry_run=False, world=tree.world(open_files=openfiles.scan))
    assert held.exists()
    assert "open for reading by pid" in kept(step(result, "tmp_files"))[str(held)]


def test_preserved_paths_and_patterns_win_inside_the_roots(tree):
    key = tree.file(tree.tmp / "server.key", age_days=60)
    certificate = tree.file(tree.tmp / "deep" / "site.pem", age_days=60)
    kept_dir = tree.file(tree.tmp / "keep" / "data.bin", age_days=60)
    sqlite = tree.file(tree.tmp / "app.sqlite", age_days=60)
    doomed = tree.file(tree.tmp / "doomed.bin", age_days=60)
    settings = tree.settings(preserve_paths=[str(tree.tmp / "keep"), "*.sqlite"])
    result = tree.run("cleanup", dry_run=False, settings=settings)
    for path in (key, certificate, kept_dir, sqlite):
        assert path.exists()
    assert not doomed.exists()
    reasons = kept(step(result, "tmp_files"))
    assert reasons[str(key)] == r"preserved: .*\.key (critical)"
    assert "eos:cleanup:preserve_paths" in reasons[str(sqlite)]


def test_a_preserved_root_is_skipped_whole(tree):
    old = tree.file(tree.cache / "blob", age_days=60)
    settings = tree.settings(preserve_paths=[str(tree.cache)])
    result = tree.run("emergency", dry_run=False, settings=settings)
    assert old.exists()
    assert step(result, "user_caches")["skipped"]


def test_roots_on_another_filesystem_are_not_touched(tree):
    old = tree.file(tree.tmp / "old.bin", age_days=60)
    elsewhere = cleanup.Filesystem(str(tree.root), os.stat(tree.root).st_dev + 1)
    result = cleanup.cleanup(
        elsewhere,
        cleanup.request("cleanup"),
        NO_EARLY_STOP,
        tree.settings(),
        tree.world(),
        str(tree.state),
    )
    assert old.exists()
    assert step(result, "tmp_files")["skip_reason"].startswith("none of")


def with_mount_at(directory):
    """This process's mount table plus a bind mount of the same filesystem at ``directory``."""
    real = walk.MountTable.read()
    point = os.path.realpath(directory)
    holder = real.mount_at(point)
    bind = walk.Mount(10**9, holder.mount_id, holder.device, "/home", point)
    return walk.MountTable((*real.mounts, bind))


def test_a_bind_mount_below_a_root_is_never_entered(tree):
    inside = tree.file(tree.tmp / "chroot" / "home" / "alice" / "thesis.tex", age_days=60)
    doomed = tree.file(tree.tmp / "old.bin", age_days=60)
    table = with_mount_at(tree.tmp / "chroot" / "home")
    result = tree.run("cleanup", dry_run=False, world=tree.world(mount_table=lambda: table))
    assert inside.exists()
    assert not doomed.exists()
    assert paths(step(result, "tmp_files")) == {str(doomed)}


def test_a_root_that_is_another_mount_of_the_same_filesystem_is_not_cleaned(tree):
    old = tree.file(tree.tmp / "old.bin", age_days=60)
    table = with_mount_at(tree.tmp)
    result = tree.run("cleanup", dry_run=False, world=tree.world(mount_table=lambda: table))
    assert old.exists()
    assert step(result, "tmp_files")["skip_reason"].startswith("none of")


def test_without_the_mount_table_no_file_is_touched(tree):
    old = tree.file(tree.tmp / "old.bin", age_days=60)
    rotated = tree.file(tree.log / "app.log.1", age_days=60)

    def unreadable():
        raise PermissionError(13, "Permission denied")

    result = tree.run("emergency", dry_run=False, world=tree.world(mount_table=unreadable))
    assert old.exists()
    assert rotated.exists()
    tmp_step = step(result, "tmp_files")
    assert tmp_step["skip_reason"].startswith("nothing is touched: cannot read the mount table")
    assert tmp_step["errors"] == ["cannot read the mount table: [Errno 13] Permission denied"]


# --------------------------------------------------------------------------- emergency


def test_emergency_deletes_rotated_logs_and_truncates_huge_live_logs(tree):
    rotated = [
        tree.file(tree.log / name, age_days=2)
        for name in ("syslog.1", "syslog.2.gz", "app.log-20240101", "app.log.old")
    ]
    fresh_rotated = tree.file(tree.log / "syslog.3", age_days=0.1)
    live = tree.file(tree.log / "huge.log", size=2 * MIB, age_days=0)
    small = tree.file(tree.log / "small.log", size=4096, age_days=0)
    with open(live, "a", encoding="utf-8"):
        result = tree.run(
            "emergency",
            dry_run=False,
            settings=tree.settings(truncate_over="1M"),
            world=tree.world(open_files=openfiles.scan),
        )
    assert not any(path.exists() for path in rotated)
    assert fresh_rotated.exists()
    assert live.exists()
    assert live.stat().st_size == 0
    assert small.stat().st_size == 4096
    assert step(result, "truncate_live_logs")["files"] == [{"path": str(live), "bytes": 2 * MIB}]


def test_emergency_empties_user_caches(tree):
    blobs = [tree.file(tree.cache / "pip" / f"blob{i}", age_days=0) for i in range(3)]
    result = tree.run("emergency", dry_run=False)
    assert not any(blob.exists() for blob in blobs)
    assert (tree.cache / "pip").is_dir()
    assert step(result, "user_caches")["freed_bytes"] == 3 * 4096


def test_a_log_compressed_then_deleted_is_counted_once_in_the_dry_run(tree):
    rotated = tree.log_file(tree.log / "syslog.4", age_days=10)
    allocated = rotated.stat().st_blocks * 512
    predicted = tree.run("emergency", dry_run=True)
    assert predicted["freed_bytes"] == allocated
    assert paths(step(predicted, "rotated_logs")) == {str(rotated) + ".gz"}
    done = tree.run("emergency", dry_run=False)
    assert done["freed_bytes"] == allocated
    assert not (tree.log / "syslog.4.gz").exists()


def test_emergency_dry_run_matches_the_real_run_within_one_percent(tree):
    for index in range(3):
        tree.log_file(tree.log / f"svc{index}.log", lines=8000, age_days=10)
        tree.log_file(tree.log / f"svc{index}.log.1", lines=4000, age_days=3)
        tree.file(tree.tmp / f"scratch{index}", size=50_000, age_days=20)
        tree.file(tree.cache / f"blob{index}", size=30_000, age_days=0)
    tree.file(tree.log / "big.log", size=3 * MIB, age_days=0)
    settings = tree.settings(truncate_over="1M")
    predicted = tree.run("emergency", dry_run=True, settings=settings)
    allocated_before = tree.allocated()
    done = tree.run("emergency", dry_run=False, settings=settings)
    assert done["freed_bytes"] == pytest.approx(predicted["freed_bytes"], rel=0.01)
    assert allocated_before - tree.allocated() == done["freed_bytes"]
    for predicted_step, done_step in zip(predicted["steps"], done["steps"], strict=True):
        assert done_step["freed_bytes"] == pytest.approx(predicted_step["freed_bytes"], rel=0.01)


# --------------------------------------------------------------------------- early stop


def fake_usage(tree, capacity):
    """Usage that follows the tree: what the files occupy, out of ``capacity``."""
    return lambda _mount: cleanup.Usage(tree.allocated(), capacity)


def test_the_run_stops_once_under_the_target_and_says_so(tree):
    tree.file(tree.tmp / "a-oldest", size=40 * 4096, age_days=30)
    tree.file(tree.tmp / "b-older", size=40 * 4096, age_days=20)
    newest = tree.file(tree.tmp / "c-old", size=40 * 4096, age_days=10)
    cache = tree.file(tree.cache / "blob", size=40 * 4096, age_days=0)
    capacity = 200 * 4096  # 160 of 200 blocks used: 80%
    world = tree.world(usage=fake_usage(tree, capacity))
    # Under 50% needs 61 blocks freed: the two oldest tmp files, not the third.
    result = tree.run("emergency", dry_run=False, target=50, world=world)
    assert newest.exists()
    assert cache.exists()
    tmp_step = step(result, "tmp_files")
    assert tmp_step["stopped_at_target"]
    assert tmp_step["freed_bytes"] == 80 * 4096
    assert result["target_reached"]
    assert result["after_percent"] == pytest.approx(40.0)
    later = [
        s
        for s in result["steps"]
        if s["name"] not in ("compress_logs", "package_caches", "tmp_files")
    ]
    assert all(s["skipped"] and s["skip_reason"].startswith("target reached") for s in later)


def test_the_dry_run_predicts_the_same_early_stop(tree):
    for index, age in enumerate((30, 20, 10)):
        tree.file(tree.tmp / f"f{index}", size=40 * 4096, age_days=age)
    tree.file(tree.cache / "blob", size=40 * 4096, age_days=0)
    world = tree.world(usage=fake_usage(tree, 200 * 4096))
    predicted = tree.run("emergency", dry_run=True, target=50, world=world)
    done = tree.run("emergency", dry_run=False, target=50, world=world)
    assert predicted["after_percent"] == done["after_percent"]
    assert [s["skipped"] for s in predicted["steps"]] == [s["skipped"] for s in done["steps"]]
    assert paths(step(predicted, "tmp_files")) == paths(step(done, "tmp_files"))


def test_nothing_runs_when_already_under_the_target(tree):
    old = tree.file(tree.tmp / "old", age_days=60)
    world = tree.world(usage=lambda _mount: cleanup.Usage(10, 100))
    result = tree.run("cleanup", dry_run=False, target=50, world=world)
    assert old.exists()
    assert all(s["skipped"] for s in result["steps"])
    assert result["freed_bytes"] == 0


def test_listed_files_are_capped_but_all_are_counted(tree):
    for index in range(7):
        tree.file(tree.tmp / f"f{index}", size=4096 * (index + 1), age_days=30)
    result = tree.run("cleanup", dry_run=True, settings=tree.settings(max_listed_files=3))
    tmp_step = step(result, "tmp_files")
    assert [f["bytes"] for f in tmp_step["files"]] == [7 * 4096, 6 * 4096, 5 * 4096]
    assert tmp_step["files_not_listed"] == 4
    assert tmp_step["freed_bytes"] == 28 * 4096


# --------------------------------------------------------------------------- tools


def apt_clean(tree):
    def behaviour(_argv):
        for path in tree.apt.rglob("*.deb"):
            path.unlink()

    return behaviour


def test_package_cache_is_cleaned_by_its_tool_and_measured(tree):
    debs = [tree.file(tree.apt / "archives" / f"p{i}.deb", size=8192) for i in range(3)]
    tree.file(tree.apt / "archives" / "lock", size=0)
    tools = Tools({"apt-get": apt_clean(tree)})
    predicted = tree.run("cleanup", dry_run=True, world=tree.world(tools))
    assert paths(step(predicted, "package_caches")) == {str(p) for p in debs}
    assert tools.commands == []
    done = tree.run("cleanup", dry_run=False, world=tree.world(tools))
    assert tools.commands == [["apt-get", "clean"]]
    assert step(done, "package_caches")["freed_bytes"] == 3 * 8192
    assert predicted["freed_bytes"] == done["freed_bytes"]


def test_a_package_cache_holding_a_preserved_path_is_left_to_itself(tree):
    deb = tree.file(tree.apt / "archives" / "p.deb", size=8192)
    tools = Tools({"apt-get": apt_clean(tree)})
    settings = tree.settings(preserve_paths=[str(tree.apt / "archives" / "p.deb")])
    result = tree.run("cleanup", dry_run=False, settings=settings, world=tree.world(tools))
    assert deb.exists()
    assert tools.commands == []
    assert "holds preserved paths" in kept(step(result, "package_caches"))[str(tree.apt)]


def test_a_failing_tool_is_reported_and_the_run_goes_on(tree):
    tree.file(tree.apt / "archives" / "p.deb", size=8192)
    old = tree.file(tree.tmp / "old", age_days=60)
    broken = Tools({"apt-get": lambda argv: commands.CommandResult(100, "", "E: locked")})
    result = tree.run("cleanup", dry_run=False, world=tree.world(broken))
    assert step(result, "package_caches")["errors"] == ["apt-get clean exited 100: E: locked"]
    assert not old.exists()


def test_a_missing_tool_is_a_skip_not_an_error(tree):
    result = tree.run("cleanup", dry_run=False)
    for name in ("package_caches", "docker_prune", "journal_vacuum"):
        assert step(result, name)["skipped"]
        assert step(result, name)["errors"] == []


def test_a_vanished_file_is_an_error_and_the_run_goes_on(tree, monkeypatch):
    gone = tree.file(tree.tmp / "gone", age_days=60)
    stays_gone = tree.file(tree.tmp / "also-old", age_days=50)
    real_walk = cleanup.run._walk_files

    def walk_then_vanish(root, mount_table):
        found = list(real_walk(root, mount_table))
        if root == str(tree.tmp) and gone.exists():
            gone.unlink()
        return iter(found)

    monkeypatch.setattr(cleanup.run, "_walk_files", walk_then_vanish)
    result = tree.run("cleanup", dry_run=False)
    tmp_step = step(result, "tmp_files")
    assert tmp_step["errors"] == [f"{gone}: vanished before it could be handled"]
    assert not stays_gone.exists()


def journal_tool(tree, keep_bytes):
    """A fake journalctl that removes archived files, oldest first, like the real one."""

    def behaviour(argv):
        files = sorted(tree.journal.rglob("*@*.journal"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_blocks * 512 for p in tree.journal.rglob("*.journal"))
        for path in files:
            if total <= keep_bytes:
                break
            total -= path.stat().st_blocks * 512
            path.unlink()

    return behaviour


def test_journal_vacuum_predicts_the_archived_files_it_removes(tree):
    archived = [
        tree.file(tree.journal / "m" / f"system@a-{i}.journal", size=MIB, age_days=10 - i)
        for i in range(4)
    ]
    active = tree.file(tree.journal / "m" / "system.journal", size=MIB, age_days=0)
    tools = Tools({"journalctl": journal_tool(tree, 2 * MIB)})
    settings = tree.settings(journal_max_size="2M", emergency_journal_max_size="0")
    predicted = tree.run("cleanup", dry_run=True, settings=settings, world=tree.world(tools))
    assert paths(step(predicted, "journal_vacuum")) == {str(p) for p in archived[:3]}
    done = tree.run("cleanup", dry_run=False, settings=settings, world=tree.world(tools))
    assert ["journalctl", f"--vacuum-size={2 * MIB}"] in tools.commands
    assert paths(step(done, "journal_vacuum")) == {str(p) for p in archived[:3]}
    assert active.exists()
    assert archived[3].exists()


def test_docker_prune_predicts_from_docker_and_reports_what_it_reclaimed(tree):
    tree.docker.mkdir()

    def docker(argv):
        if argv[1:3] == ["system", "df"]:
            table = "Images\t1.5GB (60%)\nContainers\t20MB (100%)\nLocal Volumes\t5GB (90%)\n"
            return commands.CommandResult(0, table, "")
        return commands.CommandResult(0, "Deleted ...\nTotal reclaimed space: 1.2GB\n", "")

    tools = Tools({"docker": docker})
    predicted = tree.run("cleanup", dry_run=True, world=tree.world(tools))
    assert step(predicted, "docker_prune")["freed_bytes"] == 1_520_000_000
    done = tree.run("cleanup", dry_run=False, world=tree.world(tools))
    assert ["docker", "system", "prune", "-f"] in tools.commands
    assert step(done, "docker_prune")["freed_bytes"] == 1_200_000_000


# --------------------------------------------------------------------------- services


def test_degrade_stops_running_services_and_restore_starts_exactly_those(tree):
    running = {"jenkins": True, "elasticsearch": False, "gitlab-runner": True}
    started = []

    def stop(name):
        running[name] = False
        return True

    world = tree.world(service_running=lambda name: running[name], service_stop=stop)
    settings = tree.settings(services=list(running))
    predicted = tree.run("degrade", dry_run=True, settings=settings, world=world)
    assert step(predicted, "stop_services")["services"] == ["jenkins", "gitlab-runner"]
    assert running["jenkins"]
    done = tree.run("degrade", dry_run=False, settings=settings, world=world)
    assert step(done, "stop_services")["services"] == ["jenkins", "gitlab-runner"]

    remembered = cleanup.DegradedServices(str(tree.state))
    assert remembered.names() == ["jenkins", "gitlab-runner"]
    outcome = remembered.restore(start=lambda name: started.append(name) or True)
    assert outcome == {"started": ["jenkins", "gitlab-runner"], "failed": {}}
    assert started == ["jenkins", "gitlab-runner"]
    assert remembered.names() == []
    assert not os.path.exists(remembered.path)


def test_a_service_that_fails_to_start_stays_remembered(tree):
    remembered = cleanup.DegradedServices(str(tree.state))
    remembered.remember(["a", "b"])
    outcome = remembered.restore(start=lambda name: name == "a")
    assert outcome == {"started": ["a"], "failed": {"b": "service.start returned False"}}
    assert remembered.names() == ["b"]


def test_a_failing_service_stop_is_an_error_and_the_run_goes_on(tree):
    old = tree.file(tree.cache / "blob", age_days=0)

    def stop(_name):
        raise RuntimeError("systemctl said no")

    world = tree.world(service_running=lambda name: True, service_stop=stop)
    result = tree.run(
        "emergency", dry_run=False, settings=tree.settings(services=["x"]), world=world
    )
    assert step(result, "stop_services")["errors"] == [
        "service x: service.stop failed: systemctl said no"
    ]
    assert not old.exists()


# --------------------------------------------------------------------------- the lock


def test_a_second_run_is_refused_while_one_holds_the_lock(tree):
    old = tree.file(tree.tmp / "old", age_days=60)
    with cleanup.exclusive(str(tree.state)):
        with pytest.raises(cleanup.CleanupBusy, match=f"already running.*pid {os.getpid()}"):
            tree.run("cleanup", dry_run=False)
        # A dry run changes nothing, so it may look while a real run works.
        assert tree.run("cleanup", dry_run=True)["freed_bytes"] > 0
    assert old.exists()
    tree.run("cleanup", dry_run=False)
    assert not old.exists()


def test_the_lock_dies_with_its_process(tree):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from saltext.eos.utils.storage import cleanup\n"
            "with cleanup.exclusive(sys.argv[1]):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
            str(tree.state),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(cleanup.CleanupBusy, match=f"pid {holder.pid}"):
            tree.run("cleanup", dry_run=False)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    tree.run("cleanup", dry_run=False)


# --------------------------------------------------------------------------- diagnosis


def test_reclaimable_adds_up_each_category_and_changes_nothing(tree):
    tree.file(tree.tmp / "old", size=8192, age_days=60)
    tree.file(tree.cache / "blob", size=4096, age_days=0)
    rotated = tree.file(tree.log / "app.log.1", size=4096, age_days=3)
    before = tree.allocated()
    found = cleanup.reclaimable(tree.filesystem(), tree.settings(), tree.world())
    assert found["by_category"] == {
        "logs": rotated.stat().st_blocks * 512,
        "caches": 4096,
        "tmp": 8192,
        "containers": 0,
        "journal": 0,
    }
    assert found["total_bytes"] == sum(found["by_category"].values())
    assert tree.allocated() == before


# --------------------------------------------------------------------------- open files


def test_the_open_file_scan_tells_writers_from_readers(tmp_path):
    written, read = tmp_path / "written", tmp_path / "read"
    written.write_bytes(b"x")
    read.write_bytes(b"y")
    with open(written, "ab"), open(read, "rb"):
        found = openfiles.scan()
    writer = found.holder(written.stat().st_dev, written.stat().st_ino)
    reader = found.holder(read.stat().st_dev, read.stat().st_ino)
    assert (writer.pid, writer.writing) == (os.getpid(), True)
    assert (reader.pid, reader.writing) == (os.getpid(), False)
    assert openfiles.scan().holder(written.stat().st_dev, written.stat().st_ino) is None


def test_a_writer_outranks_a_reader_of_the_same_file():
    found = openfiles.OpenFiles()
    found.add(1, 2, openfiles.Holder(10, "cat", writing=False))
    found.add(1, 2, openfiles.Holder(11, "app", writing=True))
    found.add(1, 2, openfiles.Holder(12, "less", writing=False))
    assert found.holder(1, 2).describe() == "open for writing by pid 11 (app)"


def test_degraded_is_accepted_for_the_degrade_level():
    req = cleanup.request("degraded")
    assert req.level == "degrade"
    # Like degrade itself, it stops services only when told to.
    assert req.dry_run is True
