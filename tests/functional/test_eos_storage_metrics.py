"""eos_storage.metrics through Salt's real loader, writing and parsing a real textfile."""

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from salt.exceptions import CommandExecutionError


def samples_of(path):
    """[(name, labels, value)] of a textfile, read with Prometheus' own parser."""
    text = path.read_text()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def test_metrics_writes_the_root_mount_like_psutil(eos_storage, tmp_path, minion_opts):
    target = tmp_path / "eos.prom"

    result = eos_storage.metrics(path=str(target))

    samples = samples_of(target)
    assert result == {"path": str(target), "metrics": len(samples), "bytes": target.stat().st_size}
    (usage,) = [
        value
        for name, labels, value in samples
        if name == "eos_storage_usage_ratio" and labels["mount"] == "/"
    ]
    assert abs(usage - psutil.disk_usage("/").percent / 100) <= 0.01
    assert {labels["minion"] for _, labels, _ in samples} == {minion_opts["id"]}
    assert ("eos_storage_up", 1.0) in {(name, value) for name, labels, value in samples}


def test_metrics_replaces_the_previous_file(eos_storage, tmp_path):
    target = tmp_path / "eos.prom"
    target.write_text("stale 1\n")

    eos_storage.metrics(path=str(target))

    assert "stale" not in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eos.prom"]


def test_a_missing_directory_is_an_error_naming_the_path(eos_storage, tmp_path):
    target = tmp_path / "no" / "such" / "eos.prom"

    with pytest.raises(CommandExecutionError, match=str(target)):
        eos_storage.metrics(path=str(target))

    assert not (tmp_path / "no").exists()


def test_the_path_comes_from_configuration(eos_config, eos_storage, tmp_path):
    target = tmp_path / "configured.prom"
    eos_config({"metrics": {"textfile": str(target)}})

    assert eos_storage.metrics()["path"] == str(target)
    assert target.is_file()


def test_an_invalid_configured_path_is_an_error_naming_the_key(eos_config, eos_storage):
    eos_config({"metrics": {"textfile": 42}})

    with pytest.raises(CommandExecutionError, match="eos:metrics:textfile: 42"):
        eos_storage.metrics()
