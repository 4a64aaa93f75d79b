"""
The storage beacon's forecast on real mounts, fed a recorded history.

Two loop-mounted filesystems, each given days of history before the minion starts (written
through the project's history store, as the beacon itself would have written it):

- ``sawtooth``: nine days of logs filling the disk to 95 % and a nightly rotation; now it
  is evening and the mount is at 90 %. Prometheus' ``predict_linear`` over 6 h says full in
  about 3 h; the beacon raises nothing.
- ``runaway``: three calm days at 50 %; then, during the test, a writer starts filling the
  mount fast. The beacon raises critical from the forecast while the mount is far from full.

The usage thresholds are set above anything the test reaches, so every level seen comes
from the forecast alone.
"""

import os
import threading
import time

import pytest

from saltext.eos.utils import config
from saltext.eos.utils.storage import analyzer
from tests.support.filesystems import MIB
from tests.support.filesystems import fill_to
from tests.support.filesystems import loop_ext4
from tests.support.filesystems import usage

pytestmark = [pytest.mark.root]

DAY = 86400
STEP = 120
# Only the forecast may raise a level: usage never reaches these.
HIGH_THRESHOLDS = {
    "warning": 96,
    "compress": 97,
    "cleanup": 98,
    "degraded": 99,
    "emergency": 99.5,
    "critical": 99.9,
}


@pytest.fixture(scope="module")
def mounts():
    with loop_ext4(size_mib=64) as sawtooth, loop_ext4(size_mib=64) as runaway:
        yield {"sawtooth": sawtooth, "runaway": runaway}


def record_histories(cachedir, mounts):
    """Both histories in the minion's cachedir, ending now; the mounts at the last values."""
    store = analyzer.open_history(str(cachedir), analyzer.settings(config.Layers([])))
    now = time.time()
    fill_to(mounts["sawtooth"], 90)
    fill_to(mounts["runaway"], 50)
    for name, percent_at in (("sawtooth", sawtooth_percent), ("runaway", lambda age: 50.0)):
        _, total = usage(mounts[name])
        for age in range(9 * DAY if name == "sawtooth" else 3 * DAY, 0, -STEP):
            store.record(str(mounts[name]), total * percent_at(age) / 100, total, now=now - age)


def sawtooth_percent(age):
    """Daily 25 % -> 95 %, rotated at midnight; "now" (age 0) is at 90 % in the evening."""
    into_day_now = (90 - 25) / 70
    into = (into_day_now - age / DAY) % 1.0
    return 25 + 70 * into


@pytest.fixture(scope="module")
def minion(master, minion_id, mounts):
    """A minion whose history was recorded before it starts, as after days of running."""
    factory = master.salt_minion_daemon(minion_id, overrides=minion_overrides(mounts))
    record_histories(factory.config["cachedir"], mounts)
    with factory.started():
        yield factory


def minion_overrides(mounts):
    watched = [str(mounts["sawtooth"]), str(mounts["runaway"])]
    return {
        # Beacon intervals count loop_interval ticks: one a second.
        "loop_interval": 1,
        "eos": {
            "thresholds": HIGH_THRESHOLDS,
            "analyzer": {"history_min_interval": 0},
        },
        "beacons": {
            "eos_storage": [
                {"interval": 1},
                {"mounts": watched},
                {"inodes": False},
                # A fresh estimate on every check: the test is about what it says.
                {"growth_refresh": 0},
            ]
        },
    }


def events_for(event_listener, master, minion, mount, since):
    pattern = f"salt/beacon/{minion.id}/eos_storage/*"
    found = event_listener.get_events([(master.id, pattern)], after_time=since)
    return [event for event in found if event.data.get("mount") == str(mount)]


def test_a_daily_sawtooth_at_its_evening_peak_raises_no_forecast_alarm(
    salt_cli, event_listener, master, minion, mounts
):
    since = time.time() - 120
    time.sleep(15)  # fifteen checks

    assert events_for(event_listener, master, minion, mounts["sawtooth"], since) == []
    ret = salt_cli.run("eos_storage.analyze", f"mount={mounts['sawtooth']}", minion_tgt=minion.id)
    assert ret.returncode == 0, ret
    report = ret.data[str(mounts["sawtooth"])]
    assert report["usage_percent"] >= 89
    assert report["growth_method"] == "post-cleanup-trend"
    assert report["growth_period_seconds"] == pytest.approx(DAY, rel=0.05)
    assert report["time_to_full_seconds"] is None


def test_a_runaway_writer_after_calm_days_raises_critical_long_before_full(
    event_listener, master, minion, mounts
):
    mount = mounts["runaway"]
    stop = threading.Event()

    def write():
        # 1 MiB a second, in quarters so that every one-second check sees about the same
        # step: the mount (32 MiB free) would be full in half a minute.
        with open(mount / "runaway.bin", "ab") as handle:
            while not stop.is_set():
                handle.write(os.urandom(MIB // 4))
                handle.flush()
                os.fsync(handle.fileno())
                used, total = usage(mount)
                if used > 0.85 * total:
                    break
                time.sleep(0.25)

    since = time.time()
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        matched = event_listener.wait_for_events(
            [(master.id, f"salt/beacon/{minion.id}/eos_storage/critical")],
            after_time=since,
            timeout=60,
        )
    finally:
        stop.set()
        writer.join()
        (mount / "runaway.bin").unlink(missing_ok=True)

    assert matched.found_all_events, "no critical from the forecast"
    (event,) = [e for e in matched.matches if e.data["mount"] == str(mount)]
    assert event.data["usage_percent"] < 85, "critical came only when the disk was nearly full"
    assert event.data["time_to_full_seconds"] < 4 * 3600
    assert event.data["previous_level"] == "none"
