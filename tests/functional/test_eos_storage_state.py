"""
The state eos_storage.usage_below through Salt's state system, on a real loop-mounted ext4.

The filesystem helpers (planting files, setting ctime offline, pointing eos:cleanup at the
test filesystem) are those of the cleanup tests.
"""

import os

import pytest

from tests.functional.test_eos_storage_cleanup import MIB
from tests.functional.test_eos_storage_cleanup import LoopTree
from tests.functional.test_eos_storage_cleanup import configured
from tests.support.filesystems import fill_to
from tests.support.filesystems import loop_ext4

pytestmark = pytest.mark.root


@pytest.fixture
def tree(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    with loop_ext4(size_mib=64) as mount:
        yield LoopTree(mount, outside)


@pytest.fixture
def full_tree(tree):
    """80% used: four old 8 MiB tmp files (oldest first) and a fill file no step may touch."""
    parts = [
        tree.noise(tree.tmp / f"part-{age}d", 8 * MIB, age_days=age) for age in (40, 30, 20, 10)
    ]
    tree.backdate_ctimes(parts, days=40)
    fill_to(tree.mount, 80)
    tree.parts = parts
    return tree


def usage(tree):
    stats = os.statvfs(tree.mount)
    used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    return 100.0 * used / (used + stats.f_bavail * stats.f_frsize)


def test_nothing_happens_when_already_below(loaders, tree):
    old = tree.noise(tree.tmp / "old.bin", MIB, age_days=30)
    tree.backdate_ctimes([old], days=30)
    with configured(loaders, tree):
        ret = loaders.states.eos_storage.usage_below(name=str(tree.mount), percent=50)
    assert ret.result is True
    assert ret.changes == {}
    assert "already below 50%" in ret.comment
    assert old.exists()


def test_test_mode_reports_what_would_be_freed_and_changes_nothing(loaders, full_tree):
    before = usage(full_tree)
    with configured(loaders, full_tree):
        ret = loaders.states.eos_storage.usage_below(
            name=str(full_tree.mount), percent=60, max_level="cleanup", test=True
        )
    assert ret.result is None
    assert all(part.exists() for part in full_tree.parts)
    assert usage(full_tree) == pytest.approx(before, abs=0.01)
    two_parts = 2 * 8 * MIB
    assert ret.changes["steps"] == {"tmp_files": pytest.approx(two_parts, rel=0.01)}
    assert ret.changes["freed_bytes"] == pytest.approx(two_parts, rel=0.01)
    assert ret.comment.startswith("Would free 16.0 MiB")


def test_a_real_run_frees_down_to_the_target_and_lists_each_step(loaders, full_tree):
    with configured(loaders, full_tree):
        ret = loaders.states.eos_storage.usage_below(
            name=str(full_tree.mount), percent=60, max_level="cleanup"
        )
    assert ret.result is True
    assert [part.exists() for part in full_tree.parts] == [False, False, True, True]
    assert set(ret.changes["steps"]) == {"tmp_files"}
    assert ret.changes["steps"]["tmp_files"] == pytest.approx(2 * 8 * MIB, rel=0.01)
    assert ret.changes["before_percent"] >= 79
    assert ret.changes["after_percent"] < 60
    assert usage(full_tree) < 60


def test_the_result_is_false_when_the_allowed_levels_cannot_reach_the_target(loaders, full_tree):
    with configured(loaders, full_tree):
        ret = loaders.states.eos_storage.usage_below(
            name=str(full_tree.mount), percent=20, max_level="cleanup"
        )
    assert ret.result is False
    assert not any(part.exists() for part in full_tree.parts)
    assert "still at or above 20%" in ret.comment


def test_bad_arguments_fail_the_state_without_touching_anything(loaders, full_tree):
    with configured(loaders, full_tree):
        unknown_level = loaders.states.eos_storage.usage_below(
            name=str(full_tree.mount), percent=60, max_level="critical"
        )
        bad_percent = loaders.states.eos_storage.usage_below(name=str(full_tree.mount), percent=120)
        not_a_mount = loaders.states.eos_storage.usage_below(name=str(full_tree.tmp), percent=60)
    assert unknown_level.result is False
    assert "max_level: 'critical'" in unknown_level.comment
    assert bad_percent.result is False
    assert "percent: 120 is not a number between 0 and 100" in bad_percent.comment
    assert not_a_mount.result is False
    assert "is not a mount point" in not_a_mount.comment
    assert all(part.exists() for part in full_tree.parts)
