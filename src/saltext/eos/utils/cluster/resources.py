"""
What a node has: cpu cores, memory, real disks, network links, failure domain and labels.

Disks are the block devices of ``/sys/block`` that are not virtual (loop, ram, zram, device
mapper and md devices live below ``/sys/devices/virtual/block``), not removable and not empty.
Each disk's storage type comes from its name and rotational flag: ``nvme`` for ``nvme*``,
otherwise ``ssd`` when ``queue/rotational`` is 0 and ``hdd`` when it is 1. A disk's free space
is the free space of the filesystems mounted from it: directly, from a partition, or through
device-mapper (LVM, LUKS) or md layers; a filesystem spread over several disks counts a share
on each. ``free_bytes`` is null for a disk with nothing mounted.

The failure domain and labels come from configuration (minion config or pillar), else grains:

.. code-block:: yaml

    eos:
      node:
        datacenter: dc1          # else the ``datacenter`` grain
        rack: r12                # else the ``rack`` grain
        host: hv-03              # the physical host of a VM, else unset
        labels: {gpu: "a100", ssd: null}   # or a list: [gpu=a100, ssd]
"""

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

from saltext.eos.utils import config

SYS_BLOCK = "/sys/block"
SYS_CLASS_BLOCK = "/sys/class/block"
SYS_CLASS_NET = "/sys/class/net"
SECTOR_BYTES = 512  # /sys/block/*/size counts 512-byte sectors whatever the device's own size
DOMAIN_KEYS = ("datacenter", "rack", "host")
GRAIN_DOMAIN_KEYS = ("datacenter", "rack")  # a grain named "host" is the hostname, not a domain


class InvalidNodeConfig(config.InvalidConfig):
    """``eos:node`` holds a value of the wrong type; the message names the key."""


@dataclass(frozen=True)
class World:
    """Where resources are read from; tests point these at fakes."""

    sys_block: str = SYS_BLOCK
    sys_class_block: str = SYS_CLASS_BLOCK
    sys_class_net: str = SYS_CLASS_NET
    cpu_count: object = psutil.cpu_count
    virtual_memory: object = psutil.virtual_memory
    disk_partitions: object = psutil.disk_partitions
    disk_usage: object = psutil.disk_usage
    net_if_stats: object = psutil.net_if_stats
    hostname: object = socket.gethostname


def collect(layers, grains, world=None):
    """Every resource of this node, in the shape ``eos/cluster/register`` carries."""
    world = world or World()
    return {
        "cpu_cores": world.cpu_count(logical=True) or 1,
        "memory_bytes": int(world.virtual_memory().total),
        "disks": disks(world),
        "network": network(world),
        "failure_domain": failure_domain(layers, grains),
        "labels": labels(layers),
        "hostname": world.hostname(),
    }


# --- disks -------------------------------------------------------------------------------------


def disks(world):
    """[{name, size_bytes, free_bytes, storage_type, rotational, mounts}] of the real disks."""
    found = {name: _disk(world, name) for name in real_disks(world)}
    for usage in _filesystem_usage(world):
        owners = [name for name in disks_under(world, usage["device"]) if name in found]
        for name in owners:
            disk = found[name]
            disk["free_bytes"] = (disk["free_bytes"] or 0) + usage["free_bytes"] // len(owners)
            disk["mounts"].append(usage["mountpoint"])
    return [found[name] for name in sorted(found)]


def real_disks(world):
    """Names of the block devices that are physical (or virtio/cloud) disks."""
    try:
        names = sorted(os.listdir(world.sys_block))
    except OSError:
        return []
    return [name for name in names if _is_real_disk(world, name)]


def _is_real_disk(world, name):
    path = os.path.join(world.sys_block, name)
    if "/virtual/" in os.path.realpath(path):
        return False
    if _read(path, "removable") == "1":
        return False
    return (_read_int(path, "size") or 0) > 0


def _disk(world, name):
    path = os.path.join(world.sys_block, name)
    rotational = _read(path, "queue", "rotational")
    flag = {"0": False, "1": True}.get(rotational)
    return {
        "name": name,
        "size_bytes": (_read_int(path, "size") or 0) * SECTOR_BYTES,
        "free_bytes": None,
        "storage_type": storage_type(name, flag),
        "rotational": flag,
        "mounts": [],
    }


def storage_type(name, rotational):
    """``nvme``, ``ssd`` or ``hdd`` from the device name and rotational flag; None if unknown."""
    if name.startswith("nvme"):
        return "nvme"
    if rotational is None:
        return None
    return "hdd" if rotational else "ssd"


def disks_under(world, device):
    """The real disks a block device (``/dev/sda2``, ``/dev/mapper/vg-root``) lives on."""
    name = os.path.basename(os.path.realpath(device))
    return sorted(_disks_under(world, name, seen=set()))


def _disks_under(world, name, seen):
    if name in seen:
        return set()
    seen.add(name)
    entry = os.path.join(world.sys_class_block, name)
    if not os.path.exists(entry):
        return set()
    if os.path.exists(os.path.join(entry, "partition")):
        # A partition's sysfs directory sits inside its disk's.
        disk = os.path.basename(os.path.dirname(os.path.realpath(entry)))
        return _disks_under(world, disk, seen)
    slaves = _list(os.path.join(entry, "slaves"))
    if slaves:
        found = set()
        for slave in slaves:
            found |= _disks_under(world, slave, seen)
        return found
    return {name}


def _filesystem_usage(world):
    """Free bytes of each mounted block-device filesystem, once per device."""
    usages = {}
    for part in world.disk_partitions(all=False):
        if not part.device.startswith("/dev/") or part.device in usages:
            continue
        try:
            free = world.disk_usage(part.mountpoint).free
        except OSError:
            continue  # a mount that vanished or hangs is not this report's problem
        usages[part.device] = {
            "device": part.device,
            "mountpoint": part.mountpoint,
            "free_bytes": int(free),
        }
    return list(usages.values())


# --- network -----------------------------------------------------------------------------------


def network(world):
    """{interfaces: [{name, up, speed_mbps}], link_speed_mbps} for the node's NICs."""
    stats = world.net_if_stats()
    names = [name for name in sorted(stats) if "loopback" not in _flags(stats[name])]
    physical = [name for name in names if _is_physical_nic(world, name)]
    # Containers and some clouds show only virtual links; they are still the node's links.
    chosen = physical or names
    interfaces = [
        {"name": name, "up": bool(stats[name].isup), "speed_mbps": _speed(stats[name])}
        for name in chosen
    ]
    speeds = [nic["speed_mbps"] for nic in interfaces if nic["up"] and nic["speed_mbps"]]
    return {"interfaces": interfaces, "link_speed_mbps": max(speeds) if speeds else None}


def _flags(stat):
    return getattr(stat, "flags", "") or ""


def _is_physical_nic(world, name):
    return os.path.exists(os.path.join(world.sys_class_net, name, "device"))


def _speed(stat):
    # psutil reports 0 when the driver does not know (virtual links, some VMs).
    return int(stat.speed) if stat.speed and stat.speed > 0 else None


# --- failure domain and labels -----------------------------------------------------------------


def failure_domain(layers, grains):
    """{datacenter, rack, host}: ``eos:node`` first, then grains; None when nobody says."""
    domain = {}
    for key in DOMAIN_KEYS:
        value = layers.get("node", key)
        if value is None and key in GRAIN_DOMAIN_KEYS:
            value = (grains or {}).get(key)
        domain[key] = _name(value, config.key_name("node", key))
    return domain


def labels(layers):
    """``eos:node:labels`` as {key: value or None}; a list takes ``key`` and ``key=value``."""
    value = layers.get("node", "labels")
    key = config.key_name("node", "labels")
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {_label_key(k, key): _name(v, f"{key}:{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in value)
        return {_label_key(k, key): v for k, v in pairs}
    raise InvalidNodeConfig(f"{key}: {value!r} is not a mapping or a list of strings")


def _label_key(value, key):
    if not isinstance(value, str) or not value:
        raise InvalidNodeConfig(f"{key}: label {value!r} is not a non-empty string")
    return value


def _name(value, key):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # rack 3 and datacenter 2 are names too
    raise InvalidNodeConfig(f"{key}: {value!r} is not a string")


# --- sysfs -------------------------------------------------------------------------------------


def _read(*parts):
    try:
        with open(os.path.join(*parts), encoding="ascii") as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(*parts):
    text = _read(*parts)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _list(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
