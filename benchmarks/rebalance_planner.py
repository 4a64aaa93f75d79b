"""
Benchmark: the rebalance planner (`saltext.eos.utils.datasets.rebalance.plan`) on skewed fleets of
100, 1,000 and 10,000 data nodes.

Each fleet is generated from a fixed seed: three capacity classes (4, 8 and 16 TB); most nodes
around the middle, a tenth nearly full (80-95%, past their cleanup level) and a tenth nearly
empty (newly added, 0-5%); every node holds 20 to 60 datasets of log-normal sizes (a few large,
many small) that make up its usage, plus a little usage outside datasets. The planner gets
node and dataset mappings, as the runner passes them from the registry, so the time includes
checking them.

Baseline for the traffic: the lower bound (`rebalance.lower_bound_bytes`), the fewest bytes any
plan must move. Printed per fleet: plan time (median of a few runs, wall clock and CPU; on a
shared machine the CPU time is the steadier figure), moves, the largest deviation from the
mean before and after (percentage points; threshold 10), and bytes moved as a ratio to the
lower bound.

Targets: ratio <= 1.05, 10,000 nodes planned in under 5 s.

    python benchmarks/rebalance_planner.py [runs]
"""

import random
import statistics
import sys
import time

from saltext.eos.utils.datasets import rebalance

SIZES = (100, 1_000, 10_000)
SEED = 20240611
THRESHOLD = 10
TARGET_RATIO = 1.05
TARGET_SECONDS = 5.0
TB = 10**12
CAPACITIES = (4 * TB, 8 * TB, 16 * TB)
CLEANUP_PERCENT = 85
DATASETS_PER_NODE = (20, 60)
# (share of nodes, lowest and highest usage percent)
USAGE_CLASSES = ((0.1, 80, 95), (0.1, 0, 5), (0.8, 30, 65))
OTHER_FILES_PERCENT = (0.5, 2.0)  # usage outside datasets: the OS, logs


def usage_percent(rng):
    draw = rng.random()
    for share, low, high in USAGE_CLASSES:
        if draw < share:
            return rng.uniform(low, high)
        draw -= share
    return rng.uniform(*USAGE_CLASSES[-1][1:])


def generate(count, rng):
    """Node and dataset mappings of a skewed fleet of ``count`` data nodes."""
    nodes, datasets = [], []
    for index in range(count):
        node_id = f"data-{index:05d}"
        capacity = rng.choice(CAPACITIES)
        other = int(capacity * rng.uniform(*OTHER_FILES_PERCENT) / 100)
        target = max(other, int(capacity * usage_percent(rng) / 100))
        sizes = [rng.lognormvariate(0, 1) for _ in range(rng.randint(*DATASETS_PER_NODE))]
        scale = (target - other) / sum(sizes)
        used = other
        for number, size in enumerate(sizes):
            size_bytes = int(size * scale)
            name = f"{node_id}/ds-{number:02d}"
            datasets.append({"name": name, "node": node_id, "bytes": size_bytes})
            used += size_bytes
        nodes.append(
            {
                "id": node_id,
                "role": "data",
                "capacity_bytes": capacity,
                "used_bytes": used,
                "cleanup_percent": CLEANUP_PERCENT,
                "datacenter": f"dc{index % 3}",
                "rack": f"r{index % 8}",
            }
        )
    return nodes, datasets


def median_seconds(function, runs):
    """Median wall and CPU seconds of ``runs`` calls, and the last result."""
    wall, cpu = [], []
    result = None
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = function()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), result


def main(runs=3):
    print(f"rebalance plan, threshold {THRESHOLD} points, median of {runs} runs")
    print(
        f"{'nodes':>7} {'datasets':>9} {'plan s':>7} {'cpu s':>6} {'moves':>7} "
        f"{'dev before':>11} {'dev after':>10} {'moved/bound':>12} {'reached':>8}"
    )
    ok = True
    for size in SIZES:
        nodes, datasets = generate(size, random.Random(SEED + size))
        seconds, cpu_seconds, result = median_seconds(
            lambda nodes=nodes, datasets=datasets: rebalance.plan(nodes, datasets, THRESHOLD),
            runs,
        )
        (balance,) = result.roles.values()
        ratio = result.bytes_moved / result.lower_bound_bytes
        print(
            f"{size:>7,} {len(datasets):>9,} {seconds:>7.2f} {cpu_seconds:>6.2f} "
            f"{len(result.moves):>7,} "
            f"{balance.max_deviation_before:>11.1f} {balance.max_deviation_after:>10.1f} "
            f"{ratio:>12.4f} {result.reached!s:>8}"
        )
        ok = ok and ratio <= TARGET_RATIO and result.reached
    verdict_time = "meets" if seconds < TARGET_SECONDS else "MISSES"
    print(f"{SIZES[-1]:,} nodes: {seconds:.2f} s, {verdict_time} the {TARGET_SECONDS:.0f} s target")
    print(f"moved/bound target: <= {TARGET_RATIO} on every fleet: {'met' if ok else 'MISSED'}")
    return 0 if ok and seconds < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main(*(int(arg) for arg in sys.argv[1:])))
