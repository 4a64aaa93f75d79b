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
any other backend
    the file lock, with a warning: those backends offer no lock EOS uses yet, so only one
    master may write the registry.

Master configuration (optional):

.. code-block:: yaml

    eos:
      coordination:
        lock_timeout_seconds: 30   # wait this long for the lock, then RegistryBusy
        lock_ttl_seconds: 30       # a redis lock not released after this long frees itself

A critical section under the lock is a few cache reads and writes (milliseconds); the TTL only
matters for a master that dies or stalls while holding it.
"""

import fcntl
import logging
import os
import threading
import time
import uuid

from saltext.eos.utils import config
from saltext.eos.utils import errors

from .refusals import RegistryBusy

log = logging.getLogger(__name__)

LOCK_FILE = "eos-registry.lock"  # in the master cachedir, beside (not in) the eos banks
# After the cache's own key prefix: registries under other prefixes are other clusters.
REDIS_LOCK_KEY = "{prefix}eos:lock:registry"
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
    """A client of the redis server Salt's redis cache uses, from the same settings."""
    import redis  # pylint: disable=import-outside-toplevel

    if opts.get("cache.redis.cluster_mode"):
        return redis.RedisCluster(
            startup_nodes=opts.get("cache.redis.cluster.startup_nodes", {}),
            skip_full_coverage_check=opts.get(
                "cache.redis.cluster.skip_full_coverage_check", False
            ),
        )
    return redis.Redis(
        opts.get("cache.redis.host", "localhost"),
        opts.get("cache.redis.port", 6379),
        unix_socket_path=opts.get("cache.redis.unix_socket_path"),
        db=opts.get("cache.redis.db", "0"),
        password=opts.get("cache.redis.password") or None,
    )


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
