"""
Replay a disk's recorded usage through EOS's forecast: what would it have alarmed, and when?

.. code-block:: bash

    python -m saltext.eos.replay usage.csv --total-bytes 500107862016
    python -m saltext.eos.replay prometheus.json --mountpoint /var

Input, by content:

- CSV with a header ``timestamp,used_bytes`` (unix seconds; extra columns are ignored);
- the JSON a Prometheus range query returns (``/api/v1/query_range``) for
  ``node_filesystem_avail_bytes`` and ``node_filesystem_size_bytes`` of one mount (both, or
  avail alone with ``--total-bytes``); ``--mountpoint`` picks one mount from a larger export.

The history goes through the same tiers and estimator as ``eos_storage.analyze`` and the
beacon (``saltext.eos.utils.storage.growth.replay_steps``). The output lists every change of the
forecast level (the level the beacon raises from the time to full alone: warning under
24 h, critical under 4 h) and ends with the report at the last sample. Exit code 0; 2 for
input that cannot be read, with the reason.
"""

import argparse
import csv
import datetime
import json
import sys

from saltext.eos.utils import errors
from saltext.eos.utils import formatting
from saltext.eos.utils.storage import growth

AVAIL = "node_filesystem_avail_bytes"
SIZE = "node_filesystem_size_bytes"


class ReplayInputError(errors.InvalidInput):
    """The input file cannot be read as a usage history; the message says why."""


def read_history(text, total_bytes=None, mountpoint=None):
    """``(samples, total_bytes)`` from CSV or Prometheus JSON text."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return _from_prometheus(stripped, total_bytes, mountpoint)
    samples = _from_csv(text)
    if total_bytes is None:
        raise ReplayInputError("a CSV history needs --total-bytes (the capacity it fills)")
    return samples, total_bytes


def _from_csv(text):
    rows = csv.DictReader(text.splitlines())
    if not rows.fieldnames or not {"timestamp", "used_bytes"} <= set(rows.fieldnames):
        raise ReplayInputError("the CSV header must name the columns timestamp,used_bytes")
    samples = []
    for line, row in enumerate(rows, start=2):
        try:
            samples.append((float(row["timestamp"]), float(row["used_bytes"])))
        except (TypeError, ValueError) as err:
            raise ReplayInputError(f"line {line}: {row!r} is not two numbers") from err
    if not samples:
        raise ReplayInputError("the CSV has a header but no samples")
    return samples


def _from_prometheus(text, total_bytes, mountpoint):
    try:
        result = json.loads(text)["data"]["result"]
    except (ValueError, KeyError, TypeError) as err:
        raise ReplayInputError(f"not a Prometheus range-query answer: {err}") from err
    series = {}
    for item in result:
        metric = item.get("metric") or {}
        if mountpoint is not None and metric.get("mountpoint") != mountpoint:
            continue
        name = metric.get("__name__")
        if name in (AVAIL, SIZE):
            if name in series:
                raise ReplayInputError(f"several {name} series: pick one mount with --mountpoint")
            series[name] = {float(t): float(v) for t, v in item.get("values") or []}
    if AVAIL not in series:
        raise ReplayInputError(f"no {AVAIL} series" + (f" for {mountpoint}" if mountpoint else ""))
    sizes = series.get(SIZE)
    if sizes is None and total_bytes is None:
        raise ReplayInputError(f"no {SIZE} series: give --total-bytes")
    samples = []
    for when, avail in sorted(series[AVAIL].items()):
        size = total_bytes if total_bytes is not None else sizes.get(when)
        if size is not None:
            samples.append((when, size - avail))
    if not samples:
        raise ReplayInputError(f"no timestamp has both {AVAIL} and {SIZE}")
    total = total_bytes if total_bytes is not None else max(sizes.values())
    return samples, total


def alarm_changes(reports):
    """The reports at which the forecast level changed, the first one included."""
    changes, level = [], None
    for report in reports:
        if report["forecast_level"] != level:
            changes.append(report)
            level = report["forecast_level"]
    return changes


def _when(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M")


def _line(report):
    full = report["time_to_full_seconds"]
    full_in = formatting.human_duration(full) if full is not None else "-"
    return (
        f"{_when(report['time'])}  {report['forecast_level']:<8}  "
        f"{report['usage_percent']:>6.2f}%  full in {full_in:<8}  {report['growth_method']}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m saltext.eos.replay",
        description="Replay a disk's usage history through EOS's forecast.",
    )
    parser.add_argument("history", help="CSV (timestamp,used_bytes) or Prometheus JSON")
    parser.add_argument("--total-bytes", type=float, help="the capacity the samples fill")
    parser.add_argument("--mountpoint", help="the mount to take from a Prometheus export")
    parser.add_argument(
        "--every", type=float, default=600, help="seconds of history between two forecasts"
    )
    parser.add_argument("--json", action="store_true", help="print every forecast as JSON")
    args = parser.parse_args(argv)
    try:
        with open(args.history, encoding="utf-8") as handle:
            samples, total = read_history(handle.read(), args.total_bytes, args.mountpoint)
        reports = list(growth.replay_steps(samples, total, every_seconds=args.every))
    except (OSError, ReplayInputError, ValueError) as err:
        print(f"replay: {args.history}: {err}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(reports, sys.stdout, indent=1)
        print()
        return 0
    print(f"{len(samples)} samples, {_when(samples[0][0])} to {_when(samples[-1][0])}")
    print("forecast level changes:")
    for report in alarm_changes(reports):
        print("  " + _line(report))
    print("at the last sample:")
    print("  " + _line(reports[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
