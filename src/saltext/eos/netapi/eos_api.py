"""
REST API for the EOS cluster: a salt-api netapi module serving JSON under ``/api/v1``.

salt-api starts it like ``rest_cherrypy``, on the master, with the master's configuration.
Callers log in with Salt's eauth (any backend: pam, file, ldap, ...) or bring a Salt token
issued by salt-api. Every endpoint stands for a runner, so the master's ``external_auth``
permissions decide who may do what: writes run that runner under the caller's token; reads
(``/cluster/info``, ``/nodes``, ``/nodes/{id}``, ``/storage/report``) check the same
permission, then read the registry and the mine from Salt's cache in this process, with an
``ETag`` a poller sends back as ``If-None-Match`` for a 304. docs/api.md lists every
endpoint and the runner each one needs; the OpenAPI 3 document is served at
``/api/v1/openapi.json``.

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
      threads: 4                  # registry reads, and runner calls, served at once (each)
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
import contextlib
import logging
import ssl
import threading

import salt.auth
import salt.cache
import salt.exceptions
import salt.netapi
import salt.utils.event
import salt.utils.mine
import salt.utils.minions
import tornado.httpserver
import tornado.web

from saltext.eos.utils import api
from saltext.eos.utils import config
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
# Workers of the pools that are not ``eos_api:threads`` wide: health and the document are
# quick, and logins wait for eauth, which may hold a failed one for seconds.
LIVENESS_THREADS = 2
LOGIN_THREADS = 2


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
    asyncio.run(_serve(service, settings, ssl_context, warm=backend.snapshot))


def _ssl_context(settings):
    if not settings.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.ssl_crt, settings.ssl_key)
    return context


def _pools(settings):
    """
    The worker pools by ``Route.pool``. Salt's clients block (eauth, the master's request
    channel), so requests run on worker threads, each kind in a pool of its own: health never
    waits behind a read, a read or a bad token never behind a runner job.
    """
    sizes = {
        "liveness": LIVENESS_THREADS,
        "login": LOGIN_THREADS,
        "read": settings.threads,
        "runner": settings.threads,
    }
    return {
        name: concurrent.futures.ThreadPoolExecutor(
            max_workers=size, thread_name_prefix=f"eos_api_{name}"
        )
        for name, size in sizes.items()
    }


async def _serve(service, settings, ssl_context, stop=None, warm=None):
    """
    Serve until ``stop`` (an asyncio.Event) is set; salt-api ends the process instead.
    ``warm``: run once on a read worker at the start (the first read of the registry).
    """
    pools = _pools(settings)
    if warm is not None:
        pools["read"].submit(_warm, warm)
    first_check = asyncio.Event()
    watch = asyncio.create_task(_watch_health(service.health_watch, pools["liveness"], first_check))
    # The first check before serving, so that the first probe gets a real answer; a check
    # that hangs delays the start by STALE_AFTER_SECONDS at most.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(first_check.wait(), api.STALE_AFTER_SECONDS)
    application = tornado.web.Application(
        [(r".*", RequestHandler, {"service": service, "pools": pools})]
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
        watch.cancel()
        for pool in pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


async def _watch_health(watch, pool, first_check):
    """Check the master and the registry every second, on a worker: /health answers from it."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.run_in_executor(pool, watch.check)
        except Exception as err:
            # The answer goes stale, and /health says degraded: never an exception here.
            log.warning("eos_api: the health check failed: %s", err)
        first_check.set()
        await asyncio.sleep(api.CHECK_INTERVAL_SECONDS)


def _warm(read):
    try:
        read()
    except Exception as err:
        # The first request reads it again, and answers the error to its caller.
        log.warning("eos_api: the first read of the registry failed: %s", err)


@tornado.web.stream_request_body
class RequestHandler(tornado.web.RequestHandler):
    """Hands every request to the Api; streams the body so an oversized one gets 413."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def initialize(self, service, pools):
        self.service = service
        self.pools = pools
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
        # Health from the latest check, and a login the throttle refuses, are answered here,
        # on the loop: neither waits for a worker thread.
        if self.service.is_health(request):
            self.respond(self.service.health_now())
            return
        throttled = self.service.throttled(request)
        if throttled is not None:
            self.respond(throttled)
            return
        loop = asyncio.get_running_loop()
        pool = self.service.pool_of(request)
        if pool == "liveness":
            self.respond(await loop.run_in_executor(self.pools[pool], self.service.handle, request))
            return
        # Authentication and the checks on a read worker: a bad token is refused at once.
        route, prepared = await loop.run_in_executor(
            self.pools["read"], self.service.prepare, request
        )
        if route is None:
            self.respond(prepared)
            return
        self.respond(
            await loop.run_in_executor(
                self.pools[self.service.pool_for(route, prepared)],
                self.service.run,
                route,
                prepared,
                request,
            )
        )

    get = head = post = delete = patch = put = options = serve

    def respond(self, response):
        self.set_status(response.status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")  # the reads that may be kept say so
        self.set_header("X-Content-Type-Options", "nosniff")
        for name, value in response.headers.items():
            self.set_header(name, value)
        self.clear_header("Server")
        if response.status == 304 or self.request.method == "HEAD":
            self.finish()
            return
        self.finish(response.encode())

    def compute_etag(self):
        # The Api tags what it reads from the registry; tornado's body hash would tag the
        # rest, and only after building a body a 304 would have spared.
        return None

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
        self.view = None  # the registry's RegistryView, made by the first read
        self.view_lock = threading.Lock()

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

    def snapshot(self):
        """The registry as it is now (``registry.Snapshot``), read in this process."""
        with self.view_lock:
            if self.view is None:
                self.view = registry.RegistryView(registry.open_registry(self.opts))
        return self.view.snapshot()

    def cluster_settings(self):
        """(the acceptance policy's description, the scale boundaries): this master's config."""
        layers = config.Layers.from_salt(self.opts)
        boundaries = registry.scale_boundaries(layers)
        return registry.acceptance_policy(layers).describe(), boundaries

    def mine(self, fun):
        """
        {minion: data} of ``fun`` in the mine of every minion with an accepted key, read from
        the master's cache as the ``mine.get`` runner reads it. An entry a minion restricted
        to some targets (``allow_tgt``) is left out: the API is none of them.
        """
        if not hasattr(self.local, "minions"):
            self.local.minions = salt.utils.minions.CkMinions(self.opts)
            self.local.cache = salt.cache.factory(self.opts)
        found = {}
        for minion in self.local.minions.check_minions("*", "glob", greedy=False)["minions"]:
            entry = (self.local.cache.fetch("mine", minion) or {}).get(fun)
            if isinstance(entry, dict) and salt.utils.mine.MINE_ITEM_ACL_ID in entry:
                if "allow_tgt" in entry:
                    continue
                entry = entry[salt.utils.mine.MINE_ITEM_ACL_DATA]
            if entry is not None:
                found[minion] = entry
        return found

    def master_running(self):
        # salt-api's own test: the master's sockets exist.
        return self._clients().netapi._is_master_running()

    def registry_state(self):
        try:
            if not hasattr(self.local, "health_cache"):
                # Made once per thread: a new cache object loads Salt's cache modules again.
                self.local.health_cache = salt.cache.factory(self.opts)
            summary = self.local.health_cache.fetch(registry.CLUSTER_BANK, registry.SUMMARY_KEY)
        except Exception as err:
            log.warning("eos_api: the registry cannot be read: %s", err)
            return "unavailable"
        return "ok" if summary else "empty"
