"""
What the cluster flows and the registry are handed in place of the master's: a clock moved
by hand and a list the events fired or announced are kept in.
"""

import pytest

from tests.support.clock import Clock


@pytest.fixture
def clock():
    """The flows' clock, moved by hand (``tests.support.clock``)."""
    return Clock()


@pytest.fixture
def events():
    """What was fired or announced, in order, as each module's flow or registry records it."""
    return []
