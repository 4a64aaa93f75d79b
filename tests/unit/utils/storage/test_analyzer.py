"""The analyzer end to end on the root mount, with statvfs figures we control."""

import re
from types import SimpleNamespace

import pytest

from saltext.eos.utils import config
from saltext.eos.utils.storage import analyzer
from saltext.eos.utils.storage import thresholds
from tests.support import layers as support_layers

BLOCK = 4096
BLOCKS = 1_000_000  # ~3.8 GiB


def layers(**eos):
    return support_layers.minion(eos)


def statvfs_at(used_blocks):
    def statvfs(path):
        return SimpleNamespace(
            f_blocks=BLOCKS,
            f_bfree=BLOCKS - used_blocks,
            f_bavail=BLOCKS - used_blocks,
            f_files=1000,
            f_ffree=900,
            f_frsize=BLOCK,
            f_flag=0,
        )

    return statvfs


def test_growth_and_time_to_full_appear_once_history_is_long_enough(tmp_path):
    conf = layers(analyzer={"history_min_interval": 0})
    per_minute = 1000  # blocks
    reports = []
    for minute in range(0, 40, 5):
        used = 500_000 + per_minute * minute
        reports.append(
            analyzer.analyze(
                conf,
                str(tmp_path),
                mount="/",
                now=1_000_000 + minute * 60,
                statvfs=statvfs_at(used),
            )["/"]
        )
    assert reports[0]["growth_bytes_per_day"] is None
    assert reports[0]["time_to_full_seconds"] is None
    last = reports[-1]
    assert last["growth_bytes_per_day"] == pytest.approx(per_minute * BLOCK * 1440, rel=1e-6)
    free_bytes = (BLOCKS - (500_000 + per_minute * 35)) * BLOCK
    assert last["time_to_full_seconds"] == pytest.approx(free_bytes / (per_minute * BLOCK / 60))


def test_level_follows_usage_and_inodes(tmp_path):
    report = analyzer.analyze(layers(), str(tmp_path), mount="/", statvfs=statvfs_at(780_000))["/"]
    assert report["usage_percent"] == 78.0
    assert report["space_level"] == "cleanup"
    assert report["inode_level"] == "none"
    assert report["level"] == "cleanup"
    assert report["actions"] == ["monitor", "compress", "cleanup"]


def test_inodes_can_be_the_worse_level(tmp_path):
    def statvfs(path):
        return SimpleNamespace(
            f_blocks=100, f_bfree=90, f_bavail=90, f_files=100, f_ffree=13, f_frsize=BLOCK, f_flag=0
        )

    report = analyzer.analyze(layers(), str(tmp_path), mount="/", statvfs=statvfs)["/"]
    assert report["space_level"] == "none"
    assert report["level"] == report["inode_level"] == "emergency"


def test_report_carries_the_thresholds_it_was_judged_by(tmp_path):
    conf = support_layers.minion(
        {"scale": "small", "roles": ["data"], "thresholds": {"mounts": {"/": {"warning": 55}}}},
        pillar={"thresholds": {"roles": {"data": {"critical": 93}}}},
    )

    report = analyzer.analyze(conf, str(tmp_path), mount="/", statvfs=statvfs_at(560_000))["/"]

    assert report["thresholds"] == {
        **thresholds.profile("small"),
        "warning": 55.0,
        "critical": 93.0,
    }
    assert list(report["thresholds"]) == list(thresholds.THRESHOLD_LEVELS)
    assert report["level"] == "warning"


def test_record_false_writes_nothing(tmp_path):
    analyzer.analyze(layers(), str(tmp_path), mount="/", record=False)
    assert not (tmp_path / "eos").exists()


@pytest.mark.parametrize(
    ("analyzer_conf", "message"),
    [
        ({"mount_timeout": "soon"}, "eos:analyzer:mount_timeout: 'soon' is not a number"),
        ({"mount_timeout": 0}, "eos:analyzer:mount_timeout: 0 must be >= 1"),
        ({"include_tmpfs": "yes"}, "eos:analyzer:include_tmpfs: 'yes' is not true/false"),
        ({"exclude": "/snap"}, "eos:analyzer:exclude: '/snap' is not a list"),
    ],
)
def test_bad_settings_are_errors_and_write_nothing(tmp_path, analyzer_conf, message):
    with pytest.raises(config.InvalidConfig, match=message):
        analyzer.analyze(layers(analyzer=analyzer_conf), str(tmp_path))
    assert not (tmp_path / "eos").exists()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("history_max_samples", 5000, "eos:analyzer:history_max_samples: 5000 must be <= 811"),
        ("history_max_age", 10**9, "eos:analyzer:history_max_age: 1000000000 must be <= 7776000"),
    ],
)
def test_history_settings_beyond_the_file_bound_are_refused(key, value, message):
    layers = config.Layers([("pillar", {"analyzer": {key: value}})])
    with pytest.raises(config.InvalidConfig, match=re.escape(message)):
        analyzer.settings(layers)
