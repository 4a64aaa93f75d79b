"""What every runner test stands in for on the master: the cache, the event bus, the client."""

import pytest

from tests.support.master import Bus
from tests.support.master import SilentClient
from tests.support.memory_cache import MemoryCache


@pytest.fixture
def cache():
    return MemoryCache()


@pytest.fixture
def bus():
    return Bus()


@pytest.fixture
def client():
    return SilentClient()


@pytest.fixture
def context():
    return {}
