"""eos_storage through Salt's real loader: configuration, errors, and a real filesystem."""

import os
import shutil

import psutil
import pytest
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.utils.storage import thresholds
from tests.support.filesystems import fill_to
from tests.support.filesystems import loop_ext4


def history_dir(minion_opts):
    return os.path.join(minion_opts["cachedir"], "eos", "history")


def test_analyze_reports_root_like_psutil(eos_storage):
    report = eos_storage.analyze()["/"]
    expected = psutil.disk_usage("/")
    assert abs(report["usage_percent"] - expected.percent) <= 1
    assert report["total_bytes"] == expected.total
    assert report["level"] in thresholds.LEVELS
    assert report["actions"] == thresholds.actions_for(report["level"])


def test_analyze_skips_pseudo_filesystems(eos_storage):
    fstypes = {report.get("fstype") for report in eos_storage.analyze().values()}
    assert not fstypes & {"proc", "sysfs", "cgroup", "cgroup2", "devtmpfs", "devpts"}


def test_unknown_mount_is_an_error(eos_storage):
    with pytest.raises(SaltInvocationError, match="'/no/such/mount' is not a mount point"):
        eos_storage.analyze(mount="/no/such/mount")


def test_invalid_threshold_is_an_error_and_writes_no_history(eos_config, eos_storage, minion_opts):
    shutil.rmtree(history_dir(minion_opts), ignore_errors=True)
    eos_config({"thresholds": {"warning": 95}})
    with pytest.raises(CommandExecutionError, match="strictly increasing"):
        eos_storage.analyze()
    assert not os.path.exists(history_dir(minion_opts))


def test_thresholds_names_sources(eos_config, eos_storage):
    eos_config({"scale": "small", "thresholds": {"mounts": {"/v*": {"critical": 97}}}})
    result = eos_storage.thresholds("/var")
    assert result["scale"] == "small"
    assert result["levels"]["warning"] == {"percent": 65.0, "source": "profile:small"}
    assert result["levels"]["critical"] == {
        "percent": 97.0,
        "source": "eos:thresholds:mounts:/v*:critical (minion config)",
    }


def test_top_rejects_negative_n(eos_storage):
    with pytest.raises(SaltInvocationError, match="n"):
        eos_storage.top("/", n=-1)


@pytest.mark.root
def test_filling_a_real_filesystem_crosses_each_level_in_order(eos_storage):
    crossed = []
    with loop_ext4(size_mib=64) as mount_point:
        for percent in (10, 62, 72, 77, 82, 87, 93):
            fill_to(mount_point, percent)
            report = eos_storage.analyze(mount=str(mount_point))[str(mount_point)]
            assert abs(report["usage_percent"] - psutil.disk_usage(mount_point).percent) <= 1
            crossed.append(report["level"])
    assert crossed == list(thresholds.LEVELS)
