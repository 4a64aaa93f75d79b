"""
The eos_storage beacon and the package's reactor, end to end, on a real small filesystem.

A loop-mounted ext4 starts at the cleanup level, full of tmp files. The beacon fires once,
the master's reactor (served from the package through the eos fileserver) runs
eos_storage.cleanup on the minion, usage drops under the cleanup target, one recovery event
follows, and a steady disk then fires nothing, while Salt's own diskusage beacon on the same
mount repeats every interval.
"""

import os
import time

import psutil
import pytest

from tests.support.filesystems import MIB
from tests.support.filesystems import loop_ext4

pytestmark = [pytest.mark.root]

DAY = 86400
TAG = "salt/beacon/{}/eos_storage/*"


@pytest.fixture(scope="module")
def loop_mount():
    with loop_ext4(size_mib=64) as mount_point:
        yield mount_point


@pytest.fixture(scope="module")
def planted(loop_mount):
    """76-80 % used: week-old tmp files on top of 16 MiB that must stay."""
    tmp_dir = loop_mount / "tmp"
    tmp_dir.mkdir()
    old = time.time() - 10 * DAY
    for index in range(6):
        path = tmp_dir / f"old-{index}.bin"
        path.write_bytes(os.urandom(4 * MIB))
        os.utime(path, (old, old))
    keep = loop_mount / "data.bin"
    keep.write_bytes(os.urandom(16 * MIB))
    capacity = psutil.disk_usage(str(loop_mount))
    # Top up with more old tmp files to land between cleanup (75) and degraded (80).
    extra = 0
    while psutil.disk_usage(str(loop_mount)).percent < 76:
        path = tmp_dir / f"extra-{extra}.bin"
        path.write_bytes(os.urandom(MIB))
        os.utime(path, (old, old))
        extra += 1
    assert 75 <= psutil.disk_usage(str(loop_mount)).percent < 80, capacity
    return {"tmp": tmp_dir, "keep": keep}


@pytest.fixture(scope="module")
def master_config_overrides():
    return {
        "fileserver_backend": ["roots", "eos"],
        "reactor": [{"salt/beacon/*/eos_storage/*": ["salt://eos/reactor/storage_threshold.sls"]}],
    }


@pytest.fixture(scope="module")
def minion_config_overrides(loop_mount, planted):
    mount = str(loop_mount)
    return {
        # Beacon intervals count loop_interval ticks; one tick a second makes interval 1 = 1 s.
        "loop_interval": 1,
        "eos": {
            "analyzer": {"history_min_interval": 0},
            "cleanup": {
                "log_dirs": [str(loop_mount / "log")],
                "tmp_dirs": [str(planted["tmp"])],
                # Age counts ctime too, which a test cannot set back: any tmp file is old.
                "tmp_after_days": 0,
                "package_caches": {},
                "docker_prune": False,
                "journal_dirs": [],
                "user_cache_dirs": [],
                "services": [],
            },
        },
        "beacons": {
            "eos_storage": [{"interval": 1}, {"mounts": [mount]}],
            "diskusage": [{"interval": 1}, {mount: "20%"}],
        },
    }


def beacon_events(event_listener, master, minion, since, name="eos_storage"):
    pattern = f"salt/beacon/{minion.id}/{name}/*"
    events = event_listener.get_events([(master.id, pattern)], after_time=since)
    return sorted(events, key=lambda event: event.stamp)


def wait_for_level(event_listener, master, minion, level, since, timeout=120):
    matched = event_listener.wait_for_events(
        [(master.id, f"salt/beacon/{minion.id}/eos_storage/{level}")],
        after_time=since,
        timeout=timeout,
    )
    assert matched.found_all_events, f"no {level} event within {timeout}s"
    return matched.matches


def test_fill_fire_react_recover_then_silence(event_listener, master, minion, loop_mount, planted):
    since = time.time() - 300  # the minion may have checked before this test started

    fired = wait_for_level(event_listener, master, minion, "cleanup", since)
    (event,) = fired
    assert event.data["mount"] == str(loop_mount)
    assert event.data["previous_level"] == "none"
    assert 75 <= event.data["usage_percent"] < 80

    # The reactor runs the cleanup, which deletes tmp files until the mount is under its
    # target (cleanup 75 - margin 5) and stops there, as kubelet's image GC does.
    (recovery,) = wait_for_level(event_listener, master, minion, "compress", since)
    assert recovery.data["previous_level"] == "cleanup"
    assert recovery.data["usage_percent"] < 70
    assert planted["keep"].exists()
    remaining = list(planted["tmp"].iterdir())
    assert remaining, "cleanup went on past its target"

    levels = [e.data["level"] for e in beacon_events(event_listener, master, minion, since)]
    assert levels == ["cleanup", "compress"]

    # Steady disk for ten intervals: ours says nothing, diskusage repeats every interval.
    steady_since = time.time()
    time.sleep(10.5)
    ours = beacon_events(event_listener, master, minion, steady_since)
    theirs = beacon_events(event_listener, master, minion, steady_since, name="diskusage")
    assert ours == []
    assert len(theirs) >= 8


def fill_at_once(path, percent):
    """Reserve blocks so that the mount is at ``percent``, in one step the beacon cannot split."""
    usage = psutil.disk_usage(str(path.parent))
    wanted = int(percent / 100 * (usage.used + usage.free)) - usage.used
    with open(path, "wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, wanted)


def cleanup_results(event_listener, master, minion, since, level, timeout=90):
    pattern = [(master.id, f"eos/storage/cleanup/{minion.id}")]
    deadline = time.time() + timeout
    while time.time() < deadline:
        results = [
            event.data["data"]
            for event in event_listener.get_events(pattern, after_time=since)
            if event.data["data"]["level"] == level
        ]
        if results:
            return results
        time.sleep(1)
    return []


def test_the_emergency_reaction_stops_services_only_when_files_were_not_enough(
    event_listener, master, minion, loop_mount, planted
):
    # Files are enough: the tmp files left by the first test bring the disk under 80.
    since = time.time()
    fill_at_once(loop_mount / "burst.bin", 88)
    wait_for_level(event_listener, master, minion, "emergency", since)
    (files_only,) = cleanup_results(event_listener, master, minion, since, "emergency")
    assert files_only["target_reached"]
    stop_services = next(s for s in files_only["steps"] if s["name"] == "stop_services")
    assert stop_services["skipped"]
    time.sleep(5)
    assert cleanup_results(event_listener, master, minion, since, "degrade", timeout=1) == []

    # Files are not enough: only data no step may touch is left, so services come next.
    for leftover in planted["tmp"].iterdir():
        leftover.unlink()
    since = time.time()
    fill_at_once(loop_mount / "precious.bin", 88)
    wait_for_level(event_listener, master, minion, "emergency", since)
    (not_enough,) = cleanup_results(event_listener, master, minion, since, "emergency")
    assert not not_enough["target_reached"]
    stop_services = next(s for s in not_enough["steps"] if s["name"] == "stop_services")
    assert "services=False" in stop_services["skip_reason"]
    assert cleanup_results(event_listener, master, minion, since, "degrade")
    assert (loop_mount / "precious.bin").exists()
    assert planted["keep"].exists()
