"""
What the master-side tests (the runners, the lifecycle engine) stand in for: the Salt cache,
the event bus, the LocalClient and a runner's ``__context__``. A module that runs against
them marks itself ``pytest.mark.usefixtures("master_world")``; one whose minions answer
overrides ``client``.
"""

import pytest

from tests.support.master import Bus
from tests.support.master import SilentClient
from tests.support.master import salt_world
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


@pytest.fixture
def master_world(cache, bus, client):
    """``cache``, ``bus`` and ``client`` in place of Salt's own for the length of a test."""
    with salt_world(cache, bus, client):
        yield
