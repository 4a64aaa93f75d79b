import os
import stat

import pytest
from prometheus_client.parser import text_string_to_metric_families

from saltext.eos.utils.storage import metrics
from saltext.eos.utils.storage import thresholds

GIB = 1024**3


def mount_report(**overrides):
    report = {
        "device": "/dev/vda1",
        "fstype": "ext4",
        "total_bytes": 100 * GIB,
        "used_bytes": 62 * GIB,
        "free_bytes": 38 * GIB,
        "usage_percent": 62.43,
        "inodes_total": 1000,
        "inodes_used": 125,
        "inode_percent": 12.5,
        "read_only": False,
        "level": "warning",
        "growth_bytes_per_day": 86400.0 * 2048,
        "growth_method": "theil-sen",
        "time_to_full_seconds": 19922944.0,
        "thresholds": dict(
            zip(thresholds.THRESHOLD_LEVELS, (60.0, 70.0, 75.0, 80.0, 85.0, 90.0), strict=True)
        ),
    }
    report.update(overrides)
    return report


def parse(text):
    """{metric name: {frozenset of label items: value}} via Prometheus' own parser."""
    parsed = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge"
        assert family.documentation
        for sample in family.samples:
            parsed.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return parsed


def labels(mount, device="/dev/vda1", fstype="ext4", **extra):
    return frozenset({"mount": mount, "device": device, "fstype": fstype, **extra}.items())


def test_every_metric_of_a_measured_mount():
    parsed = parse(metrics.render({"/": mount_report()}))
    root = labels("/")

    assert parsed["eos_storage_up"] == {root: 1}
    assert parsed["eos_storage_usage_ratio"] == {root: 0.6243}
    assert parsed["eos_storage_free_bytes"] == {root: 38 * GIB}
    assert parsed["eos_storage_inode_ratio"] == {root: 0.125}
    assert parsed["eos_storage_level"] == {root: thresholds.LEVELS.index("warning")}
    assert parsed["eos_storage_growth_bytes_per_second"] == {root: 2048}
    assert parsed["eos_storage_time_to_full_seconds"] == {root: 19922944}


def test_each_family_has_help_and_type_once():
    text = metrics.render({"/": mount_report(), "/var": mount_report()})

    for family in metrics.FAMILIES:
        assert text.count(f"# HELP {family.name} ") == 1
        assert text.count(f"# TYPE {family.name} gauge\n") == 1


def test_unknown_values_give_no_sample():
    report = mount_report(inode_percent=None, growth_bytes_per_day=None, time_to_full_seconds=None)

    parsed = parse(metrics.render({"/srv": report}))

    assert "eos_storage_inode_ratio" not in parsed
    assert "eos_storage_growth_bytes_per_second" not in parsed
    assert "eos_storage_time_to_full_seconds" not in parsed
    assert parsed["eos_storage_usage_ratio"] == {labels("/srv"): 0.6243}


def test_a_mount_that_failed_is_only_down():
    reports = {
        "/": mount_report(),
        "/mnt/nfs": {"device": "nas:/export", "fstype": "nfs4", "error": "statvfs timed out"},
    }

    parsed = parse(metrics.render(reports))

    nfs = labels("/mnt/nfs", device="nas:/export", fstype="nfs4")
    assert parsed["eos_storage_up"] == {labels("/"): 1, nfs: 0}
    for name, values in parsed.items():
        if name != "eos_storage_up":
            assert nfs not in values, name


@pytest.mark.parametrize(
    "mount", ['/mnt/say "cheese"', "/mnt/back\\slash", "/mnt/new\nline", '/mnt/\\"both\\"']
)
def test_label_values_are_escaped(mount):
    parsed = parse(metrics.render({mount: mount_report()}))

    assert parsed["eos_storage_up"] == {labels(mount): 1}


def test_minion_id_becomes_a_label():
    parsed = parse(metrics.render({"/": mount_report()}, minion_id="node-7"))

    assert parsed["eos_storage_up"] == {labels("/", minion="node-7"): 1}


def test_the_level_index_follows_the_level_order():
    reports = {f"/{level}": mount_report(level=level) for level in thresholds.LEVELS}

    parsed = parse(metrics.render(reports))

    assert parsed["eos_storage_level"] == {
        labels(f"/{level}"): rank for rank, level in enumerate(thresholds.LEVELS)
    }


def test_each_mount_carries_its_threshold_per_level():
    reports = {
        "/": mount_report(),
        "/var/lib/db": mount_report(
            thresholds=dict.fromkeys(thresholds.THRESHOLD_LEVELS, 50.0)
            | {"critical": 97.5, "warning": 62.43}
        ),
    }

    parsed = parse(metrics.render(reports, minion_id="node-7"))

    ratios = parsed["eos_storage_threshold_ratio"]
    assert len(ratios) == 2 * len(thresholds.THRESHOLD_LEVELS)
    root = dict(labels("/", minion="node-7"))
    db = dict(labels("/var/lib/db", minion="node-7"))
    assert ratios[frozenset({**root, "level": "warning"}.items())] == 0.6
    assert ratios[frozenset({**root, "level": "critical"}.items())] == 0.9
    assert ratios[frozenset({**db, "level": "critical"}.items())] == 0.975
    # At its threshold, the usage ratio equals the threshold ratio: the same rounding.
    assert (
        ratios[frozenset({**db, "level": "warning"}.items())]
        == (parsed["eos_storage_usage_ratio"][frozenset(db.items())])
    )


def test_a_failed_mount_has_no_thresholds():
    failed = {"device": "nas:/export", "fstype": "nfs4", "error": "timed out", "thresholds": {}}

    parsed = parse(metrics.render({"/mnt/nfs": failed}))

    assert "eos_storage_threshold_ratio" not in parsed


def test_the_run_timestamp_is_one_sample_per_file():
    parsed = parse(metrics.render({"/": mount_report(), "/var": mount_report()}, now=1234.5))

    assert parsed["eos_storage_last_run_timestamp_seconds"] == {frozenset(): 1234.5}


def test_the_run_timestamp_names_the_minion():
    parsed = parse(metrics.render({}, minion_id="node-7", now=1700000000))

    assert parsed["eos_storage_last_run_timestamp_seconds"] == {
        frozenset({"minion": "node-7"}.items()): 1700000000
    }


def test_the_run_timestamp_defaults_to_now(monkeypatch):
    monkeypatch.setattr(metrics.time, "time", lambda: 42.0)

    parsed = parse(metrics.render({}))

    assert parsed["eos_storage_last_run_timestamp_seconds"] == {frozenset(): 42.0}


def test_no_reports_still_document_every_metric():
    assert {family.name for family in text_string_to_metric_families(metrics.render({}))} == {
        family.name for family in metrics.FAMILIES
    }


def test_write_atomically_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "eos.prom"
    target.write_text("old\n")
    target.chmod(0o600)

    metrics.write_atomically(str(target), "new\n")

    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["eos.prom"]


def test_write_atomically_never_creates_a_directory(tmp_path):
    target = tmp_path / "missing" / "eos.prom"

    with pytest.raises(metrics.MissingDirectory, match="missing"):
        metrics.write_atomically(str(target), "text\n")

    assert os.listdir(tmp_path) == []


def test_a_failed_replace_removes_the_temporary(tmp_path):
    (tmp_path / "eos.prom").mkdir()

    with pytest.raises(IsADirectoryError):
        metrics.write_atomically(str(tmp_path / "eos.prom"), "text\n")

    assert os.listdir(tmp_path) == ["eos.prom"]
