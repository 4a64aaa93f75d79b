import pytest

from saltext.eos.utils import errors
from saltext.eos.utils.observe import alertmanager
from saltext.eos.utils.observe import rules
from saltext.eos.utils.storage import thresholds
from tests.unit.utils.observe.conftest import run
from tests.unit.utils.observe.conftest import write_yaml

API = "https://master.example:8090"


def test_the_default_route_groups_by_alert_node_and_mount():
    route = alertmanager.alertmanager_config(API)["route"]

    assert route == {
        "receiver": "eos-api",
        "group_by": ["alertname", "node", "mount"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "4h",
    }


def test_the_timings_are_settings():
    route = alertmanager.alertmanager_config(
        API, settings={"group_wait": 10, "group_interval": 60, "repeat_interval": 3600}
    )["route"]

    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "10s",
        "1m",
        "1h",
    )


def test_critical_inhibits_warning_on_the_same_node_and_mount():
    first = alertmanager.inhibit_rules()[0]

    assert first == {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": ["node", "mount"],
    }
    assert rules.SEVERITIES == ("warning", "critical")


def test_each_level_inhibits_the_levels_below_it():
    by_level = alertmanager.inhibit_rules()[1:]

    assert [rule["source_matchers"] for rule in by_level] == [
        [f'level="{level}"'] for level in thresholds.THRESHOLD_LEVELS[1:]
    ]
    assert by_level[0]["target_matchers"] == ['level=~"warning"']
    assert by_level[-1]["target_matchers"] == [
        'level=~"warning|compress|cleanup|degraded|emergency"'
    ]
    assert all(rule["equal"] == ["node", "mount"] for rule in by_level)


def test_the_receiver_posts_to_the_api_alerts_endpoint():
    (receiver,) = alertmanager.alertmanager_config(API)["receivers"]

    assert receiver == {
        "name": "eos-api",
        "webhook_configs": [
            {"url": "https://master.example:8090/api/v1/alerts", "send_resolved": True}
        ],
    }


def test_a_token_file_is_sent_as_a_bearer_token():
    (receiver,) = alertmanager.alertmanager_config(API, "/etc/eos/alerts.token")["receivers"]

    assert receiver["webhook_configs"][0]["http_config"] == {
        "authorization": {"type": "Bearer", "credentials_file": "/etc/eos/alerts.token"}
    }


@pytest.mark.parametrize(
    ("api_url", "url"),
    [
        ("http://127.0.0.1:8090", "http://127.0.0.1:8090/api/v1/alerts"),
        ("https://master.example:8090/", "https://master.example:8090/api/v1/alerts"),
        ("https://proxy.example/eos", "https://proxy.example/eos/api/v1/alerts"),
        ("https://master:8090/api/v1/alerts", "https://master:8090/api/v1/alerts"),
        ("http://[fd00::1]:8090", "http://[fd00::1]:8090/api/v1/alerts"),
    ],
)
def test_the_webhook_url_is_below_the_api_url(api_url, url):
    assert alertmanager.webhook_url(api_url) == url


@pytest.mark.parametrize(
    "api_url",
    ["master:8090", "ftp://master", "https://", "https://master:99999", "https://m/?a=1", None],
)
def test_a_bad_api_url_is_named(api_url):
    with pytest.raises(errors.InvalidInput, match=r"api_url: .* is not an http or https URL"):
        alertmanager.alertmanager_config(api_url)


def test_a_relative_token_file_is_refused():
    with pytest.raises(errors.InvalidInput, match="bearer_token_file: 'token' is not an absolute"):
        alertmanager.alertmanager_config(API, "token")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"group_wait": 0}, "eos:observe:alertmanager:group_wait: 0 must be >= 1"),
        ({"repeat": 60}, r"eos:observe:alertmanager: unknown option\(s\) repeat"),
    ],
)
def test_bad_settings_are_named(given, message):
    with pytest.raises(errors.InvalidConfig, match=message):
        alertmanager.alertmanager_config(API, settings=given)


BASIC = {"username": "alertmanager", "password_file": "/etc/eos/alerts.password"}


def test_basic_credentials_are_read_from_a_password_file():
    webhook = alertmanager.alertmanager_config(API, basic_auth=BASIC)["receivers"][0]
    assert webhook["webhook_configs"][0]["http_config"] == {"basic_auth": BASIC}


@pytest.mark.parametrize(
    ("basic_auth", "message"),
    [
        ({"username": "a"}, "basic_auth: .* is not a mapping of username and password_file"),
        ({**BASIC, "username": "a:b"}, "basic_auth:username: 'a:b' is not a user name"),
        ({**BASIC, "password_file": "pw"}, "basic_auth:password_file: 'pw' is not an absolute"),
    ],
)
def test_bad_basic_credentials_are_named(basic_auth, message):
    with pytest.raises(errors.InvalidInput, match=message):
        alertmanager.alertmanager_config(API, basic_auth=basic_auth)


def test_a_token_and_basic_credentials_together_are_refused():
    with pytest.raises(errors.InvalidInput, match="not both"):
        alertmanager.alertmanager_config(API, "/etc/eos/alerts.token", basic_auth=BASIC)


@pytest.mark.parametrize(
    "credentials",
    [{}, {"bearer_token_file": "/etc/eos/alerts.token"}, {"basic_auth": BASIC}],
)
def test_amtool_accepts_the_config(amtool, tmp_path, credentials):
    path = write_yaml(
        tmp_path / "alertmanager.yml", alertmanager.alertmanager_config(API, **credentials)
    )

    result = run(amtool, "check-config", str(path))

    assert "SUCCESS" in result.stdout
    assert f"{len(alertmanager.inhibit_rules())} inhibit rules" in result.stdout
