"""
Benchmark: the cluster registry on two of Salt's cache backends, ``localfs`` (the default
master cache, in a temporary cachedir) and ``redis`` (what masters sharing one registry use),
side by side in one run.

Per backend, 10,000 nodes register one by one, each as the ``eos_cluster.register`` runner
does after a registration event: ``registry.open_registry(opts)`` (the backend's cache and the
lock its masters share, ``lock.lock_for``: a file in the cachedir, or a key on the redis
server) and ``Registry.register`` with the auto policy. The signature check (one RSA
verification) is left out: it costs the same on any backend and at any size. Measured:

- registrations per second: the rate over the last 1,000 registrations before the registry
  holds 1,000 and 10,000 nodes, so a cost that grows with the size shows;
- at 10, 1,000 and 10,000 nodes, medians per minion for randomly chosen minions of:

  - ext_pillar: the ``eos`` ext_pillar loaded by Salt's pillar loader (what it adds to a
    compile);
  - compile: a whole ``salt.pillar.Pillar.compile_pillar`` for that minion with the ``eos``
    ext_pillar configured (empty pillar top file);
  - baseline: the naive ext_pillar that counts members by reading every record, which is
    what the registry's summary avoids.

Targets, as ratios of times measured in the same run (absolute times depend on the machine):

- redis costs at most 2x localfs per registration, at 1,000 and at 10,000 nodes;
- on each backend the ext_pillar and compile times grow by at most 2x from 10 to 10,000 nodes.

The redis backend runs on a throwaway ``redis-server`` (on PATH, with the ``redis`` Python
package) that the script starts on a free loopback port with no persistence and stops at the
end; without either it is skipped, with a message. Exit status 0 when every target is met.

    python benchmarks/registry_scaling.py [samples]          # about 5 minutes
    python benchmarks/registry_scaling.py --quick [samples]  # 1,000 nodes at most
"""

import contextlib
import dataclasses
import importlib.util
import logging
import os
import pathlib
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import salt.cache
import salt.config
import salt.loader
import salt.pillar

from saltext.eos.utils.cluster import registry

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from tests.support.registrations import sample_registration

# The ext_pillar is measured at each size; the registrations at each size from the second
# on, over the window of registrations that reached it.
SIZES, WINDOW = (10, 1_000, 10_000), 1_000
QUICK_SIZES, QUICK_WINDOW = (10, 100, 1_000), 100
CHUNK = 50  # registrations on one backend before the next backend's turn
SEED = 20240601
TARGET_GROWTH = 2.0
TARGET_REDIS_RATIO = 2.0
AUTO = registry.AcceptancePolicy(auto=True)
REDIS_START_SECONDS = 10


# --- the master and what its nodes send ---


def master_opts(root, cache_settings):
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
            **cache_settings,
        }
    )
    return opts


def registration(rng, index):
    return sample_registration(rng, index, node_id(index))


def node_id(index):
    return f"node-{index:05}"


def never_matches(node_id, expression):
    return False


# --- the backends ---


def free_loopback_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def redis_missing():
    """Why the redis backend cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not on PATH (Debian: apt-get install redis-server)"
    if importlib.util.find_spec("redis") is None:
        return "the redis Python package is not installed (pip install redis)"
    return None


def wait_until_ready(server, port):
    import redis

    client = redis.Redis("127.0.0.1", port)
    deadline = time.monotonic() + REDIS_START_SECONDS
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"redis-server exited with {server.returncode}")
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not answer within {REDIS_START_SECONDS} s"
                ) from None
            time.sleep(0.05)
        finally:
            client.close()


@contextlib.contextmanager
def throwaway_redis(root):
    """A redis-server on a free loopback port, no persistence; stopped on the way out."""
    port = free_loopback_port()
    command = [
        "redis-server",
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", root,
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_ready(server, port)
        yield {"cache": "redis", "cache.redis.host": "127.0.0.1", "cache.redis.port": port}
    finally:
        stop(server)


def stop(server):
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@contextlib.contextmanager
def localfs_cache(root):
    yield {"cache": "localfs"}


def backends():
    """(name, context manager factory) of the backends that can run here."""
    available = [("localfs", localfs_cache)]
    missing = redis_missing()
    if missing:
        print(f"redis: skipped, {missing}\n")
    else:
        available.append(("redis", throwaway_redis))
    return available


# --- measuring ---


def register_nodes(opts, rng, start, stop):
    """Register nodes start..stop-1 as the runner does, one by one; the seconds each took."""
    durations = []
    for index in range(start, stop):
        began = time.perf_counter()
        reg = registry.open_registry(opts)
        reg.register(node_id(index), registration(rng, index), AUTO, never_matches)
        durations.append(time.perf_counter() - began)
    return durations


def ms_per_registration(durations, window):
    """Over the last ``window`` registrations, or None before there were that many."""
    if len(durations) < window:
        return None
    return sum(durations[-window:]) * 1000 / window


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
        for known in cache.list(registry.NODES_BANK):
            record = cache.fetch(registry.NODES_BANK, known)
            members += record.get("status") in registry.MEMBER_STATUSES
        return {"eos": {"node_count": members, "scale": registry.scale_for(members)}}

    return compile_for


def whole_compile(opts):
    def compile_for(minion_id):
        return salt.pillar.Pillar(opts, {"id": minion_id}, minion_id, "base").compile_pillar()

    return compile_for


def pillar_costs(opts, rng, size, samples):
    """{size, scale, ext_pillar, compile, baseline} at ``size`` nodes, medians in ms."""
    ext_pillar = salt.loader.pillars(opts, {})["eos"]
    chosen = [node_id(rng.randrange(size)) for _ in range(samples)]
    check = ext_pillar(chosen[0], {})["eos"]
    assert check["node_count"] == size, check
    return {
        "size": size,
        "scale": check["scale"],
        "ext_pillar": median_ms(lambda minion: ext_pillar(minion, {}), chosen),
        "compile": median_ms(whole_compile(opts), chosen[: max(10, samples // 10)]),
        "baseline": median_ms(naive_pillar(opts), chosen[: 3 if size > 1000 else 20]),
    }


@dataclasses.dataclass
class Run:
    """One backend's master and the nodes registered into it so far."""

    name: str
    opts: dict
    rng: random.Random = dataclasses.field(default_factory=lambda: random.Random(SEED))
    durations: list = dataclasses.field(default_factory=list)
    rows: list = dataclasses.field(default_factory=list)


def open_run(stack, name, cache_for):
    root = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"eos-bench-{name}-"))
    return Run(name, master_opts(root, stack.enter_context(cache_for(root))))


def grow_side_by_side(runs, size):
    """Every run registers up to ``size`` nodes, CHUNK at a time in turn, so that a machine
    slower at one moment slows every backend alike."""
    while len(runs[0].durations) < size:
        for run in runs:
            registered = len(run.durations)
            stop = min(size, registered + CHUNK)
            run.durations += register_nodes(run.opts, run.rng, registered, stop)


def measure(backends, sizes, window, samples):
    """{backend: one row per size}: the pillar costs and the ms per registration that
    reached it. Every backend registers the same nodes and reads the same minions."""
    with contextlib.ExitStack() as stack:
        runs = [open_run(stack, name, cache_for) for name, cache_for in backends]
        for size in sizes:
            grow_side_by_side(runs, size)
            for run in runs:
                register_ms = ms_per_registration(run.durations, window)
                run.rows.append(
                    {
                        **pillar_costs(run.opts, run.rng, size, samples),
                        "register": register_ms if size > sizes[0] else None,
                    }
                )
    return {run.name: run.rows for run in runs}


# --- reporting ---


def growth(rows, column):
    return rows[-1][column] / rows[0][column]


def print_table(name, rows):
    print(f"{name}: registry + eos ext_pillar; register per registration, the rest per minion")
    print(
        f"{'nodes':>8}  {'scale':<12}{'register':>9}  {'per second':>10}  {'ext_pillar':>10}"
        f"  {'compile':>9}  {'baseline (reads all)':>20}"
    )
    for row in rows:
        if row["register"] is None:
            register = f"{'-':>9}  {'-':>10}"
        else:
            register = f"{row['register']:>6.2f} ms  {1000 / row['register']:>10,.0f}"
        print(
            f"{row['size']:>8,}  {row['scale']:<12}{register}  {row['ext_pillar']:>7.3f} ms"
            f"  {row['compile']:>6.2f} ms  {row['baseline']:>17.2f} ms"
        )
    print()


def registration_ratios(results):
    """{size: redis ms / localfs ms per registration} where both were timed."""
    if "redis" not in results:
        return {}
    return {
        local["size"]: remote["register"] / local["register"]
        for local, remote in zip(results["localfs"], results["redis"], strict=True)
        if local["register"] is not None
    }


def verdict(ratio, target):
    return "met" if ratio <= target else "MISSED"


def print_ratios(results):
    """Print the ratios against their targets; True when every target is met."""
    met = True
    for size, ratio in registration_ratios(results).items():
        met &= ratio <= TARGET_REDIS_RATIO
        print(
            f"redis/localfs per registration at {size:,} nodes: x{ratio:.2f} "
            f"(target <= {TARGET_REDIS_RATIO:g}: {verdict(ratio, TARGET_REDIS_RATIO)})"
        )
    for name, rows in results.items():
        first, last = rows[0]["size"], rows[-1]["size"]
        pillar, whole = growth(rows, "ext_pillar"), growth(rows, "compile")
        met &= max(pillar, whole) <= TARGET_GROWTH
        print(
            f"{name} growth {first:,} -> {last:,} nodes: ext_pillar x{pillar:.2f} "
            f"({verdict(pillar, TARGET_GROWTH)}), compile x{whole:.2f} "
            f"({verdict(whole, TARGET_GROWTH)}; target <= {TARGET_GROWTH:g}); "
            f"baseline x{growth(rows, 'baseline'):.0f}; at {last:,} nodes the ext_pillar "
            f"costs {rows[-1]['ext_pillar'] / rows[-1]['baseline']:.5f} of reading every record"
        )
    return met


def main(arguments):
    quick = "--quick" in arguments
    numbers = [int(argument) for argument in arguments if argument != "--quick"]
    samples = numbers[0] if numbers else 200
    sizes, window = (QUICK_SIZES, QUICK_WINDOW) if quick else (SIZES, WINDOW)
    logging.disable(logging.WARNING)
    began = time.perf_counter()
    results = measure(backends(), sizes, window, samples)
    for name, rows in results.items():
        print_table(name, rows)
    met = print_ratios(results)
    print(f"total {time.perf_counter() - began:.0f} s")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
