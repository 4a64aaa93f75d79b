"""The API itself: routing a request through its checks to Salt and back."""

import collections
import dataclasses
import json
import logging
import threading
import urllib.parse
import uuid
from collections.abc import Mapping

from saltext.eos import PACKAGE_ROOT
from saltext.eos.utils.cluster import registry

from .alerts import ALERT_RUNNER
from .alerts import alert_events
from .answers import ANALYZE_FUNCTION
from .answers import JOB_CACHE_RUNNERS
from .answers import MAX_REPORT_JOBS
from .answers import runner_result
from .answers import salt_error
from .envelope import ApiError
from .envelope import Response
from .envelope import failure
from .envelope import success
from .fields import _field_error
from .fields import basic_credentials
from .fields import bearer_token
from .fields import check_fields
from .fields import check_node_id
from .fields import check_query
from .fields import json_object
from .fields import unauthorized
from .health import HealthWatch
from .logins import LoginThrottle
from .options import DEFAULT_SETTINGS
from .pages import entity_tag
from .pages import node_page
from .pages import not_modified
from .routes import PREFIX
from .routes import route_for

log = logging.getLogger(__name__)

API_VERSION = "1.2.0"
OPENAPI_DOCUMENT = PACKAGE_ROOT / "netapi" / "openapi.json"
# Encoded answers kept by entity tag: pollers of an unchanged registry asking the same
# question get the same bytes without encoding thousands of records again. Bounded in
# bytes: a whole 10,000-node listing is megabytes.
KEPT_ANSWERS = 64
KEPT_BYTES = 32 * 1024 * 1024


@dataclasses.dataclass
class Call:
    """What an operation gets: the request's checked parts and the caller's session."""

    params: Mapping
    query: Mapping
    body: Mapping
    token: str | None = None
    session: Mapping | None = None
    client: str | None = None
    if_none_match: str | None = None


class Api:
    """
    Serves Requests: ``handle(request) -> Response``. Blocking: run it off the event loop.

    ``throttle`` (a LoginThrottle) limits failed logins; None: no limit. ``throttled(request)``
    answers a refused login without blocking, so the server can refuse it on its event loop.
    ``webhook_eauth``: the eauth backend for HTTP Basic credentials on routes that take them
    (None: tokens only); a failed one counts as a failed login.
    """

    def __init__(
        self,
        backend,
        max_body_bytes=DEFAULT_SETTINGS["max_body_bytes"],
        document=None,
        throttle=None,
        webhook_eauth=None,
    ):
        self.backend = backend
        self.max_body_bytes = max_body_bytes
        self.document = document
        self.throttle = LoginThrottle(0, 1) if throttle is None else throttle
        self.webhook_eauth = webhook_eauth
        self.health_watch = HealthWatch(backend, API_VERSION)
        self.kept = collections.OrderedDict()  # entity tag: encoded Response
        self.kept_bytes = 0
        self.kept_lock = threading.Lock()

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

    def _check_throttle(self, client, username, status=429):
        refusal = self.throttle.refusal(client, username)
        if refusal is not None:
            raise ApiError(
                status,
                f"too many failed logins for {refusal.what}: try again in "
                f"{refusal.seconds} seconds",
                headers={"Retry-After": str(refusal.seconds)},
            )

    def handle(self, request):
        """The Response to ``request``: ``prepare`` it, then ``run`` it."""
        route, prepared = self.prepare(request)
        if route is None:
            return prepared
        return self.run(route, prepared, request)

    def pool_of(self, request):
        """
        The pool (``Route.pool``) whose workers run ``request``: ``liveness`` for the public
        reads, which must never wait behind other work; ``read`` for what is unknown.
        """
        try:
            return route_for(request.method, request.path)[0].pool
        except ApiError:
            return "read"

    def is_health(self, request):
        """Whether ``request`` asks ``GET /health``, which the server answers on its loop."""
        return (request.method, request.path) == ("GET", f"{PREFIX}/health")

    def health_now(self):
        """The Response to ``GET /health`` from the latest check; never blocks."""
        return success(self.health_watch.answer()).encoded()

    def pool_for(self, route, call):
        """The pool that runs a prepared call: a recount is a runner job, not a read."""
        if route.operation == "cluster_info" and call.query.get("recount"):
            return "runner"
        return route.pool

    def prepare(self, request):
        """
        ``(route, Call)`` for a request that passed routing, the size limit, authentication
        and the field checks, else ``(None, the error Response)``. Quick: a worker of the
        read pool runs it, so a bad token never waits for a runner.
        """
        try:
            route, params = route_for(request.method, request.path)
            if len(request.body) > self.max_body_bytes:
                return None, self.too_large()
            return route, self._call(route, params, request)
        except ApiError as err:
            return None, failure(err.status, err.message, err.field, err.headers)
        except Exception:
            return None, _incident(request)

    def run(self, route, call, request):
        """The Response of a prepared call, from the worker pool of its route."""
        try:
            return getattr(self, route.operation)(call).encoded()
        except ApiError as err:
            return failure(err.status, err.message, err.field, err.headers)
        except Exception:
            return _incident(request)

    def _call(self, route, params, request):
        token = session = None
        if not route.public:
            token, session = self._authenticate(route, request)
        body = {} if route.body is None else check_fields(json_object(request), route.body)
        if "id" in params:
            params = {**params, "id": check_node_id(params["id"])}
        query = check_query(request.query, route.query)
        if_none_match = request.headers.get("if-none-match")
        return Call(params, query, body, token, session, request.client, if_none_match)

    def _authenticate(self, route, request):
        """(token, session) of the caller: a Salt token, or Basic credentials where allowed."""
        credentials = basic_credentials(request.headers) if route.basic_auth else None
        if credentials is None:
            token = bearer_token(request.headers)
            return token, self._session(token)
        return None, self._basic_session(request.client, *credentials)

    def _basic_session(self, client, username, password):
        if self.webhook_eauth is None:
            raise unauthorized(
                "Basic credentials are not accepted here: set eos_api:webhook_eauth on the "
                "master, or send a token"
            )
        # The address's failures only: failing logins in the webhook user's name from
        # elsewhere must not silence the alerts. And 503, not 429: Alertmanager drops a
        # notification answered 4xx and retries one answered 5xx.
        self._check_throttle(client, None, status=503)
        session = _via_salt(
            "the login", self.backend.eauth_session, username, password, self.webhook_eauth
        )
        if session is None:
            self.throttle.failed(client, username)
            raise unauthorized(f"username or password not accepted by eauth {self.webhook_eauth}")
        self.throttle.succeeded(username)
        return session

    def _session(self, token):
        session = _via_salt("the token check", self.backend.session, token)
        if session is None:
            raise unauthorized("the token is unknown or expired: log in again")
        return session

    def _permit(self, call, fun, kwarg):
        """ApiError 403 unless the caller's eauth allows the runner ``fun`` with ``kwarg``."""
        if not self.backend.may_run(call.session, fun, kwarg):
            raise ApiError(
                403,
                f"user {call.session['user']!r} may not run {fun} "
                f"(the master's external_auth must allow @runner {fun})",
            )

    def _runner(self, call, fun, kwarg=None):
        kwarg = kwarg or {}
        self._permit(call, fun, kwarg)
        return runner_result(fun, _via_salt(fun, self.backend.run, call.token, fun, kwarg))

    def _read(self, call, fun, kwarg, answer):
        """
        ``answer(snapshot)`` of the registry as it is now, read in this process, for a caller
        whose eauth allows the runner ``fun`` with ``kwarg`` (what the read stands for); 304
        when ``If-None-Match`` names the answer's tag.
        """
        self._permit(call, fun, kwarg)
        snapshot = _via_salt("the registry read", self.backend.snapshot)
        tag = entity_tag(snapshot, fun, kwarg, dict(call.params), dict(call.query))
        headers = {"ETag": tag, "Cache-Control": "private, no-cache"}
        if not_modified(call.if_none_match, tag):
            return Response(304, None, headers)
        kept = self._kept(tag)
        if kept is None:
            kept = self._keep(tag, success(answer(snapshot), headers=headers).encoded())
        return kept

    def _kept(self, tag):
        with self.kept_lock:
            if tag in self.kept:
                self.kept.move_to_end(tag)
            return self.kept.get(tag)

    def _keep(self, tag, response):
        size = len(response.raw)
        if size > KEPT_BYTES // 4:
            return response
        with self.kept_lock:
            if tag not in self.kept:
                self.kept[tag] = response
                self.kept_bytes += size
            while len(self.kept) > KEPT_ANSWERS or self.kept_bytes > KEPT_BYTES:
                _, dropped = self.kept.popitem(last=False)
                self.kept_bytes -= len(dropped.raw)
        return response

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
        """The health checked now (the server answers from its watch instead: ``health``)."""
        self.health_watch.check()
        return success(self.health_watch.answer())

    def openapi(self, call):
        return Response(200, self.document)

    def cluster_info(self, call):
        if call.query.get("recount"):
            # Recounting reads and rewrites the whole registry: the master's runner does it.
            return success(self._runner(call, "eos_cluster.info", dict(call.query)))
        accept, boundaries = self.backend.cluster_settings()
        return self._read(
            call,
            "eos_cluster.info",
            dict(call.query),
            lambda snapshot: registry.cluster_info(snapshot.summary, accept, boundaries),
        )

    def register_node(self, call):
        details = dict(call.body)
        node_id = details.pop("id")
        report = self._runner(call, "eos_cluster.preregister", {"node_id": node_id, **details})
        location = f"{PREFIX}/nodes/{urllib.parse.quote(node_id, safe='')}"
        return success(report, status=201, headers={"Location": location})

    def list_nodes(self, call):
        filters = {name: call.query[name] for name in ("status", "role") if name in call.query}
        kwarg = {"status": filters["status"]} if "status" in filters else {}
        return self._read(
            call,
            "eos_cluster.nodes",
            kwarg,
            lambda snapshot: node_page(
                snapshot,
                filters,
                limit=call.query.get("limit"),
                offset=call.query.get("offset", 0),
                cursor=call.query.get("cursor"),
            ),
        )

    def get_node(self, call):
        node_id = call.params["id"]

        def record(snapshot):
            if node_id not in snapshot.records:
                raise ApiError(404, f"{node_id}: no such node in the registry")
            return snapshot.records[node_id]

        return self._read(call, "eos_cluster.nodes", {}, record)

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
        self._permit(call, "mine.get", {"tgt": "*", "fun": ANALYZE_FUNCTION})
        mine = _via_salt("the mine read", self.backend.mine, ANALYZE_FUNCTION) or {}
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

    def receive_alerts(self, call):
        events, refused = alert_events(call.body, call.session["user"])
        # Every event is allowed before any is fired: a refusal leaves nothing half sent.
        for tag, data in events:
            self._permit(call, ALERT_RUNNER, {"tag": tag, "data": data})
        if refused:
            log.warning(
                "eos_api: %s of %s alerts from %s refused: %s",
                len(refused),
                len(call.body["alerts"]),
                call.session["user"],
                "; ".join(item["message"] for item in refused),
            )
        for tag, data in events:
            _via_salt("the event", self.backend.fire, tag, data)
        return success({"fired": [tag for tag, _ in events], "refused": refused})

    def _latest_analyses(self, call):
        jobs = self._runner(call, "jobs.list_jobs", {"search_function": ANALYZE_FUNCTION}) or {}
        nodes = {}
        for jid in sorted(jobs, reverse=True)[:MAX_REPORT_JOBS]:
            returns = self._runner(call, "jobs.lookup_jid", {"jid": jid}) or {}
            for node, report in _reports(returns):
                nodes.setdefault(node, {"jid": jid, "mounts": report})
        return nodes


def _incident(request):
    # The client gets an id to quote, never the traceback: that stays in the log.
    incident = uuid.uuid4().hex[:12]
    log.exception("eos_api: %s %s failed (incident %s)", request.method, request.path, incident)
    return failure(500, f"internal error (incident {incident}); see the salt-api log")


def _reports(returns):
    """(node, analysis) pairs: a node whose analyze failed returned text, not a mapping."""
    if not isinstance(returns, Mapping):
        return []
    return [(node, report) for node, report in returns.items() if isinstance(report, Mapping)]


def _via_salt(what, function, *args):
    """``function(*args)``, a call into Salt; Salt's exceptions become ApiErrors."""
    try:
        return function(*args)
    except Exception as err:
        name = type(err).__name__
        status, message = salt_error(name, str(err))
        if status is None:
            raise  # not Salt's: Api.handle logs it under an incident id
        log.error("eos_api: %s: %s: %s", what, name, err)
        raise _salt_api_error(what, status, message) from err


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
