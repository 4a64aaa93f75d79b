"""
Growth rate and time to full from a mount's usage history.

A forecast raises the beacon's level (warning under 24 h, critical under 4 h), so a wrong one
is a wrong alarm at 3 a.m. Real disks are not straight lines, and each method below answers
one way they are not. Every Estimate names its ``method`` and the history it rests on
(``samples``, ``span_seconds``).

``insufficient-history``
    Fewer than ``min_samples`` recent samples, or less than ``min_span_seconds``: no data is
    not the same as no growth, so the rate is None.
``median-slope``
    The recent window (``window_seconds``, 6 h) of full-resolution samples: a median of slopes
    between samples half a segment apart (Sen's idea with linear cost), which a few wild
    points cannot move. One-off bursts and cleanups (a step far outside the usual one, more
    than ``JUMP_MADS`` robust deviations and ``min_jump_bytes``) split the series into
    segments and are never bridged, so a single 20 GB copy is not a 20 GB/h forecast.
``rate-change``
    The last ``CONFIRM_SAMPLES`` (5) samples agree on a rate that is not the window's: the
    new rate holds, so it is a rate change, not a burst (a burst is one step, then the old
    rate). The forecast uses the new rate from then on: a writer that starts filling a calm
    disk at 10 GiB/h raises critical within five samples, not after half the window.
``post-cleanup-trend``
    Periodic cleanups (logrotate, a nightly purge: any drop of more than ``min_cleanup_bytes``
    seen at least twice) over the long history tiers (8 days of 10-minute buckets, 90 days of
    2-hour ones, each with its low, high and last value). The disk's trend is what survives
    the cleanups: the slope of the troughs after each cleanup is the growth, and the time to
    full is when the peaks before each cleanup reach the top. Troughs that do not rise: not
    growing, however fast each cycle fills.
``within-cycle``
    Between those cleanups, the current cycle's rate would fill the disk before the next
    cleanup is due (or the cleanup is overdue by half a period): the forecast is the time to
    full at that rate, now.
"""

import bisect
import collections
import itertools
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
# Samples that must agree on a new rate before the forecast follows it: fewer would let
# one burst read as a rate change, more would leave a runaway writer unseen for longer.
CONFIRM_SAMPLES = 5
# Rates within this share of each other agree (noise aside).
RATE_TOLERANCE = 0.5
# A cleanup cycle whose last cleanup is this many periods old has stopped.
STOPPED_AFTER_PERIODS = 2.0
# The next cleanup is overdue when it is late by this share of a period.
OVERDUE_SHARE = 0.5


@dataclass(frozen=True)
class Estimate:
    """
    A growth estimate. ``bytes_per_second`` is the growth (None when unknown); a forecast
    runs at ``forecast_rate`` (default: the growth) from ``reference_used`` (default: the
    usage now), e.g. the last peak of a sawtooth.
    """

    bytes_per_second: float | None
    method: str
    samples: int
    span_seconds: float
    jumps: int = 0
    cleanups: int = 0
    period_seconds: float | None = None
    forecast_rate: float | None = None
    reference_used: float | None = None

    @property
    def bytes_per_day(self):
        if self.bytes_per_second is None:
            return None
        return self.bytes_per_second * DAY_SECONDS

    def time_to_full(self, used_bytes, free_bytes):
        """Seconds until the forecast reaches ``used_bytes + free_bytes``; None if never."""
        rate = self.bytes_per_second if self.forecast_rate is None else self.forecast_rate
        if free_bytes is None:
            return None
        start = used_bytes if self.reference_used is None else max(used_bytes, self.reference_used)
        return time_to_full_seconds(used_bytes + free_bytes - start, rate)


def estimate(
    history,
    now=None,
    window_seconds=DEFAULT_WINDOW_SECONDS,
    min_samples=DEFAULT_MIN_SAMPLES,
    min_span_seconds=DEFAULT_MIN_SPAN_SECONDS,
    min_jump_bytes=0,
    min_cleanup_bytes=None,
    capacity_bytes=None,
):
    """
    Estimate growth from ``history``: a ``history.Series`` (raw samples and coarse buckets)
    or a plain sequence of (timestamp, used_bytes, ...) samples.

    Only raw samples inside ``window_seconds`` before ``now`` (default: the newest sample)
    make the recent rate. ``min_cleanup_bytes`` (default ``min_jump_bytes``) is the smallest
    drop that counts as a cleanup; ``capacity_bytes`` (used plus free now), when given, lets a
    sawtooth's current cycle be checked against the top.
    """
    raw, buckets = _parts(history)
    window = _windowed(raw, now, window_seconds)
    span = window[-1][0] - window[0][0] if len(window) > 1 else 0.0
    if len(window) < min_samples or span < min_span_seconds:
        return Estimate(None, "insufficient-history", len(window), span)
    end = window[-1][0] if now is None else float(now)
    recent = _recent(window, min_jump_bytes)
    cycle = _cleanup_cycle(
        _observations(raw, buckets, end),
        end,
        min_jump_bytes if min_cleanup_bytes is None else min_cleanup_bytes,
    )
    if cycle is not None:
        return _cycle_estimate(cycle, recent, window, end, capacity_bytes)
    return Estimate(
        recent["rate"],
        recent["method"],
        len(window),
        span,
        recent["jumps"],
        recent["cleanups"],
        reference_used=recent["level"],
    )


def time_to_full_seconds(free_bytes, bytes_per_second):
    """Seconds until ``free_bytes`` are used at ``bytes_per_second``; None if not growing."""
    if bytes_per_second is None or bytes_per_second <= 0 or free_bytes is None:
        return None
    return max(free_bytes, 0) / bytes_per_second


# --- the recent window: median slope, bursts, rate changes --------------------------------------


def _recent(window, min_jump_bytes):
    """{rate, method, jumps, cleanups} of the recent full-resolution window."""
    series = _without_spikes(_thinned(window), min_jump_bytes)
    jump_after = _jump_indices(series, min_jump_bytes)
    cleanups = sum(1 for i in jump_after if series[i + 1][1] < series[i][1])
    end = series[-1][0]
    changed = _rate_change(window, min_jump_bytes)
    if changed is not None:
        tail = [(float(t), float(used)) for t, used, *_ in window[-CONFIRM_SAMPLES:]]
        return {"rate": changed, "method": "rate-change", "jumps": len(jump_after),
                "cleanups": cleanups, "level": _level_now(tail, changed, end)}  # fmt: skip
    rate = _segmented_median_slope(series, jump_after)
    last_segment = series[jump_after[-1] + 1 :] if jump_after else series
    return {
        "rate": rate,
        "method": "median-slope",
        "jumps": len(jump_after),
        "cleanups": cleanups,
        "level": _level_now(last_segment, rate, end),
    }


def _level_now(points, rate, now):
    """
    The usage now on the fitted line (a median over the points, as Theil-Sen's intercept):
    one noisy last sample does not move where the forecast starts from.
    """
    return statistics.median(used + rate * (now - t) for t, used in points)


def _rate_change(window, min_jump_bytes):
    """
    The new rate when the last CONFIRM_SAMPLES samples agree on one that differs from the
    rate before them; None otherwise (steady, noisy, or a one-off burst).
    """
    points = [(float(t), float(used)) for t, used, *_ in window]
    steps = [
        (used2 - used1) / (t2 - t1)
        for (t1, used1), (t2, used2) in itertools.pairwise(points)
        if t2 > t1
    ]
    confirm = CONFIRM_SAMPLES - 1
    if len(steps) < confirm * 2:
        return None
    tail, before = steps[-confirm:], steps[:-confirm]
    new_rate = statistics.median(tail)
    old_rate = statistics.median(before)
    noise = MAD_TO_SIGMA * statistics.median(abs(rate - old_rate) for rate in before)
    elapsed = points[-1][0] - points[-1 - confirm][0]
    floor = max(min_jump_bytes, 1.0) / max(elapsed, 1.0)
    tolerance = max(RATE_TOLERANCE * abs(new_rate), 3 * noise, floor)
    agrees = all(abs(rate - new_rate) <= tolerance for rate in tail)
    if agrees and abs(new_rate - old_rate) > tolerance and new_rate > old_rate:
        return new_rate
    return None


# --- the long history: periodic cleanups --------------------------------------------------------


def _observations(raw, buckets, end):
    """
    The long history, oldest first, as ``(start, end, low, high, last)``: the buckets, then
    the raw samples after them. Tuples, not objects: a full history has thousands.
    """
    found = [
        (b.start, b.start + b.seconds, b.low, b.high, b.last)
        for b in buckets
        if b.start <= end and math.isfinite(b.low + b.high + b.last)
    ]
    first_raw = found[-1][1] if found else -math.inf
    found += [
        (t, t, used, used, used)
        for t, used, *_ in raw
        if first_raw <= t <= end and math.isfinite(used)
    ]
    return found


def _cleanup_cycle(observations, end, min_cleanup_bytes):
    """
    {cleanups: [(time, peak, trough)], period} when the history shows cleanups at least
    twice and the cycle is still going; None otherwise.
    """
    drops = _drops(observations, min_cleanup_bytes)
    if len(drops) < 2:
        return None
    times = [time for time, _, _ in drops]
    period = statistics.median(b - a for a, b in itertools.pairwise(times))
    if period <= 0 or end - times[-1] > STOPPED_AFTER_PERIODS * period:
        return None
    return {"cleanups": drops, "period": period, "span": end - observations[0][0]}


def _drops(observations, min_cleanup_bytes):
    """(time, peak, trough) of each drop that stands out of the history's usual steps."""
    drops = []
    points = [(stop, last) for _, stop, _, _, last in observations]
    for i in _drop_indices(points, min_cleanup_bytes):
        _, _, _, before_high, before_last = observations[i]
        after_start, after_end, after_low, after_high, after_last = observations[i + 1]
        if after_last >= before_last:
            continue
        peak = max(before_last, after_high if after_end > after_start else before_high)
        drops.append((after_start, peak, min(after_low, after_last)))
    return drops


def _drop_indices(points, min_cleanup_bytes):
    """
    Indices i where the step from point i to i+1 falls far below the usual growth.

    The long history mixes resolutions (2-hour and 10-minute buckets, raw samples), so the
    spread is measured in bytes, not bytes per second: measurement noise is the same
    whatever the gap between two points, while the growth expected over a step is not. A
    bucket ends where the next point starts, so a step may take no time at all.
    """
    steps = [(b[1] - a[1], b[0] - a[0]) for a, b in itertools.pairwise(points)]
    rates = [delta / elapsed for delta, elapsed in steps if elapsed > 0]
    if len(rates) < 3:
        return []
    typical = statistics.median(rates)
    unexpected = [delta - typical * max(elapsed, 0.0) for delta, elapsed in steps]
    spread = MAD_TO_SIGMA * statistics.median(abs(value) for value in unexpected)
    limit = max(JUMP_MADS * spread, min_cleanup_bytes, 1.0)
    return [i for i, value in enumerate(unexpected) if value < -limit]


def _cycle_estimate(cycle, recent, window, end, capacity_bytes):
    cleanups, period = cycle["cleanups"], cycle["period"]
    trough_trend = _pairwise_median_slope([(t, trough) for t, _, trough in cleanups])
    peak_trend = _pairwise_median_slope([(t, peak) for t, peak, _ in cleanups])
    base = {
        "samples": len(window),
        "span_seconds": cycle["span"],
        "jumps": recent["jumps"],
        "cleanups": len(cleanups),
        "period_seconds": period,
    }
    filling = _fills_before_next_cleanup(cleanups, period, recent, window, end, capacity_bytes)
    if filling is not None:
        return Estimate(filling, "within-cycle", **base)
    last_peak = cleanups[-1][1]
    toward_top = peak_trend if peak_trend > 0 else trough_trend
    return Estimate(
        trough_trend,
        "post-cleanup-trend",
        forecast_rate=toward_top,
        reference_used=last_peak,
        **base,
    )


def _fills_before_next_cleanup(cleanups, period, recent, window, end, capacity_bytes):
    """The current cycle's rate when it reaches the top before the next cleanup, else None."""
    last_cleanup = cleanups[-1][0]
    since = [sample for sample in window if sample[0] >= last_cleanup]
    if capacity_bytes is None or len(since) < 2:
        return None
    rate = recent["rate"] if recent["method"] == "rate-change" else _median_slope(since)
    if rate is None or rate <= 0:
        return None
    due = last_cleanup + period
    if end > due + OVERDUE_SHARE * period:
        return rate  # the cleanup did not come: the disk fills at this rate
    used_now = float(window[-1][1])
    return rate if used_now + rate * max(due - end, 0.0) >= capacity_bytes else None


# --- shared pieces ------------------------------------------------------------------------------


def _parts(history):
    """(raw samples, buckets) of a history.Series or of a plain sequence of samples."""
    if hasattr(history, "raw"):
        return list(history.raw), list(history.buckets)
    return list(history), []


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


def _median_slope(samples):
    series = _thinned(samples)
    return _segmented_median_slope(series, [])


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


def _pairwise_median_slope(points):
    """Theil-Sen: the median slope over every pair of points (there are few: one a cycle)."""
    slopes = [
        (b[1] - a[1]) / (b[0] - a[0])
        for i, a in enumerate(points)
        for b in points[i + 1 :]
        if b[0] > a[0]
    ]
    return statistics.median(slopes) if slopes else 0.0


# --- replay: what EOS would have reported on a recorded history ---------------------------------


def replay(samples, total_bytes, **settings):
    """
    Feed ``samples`` (``(unix_seconds, used_bytes)``, oldest first) through the same history
    tiers and estimator that ``eos_storage.analyze`` and the beacon use, and return what
    ``analyze`` would report at the last sample.

    ``total_bytes`` is the capacity the samples fill (used plus available). ``settings`` are
    ``eos:analyzer`` keys (``growth_window``, ``history_min_interval``, ...) and the beacon's
    ``time_to_full`` (``{warning, critical}`` seconds).

    Returns ``{time, used_bytes, usage_percent, growth_bytes_per_day, growth_method,
    growth_history_seconds, growth_period_seconds, time_to_full_seconds, forecast_level}``:
    ``forecast_level`` is the level the beacon raises from the forecast alone (none, warning
    or critical).
    """
    reports = collections.deque(
        replay_steps(samples, total_bytes, every_seconds=math.inf, **settings), maxlen=1
    )
    if not reports:
        raise ValueError("replay needs at least one (unix_seconds, used_bytes) sample")
    return reports[0]


def replay_steps(samples, total_bytes, every_seconds=3600, **settings):
    """
    ``replay``, reporting along the way: one report every ``every_seconds`` of sample time
    (and at the last sample), as an on-call engineer would have seen it then.
    """
    import tempfile

    from saltext.eos.utils import config
    from saltext.eos.utils.storage import analyzer
    from saltext.eos.utils.storage import watch

    ttf = settings.pop("time_to_full", None)
    layers = config.Layers([("replay", {"analyzer": settings})])
    opts = analyzer.settings(layers)
    watch_settings = watch.settings({"time_to_full": ttf} if ttf else {})
    total = float(total_bytes)
    ordered = sorted((float(t), float(used)) for t, used, *_ in samples)
    with tempfile.TemporaryDirectory(prefix="eos-replay-") as directory:
        store = analyzer.open_history(directory, opts)
        next_report = ordered[0][0] if ordered else 0.0
        for index, (now, used) in enumerate(ordered):
            store.record("/", used, total, now=now)
            if now < next_report and index < len(ordered) - 1:
                continue
            next_report = now + every_seconds
            yield _replayed(store.series("/", now), now, used, total, opts, watch_settings)


def _replayed(series, now, used, total, opts, watch_settings):
    import types

    from saltext.eos.utils.storage import analyzer
    from saltext.eos.utils.storage import watch

    free = max(total - used, 0.0)
    # The analyzer's own estimate, on the figures a statvfs would have given then.
    figures = types.SimpleNamespace(total_bytes=total, used_bytes=used, free_bytes=free)
    found = analyzer.estimate_growth(series, figures, opts, now)
    seconds = found.time_to_full(used, free)
    return {
        "time": now,
        "used_bytes": used,
        "usage_percent": round(100.0 * used / total, 2) if total else None,
        "growth_bytes_per_day": found.bytes_per_day,
        "growth_method": found.method,
        "growth_history_seconds": found.span_seconds,
        "growth_period_seconds": found.period_seconds,
        "time_to_full_seconds": seconds,
        "forecast_level": watch.time_to_full_level(seconds, watch_settings),
    }
