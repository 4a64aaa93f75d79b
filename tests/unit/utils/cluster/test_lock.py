"""Which lock the registry gets from the master's ``cache`` setting, and its settings."""

import logging

import pytest

from saltext.eos.utils import config
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
