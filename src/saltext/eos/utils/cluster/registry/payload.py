"""Registration payloads: the signature, the order of arrival and every field's bounds."""

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from saltext.eos.utils import config
from saltext.eos.utils.cluster import nodeid

from .refusals import ClockSkew
from .refusals import InvalidNodeId
from .refusals import InvalidPayload

# salt.crypt.PKCS1v15_SHA224: what Salt signs its own messages with (and FIPS allows).
SIGNATURE_ALGORITHM = "PKCS1v15-SHA224"
MAX_PAYLOAD_BYTES = 64 * 1024
# How far ahead of the master's clock a registration's sent_at_ms may be (master config
# eos:registration:max_clock_skew_seconds): clocks differ a little, and the event takes time.
DEFAULT_MAX_CLOCK_SKEW = 300
MAX_ID_LENGTH = nodeid.MAX_LENGTH  # also the cap of host names and addresses (DNS's)
MAX_NAME_LENGTH = 128
MAX_TEXT_LENGTH = 2048
MAX_PATH_LENGTH = 1024
MAX_DISKS = 256
MAX_INTERFACES = 64
MAX_MOUNTS_PER_DISK = 64
MAX_LABELS = 64
MAX_CHECKS = 32
STORAGE_TYPES = ("nvme", "ssd", "hdd")
# The OpenAPI document carries this pattern; check with fullmatch, never match (with match,
# "$" also accepts a trailing newline).
ROLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

# Disks are sold in decimal gigabytes, memory in binary ones: a "500 GB" disk must meet a
# 500 GB minimum, and so must a "16 GB" machine whose kernel reports a little under 16 GiB.
DISK_GB = 1000**3
MEMORY_GB = 1024**3


def max_clock_skew(layers):
    """Seconds a registration may be sent ahead of the master's clock (default 300)."""
    key = config.key_name("registration", "max_clock_skew_seconds")
    value = layers.get("registration", "max_clock_skew_seconds", default=DEFAULT_MAX_CLOCK_SKEW)
    return config.number(value, key, minimum=0)


@dataclass(frozen=True)
class Registration:
    """A validated registration: what the node says about itself."""

    resources: dict
    health: dict
    preferred_role: str | None
    sent_at_ms: int
    claimed_id: str | None = None  # an ``id`` inside the payload; never used for identity


def check_node_id(node_id):
    """
    ``node_id`` if it follows the node id rule (``saltext.eos.utils.cluster.nodeid``); InvalidNodeId
    naming the id and the offending character otherwise.
    """
    reason = nodeid.problem(node_id)
    if reason is not None:
        raise InvalidNodeId(reason)
    return node_id


def signing_message(node_id, payload):
    """
    The exact bytes a node signs: its id and the payload without ``signature`` and ``id``.

    Canonical JSON (sorted keys, no spaces), so the master rebuilds the same bytes from the
    payload it receives, after the event bus and the reactor have re-encoded it.
    """
    content = {k: v for k, v in payload.items() if k not in ("signature", "id")}
    return json.dumps(
        {"node": node_id, "registration": content},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode()


def without_job_metadata(payload):
    """
    ``payload`` without the ``__pub_*`` keys Salt adds to ``event.send``'s data when it is
    called with keyword arguments from the command line: the job's, not the node's, words.
    """
    return {key: value for key, value in payload.items() if not str(key).startswith("__pub_")}


def encode_signature(signature):
    return base64.b64encode(signature).decode("ascii")


def decode_signature(text):
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as err:
        raise InvalidPayload(f"payload:signature: not base64 ({err})") from err


def check_registration(node_id, payload, verify):
    """
    The Registration that ``node_id`` (the authenticated sender) sent in ``payload``.

    ``verify(node_id, message, signature) -> bool`` checks the signature with the node's
    accepted Salt key. Raises InvalidPayload (with the reason) when the payload is too large,
    malformed or not signed by ``node_id``.
    """
    check_node_id(node_id)
    _check_size(payload)
    if not isinstance(payload, Mapping):
        raise InvalidPayload(f"payload: {_short(payload)} is not a mapping")
    payload = without_job_metadata(payload)
    _only_fields(payload, "payload", PAYLOAD_FIELDS)
    claimed = payload.get("id")
    signature = _required(payload, "payload", "signature")
    if not isinstance(signature, str) or len(signature) > 4096:
        raise InvalidPayload("payload:signature: not a signature")
    registration = Registration(
        resources=_resources(_required(payload, "payload", "resources"), "payload:resources"),
        health=_health(_required(payload, "payload", "health"), "payload:health"),
        preferred_role=_role_name(payload.get("preferred_role"), "payload:preferred_role"),
        sent_at_ms=_integer(
            _required(payload, "payload", "sent_at_ms"), "payload:sent_at_ms", 0, 2**53
        ),
        claimed_id=claimed if isinstance(claimed, str) else None,
    )
    if not verify(node_id, signing_message(node_id, payload), decode_signature(signature)):
        raise InvalidPayload(
            f"payload:signature: not signed by {node_id}'s accepted Salt key "
            "(a registration must come from the node it describes)"
        )
    return registration


#
# Registrations may arrive out of order, so each carries the node's sent_at_ms and an older one
# never overwrites a newer one. That trusts the node's clock, which is bounded by the master's:
# a registration sent more than max_skew seconds ahead of the master's clock is refused, and a
# recorded time that is itself beyond that bound (stored before the bound existed, or before
# the master's clock was set back) no longer orders anything. So a node is never locked out:
# at worst, a node whose clock was set back waits until its clock passes the last recorded
# time, at most max_skew seconds.


def check_sent_at(node_id, sent_at_ms, now, max_skew):
    """ClockSkew when ``sent_at_ms`` lies over ``max_skew`` seconds after ``now`` (seconds)."""
    ahead = sent_at_ms / 1000 - now
    if ahead > max_skew:
        raise ClockSkew(
            f"payload:sent_at_ms: sent {ahead:.0f} s ahead of the master's clock, over "
            f"{config.key_name('registration', 'max_clock_skew_seconds')} ({max_skew:g} s): "
            f"set {node_id}'s clock right (NTP) and register again"
        )


def supersedes(sent_at_ms, recorded_ms, now, max_skew):
    """
    Whether a registration sent at ``sent_at_ms`` replaces the one recorded as sent at
    ``recorded_ms`` (None: none yet): when it is newer, or when the recorded time lies beyond
    the skew bound of ``now``.
    """
    if recorded_ms is None:
        return True
    if recorded_ms / 1000 - now > max_skew:
        return True
    return sent_at_ms > recorded_ms


PAYLOAD_FIELDS = ("resources", "health", "preferred_role", "sent_at_ms", "signature", "id")
RESOURCE_FIELDS = ("cpu_cores", "memory_bytes", "disks", "network", "failure_domain", "labels",
                   "hostname")  # fmt: skip
DISK_FIELDS = ("name", "size_bytes", "free_bytes", "storage_type", "rotational", "mounts")
NETWORK_FIELDS = ("interfaces", "link_speed_mbps")
INTERFACE_FIELDS = ("name", "up", "speed_mbps")
DOMAIN_FIELDS = ("datacenter", "rack", "host")
HEALTH_FIELDS = ("passed", "checks")
CHECK_FIELDS = ("name", "critical", "passed", "detail")


def _check_size(payload):
    try:
        size = len(json.dumps(payload, default=str))
    except (TypeError, ValueError) as err:
        raise InvalidPayload(f"payload: cannot be measured ({err})") from err
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidPayload(f"payload: {size} bytes, over the {MAX_PAYLOAD_BYTES} byte cap")


def _resources(value, where):
    _mapping(value, where)
    _only_fields(value, where, RESOURCE_FIELDS)
    return {
        "cpu_cores": _integer(
            _required(value, where, "cpu_cores"), f"{where}:cpu_cores", 1, 100_000
        ),
        "memory_bytes": _integer(
            _required(value, where, "memory_bytes"), f"{where}:memory_bytes", 0, 2**60
        ),
        "disks": _items(value.get("disks", []), f"{where}:disks", MAX_DISKS, _disk),
        "network": _network(value.get("network", {}), f"{where}:network"),
        "failure_domain": _domain(value.get("failure_domain", {}), f"{where}:failure_domain"),
        "labels": _labels(value.get("labels", {}), f"{where}:labels"),
        "hostname": _text(value.get("hostname"), f"{where}:hostname", MAX_ID_LENGTH),
    }


def _disk(value, where):
    _mapping(value, where)
    _only_fields(value, where, DISK_FIELDS)
    storage_type = value.get("storage_type")
    if storage_type is not None and storage_type not in STORAGE_TYPES:
        raise InvalidPayload(
            f"{where}:storage_type: {_short(storage_type)} is not one of {', '.join(STORAGE_TYPES)}"
        )
    rotational = value.get("rotational")
    if rotational is not None and not isinstance(rotational, bool):
        raise InvalidPayload(f"{where}:rotational: {_short(rotational)} is not true or false")
    free = value.get("free_bytes")
    return {
        "name": _name(_required(value, where, "name"), f"{where}:name"),
        "size_bytes": _integer(
            _required(value, where, "size_bytes"), f"{where}:size_bytes", 0, 2**62
        ),
        "free_bytes": None if free is None else _integer(free, f"{where}:free_bytes", 0, 2**62),
        "storage_type": storage_type,
        "rotational": rotational,
        "mounts": _items(
            value.get("mounts", []),
            f"{where}:mounts",
            MAX_MOUNTS_PER_DISK,
            lambda item, at: _name(item, at, MAX_PATH_LENGTH),
        ),
    }


def _network(value, where):
    _mapping(value, where)
    _only_fields(value, where, NETWORK_FIELDS)
    speed = value.get("link_speed_mbps")
    return {
        "interfaces": _items(
            value.get("interfaces", []), f"{where}:interfaces", MAX_INTERFACES, _interface
        ),
        "link_speed_mbps": None
        if speed is None
        else _integer(speed, f"{where}:link_speed_mbps", 0, 10**7),
    }


def _interface(value, where):
    _mapping(value, where)
    _only_fields(value, where, INTERFACE_FIELDS)
    up = value.get("up", False)
    if not isinstance(up, bool):
        raise InvalidPayload(f"{where}:up: {_short(up)} is not true or false")
    speed = value.get("speed_mbps")
    return {
        "name": _name(_required(value, where, "name"), f"{where}:name"),
        "up": up,
        "speed_mbps": None if speed is None else _integer(speed, f"{where}:speed_mbps", 0, 10**7),
    }


def _domain(value, where):
    _mapping(value, where)
    _only_fields(value, where, DOMAIN_FIELDS)
    return {
        name: _text(value.get(name), f"{where}:{name}", MAX_NAME_LENGTH) for name in DOMAIN_FIELDS
    }


def _labels(value, where):
    _mapping(value, where)
    if len(value) > MAX_LABELS:
        raise InvalidPayload(f"{where}: {len(value)} labels, over the cap of {MAX_LABELS}")
    labels = {}
    for key, label in value.items():
        _name(key, f"{where}:{_short(key)}")
        labels[key] = _text(label, f"{where}:{key}", MAX_NAME_LENGTH)
    return labels


def _health(value, where):
    _mapping(value, where)
    _only_fields(value, where, HEALTH_FIELDS)
    checks = _items(_required(value, where, "checks"), f"{where}:checks", MAX_CHECKS, _check)
    # The master decides what passing means: any failed critical check fails the node.
    passed = all(check["passed"] for check in checks if check["critical"])
    return {"passed": passed, "checks": checks}


def _check(value, where):
    _mapping(value, where)
    _only_fields(value, where, CHECK_FIELDS)
    flags = {}
    for name in ("critical", "passed"):
        flag = _required(value, where, name)
        if not isinstance(flag, bool):
            raise InvalidPayload(f"{where}:{name}: {_short(flag)} is not true or false")
        flags[name] = flag
    return {
        "name": _name(_required(value, where, "name"), f"{where}:name"),
        **flags,
        "detail": _text(value.get("detail"), f"{where}:detail", MAX_TEXT_LENGTH) or "",
    }


def _role_name(value, where):
    if value is None:
        return None
    if not isinstance(value, str) or not ROLE_NAME.fullmatch(value):
        raise InvalidPayload(f"{where}: {_short(value)} is not a role name")
    return value


def _mapping(value, where):
    if not isinstance(value, Mapping):
        raise InvalidPayload(f"{where}: {_short(value)} is not a mapping")


def _only_fields(value, where, allowed):
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        raise InvalidPayload(f"{where}: unknown field {unknown[0]!r}")


def _required(value, where, name):
    if name not in value:
        raise InvalidPayload(f"{where}: missing {name}")
    return value[name]


def _integer(value, where, minimum, maximum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPayload(f"{where}: {_short(value)} is not a whole number")
    if not minimum <= value <= maximum:
        raise InvalidPayload(f"{where}: {value} is outside {minimum}..{maximum}")
    return value


def _name(value, where, limit=MAX_NAME_LENGTH):
    if not isinstance(value, str) or not value:
        raise InvalidPayload(f"{where}: {_short(value)} is not a non-empty string")
    if len(value) > limit:
        raise InvalidPayload(f"{where}: longer than {limit} characters")
    return value


def _text(value, where, limit):
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # rack 3 is a name too
    if not isinstance(value, str):
        raise InvalidPayload(f"{where}: {_short(value)} is not a string")
    if len(value) > limit:
        raise InvalidPayload(f"{where}: longer than {limit} characters")
    return value


def _items(value, where, limit, check):
    if not isinstance(value, list):
        raise InvalidPayload(f"{where}: {_short(value)} is not a list")
    if len(value) > limit:
        raise InvalidPayload(f"{where}: {len(value)} items, over the cap of {limit}")
    return [check(item, f"{where}[{index}]") for index, item in enumerate(value)]


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def check_preregistration(resources=None, preferred_role=None, labels=None, address=None):
    """
    The checked record fields an operator gives for a node before its minion exists:
    ``{resources, preferred_role, address}``; labels go into the resources. InvalidPayload
    names a bad field.
    """
    checked = {
        "resources": None if resources is None else _resources(resources, "resources"),
        "preferred_role": _role_name(preferred_role, "preferred_role"),
        "address": _text(address, "address", MAX_ID_LENGTH),
    }
    if labels is not None:
        # Known before the rest of the resources: they still belong with them.
        checked["resources"] = {**(checked["resources"] or {}), "labels": _labels(labels, "labels")}
    return checked
