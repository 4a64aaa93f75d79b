"""
Benchmark: `eos_storage.analyze` against Salt's own `disk.usage` + `disk.inodeusage`.

Both run through Salt's loader in this process, interleaved, on the same mounts. analyze
records a history sample on every call here (the worst case; by default it records at most
one every 30 s). Printed as a ratio of medians; target: analyze <= 0.2 x the baseline.

    python benchmarks/analyze_vs_disk.py [rounds]
"""

import statistics
import sys
import tempfile
import time

import salt.config
import salt.loader

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


def main(rounds=200):
    with tempfile.TemporaryDirectory() as cachedir:
        mods = loader_modules(cachedir)
        analyze = mods["eos_storage.analyze"]

        def baseline():
            mods["disk.usage"]()
            mods["disk.inodeusage"]()

        analyze()
        baseline()
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(timed(analyze))
            theirs.append(timed(baseline))
        mounts = len(analyze())
    ours_ms = statistics.median(ours) * 1000
    theirs_ms = statistics.median(theirs) * 1000
    ratio = ours_ms / theirs_ms
    print(f"mounts analysed: {mounts}, rounds: {rounds}")
    print(f"eos_storage.analyze               median {ours_ms:8.2f} ms")
    print(f"disk.usage + disk.inodeusage      median {theirs_ms:8.2f} ms  (baseline)")
    verdict = "ok" if ratio <= TARGET_RATIO else "MISSED"
    print(
        f"ratio                             {ratio:8.2f}     (target <= {TARGET_RATIO}) {verdict}"
    )
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main(*(int(arg) for arg in sys.argv[1:])))
