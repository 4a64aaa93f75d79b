import json

import pytest

from saltext.eos.utils import errors
from saltext.eos.utils.observe import prometheus
from saltext.eos.utils.observe import rules
from saltext.eos.utils.observe import targets
from tests.unit.utils.observe.conftest import run
from tests.unit.utils.observe.conftest import write_yaml

TARGETS_FILE = "/etc/prometheus/file_sd/eos-nodes.json"
RULES_FILE = "/etc/prometheus/rules/eos.yml"


def test_the_nodes_are_scraped_from_the_targets_file():
    found = prometheus.prometheus_config(TARGETS_FILE, RULES_FILE)

    assert found["scrape_configs"] == [
        {"job_name": targets.JOB, "file_sd_configs": [{"files": [TARGETS_FILE]}]}
    ]
    assert found["rule_files"] == [RULES_FILE]
    assert found["alerting"] == {
        "alertmanagers": [{"static_configs": [{"targets": ["localhost:9093"]}]}]
    }


def test_short_intervals_by_default_and_configurable():
    assert prometheus.prometheus_config(TARGETS_FILE, RULES_FILE)["global"] == {
        "scrape_interval": "15s",
        "scrape_timeout": "10s",
        "evaluation_interval": "15s",
    }
    changed = prometheus.prometheus_config(
        TARGETS_FILE,
        [RULES_FILE, "/etc/prometheus/rules/site.yml"],
        {"scrape_interval": 30, "scrape_timeout": 30, "evaluation_interval": 60},
    )
    assert changed["global"] == {
        "scrape_interval": "30s",
        "scrape_timeout": "30s",
        "evaluation_interval": "1m",
    }
    assert changed["rule_files"] == [RULES_FILE, "/etc/prometheus/rules/site.yml"]


def test_alertmanagers_are_host_and_port():
    found = prometheus.prometheus_config(
        TARGETS_FILE, RULES_FILE, {"alertmanagers": ["observe-1", "[fd00::9]:19093"]}
    )

    assert found["alerting"]["alertmanagers"][0]["static_configs"] == [
        {"targets": ["observe-1:9093", "[fd00::9]:19093"]}
    ]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"scrape_timeout": 20}, r"scrape_timeout: 20 must be <= scrape_interval \(15\)"),
        ({"scrape_interval": 0}, r"eos:observe:prometheus:scrape_interval: 0 must be >= 1"),
        ({"alertmanagers": []}, r"alertmanagers: \[\] is not a list of host:port"),
        ({"alertmanagers": ["am 1"]}, r"alertmanagers\[0\]: 'am 1' is not a host or host:port"),
        ({"retention": 1}, r"eos:observe:prometheus: unknown option\(s\) retention"),
    ],
)
def test_bad_settings_are_named(given, message):
    with pytest.raises(errors.InvalidConfig, match=message):
        prometheus.prometheus_config(TARGETS_FILE, RULES_FILE, given)


@pytest.mark.parametrize(
    ("targets_file", "rules_files", "message"),
    [
        ("eos-nodes.json", RULES_FILE, "targets_file: 'eos-nodes.json' is not an absolute path"),
        (TARGETS_FILE, ["eos.yml"], r"rules_files\[0\]: 'eos.yml' is not an absolute path"),
    ],
)
def test_relative_paths_are_refused(targets_file, rules_files, message):
    with pytest.raises(errors.InvalidInput, match=message):
        prometheus.prometheus_config(targets_file, rules_files)


def test_promtool_accepts_the_config_with_its_rules_and_targets(promtool, tmp_path):
    rules_path = write_yaml(tmp_path / "eos.rules.yml", rules.rules_file())
    members = [
        {"id": "data-1", "status": "active", "roles": ["data"]},
        {"id": "observe-1", "status": "unreachable", "roles": ["observe", "core"]},
    ]
    found = targets.target_groups(members, {"data-1": "10.0.0.5", "observe-1": "[fd00::9]"})
    targets_path = tmp_path / "eos-nodes.json"
    targets_path.write_text(json.dumps(found.groups))
    config = prometheus.prometheus_config(str(targets_path), str(rules_path))
    config_path = write_yaml(tmp_path / "prometheus.yml", config)

    result = run(promtool, "check", "config", str(config_path))

    # promtool checks the rule files and the file_sd files a config names, too.
    assert f"{len(rules.rules_file()['groups'][0]['rules'])} rules found" in result.stdout


def test_promtool_refuses_a_bad_targets_file_so_the_check_is_real(promtool, tmp_path):
    targets_path = tmp_path / "eos-nodes.json"
    targets_path.write_text(json.dumps([{"targets": ["a:1"], "labels": {"0node": "x"}}]))
    rules_path = write_yaml(tmp_path / "eos.rules.yml", rules.rules_file())
    config_path = write_yaml(
        tmp_path / "prometheus.yml",
        prometheus.prometheus_config(str(targets_path), str(rules_path)),
    )

    with pytest.raises(AssertionError, match="not a valid label name"):
        run(promtool, "check", "config", str(config_path))
