"""A data node's report, as ``eos_dataset.sizes`` sends it and ``check_report`` reads it."""

from saltext.eos.utils.storage import thresholds


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
