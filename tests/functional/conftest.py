import contextlib
import sys
import time

import pytest
from saltfactories.utils.functional import Loaders

from tests.support import servers


@pytest.fixture(scope="module")
def minion_config_overrides():
    return {}


@pytest.fixture(scope="module")
def minion_opts(salt_factories, minion_id, minion_config_overrides):
    factory = salt_factories.salt_minion_daemon(
        minion_id,
        overrides={"file_client": "local", "master": "local", **minion_config_overrides},
    )
    return factory.config.copy()


@pytest.fixture(scope="module")
def loaders(minion_opts):
    return Loaders(minion_opts)


@pytest.fixture(autouse=True)
def reset_loaders_state(loaders):
    try:
        yield
    finally:
        loaders.reset_state()


@pytest.fixture
def eos_storage(loaders):
    return loaders.modules.eos_storage


@pytest.fixture
def eos_config(loaders):
    """
    Set the minion's ``eos`` config for one test: ``eos_config({"thresholds": {...}})``.

    Salt 3008 hands each loaded module a copy-on-write view of the opts that keeps its own
    copy of a nested value once read, so the value goes into the ``__opts__`` that our loaded
    execution and state modules really read, and is emptied again after the test.
    """
    for loader in (loaders.modules, loaders.states):
        # Load the module so that its __opts__ exists.
        with contextlib.suppress(AttributeError):
            getattr(loader, "eos_storage")  # noqa: B009
    views = [
        _opts_of(sys.modules[name])
        for name in ("salt.loaded.ext.module.eos_storage", "salt.loaded.ext.states.eos_storage")
        if name in sys.modules
    ]

    def set_config(value):
        for opts in views:
            opts["eos"] = value

    yield set_config
    set_config({})


def _opts_of(module):
    opts = module.__opts__
    # Depending on how it was loaded, __opts__ is the view itself or a loader context over it.
    return opts.value() if hasattr(opts, "value") else opts


# --- Salt's cache backends: localfs, redis with a real redis-server, etcd with a real etcd ---


@pytest.fixture(scope="module")
def redis_port():
    with servers.redis_server() as port:
        yield port


@pytest.fixture(scope="module")
def etcd_port(tmp_path_factory):
    with servers.etcd_server(tmp_path_factory.mktemp("etcd")) as port:
        yield port


@pytest.fixture(scope="module")
def base_master_opts(salt_factories, master_id):
    return salt_factories.salt_master_daemon(master_id).config.copy()


@pytest.fixture(params=["localfs", "redis", "etcd"])
def master_opts(request, base_master_opts, tmp_path):
    opts = {**base_master_opts, "cachedir": str(tmp_path / "cache"), "cache": request.param}
    if request.param == "redis":
        port = request.getfixturevalue("redis_port")
        opts.update({"cache.redis.host": "127.0.0.1", "cache.redis.port": port})
        # Each test gets its own empty database view: prefixes keep tests apart.
        prefix = f"t{time.monotonic_ns()}"
        opts.update(
            {
                "cache.redis.banks_prefix": f"{prefix}_BANKS",
                "cache.redis.keys_prefix": f"{prefix}_KEYS",
                "cache.redis.timestamp_prefix": f"{prefix}_TS",
            }
        )
    if request.param == "etcd":
        port = request.getfixturevalue("etcd_port")
        # Each test gets its own directory of the one server (and so its own lock key).
        opts.update(
            {
                "etcd.host": "127.0.0.1",
                "etcd.port": port,
                "etcd.path_prefix": f"/t{time.monotonic_ns()}",
            }
        )
    return opts
