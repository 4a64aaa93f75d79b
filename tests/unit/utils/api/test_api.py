"""
The REST API's decisions (saltext.eos.utils.api) against a fake backend, and the tornado
wiring of the netapi module against the same fake, in process.
"""

import asyncio
import contextlib
import datetime
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from pytestshellutils.utils import ports

from saltext.eos.netapi import eos_api
from saltext.eos.utils import api
from saltext.eos.utils import errors
from saltext.eos.utils.api import service as service_module
from saltext.eos.utils.cluster import registry
from tests.support.memory_cache import MemoryCache

ADMIN_TOKEN = "a" * 40
READER_TOKEN = "b" * 40
TRACEBACK = (
    "Exception occurred in runner {fun}: Traceback (most recent call last):\n"
    '  File "/usr/lib/python3/dist-packages/salt/client/mixins.py", line 411, in low\n'
    "    data['return'] = func(*args, **kwargs)\n"
    "{name}: {message}\n"
)
INVALID_ARGUMENTS = "\nPassed invalid arguments: {message}\n\nUsage:\n\n    Accept a node.\n"


# Stand-ins for Salt's exceptions: the API knows them by class name only.
class SaltDaemonNotRunning(Exception):
    pass


class SaltClientTimeout(Exception):
    pass


class EauthAuthenticationError(Exception):
    pass


class SaltReqTimeoutError(Exception):
    pass


def ok(value):
    return {"success": True, "return": value}


def raised(fun, name, message):
    return {"success": False, "return": TRACEBACK.format(fun=fun, name=name, message=message)}


class FakeBackend:
    """
    Salt as the Api sees it: two users, runners answering from ``answers``, a registry in
    memory read through the registry's own view (``seed`` writes records as a master would),
    the mine's data in ``mine_data``.
    """

    def __init__(self):
        self.sessions = {
            ADMIN_TOKEN: {"user": "admin", "perms": ["@runner"]},
            READER_TOKEN: {"user": "reader", "perms": ["eos_cluster.info", "eos_cluster.nodes"]},
        }
        self.answers = {}
        self.calls = []
        self.logins = []
        self.session_lookups = []
        self.logged_out = []
        self.master_up = True
        self.registry = "ok"
        self.fired = []
        self.eauth_logins = []
        self.cache = MemoryCache()
        self.writer = registry.Registry(self.cache)
        self.view = registry.RegistryView(registry.Registry(self.cache))
        self.mine_data = {}
        self.mine_reads = []

    def login(self, username, password, eauth):
        self.logins.append(username)
        if (username, password, eauth) == ("admin", "secret", "pam"):
            return ADMIN_TOKEN
        return None

    def eauth_session(self, username, password, eauth):
        self.eauth_logins.append((username, eauth))
        if (password, eauth) != ("secret", "pam"):
            return None
        perms = {"admin": ["@runner"], "alertmanager": ["event.send"]}.get(username, [])
        return {"user": username, "eauth": eauth, "start": None, "expire": None, "perms": perms}

    def fire(self, tag, data):
        if not self.master_up:
            raise SaltDaemonNotRunning("the master's event bus did not take " + tag)
        self.fired.append((tag, data))

    def session(self, token):
        self.session_lookups.append(token)
        found = self.sessions.get(token)
        if found is None:
            return None
        return {"eauth": "pam", "start": 1.0, "expire": 2.0, **found}

    def may_run(self, session, fun, kwarg):
        return "@runner" in session["perms"] or fun in session["perms"]

    def run(self, token, fun, kwarg):
        self.calls.append((fun, kwarg))
        answer = self.answers.get(fun, ok({"fun": fun}))
        return answer(kwarg) if callable(answer) else answer

    def logout(self, token):
        self.logged_out.append(token)

    def master_running(self):
        return self.master_up

    def registry_state(self):
        return self.registry

    def snapshot(self):
        return self.view.snapshot()

    def cluster_settings(self):
        return "manual", dict(registry.SCALE_STARTS)

    def mine(self, fun):
        self.mine_reads.append(fun)
        return self.mine_data

    def seed(self, *records):
        """Store records as the master's runners do: under the registry's journalled lock."""
        with self.writer.lock:
            for record in records:
                self.writer.lock.touch(record["id"])
                self.cache.store(registry.NODES_BANK, record["id"], record)


@pytest.fixture
def backend():
    return FakeBackend()


@pytest.fixture
def service(backend):
    return api.Api(backend, max_body_bytes=4096, document={"openapi": "3.0.3"})


def send(
    service,
    method,
    path,
    body=None,
    token=ADMIN_TOKEN,
    raw=None,
    headers=None,
    query=None,
    client=None,
):
    all_headers = dict(headers or {})
    if token is not None:
        all_headers.setdefault("x-auth-token", token)
    if raw is None:
        raw = b"" if body is None else json.dumps(body).encode()
        if body is not None:
            all_headers.setdefault("content-type", "application/json")
    request = api.Request(method, api.PREFIX + path, query or {}, all_headers, raw, client)
    response = service.handle(request)
    json.loads(response.encode())  # every response is JSON
    return response


def error_of(response):
    assert response.body["status"] == "error", response
    assert set(response.body) == {"status", "error"}
    assert response.body["error"]["code"] == api.ERROR_CODES[response.status]
    return response.body["error"]


def data_of(response):
    assert response.body["status"] == "success", response
    assert set(response.body) == {"status", "data"}
    return response.body["data"]


# --- routing -----------------------------------------------------------------------------------


def test_every_route_has_an_operation():
    for route in api.ROUTES:
        assert callable(getattr(api.Api, route.operation)), route


def test_no_two_routes_share_a_method_and_path():
    keys = [(route.method, route.path) for route in api.ROUTES]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    ("method", "path", "operation", "params"),
    [
        ("GET", "/nodes", "list_nodes", {}),
        ("GET", "/nodes/web-1.example.com", "get_node", {"id": "web-1.example.com"}),
        ("DELETE", "/nodes/web-1", "remove_node", {"id": "web-1"}),
        ("POST", "/nodes/web%2D1/accept", "accept_node", {"id": "web-1"}),
        ("POST", "/nodes/a%2Fb/reject", "reject_node", {"id": "a/b"}),
        ("GET", "/openapi.json", "openapi", {}),
    ],
)
def test_route_for_matches_templates(method, path, operation, params):
    route, found = api.route_for(method, api.PREFIX + path)
    assert route.operation == operation
    assert found == params


@pytest.mark.parametrize(
    "path",
    ["/", "/api/v2/nodes", "/api/v1/nodes/", "/api/v1/node", "/api/v1", "/api/v1/health\n"],
)
def test_unknown_path_is_404(service, path):
    response = service.handle(api.Request("GET", path))
    assert response.status == 404
    assert error_of(response)["message"].startswith("no endpoint")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/nodes/web%2A/accept", "'*' at position 4 is a glob wildcard"),
        ("/nodes/a%2Cb", "',' at position 2"),
        ("/nodes/web-1%0A/reject", "'\\n' (U+000A) at position 6"),
        ("/nodes/-rf", "starts with '-'"),
    ],
)
def test_a_path_id_breaking_the_node_id_rule_is_400_and_reaches_no_runner(
    service, backend, path, message
):
    method = "GET" if path.count("/") == 2 else "POST"
    response = send(service, method, path, {} if method == "POST" else None)
    assert response.status == 400
    error = error_of(response)
    assert error["field"] == "id"
    assert message in error["message"]
    assert not backend.calls


def test_wrong_method_is_405_with_allow(service):
    response = send(service, "PUT", "/nodes/n1")
    assert response.status == 405
    assert response.headers["Allow"] == "DELETE, GET"
    assert "PUT" in error_of(response)["message"]


def test_wrong_method_is_405_before_authentication(service, backend):
    response = send(service, "GET", "/roles/apply", token=None)
    assert response.status == 405
    assert response.headers["Allow"] == "POST"


# --- envelopes ---------------------------------------------------------------------------------


def test_success_envelope():
    assert api.success({"a": 1}).body == {"status": "success", "data": {"a": 1}}
    assert api.success([], status=201).status == 201


def test_failure_envelope_names_the_field_only_when_given():
    assert api.failure(404, "gone").body == {
        "status": "error",
        "error": {"code": "not_found", "message": "gone"},
    }
    assert api.failure(400, "id: bad", field="id").body["error"]["field"] == "id"


def test_responses_encode_anything_a_runner_returns():
    response = api.success({"when": datetime.date(2024, 1, 2), "ids": ("a", "b")})
    assert json.loads(response.encode())["data"] == {"when": "2024-01-02", "ids": ["a", "b"]}


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route"), [route for route in api.ROUTES if not route.public], ids=lambda route: route.path
)
def test_every_protected_route_needs_a_token(service, backend, route):
    response = send(service, route.method, route.path.replace("{id}", "n1"), token=None)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="eos_api"'
    assert not backend.calls


@pytest.mark.parametrize("route", [route for route in api.ROUTES if route.public])
def test_public_routes_need_no_token(service, route):
    body = {"username": "admin", "password": "secret", "eauth": "pam"} if route.body else None
    response = send(service, route.method, route.path, body=body, token=None)
    assert response.status == 200


def test_unknown_token_is_401(service, backend):
    response = send(service, "GET", "/cluster/info", token="c" * 40)
    assert response.status == 401
    assert "expired" in error_of(response)["message"]
    assert not backend.calls


def test_a_token_that_is_not_a_salt_token_never_reaches_salt(service, backend):
    # Salt's localfs token store would read a file named after it.
    response = send(service, "GET", "/cluster/info", token="../../minions/x/data")
    assert response.status == 401
    assert backend.session_lookups == []


def test_bearer_token_is_accepted(service):
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    assert send(service, "GET", "/cluster/info", token=None, headers=headers).status == 200


def test_basic_authorization_is_refused(service):
    headers = {"authorization": "Basic YWRtaW46c2VjcmV0"}
    response = send(service, "GET", "/cluster/info", token=None, headers=headers)
    assert response.status == 401
    assert "Bearer" in error_of(response)["message"]


def test_two_different_tokens_are_refused(service):
    headers = {"authorization": f"Bearer {READER_TOKEN}"}
    response = send(service, "GET", "/cluster/info", headers=headers)
    assert response.status == 401


def test_login_returns_a_token_and_its_permissions(service):
    body = {"username": "admin", "password": "secret", "eauth": "pam"}
    data = data_of(send(service, "POST", "/login", body, token=None))
    assert data["token"] == ADMIN_TOKEN
    assert data["user"] == "admin"
    assert data["perms"] == ["@runner"]


def test_login_with_wrong_credentials_is_401(service):
    body = {"username": "admin", "password": "guess", "eauth": "pam"}
    assert send(service, "POST", "/login", body, token=None).status == 401


def test_login_with_an_existing_token(service):
    data = data_of(send(service, "POST", "/login", {"token": READER_TOKEN}, token=None))
    assert data["user"] == "reader"
    assert send(service, "POST", "/login", {"token": "f" * 40}, token=None).status == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "admin", "password": "secret"}, "eauth"),
        ({"password": "secret", "eauth": "pam"}, "username"),
        ({"token": ADMIN_TOKEN, "username": "admin"}, "token"),
        ({"username": 7, "password": "secret", "eauth": "pam"}, "username"),
        ({"username": "admin", "password": "", "eauth": "pam"}, "password"),
        ({"user": "admin"}, "user"),
        ({"token": ADMIN_TOKEN + "\n"}, "token"),
    ],
)
def test_login_names_the_field_at_fault(service, body, field):
    response = send(service, "POST", "/login", body, token=None)
    assert response.status == 400
    assert error_of(response)["field"] == field


def test_logout_revokes_the_token(service, backend):
    assert data_of(send(service, "POST", "/logout")) == {"logged_out": True}
    assert backend.logged_out == [ADMIN_TOKEN]


# --- failed logins -----------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def guarded(backend, clock):
    """An Api refusing logins after 3 failures within 60 seconds."""
    throttle = api.LoginThrottle(3, 60, clock=clock)
    return api.Api(backend, max_body_bytes=4096, document={}, throttle=throttle)


def log_in(service, username, password="guess", client="192.0.2.1"):
    body = {"username": username, "password": password, "eauth": "pam"}
    return send(service, "POST", "/login", body, token=None, client=client)


def test_failed_logins_for_a_user_are_refused_with_429_without_eauth(guarded, backend, clock):
    for client in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        assert log_in(guarded, "admin", client=client).status == 401
    clock.now += 20
    response = log_in(guarded, "admin", password="secret", client="192.0.2.9")
    assert response.status == 429
    assert response.headers["Retry-After"] == "40"
    assert error_of(response)["message"] == (
        "too many failed logins for user 'admin': try again in 40 seconds"
    )
    assert backend.logins == ["admin"] * 3
    # Other users from other addresses are not affected.
    assert log_in(guarded, "reader", client="192.0.2.9").status == 401


def test_failed_logins_from_an_address_are_refused_for_every_user(guarded, backend):
    for username in ("alice", "bob", "carol"):
        assert log_in(guarded, username).status == 401
    response = log_in(guarded, "admin", password="secret")
    assert response.status == 429
    assert "address 192.0.2.1" in error_of(response)["message"]
    assert backend.logins == ["alice", "bob", "carol"]
    assert data_of(log_in(guarded, "admin", password="secret", client="192.0.2.7"))["token"]


def test_logins_are_let_through_again_once_the_window_has_passed(guarded, backend, clock):
    for _ in range(3):
        log_in(guarded, "admin")
        clock.now += 10
    assert log_in(guarded, "admin", password="secret").status == 429
    clock.now = 1000.0 + 60  # the first failure is now 60 seconds old
    assert log_in(guarded, "admin").status == 401
    # That failure is counted: the next one waits for the second-oldest to age.
    response = log_in(guarded, "admin", password="secret")
    assert response.status == 429
    assert response.headers["Retry-After"] == "10"
    clock.now += 10
    assert data_of(log_in(guarded, "admin", password="secret"))["user"] == "admin"


def test_refused_logins_are_not_counted(guarded, clock):
    for _ in range(3):
        log_in(guarded, "admin")
    for _ in range(20):
        assert log_in(guarded, "admin").status == 429
    clock.now += 60
    assert data_of(log_in(guarded, "admin", password="secret"))["user"] == "admin"


def test_a_success_clears_the_users_failures_but_not_the_addresses(guarded):
    log_in(guarded, "admin", client="192.0.2.1")
    log_in(guarded, "admin", client="192.0.2.2")
    assert data_of(log_in(guarded, "admin", password="secret", client="192.0.2.2"))["token"]
    # admin's count starts from zero again: two more failures are not enough to refuse it.
    log_in(guarded, "admin", client="192.0.2.3")
    log_in(guarded, "admin", client="192.0.2.4")
    assert data_of(log_in(guarded, "admin", password="secret", client="192.0.2.5"))["token"]
    # 192.0.2.2 failed once, succeeded, and keeps that failure: two more and it is refused.
    log_in(guarded, "alice", client="192.0.2.2")
    log_in(guarded, "bob", client="192.0.2.2")
    assert log_in(guarded, "admin", password="secret", client="192.0.2.2").status == 429


def test_user_names_are_counted_ignoring_case(guarded):
    for name in ("Admin", "ADMIN", "admin"):
        log_in(guarded, name, client=None)
    assert log_in(guarded, "aDmIn", client=None).status == 429


def test_token_checks_and_bad_bodies_are_not_throttled(guarded, backend):
    for username in ("alice", "bob", "carol"):
        log_in(guarded, username)
    data = data_of(
        send(guarded, "POST", "/login", {"token": READER_TOKEN}, None, client="192.0.2.1")
    )
    assert data["user"] == "reader"
    response = send(guarded, "POST", "/login", {"username": "x"}, None, client="192.0.2.1")
    assert response.status == 400
    assert error_of(response)["field"] == "password"


def test_throttled_answers_refused_logins_before_any_worker(guarded, backend):
    def request(body, client="192.0.2.1", path="/login"):
        raw = json.dumps(body).encode()
        return api.Request("POST", api.PREFIX + path, {}, {}, raw, client)

    credentials = {"username": "admin", "password": "secret", "eauth": "pam"}
    assert guarded.throttled(request(credentials)) is None
    for username in ("alice", "bob", "carol"):
        log_in(guarded, username)
    refused = guarded.throttled(request(credentials))
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) == 60
    assert backend.logins == ["alice", "bob", "carol"]
    # Everything else is left to handle(): other clients, tokens, other paths, bad bodies.
    assert guarded.throttled(request(credentials, client="192.0.2.2")) is None
    assert guarded.throttled(request({"token": ADMIN_TOKEN})) is None
    assert guarded.throttled(request(credentials, path="/roles/apply")) is None
    raw = api.Request("POST", api.PREFIX + "/login", {}, {}, b"{nope", "192.0.2.1")
    assert guarded.throttled(raw) is None


def test_without_a_throttle_logins_are_not_limited(service, backend):
    for _ in range(50):
        assert log_in(service, "admin").status == 401
    assert data_of(log_in(service, "admin", password="secret"))["user"] == "admin"
    assert service.throttled(api.Request("POST", api.PREFIX + "/login", body=b"{}")) is None


def test_a_limit_of_zero_turns_the_throttle_off(backend):
    service = api.Api(backend, document={}, throttle=api.LoginThrottle(0, 60))
    for _ in range(20):
        assert log_in(service, "admin").status == 401
    assert service.throttle.tracked() == {"address": 0, "user": 0}


def test_tracking_is_bounded_and_forgets_the_oldest_first(clock):
    throttle = api.LoginThrottle(2, 60, clock=clock, max_keys=100)
    throttle.failed("192.0.2.1", "victim")
    throttle.failed("192.0.2.1", "victim")
    assert throttle.refusal(None, "victim") == api.LoginRefusal("user 'victim'", 60)
    for number in range(10_000):
        clock.now += 0.001
        throttle.failed(f"198.51.100.{number % 250}", f"random-{number}")
    assert throttle.tracked() == {"address": 100, "user": 100}
    # The oldest entries went first, so the newest names are still refused.
    assert throttle.refusal(None, "victim") is None
    throttle.failed(None, "random-9999")
    assert throttle.refusal(None, "random-9999") is not None


def test_failures_older_than_the_window_are_forgotten(clock):
    throttle = api.LoginThrottle(2, 60, clock=clock)
    throttle.failed("192.0.2.1", "alice")
    clock.now += 61
    assert throttle.refusal("192.0.2.1", "alice") is None
    assert throttle.tracked() == {"address": 0, "user": 0}


def test_reaching_the_limit_is_logged_once(clock, caplog):
    throttle = api.LoginThrottle(2, 60, clock=clock)
    for _ in range(2):
        throttle.failed(None, "alice")
    assert caplog.text.count("2 failed logins for user 'alice' within 60 seconds") == 1


# --- authorisation -----------------------------------------------------------------------------


def test_reader_is_403_for_accept_and_nothing_runs(service, backend):
    response = send(service, "POST", "/nodes/n1/accept", token=READER_TOKEN)
    assert response.status == 403
    message = error_of(response)["message"]
    assert "reader" in message
    assert "eos_cluster.accept" in message
    assert backend.calls == []


def test_reader_may_read(service, backend):
    backend.seed({"id": "n1", "status": "pending"})
    assert send(service, "GET", "/cluster/info", token=READER_TOKEN).status == 200
    assert send(service, "GET", "/nodes/n1", token=READER_TOKEN).status == 200
    assert backend.calls == [], "reads run no runner"


def test_the_master_refusing_after_the_check_is_403(service, backend):
    def refuse(kwarg):
        raise EauthAuthenticationError('Authentication failure of type "token" occurred.')

    backend.answers["eos_cluster.info"] = refuse
    assert send(service, "GET", "/cluster/info", query={"recount": ["true"]}).status == 403


# --- request bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"nodes": [', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"nodes": NaN}', "NaN is not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"nodes"', "must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'{"n": ' + b"9" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_bad_json_is_400_naming_the_body(raw, message):
    service = api.Api(FakeBackend(), max_body_bytes=1024 * 1024)
    response = send(service, "POST", "/roles/calculate", raw=raw)
    assert response.status == 400
    error = error_of(response)
    assert error["field"] == "body"
    assert message in error["message"]


def test_an_empty_body_is_an_empty_object(service, backend):
    assert send(service, "POST", "/roles/apply").status == 200
    assert backend.calls == [("eos_roles.apply", {})]


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/merge+json"]
)
def test_json_media_types_are_read(service, content_type):
    headers = {"content-type": content_type}
    assert send(service, "POST", "/roles/apply", raw=b"{}", headers=headers).status == 200


def test_a_form_body_is_415(service, backend):
    headers = {"content-type": "application/x-www-form-urlencoded"}
    response = send(service, "POST", "/roles/calculate", raw=b"nodes=1", headers=headers)
    assert response.status == 415
    assert "application/json" in error_of(response)["message"]
    assert backend.calls == []


def test_a_body_over_the_limit_is_413(service, backend):
    response = send(service, "POST", "/roles/calculate", raw=b"{" + b" " * 5000 + b"}")
    assert response.status == 413
    assert "4096" in error_of(response)["message"]
    assert backend.calls == []


def test_a_declared_length_over_the_limit_is_413(service):
    assert service.declared_too_large("4097").status == 413
    assert service.declared_too_large("4096") is None
    assert service.declared_too_large(None) is None


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "id", "is required"),
        ({"id": "n1", "colour": "red"}, "colour", "unknown field"),
        ({"id": 7}, "id", "not a non-empty string"),
        ({"id": "a/b"}, "id", "'a/b'"),
        ({"id": ".hidden"}, "id", "starts with '.'"),
        ({"id": "-n1"}, "id", "starts with '-'"),
        ({"id": "node 1"}, "id", "' ' (a space) at position 5"),
        ({"id": "web*"}, "id", "'*' at position 4 is a glob wildcard"),
        ({"id": "web-1\n"}, "id", "'\\n' (U+000A) at position 6"),
        ({"id": "n" * 254}, "id", "254 characters, longer than 253"),
        ({"id": "n1", "address": "not an address"}, "address", "host name or an IP"),
        ({"id": "n1", "address": "evil.example.com\n"}, "address", "host name or an IP"),
        ({"id": "n1", "preferred_role": "data\n"}, "preferred_role", "not a role name"),
        ({"id": "n1", "address": "-bad.example.com"}, "address", "host name or an IP"),
        ({"id": "n1", "preferred_role": "Data!"}, "preferred_role", "not a role name"),
        ({"id": "n1", "labels": ["team"]}, "labels", "not an object"),
        ({"id": "n1", "labels": {"team": 7}}, "labels.team", "not a string"),
        ({"id": "n1", "labels": {f"k{i}": "v" for i in range(65)}}, "labels", "over the cap"),
        ({"id": "n1", "resources": "big"}, "resources", "not an object"),
    ],
)
def test_invalid_register_fields_are_400_naming_them(service, backend, body, field, message):
    response = send(service, "POST", "/cluster/register", body)
    assert response.status == 400
    error = error_of(response)
    assert error["field"] == field
    assert error["message"].startswith(f"{field}: ")
    assert message in error["message"]
    assert backend.calls == []


@pytest.mark.parametrize("address", ["10.0.0.7", "2001:db8::7", "web-1.dc1.example.com", "n1"])
def test_addresses_accepted(address):
    assert api.check_address(address)


def test_register_is_201_with_the_node_location(service, backend):
    backend.answers["eos_cluster.preregister"] = lambda kwarg: ok(
        {"id": kwarg["node_id"], "status": "pending"}
    )
    body = {
        "id": "web_1.example",
        "address": "10.0.0.7",
        "resources": {"cpu_cores": 8, "memory_bytes": 1},
        "preferred_role": "data",
        "labels": {"team": "storage"},
    }
    response = send(service, "POST", "/cluster/register", body)
    assert response.status == 201
    assert response.headers["Location"] == "/api/v1/nodes/web_1.example"
    assert data_of(response) == {"id": "web_1.example", "status": "pending"}
    kwarg = {key: value for key, value in body.items() if key != "id"}
    assert backend.calls == [("eos_cluster.preregister", {"node_id": "web_1.example", **kwarg})]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"nodes": "all"}, "nodes"),
        ({"nodes": []}, "nodes"),
        ({"nodes": [{"id": "a"}, 3]}, "nodes[1]"),
        ({"nodes": [{}] * (api.MAX_WHAT_IF_NODES + 1)}, "nodes"),
        ({"scale": "small"}, "scale"),
    ],
)
def test_invalid_calculate_fields_are_400(body, field):
    service = api.Api(FakeBackend(), max_body_bytes=1024 * 1024)
    response = send(service, "POST", "/roles/calculate", body)
    assert response.status == 400
    assert error_of(response)["field"] == field


def test_calculate_passes_the_what_if_nodes(service, backend):
    nodes = [{"id": "n1", "cpu": 4, "memory_gb": 16, "disk_gb": 100}]
    assert send(service, "POST", "/roles/calculate", {"nodes": nodes}).status == 200
    assert backend.calls == [("eos_roles.calculate", {"nodes": nodes})]


def test_actions_take_no_fields(service):
    response = send(service, "POST", "/nodes/n1/accept", {"force": True})
    assert response.status == 400
    assert error_of(response)["field"] == "force"


# --- query parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": ["sleeping"]}, "status"),
        ({"status": ["pending", "accepted"]}, "status"),
        ({"limit": ["0"]}, "limit"),
        ({"limit": ["ten"]}, "limit"),
        ({"limit": ["-1"]}, "limit"),
        ({"offset": ["1.5"]}, "offset"),
        ({"sort": ["id"]}, "sort"),
    ],
)
def test_invalid_query_parameters_are_400(service, query, field):
    response = send(service, "GET", "/nodes", query=query)
    assert response.status == 400
    assert error_of(response)["field"] == field


def test_routes_without_parameters_refuse_them(service):
    response = send(service, "GET", "/storage/report", query={"tgt": ["*"]})
    assert response.status == 400
    assert error_of(response)["field"] == "tgt"


def test_nodes_are_paged(service, backend):
    records = [{"id": f"n{i}", "status": "pending"} for i in range(5)]
    backend.seed(*records, {"id": "m0", "status": "active"})
    query = {"status": ["pending"], "limit": ["2"], "offset": ["1"]}
    data = data_of(send(service, "GET", "/nodes", query=query))
    cursor = data.pop("next_cursor")
    assert data == {"nodes": records[1:3], "total": 5, "offset": 1, "limit": 2}
    following = data_of(
        send(service, "GET", "/nodes", query={"status": ["pending"], "cursor": [cursor]})
    )
    assert following["nodes"] == records[3:]
    assert following["next_cursor"] is None
    assert backend.calls == []


def test_recount_is_passed_to_info(service, backend):
    send(service, "GET", "/cluster/info", query={"recount": ["true"]})
    assert backend.calls == [("eos_cluster.info", {"recount": True})]


# --- Salt's answers ----------------------------------------------------------------------------


def salt_message(err):
    """The message of the Salt exception a runner raises for the EOS error ``err``."""
    return str(errors.to_salt(err))


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (registry.UnknownNode("ghost: no such node in the registry"), 404),
        # An invalid argument whose text happens to read like an unknown node stays a 400.
        (registry.InvalidPayload("resources: no such node field 'x'"), 400),
    ],
)
def test_the_status_of_a_runner_error_follows_its_type_not_its_wording(
    service, backend, raised, status
):
    backend.answers["eos_cluster.accept"] = {
        "success": True,
        "return": INVALID_ARGUMENTS.format(message=salt_message(raised)),
    }
    response = send(service, "POST", "/nodes/ghost/accept")
    assert response.status == status
    assert error_of(response)["message"] == str(raised), "the code is stripped"


def test_unknown_node_in_the_list_is_404(service, backend):
    backend.seed({"id": "n1", "status": "pending"})
    response = send(service, "GET", "/nodes/ghost")
    assert response.status == 404
    assert "ghost" in error_of(response)["message"]


def test_a_forbidden_transition_is_409(service, backend):
    message = "n1: cannot go from active to pending; from active it may go to failed, rejected"
    backend.answers["eos_cluster.accept"] = raised(
        "eos_cluster.accept",
        "salt.exceptions.SaltInvocationError",
        salt_message(registry.InvalidTransition(message)),
    )
    response = send(service, "POST", "/nodes/n1/accept")
    assert response.status == 409
    assert error_of(response)["message"] == message


def test_a_runner_invocation_error_is_400_with_its_message(service, backend):
    message = "nodes[0] (id x): missing cpu"
    backend.answers["eos_roles.calculate"] = {
        "success": True,
        "return": INVALID_ARGUMENTS.format(message=message),
    }
    response = send(service, "POST", "/roles/calculate", {"nodes": [{"id": "x"}]})
    assert response.status == 400
    assert error_of(response)["message"] == message


def test_a_missing_runner_is_501(service, backend):
    backend.answers["eos_cluster.preregister"] = raised(
        "eos_cluster.preregister",
        "salt.exceptions.CommandExecutionError",
        "'eos_cluster.preregister' is not available.",
    )
    response = send(service, "POST", "/cluster/register", {"id": "n1"})
    assert response.status == 501
    assert "eos_cluster.preregister" in error_of(response)["message"]


def test_a_configuration_error_is_500_with_its_message(service, backend):
    message = "eos:accept: 'sometimes' is not manual, auto or a mapping"
    backend.answers["eos_cluster.info"] = raised(
        "eos_cluster.info", "salt.exceptions.CommandExecutionError", message
    )
    response = send(service, "GET", "/cluster/info", query={"recount": ["true"]})
    assert response.status == 500
    assert error_of(response)["message"] == message


def test_a_runner_crash_is_500_without_its_traceback(service, backend):
    backend.answers["eos_cluster.info"] = raised(
        "eos_cluster.info", "AttributeError", "module has no attribute 'secret_path'"
    )
    response = send(service, "GET", "/cluster/info", query={"recount": ["true"]})
    assert response.status == 500
    text = response.encode().decode()
    assert "Traceback" not in text
    assert "secret_path" not in text
    assert "mixins.py" not in text


def test_arguments_the_runner_does_not_take_are_500(service, backend):
    message = "accept() got an unexpected keyword argument 'node_id'"
    backend.answers["eos_cluster.accept"] = {
        "success": True,
        "return": INVALID_ARGUMENTS.format(message=message),
    }
    response = send(service, "POST", "/nodes/n1/accept")
    assert response.status == 500
    assert "node_id" not in error_of(response)["message"]


def test_a_refusal_without_exception_is_400(service, backend):
    backend.answers["eos_cluster.remove"] = {
        "success": False,
        "return": {"id": "n1", "comment": "refused: busy"},
    }
    response = send(service, "DELETE", "/nodes/n1")
    assert response.status == 400
    assert "refused: busy" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("exception", "status"), [(SaltDaemonNotRunning, 503), (SaltClientTimeout, 504)]
)
def test_the_master_not_answering(service, backend, exception, status):
    def fail(kwarg):
        raise exception("/var/run/salt/master/workers.ipc: no such file")

    backend.answers["eos_cluster.info"] = fail
    response = send(service, "GET", "/cluster/info", query={"recount": ["true"]})
    assert response.status == status
    assert "workers.ipc" not in error_of(response)["message"]


def test_login_while_the_master_is_down_is_503(service, backend, monkeypatch):
    def no_answer(*credentials):
        raise SaltReqTimeoutError("Message timed out")

    monkeypatch.setattr(backend, "login", no_answer)
    body = {"username": "admin", "password": "secret", "eauth": "pam"}
    response = send(service, "POST", "/login", body, token=None)
    assert response.status == 503
    assert "secret" not in response.encode().decode()


def test_long_names_are_cut_short_in_messages(service):
    response = send(service, "POST", "/nodes/n1/accept", {"x" * 4000: 1})
    assert response.status == 400
    assert len(response.encode()) < 400


def test_an_unexpected_failure_is_500_with_an_incident_id(service, backend, caplog):
    def fail(kwarg):
        raise RuntimeError("connection to /secret/socket lost")

    backend.answers["eos_cluster.info"] = fail
    response = send(service, "GET", "/cluster/info", query={"recount": ["true"]})
    assert response.status == 500
    message = error_of(response)["message"]
    assert "incident" in message
    assert "/secret/socket" not in response.encode().decode()
    incident = message.split("incident ")[1].split(")")[0]
    assert incident in caplog.text


def test_runner_exception_parsing():
    text = TRACEBACK.format(fun="f", name="salt.exceptions.SaltInvocationError", message="a: b")
    assert api.runner_exception(text) == ("SaltInvocationError", "a: b")
    chained = text + "\nDuring handling of the above exception, another exception occurred:\n"
    chained += 'Traceback (most recent call last):\n  File "x.py", line 1, in f\n    g()\n'
    chained += "ValueError: second\nline two\n  indented three\n"
    assert api.runner_exception(chained) == ("ValueError", "second\nline two\n  indented three")
    assert api.runner_exception({"id": "n1"}) == (None, None)
    assert api.runner_exception("Exception in the name of a node") == (None, None)


# --- health, documents and the storage report --------------------------------------------------


def test_health(service, backend):
    data = data_of(send(service, "GET", "/health", token=None))
    assert data["status"] == "ok"
    assert data["api_version"] == api.API_VERSION
    backend.master_up = False
    data = data_of(send(service, "GET", "/health", token=None))
    assert data == {**data, "status": "degraded", "master": "not running"}


def test_health_reports_an_unreadable_registry(service, backend):
    backend.registry = "unavailable"
    assert data_of(send(service, "GET", "/health", token=None))["status"] == "degraded"


def test_the_health_watch_answers_its_latest_check(backend):
    clock = Clock()
    watch = api.HealthWatch(backend, api.API_VERSION, clock=clock)
    assert watch.answer()["status"] == "degraded"
    assert watch.answer()["problem"] == "not checked yet"
    watch.check()
    clock.now += 0.5
    answer = watch.answer()
    assert (answer["status"], answer["checked_seconds_ago"]) == ("ok", 0.5)
    backend.master_up = False  # seen by the next check only
    assert watch.answer()["status"] == "ok"
    watch.check()
    assert watch.answer()["master"] == "not running"


def test_a_check_that_stopped_finishing_makes_health_degraded(backend):
    clock = Clock()
    watch = api.HealthWatch(backend, api.API_VERSION, clock=clock)
    watch.check()
    clock.now += api.STALE_AFTER_SECONDS + 5
    answer = watch.answer()
    assert (answer["status"], answer["registry"], answer["master"]) == (
        "degraded",
        "unknown",
        "unknown",
    )
    assert "15 s old" in answer["problem"]


def test_served_health_answers_at_once_while_its_check_hangs(backend, monkeypatch):
    monkeypatch.setattr(api.health, "STALE_AFTER_SECONDS", 1.0)
    hang = threading.Event()
    checks = []

    def master_running():
        checks.append(1)
        if len(checks) > 1:
            hang.wait(20)
        return True

    backend.master_running = master_running
    with Served(backend) as served:
        status, _, raw = http_call(served.port, "GET", "/health")
        assert (status, json.loads(raw)["data"]["status"]) == (200, "ok")
        threading.Event().wait(api.health.STALE_AFTER_SECONDS + 1.5)
        began = time.perf_counter()
        status, _, raw = http_call(served.port, "GET", "/health")
        took = time.perf_counter() - began
        hang.set()
    assert status == 200
    assert json.loads(raw)["data"]["status"] == "degraded"
    assert took < 1.0


def test_openapi_is_served_without_an_envelope(service):
    assert send(service, "GET", "/openapi.json", token=None).body == {"openapi": "3.0.3"}


def test_storage_report_from_the_mine(service, backend):
    backend.mine_data = {"n1": {"/": {"level": "none"}}, "n2": "analyze failed"}
    data = data_of(send(service, "GET", "/storage/report"))
    assert data == {
        "source": "mine",
        "nodes": {"n1": {"jid": None, "mounts": {"/": {"level": "none"}}}},
    }
    assert backend.mine_reads == ["eos_storage.analyze"]
    assert backend.calls == [], "the mine is read in process, not by a runner"


def test_storage_report_needs_the_mine_runner_permission(service, backend):
    backend.mine_data = {"n1": {"/": {"level": "none"}}}
    response = send(service, "GET", "/storage/report", token=READER_TOKEN)
    assert response.status == 403
    assert "mine.get" in error_of(response)["message"]
    assert backend.mine_reads == []


def test_storage_report_falls_back_to_the_newest_jobs(service, backend):
    backend.answers["jobs.list_jobs"] = ok({"20240101000000000001": {}, "20240102000000000001": {}})
    returns = {
        "20240102000000000001": {"n1": {"/": {"usage_percent": 2}}},
        "20240101000000000001": {"n1": {"/": {"usage_percent": 1}}, "n2": {"/": {}}},
    }
    backend.answers["jobs.lookup_jid"] = lambda kwarg: ok(returns[kwarg["jid"]])
    data = data_of(send(service, "GET", "/storage/report"))
    assert data["source"] == "job_cache"
    assert data["nodes"]["n1"] == {
        "jid": "20240102000000000001",
        "mounts": {"/": {"usage_percent": 2}},
    }
    assert data["nodes"]["n2"]["jid"] == "20240101000000000001"


def test_storage_report_without_job_cache_permission(service, backend):
    backend.sessions[READER_TOKEN]["perms"].append("mine.get")
    data = data_of(send(service, "GET", "/storage/report", token=READER_TOKEN))
    assert data["source"] == "none"
    assert "jobs.list_jobs" in data["note"]
    assert backend.calls == []


# --- nothing leaks -----------------------------------------------------------------------------

METHODS = st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"])
PATHS = st.one_of(
    st.sampled_from([api.PREFIX + route.path for route in api.ROUTES]).map(
        lambda path: path.replace("{id}", "n1")
    ),
    st.text(max_size=40).map(lambda tail: f"{api.PREFIX}/{tail}"),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
BODIES = st.one_of(
    st.binary(max_size=64),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(
        st.sampled_from(["id", "address", "nodes", "labels", "token", "username", "eauth"]),
        JSON_VALUES,
        max_size=4,
    ).map(lambda value: json.dumps(value).encode()),
)
RUNNER_ANSWERS = st.one_of(
    JSON_VALUES.map(ok),
    st.builds(
        raised, st.just("f"), st.sampled_from(["SaltInvocationError", "KeyError"]), st.text()
    ),
    st.text().map(lambda text: {"success": True, "return": text}),
    JSON_VALUES,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=METHODS,
    path=PATHS,
    body=BODIES,
    token=st.sampled_from([ADMIN_TOKEN, READER_TOKEN, None, "zz"]),
    answer=RUNNER_ANSWERS,
)
def test_no_request_gets_a_traceback(method, path, body, token, answer):
    backend = FakeBackend()
    backend.answers = {route.runners[0]: answer for route in api.ROUTES if route.runners}
    backend.answers.update({"jobs.list_jobs": answer, "jobs.lookup_jid": answer})
    service = api.Api(backend, max_body_bytes=4096, document={})
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["x-auth-token"] = token
    response = service.handle(api.Request(method, path, {}, headers, body))
    text = response.encode().decode()
    assert "Traceback" not in text
    assert 'File "' not in text
    assert response.status in (200, 201) or response.status in api.ERROR_CODES
    if response.status >= 400:
        error_of(response)


# --- settings ----------------------------------------------------------------------------------


def test_default_settings():
    checked = api.settings({})
    assert checked.host == "127.0.0.1"
    assert checked.port == api.DEFAULT_SETTINGS["port"]
    assert checked.max_body_bytes == 1024 * 1024
    assert not checked.tls
    assert (checked.login_failures, checked.login_window) == (5, 300)
    assert api.settings(None) == checked


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ([], "eos_api: [] is not a mapping"),
        ({"prot": 1}, "unknown key 'prot'"),
        ({"port": "8090"}, "eos_api:port: '8090' is not a whole number"),
        ({"port": 70000}, "eos_api:port: 70000 is outside 1..65535"),
        ({"max_body_bytes": 10}, "eos_api:max_body_bytes: 10 is outside"),
        ({"runner_timeout": 0}, "eos_api:runner_timeout: 0"),
        ({"threads": True}, "eos_api:threads: True is not a whole number"),
        ({"host": ""}, "eos_api:host: '' is not a non-empty string"),
        ({"ssl_key": "/k.pem"}, "eos_api:ssl_key: set, but eos_api:ssl_crt is not"),
        ({"host": "0.0.0.0"}, "eos_api:host: '0.0.0.0' is reachable from other hosts"),
        ({"host": "api.example.com"}, "no eos_api:ssl_crt is set"),
        ({"allow_plain_http": "yes"}, "eos_api:allow_plain_http: 'yes' is not true or false"),
        ({"login_failures": -1}, "eos_api:login_failures: -1 is outside 0..1000"),
        ({"login_failures": "5"}, "eos_api:login_failures: '5' is not a whole number"),
        ({"login_window": 0}, "eos_api:login_window: 0 is outside 1..86400"),
    ],
)
def test_invalid_settings_name_the_key(given, message):
    with pytest.raises(api.InvalidSettings, match=None) as err:
        api.settings(given)
    assert message in str(err.value)


def test_other_addresses_with_tls_or_explicit_plain_http():
    assert api.settings({"host": "0.0.0.0", "ssl_crt": "/c.pem", "ssl_key": "/k.pem"}).tls
    assert not api.settings({"host": "10.0.0.1", "allow_plain_http": True}).tls
    assert api.settings({"host": "::1"}).host == "::1"
    assert api.settings({"host": "localhost"}).host == "localhost"


# --- the netapi module -------------------------------------------------------------------------


@pytest.fixture
def configure_loader_modules():
    return {eos_api: {"__opts__": {}}}


def test_the_module_loads_only_when_configured():
    assert eos_api.__virtual__() == (False, "eos_api is not configured in the master config")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(eos_api.__opts__, "eos_api", {})
        assert eos_api.__virtual__() == "eos_api"


@pytest.mark.parametrize(
    ("opts", "logged"),
    [
        ({"eos_api": {"port": "8090"}, "netapi_enable_clients": ["runner"]}, "eos_api:port"),
        ({"eos_api": {"ssl_crt": "/no/such.crt"}, "netapi_enable_clients": ["runner"]}, "such"),
        ({"eos_api": {}, "netapi_enable_clients": ["local"]}, "netapi_enable_clients"),
    ],
)
def test_start_refuses_to_serve_with_a_clear_log(opts, logged, caplog):
    with pytest.MonkeyPatch.context() as patch:
        for key, value in opts.items():
            patch.setitem(eos_api.__opts__, key, value)
        assert eos_api.start() is None
    assert "eos_api: not starting" in caplog.text
    assert logged in caplog.text


class Served:
    """The netapi module's server, on a free loopback port, in a thread of this process."""

    def __init__(self, backend, tls=None, max_body_bytes=4096, threads=4, throttle=None):
        self.port = ports.get_unused_localhost_port()
        given = {"port": self.port, "max_body_bytes": max_body_bytes, "threads": threads}
        if tls:
            given.update(ssl_crt=tls["crt"], ssl_key=tls["key"])
        self.settings = api.settings(given)
        self.service = api.Api(backend, max_body_bytes, {"openapi": "3.0.3"}, throttle)
        self.context = eos_api._ssl_context(self.settings)
        self.ready = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self):
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        self.loop.call_soon(self.ready.set)
        await eos_api._serve(self.service, self.settings, self.context, self.stop)

    def __enter__(self):
        self.thread.start()
        self.ready.wait(10)
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            threading.Event().wait(0.05)
        raise RuntimeError("the server did not start")

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


@contextlib.contextmanager
def busy_runner(served, backend):
    """The thread of a recount that holds a runner worker until the block ends."""
    release = threading.Event()
    backend.answers["eos_cluster.info"] = lambda kwarg: release.wait(10) and ok({})
    busy = threading.Thread(
        target=http_call,
        args=(served.port, "GET", "/cluster/info?recount=true"),
        kwargs={"headers": {"X-Auth-Token": ADMIN_TOKEN}},
    )
    busy.start()
    for _ in range(100):
        if backend.calls:
            break
        threading.Event().wait(0.05)
    try:
        yield busy
    finally:
        release.set()
        busy.join(10)


def http_call(port, method, path, body=None, headers=None, context=None):
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        chunked = "Transfer-Encoding" in (headers or {})
        connection.request(
            method, api.PREFIX + path, body=body, headers=headers or {}, encode_chunked=chunked
        )
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def test_served_responses_are_json_with_safe_headers(backend):
    with Served(backend) as served:
        status, headers, raw = http_call(
            served.port, "GET", "/cluster/info", headers={"X-Auth-Token": ADMIN_TOKEN}
        )
        health_status, health_headers, _ = http_call(served.port, "GET", "/health")
    assert status == 200
    assert json.loads(raw)["status"] == "success"
    assert headers["Content-Type"] == "application/json; charset=UTF-8"
    # A registry read may be kept, if asked again (its ETag); the rest never.
    assert headers["Cache-Control"] == "private, no-cache"
    assert headers["ETag"]
    assert (health_status, health_headers["Cache-Control"]) == (200, "no-store")
    assert "ETag" not in health_headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in headers


def test_served_oversized_bodies_are_413_declared_or_chunked(backend):
    with Served(backend) as served:
        status, _, raw = http_call(served.port, "POST", "/roles/calculate", body=b"x" * 10_000)
        assert status == 413
        assert json.loads(raw)["error"]["code"] == "payload_too_large"
        chunks = iter([b"{" + b" " * 3000, b" " * 3000, b"}"])
        status, _, raw = http_call(
            served.port,
            "POST",
            "/roles/calculate",
            body=chunks,
            headers={"Transfer-Encoding": "chunked", "X-Auth-Token": ADMIN_TOKEN},
        )
        assert status == 413
    assert backend.calls == []


def test_served_refused_logins_need_no_free_worker(backend):
    throttle = api.LoginThrottle(3, 60)
    for _ in range(3):
        throttle.failed("127.0.0.1", None)
    with (
        Served(backend, threads=1, throttle=throttle) as served,
        busy_runner(served, backend) as busy,
    ):
        body = json.dumps({"username": "admin", "password": "secret", "eauth": "pam"})
        headers = {"Content-Type": "application/json"}
        status, response_headers, raw = http_call(served.port, "POST", "/login", body, headers)
        worker_still_busy = busy.is_alive()
    assert worker_still_busy  # the only worker thread was running the other request
    assert status == 429
    assert json.loads(raw)["error"]["code"] == "too_many_requests"
    assert 1 <= int(response_headers["Retry-After"]) <= 60
    assert backend.logins == []


def test_served_unknown_methods_get_the_envelope(backend):
    with Served(backend) as served:
        status, _, raw = http_call(served.port, "BREW", "/health")
        head_status, _, head_raw = http_call(served.port, "HEAD", "/health")
    assert status == 405
    assert json.loads(raw)["error"]["code"] == "method_not_allowed"
    assert head_status == 405
    assert head_raw == b""


@pytest.fixture
def certificate(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eos-api test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    crt = tmp_path / "api.crt"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = tmp_path / "api.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {"crt": str(crt), "key": str(key_file)}


def test_served_over_tls_with_the_configured_certificate(backend, certificate):
    client = ssl.create_default_context(cafile=certificate["crt"])
    with Served(backend, tls=certificate) as served:
        status, _, raw = http_call(served.port, "GET", "/health", context=client)
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            http_call(served.port, "GET", "/health")
    assert status == 200
    assert json.loads(raw)["data"]["status"] == "ok"


@pytest.mark.parametrize("status", ["unreachable", "down", "drained"])
def test_nodes_can_be_listed_by_lifecycle_state(service, backend, status):
    records = [{"id": "n1", "status": status, "roles": [], "liveness": {"missed_probes": 4}}]
    backend.seed(*records, {"id": "n2", "status": "active", "roles": []})
    data = data_of(send(service, "GET", "/nodes", query={"status": [status]}))
    assert data["nodes"] == records
    assert backend.calls == []


def test_the_openapi_document_lists_every_registry_status_for_the_filter():
    document = json.loads(service_module.OPENAPI_DOCUMENT.read_text())
    parameters = document["paths"]["/nodes"]["get"]["parameters"]
    (status,) = [parameter for parameter in parameters if parameter["name"] == "status"]
    assert status["schema"]["enum"] == list(registry.STATUSES)


# --- registry reads: pages, filters, entity tags -------------------------------------------------


def page_of(service, token=ADMIN_TOKEN, **query):
    response = send(service, "GET", "/nodes", token=token, query={k: [v] for k, v in query.items()})
    assert response.status == 200, response
    return data_of(response)


def test_pages_by_cursor_give_every_node_once_while_nodes_are_added(service, backend):
    backend.seed(*({"id": f"n{i:03}", "status": "active"} for i in range(0, 100, 2)))
    seen, cursor = [], None
    while True:
        query = {"limit": "7"} if cursor is None else {"limit": "7", "cursor": cursor}
        page = page_of(service, **query)
        seen += [record["id"] for record in page["nodes"]]
        # Nodes join between the pages, before and after the place the pages reached.
        backend.seed({"id": f"n{len(seen) * 2 + 1:03}", "status": "active"})
        backend.seed({"id": f"m{len(seen):03}", "status": "active"})
        cursor = page["next_cursor"]
        if cursor is None:
            break
    originals = [f"n{i:03}" for i in range(0, 100, 2)]
    assert len(seen) == len(set(seen)), "no node twice"
    assert set(originals) <= set(seen), "every node present all along"
    assert seen == sorted(seen)


def test_nodes_are_filtered_by_role_and_status(service, backend):
    backend.seed(
        {"id": "a", "status": "active", "roles": ["storage"]},
        {"id": "b", "status": "active", "roles": ["edge"]},
        {"id": "c", "status": "failed", "roles": ["storage"]},
    )
    assert [r["id"] for r in page_of(service, role="storage")["nodes"]] == ["a", "c"]
    both = page_of(service, role="storage", status="active")
    assert ([r["id"] for r in both["nodes"]], both["total"]) == (["a"], 1)


def test_the_reader_needs_the_runner_with_the_status_it_filters_by(service, backend):
    backend.sessions[READER_TOKEN]["perms"] = [
        {"eos_cluster.nodes": {"kwargs": {"status": "active"}}}
    ]
    backend.seed({"id": "a", "status": "active"})
    # The permission names the runner's argument: the check is the master's, with the same call.
    assert send(service, "GET", "/nodes", token=READER_TOKEN).status == 403


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"cursor": "!!"}, "not a cursor this API gave"),
        ({"cursor": "bm90IGpzb24"}, "not a cursor this API gave"),
        ({"cursor": api.make_cursor("a", {}), "offset": "2"}, "not both"),
        ({"cursor": api.make_cursor("a", {"status": "active"})}, "other filters"),
        ({"cursor": "x" * 2000}, "not a cursor this API gave"),
    ],
)
def test_a_bad_cursor_is_400_naming_it(service, backend, query, words):
    backend.seed({"id": "a", "status": "active"})
    response = send(service, "GET", "/nodes", query={k: [v] for k, v in query.items()})
    assert response.status == 400
    assert error_of(response)["field"] == "cursor"
    assert words in error_of(response)["message"]


@pytest.mark.parametrize(
    ("path", "query"),
    [("/cluster/info", {}), ("/nodes", {"limit": ["5"]}), ("/nodes/a", {})],
)
def test_a_poller_gets_304_until_the_registry_changes(service, backend, path, query):
    backend.seed({"id": "a", "status": "pending"})
    first = send(service, "GET", path, query=query)
    tag = first.headers["ETag"]
    again = send(service, "GET", path, query=query, headers={"if-none-match": tag})
    assert (again.status, again.body, again.headers["ETag"]) == (304, None, tag)
    weak = send(service, "GET", path, query=query, headers={"if-none-match": f'"x", W/{tag}'})
    assert weak.status == 304
    backend.seed({"id": "a", "status": "accepted"})
    changed = send(service, "GET", path, query=query, headers={"if-none-match": tag})
    assert changed.status == 200
    assert changed.headers["ETag"] != tag


def test_an_entity_tag_is_not_a_permission(service, backend):
    backend.seed({"id": "a", "status": "pending"})
    tag = send(service, "GET", "/nodes").headers["ETag"]
    response = send(service, "GET", "/nodes", token="c" * 40, headers={"if-none-match": tag})
    assert response.status == 401


def test_different_questions_have_different_tags(service, backend):
    backend.seed({"id": "a", "status": "pending"}, {"id": "b", "status": "active"})
    tags = {
        send(service, "GET", "/nodes", query=query).headers["ETag"]
        for query in ({}, {"status": ["active"]}, {"limit": ["1"]})
    }
    assert len(tags) == 3


def test_a_read_sees_a_write_made_just_before(service, backend):
    backend.writer.ensure("a", "its Salt key is pending")
    assert data_of(send(service, "GET", "/nodes/a"))["status"] == "pending"
    backend.writer.accept("a", "by hand")
    assert data_of(send(service, "GET", "/nodes/a"))["status"] == "accepted"
    info = data_of(send(service, "GET", "/cluster/info"))
    assert info["nodes"]["accepted"] == 1


def test_requests_go_to_the_pool_of_their_route(service):
    def pool(method, path):
        return service.pool_of(api.Request(method, api.PREFIX + path))

    assert pool("GET", "/health") == "liveness"
    assert pool("GET", "/openapi.json") == "liveness"
    assert pool("POST", "/login") == "login"
    assert pool("GET", "/nodes") == "read"
    assert pool("POST", "/nodes/a/accept") == "runner"
    assert pool("GET", "/nowhere") == "read"


def test_served_health_and_bad_tokens_answer_while_every_runner_worker_is_busy(backend):
    with Served(backend, threads=1) as served, busy_runner(served, backend) as busy:
        status, _, _ = http_call(served.port, "GET", "/health")
        wrong, _, _ = http_call(
            served.port, "POST", "/nodes/a/accept", "{}", {"X-Auth-Token": "c" * 40}
        )
        worker_still_busy = busy.is_alive()
    assert worker_still_busy  # the only runner worker was running the recount
    assert (status, wrong) == (200, 401)


def test_served_304_has_no_body(backend):
    backend.seed({"id": "a", "status": "pending"})
    with Served(backend) as served:
        headers = {"X-Auth-Token": ADMIN_TOKEN}
        _, first, _ = http_call(served.port, "GET", "/nodes/a", headers=headers)
        status, again, raw = http_call(
            served.port, "GET", "/nodes/a", headers={**headers, "If-None-Match": first["ETag"]}
        )
    assert (status, raw) == (304, b"")
    assert again["ETag"] == first["ETag"]


def test_an_unchanged_answer_is_sent_again_without_encoding_it_again(service, backend):
    backend.seed({"id": "a", "status": "pending"})
    first = service.handle(
        api.Request("GET", api.PREFIX + "/nodes", {}, {"x-auth-token": ADMIN_TOKEN})
    )
    again = service.handle(
        api.Request("GET", api.PREFIX + "/nodes", {}, {"x-auth-token": ADMIN_TOKEN})
    )
    assert again.raw is first.raw
    backend.seed({"id": "b", "status": "pending"})
    changed = service.handle(
        api.Request("GET", api.PREFIX + "/nodes", {}, {"x-auth-token": ADMIN_TOKEN})
    )
    assert [r["id"] for r in json.loads(changed.raw)["data"]["nodes"]] == ["a", "b"]


def test_the_kept_answers_are_bounded(service, backend, monkeypatch):
    monkeypatch.setattr(service_module, "KEPT_ANSWERS", 2)
    backend.seed({"id": "a", "status": "pending"})
    for limit in ("1", "2", "3"):
        assert send(service, "GET", "/nodes", query={"limit": [limit]}).status == 200
    assert len(service.kept) == 2
    assert service.kept_bytes == sum(len(response.raw) for response in service.kept.values())
