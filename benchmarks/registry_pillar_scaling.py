"""
Benchmark: does a minion's pillar cost the same in a cluster of 10, 1,000 and 10,000 nodes?

10,000 nodes register, one by one, into a registry in Salt's localfs cache (the default master
cache), through ``registry.Registry.register`` with the auto policy, exactly as the runner
does after a registration event (the signature check, one RSA verification, is left out: it
costs the same at any size). At 10, 1,000 and 10,000 nodes the script measures, for randomly
chosen minions:

- ext_pillar: the ``eos`` ext_pillar loaded by Salt's pillar loader (what it adds to a compile);
- compile: a whole ``salt.pillar.Pillar.compile_pillar`` for that minion with the ``eos``
  ext_pillar configured (empty pillar top file);
- baseline: the naive ext_pillar that counts members by reading every record, which is what
  the registry's summary avoids.

Target: the ext_pillar and compile times grow by at most 2x from 10 to 10,000 nodes.

    python benchmarks/registry_pillar_scaling.py [samples]
"""

import logging
import os
import random
import statistics
import sys
import tempfile
import time

import salt.cache
import salt.config
import salt.loader
import salt.pillar

from saltext.eos.utils.cluster import registry

SIZES = (10, 1_000, 10_000)
SEED = 20240601
TARGET_GROWTH = 2.0
AUTO = registry.AcceptancePolicy(auto=True)


def master_opts(root):
    opts = salt.config.DEFAULT_MASTER_OPTS.copy()
    for name in ("cache", "pillar", "files", "extmods", "pki", "sock"):
        os.makedirs(os.path.join(root, name), exist_ok=True)
    opts.update(
        {
            "__role": "master",
            "id": "bench-master",
            "root_dir": root,
            "cachedir": os.path.join(root, "cache"),
            "extension_modules": os.path.join(root, "extmods"),
            "pki_dir": os.path.join(root, "pki"),
            "sock_dir": os.path.join(root, "sock"),
            "pillar_roots": {"base": [os.path.join(root, "pillar")]},
            "file_roots": {"base": [os.path.join(root, "files")]},
            "ext_pillar": [{"eos": {}}],
            "pillar_cache": False,
        }
    )
    return opts


def registration(rng, index):
    return registry.Registration(
        resources={
            "cpu_cores": rng.choice((2, 4, 8, 16)),
            "memory_bytes": rng.choice((4, 8, 16, 64)) * 1024**3,
            "disks": [
                {
                    "name": "sda",
                    "size_bytes": rng.choice((100, 500, 2000)) * 10**9,
                    "free_bytes": None,
                    "storage_type": rng.choice(("ssd", "hdd", "nvme")),
                    "rotational": None,
                    "mounts": [],
                }
            ],
            "network": {"interfaces": [], "link_speed_mbps": 10_000},
            "failure_domain": {
                "datacenter": f"dc{index % 3}",
                "rack": f"r{index % 24}",
                "host": None,
            },
            "labels": {},
            "hostname": f"node-{index:05}",
        },
        health={"passed": True, "checks": []},
        preferred_role=None,
        sent_at_ms=index + 1,
    )


def never_matches(node_id, expression):
    return False


def median_ms(function, arguments):
    times = []
    for argument in arguments:
        start = time.perf_counter()
        function(argument)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def naive_pillar(opts):
    """The baseline: what an ext_pillar that reads every record would cost."""
    cache = salt.cache.factory(opts)

    def compile_for(minion_id):
        members = 0
        for node_id in cache.list(registry.NODES_BANK):
            record = cache.fetch(registry.NODES_BANK, node_id)
            members += record.get("status") in registry.MEMBER_STATUSES
        return {"eos": {"node_count": members, "scale": registry.scale_for(members)}}

    return compile_for


def main(samples=200):
    logging.disable(logging.WARNING)
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory(prefix="eos-bench-") as root:
        opts = master_opts(root)
        reg = registry.Registry(
            salt.cache.factory(opts), lock=registry.FileLock(os.path.join(root, "eos.lock"))
        )
        ext_pillar = salt.loader.pillars(opts, {})["eos"]
        baseline = naive_pillar(opts)
        rows = []
        registered = 0
        for size in SIZES:
            start, before = time.perf_counter(), registered
            while registered < size:
                node_id = f"node-{registered:05}"
                reg.register(node_id, registration(rng, registered), AUTO, never_matches)
                registered += 1
            per_node_ms = (time.perf_counter() - start) * 1000 / (size - before)
            chosen = [f"node-{rng.randrange(size):05}" for _ in range(samples)]
            pillar_ms = median_ms(lambda minion: ext_pillar(minion, {}), chosen)
            compile_ms = median_ms(
                lambda minion: salt.pillar.Pillar(
                    opts, {"id": minion}, minion, "base"
                ).compile_pillar(),
                chosen[: max(10, samples // 10)],
            )
            baseline_ms = median_ms(baseline, chosen[: 3 if size > 1000 else 20])
            check = ext_pillar(chosen[0], {})["eos"]
            assert check["node_count"] == size, check
            rows.append((size, per_node_ms, pillar_ms, compile_ms, baseline_ms, check["scale"]))
        report(rows)
        growth = rows[-1][2] / rows[0][2]
        compile_growth = rows[-1][3] / rows[0][3]
        return 0 if max(growth, compile_growth) <= TARGET_GROWTH else 1


def report(rows):
    print("registry + eos ext_pillar, Salt localfs cache; medians per minion")
    print(
        f"{'nodes':>8}  {'scale':<12}{'register/node':>14}  {'ext_pillar':>11}  "
        f"{'compile':>9}  {'baseline (reads all)':>20}"
    )
    for size, register_ms, pillar_ms, compile_ms, baseline_ms, scale in rows:
        print(
            f"{size:>8,}  {scale:<12}{register_ms:>11.2f} ms  {pillar_ms:>8.3f} ms  "
            f"{compile_ms:>6.2f} ms  {baseline_ms:>17.2f} ms"
        )
    first, last = rows[0], rows[-1]
    print(
        f"growth {first[0]:,} -> {last[0]:,} nodes: ext_pillar x{last[2] / first[2]:.2f}, "
        f"compile x{last[3] / first[3]:.2f} (target <= {TARGET_GROWTH:g}); "
        f"baseline x{last[4] / first[4]:.0f}"
    )
    print(
        f"at {last[0]:,} nodes the ext_pillar costs {last[2] / last[4]:.5f} of reading every record"
    )


if __name__ == "__main__":
    sys.exit(main(*(int(arg) for arg in sys.argv[1:])))
