"""
The lock every master sharing a registry respects.

The registry's writes (a record and the summary counts together), the join lease and the
rebalance lease are all read and written under one lock. With one master a file lock in its
cachedir is enough; masters sharing Salt's cache need a lock in that shared store, or each
would take "the" lock on its own disk. ``lock_for(opts)`` chooses by the master's ``cache``:

``localfs`` (the default)
    ``FileLock`` on ``<cachedir>/eos-registry.lock``: every process and thread of this
    master.
``redis``
    ``RedisLock`` on the same redis server as the cache (``cache.redis.*``): the key
    ``<cache.redis.keys_prefix>_eos:lock:registry`` is set with ``SET NX PX`` to a token only
    this holder knows, and deleted on release only while it still holds that token
    (compare-and-delete in one Lua script), so a holder that outlived ``ttl_seconds`` cannot
    free the lock of the next, and is told (``LockLost``).
``etcd``
    ``EtcdLock`` on the same etcd server as the cache (``etcd.host``, ``etcd.port``,
    ``etcd.protocol``, ``etcd.username``/``etcd.password``, ``etcd.ca_cert``/``etcd.cert``),
    through its v3 API (``etcd_client``): the key ``<etcd.path_prefix>/eos/lock/registry``
    (``/salt_cache/eos/lock/registry`` by default) is created, only if absent, in one
    transaction bound to a lease of ``ttl_seconds``, with a token only this holder knows; on
    release it is deleted only while it still holds that token, then the lease is revoked.
    etcd ends an expired lease and its key itself; a holder that outlived it is told
    (``LockLost``). Salt's etcd cache itself speaks etcd's v2 API, so the server must run
    with ``--enable-v2=true``; the lock lives in the v3 key space of the same server.
any other backend
    the file lock, with a warning: those backends offer no lock EOS uses yet, so only one
    master may write the registry.

Master configuration (optional):

.. code-block:: yaml

    eos:
      coordination:
        lock_timeout_seconds: 30   # wait this long for the lock, then RegistryBusy
        lock_ttl_seconds: 30       # a redis or etcd lock not released after this long frees
                                   # itself (etcd: whole seconds, at least its minimum lease)

A critical section under the lock is a few cache reads and writes (milliseconds); the TTL only
matters for a master that dies or stalls while holding it.

Every lock has ``now()``: seconds since the epoch by the coordination store's clock where it
has one, so that masters whose clocks differ agree on when a lease ends. ``FileLock`` (one
master) and ``EtcdLock`` use this master's ``time.time()``: etcd exposes no clock, so time
stamps kept in an etcd cache rely on the masters' clocks being synchronized (NTP), while the
etcd lock's own TTL is counted by the etcd server. ``RedisLock`` asks redis (``TIME``).
"""

import fcntl
import functools
import logging
import math
import os
import threading
import time
import uuid

from saltext.eos.utils import config
from saltext.eos.utils import errors

from .etcd_client import EtcdClient
from .refusals import RegistryBusy

log = logging.getLogger(__name__)

LOCK_FILE = "eos-registry.lock"  # in the master cachedir, beside (not in) the eos banks
# After the cache's own key prefix: registries under other prefixes are other clusters.
REDIS_LOCK_KEY = "{prefix}eos:lock:registry"
ETCD_LOCK_KEY = "{prefix}/eos/lock/registry"
ETCD_PATH_PREFIX = "/salt_cache"  # Salt's etcd cache default for etcd.path_prefix
LOCK_DEFAULTS = {"lock_timeout_seconds": 30, "lock_ttl_seconds": 30}
# Delete the key only while it holds our token: one round trip, so nothing runs in between.
RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class LockLost(errors.OperationFailed):
    """The lock expired while held: another master may have written meanwhile."""


def settings(layers):
    """``eos:coordination`` from ``config.Layers``: {lock_timeout_seconds, lock_ttl_seconds}."""
    return {
        key: config.number(
            layers.get("coordination", key, default=default),
            config.key_name("coordination", key),
            minimum=1,
        )
        for key, default in LOCK_DEFAULTS.items()
    }


def lock_for(opts, layers=None):
    """The registry lock for this master's ``cache`` backend (see the module docstring)."""
    limits = settings(layers or config.Layers.from_salt(opts))
    backend = opts.get("cache", "localfs") or "localfs"
    if backend == "redis":
        return RedisLock(
            redis_client(opts),
            REDIS_LOCK_KEY.format(prefix=opts.get("cache.redis.keys_prefix", "$KEY") + "_"),
            timeout=limits["lock_timeout_seconds"],
            ttl_seconds=limits["lock_ttl_seconds"],
        )
    if backend == "etcd":
        return EtcdLock(
            EtcdClient.from_opts(opts),
            etcd_lock_key(opts),
            timeout=limits["lock_timeout_seconds"],
            ttl_seconds=limits["lock_ttl_seconds"],
        )
    if backend != "localfs":
        log.warning(
            "eos: the %s cache has no lock EOS can share between masters; the registry lock "
            "is a file on this master, so only one master may write the registry",
            backend,
        )
    return FileLock(
        os.path.join(opts["cachedir"], LOCK_FILE), timeout=limits["lock_timeout_seconds"]
    )


def redis_client(opts):
    """
    A client of the redis server Salt's redis cache uses, from the same settings. A plain
    server's client is kept, one per process and server, so a runner that opens the registry
    again reuses its connections (redis-py's pool opens new ones in a forked child).
    """
    import redis  # pylint: disable=import-outside-toplevel

    if opts.get("cache.redis.cluster_mode"):
        return redis.RedisCluster(
            startup_nodes=opts.get("cache.redis.cluster.startup_nodes", {}),
            skip_full_coverage_check=opts.get(
                "cache.redis.cluster.skip_full_coverage_check", False
            ),
        )
    return _redis_server_client(
        opts.get("cache.redis.host", "localhost"),
        opts.get("cache.redis.port", 6379),
        opts.get("cache.redis.unix_socket_path"),
        opts.get("cache.redis.db", "0"),
        opts.get("cache.redis.password") or None,
    )


@functools.lru_cache(maxsize=8)
def _redis_server_client(host, port, unix_socket_path, db, password):
    import redis  # pylint: disable=import-outside-toplevel

    return redis.Redis(host, port, unix_socket_path=unix_socket_path, db=db, password=password)


def etcd_lock_key(opts):
    """The lock's key under ``etcd.path_prefix``, normalized as Salt's etcd cache does."""
    prefix = opts.get("etcd.path_prefix", ETCD_PATH_PREFIX)
    if prefix:
        prefix = "/" + prefix.strip("/")
    return ETCD_LOCK_KEY.format(prefix=prefix.rstrip("/"))


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

    def now(self):
        """Seconds since the epoch: one master, so its own clock."""
        return time.time()


class RedisLock:
    """
    An exclusive lock for every master using the same redis server and key. Not re-entrant;
    each thread holds its own token.
    """

    def __init__(self, client, key, timeout=30.0, ttl_seconds=30.0, poll=0.005):
        self.client = client
        self.key = key
        self.timeout = timeout
        self.ttl_ms = int(ttl_seconds * 1000)
        self.poll = poll
        self._tokens = threading.local()
        self._release = client.register_script(RELEASE_SCRIPT)

    def __enter__(self):
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.timeout
        while not self.client.set(self.key, token, nx=True, px=self.ttl_ms):
            if time.monotonic() > deadline:
                raise RegistryBusy(
                    f"the registry lock {self.key} in redis was held for over {self.timeout:g} s"
                )
            time.sleep(self.poll)
        self._tokens.current = token
        return self

    def __exit__(self, exc_type, exc, traceback):
        token = self._tokens.current
        self._tokens.current = None
        if self._release(keys=[self.key], args=[token]) == 1:
            return False
        message = (
            f"the registry lock {self.key} expired while held (over {self.ttl_ms} ms): "
            "another master may have written meanwhile"
        )
        log.error("eos: %s", message)
        if exc_type is None:
            raise LockLost(message)
        return False

    def now(self):
        """Seconds since the epoch by the redis server's clock (``TIME``)."""
        seconds, microseconds = self.client.time()
        return seconds + microseconds / 1e6


class EtcdLock:
    """
    An exclusive lock for every master using the same etcd server and key, through etcd's v3
    leases and transactions (``client``: an ``etcd_client.EtcdClient``). Not re-entrant;
    each thread holds its own token and lease.
    """

    def __init__(self, client, key, timeout=30.0, ttl_seconds=30.0, poll=0.01):
        self.client = client
        self.key = key
        self.timeout = timeout
        self.ttl_seconds = max(1, math.ceil(ttl_seconds))  # etcd leases are whole seconds
        self.poll = poll
        self._held = threading.local()

    def __enter__(self):
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.timeout
        lease_id, renewed = self.client.grant(self.ttl_seconds), time.monotonic()
        while not self._take(token, lease_id):
            if time.monotonic() > deadline:
                self.client.revoke(lease_id)
                raise RegistryBusy(
                    f"the registry lock {self.key} in etcd was held for over {self.timeout:g} s"
                )
            time.sleep(self.poll)
            if time.monotonic() - renewed > self.ttl_seconds / 2:
                lease_id, renewed = self._renewed(lease_id), time.monotonic()
        if time.monotonic() - renewed > 1:
            self.client.keepalive(lease_id)  # held for a full TTL from now, as with redis
        self._held.current = (token, lease_id)
        return self

    def _take(self, token, lease_id):
        """Create the key bound to the lease unless it exists; reads first, as waiters poll."""
        return self.client.get(self.key) is None and self.client.put_if_absent(
            self.key, token, lease_id
        )

    def _renewed(self, lease_id):
        """The waiting lease renewed to its full TTL (keepalive), or a new one if it expired."""
        if self.client.keepalive(lease_id) > 0:
            return lease_id
        return self.client.grant(self.ttl_seconds)

    def __exit__(self, exc_type, exc, traceback):
        token, lease_id = self._held.current
        self._held.current = None
        released = self.client.delete_if_value(self.key, token)
        self.client.revoke(lease_id)
        if released:
            return False
        message = (
            f"the registry lock {self.key} in etcd expired while held (over "
            f"{self.ttl_seconds} s): another master may have written meanwhile"
        )
        log.error("eos: %s", message)
        if exc_type is None:
            raise LockLost(message)
        return False

    def now(self):
        """
        Seconds since the epoch by this master's clock: etcd exposes none, so masters on one
        etcd must keep their clocks synchronized. The lock's own TTL is etcd's.
        """
        return time.time()
