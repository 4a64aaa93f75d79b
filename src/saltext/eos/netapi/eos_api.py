"""
REST API for the EOS cluster: a salt-api netapi module serving JSON under ``/api/v1``.

salt-api starts it like ``rest_cherrypy``, on the master, with the master's configuration.
Callers log in with Salt's eauth (any backend: pam, file, ldap, ...) or bring a Salt token
issued by salt-api, and every endpoint runs a runner under that token, so the master's
``external_auth`` permissions decide who may do what. docs/api.md lists every endpoint and
the runner each one needs; the OpenAPI 3 document is served at ``/api/v1/openapi.json``.

Master configuration. The module loads only when ``eos_api`` is set (``eos_api: {}`` takes
every default shown):

.. code-block:: yaml

    eos_api:
      host: 127.0.0.1             # loopback by default; another address needs TLS
      port: 8090
      ssl_crt: /etc/pki/tls/certs/eos-api.crt     # serve HTTPS with this certificate
      ssl_key: /etc/pki/tls/private/eos-api.key
      max_body_bytes: 1048576     # larger request bodies get 413
      runner_timeout: 120         # seconds to wait for a runner before 504
      threads: 4                  # requests served at once
      allow_plain_http: false     # true: plain HTTP on a non-loopback host (behind a TLS proxy)
      login_failures: 5           # failed logins per client address or user name ...
      login_window: 300           # ... within these seconds, then 429 until they are older
      webhook_eauth: null         # eauth for HTTP Basic credentials on POST /api/v1/alerts
    netapi_enable_clients:
      - runner
    external_auth:
      pam:
        ops%:
          - '@runner':
            - eos_cluster.*
            - eos_roles.*
            - mine.get
            - jobs.list_jobs
            - jobs.lookup_jid
        dashboard:                # reads only: every GET endpoint, no write
          - '@runner':
            - eos_cluster.info
            - eos_cluster.nodes
            - mine.get

``GET /api/v1/storage/report`` reads the minions' mine; each minion publishes its analysis
with (minion config):

.. code-block:: yaml

    mine_functions:
      eos_storage.analyze: []
    mine_interval: 60             # minutes

When the mine holds nothing it falls back to the job cache's latest ``eos_storage.analyze``
returns. The runners the API calls fire their events (``eos/cluster/node/<id>/<status>``,
``eos/roles/changed``).

``POST /api/v1/alerts`` is Alertmanager's webhook receiver. It takes a token or, with
``webhook_eauth`` set, HTTP Basic credentials (Alertmanager's ``basic_auth``), needs
``@runner event.send`` and fires one event per alert on the master's bus:

.. code-block:: text

    eos/alert/firing/EosStorageCritical
    {"status": "firing", "alertname": "EosStorageCritical",
     "labels": {"alertname": "EosStorageCritical", "node": "web-3", "mount": "/var", ...},
     "annotations": {...}, "starts_at": "...", "ends_at": "...", "fingerprint": "...",
     "generator_url": "...", "receiver": "eos", "group_key": "...", "external_url": "...",
     "sent_by": "alertmanager"}
"""

import asyncio
import concurrent.futures
import logging
import ssl
import threading

import salt.auth
import salt.cache
import salt.exceptions
import salt.netapi
import salt.utils.event
import tornado.httpserver
import tornado.web

from saltext.eos.utils import api
from saltext.eos.utils.cluster import registry

log = logging.getLogger(__name__)

__virtualname__ = "eos_api"

# A client that stops sending mid-request must not hold a connection for long.
BODY_TIMEOUT_SECONDS = 60
IDLE_CONNECTION_SECONDS = 120
# An oversized body up to this many times the limit is read and dropped before the 413 goes
# out: closing on unread data makes the kernel reset the connection, and the client would
# lose the answer. A larger one is cut off at once.
DRAIN_FACTOR = 4


def __virtual__():
    if "eos_api" not in __opts__:
        return False, "eos_api is not configured in the master config"
    return __virtualname__


def start():
    """
    Serve the API until salt-api stops. salt-api calls this; it is not run by hand.

    CLI Example:

    .. code-block:: bash

        salt-api -d
    """
    try:
        settings = api.settings(__opts__.get("eos_api"))
        ssl_context = _ssl_context(settings)
        document = api.load_document()
    except (OSError, ValueError) as err:
        # A bad eos_api setting (InvalidSettings), an unreadable certificate or document.
        log.error("eos_api: not starting: %s", err)
        return
    if "runner" not in (__opts__.get("netapi_enable_clients") or []):
        log.error(
            "eos_api: not starting: every endpoint runs a runner; add runner to "
            "netapi_enable_clients in the master config"
        )
        return
    backend = SaltBackend(__opts__, settings.runner_timeout)
    throttle = api.LoginThrottle(settings.login_failures, settings.login_window)
    service = api.Api(backend, settings.max_body_bytes, document, throttle, settings.webhook_eauth)
    asyncio.run(_serve(service, settings, ssl_context))


def _ssl_context(settings):
    if not settings.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.ssl_crt, settings.ssl_key)
    return context


async def _serve(service, settings, ssl_context, stop=None):
    """Serve until ``stop`` (an asyncio.Event) is set; salt-api ends the process instead."""
    # Salt's clients block (eauth, the master's request channel): they run on worker threads.
    executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=settings.threads, thread_name_prefix="eos_api"
    )
    application = tornado.web.Application(
        [(r".*", RequestHandler, {"service": service, "executor": executor})]
    )
    server = tornado.httpserver.HTTPServer(
        application,
        ssl_options=ssl_context,
        max_body_size=DRAIN_FACTOR * settings.max_body_bytes,
        body_timeout=BODY_TIMEOUT_SECONDS,
        idle_connection_timeout=IDLE_CONNECTION_SECONDS,
    )
    server.listen(settings.port, address=settings.host)
    scheme = "https" if settings.tls else "http"
    log.info("eos_api: serving %s://%s:%s%s", scheme, settings.host, settings.port, api.PREFIX)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        server.stop()
        executor.shutdown(wait=False, cancel_futures=True)


@tornado.web.stream_request_body
class RequestHandler(tornado.web.RequestHandler):
    """Hands every request to the Api; streams the body so an oversized one gets 413."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def initialize(self, service, executor):
        self.service = service
        self.executor = executor
        self.body = bytearray()
        self.refused = None

    def prepare(self):
        declared = self.request.headers.get("Content-Length")
        self.refused = self.service.declared_too_large(declared)
        if self.refused is not None and int(declared) > DRAIN_FACTOR * self.service.max_body_bytes:
            self.respond(self.refused)

    def data_received(self, chunk):
        if self.refused is not None:
            return
        self.body += chunk
        if len(self.body) > self.service.max_body_bytes:
            self.refused = self.service.too_large()
            self.body = bytearray()

    async def serve(self, *_):
        if self._finished:
            return
        if self.refused is not None:
            self.respond(self.refused)
            return
        request = api.Request(
            method=self.request.method,
            path=self.request.path,
            query={
                name: [value.decode("utf-8", "replace") for value in values]
                for name, values in self.request.query_arguments.items()
            },
            headers={name.lower(): value for name, value in self.request.headers.get_all()},
            body=bytes(self.body),
            client=self.request.remote_ip,
        )
        # A login the throttle refuses is answered here, without taking a worker thread.
        throttled = self.service.throttled(request)
        if throttled is not None:
            self.respond(throttled)
            return
        loop = asyncio.get_running_loop()
        self.respond(await loop.run_in_executor(self.executor, self.service.handle, request))

    get = head = post = delete = patch = put = options = serve

    def respond(self, response):
        self.set_status(response.status)
        for name, value in response.headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.clear_header("Server")
        self.finish(b"" if self.request.method == "HEAD" else response.encode())

    def write_error(self, status_code, **kwargs):
        # tornado's own refusals (an unknown method, a failure outside the Api) get the API's
        # envelope too, and never a traceback.
        status = status_code if status_code in api.ERROR_CODES else 500
        self.respond(api.failure(status, self._reason or "request failed"))


class SaltBackend:
    """The Api's view of Salt: eauth and tokens as salt-api uses them, runners via the master."""

    def __init__(self, opts, runner_timeout):
        self.opts = opts
        self.runner_timeout = runner_timeout
        self.local = threading.local()

    def _clients(self):
        # One set per worker thread: Salt's clients hold loaders and sockets of their own.
        if not hasattr(self.local, "loadauth"):
            self.local.loadauth = salt.auth.LoadAuth(self.opts)
            self.local.resolver = salt.auth.Resolver(self.opts)
            self.local.netapi = salt.netapi.NetapiClient(self.opts)
        return self.local

    def login(self, username, password, eauth):
        creds = {"username": username, "password": password, "eauth": eauth}
        # The master mints the token, in its own token store, as it does for rest_cherrypy.
        token = self._clients().resolver.mk_token(creds)
        return token.get("token") if isinstance(token, dict) else None

    def eauth_session(self, username, password, eauth):
        """The session of eauth credentials, as session() gives a token's; no token is made."""
        loadauth = self._clients().loadauth
        load = {"username": username, "password": password, "eauth": eauth}
        if not loadauth.authenticate_eauth(load):
            return None
        return {
            "user": username,
            "eauth": eauth,
            "start": None,
            "expire": None,
            "perms": loadauth.get_auth_list(load) or [],
        }

    def fire(self, tag, data):
        """Fire an event on the master's bus, as salt-api's own webhook does."""
        if not hasattr(self.local, "event"):
            self.local.event = salt.utils.event.get_master_event(
                self.opts, self.opts["sock_dir"], listen=False
            )
        if not self.local.event.fire_event(data, tag):
            raise salt.exceptions.SaltDaemonNotRunning(f"the master's event bus did not take {tag}")

    def session(self, token):
        loadauth = self._clients().loadauth
        data = loadauth.authenticate_token({"token": token})
        if not data:
            return None
        perms = loadauth.get_auth_list({"token": token}, token=data) or []
        return {
            "user": data["name"],
            "eauth": data["eauth"],
            "start": data["start"],
            "expire": data["expire"],
            "perms": perms,
        }

    def may_run(self, session, fun, kwarg):
        loadauth = self._clients().loadauth
        # The master's own test for a runner call, with the call's arguments in the shape
        # the master gives it, so permissions restricted by argument work here too.
        call = {"arg": [], "kwarg": kwarg}
        return loadauth.ckminions.runner_check(session["perms"], fun, call) is True

    def run(self, token, fun, kwarg):
        netapi = self._clients().netapi
        low = {
            "client": "runner",
            "fun": fun,
            "arg": [],
            "kwarg": kwarg,
            "token": token,
            "full_return": True,
            "timeout": self.runner_timeout,
        }
        # With full_return the runner client answers the job's whole return event.
        event = netapi.run(low)
        return event.get("data") if isinstance(event, dict) else event

    def logout(self, token):
        self._clients().loadauth.rm_token(token)

    def master_running(self):
        # salt-api's own test: the master's sockets exist.
        return self._clients().netapi._is_master_running()

    def registry_state(self):
        try:
            summary = salt.cache.factory(self.opts).fetch(
                registry.CLUSTER_BANK, registry.SUMMARY_KEY
            )
        except Exception as err:
            log.warning("eos_api: the registry cannot be read: %s", err)
            return "unavailable"
        return "ok" if summary else "empty"
