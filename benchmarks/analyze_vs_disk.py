"""
Benchmark: `eos_storage.analyze` against Salt's own `disk.usage` + `disk.inodeusage`.

Both run through Salt's loader in this process, interleaved, on the same mounts. analyze
records a history sample on every call here (the worst case; by default it records at most
one every 30 s). Printed as a ratio of medians; target: analyze <= 0.2 x the baseline.

A second measurement gives every mount a full history first (90 days of one sample a
minute, folded into the tiers, as on a minion that has run for months): the forecast then
reads the whole file and looks for cleanup cycles in it. Printed for information.

    python benchmarks/analyze_vs_disk.py [rounds]
"""

import statistics
import sys
import tempfile
import time

import salt.config
import salt.loader

from saltext.eos.utils import config
from saltext.eos.utils.storage import analyzer

TARGET_RATIO = 0.2


def loader_modules(cachedir):
    opts = salt.config.minion_config(None)
    opts.update(
        {
            "cachedir": cachedir,
            "file_client": "local",
            "eos": {"analyzer": {"history_min_interval": 0}},
        }
    )
    opts["grains"] = salt.loader.grains(opts)
    return salt.loader.minion_mods(opts)


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def fill_history(cachedir, reports, days=90):
    """Every mount's history as after ``days`` of one sample a minute, ending now."""
    store = analyzer.open_history(cachedir, analyzer.settings(config.Layers([])))
    now = time.time()
    for mount, report in reports.items():
        if "error" in report:
            continue
        for age in range(days * 86400, 0, -60):
            # A daily cycle of 1 % of the disk: enough for the cycle search to work on.
            used = report["used_bytes"] * (1 - 0.01 * ((age % 86400) / 86400))
            store.record(mount, used, report["total_bytes"], now=now - age)


def measure(rounds, prefill):
    with tempfile.TemporaryDirectory() as cachedir:
        mods = loader_modules(cachedir)
        analyze = mods["eos_storage.analyze"]

        def baseline():
            mods["disk.usage"]()
            mods["disk.inodeusage"]()

        if prefill:
            figures = analyzer.analyze(config.Layers([]), cachedir, record=False)
            fill_history(cachedir, figures)
        analyze()
        baseline()
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(timed(analyze))
            theirs.append(timed(baseline))
        mounts = len(analyze())
    return statistics.median(ours) * 1000, statistics.median(theirs) * 1000, mounts


def main(rounds=200):
    full_ms, full_baseline_ms, _ = measure(max(rounds // 4, 10), prefill=True)
    ours_ms, theirs_ms, mounts = measure(rounds, prefill=False)
    ratio = ours_ms / theirs_ms
    print(f"mounts analysed: {mounts}, rounds: {rounds}")
    print(f"eos_storage.analyze               median {ours_ms:8.2f} ms")
    print(f"disk.usage + disk.inodeusage      median {theirs_ms:8.2f} ms  (baseline)")
    verdict = "ok" if ratio <= TARGET_RATIO else "MISSED"
    print(
        f"ratio                             {ratio:8.2f}     (target <= {TARGET_RATIO}) {verdict}"
    )
    print("with 90 days of history per mount:")
    print(f"eos_storage.analyze               median {full_ms:8.2f} ms")
    print(f"disk.usage + disk.inodeusage      median {full_baseline_ms:8.2f} ms  (baseline)")
    print(f"ratio                             {full_ms / full_baseline_ms:8.2f}     (information)")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main(*(int(arg) for arg in sys.argv[1:])))
