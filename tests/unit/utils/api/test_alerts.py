"""POST /api/v1/alerts: Alertmanager's webhook payload checked, authorised and fired as events."""

import base64
import copy

import pytest

from saltext.eos.utils import api
from saltext.eos.utils.api import alerts

from .test_api import ADMIN_TOKEN
from .test_api import READER_TOKEN
from .test_api import FakeBackend
from .test_api import data_of
from .test_api import error_of
from .test_api import send

# A payload as Alertmanager 0.25 posts it (captured from one, times shortened).
PAYLOAD = {
    "receiver": "eos",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "EosStorageCritical",
                "level": "critical",
                "mount": "/var",
                "node": "web-3",
                "severity": "critical",
            },
            "annotations": {"summary": "/var on web-3 is 93% full"},
            "startsAt": "2026-12-04T01:33:35.520285123Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=eos",
            "fingerprint": "4d2a0c6b1f3e5a79",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "EosStorageWarning", "mount": "/srv", "node": "web-4"},
            "annotations": {},
            "startsAt": "2026-12-04T01:20:00Z",
            "endsAt": "2026-12-04T01:30:00+00:00",
            "generatorURL": "",
            "fingerprint": "a1",
        },
    ],
    "groupLabels": {"alertname": "EosStorageCritical"},
    "commonLabels": {"node": "web-3"},
    "commonAnnotations": {},
    "externalURL": "http://127.0.0.1:9093",
    "version": "4",
    "groupKey": '{}:{alertname="EosStorageCritical"}',
    "truncatedAlerts": 0,
}


@pytest.fixture
def backend():
    return FakeBackend()


@pytest.fixture
def service(backend):
    return api.Api(backend, max_body_bytes=64 * 1024, document={}, webhook_eauth="pam")


def payload(**changes):
    body = copy.deepcopy(PAYLOAD)
    body.update(changes)
    return body


def alert(index=0, **changes):
    body = copy.deepcopy(PAYLOAD)
    body["alerts"][index].update(changes)
    return body


def basic(username, password):
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"authorization": f"Basic {encoded}"}


def test_each_alert_becomes_one_event_named_by_its_status_and_name(service, backend):
    fired = data_of(send(service, "POST", "/alerts", PAYLOAD))["fired"]
    assert fired == [
        "eos/alert/firing/EosStorageCritical",
        "eos/alert/resolved/EosStorageWarning",
    ]
    assert [tag for tag, _ in backend.fired] == fired
    _, data = backend.fired[0]
    assert data["labels"] == PAYLOAD["alerts"][0]["labels"]
    assert data["annotations"] == {"summary": "/var on web-3 is 93% full"}
    assert data["status"] == "firing"
    assert data["alertname"] == "EosStorageCritical"
    assert data["starts_at"] == "2026-12-04T01:33:35.520285123Z"
    assert data["fingerprint"] == "4d2a0c6b1f3e5a79"
    assert data["receiver"] == "eos"
    assert data["external_url"] == "http://127.0.0.1:9093"
    assert data["sent_by"] == "admin"
    assert backend.calls == []  # fired on the bus, no runner job


def test_a_minimal_payload_is_enough(service, backend):
    body = {
        "version": "4",
        "status": "firing",
        "alerts": [{"status": "firing", "labels": {"alertname": "eos:forecast_critical"}}],
    }
    assert data_of(send(service, "POST", "/alerts", body))["fired"] == [
        "eos/alert/firing/eos:forecast_critical"
    ]
    assert backend.fired[0][1]["annotations"] == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (payload(version="3"), "version"),
        (payload(status="pending"), "status"),
        (payload(alerts=[]), "alerts"),
        (payload(alerts={"a": 1}), "alerts"),
        (payload(alerts=["firing"]), "alerts[0]"),
        (payload(alerts=[{"status": "firing", "labels": {}}] * 1001), "alerts"),
        (payload(truncatedAlerts=-1), "truncatedAlerts"),
        (payload(commonLabels=[]), "commonLabels"),
        (payload(extra=1), "extra"),
    ],
)
def test_a_payload_that_is_not_a_webhook_is_refused_naming_the_field(service, backend, body, field):
    error = error_of(send(service, "POST", "/alerts", body))
    assert error["field"] == field, error
    assert error["message"].startswith(f"{field}: "), error
    assert backend.fired == []


BAD_ALERTS = [
    ({"status": "ok"}, "alerts[0].status"),
    ({"labels": {"node": "web-4"}}, "alerts[0].labels.alertname"),
    ({"labels": {"alertname": "disk/full"}}, "alerts[0].labels.alertname"),
    ({"labels": {"alertname": "Disk full"}}, "alerts[0].labels.alertname"),
    ({"labels": {"alertname": "9lives"}}, "alerts[0].labels.alertname"),
    ({"labels": {"alertname": "A", "bad-name": "x"}}, "alerts[0].labels.bad-name"),
    ({"labels": {"alertname": "A", "a: b": "x"}}, "alerts[0].labels.a: b"),
    ({"labels": {"alertname": "A", "node": 3}}, "alerts[0].labels.node"),
    ({"annotations": {"summary": None}}, "alerts[0].annotations.summary"),
    ({"startsAt": "yesterday"}, "alerts[0].startsAt"),
    ({"endsAt": "2026-12-04T01:30:00Z\n"}, "alerts[0].endsAt"),
    ({"fingerprint": "XYZ"}, "alerts[0].fingerprint"),
    ({"silenced": True}, "alerts[0].silenced"),
]


@pytest.mark.parametrize(("change", "field"), BAD_ALERTS)
def test_a_payload_whose_only_alert_is_bad_is_refused_naming_the_field(
    service, backend, change, field
):
    body = alert(0, **change)
    body["alerts"] = body["alerts"][:1]
    error = error_of(send(service, "POST", "/alerts", body))
    assert error["field"] == field, error
    assert error["message"].startswith(f"{field}: "), error
    assert not error["message"].startswith(f"{field}: {field}"), error
    assert backend.fired == []


@pytest.mark.parametrize(("change", "field"), BAD_ALERTS)
def test_a_bad_alert_does_not_cost_the_others(service, backend, change, field, caplog):
    # Alertmanager drops a notification answered 4xx: the good alert must still arrive.
    reply = data_of(send(service, "POST", "/alerts", alert(0, **change)))
    assert reply["fired"] == ["eos/alert/resolved/EosStorageWarning"]
    assert [item["field"] for item in reply["refused"]] == [field]
    assert reply["refused"][0]["index"] == 0
    assert [tag for tag, _ in backend.fired] == reply["fired"]
    assert field in caplog.text  # the master's log says what was refused


@pytest.mark.parametrize("missing", ["version", "status", "alerts"])
def test_required_fields(service, backend, missing):
    body = payload()
    del body[missing]
    error = error_of(send(service, "POST", "/alerts", body))
    assert (error["field"], error["message"]) == (missing, f"{missing}: is required")


def test_an_oversized_payload_is_413_and_fires_nothing(backend):
    small = api.Api(backend, max_body_bytes=2048, document={})
    big = alert(0, annotations={"description": "x" * 4096})
    assert send(small, "POST", "/alerts", big).status == 413
    assert backend.fired == []


def test_no_credentials_is_401(service, backend):
    response = send(service, "POST", "/alerts", PAYLOAD, token=None)
    assert response.status == 401
    assert backend.fired == []


def test_a_caller_without_event_send_is_403_and_nothing_is_fired(service, backend):
    response = send(service, "POST", "/alerts", PAYLOAD, token=READER_TOKEN)
    assert response.status == 403
    assert "@runner event.send" in error_of(response)["message"]
    assert backend.fired == []


def test_a_bearer_token_is_accepted(service, backend):
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    assert send(service, "POST", "/alerts", PAYLOAD, token=None, headers=headers).status == 200


def test_basic_credentials_are_checked_by_the_webhook_eauth(service, backend):
    headers = basic("alertmanager", "secret")
    response = send(service, "POST", "/alerts", PAYLOAD, token=None, headers=headers)
    assert response.status == 200, response
    assert backend.eauth_logins == [("alertmanager", "pam")]
    assert {data["sent_by"] for _, data in backend.fired} == {"alertmanager"}


def test_wrong_basic_credentials_are_401_and_throttled_by_address_with_503(backend):
    throttle = api.LoginThrottle(2, 60)
    guarded = api.Api(backend, 64 * 1024, {}, throttle=throttle, webhook_eauth="pam")

    def post(headers, client="192.0.2.1"):
        return send(guarded, "POST", "/alerts", PAYLOAD, token=None, headers=headers, client=client)

    for _ in range(2):
        response = post(basic("alertmanager", "wrong"))
        assert response.status == 401
        assert "eauth pam" in error_of(response)["message"]
    # That client address is refused now, whoever it names, with 503 and Retry-After:
    # Alertmanager retries a 5xx answer and drops a 4xx one.
    refused = post(basic("admin", "secret"))
    assert refused.status == 503
    assert int(refused.headers["Retry-After"]) > 0
    assert backend.fired == []
    # Failures in the webhook user's name elsewhere do not silence its alerts.
    assert post(basic("alertmanager", "secret"), client="192.0.2.2").status == 200
    assert len(backend.eauth_logins) == 3


def test_basic_credentials_without_a_webhook_eauth_are_401(backend):
    tokens_only = api.Api(backend, 64 * 1024, {})
    headers = basic("alertmanager", "secret")
    response = send(tokens_only, "POST", "/alerts", PAYLOAD, token=None, headers=headers)
    assert response.status == 401
    assert "eos_api:webhook_eauth" in error_of(response)["message"]
    assert backend.eauth_logins == []


@pytest.mark.parametrize(
    "authorization",
    ["Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic " + "Og=="],
)
def test_malformed_basic_credentials_are_401(service, backend, authorization):
    headers = {"authorization": authorization}
    response = send(service, "POST", "/alerts", PAYLOAD, token=None, headers=headers)
    assert response.status == 401
    assert backend.eauth_logins == []


def test_basic_credentials_are_refused_on_the_other_endpoints(service, backend):
    headers = basic("admin", "secret")
    response = send(service, "GET", "/cluster/info", token=None, headers=headers)
    assert response.status == 401
    assert backend.eauth_logins == []


def test_a_master_that_is_down_is_503(service, backend):
    backend.master_up = False
    assert send(service, "POST", "/alerts", PAYLOAD).status == 503


def test_alert_events_carry_the_sender():
    checked = api.check_fields(PAYLOAD, alerts.WEBHOOK_FIELDS)
    events, refused = alerts.alert_events(checked, "alertmanager")
    assert refused == []
    assert [tag for tag, _ in events] == [
        alerts.ALERT_TAG.format(status="firing", alertname="EosStorageCritical"),
        alerts.ALERT_TAG.format(status="resolved", alertname="EosStorageWarning"),
    ]
    assert all(data["sent_by"] == "alertmanager" for _, data in events)
