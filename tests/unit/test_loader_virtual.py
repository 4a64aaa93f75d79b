"""
The loader modules that read Linux interfaces (/proc, /sys, statvfs as Linux fills it) refuse
to load elsewhere, with a reason that says so; the others load on any platform Salt runs on.
"""

import pytest

from saltext.eos.beacons import eos_storage as storage_beacon
from saltext.eos.modules import eos_cluster as cluster_module
from saltext.eos.modules import eos_storage as storage_module

LINUX_ONLY = (cluster_module, storage_module, storage_beacon)


@pytest.fixture
def kernel():
    return "Linux"


@pytest.fixture
def configure_loader_modules(kernel):
    grains = {} if kernel is None else {"kernel": kernel}
    return {module: {"__grains__": grains} for module in LINUX_ONLY}


def _name(module):
    return module.__name__.removeprefix("saltext.eos.")


@pytest.mark.parametrize("module", LINUX_ONLY, ids=_name)
def test_loads_on_linux(module):
    assert module.__virtual__() == module.__virtualname__


@pytest.mark.parametrize("kernel", ["Windows", "Darwin", "FreeBSD", None])
@pytest.mark.parametrize("module", LINUX_ONLY, ids=_name)
def test_refused_elsewhere(module, kernel):
    loaded, reason = module.__virtual__()
    assert loaded is False, f"{_name(module)} loads with kernel grain {kernel!r}"
    assert reason.startswith(f"{module.__virtualname__}: needs Linux (")
