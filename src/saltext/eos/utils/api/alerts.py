"""
Alertmanager's webhook payload (version 4), checked field by field, and the Salt events it
becomes: one ``eos/alert/<status>/<alertname>`` per alert, so a reactor can match a status
and an alert name in its tag.

Alertmanager retries a notification only on a 5xx answer; a 4xx one is dropped for good. So
a payload that is not a webhook at all is refused (400 naming the field), but one alert that
fails its checks does not cost the others: the good ones are fired, and the answer (and the
API's log) lists each refused one with the field at fault. Only when no alert passes is the
answer 400.
"""

import re
from collections.abc import Mapping

from .envelope import ApiError
from .fields import Field
from .fields import _field_error
from .fields import _name
from .fields import _short
from .fields import check_fields
from .fields import check_list
from .fields import check_text

ALERT_TAG = "eos/alert/{status}/{alertname}"
# The runner a caller's eauth must allow to have the alerts fired (Salt's event.send).
ALERT_RUNNER = "event.send"
WEBHOOK_VERSION = "4"
ALERT_STATUSES = ("firing", "resolved")
MAX_ALERTS = 1000
MAX_LABEL_VALUE = 4096
MAX_ANNOTATION = 16384
# Prometheus label names; an alert name becomes one segment of an event tag, so it has no "/"
# and no space (a rule name like "EosStorageCritical" or "eos:forecast_warning" fits).
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
ALERT_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:.-]{0,199}$")
# RFC 3339 as Alertmanager writes it (Go's time.Time: up to nine fractional digits).
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
FINGERPRINT = re.compile(r"^[0-9a-f]{1,64}$")


def check_version(value, field="version"):
    if value != WEBHOOK_VERSION:
        raise _field_error(
            field, f"{_short(value)}: only Alertmanager's webhook version {WEBHOOK_VERSION}"
        )
    return value


def check_alert_status(value, field="status"):
    if value not in ALERT_STATUSES:
        raise _field_error(field, f"{_short(value)} is not one of {', '.join(ALERT_STATUSES)}")
    return value


def check_label_set(value, field, max_value=MAX_LABEL_VALUE):
    """Prometheus labels (or annotations): names as Prometheus allows, values strings."""
    if not isinstance(value, Mapping):
        raise _field_error(field, f"{_short(value)} is not an object")
    for name, text in value.items():
        if not isinstance(name, str) or not LABEL_NAME.fullmatch(name):
            raise _field_error(f"{field}.{_name(name)}", "is not a Prometheus label name")
        check_text(text, f"{field}.{name}", max_length=max_value, allow_empty=True)
    return dict(value)


def check_annotations(value, field):
    return check_label_set(value, field, max_value=MAX_ANNOTATION)


def check_alert_labels(value, field):
    labels = check_label_set(value, field)
    if "alertname" not in labels:
        raise _field_error(f"{field}.alertname", "is required")
    if not ALERT_NAME.fullmatch(labels["alertname"]):
        raise _field_error(
            f"{field}.alertname",
            f"{_short(labels['alertname'])} cannot name an event: letters, digits, _ : . - "
            "and no leading digit",
        )
    return labels


def check_timestamp(value, field):
    check_text(value, field, max_length=64)
    if not TIMESTAMP.fullmatch(value):
        raise _field_error(field, f"{_short(value)} is not an RFC 3339 time")
    return value


def check_fingerprint(value, field):
    check_text(value, field, max_length=64)
    if not FINGERPRINT.fullmatch(value):
        raise _field_error(field, f"{_short(value)} is not a hexadecimal fingerprint")
    return value


def check_url(value, field):
    return check_text(value, field, max_length=2048, allow_empty=True)


def check_count(value, field):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _field_error(field, f"{_short(value)} is not a whole number >= 0")
    return value


ALERT_FIELDS = {
    "status": Field(check_alert_status, required=True),
    "labels": Field(check_alert_labels, required=True),
    "annotations": Field(check_annotations),
    "startsAt": Field(check_timestamp),
    "endsAt": Field(check_timestamp),
    "generatorURL": Field(check_url),
    "fingerprint": Field(check_fingerprint),
}


def check_alerts(value, field="alerts"):
    """The payload's alerts as given: a list of 1 to MAX_ALERTS objects, each checked later."""
    hint = " (set max_alerts in Alertmanager's webhook_config)"
    check_list(value, field, "alert", MAX_ALERTS, hint)
    for index, alert in enumerate(value):
        if not isinstance(alert, Mapping):
            raise _field_error(f"{field}[{index}]", f"{_short(alert)} is not an object")
    return value


def check_alert(alert, index):
    """One alert, checked; ApiError naming ``alerts[<index>].<field>``."""
    try:
        return check_fields(alert, ALERT_FIELDS)
    except ApiError as err:
        prefix = f"{err.field}: "
        message = err.message[len(prefix) :] if err.message.startswith(prefix) else err.message
        raise _field_error(f"alerts[{index}].{err.field}", message) from err


WEBHOOK_FIELDS = {
    "version": Field(check_version, required=True),
    "status": Field(check_alert_status, required=True),
    "alerts": Field(check_alerts, required=True),
    "receiver": Field(lambda value, field: check_text(value, field, allow_empty=True)),
    "groupKey": Field(lambda value, field: check_text(value, field, 4096, allow_empty=True)),
    "truncatedAlerts": Field(check_count),
    "groupLabels": Field(check_label_set),
    "commonLabels": Field(check_label_set),
    "commonAnnotations": Field(check_annotations),
    "externalURL": Field(check_url),
}


def alert_events(payload, sender):
    """
    ``(events, refused)`` for a checked ``payload``: ``events`` is ``[(tag, data)]``, one per
    alert that passes its checks, ``data`` holding the alert (status, labels, annotations,
    times, fingerprint), where it came from (receiver, groupKey, externalURL) and
    ``sent_by``, the Salt user who posted it; ``refused`` lists the others as
    ``{index, field, message}``. ApiError 400 (the first refusal) when every alert is refused.
    """
    common = {
        "receiver": payload.get("receiver"),
        "group_key": payload.get("groupKey"),
        "external_url": payload.get("externalURL"),
        "sent_by": sender,
    }
    events, refused, first_error = [], [], None
    for index, given in enumerate(payload["alerts"]):
        try:
            alert = check_alert(given, index)
        except ApiError as err:
            first_error = first_error or err
            refused.append({"index": index, "field": err.field, "message": err.message})
            continue
        tag = ALERT_TAG.format(status=alert["status"], alertname=alert["labels"]["alertname"])
        data = {
            "status": alert["status"],
            "alertname": alert["labels"]["alertname"],
            "labels": alert["labels"],
            "annotations": alert.get("annotations", {}),
            "starts_at": alert.get("startsAt"),
            "ends_at": alert.get("endsAt"),
            "fingerprint": alert.get("fingerprint"),
            "generator_url": alert.get("generatorURL"),
            **common,
        }
        events.append((tag, data))
    if not events:
        raise first_error
    return events, refused
