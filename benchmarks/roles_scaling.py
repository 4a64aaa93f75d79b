"""
Benchmark: how the role solver (`saltext.eos.utils.cluster.placement.solve`) scales with
cluster size, and how much churn one joining node causes.

Clusters of 10, 100, 1,000 and 10,000 heterogeneous nodes (five hardware classes, three
datacenters, 8 racks each, some ssd/nvme labels), generated from a fixed seed. Each size is
solved from scratch (no node has a role yet) and again with every node holding its roles
(the steady state a runner sees); the figure is the median of a few runs.

Baseline for the growth: an O(n log n) algorithm. Between two sizes n1 < n2 it should take
n2*log(n2) / (n1*log(n1)) times longer; the table prints the measured ratio next to that.
A ratio well above it would mean quadratic work somewhere. Target: 10,000 nodes < 1 s.

Churn: one node joins a solved 1,000-node cluster (no target grows) and a 1,009-node one
(edge, data and compute each grow by one). The minimum is what the new targets require: one
node per new slot, less the slot the joining node can take itself.

    python benchmarks/roles_scaling.py [runs]
"""

import math
import random
import statistics
import sys
import time

from saltext.eos.utils.cluster import placement
from saltext.eos.utils.cluster import roles

SIZES = (10, 100, 1_000, 10_000)
SEED = 20240601
TARGET_SECONDS = 1.0
DATACENTERS = ("dc1", "dc2", "dc3")
RACKS_PER_DATACENTER = 8

# (weight, cpu, memory_gb, disk_gb, storage_type): a mix where data and compute are scarce.
HARDWARE = (
    (30, 2, 4, 50, "hdd"),
    (30, 4, 8, 200, "ssd"),
    (15, 4, 16, 500, "hdd"),
    (15, 8, 32, 200, "ssd"),
    (10, 16, 64, 2000, "nvme"),
)


def generate(count, rng, prefix="node"):
    weights = [row[0] for row in HARDWARE]
    nodes = []
    for index in range(count):
        _, cpu, memory_gb, disk_gb, storage = rng.choices(HARDWARE, weights)[0]
        datacenter = rng.choice(DATACENTERS)
        nodes.append(
            {
                "id": f"{prefix}-{index:05d}",
                "cpu": cpu,
                "memory_gb": memory_gb,
                "disk_gb": disk_gb,
                "storage_type": storage,
                "datacenter": datacenter,
                "rack": f"r{rng.randrange(RACKS_PER_DATACENTER)}",
                "labels": [storage] if storage != "hdd" else [],
            }
        )
    return nodes


def holding(nodes, result):
    return [{**node, "roles": result.assignments[node["id"]]} for node in nodes]


def median_seconds(function, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def scaling(runs):
    print(
        f"solve time, median of {runs} runs (fresh: no roles yet; steady: every node has its roles)"
    )
    print(f"{'nodes':>7} {'fresh ms':>10} {'steady ms':>10} {'ratio':>7} {'n log n':>8}")
    previous = None
    for size in SIZES:
        nodes = generate(size, random.Random(SEED + size))
        fresh = median_seconds(lambda nodes=nodes: placement.solve(nodes), runs)
        steady_nodes = holding(nodes, placement.solve(nodes))
        steady = median_seconds(lambda nodes=steady_nodes: placement.solve(nodes), runs)
        if previous is None:
            ratio_text = expected_text = "-"
        else:
            last_size, last_fresh = previous
            ratio_text = f"{fresh / last_fresh:.1f}x"
            expected = size * math.log(size) / (last_size * math.log(last_size))
            expected_text = f"{expected:.1f}x"
        print(
            f"{size:>7} {fresh * 1000:>10.1f} {steady * 1000:>10.1f} "
            f"{ratio_text:>7} {expected_text:>8}"
        )
        previous = (size, fresh)
    largest = max(fresh, steady)
    verdict = "meets" if largest < TARGET_SECONDS else "MISSES"
    print(f"{SIZES[-1]:,} nodes: {largest:.2f} s, {verdict} the {TARGET_SECONDS:.0f} s target")
    return largest < TARGET_SECONDS


def join(size):
    rng = random.Random(SEED)
    nodes = generate(size, rng)
    before = placement.solve(nodes)
    (newcomer,) = generate(1, rng, prefix="joining")
    after = placement.solve([*holding(nodes, before), newcomer])
    old, new = roles.targets(size), roles.targets(size + 1)
    grown = [r for r in old if r != roles.REMAINDER_ROLE and new[r] > old[r]]
    slots = sum(new[r] - old[r] for r in grown)
    (joining,) = roles.nodes([newcomer])
    catalogue = roles.catalog()
    takes_one = any(placement.Requirements.of(catalogue[r], None).met_by(joining) for r in grown)
    minimum = slots - 1 if takes_one else slots
    grown_text = ", ".join(f"{r} +{new[r] - old[r]}" for r in grown) or "none"
    print(
        f"join {size:,} -> {size + 1:,}: targets grown: {grown_text}; churn {after.churn} "
        f"(minimum {minimum}), joining node got {after.assignments[newcomer['id']]}"
    )
    return after.churn <= minimum


def main(runs=5):
    fast = scaling(runs)
    print()
    minimal = all([join(1_000), join(1_009)])
    return 0 if fast and minimal else 1


if __name__ == "__main__":
    sys.exit(main(*(int(arg) for arg in sys.argv[1:])))
