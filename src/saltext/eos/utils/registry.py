"""
The cluster registry: one record per node in Salt's cache, a small cluster summary, status
transitions with history, the acceptance policy and scale detection.

Storage
=======

Everything lives in the master's Salt cache (``salt.cache``), so whichever ``cache`` backend
the master uses holds it: ``localfs`` by default; ``redis``, ``etcd``, ``consul`` or
``mysql`` when several masters share one registry.

- bank ``eos/nodes``, one key per node id: the node record. Two nodes registering at once
  write two different keys and never overwrite each other.
- bank ``eos/cluster``, key ``summary``: ``{cluster_id, created_at, first_node, counts,
  node_count, scale, roles, assignment_version, updated_at}``. Reading one node's pillar
  costs the node's own record plus this summary, whatever the cluster size.
- bank ``eos/cluster``, key ``assignment``: the last role assignment stored by
  ``eos_roles.apply`` (``{version, assignments, stored_at}``).

Every change (a record and the summary counts together) happens under one lock (the runner
passes a ``FileLock`` shared by every process of the master), so the counts stay exact however
many registrations arrive at once. Masters sharing a remote cache do not share that lock: a
node's record is still only written by the master handling that node, but the summary counts
may then drift; ``Registry.rebuild_summary`` (``salt-run eos_cluster.info recount=True``)
recounts them from the records.

Statuses
========

``pending`` (known, waiting for acceptance), ``accepted`` (a member, not yet configured),
``active`` (configured and serving), ``failed`` (its configuration failed), ``rejected``.
``TRANSITIONS`` lists the allowed changes; every change is appended to the record's history
(the last ``HISTORY_LIMIT`` are kept) and reported to ``on_change`` (the runner fires
``eos/cluster/node/<id>/<status>``). Accepted and active nodes are the cluster's members: they
make ``node_count`` and so the scale.

Node ids follow the one rule of ``saltext.eos.utils.nodeid`` (``check_node_id``). A
registration sent more than ``eos:registration:max_clock_skew_seconds`` (default 300) ahead of
the master's clock is refused, and a recorded time beyond that bound orders nothing (see
"registration order" below), so a clock ahead never locks a node out.

Acceptance policy (master config ``eos:accept``)
================================================

.. code-block:: yaml

    eos:
      accept: manual              # default: salt-run eos_cluster.accept <id>
    # or
      accept: auto                # every node that asks
    # or
      accept:
        auto: true
        match: "G@os:Debian and G@eos_join:yes"   # Salt compound matcher, optional
        require_health: true      # default in this form: critical checks must pass

The first node of a new cluster is always accepted, so a single node can bootstrap itself.

Scale
=====

From the number of members: ``single`` (0 or 1), ``small`` (from 2), ``medium`` (from 4),
``distributed`` (from 7). Master config ``eos:scale_boundaries`` moves where each scale starts,
e.g. ``{medium: 5, distributed: 10}``. Each scale has a profile: the analyzer thresholds
(``thresholds.PROFILES``), the storage monitoring interval and how far cleanup may go on its own
(``SCALE_POLICIES``).
"""

import base64
import datetime
import fcntl
import itertools
import json
import logging
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field

from saltext.eos.utils import config
from saltext.eos.utils import nodeid
from saltext.eos.utils import thresholds

log = logging.getLogger(__name__)

NODES_BANK = "eos/nodes"
LOCK_FILE = "eos-registry.lock"  # in the master cachedir, beside (not in) the eos banks
CLUSTER_BANK = "eos/cluster"
SUMMARY_KEY = "summary"
ASSIGNMENT_KEY = "assignment"

STATUSES = ("pending", "accepted", "active", "failed", "rejected")
MEMBER_STATUSES = ("accepted", "active")
REMOVED = "removed"  # an event tag only: a removed node has no record
TRANSITIONS = {
    None: ("pending",),
    "pending": ("accepted", "rejected"),
    "accepted": ("active", "failed", "rejected"),
    "active": ("failed", "rejected"),
    # A failed node may be retried (accepted again) or brought back by hand.
    "failed": ("accepted", "active", "rejected"),
    "rejected": ("accepted",),
}
HISTORY_LIMIT = 50

SCALES = tuple(thresholds.PROFILES)
# The member count at which each scale starts; the first scale starts at 0.
SCALE_STARTS = {"small": 2, "medium": 4, "distributed": 7}
# What else changes with scale (the thresholds live in thresholds.PROFILES). A lone node has no
# peer to take over, so it is checked often and may recover space on its own up to emergency;
# large clusters move data instead of deleting it, and check less often to keep the master's
# event load flat as nodes are added.
SCALE_POLICIES = {
    "single": {"monitoring_interval": 60, "cleanup": {"automatic_up_to": "emergency"}},
    "small": {"monitoring_interval": 60, "cleanup": {"automatic_up_to": "emergency"}},
    "medium": {"monitoring_interval": 120, "cleanup": {"automatic_up_to": "degraded"}},
    "distributed": {"monitoring_interval": 300, "cleanup": {"automatic_up_to": "cleanup"}},
}

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

if set(SCALE_STARTS) != set(SCALES[1:]) or set(SCALE_POLICIES) != set(SCALES):
    raise RuntimeError("SCALE_STARTS and SCALE_POLICIES must cover thresholds.PROFILES")


class RegistryError(Exception):
    """Base of the registry's errors; the message says what and which node."""


class UnknownNode(RegistryError):
    """No record (and, where the caller checked, no Salt key) for this id."""


class InvalidNodeId(RegistryError):
    """A node id that cannot name a record."""


class AlreadyRegistered(RegistryError):
    """A pre-registration for an id the registry already holds."""


class InvalidTransition(RegistryError):
    """A status change that ``TRANSITIONS`` does not allow."""


class InvalidPayload(RegistryError):
    """A registration payload that fails validation; nothing was written."""


class ClockSkew(InvalidPayload):
    """A registration sent, by the node's clock, too far ahead of the master's; nothing written."""


class StaleJoin(RegistryError):
    """A join asked for with a token that is not the node's current acceptance's."""


class RegistryBusy(RegistryError):
    """The registry lock could not be taken in time."""


class InvalidPolicy(config.InvalidConfig):
    """``eos:accept`` is not a policy."""


class InvalidBoundaries(config.InvalidConfig):
    """``eos:scale_boundaries`` is not usable."""


def open_registry(opts, on_change=None, cache=None):
    """
    The registry of the master configured by ``opts``: its Salt cache (default
    ``salt.cache.factory(opts)``), the lock file in its cachedir, its
    ``eos:scale_boundaries`` and ``eos:registration:max_clock_skew_seconds``. InvalidConfig
    names a bad setting.
    """
    if cache is None:
        import salt.cache  # the master's ``cache`` setting decides the backend

        cache = salt.cache.factory(opts)
    layers = config.Layers.from_salt(opts)
    return Registry(
        cache,
        lock=FileLock(os.path.join(opts["cachedir"], LOCK_FILE)),
        on_change=on_change,
        boundaries=scale_boundaries(layers),
        max_clock_skew=max_clock_skew(layers),
    )


def max_clock_skew(layers):
    """Seconds a registration may be sent ahead of the master's clock (default 300)."""
    key = config.key_name("registration", "max_clock_skew_seconds")
    value = layers.get("registration", "max_clock_skew_seconds", default=DEFAULT_MAX_CLOCK_SKEW)
    return config.number(value, key, minimum=0)


# --- scale -------------------------------------------------------------------------------------


def scale_boundaries(layers):
    """{scale: first member count} from the defaults and ``eos:scale_boundaries``."""
    given = layers.get("scale_boundaries")
    if given is None:
        return dict(SCALE_STARTS)
    key = config.key_name("scale_boundaries")
    if not isinstance(given, Mapping):
        raise InvalidBoundaries(f"{key}: {given!r} is not a mapping of scale to node count")
    merged = dict(SCALE_STARTS)
    for scale, start in given.items():
        if scale not in SCALE_STARTS:
            raise InvalidBoundaries(
                f"{key}: unknown scale {scale!r}; expected one of {', '.join(SCALE_STARTS)} "
                f"({SCALES[0]} always starts at 0)"
            )
        merged[scale] = _boundary(start, config.key_name("scale_boundaries", scale))
    _check_boundaries_increase(merged)
    return merged


def _boundary(value, key):
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidBoundaries(f"{key}: {value!r} is not a whole number of nodes")
    if value < 2:
        raise InvalidBoundaries(f"{key}: {value!r} must be >= 2 (one node is always single)")
    return value


def _check_boundaries_increase(starts):
    ordered = [scale for scale in SCALES if scale in starts]
    for lower, higher in itertools.pairwise(ordered):
        if starts[higher] <= starts[lower]:
            raise InvalidBoundaries(
                f"{config.key_name('scale_boundaries')}: {higher} must start above {lower} "
                f"({higher}={starts[higher]}, {lower}={starts[lower]})"
            )


def scale_for(member_count, boundaries=None):
    """The scale of a cluster with ``member_count`` accepted and active nodes."""
    boundaries = SCALE_STARTS if boundaries is None else boundaries
    scale = SCALES[0]
    for name in SCALES[1:]:
        if member_count >= boundaries[name]:
            scale = name
    return scale


def scale_profile(scale):
    """{scale, thresholds: {level: percent}, monitoring_interval, cleanup} of one scale."""
    return {
        "scale": scale,
        "thresholds": thresholds.profile(scale),
        **_copy(SCALE_POLICIES[scale]),
    }


# --- acceptance policy -------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptancePolicy:
    """``auto``: accept without an operator; ``match`` and ``require_health`` narrow it."""

    auto: bool = False
    match: str | None = None
    require_health: bool = False

    def describe(self):
        if not self.auto:
            return "manual"
        parts = ["auto"]
        if self.require_health:
            parts.append("health passed")
        if self.match:
            parts.append(f"matches {self.match!r}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Decision:
    accept: bool
    reason: str


POLICY_FIELDS = ("auto", "match", "require_health")


def acceptance_policy(layers):
    """The checked AcceptancePolicy of ``eos:accept`` (default manual)."""
    value = layers.get("accept", default="manual")
    key = config.key_name("accept")
    if value == "manual":
        return AcceptancePolicy()
    if value == "auto":
        return AcceptancePolicy(auto=True)
    if not isinstance(value, Mapping):
        raise InvalidPolicy(f"{key}: {value!r} is not manual, auto or a mapping")
    unknown = sorted(str(name) for name in value if name not in POLICY_FIELDS)
    if unknown:
        raise InvalidPolicy(
            f"{key}: unknown field {unknown[0]!r}; expected {', '.join(POLICY_FIELDS)}"
        )
    auto = _policy_flag(value, "auto", default=False)
    require_health = _policy_flag(value, "require_health", default=True)
    match = value.get("match")
    if match is not None and (not isinstance(match, str) or not match.strip()):
        raise InvalidPolicy(f"{config.key_name('accept', 'match')}: {match!r} is not a target")
    return AcceptancePolicy(auto=auto, match=match, require_health=require_health)


def _policy_flag(value, name, default):
    flag = value.get(name, default)
    if not isinstance(flag, bool):
        raise InvalidPolicy(f"{config.key_name('accept', name)}: {flag!r} is not true or false")
    return flag


def decide(policy, record, first_node, matches):
    """
    Whether a pending ``record`` is accepted now, and why (or what it waits for).

    ``matches(node_id, expression)`` evaluates a compound target against the node's grains.
    """
    if first_node:
        return Decision(True, "first node of a new cluster")
    if not policy.auto:
        return Decision(False, "eos:accept is manual: waiting for eos_cluster.accept")
    if policy.require_health:
        health = record.get("health")
        if not health:
            return Decision(False, "waiting for its registration and health checks")
        if not health.get("passed"):
            return Decision(False, f"critical health checks failed: {_failed_checks(health)}")
    if policy.match and not matches(record["id"], policy.match):
        return Decision(False, f"does not match eos:accept:match {policy.match!r}")
    return Decision(True, f"eos:accept policy ({policy.describe()})")


def _failed_checks(health):
    names = [c["name"] for c in health.get("checks", []) if c["critical"] and not c["passed"]]
    return ", ".join(names) or "none named"


# --- registration payloads ---------------------------------------------------------------------


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
    ``node_id`` if it follows the node id rule (``saltext.eos.utils.nodeid``); InvalidNodeId
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


# --- registration order ------------------------------------------------------------------------
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


# --- records -----------------------------------------------------------------------------------


def new_record(node_id, now):
    """A record for a node seen for the first time; its status is set by a transition."""
    return {
        "id": node_id,
        "status": None,
        "resources": None,
        "health": None,
        "preferred_role": None,
        "roles": [],
        "registered_at": now,
        "accepted_at": None,
        "last_seen": now,
        "registration_sent_at_ms": None,
        "pending_reason": None,
        "address": None,
        "history": [],
    }


def as_role_node(record):
    """The node description the role solver takes (``roles.nodes``) from a record."""
    resources = record.get("resources") or {}
    disks = resources.get("disks") or []
    domain = resources.get("failure_domain") or {}
    return {
        "id": record["id"],
        "cpu": resources.get("cpu_cores", 0),
        "memory_gb": round(resources.get("memory_bytes", 0) / MEMORY_GB),
        "disk_gb": sum(disk["size_bytes"] for disk in disks) / DISK_GB,
        "storage_type": node_storage_type(disks),
        "datacenter": domain.get("datacenter"),
        "rack": domain.get("rack"),
        "host": domain.get("host"),
        "labels": dict(resources.get("labels") or {}),
        "roles": list(record.get("roles") or []),
        "preferred_role": record.get("preferred_role"),
    }


def node_storage_type(disks):
    """The storage type of the node's largest disk: where most of its data would live."""
    typed = [disk for disk in disks if disk.get("storage_type")]
    if not typed:
        return None
    return max(typed, key=lambda disk: (disk["size_bytes"], disk["name"]))["storage_type"]


def empty_summary():
    """The summary of a registry that has never held a node."""
    return {
        "cluster_id": None,
        "created_at": None,
        "first_node": None,
        "counts": dict.fromkeys(STATUSES, 0),
        "node_count": 0,
        "scale": SCALES[0],
        "roles": {},
        "assignment_version": 0,
        "updated_at": None,
    }


def timestamp(seconds):
    """ISO 8601 in UTC, to the second: what records and the summary show."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds")


@dataclass
class Outcome:
    """What a registry operation did: the record after it and the statuses it went through."""

    record: dict | None
    transitions: list = field(default_factory=list)
    note: str = ""

    @property
    def changed(self):
        return bool(self.transitions)


class FileLock:
    """
    An exclusive lock for every process and thread of this host that uses the same path.

    ``flock`` locks an open file description, so each acquisition opens the file anew: two
    threads of one process exclude each other just as two processes do. Not re-entrant.
    """

    def __init__(self, path, timeout=30.0, poll=0.005):
        self.path = path
        self.timeout = timeout
        self.poll = poll
        self._handles = threading.local()

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        handle = open(self.path, "a+b")  # closed in __exit__
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.close()
                    raise RegistryBusy(
                        f"the registry lock {self.path} was held for over {self.timeout:g} s"
                    ) from None
                time.sleep(self.poll)
        self._handles.current = handle
        return self

    def __exit__(self, *exc):
        handle = self._handles.current
        self._handles.current = None
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


class Registry:
    """
    Node records and the cluster summary in a Salt cache object.

    ``cache`` is a ``salt.cache.Cache`` (``store``, ``fetch``, ``flush``, ``list``); ``lock``
    a context manager serialising changes; ``on_change(node_id, status, record)`` is called
    after every status change has been written (``status`` is ``removed`` for a removal).
    """

    def __init__(
        self,
        cache,
        lock=None,
        clock=time.time,
        on_change=None,
        boundaries=None,
        max_clock_skew=DEFAULT_MAX_CLOCK_SKEW,
    ):
        self.cache = cache
        self.lock = threading.Lock() if lock is None else lock
        self.clock = clock
        self.on_change = on_change or (lambda node_id, status, record: None)
        self.boundaries = dict(SCALE_STARTS) if boundaries is None else boundaries
        self.max_clock_skew = max_clock_skew

    # --- reading: one record and the summary cost the same at any cluster size ---

    def get(self, node_id):
        """The record of ``node_id``, or None."""
        return self.cache.fetch(NODES_BANK, check_node_id(node_id)) or None

    def claim_join(self, node_id, token):
        """
        Use up the join token of ``node_id``'s current acceptance; StaleJoin unless the node
        is accepted and ``token`` is that acceptance's. A token starts at most one join.
        """
        with self.lock:
            record = self.get(node_id)
            if record is None:
                raise StaleJoin(f"{node_id}: no such node: nothing started")
            if record["status"] != "accepted":
                raise StaleJoin(
                    f"{node_id} is {record['status']}, not awaiting a join "
                    "(a forged or repeated event): nothing started"
                )
            expected = record.get("join_token")
            if not expected:
                raise StaleJoin(
                    f"{node_id}: its join has started already (a forged or repeated event): "
                    "nothing started"
                )
            if not isinstance(token, str) or not secrets.compare_digest(token, expected):
                raise StaleJoin(
                    f"{node_id}: the join token is not its current acceptance's "
                    "(a forged or repeated event): nothing started"
                )
            record["join_token"] = None
            self._store(record)
            return record

    def summary(self):
        """The cluster summary, with the scale for the current boundaries."""
        stored = self.cache.fetch(CLUSTER_BANK, SUMMARY_KEY) or {}
        summary = {**empty_summary(), **stored}
        summary["counts"] = {**dict.fromkeys(STATUSES, 0), **stored.get("counts", {})}
        summary["scale"] = scale_for(summary["node_count"], self.boundaries)
        return summary

    def assignment(self):
        """The last stored role assignment: {version, assignments, stored_at}, or None."""
        return self.cache.fetch(CLUSTER_BANK, ASSIGNMENT_KEY) or None

    def node_ids(self):
        return sorted(self.cache.list(NODES_BANK))

    def records(self, status=None):
        """Every record (sorted by id), or those with ``status``; reads the whole registry."""
        if status is not None and status not in STATUSES:
            raise RegistryError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        found = []
        for node_id in self.node_ids():
            record = self.cache.fetch(NODES_BANK, node_id)
            if record and (status is None or record["status"] == status):
                found.append(record)
        return found

    # --- changing ---

    def note_pending_key(self, node_id, policy, matches):
        """
        A Salt key for ``node_id`` is waiting for acceptance: create its pending record, or
        give a pending one another look under the policy (which may have changed).

        Any other record keeps its status: the key may be pending again after a key rotation,
        but the node's standing in the cluster is the registry's to say.
        """
        check_node_id(node_id)
        with self.lock:
            now = self.clock()
            record = self.get(node_id)
            if record is not None and record["status"] == "pending":
                record["last_seen"] = timestamp(now)
                transitions = self._apply_policy(record, policy, matches, now)
                return self._announce(Outcome(record, transitions))
            if record is not None:
                record["last_seen"] = timestamp(now)
                self._store(record)
                return Outcome(record, note=f"already known as {record['status']}")
            record = new_record(node_id, timestamp(now))
            transitions = self._create(record, "its Salt key is pending", now)
            transitions += self._apply_policy(record, policy, matches, now)
        return self._announce(Outcome(record, transitions))

    def register(self, node_id, registration, policy, matches):
        """
        Record what ``node_id`` says about itself; a new or pending node meets the policy.

        A registration older than the last one recorded (they may arrive out of order) is
        ignored; one sent over ``max_clock_skew`` seconds ahead of the master's clock is
        refused (ClockSkew, nothing written); see "registration order". A rejected node stays
        rejected.
        """
        check_node_id(node_id)
        with self.lock:
            now = self.clock()
            check_sent_at(node_id, registration.sent_at_ms, now, self.max_clock_skew)
            record = self.get(node_id)
            transitions = []
            if record is None:
                record = new_record(node_id, timestamp(now))
                transitions += self._create(record, "registered", now)
            elif record["status"] == "rejected":
                return Outcome(record, note="rejected: registration ignored")
            elif not self._supersedes(record, registration.sent_at_ms, now):
                return Outcome(record, note="older than the registration already recorded")
            record.update(
                resources=registration.resources,
                health=registration.health,
                preferred_role=registration.preferred_role,
                last_seen=timestamp(now),
                registration_sent_at_ms=registration.sent_at_ms,
            )
            if record["status"] == "pending":
                transitions += self._apply_policy(record, policy, matches, now)
            if not transitions:
                self._store(record)
        return self._announce(Outcome(record, transitions))

    def accept(self, node_id, reason="accepted by an operator"):
        """Make ``node_id`` a member; accepting a member again changes nothing."""
        return self._change(node_id, "accepted", reason, unchanged_from=MEMBER_STATUSES)

    def reject(self, node_id, reason="rejected by an operator"):
        """Reject ``node_id``; it loses its roles."""
        return self._change(node_id, "rejected", reason, unchanged_from=("rejected",))

    def set_status(self, node_id, status, reason):
        """Move ``node_id`` to ``active`` or ``failed`` (configuration finished or failed)."""
        if status not in ("active", "failed"):
            raise InvalidTransition(
                f"{node_id}: set_status takes active or failed, not {status!r} "
                "(accept, reject and remove have their own functions)"
            )
        return self._change(node_id, status, reason, unchanged_from=(status,))

    def preregister(self, node_id, details, reason="pre-registered by an operator"):
        """
        A pending record for a node whose minion does not exist yet, from ``details``
        (``check_preregistration``'s answer). Its minion later registers under the same id.
        """
        check_node_id(node_id)
        with self.lock:
            existing = self.get(node_id)
            if existing is not None:
                raise AlreadyRegistered(f"{node_id}: already registered ({existing['status']})")
            now = self.clock()
            record = {**new_record(node_id, timestamp(now)), **details}
            transitions = self._create(record, reason, now)
        return self._announce(Outcome(record, transitions))

    def ensure(self, node_id, reason):
        """The record of ``node_id``, created pending when missing (the caller knows the node)."""
        check_node_id(node_id)
        with self.lock:
            record = self.get(node_id)
            if record is not None:
                return Outcome(record)
            now = self.clock()
            record = new_record(node_id, timestamp(now))
            transitions = self._create(record, reason, now)
        return self._announce(Outcome(record, transitions))

    def remove(self, node_id, reason="removed by an operator"):
        """Delete the record of ``node_id``."""
        check_node_id(node_id)
        with self.lock:
            record = self._existing(node_id)
            summary = self.summary()
            self._count(summary, record["status"], None)
            self._drop_roles(summary, record.get("roles"))
            self.cache.flush(NODES_BANK, node_id)
            self._store_summary(summary)
        record["history"] = [*record["history"], self._entry(REMOVED, reason, self.clock())]
        return self._announce(Outcome(record, [REMOVED]))

    def store_assignment(self, assignments, version=None):
        """
        Store a role assignment {node id: [roles]}: each node's record gets its roles.

        Every id must have a record; nothing is written otherwise. Returns {version, changes}
        with changes {id: {old, new}} for the nodes whose roles changed.
        """
        wanted = _checked_assignment(assignments)
        with self.lock:
            unknown = [node_id for node_id in wanted if self.get(node_id) is None]
            if unknown:
                raise UnknownNode(
                    f"no record for {', '.join(sorted(unknown)[:5])} in the assignment"
                )
            summary = self.summary()
            version = _next_version(summary["assignment_version"], version)
            previous = (self.assignment() or {}).get("assignments", {})
            changes = self._write_roles(wanted, previous)
            self.cache.store(
                CLUSTER_BANK,
                ASSIGNMENT_KEY,
                {"version": version, "assignments": wanted, "stored_at": timestamp(self.clock())},
            )
            summary["roles"] = _role_counts(wanted.values())
            summary["assignment_version"] = version
            self._store_summary(summary)
        return {"version": version, "changes": changes}

    def rebuild_summary(self):
        """Recount the summary from every record (repairs counts after a shared-cache race)."""
        with self.lock:
            summary = self.summary()
            summary["counts"] = dict.fromkeys(STATUSES, 0)
            roles = []
            for record in self.records():
                summary["counts"][record["status"]] += 1
                roles.append(record.get("roles") or [])
            summary["roles"] = _role_counts(roles)
            self._store_summary(summary)
            return self.summary()

    # --- internals: the lock is held ---

    def _supersedes(self, record, sent_at_ms, now):
        recorded = record.get("registration_sent_at_ms")
        if not supersedes(sent_at_ms, recorded, now, self.max_clock_skew):
            return False
        if recorded is not None and sent_at_ms <= recorded:
            log.warning(
                "eos registry: the registration recorded for %s was sent %.0f s ahead of the "
                "master's clock; replaced by the one it sent at %s ms",
                record["id"],
                recorded / 1000 - now,
                sent_at_ms,
            )
        return True

    def _change(self, node_id, status, reason, unchanged_from):
        check_node_id(node_id)
        with self.lock:
            record = self._existing(node_id)
            if record["status"] in unchanged_from:
                return Outcome(record, note=f"already {record['status']}")
            now = self.clock()
            summary = self.summary()
            if status == "rejected":
                self._drop_roles(summary, record.get("roles"))
                record["roles"] = []
            self._transition(record, status, reason, now, summary)
        return self._announce(Outcome(record, [status]))

    def _existing(self, node_id):
        record = self.get(node_id)
        if record is None:
            raise UnknownNode(f"{node_id}: no such node in the registry")
        return record

    def _create(self, record, reason, now):
        summary = self.summary()
        if summary["cluster_id"] is None:
            summary["cluster_id"] = uuid.uuid4().hex
            summary["created_at"] = timestamp(now)
        self._transition(record, "pending", reason, now, summary)
        return ["pending"]

    def _apply_policy(self, record, policy, matches, now):
        summary = self.summary()
        first_node = summary["first_node"] is None and summary["node_count"] == 0
        decision = decide(policy, record, first_node, matches)
        if not decision.accept:
            record["pending_reason"] = decision.reason
            self._store(record)
            return []
        self._transition(record, "accepted", decision.reason, now, summary)
        return ["accepted"]

    def _transition(self, record, status, reason, now, summary):
        if status not in TRANSITIONS[record["status"]]:
            raise InvalidTransition(
                f"{record['id']}: cannot go from {record['status']} to {status}; "
                f"from {record['status']} it may go to {', '.join(TRANSITIONS[record['status']])}"
            )
        self._count(summary, record["status"], status)
        record["history"] = [*record["history"], self._entry(status, reason, now)][-HISTORY_LIMIT:]
        record["status"] = status
        record["pending_reason"] = None
        if status == "accepted":
            record["accepted_at"] = timestamp(now)
            # The accepted event carries it; a join starts only for the token of the node's
            # current acceptance, so a forged or repeated event starts nothing.
            record["join_token"] = secrets.token_urlsafe(18)
        else:
            record["join_token"] = None
        if summary["first_node"] is None and status in MEMBER_STATUSES:
            summary["first_node"] = record["id"]
        # The record first: a crash in between leaves a count to recount, not a lost node.
        self._store(record)
        self._store_summary(summary)

    def _count(self, summary, old, new):
        counts = summary["counts"]
        if old is not None:
            counts[old] = max(0, counts[old] - 1)
        if new is not None:
            counts[new] += 1

    def _drop_roles(self, summary, roles):
        for role in roles or ():
            left = summary["roles"].get(role, 0) - 1
            if left > 0:
                summary["roles"][role] = left
            else:
                summary["roles"].pop(role, None)

    def _write_roles(self, wanted, previous):
        changes = {}
        for node_id in sorted(set(wanted) | set(previous)):
            record = self.get(node_id)
            if record is None:
                continue  # removed since the previous assignment
            new = wanted.get(node_id, [])
            if list(record.get("roles") or []) != new:
                changes[node_id] = {"old": list(record.get("roles") or []), "new": new}
                record["roles"] = new
                self._store(record)
        return changes

    def _entry(self, status, reason, now):
        return {"status": status, "at": timestamp(now), "reason": reason}

    def _store(self, record):
        self.cache.store(NODES_BANK, record["id"], record)

    def _store_summary(self, summary):
        counts = summary["counts"]
        summary["node_count"] = sum(counts[status] for status in MEMBER_STATUSES)
        summary["scale"] = scale_for(summary["node_count"], self.boundaries)
        summary["updated_at"] = timestamp(self.clock())
        self.cache.store(CLUSTER_BANK, SUMMARY_KEY, summary)

    def _announce(self, outcome):
        # After the lock is released: a slow event bus must not hold up other registrations.
        for status in outcome.transitions:
            self.on_change(outcome.record["id"], status, outcome.record)
        return outcome


def _checked_assignment(assignments):
    if not isinstance(assignments, Mapping):
        raise RegistryError(f"assignments: {_short(assignments)} is not a mapping of id to roles")
    checked = {}
    for node_id, given in assignments.items():
        check_node_id(node_id)
        node_roles = [given] if isinstance(given, str) else given
        if not isinstance(node_roles, (list, tuple)) or not all(
            isinstance(role, str) and ROLE_NAME.fullmatch(role) for role in node_roles
        ):
            raise RegistryError(f"assignments:{node_id}: {_short(given)} is not a role list")
        checked[node_id] = list(dict.fromkeys(node_roles))
    return checked


def _next_version(current, given):
    if given is None:
        return current + 1
    if isinstance(given, bool) or not isinstance(given, int) or given <= current:
        raise RegistryError(f"assignment version {given!r} must be a whole number > {current}")
    return given


def _role_counts(role_lists):
    counts = {}
    for node_roles in role_lists:
        for role in node_roles:
            counts[role] = counts.get(role, 0) + 1
    return dict(sorted(counts.items()))


def _copy(value):
    return json.loads(json.dumps(value))
