"""
Which lock the registry gets from the master's ``cache`` setting, and its settings; the etcd
lock's logic against a fake of etcd's v3 gateway (the real server: tests/functional).
"""

import base64
import http.server
import json
import logging
import socket
import threading
import time

import pytest

from saltext.eos.utils import config
from saltext.eos.utils import errors
from saltext.eos.utils.cluster import registry


def opts(tmp_path, **extra):
    return {"cachedir": str(tmp_path), **extra}


def layers(**coordination):
    return config.Layers([("master config", {"coordination": coordination})])


def test_one_master_on_localfs_gets_the_file_lock_in_its_cachedir(tmp_path):
    lock = registry.lock_for(opts(tmp_path), layers(lock_timeout_seconds=7))
    assert isinstance(lock, registry.FileLock)
    assert lock.path == str(tmp_path / registry.LOCK_FILE)
    assert lock.timeout == 7


def test_a_redis_cache_gets_a_lock_on_that_redis_server_under_its_key_prefix(tmp_path):
    pytest.importorskip("redis")
    lock = registry.lock_for(
        opts(
            tmp_path,
            cache="redis",
            **{"cache.redis.host": "10.1.2.3", "cache.redis.port": 6390},
            **{"cache.redis.keys_prefix": "site2"},
        ),
        layers(lock_ttl_seconds=12),
    )
    assert isinstance(lock, registry.RedisLock)
    assert lock.key == "site2_eos:lock:registry"
    assert lock.ttl_ms == 12000
    connection = lock.client.connection_pool.connection_kwargs
    assert (connection["host"], connection["port"]) == ("10.1.2.3", 6390)


def test_a_backend_without_a_shared_lock_warns_that_one_master_may_write(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        lock = registry.lock_for(opts(tmp_path, cache="consul"), layers())
    assert isinstance(lock, registry.FileLock)
    assert "only one master may write the registry" in caplog.text


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"lock_timeout_seconds": 0}, "eos:coordination:lock_timeout_seconds"),
        ({"lock_ttl_seconds": "30"}, "eos:coordination:lock_ttl_seconds"),
    ],
)
def test_a_bad_setting_is_refused_naming_its_key(tmp_path, given, named):
    with pytest.raises(config.InvalidConfig, match=named):
        registry.lock_for(opts(tmp_path), layers(**given))


# --- the etcd lock, against a small in-process fake of etcd's v3 JSON gateway --------------


class FakeGateway:
    """
    etcd's v3 gateway as far as the lock uses it: leases (expired by hand with ``expire``),
    range, the two transactions, and authentication when ``users`` is given. Every request is
    kept in ``requests`` as (path, body).
    """

    def __init__(self, users=None):
        self.users = users
        self.tokens = set()
        self.keys = {}  # key -> (value, lease id)
        self.leases = set()
        self.requests = []
        self.denied = False  # answer kv requests with permission denied
        self._ids = iter(range(7000, 10**6))
        self._mutex = threading.Lock()

    def expire(self, lease_id):
        """The lease ran out: etcd ends it and deletes its keys."""
        self.leases.discard(str(lease_id))
        self.keys = {key: held for key, held in self.keys.items() if held[1] != str(lease_id)}

    def answer(self, path, body, token):
        with self._mutex:
            self.requests.append((path, body))
            if path == "/v3/auth/authenticate":
                if self.users is None:
                    return 412, {"error": "auth not enabled", "code": 9}
                if self.users.get(body["name"]) != body["password"]:
                    return 400, {"error": "authentication failed", "code": 3}
                token = f"token{len(self.tokens)}"
                self.tokens.add(token)
                return 200, {"token": token}
            kv = path.startswith("/v3/kv/")
            if kv and self.users is not None and token not in self.tokens:
                return 401, {"error": "invalid auth token", "code": 16}
            if kv and self.denied:
                return 403, {"error": "permission denied", "code": 7}
            handler = {
                "/v3/lease/grant": self._grant,
                "/v3/lease/keepalive": self._keepalive,
                "/v3/lease/revoke": self._revoke,
                "/v3/kv/range": self._range,
                "/v3/kv/txn": self._txn,
            }.get(path)
            if handler is None:
                return 404, None
            return handler(body)

    def _grant(self, body):
        lease_id = str(next(self._ids))
        self.leases.add(lease_id)
        return 200, {"ID": lease_id, "TTL": str(max(2, body["TTL"]))}

    def _keepalive(self, body):
        alive = body["ID"] in self.leases
        return 200, {"result": {"ID": body["ID"], **({"TTL": "30"} if alive else {})}}

    def _revoke(self, body):
        if body["ID"] not in self.leases:
            return 404, {"error": "requested lease not found", "code": 5}
        self.expire(body["ID"])
        return 200, {}

    def _range(self, body):
        key = base64.b64decode(body["key"]).decode()
        if key not in self.keys:
            return 200, {}
        return 200, {"kvs": [{"value": base64.b64encode(self.keys[key][0].encode()).decode()}]}

    def _txn(self, body):
        (compare,), (success,) = body["compare"], body["success"]
        key = base64.b64decode(compare["key"]).decode()
        if compare["target"] == "CREATE":
            holds = compare["create_revision"] == "0" and key not in self.keys
        else:
            wanted = base64.b64decode(compare["value"]).decode()
            holds = key in self.keys and self.keys[key][0] == wanted
        if not holds:
            return 200, {}
        if "request_put" in success:
            put = success["request_put"]
            self.keys[key] = (base64.b64decode(put["value"]).decode(), put["lease"])
        else:
            del self.keys[key]
        return 200, {"succeeded": True}


@pytest.fixture
def gateway():
    """A FakeGateway served on a loopback port: ``(fake, url)``."""
    fake = FakeGateway()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, answer = fake.answer(self.path, body, self.headers.get("Authorization"))
            data = b"<html>not here</html>" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def etcd_lock(url, timeout=5, ttl_seconds=30, **client):
    return registry.EtcdLock(
        registry.EtcdClient(url, **client), "/p/eos/lock/registry", timeout, ttl_seconds
    )


def paths(fake):
    return [path for path, _ in fake.requests]


def test_an_etcd_cache_gets_an_etcd_lock_under_its_path_prefix(tmp_path):
    etcd = {"etcd.host": "10.1.2.3", "etcd.port": 2390, "etcd.path_prefix": "site2/"}
    lock = registry.lock_for(opts(tmp_path, cache="etcd", **etcd), layers(lock_ttl_seconds=12.5))
    assert isinstance(lock, registry.EtcdLock)
    assert lock.key == "/site2/eos/lock/registry"
    assert lock.client.url == "http://10.1.2.3:2390"
    assert lock.ttl_seconds == 13  # etcd leases are whole seconds
    default = registry.lock_for(opts(tmp_path, cache="etcd"), layers())
    assert default.key == "/salt_cache/eos/lock/registry"  # Salt's etcd cache default prefix
    assert default.client.url == "http://127.0.0.1:2379"


def test_an_unloadable_etcd_ca_cert_is_refused_naming_the_setting(tmp_path):
    etcd = {"etcd.protocol": "https", "etcd.ca_cert": str(tmp_path / "missing.pem")}
    with pytest.raises(config.InvalidConfig, match=r"etcd\.ca_cert"):
        registry.lock_for(opts(tmp_path, cache="etcd", **etcd), layers())


def test_the_etcd_lock_takes_the_key_with_a_lease_and_gives_both_back(gateway):
    fake, url = gateway
    with etcd_lock(url, ttl_seconds=7):
        (value, lease_id) = fake.keys["/p/eos/lock/registry"]
        assert lease_id in fake.leases
    assert paths(fake) == [
        "/v3/lease/grant",
        "/v3/kv/range",
        "/v3/kv/txn",  # create the key, only if absent, bound to the lease
        "/v3/kv/txn",  # delete it, only while it holds our token
        "/v3/lease/revoke",
    ]
    assert fake.requests[0][1] == {"TTL": 7}
    compare = fake.requests[2][1]["compare"][0]
    assert compare["target"] == "CREATE"
    assert base64.b64decode(compare["key"]) == b"/p/eos/lock/registry"
    assert fake.requests[3][1]["compare"][0]["value"] == base64.b64encode(value.encode()).decode()
    assert fake.keys == {}
    assert fake.leases == set()


def test_a_busy_etcd_lock_is_refused_naming_the_key_and_leaves_no_lease(gateway):
    fake, url = gateway
    holder, waiter = etcd_lock(url), etcd_lock(url, timeout=0.2)
    with holder:
        held = set(fake.leases)
        with pytest.raises(registry.RegistryBusy, match="/p/eos/lock/registry in etcd"), waiter:
            pass
        assert fake.leases == held  # the waiter revoked the lease it did not use


def test_an_etcd_lock_that_expired_while_held_is_lost_and_frees_nothing(gateway, caplog):
    fake, url = gateway
    stalled, successor = etcd_lock(url), etcd_lock(url)
    stalled.__enter__()
    fake.expire(fake.keys["/p/eos/lock/registry"][1])
    with successor:
        held = dict(fake.keys)
        with caplog.at_level(logging.ERROR), pytest.raises(registry.LockLost, match="expired"):
            stalled.__exit__(None, None, None)
        assert fake.keys == held
    assert "expired while held" in caplog.text


def test_a_lost_etcd_lock_does_not_hide_the_error_of_its_block(gateway, caplog):
    fake, url = gateway
    lock = etcd_lock(url)
    with caplog.at_level(logging.ERROR), pytest.raises(KeyError), lock:
        fake.expire(fake.keys["/p/eos/lock/registry"][1])
        raise KeyError("the block's own error")
    assert "expired while held" in caplog.text


def test_a_waiting_etcd_lock_renews_its_lease_or_takes_a_new_one(gateway):
    fake, url = gateway
    lock = etcd_lock(url, ttl_seconds=10)
    lease_id = lock.client.grant(10)
    assert lock._renewed(lease_id) == lease_id
    assert paths(fake)[-1] == "/v3/lease/keepalive"
    fake.expire(lease_id)
    replaced = lock._renewed(lease_id)
    assert replaced != lease_id
    assert replaced in fake.leases
    assert paths(fake)[-2:] == ["/v3/lease/keepalive", "/v3/lease/grant"]


def test_the_etcd_client_authenticates_and_again_when_its_token_expired(gateway):
    fake, url = gateway
    fake.users = {"eos": "secret"}
    lock = etcd_lock(url, username="eos", password="secret")
    with lock:
        pass
    fake.tokens.clear()  # etcd dropped the idle token
    with lock:
        pass
    assert paths(fake).count("/v3/auth/authenticate") == 2


def test_refused_etcd_credentials_are_a_configuration_error_naming_the_setting(gateway):
    fake, url = gateway
    fake.users = {"eos": "secret"}
    wrong = etcd_lock(url, username="eos", password="wrong")
    with pytest.raises(registry.EtcdAccessDenied, match=r"etcd\.username 'eos'") as refused, wrong:
        pass
    assert isinstance(refused.value, config.InvalidConfig)
    fake.users = None
    fake.denied = True
    with (
        pytest.raises(registry.EtcdAccessDenied, match="permission denied") as denied,
        etcd_lock(url),
    ):
        pass
    assert denied.value.grpc_code == 7


def test_credentials_for_an_etcd_without_authentication_are_not_needed(gateway):
    _, url = gateway
    with etcd_lock(url, username="eos", password="secret"):
        pass


def test_an_answer_that_is_not_etcds_is_an_etcd_error(gateway):
    _, url = gateway
    client = registry.EtcdClient(url)
    with pytest.raises(registry.EtcdError, match="HTTP 404") as failed:
        client.call("/v3/elsewhere", {})
    assert isinstance(failed.value, errors.OperationFailed)
    assert client.revoke("12345") is False  # already ended: nothing to do


def test_an_unreachable_etcd_is_an_operation_failure_naming_its_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    unreachable = etcd_lock(f"http://127.0.0.1:{port}")
    named = f"http://127.0.0.1:{port}"
    with pytest.raises(registry.EtcdUnreachable, match=named) as failed, unreachable:
        pass
    assert isinstance(failed.value, errors.OperationFailed)


# --- now(): the coordination store's clock ---------------------------------------------------


class FakeRedis:
    def register_script(self, script):
        return None

    def time(self):
        return (1700000000, 250000)


def test_every_lock_tells_the_time_of_its_store(tmp_path):
    assert abs(registry.FileLock(str(tmp_path / "l")).now() - time.time()) < 1
    assert registry.RedisLock(FakeRedis(), "k").now() == 1700000000.25
    # etcd exposes no clock: the master's own.
    assert abs(etcd_lock("http://127.0.0.1:1").now() - time.time()) < 1
