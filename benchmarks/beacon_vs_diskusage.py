"""
Benchmark: CPU time of one `eos_storage` beacon check against one check of Salt's own
`diskusage` beacon, watching the same mounts, in one run.

Both beacons run through Salt's beacon loader in this process, interleaved. The eos_storage
beacon runs as it does on a minion with `interval: 60`: a clock advanced by 60 s per check,
so every check records a history sample and every fifth refreshes the growth estimate
(growth_refresh: 300). Target: at most 1.5 x diskusage's CPU time, while doing transitions,
inodes and time-to-full prediction.

    python benchmarks/beacon_vs_diskusage.py [checks]
"""

import statistics
import sys
import tempfile
import time

import salt.config
import salt.loader

from saltext.eos.utils.storage import watch

TARGET_RATIO = 1.5
MOUNTS = ["/"]


class MinionClock:
    """time.time() of a minion whose beacon runs every 60 seconds."""

    def __init__(self):
        self.now = time.time()

    def time(self):
        self.now += 60
        return self.now


def beacon_functions(cachedir):
    opts = salt.config.minion_config(None)
    opts.update({"cachedir": cachedir, "file_client": "local", "id": "bench"})
    opts["grains"] = salt.loader.grains(opts)
    mods = salt.loader.minion_mods(opts)
    return salt.loader.beacons(opts, mods)


def cpu_seconds(function, config):
    start = time.process_time()
    function(config)
    return time.process_time() - start


def main(checks=3000):
    clock = MinionClock()
    watch.time.time = clock.time
    with tempfile.TemporaryDirectory() as cachedir:
        beacons = beacon_functions(cachedir)
        ours = beacons["eos_storage.beacon"]
        theirs = beacons["diskusage.beacon"]
        our_config = [{"mounts": MOUNTS}]
        their_config = [{mount: "1%"} for mount in MOUNTS]
        ours(our_config)
        theirs(their_config)
        our_times, their_times = [], []
        for _ in range(checks):
            our_times.append(cpu_seconds(ours, our_config))
            their_times.append(cpu_seconds(theirs, their_config))
    # process_time has a coarse tick on some kernels: compare means of many checks.
    ours_us = statistics.fmean(our_times) * 1e6
    theirs_us = statistics.fmean(their_times) * 1e6
    ratio = ours_us / theirs_us
    print(f"mounts: {MOUNTS}, checks: {checks}, simulated interval: 60 s")
    print(f"eos_storage beacon   mean CPU {ours_us:8.1f} us per check")
    print(f"diskusage beacon     mean CPU {theirs_us:8.1f} us per check  (baseline)")
    verdict = "ok" if ratio <= TARGET_RATIO else "MISSED"
    print(f"ratio                {ratio:8.2f}              (target <= {TARGET_RATIO}) {verdict}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main(*(int(arg) for arg in sys.argv[1:])))
