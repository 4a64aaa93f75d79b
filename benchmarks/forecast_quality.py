"""
Benchmark: disk-full alarms of EOS's forecast against Prometheus' `predict_linear` over 6 h,
on synthetic disks whose future is known.

Each series is a 100 GiB disk sampled every two minutes: flat, noisy, steady fills at
several rates, single bursts, a runaway writer after calm days, and daily and weekly
sawtooth cycles (logrotate, purges) with and without rising troughs. Every 30 minutes of an
evaluation period both forecasters say whether the disk is full within 4 h (critical) and
within 24 h (warning), and the true future says whether it is:

- a **false alarm**: an alarm for a horizon H while the disk truly has more than 1.5 H;
- a **missed alarm**: no alarm while the disk is truly full within 0.75 H.

EOS runs through ``saltext.eos.utils.storage.growth.replay_steps``: the same history tiers and
estimator as ``eos_storage.analyze`` and the beacon. The baseline is a least-squares line
through the last 6 h of samples, extrapolated H ahead, as ``predict_linear`` does. Target:
zero false and zero missed alarms for EOS; the baseline raises several.

    python benchmarks/forecast_quality.py
"""

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from saltext.eos.utils.storage import growth

GIB = 1024**3
TOTAL = 100 * GIB
STEP = 120
HOUR = 3600
DAY = 86400
EVERY = 1800
HORIZONS = {"critical": 4 * HOUR, "warning": 24 * HOUR}
FALSE_BEYOND = 1.5
MISSED_WITHIN = 0.75
BASELINE_WINDOW = 6 * HOUR


def steady(start_percent, percent_per_day):
    def used(t):
        return start_percent + percent_per_day * t / DAY

    return used


def sawtooth(period, low, high, troughs_per_period=0.0, peaks_per_period=None):
    """Fills from ``low`` to ``high`` each period, then a cleanup drops it back."""
    peaks_per_period = troughs_per_period if peaks_per_period is None else peaks_per_period

    def used(t):
        cycle, into = divmod(t, period)
        bottom = low + troughs_per_period * cycle
        top = high + peaks_per_period * cycle
        return bottom + (top - bottom) * into / period

    return used


def runaway(calm_days, start_percent, gib_per_hour):
    def used(t):
        start = calm_days * DAY
        if t < start:
            return start_percent
        return start_percent + 100 * gib_per_hour * (t - start) / HOUR / (TOTAL / GIB)

    return used


def burst(percent_per_day, at_day, size_percent, start_percent=40.0):
    def used(t):
        return (
            start_percent + percent_per_day * t / DAY + (size_percent if t >= at_day * DAY else 0)
        )

    return used


@dataclass(frozen=True)
class Case:
    """A synthetic disk: usage percent at t, its length, the days evaluated."""

    name: str
    used_percent: Callable
    days: float
    first_day: float
    last_day: float
    # Before this day no forecaster can know what comes (a writer that has not started yet):
    # misses count from then on, false alarms always.
    predictable_from_day: float = 0.0
    # Measurement noise (percent, normal) on top of the true usage; the truth has none.
    noise_percent: float = 0.0


CONFIRM_ALLOWANCE = growth.CONFIRM_SAMPLES * STEP / DAY

CASES = (
    Case("flat", steady(50, 0), 10, 3, 8),
    Case("noise", steady(60, 0), 10, 3, 8, noise_percent=0.3),
    Case("steady slow fill (40 d to full)", steady(55, 1.0), 10, 3, 8),
    Case("steady fill (10 %/day, full on day 6)", steady(40, 10.0), 8, 3, 5.95),
    Case("steady fast fill (20 %/day, day 4.5)", steady(10, 20.0), 6, 3, 4.45, noise_percent=0.05),
    Case("noisy fill (full on day 7)", steady(30, 10.0), 9, 3, 6.95, noise_percent=0.5),
    Case("single burst", burst(0.3, 5, 15), 10, 3, 8),
    Case(
        "runaway after calm (10 GiB/h, 2 h left)",
        runaway(9, 80.0, 10),
        9.1,
        3,
        9.08,
        predictable_from_day=9 + CONFIRM_ALLOWANCE,
    ),
    Case("daily logrotate to 95 %", sawtooth(DAY, 25, 95), 10, 3, 8),
    Case("daily cleanup, rising troughs (day 8)", sawtooth(DAY, 20, 80, 3), 10, 3, 7.9),
    Case("hourly cleanup to 90 %", sawtooth(HOUR, 70, 90), 5, 2, 3.5),
    Case("weekly purge to 90 %", sawtooth(7 * DAY, 30, 90), 22, 15, 20),
    Case("weekly purge, rising troughs", sawtooth(7 * DAY, 30, 75, 5), 30, 15, 28),
)


def generate(case, seed=1):
    """(samples as measured, with noise; the true usage at the same times)."""
    rng = random.Random(seed)
    measured, truth = [], []
    for step in range(int(case.days * DAY / STEP) + 1):
        t = float(step * STEP)
        percent = min(max(case.used_percent(t), 0.0), 100.0)
        noisy = min(max(percent + rng.gauss(0, case.noise_percent), 0.0), 100.0)
        measured.append((t, TOTAL * noisy / 100.0))
        truth.append((t, TOTAL * percent / 100.0))
    return measured, truth


def true_time_to_full(samples, index):
    """Seconds from samples[index] until the disk is full, by the series' own future."""
    now = samples[index][0]
    for t, used in samples[index:]:
        if used >= TOTAL:
            return t - now
    return math.inf


def baseline_alarms(samples, index):
    """predict_linear(avail[6h], H) < 0 for each horizon, on the raw samples."""
    now = samples[index][0]
    window = [(t, TOTAL - used) for t, used in samples[: index + 1] if t > now - BASELINE_WINDOW]
    if len(window) < 2:
        return dict.fromkeys(HORIZONS, False)
    mean_t = sum(t for t, _ in window) / len(window)
    mean_a = sum(a for _, a in window) / len(window)
    var = sum((t - mean_t) ** 2 for t, _ in window)
    slope = sum((t - mean_t) * (a - mean_a) for t, a in window) / var if var else 0.0
    at_now = mean_a + slope * (now - mean_t)
    return {name: at_now + slope * horizon < 0 for name, horizon in HORIZONS.items()}


def eos_alarms(report):
    level = report["forecast_level"]
    return {"critical": level == "critical", "warning": level in ("warning", "critical")}


def score(alarms, truth, counts, predictable=True):
    for name, horizon in HORIZONS.items():
        if alarms[name] and truth > FALSE_BEYOND * horizon:
            counts[f"false {name}"] += 1
        if predictable and not alarms[name] and truth < MISSED_WITHIN * horizon:
            counts[f"missed {name}"] += 1


def evaluate(case):
    samples, truths = generate(case)
    index_of = {t: i for i, (t, _) in enumerate(samples)}
    kinds = ("false critical", "false warning", "missed critical", "missed warning")
    counts = {"eos": dict.fromkeys(kinds, 0), "baseline": dict.fromkeys(kinds, 0)}
    points = 0
    for report in growth.replay_steps(samples, TOTAL, every_seconds=EVERY):
        now = report["time"]
        if not case.first_day * DAY <= now <= case.last_day * DAY:
            continue
        index = index_of[now]
        truth = true_time_to_full(truths, index)
        predictable = now >= case.predictable_from_day * DAY
        score(eos_alarms(report), truth, counts["eos"], predictable)
        score(baseline_alarms(samples, index), truth, counts["baseline"], predictable)
        points += 1
    return points, counts


def main():
    totals = {"eos": {}, "baseline": {}}
    print(f"{'series':<42} {'points':>6}  {'EOS false/missed':>17}  {'predict_linear':>15}")
    started = time.perf_counter()
    for case in CASES:
        points, counts = evaluate(case)
        cells = {}
        for who, found in counts.items():
            false = found["false critical"] + found["false warning"]
            missed = found["missed critical"] + found["missed warning"]
            cells[who] = f"{false}/{missed}"
            for key, value in found.items():
                totals[who][key] = totals[who].get(key, 0) + value
        print(f"{case.name:<42} {points:>6}  {cells['eos']:>17}  {cells['baseline']:>15}")
    print()
    for who in ("eos", "baseline"):
        line = ", ".join(f"{key} {value}" for key, value in totals[who].items())
        print(f"{'EOS' if who == 'eos' else 'predict_linear 6h':<18} {line}")
    eos_errors = sum(totals["eos"].values())
    baseline_errors = sum(totals["baseline"].values())
    print(f"wrong alarms: EOS {eos_errors}, predict_linear {baseline_errors} (target: EOS 0)")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0 if eos_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
