"""What the cluster integration tests share: waiting, checked calls and minion settings."""

import concurrent.futures
import contextlib
import pathlib
import time

import pytest
import salt.cache

from saltext.eos.utils.cluster import registry
from tests.support import readme

# Every role a 2-core test machine can hold: the tests are about the flows, not the sizing.
SMALL_CATALOGUE = {
    role: {"cpu": 1, "memory_gb": 1, "disk_gb": 1}
    for role in ("monolith", "edge", "core", "data", "message", "observe", "compute", "app")
}
JOIN_REACTOR_SLS = "salt://eos/reactor/node_join.sls"


def join_master_block():
    """
    The README's master block with only the reactor entries that run joins: the storage
    reactions would act on this host's real disks whenever its usage crosses a level.
    """
    block = readme.master_block()
    block["reactor"] = [
        entry
        for entry in block["reactor"]
        if all(JOIN_REACTOR_SLS in reactions for reactions in entry.values())
    ]
    return block


def write_hold_state(root):
    """
    ``root/states/hold.sls``: a node's highstate waits while the file ``root/hold-<id>``
    exists (two minutes at most), which keeps a join in its configure step for as long as a
    test needs it there.
    """
    (root / "states" / "hold.sls").write_text(
        f"{{% set flag = '{root}/hold-' ~ grains['id'] %}}\n"
        "hold_while_flagged:\n"
        "  cmd.run:\n"
        "    - name: timeout 120 sh -c 'while [ -e {{ flag }} ]; do sleep 0.2; done'\n"
        "    - onlyif: test -e {{ flag }}\n"
    )


def wait_for(probe, what, timeout=60, interval=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def run_ok(cli, *args, **kwargs):
    ret = cli.run(*args, **kwargs)
    assert ret.returncode == 0, ret
    return ret.data


def os_release_id():
    for line in pathlib.Path("/etc/os-release").read_text().splitlines():
        if line.startswith("ID="):
            return line.split("=", 1)[1].strip().strip('"')
    return "unknown"


def minion_overrides(master, **extra):
    # The health checks must pass on any CI host: accept this host's OS and any free space.
    supported = {os_release_id(): "0", "RedHat": "0", "CentOS Stream": "0", "OEL": "0"}
    eos = {"health": {"supported_os": supported, "min_root_free_gb": 0}, **extra.pop("eos", {})}
    return {"publish_port": master.config["publish_port"], "eos": eos, **extra}


def read_registry(master):
    """The registry as the master stores it, read directly: fast enough to poll."""
    return registry.Registry(salt.cache.factory(master.config))


@contextlib.contextmanager
def started_together(factories):
    """
    Every minion factory of ``{id: factory}`` started at once, as machines booted together;
    those still running are terminated on the way out.
    """
    try:
        with concurrent.futures.ThreadPoolExecutor(len(factories)) as pool:
            for started in pool.map(lambda factory: factory.start(), factories.values()):
                assert started is not False
        yield factories
    finally:
        for factory in factories.values():
            if factory.is_running():
                factory.terminate()
