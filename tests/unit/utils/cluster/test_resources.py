"""Node resources over a fake sysfs tree: which disks are real, their type and free space."""

import collections
import dataclasses
import os

import pytest

from saltext.eos.utils.cluster import resources
from tests.support import layers as support_layers

Partition = collections.namedtuple("Partition", "device mountpoint fstype opts")
Usage = collections.namedtuple("Usage", "total used free percent")
NicStats = collections.namedtuple("NicStats", "isup duplex speed mtu flags")
Memory = collections.namedtuple("Memory", "total available")

GB = 10**9
SECTORS_PER_GB = GB // 512


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class FakeSys:
    """/sys/block, /sys/class/block and /sys/class/net the way the kernel lays them out."""

    def __init__(self, root):
        self.root = root
        self.devices = root / "devices"
        self.block = root / "block"
        self.class_block = root / "class" / "block"
        self.class_net = root / "class" / "net"
        for path in (self.block, self.class_block, self.class_net):
            path.mkdir(parents=True)

    def disk(self, name, gb, rotational=None, removable=False, virtual=False):
        base = self.devices / ("virtual" if virtual else "pci0000:00") / "block" / name
        write(base / "size", f"{gb * SECTORS_PER_GB}\n")
        write(base / "removable", "1\n" if removable else "0\n")
        if rotational is not None:
            write(base / "queue" / "rotational", f"{int(rotational)}\n")
        (self.block / name).symlink_to(base)
        (self.class_block / name).symlink_to(base)
        return base

    def partition(self, disk_base, name):
        part = disk_base / name
        write(part / "partition", "1\n")
        (self.class_block / name).symlink_to(part)

    def mapper(self, name, slaves):
        base = self.disk(name, 1, virtual=True)
        (base / "slaves").mkdir()
        for slave in slaves:
            (base / "slaves" / slave).mkdir()

    def nic(self, name, physical):
        (self.class_net / name).mkdir()
        if physical:
            (self.class_net / name / "device").mkdir()

    def system(self, mounts=(), free=None, nics=None):
        free = free or {}
        return resources.World(
            sys_block=str(self.block),
            sys_class_block=str(self.class_block),
            sys_class_net=str(self.class_net),
            cpu_count=lambda logical=True: 16,
            virtual_memory=lambda: Memory(64 * 1024**3, 0),
            disk_partitions=lambda all=False: [
                Partition(device, mountpoint, "ext4", "rw") for device, mountpoint in mounts
            ],
            disk_usage=lambda path: Usage(0, 0, free[path], 0),
            net_if_stats=lambda: nics or {},
            hostname=lambda: "node-1",
        )


@pytest.fixture
def fake(tmp_path):
    return FakeSys(tmp_path)


def by_name(disks):
    return {disk["name"]: disk for disk in disks}


def test_real_disks_and_their_types(fake):
    fake.disk("sda", 500, rotational=True)
    fake.disk("sdb", 250, rotational=False)
    fake.disk("nvme0n1", 1000, rotational=False)
    fake.disk("vdc", 10)  # no rotational flag
    fake.disk("loop0", 1, virtual=True)
    fake.disk("zram0", 4, virtual=True)
    fake.disk("sr0", 1, rotational=True, removable=True)
    fake.disk("sdz", 0, rotational=True)  # an empty card reader slot
    disks = by_name(resources.disks(fake.system()))
    assert sorted(disks) == ["nvme0n1", "sda", "sdb", "vdc"]
    assert disks["sda"]["storage_type"] == "hdd"
    assert disks["sda"]["rotational"] is True
    assert disks["sdb"]["storage_type"] == "ssd"
    assert disks["nvme0n1"]["storage_type"] == "nvme"
    assert disks["vdc"]["storage_type"] is None
    assert disks["sda"]["size_bytes"] == 500 * GB
    assert disks["sda"]["free_bytes"] is None  # nothing mounted from it


def test_free_space_follows_partitions_and_device_mapper(fake):
    sda = fake.disk("sda", 500, rotational=False)
    sdb = fake.disk("sdb", 500, rotational=True)
    fake.partition(sda, "sda1")
    fake.partition(sda, "sda2")
    fake.partition(sdb, "sdb1")
    fake.mapper("dm-0", ["sda2", "sdb1"])  # an LVM volume over both disks
    system = fake.system(
        mounts=[
            ("/dev/sda1", "/boot"),
            ("/dev/dm-0", "/"),
            ("/dev/dm-0", "/var/lib/bind-mounted"),  # the same filesystem again
            ("tmpfs", "/run"),
        ],
        free={"/boot": 1 * GB, "/": 100 * GB},
    )
    disks = by_name(resources.disks(system))
    assert disks["sda"]["free_bytes"] == 1 * GB + 50 * GB
    assert disks["sda"]["mounts"] == ["/boot", "/"]
    assert disks["sdb"]["free_bytes"] == 50 * GB
    assert disks["sdb"]["mounts"] == ["/"]


def test_a_whole_disk_filesystem(fake):
    fake.disk("vda", 256, rotational=True)
    disks = resources.disks(fake.system(mounts=[("/dev/vda", "/")], free={"/": 80 * GB}))
    assert disks == [
        {
            "name": "vda",
            "size_bytes": 256 * GB,
            "free_bytes": 80 * GB,
            "storage_type": "hdd",
            "rotational": True,
            "mounts": ["/"],
        }
    ]


def test_a_vanished_mount_is_skipped(fake):
    fake.disk("vda", 10, rotational=False)

    def usage(path):
        raise OSError("gone")

    system = dataclasses.replace(fake.system(mounts=[("/dev/vda", "/mnt")]), disk_usage=usage)
    assert resources.disks(system)[0]["free_bytes"] is None


def test_no_sysfs_means_no_disks(tmp_path):
    system = resources.World(sys_block=str(tmp_path / "missing"))
    assert resources.disks(system) == []


def test_network_prefers_physical_links(fake):
    fake.nic("eth0", physical=True)
    fake.nic("eth1", physical=True)
    fake.nic("docker0", physical=False)
    nics = {
        "lo": NicStats(True, 0, 0, 65536, "up,loopback,running"),
        "eth0": NicStats(True, 2, 10000, 1500, "up,broadcast,running"),
        "eth1": NicStats(False, 0, 25000, 1500, "broadcast"),
        "docker0": NicStats(True, 0, 0, 1500, "up,broadcast"),
    }
    network = resources.network(fake.system(nics=nics))
    assert network == {
        "interfaces": [
            {"name": "eth0", "up": True, "speed_mbps": 10000},
            {"name": "eth1", "up": False, "speed_mbps": 25000},
        ],
        "link_speed_mbps": 10000,  # eth1 is faster but down
    }


def test_network_in_a_container_shows_its_virtual_link(fake):
    fake.nic("eth0", physical=False)
    nics = {"eth0": NicStats(True, 0, 0, 1400, "up,broadcast,running")}
    network = resources.network(fake.system(nics=nics))
    assert network == {
        "interfaces": [{"name": "eth0", "up": True, "speed_mbps": None}],
        "link_speed_mbps": None,
    }


def layers(node=None):
    return support_layers.minion({"node": node} if node is not None else {})


def test_failure_domain_from_config_before_grains():
    grains = {"datacenter": "grain-dc", "rack": "grain-rack", "host": "ignored"}
    assert resources.failure_domain(layers({"datacenter": "dc1"}), grains) == {
        "datacenter": "dc1",
        "rack": "grain-rack",
        "host": None,
    }
    assert resources.failure_domain(layers({"rack": 12}), {})["rack"] == "12"
    assert resources.failure_domain(layers(), {}) == dict.fromkeys(resources.DOMAIN_KEYS)


def test_bad_failure_domain_names_the_key():
    with pytest.raises(resources.InvalidNodeConfig, match="eos:node:rack: \\['a'\\] is not"):
        resources.failure_domain(layers({"rack": ["a"]}), {})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"gpu": "a100", "ssd": None, "gen": 4}, {"gpu": "a100", "ssd": None, "gen": "4"}),
        (["gpu=a100", "ssd"], {"gpu": "a100", "ssd": None}),
        (None, {}),
    ],
)
def test_labels(given, expected):
    node = {} if given is None else {"labels": given}
    assert resources.labels(layers(node)) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("gpu", "is not a mapping or a list"),
        ([1], "is not a mapping or a list"),
        ({"": "x"}, "label '' is not a non-empty string"),
    ],
)
def test_bad_labels(given, message):
    with pytest.raises(resources.InvalidNodeConfig, match=message):
        resources.labels(layers({"labels": given}))


def test_collect_puts_it_together(fake):
    fake.disk("sda", 100, rotational=False)
    collected = resources.collect(layers({"labels": ["ssd"]}), {}, fake.system())
    assert collected["cpu_cores"] == 16
    assert collected["memory_bytes"] == 64 * 1024**3
    assert collected["disks"][0]["name"] == "sda"
    assert collected["labels"] == {"ssd": None}
    assert collected["hostname"] == "node-1"


def test_collect_on_this_machine_is_a_valid_registration():
    from saltext.eos.utils.cluster import registry

    collected = resources.collect(layers(), {})
    body = {
        "resources": collected,
        "health": {"passed": True, "checks": []},
        "sent_at_ms": 1,
        "signature": "",
    }
    checked = registry.check_registration("me", body, lambda *args: True)
    assert checked.resources["cpu_cores"] == os.cpu_count()
