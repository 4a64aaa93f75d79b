"""
Datasets for tests: a data node's report, as ``eos_dataset.sizes`` sends it and
``check_report`` reads it, real dataset trees on disk with their digests, and the rebalance
lease held by another run.
"""

import hashlib
import os
import pathlib

from saltext.eos.utils import datasets
from saltext.eos.utils.cluster import lease as leases
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.storage import thresholds

MB = 1024 * 1024


def report(sizes, capacity=1000, used=None, host="h"):
    """A report of the datasets ``sizes`` (name -> bytes) on a node of ``capacity`` bytes."""
    return {
        "root": "/srv/eos/datasets",
        "host": host,
        "capacity_bytes": capacity,
        "used_bytes": sum(sizes.values()) if used is None else used,
        "cleanup_percent": 90,
        "thresholds": thresholds.profile("single"),
        "datasets": sizes,
    }


def write_dataset(directory, size_mb):
    """Files of random bytes (a nested directory and a symbolic link too) adding to size_mb."""
    (directory / "nested").mkdir(parents=True)
    for number in range(size_mb):
        where = directory if number % 2 else directory / "nested"
        (where / f"part-{number}.bin").write_bytes(os.urandom(MB))
    (directory / "latest").symlink_to("part-1.bin")


def tree_digest(directory):
    """{relative path: sha256, link target or "dir"} of everything under directory."""
    found = {}
    for path in sorted(pathlib.Path(directory).rglob("*")):
        relative = str(path.relative_to(directory))
        if path.is_symlink():
            found[relative] = "-> " + os.readlink(path)
        elif path.is_file():
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[relative] = "dir"
    return found


def rebalance_lease_held_by(reg, run):
    """The rebalance lease in ``reg``'s cache, taken by ``run``: another rebalance is under way."""
    held = leases.Lease(
        reg.cache, reg.lock, registry.CLUSTER_BANK, datasets.REBALANCE_LEASE_KEY, "rebalance", 60
    )
    held.take(run)
    return held
