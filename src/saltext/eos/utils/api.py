"""
The EOS REST API without a server: its settings, routes, request checks, authorisation,
response envelopes and the mapping of Salt's answers to HTTP statuses.

The netapi module ``eos_api`` wires this to a tornado server and to Salt through a *backend*,
an object with these methods (a unit test passes a fake one, so nothing here needs a master):

``login(username, password, eauth)``
    A new Salt token for these credentials, or None when eauth refuses them.
``session(token)``
    ``{user, eauth, start, expire, perms}`` for a valid Salt token (perms is its eauth
    access list), or None when the token is unknown or expired.
``may_run(session, fun, kwarg)``
    Whether the session's eauth permissions allow the runner function ``fun`` with ``kwarg``.
``run(token, fun, kwarg)``
    The runner's full return (``{success, return, ...}``), run by the master under eauth.
``logout(token)``
    Revoke the token.
``master_running()`` and ``registry_state()``
    For ``/health``: a bool, and ``ok``, ``empty`` or ``unavailable``.

The methods may raise Salt's exceptions; ``SALT_ERRORS`` maps them to statuses by class name.

Every response is JSON, ``{"status": "success", "data": ...}`` or ``{"status": "error",
"error": {"code", "message"}}`` (plus ``field`` when one request field is at fault), except
``GET /api/v1/openapi.json``, which is the OpenAPI document itself.
"""

import collections
import dataclasses
import ipaddress
import json
import logging
import math
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping

from saltext.eos import PACKAGE_ROOT
from saltext.eos import __version__
from saltext.eos.utils import registry

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
PREFIX = "/api/v1"
OPENAPI_DOCUMENT = PACKAGE_ROOT / "netapi" / "openapi.json"

# Master config ``eos_api``; the module does not load without that key.
DEFAULT_SETTINGS = {
    "host": "127.0.0.1",
    "port": 8090,
    "ssl_crt": None,
    "ssl_key": None,
    "max_body_bytes": 1024 * 1024,
    "runner_timeout": 120,
    "threads": 4,
    # Plain HTTP on an address other hosts can reach would send passwords and tokens in clear.
    "allow_plain_http": False,
    # After this many failed logins within login_window seconds, further logins from that
    # client address or for that user name get 429 until the window has passed; 0: no limit.
    "login_failures": 5,
    "login_window": 300,
}

# The status of every error response and its ``error.code``.
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
    504: "timeout",
}

# Salt's exceptions by class name, and what they mean to a client. A runner's exception
# reaches the API as text (its class name and message), a local one as an object: both are
# looked up here by name.
SALT_ERRORS = {
    "SaltInvocationError": 400,
    "CommandExecutionError": 500,
    "TokenAuthenticationError": 401,
    "AuthenticationError": 401,
    "EauthAuthenticationError": 403,
    "AuthorizationError": 403,
    "SaltDaemonNotRunning": 503,
    "SaltReqTimeoutError": 503,
    "SaltMasterUnresolvableError": 503,
    "SaltClientTimeout": 504,
}
# Refinements by the wording of the message, checked first: the runners name an unknown node
# "no such node", a forbidden status change "cannot go from", and Salt's loader says a
# runner function it cannot load "is not available" or that its "__virtual__ returned False".
SALT_ERROR_WORDING = (
    ("SaltInvocationError", "no such node", 404),
    ("SaltInvocationError", "cannot go from", 409),
    ("SaltInvocationError", "already registered", 409),
    ("CommandExecutionError", "is not available", 501),
    ("CommandExecutionError", "__virtual__ returned False", 501),
)

# The OpenAPI document carries these patterns. Check with fullmatch, never match: with match,
# "$" also accepts a trailing newline. Node ids follow the one rule of utils/nodeid.py.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_LABEL = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_PATTERN = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
MAX_CREDENTIAL_LENGTH = 4096
MAX_WHAT_IF_NODES = 10_000
MAX_PAGE = 10_000
# How many of the newest ``eos_storage.analyze`` jobs the storage report reads when the mine
# holds nothing: enough to find every node's latest run, bounded so a large job cache stays fast.
MAX_REPORT_JOBS = 10
ANALYZE_FUNCTION = "eos_storage.analyze"
INVALID_ARGUMENTS = "Passed invalid arguments: "
# Python's own TypeError for a call that does not fit the function: the API's mistake.
SIGNATURE_MISMATCH = re.compile(
    r"^[\w.]+\(\) (got an unexpected keyword|got multiple values|missing \d+ required|takes )"
)
JOB_CACHE_RUNNERS = ("jobs.list_jobs", "jobs.lookup_jid")


class InvalidSettings(ValueError):
    """``eos_api`` in the master config is not usable; the message names the key."""


class ApiError(Exception):
    """An error response: its status, a message for the client, the field at fault."""

    def __init__(self, status, message, field=None, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}


@dataclasses.dataclass(frozen=True)
class Request:
    """One HTTP request as the server received it; header names in lower case."""

    method: str
    path: str
    query: Mapping = dataclasses.field(default_factory=dict)  # name: [values]
    headers: Mapping = dataclasses.field(default_factory=dict)
    body: bytes = b""
    client: str | None = None  # the peer's address; failed logins are counted by it


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    body: object
    headers: Mapping = dataclasses.field(default_factory=dict)

    def encode(self):
        return json.dumps(self.body, default=str, separators=(",", ":")).encode()


def success(data, status=200, headers=None):
    return Response(status, {"status": "success", "data": data}, headers or {})


def failure(status, message, field=None, headers=None):
    error = {"code": ERROR_CODES[status], "message": message}
    if field is not None:
        error["field"] = field
    return Response(status, {"status": "error", "error": error}, headers or {})


# --- settings --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str
    port: int
    ssl_crt: str | None
    ssl_key: str | None
    max_body_bytes: int
    runner_timeout: float
    threads: int
    allow_plain_http: bool
    login_failures: int
    login_window: int

    @property
    def tls(self):
        return self.ssl_crt is not None


def settings(given):
    """Checked Settings from the master's ``eos_api`` mapping (None: every default)."""
    given = {} if given is None else given
    if not isinstance(given, Mapping):
        raise InvalidSettings(f"eos_api: {given!r} is not a mapping")
    unknown = sorted(str(key) for key in given if key not in DEFAULT_SETTINGS)
    if unknown:
        raise InvalidSettings(
            f"eos_api: unknown key {unknown[0]!r}; expected {', '.join(DEFAULT_SETTINGS)}"
        )
    merged = {**DEFAULT_SETTINGS, **given}
    checked = Settings(
        host=_setting_text(merged, "host"),
        port=_setting_integer(merged, "port", 1, 65535),
        ssl_crt=_setting_path(merged, "ssl_crt"),
        ssl_key=_setting_path(merged, "ssl_key"),
        max_body_bytes=_setting_integer(merged, "max_body_bytes", 1024, 1024**3),
        runner_timeout=_setting_number(merged, "runner_timeout"),
        threads=_setting_integer(merged, "threads", 1, 64),
        allow_plain_http=_setting_flag(merged, "allow_plain_http"),
        login_failures=_setting_integer(merged, "login_failures", 0, 1000),
        login_window=_setting_integer(merged, "login_window", 1, 86400),
    )
    if checked.ssl_key is not None and checked.ssl_crt is None:
        raise InvalidSettings("eos_api:ssl_key: set, but eos_api:ssl_crt is not")
    if not checked.tls and not checked.allow_plain_http and not is_loopback(checked.host):
        raise InvalidSettings(
            f"eos_api:host: {checked.host!r} is reachable from other hosts, but no "
            "eos_api:ssl_crt is set: passwords and tokens would cross the network in clear; "
            "set ssl_crt and ssl_key, or allow_plain_http: true behind a TLS proxy"
        )
    return checked


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _setting_text(values, key):
    value = values[key]
    if not isinstance(value, str) or not value.strip():
        raise InvalidSettings(f"eos_api:{key}: {value!r} is not a non-empty string")
    return value


def _setting_path(values, key):
    return None if values[key] is None else _setting_text(values, key)


def _setting_integer(values, key, minimum, maximum):
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSettings(f"eos_api:{key}: {value!r} is not a whole number")
    if not minimum <= value <= maximum:
        raise InvalidSettings(f"eos_api:{key}: {value} is outside {minimum}..{maximum}")
    return value


def _setting_number(values, key):
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidSettings(f"eos_api:{key}: {value!r} is not a number of seconds > 0")
    return float(value)


def _setting_flag(values, key):
    value = values[key]
    if not isinstance(value, bool):
        raise InvalidSettings(f"eos_api:{key}: {value!r} is not true or false")
    return value


# --- request fields --------------------------------------------------------------------------


def _field_error(field, message):
    return ApiError(400, f"{field}: {message}", field=field)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _name(text):
    """A field, parameter or path as the client sent it, cut short for an error message."""
    text = str(text)
    return text if len(text) <= 64 else f"{text[:61]}..."


def check_text(value, field, max_length=255, allow_empty=False):
    if not isinstance(value, str):
        raise _field_error(field, f"{_short(value)} is not a string")
    if not value and not allow_empty:
        raise _field_error(field, "must not be empty")
    if len(value) > max_length:
        raise _field_error(field, f"longer than {max_length} characters")
    return value


def check_node_id(value, field="id"):
    """The registry's node id rule: every id it allows can be named in a path as it is."""
    try:
        return registry.check_node_id(value)
    except registry.InvalidNodeId as err:
        raise _field_error(field, str(err)) from err


def check_address(value, field="address"):
    """A host name or an IP address: where the node will be reached."""
    check_text(value, field, max_length=253)
    if HOSTNAME_PATTERN.fullmatch(value):
        return value
    try:
        return str(ipaddress.IPv6Address(value))
    except ValueError as err:
        raise _field_error(field, f"{_short(value)} is not a host name or an IP address") from err


def check_role(value, field="preferred_role"):
    if value is None:
        return None
    if not isinstance(value, str) or not registry.ROLE_NAME.fullmatch(value):
        raise _field_error(
            field, f"{_short(value)} is not a role name (lower case letters, digits, - and _)"
        )
    return value


def check_labels(value, field="labels"):
    if not isinstance(value, Mapping):
        raise _field_error(field, f"{_short(value)} is not an object")
    if len(value) > registry.MAX_LABELS:
        raise _field_error(field, f"{len(value)} labels, over the cap of {registry.MAX_LABELS}")
    for key, label in value.items():
        check_text(key, f"{field}.{_name(key)}", max_length=registry.MAX_NAME_LENGTH)
        check_text(label, f"{field}.{_name(key)}", registry.MAX_NAME_LENGTH, allow_empty=True)
    return dict(value)


def check_object(value, field):
    if not isinstance(value, Mapping):
        raise _field_error(field, f"{_short(value)} is not an object")
    return dict(value)


def check_what_if_nodes(value, field="nodes"):
    """A list of node descriptions; eos_roles checks each description's fields."""
    if not isinstance(value, list):
        raise _field_error(field, f"{_short(value)} is not a list")
    if not value:
        raise _field_error(field, "must hold at least one node")
    if len(value) > MAX_WHAT_IF_NODES:
        raise _field_error(field, f"{len(value)} nodes, over the cap of {MAX_WHAT_IF_NODES}")
    for index, node in enumerate(value):
        check_object(node, f"{field}[{index}]")
    return value


def check_credential(value, field):
    return check_text(value, field, max_length=MAX_CREDENTIAL_LENGTH)


def check_token_text(value, field="token"):
    check_text(value, field, max_length=256)
    if not TOKEN_PATTERN.fullmatch(value):
        raise _field_error(field, "is not a Salt token")
    return value


@dataclasses.dataclass(frozen=True)
class Field:
    check: object  # check(value, field name) -> the value to use
    required: bool = False


LOGIN_FIELDS = {
    "username": Field(check_credential),
    "password": Field(check_credential),
    "eauth": Field(lambda value, field: check_text(value, field, max_length=64)),
    "token": Field(check_token_text),
}
REGISTER_FIELDS = {
    "id": Field(check_node_id, required=True),
    "address": Field(check_address),
    "resources": Field(check_object),
    "preferred_role": Field(check_role),
    "labels": Field(check_labels),
}
CALCULATE_FIELDS = {"nodes": Field(check_what_if_nodes)}
NO_FIELDS = {}


def check_fields(body, fields):
    """The checked values of ``body`` (a JSON object): every field known, required ones given."""
    unknown = sorted(str(name) for name in body if name not in fields)
    if unknown:
        expected = ", ".join(fields) if fields else "no fields"
        raise _field_error(_name(unknown[0]), f"unknown field; expected {expected}")
    checked = {}
    for name, spec in fields.items():
        if name not in body:
            if spec.required:
                raise _field_error(name, "is required")
            continue
        checked[name] = spec.check(body[name], name)
    return checked


# --- query parameters ------------------------------------------------------------------------


def check_status(value, field="status"):
    if value not in registry.STATUSES:
        raise _field_error(field, f"{_short(value)} is not one of {', '.join(registry.STATUSES)}")
    return value


def _whole(minimum, maximum):
    def check(value, field):
        if not re.fullmatch(r"\d{1,9}", value):
            raise _field_error(field, f"{_short(value)} is not a whole number")
        number = int(value)
        if not minimum <= number <= maximum:
            raise _field_error(field, f"{number} is outside {minimum}..{maximum}")
        return number

    return check


def check_boolean(value, field):
    flags = {"true": True, "false": False, "1": True, "0": False}
    if value not in flags:
        raise _field_error(field, f"{_short(value)} is not true, false, 1 or 0")
    return flags[value]


NODES_QUERY = {
    "status": check_status,
    "limit": _whole(1, MAX_PAGE),
    "offset": _whole(0, 10**9),
}
INFO_QUERY = {"recount": check_boolean}


def check_query(query, allowed):
    """{name: checked value} from ``query`` ({name: [values]}); each name at most once."""
    checked = {}
    for name, values in query.items():
        if name not in allowed:
            expected = ", ".join(allowed) if allowed else "no query parameters"
            raise _field_error(_name(name), f"unknown query parameter; expected {expected}")
        if len(values) != 1:
            raise _field_error(name, "given more than once")
        checked[name] = allowed[name](values[0], name)
    return checked


# --- routes ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Route:
    """
    One endpoint: ``path`` below PREFIX as OpenAPI writes it, the Api method serving it, and
    the runner functions a caller's eauth permissions must allow (``public``: no token).
    """

    method: str
    path: str
    operation: str
    runners: tuple = ()
    public: bool = False
    body: Mapping | None = None  # Field specs of a JSON object body; None: no body read
    query: Mapping = dataclasses.field(default_factory=dict)

    @property
    def pattern(self):
        template = re.escape(PREFIX + self.path).replace(r"\{id\}", "(?P<id>[^/]+)")
        return re.compile(f"^{template}$")


ROUTES = (
    Route("POST", "/login", "login", public=True, body=LOGIN_FIELDS),
    Route("POST", "/logout", "logout", body=NO_FIELDS),
    Route("GET", "/health", "health", public=True),
    Route("GET", "/openapi.json", "openapi", public=True),
    Route("GET", "/cluster/info", "cluster_info", ("eos_cluster.info",), query=INFO_QUERY),
    Route(
        "POST",
        "/cluster/register",
        "register_node",
        ("eos_cluster.preregister",),
        body=REGISTER_FIELDS,
    ),
    Route("GET", "/nodes", "list_nodes", ("eos_cluster.nodes",), query=NODES_QUERY),
    Route("GET", "/nodes/{id}", "get_node", ("eos_cluster.nodes",)),
    Route("DELETE", "/nodes/{id}", "remove_node", ("eos_cluster.remove",)),
    Route("POST", "/nodes/{id}/accept", "accept_node", ("eos_cluster.accept",), body=NO_FIELDS),
    Route("POST", "/nodes/{id}/reject", "reject_node", ("eos_cluster.reject",), body=NO_FIELDS),
    Route(
        "POST",
        "/roles/calculate",
        "calculate_roles",
        ("eos_roles.calculate",),
        body=CALCULATE_FIELDS,
    ),
    Route("POST", "/roles/apply", "apply_roles", ("eos_roles.apply",), body=NO_FIELDS),
    # Also jobs.list_jobs and jobs.lookup_jid when the mine is empty and the caller may run them.
    Route("GET", "/storage/report", "storage_report", ("mine.get",)),
)


def route_for(method, path, routes=ROUTES):
    """(route, path parameters) for a request; ApiError 404 or 405 (with Allow) otherwise."""
    allowed = []
    for route in routes:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if route.method == method:
            params = {
                name: urllib.parse.unquote(value) for name, value in found.groupdict().items()
            }
            return route, params
        allowed.append(route.method)
    if allowed:
        methods = ", ".join(sorted(set(allowed)))
        raise ApiError(
            405,
            f"{_name(method)} is not allowed on {_name(path)}; use {methods}",
            headers={"Allow": methods},
        )
    raise ApiError(404, f"no endpoint {_name(path)}; the API lives under {PREFIX}")


# --- request body ----------------------------------------------------------------------------


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def json_object(request):
    """The request body as a JSON object; an empty body is ``{}``."""
    if not request.body:
        return {}
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(415, f"Content-Type {media_type!r}: send application/json")
    try:
        text = request.body.decode("utf-8")
        body = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as err:
        raise _field_error("body", f"not UTF-8 ({err.reason} at byte {err.start})") from err
    except json.JSONDecodeError as err:
        raise _field_error(
            "body", f"not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})"
        ) from err
    except ValueError as err:
        raise _field_error("body", f"not valid JSON: {err}") from err
    except RecursionError as err:
        raise _field_error("body", "not valid JSON: nested too deeply") from err
    if not isinstance(body, dict):
        raise _field_error("body", f"must be a JSON object, not {type(body).__name__}")
    return body


def bearer_token(headers):
    """The Salt token a request carries (``X-Auth-Token`` or ``Authorization: Bearer``)."""
    given = []
    if headers.get("x-auth-token") is not None:
        given.append(headers["x-auth-token"].strip())
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise unauthorized("Authorization: only Bearer tokens are accepted")
        given.append(credentials.strip())
    if not given or not given[0]:
        raise unauthorized("no token: log in at POST /api/v1/login and send X-Auth-Token")
    if len(set(given)) > 1:
        # Which one the client meant is a guess; refusing both is the safe answer.
        raise unauthorized("X-Auth-Token and Authorization carry different tokens")
    if not TOKEN_PATTERN.fullmatch(given[0]):
        raise unauthorized("the token is not a Salt token")
    return given[0]


def unauthorized(message):
    return ApiError(401, message, headers={"WWW-Authenticate": 'Bearer realm="eos_api"'})


# --- Salt's answers --------------------------------------------------------------------------


def salt_error(name, message):
    """The HTTP status for a Salt exception, by class name and message; None when unknown."""
    for error_name, wording, status in SALT_ERROR_WORDING:
        if name == error_name and wording in message:
            return status
    return SALT_ERRORS.get(name)


def runner_exception(text):
    """
    (class name, message) of the exception a runner raised, from the text Salt returns for it:
    ``Exception occurred in runner <fun>: <traceback>``; (None, None) when it is not one.
    """
    if not isinstance(text, str) or not text.startswith("Exception occurred in runner"):
        return None, None
    lines = text.rstrip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    start = frames[-1] + 1 if frames else 1
    # After the last frame come its indented source line, then the exception's own lines.
    while start < len(lines) and lines[start][:1].isspace():
        start += 1
    first, *rest = lines[start:] or [""]
    name, _, message = first.partition(": ")
    message = "\n".join([message, *rest]).strip()
    return name.rsplit(".", 1)[-1], message


def runner_result(fun, full_return):
    """The return of a runner call, or ApiError for a runner that failed."""
    if not isinstance(full_return, Mapping):
        log.error("eos_api: %s returned %r instead of a job return", fun, full_return)
        raise ApiError(500, f"{fun}: the master's answer could not be read")
    value = full_return.get("return")
    name, message = runner_exception(value)
    if name is not None:
        return _raise_runner_exception(fun, name, message)
    message = invalid_arguments(value)
    if message is not None:
        if SIGNATURE_MISMATCH.match(message):
            log.error("eos_api: %s refused the API's arguments: %s", fun, message)
            raise ApiError(500, f"{fun} does not take the arguments this API sends; see the log")
        return _raise_runner_exception(fun, "SaltInvocationError", message)
    if full_return.get("success", True) is False:
        comment = value.get("comment") if isinstance(value, Mapping) else None
        raise ApiError(400, f"{fun}: {comment or 'the runner reported a failure'}")
    return value


def invalid_arguments(text):
    """
    The message of a SaltInvocationError (or TypeError) a runner raised, or None.

    Salt's runner client reports those as ``Passed invalid arguments: <message>`` followed by
    the function's usage, since SaltInvocationError is a TypeError.
    """
    if not isinstance(text, str) or not text.lstrip().startswith(INVALID_ARGUMENTS):
        return None
    message = text.lstrip()[len(INVALID_ARGUMENTS) :]
    return message.split("\n\nUsage:", 1)[0].strip()


def _raise_runner_exception(fun, name, message):
    status = salt_error(name, message)
    if status is None:
        log.error("eos_api: %s raised %s: %s", fun, name, message)
        raise ApiError(500, f"{fun} failed on the master; see the master log")
    if status == 501:
        raise ApiError(501, f"{fun} is not available on this master: {message}")
    raise ApiError(status, message)


# --- failed logins ---------------------------------------------------------------------------

# Client addresses, and user names, tracked at once (each): past that the one whose latest
# failure is oldest is forgotten, so a flood of made-up user names cannot grow memory.
MAX_TRACKED_LOGINS = 10_000


@dataclasses.dataclass(frozen=True)
class LoginRefusal:
    """Logins for ``what`` (an address or a user) are refused for ``seconds`` more."""

    what: str
    seconds: int


class LoginThrottle:
    """
    Failed logins per client address and per user name, in memory.

    After ``failures`` of them within ``window`` seconds, logins from that address or for that
    user are refused until the oldest of those failures is ``window`` seconds old; refused
    logins are not counted. A success clears the user's failures, not the address's: one valid
    account must not reset the count of an address guessing others. ``failures`` 0: no limit.

    Thread safe and quick: the server asks it on its event loop and records on worker threads.
    """

    def __init__(self, failures, window, clock=time.monotonic, max_keys=MAX_TRACKED_LOGINS):
        self.failures = failures
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._lock = threading.Lock()
        # kind: {key: the times of its latest failures, oldest first}, least recent key first
        self._tracked = {"address": collections.OrderedDict(), "user": collections.OrderedDict()}

    @staticmethod
    def _keys(address, username):
        keys = []
        if address:
            keys.append(("address", address, f"address {address}"))
        if isinstance(username, str) and username:
            # Case variants of a name are one user to ldap and many other backends.
            keys.append(("user", username.casefold(), f"user {_short(username)}"))
        return keys

    def refusal(self, address, username):
        """A LoginRefusal when this address or user has failed too often lately, else None."""
        if not self.failures:
            return None
        now = self.clock()
        with self._lock:
            for kind, key, what in self._keys(address, username):
                times = self._recent(self._tracked[kind], key, now)
                if len(times) >= self.failures:
                    seconds = max(1, math.ceil(times[0] + self.window - now))
                    return LoginRefusal(what, seconds)
        return None

    def failed(self, address, username):
        """Count a failed login."""
        if not self.failures:
            return
        now = self.clock()
        with self._lock:
            for kind, key, what in self._keys(address, username):
                table = self._tracked[kind]
                times = self._recent(table, key, now)
                times.append(now)
                table[key] = times
                table.move_to_end(key)
                while len(table) > self.max_keys:
                    table.popitem(last=False)
                if len(times) == self.failures:
                    log.warning(
                        "eos_api: %s failed logins for %s within %s seconds: refusing its "
                        "logins until they are older",
                        self.failures,
                        what,
                        self.window,
                    )

    def succeeded(self, username):
        """A successful login: forget the user's failures."""
        with self._lock:
            for kind, key, _ in self._keys(None, username):
                self._tracked[kind].pop(key, None)

    def tracked(self):
        """How many addresses and user names are tracked now: {kind: count}."""
        with self._lock:
            return {kind: len(table) for kind, table in self._tracked.items()}

    def _recent(self, table, key, now):
        """The key's failures within the window (a deque of at most ``failures`` times)."""
        times = table.get(key)
        if times is None:
            return collections.deque(maxlen=self.failures)
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del table[key]
        return times


# --- the API ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Call:
    """What an operation gets: the request's checked parts and the caller's session."""

    params: Mapping
    query: Mapping
    body: Mapping
    token: str | None = None
    session: Mapping | None = None
    client: str | None = None


class Api:
    """
    Serves Requests: ``handle(request) -> Response``. Blocking: run it off the event loop.

    ``throttle`` (a LoginThrottle) limits failed logins; None: no limit. ``throttled(request)``
    answers a refused login without blocking, so the server can refuse it on its event loop.
    """

    def __init__(
        self,
        backend,
        max_body_bytes=DEFAULT_SETTINGS["max_body_bytes"],
        document=None,
        throttle=None,
    ):
        self.backend = backend
        self.max_body_bytes = max_body_bytes
        self.document = document
        self.throttle = LoginThrottle(0, 1) if throttle is None else throttle

    def declared_too_large(self, content_length):
        """A 413 Response when a Content-Length header announces too large a body, else None."""
        if (
            content_length
            and content_length.isdigit()
            and int(content_length) > self.max_body_bytes
        ):
            return self.too_large()
        return None

    def too_large(self):
        return failure(413, f"the body is over the limit of {self.max_body_bytes} bytes")

    def throttled(self, request):
        """
        The 429 Response for a password login the throttle refuses now, else None (handle()
        answers everything else). Reads nothing from Salt and never blocks.
        """
        is_login = (request.method, request.path) == ("POST", f"{PREFIX}/login")
        if not is_login or not self.throttle.failures:
            return None
        username = self._login_username(request)
        if username is None:
            return None
        try:
            self._check_throttle(request.client, username)
        except ApiError as err:
            return failure(err.status, err.message, err.field, err.headers)
        return None

    def _login_username(self, request):
        """The user name of a password login's body; None for a token check or a bad body."""
        if len(request.body) > self.max_body_bytes:
            return None
        try:
            username = json_object(request).get("username")
        except ApiError:
            return None
        return username if isinstance(username, str) else None

    def _check_throttle(self, client, username):
        refusal = self.throttle.refusal(client, username)
        if refusal is not None:
            raise ApiError(
                429,
                f"too many failed logins for {refusal.what}: try again in "
                f"{refusal.seconds} seconds",
                headers={"Retry-After": str(refusal.seconds)},
            )

    def handle(self, request):
        try:
            route, params = route_for(request.method, request.path)
            if len(request.body) > self.max_body_bytes:
                return self.too_large()
            return getattr(self, route.operation)(self._call(route, params, request))
        except ApiError as err:
            return failure(err.status, err.message, err.field, err.headers)
        except Exception:  # pylint: disable=broad-except
            # The client gets an id to quote, never the traceback: that stays in the log.
            incident = uuid.uuid4().hex[:12]
            log.exception(
                "eos_api: %s %s failed (incident %s)", request.method, request.path, incident
            )
            return failure(500, f"internal error (incident {incident}); see the salt-api log")

    def _call(self, route, params, request):
        token = session = None
        if not route.public:
            token = bearer_token(request.headers)
            session = self._session(token)
        body = {} if route.body is None else check_fields(json_object(request), route.body)
        if "id" in params:
            params = {**params, "id": check_node_id(params["id"])}
        query = check_query(request.query, route.query)
        return Call(params, query, body, token, session, request.client)

    def _session(self, token):
        session = _via_salt("the token check", self.backend.session, token)
        if session is None:
            raise unauthorized("the token is unknown or expired: log in again")
        return session

    def _runner(self, call, fun, kwarg=None):
        kwarg = kwarg or {}
        if not self.backend.may_run(call.session, fun, kwarg):
            raise ApiError(
                403,
                f"user {call.session['user']!r} may not run {fun} "
                f"(the master's external_auth must allow @runner {fun})",
            )
        return runner_result(fun, _via_salt(fun, self.backend.run, call.token, fun, kwarg))

    # --- operations: one per route ---

    def login(self, call):
        if "token" in call.body:
            if set(call.body) != {"token"}:
                raise _field_error("token", "give a token or username, password and eauth")
            token = call.body["token"]
        else:
            for name in ("username", "password", "eauth"):
                if name not in call.body:
                    raise _field_error(name, "is required (or give a token)")
            credentials = [call.body[name] for name in ("username", "password", "eauth")]
            # Again here: logins that waited for a worker while others failed are refused too.
            self._check_throttle(call.client, call.body["username"])
            token = _via_salt("the login", self.backend.login, *credentials)
            if token is None:
                self.throttle.failed(call.client, call.body["username"])
                raise unauthorized("username, password or eauth not accepted")
            self.throttle.succeeded(call.body["username"])
        return success({"token": token, **self._session(token)})

    def logout(self, call):
        _via_salt("the logout", self.backend.logout, call.token)
        return success({"logged_out": True})

    def health(self, call):
        master_up = self.backend.master_running()
        registry_state = self.backend.registry_state()
        healthy = master_up and registry_state in ("ok", "empty")
        return success(
            {
                "status": "ok" if healthy else "degraded",
                "api_version": API_VERSION,
                "version": __version__,
                "master": "running" if master_up else "not running",
                "registry": registry_state,
            }
        )

    def openapi(self, call):
        return Response(200, self.document)

    def cluster_info(self, call):
        return success(self._runner(call, "eos_cluster.info", dict(call.query)))

    def register_node(self, call):
        details = dict(call.body)
        node_id = details.pop("id")
        report = self._runner(call, "eos_cluster.preregister", {"node_id": node_id, **details})
        location = f"{PREFIX}/nodes/{urllib.parse.quote(node_id, safe='')}"
        return success(report, status=201, headers={"Location": location})

    def list_nodes(self, call):
        status = call.query.get("status")
        kwarg = {} if status is None else {"status": status}
        records = self._runner(call, "eos_cluster.nodes", kwarg)
        offset = call.query.get("offset", 0)
        limit = call.query.get("limit")
        page = records[offset:] if limit is None else records[offset : offset + limit]
        return success({"nodes": page, "total": len(records), "offset": offset, "limit": limit})

    def get_node(self, call):
        node_id = call.params["id"]
        for record in self._runner(call, "eos_cluster.nodes"):
            if record.get("id") == node_id:
                return success(record)
        raise ApiError(404, f"{node_id}: no such node in the registry")

    def remove_node(self, call):
        return success(self._runner(call, "eos_cluster.remove", {"node_id": call.params["id"]}))

    def accept_node(self, call):
        return success(self._runner(call, "eos_cluster.accept", {"node_id": call.params["id"]}))

    def reject_node(self, call):
        return success(self._runner(call, "eos_cluster.reject", {"node_id": call.params["id"]}))

    def calculate_roles(self, call):
        return success(self._runner(call, "eos_roles.calculate", dict(call.body)))

    def apply_roles(self, call):
        return success(self._runner(call, "eos_roles.apply"))

    def storage_report(self, call):
        mine = self._runner(call, "mine.get", {"tgt": "*", "fun": ANALYZE_FUNCTION}) or {}
        nodes = {node: {"jid": None, "mounts": report} for node, report in _reports(mine)}
        if nodes:
            return success({"source": "mine", "nodes": nodes})
        if not all(self.backend.may_run(call.session, fun, {}) for fun in JOB_CACHE_RUNNERS):
            return success(
                {
                    "source": "none",
                    "nodes": {},
                    "note": "the mine holds no eos_storage.analyze data and the job cache "
                    f"needs @runner {' and '.join(JOB_CACHE_RUNNERS)}",
                }
            )
        return success({"source": "job_cache", "nodes": self._latest_analyses(call)})

    def _latest_analyses(self, call):
        jobs = self._runner(call, "jobs.list_jobs", {"search_function": ANALYZE_FUNCTION}) or {}
        nodes = {}
        for jid in sorted(jobs, reverse=True)[:MAX_REPORT_JOBS]:
            returns = self._runner(call, "jobs.lookup_jid", {"jid": jid}) or {}
            for node, report in _reports(returns):
                nodes.setdefault(node, {"jid": jid, "mounts": report})
        return nodes


def _reports(returns):
    """(node, analysis) pairs: a node whose analyze failed returned text, not a mapping."""
    if not isinstance(returns, Mapping):
        return []
    return [(node, report) for node, report in returns.items() if isinstance(report, Mapping)]


def _via_salt(what, function, *args):
    """``function(*args)``, a call into Salt; Salt's exceptions become ApiErrors."""
    try:
        return function(*args)
    except Exception as err:  # pylint: disable=broad-except
        name = type(err).__name__
        status = salt_error(name, str(err))
        if status is None:
            raise  # not Salt's: Api.handle logs it under an incident id
        log.error("eos_api: %s: %s: %s", what, name, err)
        raise _salt_api_error(what, status, str(err)) from err


def _salt_api_error(what, status, message):
    if status == 503:
        return ApiError(503, "the salt-master is not answering; try again later")
    if status == 504:
        return ApiError(504, f"{what} did not finish in time; it may still be running")
    if status >= 500:
        return ApiError(500, f"{what} failed on the master; see the log")
    if status in (401, 403):
        # The token and its permissions were checked just before: the master and salt-api
        # disagree (different external_auth), or the token expired in between.
        return ApiError(403, f"the master refused {what} for this token")
    return ApiError(status, message)


def load_document(path=OPENAPI_DOCUMENT):
    """The OpenAPI document the API serves."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
