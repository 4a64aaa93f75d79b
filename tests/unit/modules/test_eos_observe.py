"""The eos_observe execution module: the generators fed by the minion's config and pillar."""

import pytest
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.modules import eos_observe
from saltext.eos.utils.observe import rules as observe_rules


@pytest.fixture
def pillar():
    return {}


@pytest.fixture
def configure_loader_modules(pillar):
    return {eos_observe: {"__opts__": {"eos": {}}, "__pillar__": pillar}}


def alert_holds(generated, alert):
    found = [rule for rule in generated["groups"][0]["rules"] if rule["alert"] == alert]
    assert len(found) == 1, alert
    return found[0]["for"]


def test_rules_follow_the_pillar(pillar):
    pillar["eos"] = {"observe": {"rules": {"for": {"critical": 60}}}}
    generated = eos_observe.rules()
    assert alert_holds(generated, observe_rules.level_alert("critical")) == "1m"
    assert alert_holds(generated, observe_rules.level_alert("warning")) == "5m"


def test_a_bad_setting_fails_naming_the_key(pillar):
    pillar["eos"] = {"observe": {"rules": {"forever": 1}}}
    with pytest.raises(
        CommandExecutionError, match=r"eos:observe:rules: unknown option\(s\) forever"
    ):
        eos_observe.rules()


def test_targets_come_from_the_pillar(pillar):
    groups = [{"targets": ["10.0.0.5:9100"], "labels": {"node": "data-1", "roles": ",data,"}}]
    pillar["eos"] = {"observe_targets": {"groups": groups, "without_address": ["x"]}}
    assert eos_observe.targets() == {"groups": groups, "without_address": ["x"]}


def test_no_targets_in_pillar_is_an_empty_list():
    assert eos_observe.targets() == {"groups": [], "without_address": []}


def test_prometheus_config_reads_the_files_given(pillar):
    pillar["eos"] = {"observe": {"prometheus": {"scrape_interval": 5, "scrape_timeout": 5}}}
    generated = eos_observe.prometheus_config("/etc/eos/prometheus/t.json", "/etc/eos/r.yml")
    assert generated["rule_files"] == ["/etc/eos/r.yml"]
    assert generated["global"]["scrape_interval"] == "5s"
    sd = generated["scrape_configs"][0]["file_sd_configs"]
    assert sd == [{"files": ["/etc/eos/prometheus/t.json"]}]


def test_a_relative_path_is_refused():
    with pytest.raises(SaltInvocationError, match=r"targets_file: 't\.json' is not an absolute"):
        eos_observe.prometheus_config("t.json", ["/etc/eos/r.yml"])


def test_alertmanager_config_posts_to_the_api():
    generated = eos_observe.alertmanager_config(
        "https://master:8090",
        basic_auth={"username": "alertmanager", "password_file": "/etc/am-password"},
    )
    webhook = generated["receivers"][0]["webhook_configs"][0]
    assert webhook["url"] == "https://master:8090/api/v1/alerts"
    assert webhook["http_config"]["basic_auth"]["username"] == "alertmanager"
