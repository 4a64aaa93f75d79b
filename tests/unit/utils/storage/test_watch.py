"""The storage watch: transitions only, hysteresis, hold time, persistence, forecasts."""

from types import SimpleNamespace

import pytest

from saltext.eos.utils import config
from saltext.eos.utils.storage import thresholds
from saltext.eos.utils.storage import watch

BLOCKS = 1_000_000
BLOCK = 4096


class Disk:
    """A fake root filesystem whose usage the test sets."""

    def __init__(self, percent=10.0, inode_percent=1.0):
        self.percent = percent
        self.inode_percent = inode_percent

    def statvfs(self, path):
        used = int(BLOCKS * self.percent / 100)
        inodes_used = int(1000 * self.inode_percent / 100)
        return SimpleNamespace(
            f_blocks=BLOCKS, f_bfree=BLOCKS - used, f_bavail=BLOCKS - used,
            f_files=1000, f_ffree=1000 - inodes_used, f_frsize=BLOCK, f_flag=0,
        )  # fmt: skip


def make_watch(tmp_path, disk, eos=None, **beacon):
    settings = watch.settings({"mounts": ["/"], **beacon})
    layers = watch.beacon_layers(config.Layers([("minion config", eos or {})]), settings)
    return watch.Watch(settings, layers, str(tmp_path), statvfs=disk.statvfs)


def levels_fired(watcher, disk, percents, start=0.0, step=60.0):
    fired = []
    for i, percent in enumerate(percents):
        disk.percent = percent
        events, _ = watcher.check(now=start + i * step)
        fired.extend((e["previous_level"], e["level"]) for e in events)
    return fired


def test_steady_disk_fires_nothing(tmp_path):
    disk = Disk(30)
    assert levels_fired(make_watch(tmp_path, disk), disk, [30] * 10) == []


def test_each_transition_fires_once(tmp_path):
    disk = Disk()
    fired = levels_fired(make_watch(tmp_path, disk), disk, [10, 62, 62, 77, 77, 77, 50, 50])
    assert fired == [("none", "warning"), ("warning", "cleanup"), ("cleanup", "none")]


def test_event_carries_the_documented_data(tmp_path):
    disk = Disk(78)
    events, _ = make_watch(tmp_path, disk).check(now=0)
    (event,) = events
    assert event["tag"] == "cleanup"
    assert event["mount"] == "/"
    assert event["usage_percent"] == pytest.approx(78, abs=0.01)
    assert set(event) >= {
        "mount", "level", "previous_level", "usage_percent", "inode_percent", "free_bytes",
        "time_to_full_seconds",
    }  # fmt: skip


def test_hovering_at_a_threshold_does_not_flap(tmp_path):
    disk = Disk()
    # 75 is the cleanup threshold of the single profile; hysteresis 5 holds it down to 70.
    fired = levels_fired(make_watch(tmp_path, disk), disk, [76, 74.5, 75.5, 72, 76, 70.5, 69])
    assert fired == [("none", "cleanup"), ("cleanup", "compress")]


def test_down_goes_to_the_level_still_held(tmp_path):
    disk = Disk()
    fired = levels_fired(make_watch(tmp_path, disk), disk, [86, 77])
    # 77 is under emergency's 85 - 5 but not under degraded's 80 - 5: degraded is held.
    assert fired == [("none", "emergency"), ("emergency", "degraded")]


def test_for_requires_consecutive_checks(tmp_path):
    disk = Disk()
    watcher = make_watch(tmp_path, disk, **{"for": 3})
    assert levels_fired(watcher, disk, [80, 80, 10, 80, 80]) == []
    assert levels_fired(watcher, disk, [80], start=600) == [("none", "degraded")]


def test_restart_does_not_replay_an_unchanged_disk(tmp_path):
    disk = Disk(78)
    first = make_watch(tmp_path, disk)
    assert levels_fired(first, disk, [78]) == [("none", "cleanup")]
    first.close()
    restarted = make_watch(tmp_path, disk)
    assert levels_fired(restarted, disk, [78, 78], start=120) == []
    assert levels_fired(restarted, disk, [20], start=300) == [("cleanup", "none")]


def test_inodes_can_raise_the_level_and_can_be_ignored(tmp_path):
    disk = Disk(10, inode_percent=91)
    assert levels_fired(make_watch(tmp_path / "a", disk), disk, [10]) == [("none", "critical")]
    quiet = make_watch(tmp_path / "b", disk, inodes=False)
    assert levels_fired(quiet, disk, [10]) == []


def test_beacon_thresholds_override_per_mount(tmp_path):
    disk = Disk()
    watcher = make_watch(tmp_path, disk, thresholds={"/": {"warning": 20}})
    assert levels_fired(watcher, disk, [25]) == [("none", "warning")]


def test_reports_carry_the_beacon_thresholds_for_the_metrics(tmp_path):
    disk = Disk(25)
    watcher = make_watch(tmp_path, disk, thresholds={"/": {"warning": 20}})

    _, reports = watcher.check(now=0)

    assert reports["/"]["thresholds"] == {**thresholds.profile("single"), "warning": 20.0}


def test_fast_filling_disk_raises_critical_by_forecast(tmp_path):
    disk = Disk()
    watcher = make_watch(
        tmp_path,
        disk,
        eos={"analyzer": {"history_min_interval": 0, "growth_min_span": 240}},
        growth_refresh=0,
    )
    # 2 points per minute: from 20% the disk is full in ~40 minutes.
    percents = [20 + 2 * i for i in range(8)]
    fired = levels_fired(watcher, disk, percents, step=60)
    assert fired[-1] == ("none", "critical")
    assert all(level != "warning" for _, level in fired[:-1])


def test_growth_is_refreshed_only_every_growth_refresh_seconds(tmp_path, monkeypatch):
    disk = Disk(20)
    watcher = make_watch(tmp_path, disk, growth_refresh=300)
    calls = []
    real = watch.analyzer.estimate_growth
    monkeypatch.setattr(watch.analyzer, "estimate_growth", lambda *a: calls.append(1) or real(*a))
    levels_fired(watcher, disk, [20] * 10, step=60)
    assert len(calls) == 2  # at 0 s and at 300 s


@pytest.mark.parametrize(
    ("beacon", "message"),
    [
        ({"hysteresis": -1}, "hysteresis: -1 must be >= 0"),
        ({"hysteresis": "x"}, "hysteresis: 'x' is not a number"),
        ({"for": 0}, "for: 0 must be >= 1"),
        ({"for": 1.5}, "for: 1.5 is not a whole number"),
        ({"mounts": "/"}, "mounts: '/' is not a list"),
        ({"inodes": "yes"}, "inodes: 'yes' is not true/false"),
        ({"time_to_full": {"soon": 1}}, "time_to_full"),
        ({"textfile": "relative.prom"}, "textfile: 'relative.prom' is not an absolute path"),
        ({"colour": "red"}, "unknown option"),
    ],
)
def test_bad_settings_name_the_key(beacon, message):
    with pytest.raises(watch.InvalidWatch, match=message):
        watch.settings(beacon)


def test_salt_beacon_keys_are_accepted():
    assert watch.settings({"interval": 5, "disable_during_state_run": True}).hysteresis == 5


@pytest.mark.parametrize(
    ("current", "percent", "expected"),
    [
        ("none", 76, "cleanup"),
        ("cleanup", 71, "cleanup"),
        ("cleanup", 69.9, "compress"),
        ("cleanup", 64, "warning"),
        ("cleanup", 54.9, "none"),
        ("critical", 85.5, "critical"),
        ("critical", 84.9, "emergency"),
    ],
)
def test_held_level(current, percent, expected):
    limits = thresholds.effective(config.Layers([]))
    assert watch.held_level(current, percent, limits, hysteresis=5) == expected


def test_unreadable_state_file_starts_fresh(tmp_path):
    path = tmp_path / watch.STATE_FILE
    path.parent.mkdir(parents=True)
    path.write_text("{broken")
    assert watch.load_levels(str(path)) == {}
