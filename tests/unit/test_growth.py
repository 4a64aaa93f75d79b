"""The growth estimator on synthetic series with a known answer."""

import random

import pytest

from saltext.eos.utils import growth

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
