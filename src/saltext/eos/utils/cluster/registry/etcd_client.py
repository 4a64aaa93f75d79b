"""
A small client of etcd's v3 JSON gateway, enough for the registry lock: leases, transactions
and, when ``etcd.username`` is set, ``/v3/auth/authenticate``.

Every request is ``POST <protocol>://<host>:<port>/v3/...`` with a JSON body, keys and values
base64-encoded, on the client URL Salt's etcd cache uses (``etcd.host``, ``etcd.port``,
``etcd.protocol``; ``etcd.ca_cert`` and ``etcd.cert`` for TLS). Standard library only: no
connection is kept, so a client survives ``fork``. Like Salt's etcd client, it ignores
``http_proxy``.

What goes wrong is told by type, from etcd's gRPC status code, never from its wording:
``EtcdUnreachable`` (no answer from the URL), ``EtcdAccessDenied`` (the credentials were
refused or may not do this) and ``EtcdError`` (any other refusal).
"""

import base64
import json
import ssl
import urllib.error
import urllib.request

from saltext.eos.utils import errors

# The gRPC status codes the gateway returns as an error's "code".
NOT_FOUND = 5
FAILED_PRECONDITION = 9  # from /v3/auth/authenticate: authentication is off
PERMISSION_DENIED = 7
UNAUTHENTICATED = 16


class EtcdError(errors.OperationFailed):
    """etcd refused or failed a request; the message names the URL and etcd's answer."""

    def __init__(self, message, grpc_code=None):
        super().__init__(message)
        self.grpc_code = grpc_code  # etcd's gRPC status code, when it gave one


class EtcdUnreachable(EtcdError):
    """No answer from the etcd URL: refused, timed out, or the TLS handshake failed."""


class EtcdAccessDenied(errors.InvalidConfig):
    """etcd refused ``etcd.username``/``etcd.password``, or that user may not use the key."""

    def __init__(self, message, grpc_code=None):
        super().__init__(message)
        self.grpc_code = grpc_code


class EtcdClient:
    """The v3 gateway at ``url`` (``http://127.0.0.1:2379``), as ``username`` when given."""

    def __init__(self, url, username=None, password=None, tls=None, timeout=60):
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self._token = None
        handlers = [urllib.request.ProxyHandler({})]
        if tls is not None:
            handlers.append(urllib.request.HTTPSHandler(context=tls))
        self._opener = urllib.request.build_opener(*handlers)

    @classmethod
    def from_opts(cls, opts):
        """The etcd server of Salt's etcd cache, from the same master settings."""
        protocol = opts.get("etcd.protocol", "http") or "http"
        host = opts.get("etcd.host", "127.0.0.1") or "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        tls = None
        if protocol == "https":
            tls = tls_context(opts.get("etcd.ca_cert"), opts.get("etcd.cert"))
        return cls(
            f"{protocol}://{host}:{opts.get('etcd.port', 2379)}",
            username=opts.get("etcd.username") or None,
            password=opts.get("etcd.password") or None,
            tls=tls,
            timeout=opts.get("etcd.read_timeout", 60),
        )

    # --- leases ------------------------------------------------------------------------------

    def grant(self, ttl_seconds):
        """A new lease of ``ttl_seconds`` (etcd may grant more: it has a minimum); its id."""
        return self.call("/v3/lease/grant", {"TTL": int(ttl_seconds)})["ID"]

    def keepalive(self, lease_id):
        """Renew the lease to its full TTL; the seconds it has now, 0 when it had expired."""
        answer = self.call("/v3/lease/keepalive", {"ID": lease_id})
        return int(answer.get("result", {}).get("TTL", 0))

    def revoke(self, lease_id):
        """End the lease, deleting its keys; False when it had already expired."""
        try:
            self.call("/v3/lease/revoke", {"ID": lease_id})
        except EtcdError as err:
            if err.grpc_code == NOT_FOUND:
                return False
            raise
        return True

    # --- keys --------------------------------------------------------------------------------

    def get(self, key):
        """The value of ``key``, or None."""
        found = self.call("/v3/kv/range", {"key": encode(key)}).get("kvs", [])
        return decode(found[0]["value"]) if found and "value" in found[0] else None

    def put_if_absent(self, key, value, lease_id):
        """Create ``key`` = ``value`` bound to the lease, only if it does not exist."""
        return self.txn(
            {"target": "CREATE", "key": encode(key), "result": "EQUAL", "create_revision": "0"},
            {"request_put": {"key": encode(key), "value": encode(value), "lease": lease_id}},
        )

    def delete_if_value(self, key, value):
        """Delete ``key`` only while it holds ``value``; False when it did not."""
        return self.txn(
            {"target": "VALUE", "key": encode(key), "result": "EQUAL", "value": encode(value)},
            {"request_delete_range": {"key": encode(key)}},
        )

    def txn(self, compare, success):
        """One transaction: ``success`` runs if ``compare`` holds; whether it did."""
        answer = self.call("/v3/kv/txn", {"compare": [compare], "success": [success]})
        return bool(answer.get("succeeded", False))

    # --- requests ----------------------------------------------------------------------------

    def call(self, path, body):
        """POST ``body`` to ``path``, authenticated when a username is set; the answer."""
        if self.username and self._token is None:
            self._token = self.authenticate()
        try:
            return self.post(path, body, self._token)
        except EtcdAccessDenied as err:
            if err.grpc_code != UNAUTHENTICATED or not self.username:
                raise
        # The token expired (etcd drops idle ones): once more with a new one.
        self._token = self.authenticate()
        return self.post(path, body, self._token)

    def authenticate(self):
        """
        A token for ``username`` (empty when etcd has authentication off, as Salt's cache
        then works too); EtcdAccessDenied when etcd refuses the credentials.
        """
        try:
            answer = self.post(
                "/v3/auth/authenticate", {"name": self.username, "password": self.password or ""}
            )
        except EtcdUnreachable:
            raise
        except EtcdError as err:
            if err.grpc_code == FAILED_PRECONDITION:
                return ""
            raise EtcdAccessDenied(
                f"etcd refused etcd.username {self.username!r} with its etcd.password ({err})",
                err.grpc_code,
            ) from err
        return answer["token"]

    def post(self, path, body, token=None):
        """One request; its JSON answer, or the error it maps to (see the module docstring)."""
        url = self.url + path
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = token
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as err:
            raise refusal(url, err.code, err.read()) from None
        except (urllib.error.URLError, OSError) as err:  # refused, unknown host, TLS, timeout
            reason = getattr(err, "reason", err)
            raise EtcdUnreachable(
                f"etcd at {self.url} cannot be reached ({path}): {reason}"
            ) from err
        try:
            return json.loads(text or b"{}")
        except ValueError:
            raise EtcdError(
                f"{url} did not answer as etcd's v3 gateway does: {text[:200]!r}"
            ) from None


def refusal(url, status, text):
    """The error for an HTTP error answer: by etcd's gRPC code, else by the HTTP status."""
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or "code" not in answer:
        return EtcdError(f"{url} answered HTTP {status}: not etcd's v3 gateway?")
    code = answer["code"]
    message = f"{url}: {answer.get('message') or answer.get('error')} (gRPC code {code})"
    if code in (PERMISSION_DENIED, UNAUTHENTICATED):
        return EtcdAccessDenied(f"etcd refused access (check etcd.username): {message}", code)
    return EtcdError(f"etcd refused the request {message}", code)


def tls_context(ca_cert=None, cert=None):
    """
    The TLS context of ``etcd.ca_cert`` (a CA bundle; the system's when unset) and
    ``etcd.cert`` (a client certificate file with its key, or ``[cert, key]``), as in
    python-etcd. A file that cannot be loaded is InvalidConfig naming the setting.
    """
    try:
        context = ssl.create_default_context(cafile=ca_cert or None)
    except (OSError, ssl.SSLError) as err:
        raise errors.InvalidConfig(f"etcd.ca_cert {ca_cert!r} cannot be loaded: {err}") from err
    if cert:
        files = [cert] if isinstance(cert, str) else list(cert)
        try:
            context.load_cert_chain(*files)
        except (OSError, ssl.SSLError, TypeError) as err:
            raise errors.InvalidConfig(f"etcd.cert {cert!r} cannot be loaded: {err}") from err
    return context


def encode(text):
    return base64.b64encode(text.encode()).decode()


def decode(text):
    return base64.b64decode(text).decode()
