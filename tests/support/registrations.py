"""Registrations as real machines would send them, for the benchmarks' made-up fleets."""

from saltext.eos.utils.cluster import registry


def sample_registration(rng, index, hostname):
    """The registration of machine number ``index``: resources drawn from ``rng``."""
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
            "hostname": hostname,
        },
        health={"passed": True, "checks": []},
        preferred_role=None,
        sent_at_ms=index + 1,
    )
