"""The beacon loader module: validate() messages, Salt's hidden options, events."""

import time

import pytest

from saltext.eos.beacons import eos_storage as beacon_module
from saltext.eos.utils.storage import thresholds


@pytest.fixture
def configure_loader_modules(tmp_path):
    beacon_module._WATCHES.clear()
    return {beacon_module: {"__opts__": {"cachedir": str(tmp_path), "id": "node-1"}}}


def test_valid_configuration_with_salts_hidden_options():
    config = [{"interval": 60}, {"mounts": ["/"]}, {"_beacon_name": "eos_storage"}]
    assert beacon_module.validate(config) == (True, "Valid beacon configuration")
    # The caller's list is left as it was.
    assert {"_beacon_name": "eos_storage"} in config


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"hysteresis": -2}, "hysteresis: -2 must be >= 0"),
        ({"for": "two"}, "for: 'two' is not a number"),
        ({"thresholds": {"/": {"warning": 95}}}, "strictly increasing"),
        ({"mounts": "/"}, "mounts: '/' is not a list of globs"),
    ],
)
def test_invalid_configuration_names_the_key(config, message):
    valid, text = beacon_module.validate([config])
    assert not valid
    assert message in text


def test_not_a_list_is_refused():
    valid, text = beacon_module.validate({"mounts": ["/"]})
    assert not valid
    assert "must be a list" in text


def test_root_fires_once_then_stays_quiet():
    # Every level at 1 %: the root filesystem of any machine is at least at warning.
    limits = {
        "warning": 0.001,
        "compress": 99.91,
        "cleanup": 99.92,
        "degraded": 99.93,
        "emergency": 99.94,
        "critical": 99.95,
    }
    config = [{"mounts": ["/"]}, {"thresholds": {"/": limits}}, {"_beacon_name": "eos_storage"}]
    first = beacon_module.beacon(config)
    assert [(e["tag"], e["mount"], e["previous_level"]) for e in first] == [
        ("warning", "/", "none")
    ]
    assert beacon_module.beacon(config) == []


def test_textfile_option_keeps_the_metrics_file_fresh(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    textfile = tmp_path / "eos_storage.prom"
    config = [{"mounts": ["/"]}, {"textfile": str(textfile)}]
    beacon_module.beacon(config)
    families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
    (usage,) = families["eos_storage_usage_ratio"].samples
    assert usage.labels["mount"] == "/"
    assert 0 < usage.value < 1
    first = textfile.stat().st_mtime_ns
    time.sleep(0.01)
    beacon_module.beacon(config)
    assert textfile.stat().st_mtime_ns > first


def test_the_textfile_carries_the_beacons_thresholds_and_its_run_time(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    textfile = tmp_path / "eos_storage.prom"
    config = [
        {"mounts": ["/"]},
        {"thresholds": {"/": {"warning": 20}}},
        {"textfile": str(textfile)},
    ]
    before = time.time()
    beacon_module.beacon(config)

    families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
    limits = {
        sample.labels["level"]: sample.value
        for sample in families["eos_storage_threshold_ratio"].samples
        if sample.labels["mount"] == "/"
    }
    expected = {**thresholds.profile("single"), "warning": 20.0}
    assert limits == {level: expected[level] / 100 for level in thresholds.THRESHOLD_LEVELS}
    (last_run,) = families["eos_storage_last_run_timestamp_seconds"].samples
    assert last_run.labels == {"minion": "node-1"}
    assert before <= last_run.value <= time.time()
