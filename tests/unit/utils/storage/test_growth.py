"""The growth estimator on synthetic series with a known answer."""

import random

import pytest

from saltext.eos.utils.storage import growth

GIB = 1024**3
MINUTE = 60
HOUR = 3600


def series(rate_per_hour, hours=6, every=5 * MINUTE, start=100 * GIB, noise=0.0, seed=1):
    rng = random.Random(seed)
    points = []
    for i in range(int(hours * HOUR / every) + 1):
        t = i * every
        points.append((t, start + rate_per_hour * t / HOUR + rng.gauss(0, noise)))
    return points


def per_hour(estimate):
    return estimate.bytes_per_second * HOUR


def test_linear_growth_is_exact():
    estimate = growth.estimate(series(1 * GIB))
    assert per_hour(estimate) == pytest.approx(1 * GIB, rel=1e-6)
    assert estimate.method == "median-slope"


def test_noisy_linear_growth_within_five_percent():
    estimate = growth.estimate(series(2 * GIB, noise=0.2 * GIB), min_jump_bytes=0.1 * GIB)
    assert per_hour(estimate) == pytest.approx(2 * GIB, rel=0.05)


def test_flat_series_is_not_growing_and_has_no_time_to_full():
    estimate = growth.estimate(series(0))
    assert estimate.bytes_per_second == 0
    assert growth.time_to_full_seconds(50 * GIB, estimate.bytes_per_second) is None


def test_shrinking_series_has_no_time_to_full():
    estimate = growth.estimate(series(-1 * GIB))
    assert estimate.bytes_per_second < 0
    assert growth.time_to_full_seconds(50 * GIB, estimate.bytes_per_second) is None


def test_sawtooth_with_periodic_cleanups_is_not_a_full_in_minutes_forecast():
    # 3 GiB/h of logs, rotated away every hour: the disk goes up and down, never filling.
    points = []
    for i in range(73):
        t = i * 5 * MINUTE
        points.append((t, 100 * GIB + 3 * GIB * ((t % HOUR) / HOUR)))
    estimate = growth.estimate(points)
    assert estimate.method == "post-cleanup-trend"
    assert estimate.cleanups >= 2
    assert abs(per_hour(estimate)) < 0.01 * GIB
    assert growth.time_to_full_seconds(10 * GIB, estimate.bytes_per_second) is None


def test_sawtooth_with_net_growth_reports_the_net_rate():
    # Fills 3 GiB/h, each hourly cleanup frees 2 GiB: 1 GiB/h accumulates.
    points = []
    for i in range(73):
        t = i * 5 * MINUTE
        cycles, into = divmod(t, HOUR)
        points.append((t, 100 * GIB + cycles * 1 * GIB + 3 * GIB * into / HOUR))
    estimate = growth.estimate(points)
    assert per_hour(estimate) == pytest.approx(1 * GIB, rel=0.1)
    ttf = growth.time_to_full_seconds(10 * GIB, estimate.bytes_per_second)
    assert ttf == pytest.approx(10 * HOUR, rel=0.1)


def test_single_burst_does_not_dominate():
    points = series(0.5 * GIB)
    points = [(t, used + (20 * GIB if t >= 3 * HOUR else 0)) for t, used in points]
    estimate = growth.estimate(points)
    assert per_hour(estimate) == pytest.approx(0.5 * GIB, rel=0.05)
    assert estimate.jumps == 1


def test_single_manual_cleanup_keeps_the_fill_rate():
    points = series(1 * GIB)
    points = [(t, used - (30 * GIB if t >= 4 * HOUR else 0)) for t, used in points]
    estimate = growth.estimate(points)
    assert estimate.method == "median-slope"
    assert per_hour(estimate) == pytest.approx(1 * GIB, rel=0.05)


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        ([], "no samples"),
        ([(0, 1), (600, 2), (1200, 3), (1800, 4)], "four samples"),
        ([(t, t) for t in range(0, 600, 60)], "ten samples over nine minutes"),
    ],
)
def test_too_little_history_gives_none_not_a_guess(points, reason):
    estimate = growth.estimate(points)
    assert estimate.bytes_per_second is None, reason
    assert estimate.bytes_per_day is None
    assert estimate.method == "insufficient-history"


def test_minimum_history_is_configurable():
    points = [(t, t * 10) for t in range(0, 300, 60)]
    estimate = growth.estimate(points, min_samples=5, min_span_seconds=240)
    assert estimate.bytes_per_second == pytest.approx(10)


def test_only_the_window_counts():
    old = [(t, t * 1000.0) for t in range(0, 6 * HOUR, 300)]
    recent_start = 6 * HOUR
    recent = [(recent_start + t, old[-1][1] + t * 10.0) for t in range(0, 2 * HOUR, 300)]
    estimate = growth.estimate(old + recent, window_seconds=HOUR)
    assert estimate.bytes_per_second == pytest.approx(10)


def test_long_series_is_thinned_but_still_exact():
    points = [(t, 5.0 * t) for t in range(0, 6 * HOUR, 10)]
    estimate = growth.estimate(points)
    assert estimate.samples == len(points)
    assert estimate.bytes_per_second == pytest.approx(5.0)


def test_time_to_full():
    assert growth.time_to_full_seconds(3600, 1.0) == 3600
    assert growth.time_to_full_seconds(0, 1.0) == 0
    assert growth.time_to_full_seconds(100, None) is None
    assert growth.time_to_full_seconds(100, 0.0) is None


def test_a_few_wild_samples_do_not_move_the_slope():
    points = series(1 * GIB, noise=0.05 * GIB)
    for i in (10, 30, 50):
        t, used = points[i]
        points[i] = (t, used + 40 * GIB * (1 if i != 30 else -1))
    estimate = growth.estimate(points, min_jump_bytes=0.5 * GIB)
    assert per_hour(estimate) == pytest.approx(1 * GIB, rel=0.05)


def test_long_noisy_history_thinned_to_max_points():
    points = series(0.5 * GIB, hours=6, every=30, noise=0.1 * GIB)
    assert len(points) > growth.MAX_POINTS
    assert per_hour(growth.estimate(points, min_jump_bytes=0.5 * GIB)) == pytest.approx(
        0.5 * GIB, rel=0.05
    )


# --- replay: whole histories through the tiers and the estimator, as analyze sees them -------

DAY = 86400
STEP = 120
TOTAL = 100 * GIB


def history_of(used_percent, days, step=STEP):
    """(t, used_bytes) every ``step`` seconds of a disk whose usage in percent is given."""
    return [
        (float(t), TOTAL * min(max(used_percent(t), 0.0), 100.0) / 100)
        for t in range(0, int(days * DAY) + 1, step)
    ]


def sawtooth(period, low, high, rise=0.0):
    def used(t):
        cycle, into = divmod(t, period)
        return low + rise * cycle + (high - low) * into / period

    return used


def test_replay_of_a_daily_logrotate_sawtooth_raises_nothing():
    # Logs fill the disk to 95 % every day, rotation at midnight frees them: never full.
    report = growth.replay(history_of(sawtooth(DAY, 25, 95), days=9.95), TOTAL)

    assert report["growth_method"] == "post-cleanup-trend"
    assert report["growth_period_seconds"] == pytest.approx(DAY, rel=0.02)
    assert report["time_to_full_seconds"] is None
    assert report["forecast_level"] == "none"
    assert report["usage_percent"] > 90, "the evening peak, where predict_linear alarms"


def test_replay_of_cleanups_that_leave_more_behind_forecasts_from_the_peaks():
    # Troughs and peaks rise 3 % a day: peaks at 80 + 3n reach 100 % on day 7.
    report = growth.replay(history_of(sawtooth(DAY, 20, 80, rise=3), days=4.5), TOTAL)

    assert report["growth_method"] == "post-cleanup-trend"
    assert report["growth_bytes_per_day"] == pytest.approx(0.03 * TOTAL, rel=0.1)
    # Peaks at 89 % yesterday, rising 3 %/day: full in about 11/3 days, no alarm yet.
    assert report["time_to_full_seconds"] == pytest.approx(11 / 3 * DAY, rel=0.15)
    assert report["forecast_level"] == "none"


def test_replay_of_a_runaway_writer_after_calm_days_raises_critical_within_five_samples():
    calm = history_of(lambda t: 80.0, days=3)
    start = calm[-1][0]
    # 10 GiB/h on 100 GiB at 80 %: full in 2 h.
    runaway = [(start + n * STEP, 80 * GIB + 10 * GIB * n * STEP / HOUR) for n in range(1, 6)]

    report = growth.replay(calm + runaway, TOTAL)

    assert report["growth_method"] == "rate-change"
    assert report["forecast_level"] == "critical"
    assert report["time_to_full_seconds"] == pytest.approx(2 * HOUR - 5 * STEP, rel=0.1)


def test_replay_of_a_single_burst_keeps_the_old_rate():
    rate = 0.3  # percent per day
    history = history_of(lambda t: 40 + rate * t / DAY + (15 if t >= 2.9 * DAY else 0), days=3)

    report = growth.replay(history, TOTAL)

    assert report["growth_method"] == "median-slope"
    assert report["growth_bytes_per_day"] == pytest.approx(rate / 100 * TOTAL, rel=0.1)
    assert report["forecast_level"] == "none"


def test_replay_of_a_steady_fill_forecasts_its_time_to_full():
    # 10 % a day from 40 %: at day 5.5 the disk is at 95 %, full in half a day.
    report = growth.replay(history_of(lambda t: 40 + 10 * t / DAY, days=5.5), TOTAL)

    assert report["growth_method"] == "median-slope"
    assert report["time_to_full_seconds"] == pytest.approx(0.5 * DAY, rel=0.02)
    assert report["forecast_level"] == "warning"


def test_replay_of_a_weekly_purge_seen_twice_is_a_cycle():
    report = growth.replay(history_of(sawtooth(7 * DAY, 30, 90), days=17), TOTAL)

    assert report["growth_method"] == "post-cleanup-trend"
    assert report["growth_period_seconds"] == pytest.approx(7 * DAY, rel=0.02)
    assert report["time_to_full_seconds"] is None
    assert report["growth_history_seconds"] > 14 * DAY


def test_replay_within_a_cycle_that_will_not_reach_its_cleanup_is_critical():
    # Daily cleanups, then today's cycle fills five times faster than usual.
    usual = sawtooth(DAY, 30, 70)
    history = history_of(usual, days=3)
    start = history[-1][0]
    history += [(start + n * STEP, TOTAL * (0.30 + 0.02 * n)) for n in range(1, 30)]

    report = growth.replay(history, TOTAL)

    assert report["growth_method"] == "within-cycle"
    assert report["forecast_level"] == "critical"


def test_replay_of_a_flat_disk_says_not_growing():
    report = growth.replay(history_of(lambda t: 50.0, days=2), TOTAL)

    assert report["growth_bytes_per_day"] == 0
    assert report["time_to_full_seconds"] is None


def test_replay_needs_a_sample():
    with pytest.raises(ValueError, match="at least one"):
        growth.replay([], TOTAL)
