"""
Growth rate and time to full from a series of (timestamp, used_bytes) samples.

The estimate must hold up on real disks, where usage is not a straight line:

- noise: the slope is a median of slopes between samples half a segment apart (Sen's
  median-of-slopes idea with linear cost), which a few wild points cannot move, where least
  squares follows every outlier;
- one-off bursts and cleanups: an increment far outside the series' usual step (more than
  ``JUMP_MADS`` robust deviations and more than ``min_jump_bytes``) is a *jump*; pairs that
  straddle a jump are left out, so a single 20 GB copy does not turn into a 20 GB/h forecast;
- sawtooth (steady growth cut by periodic cleanups, e.g. logrotate): with two or more
  cleanups in the window the disk's real trend is what survives each cleanup, so the growth
  is the slope through the post-cleanup troughs (with bursts removed). A disk that fills
  between cleanups but is emptied every cycle is not growing, and gets no "full in minutes".

Until the history spans ``min_span_seconds`` with ``min_samples`` samples the estimate is
None: no data is not the same as no growth.
"""

import bisect
import math
import statistics
from dataclasses import dataclass

DAY_SECONDS = 86400
DEFAULT_WINDOW_SECONDS = 6 * 3600
DEFAULT_MIN_SAMPLES = 5
DEFAULT_MIN_SPAN_SECONDS = 30 * 60

# How far (in median absolute deviations) an increment must stand out to be a jump.
JUMP_MADS = 8.0
# MAD scaled to a standard deviation under normal noise.
MAD_TO_SIGMA = 1.4826
# A jump undone by the next step to within this share of its size is a one-sample spike.
SPIKE_RETURN = 0.5
# A longer series is thinned to this many evenly spaced samples: the estimate stays cheap
# while cleanups and bursts are still placed to within a few samples.
MAX_POINTS = 128


@dataclass(frozen=True)
class Estimate:
    """A growth estimate: bytes per second (None when unknown) and how it was reached."""

    bytes_per_second: float | None
    method: str
    samples: int
    span_seconds: float
    jumps: int = 0
    cleanups: int = 0

    @property
    def bytes_per_day(self):
        if self.bytes_per_second is None:
            return None
        return self.bytes_per_second * DAY_SECONDS


def estimate(
    samples,
    now=None,
    window_seconds=DEFAULT_WINDOW_SECONDS,
    min_samples=DEFAULT_MIN_SAMPLES,
    min_span_seconds=DEFAULT_MIN_SPAN_SECONDS,
    min_jump_bytes=0,
):
    """
    Estimate growth from ``samples``, a sequence of (timestamp, used_bytes, ...) tuples.

    Only samples inside ``window_seconds`` before ``now`` (default: the newest sample) count.
    Items after the first two are ignored, so history records can be passed as they are.
    """
    window = _windowed(samples, now, window_seconds)
    span = window[-1][0] - window[0][0] if len(window) > 1 else 0.0
    if len(window) < min_samples or span < min_span_seconds:
        return Estimate(None, "insufficient-history", len(window), span)

    series = _without_spikes(_thinned(window), min_jump_bytes)
    jump_after = _jump_indices(series, min_jump_bytes)
    cleanups = [i for i in jump_after if series[i + 1][1] < series[i][1]]
    if len(cleanups) >= 2:
        rate = _trough_slope(series, jump_after, cleanups)
        method = "post-cleanup-trend"
    else:
        rate = _segmented_median_slope(series, jump_after)
        method = "median-slope"
    return Estimate(rate, method, len(window), span, len(jump_after), len(cleanups))


def time_to_full_seconds(free_bytes, bytes_per_second):
    """Seconds until ``free_bytes`` are used at ``bytes_per_second``; None if not growing."""
    if bytes_per_second is None or bytes_per_second <= 0 or free_bytes is None:
        return None
    return max(free_bytes, 0) / bytes_per_second


def _windowed(samples, now, window_seconds):
    """(timestamp, used) pairs inside the window, oldest first; non-finite ones dropped."""
    ordered = sorted(samples)
    if not ordered:
        return []
    end = ordered[-1][0] if now is None else float(now)
    first = bisect.bisect_left(ordered, (end - window_seconds,))
    last = bisect.bisect_right(ordered, (end, math.inf))
    return ordered[first:last]


def _thinned(window):
    """At most MAX_POINTS evenly spaced (timestamp, used) floats, keeping first and last."""
    if len(window) > MAX_POINTS:
        last = len(window) - 1
        picks = sorted({round(k * last / (MAX_POINTS - 1)) for k in range(MAX_POINTS)})
        window = [window[i] for i in picks]
    points = [(float(sample[0]), float(sample[1])) for sample in window]
    return [(t, used) for t, used in points if math.isfinite(t) and math.isfinite(used)]


def _without_spikes(series, min_jump_bytes):
    """
    The series without one-sample spikes: a jump straight followed by its opposite.

    A temporary file that came and went between two checks is neither a burst nor a
    cleanup; left in, its two jumps would read as a sawtooth.
    """
    jumps = set(_jump_indices(series, min_jump_bytes))
    spikes = set()
    for i in sorted(jumps):
        if i + 1 not in jumps or i in spikes:
            continue
        up = series[i + 1][1] - series[i][1]
        down = series[i + 2][1] - series[i + 1][1]
        if up * down < 0 and abs(up + down) < SPIKE_RETURN * abs(up):
            spikes.add(i + 1)
    return [sample for index, sample in enumerate(series) if index not in spikes]


def _jump_indices(series, min_jump_bytes):
    """Indices i where the step from sample i to i+1 is a jump (burst or cleanup)."""
    steps = [
        (series[i + 1][1] - series[i][1], series[i + 1][0] - series[i][0])
        for i in range(len(series) - 1)
    ]
    rates = [delta / elapsed for delta, elapsed in steps if elapsed > 0]
    if len(rates) < 3:
        return []
    typical = statistics.median(rates)
    spread = MAD_TO_SIGMA * statistics.median(abs(rate - typical) for rate in rates)
    # Below a byte nothing is a jump, whatever the spread: exact series have a MAD of zero.
    floor = max(min_jump_bytes, 1.0)
    jumps = []
    for i, (delta, elapsed) in enumerate(steps):
        if elapsed <= 0:
            continue
        unexpected = delta - typical * elapsed
        if abs(unexpected) > max(JUMP_MADS * spread * elapsed, floor):
            jumps.append(i)
    return jumps


def _segmented_median_slope(series, jump_after):
    """
    Median slope over pairs of samples half a segment apart, never across a jump.

    Pairing each sample with the one half a segment later (rather than every pair, as full
    Theil-Sen does) keeps the cost linear while each slope has a long baseline, so noise
    averages out and a wild sample spoils at most two of the slopes.
    """
    slopes = []
    for segment in _segments(series, jump_after):
        half = (len(segment) + 1) // 2
        for (t1, used1), (t2, used2) in zip(segment, segment[half:], strict=False):
            if t2 > t1:
                slopes.append((used2 - used1) / (t2 - t1))
    return statistics.median(slopes) if slopes else 0.0


def _segments(series, jump_after):
    """The runs of samples between jumps."""
    start = 0
    for i in jump_after:
        yield series[start : i + 1]
        start = i + 1
    yield series[start:]


def _trough_slope(series, jump_after, cleanups):
    """
    Slope through the samples right after each cleanup, bursts removed.

    Bursts are subtracted (an adjusted series where each burst step counts as zero), so the
    trough trend is what ordinary writes leave behind after each cleanup.
    """
    bursts = set(jump_after) - set(cleanups)
    adjusted = [series[0][1]]
    for i in range(len(series) - 1):
        step = 0.0 if i in bursts else series[i + 1][1] - series[i][1]
        adjusted.append(adjusted[-1] + step)
    troughs = [(series[i + 1][0], adjusted[i + 1]) for i in cleanups]
    slopes = [
        (troughs[j][1] - troughs[i][1]) / (troughs[j][0] - troughs[i][0])
        for i in range(len(troughs))
        for j in range(i + 1, len(troughs))
        if troughs[j][0] > troughs[i][0]
    ]
    return statistics.median(slopes) if slopes else 0.0
