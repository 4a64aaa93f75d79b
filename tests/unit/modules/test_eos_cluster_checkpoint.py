"""
eos_cluster.checkpoint, checkpoints and rollback with mocked Salt dunders.

The node is a temporary tree: an EOS config dir and a minion config dir with its minion.d.
The service manager and the running beacons are small fakes that keep their state, so a test
checks the state a rollback leaves behind, not the calls it made.
"""

import copy
import re
import time

import pytest
from salt.exceptions import CommandExecutionError

from saltext.eos.modules import eos_cluster as eos_cluster_module

BEACONS_CONF = "beacons:\n  eos_storage:\n  - interval: 60\n  - textfile: /var/lib/eos.prom\n"
STORAGE_BEACON = [{"interval": 60}, {"textfile": "/var/lib/eos.prom"}]
LOAD_BEACON = [{"averages": {"1m": [0.0, 2.0]}}]


ROLE_DEFAULTS = """
edge: {packages: [nginx, haproxy], services: [nginx, haproxy, keepalived]}
core: {packages: [docker.io], services: [docker]}
app: {packages: [python3], services: []}
os_family:
  RedHat:
    core: {packages: [podman], services: []}
"""


class ServiceManager:
    """
    Units as Salt's service module sees them. ``failing`` maps a unit to the actions that fail;
    ``raises`` fails them as systemd's service.start and service.enable do, by raising.
    """

    def __init__(self, units):
        self.units = units
        self.failing = {}
        self.raises = False
        self.calls = []

    def functions(self):
        return {
            "service.available": lambda name: name in self.units,
            "service.status": lambda name, sig=None: self.units[name]["active"],
            "service.enabled": lambda name, **kwargs: self.units[name]["enabled"],
            "service.start": lambda name, **kwargs: self._act("start", name, "active", True),
            "service.stop": lambda name, **kwargs: self._act("stop", name, "active", False),
            "service.enable": lambda name, **kwargs: self._act("enable", name, "enabled", True),
            "service.disable": lambda name, **kwargs: self._act("disable", name, "enabled", False),
        }

    def _act(self, action, name, key, value):
        self.calls.append((action, name))
        if action in self.failing.get(name, ()):
            if self.raises:
                raise CommandExecutionError(
                    f"Job for {name}.service failed because the control process exited"
                )
            return False
        self.units[name][key] = value
        return True

    def state(self):
        return copy.deepcopy(self.units)


class RunningBeacons:
    """The minion's running beacons, answering like Salt 3008's beacons module."""

    def __init__(self, running):
        self.running = running
        self.refuse = False
        self.silent = False

    def functions(self):
        return {
            "beacons.list": self.list_,
            "beacons.add": self.add,
            "beacons.modify": self.modify,
            "beacons.delete": self.delete,
        }

    def list_(self, return_yaml=True, include_pillar=True, include_opts=True, **kwargs):
        assert return_yaml is False
        if self.silent:
            return None  # no answer from the minion's beacon manager in time
        return copy.deepcopy(self.running)

    def add(self, name, beacon_data, **kwargs):
        if self.refuse:
            return {"result": False, "comment": f"Beacon {name} configuration invalid"}
        if name in self.running:
            return {"result": True, "comment": f"Beacon {name} is already configured."}
        self.running[name] = copy.deepcopy(beacon_data)
        return {"result": True, "comment": f"Added beacon: {name}."}

    def modify(self, name, beacon_data, **kwargs):
        if self.refuse:
            return {"result": False, "comment": f"Beacon {name} configuration invalid"}
        if name not in self.running:
            return {"result": True, "comment": f"Beacon {name} is not configured."}
        self.running[name] = copy.deepcopy(beacon_data)
        return {"result": True, "comment": f"Modified beacon: {name}."}

    def delete(self, name, **kwargs):
        if self.refuse:
            return {"result": False, "comment": f"Failed to delete beacon {name}."}
        self.running.pop(name, None)
        return {"result": True, "comment": f"Deleted beacon: {name}."}


@pytest.fixture
def node(tmp_path):
    config_dir = tmp_path / "etc" / "eos"
    (config_dir / "roles").mkdir(parents=True)
    (config_dir / "eos.yaml").write_text("cluster: prod\n")
    (config_dir / "roles" / "edge.yaml").write_text("haproxy: on\n")
    minion_dir = tmp_path / "etc" / "salt"
    include_dir = minion_dir / "minion.d"
    include_dir.mkdir(parents=True)
    (minion_dir / "minion").write_text("id: node-7\n")
    (include_dir / "eos-storage.conf").write_text("eos: {thresholds: {warning: 60}}\n")
    (include_dir / "beacons.conf").write_text(BEACONS_CONF)
    (include_dir / "master.conf").write_text("master: salt.example\n")

    class Node:
        config = config_dir
        minion = minion_dir
        include = include_dir
        cachedir = tmp_path / "cache"

    return Node


@pytest.fixture(autouse=True)
def role_defaults(tmp_path, monkeypatch):
    """The role catalogue's services, shaped like the package's roles/defaults.yaml."""
    path = tmp_path / "defaults.yaml"
    path.write_text(ROLE_DEFAULTS)
    monkeypatch.setattr(eos_cluster_module, "ROLE_DEFAULTS", path)
    return path


@pytest.fixture
def grains():
    return {"id": "node-7", "os_family": "Debian"}


@pytest.fixture
def services():
    # keepalived, an edge service, is not installed here; sshd is no role's service.
    return ServiceManager(
        {
            "nginx": {"active": True, "enabled": True},
            "haproxy": {"active": False, "enabled": True},
            "docker": {"active": True, "enabled": False},
            "sshd": {"active": True, "enabled": True},
        }
    )


@pytest.fixture
def beacons():
    return RunningBeacons({"eos_storage": copy.deepcopy(STORAGE_BEACON), "load": LOAD_BEACON})


@pytest.fixture
def eos_config(node):
    return {"config_dir": str(node.config)}


@pytest.fixture
def configure_loader_modules(node, grains, services, beacons, eos_config):
    return {
        eos_cluster_module: {
            "__opts__": {
                "id": "node-7",
                "cachedir": str(node.cachedir),
                "conf_file": str(node.minion / "minion"),
                "default_include": "minion.d/*.conf",
                "eos": eos_config,
            },
            "__grains__": grains,
            "__pillar__": {},
            "__salt__": {
                **services.functions(),
                **beacons.functions(),
                "config.get": lambda key, default=None: config_get(eos_config, key, default),
            },
            "__context__": {},
        }
    }


def config_get(eos_config, key, default):
    """Salt's config.get for ``eos:*`` keys, reading the minion config's ``eos`` mapping."""
    name = key.removeprefix("eos:")
    return eos_config.get(name, default)


def snapshot(*directories):
    """{path: content} of every file under ``directories``."""
    return {
        str(path): path.read_bytes()
        for directory in directories
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


# --- checkpoint and checkpoints ----------------------------------------------------------------


def test_checkpoint_saves_eos_files_and_eos_minion_config_only(node):
    taken = eos_cluster_module.checkpoint(label="join-web-3")

    assert taken["label"] == "join-web-3"
    assert taken["id"].endswith("Z-join-web-3")
    assert sorted(taken["files"]) == sorted(
        [
            str(node.config / "eos.yaml"),
            str(node.config / "roles" / "edge.yaml"),
            str(node.include / "beacons.conf"),
            str(node.include / "eos-storage.conf"),
        ]
    )
    assert str(node.include / "master.conf") not in taken["files"]
    assert str(node.minion / "minion") not in taken["files"]
    assert (node.cachedir / "eos" / "checkpoints" / taken["id"] / "manifest.json").is_file()


def test_checkpoint_records_the_role_services_this_host_has(services):
    taken = eos_cluster_module.checkpoint()

    assert taken["label"] == "manual"
    assert taken["services"] == {
        "docker": {"active": True, "enabled": False},
        "haproxy": {"active": False, "enabled": True},
        "nginx": {"active": True, "enabled": True},
    }
    assert services.calls == []


def test_checkpoint_follows_the_site_role_config_in_pillar(eos_config, services):
    # Minion config is not where the role states read it: it does not count.
    eos_config["role_config"] = {"edge": {"services": ["nginx"]}}
    eos_cluster_module.__pillar__["eos"] = {"role_config": {"edge": {"services": ["sshd"]}}}

    taken = eos_cluster_module.checkpoint()

    assert sorted(taken["services"]) == ["docker", "sshd"]


def test_checkpoint_takes_the_services_of_this_os_family(grains):
    grains["os_family"] = "RedHat"

    taken = eos_cluster_module.checkpoint()

    assert sorted(taken["services"]) == ["haproxy", "nginx"]


def test_checkpoint_without_a_service_module_records_no_services(node):
    del eos_cluster_module.__salt__["service.available"]

    taken = eos_cluster_module.checkpoint()

    assert taken["services"] == {}
    assert str(node.config / "eos.yaml") in taken["files"]


def test_checkpoint_records_no_services_when_eos_does_not_manage_software(eos_config, services):
    eos_config["manage_software"] = False

    taken = eos_cluster_module.checkpoint()

    assert taken["services"] == {}
    assert services.calls == []


def test_a_service_state_that_cannot_be_read_is_recorded_as_unknown(node, services):
    # debian_service on a host without systemd runs `runlevel`; off PATH, its output has no
    # second field and service.status raises IndexError.
    def no_runlevel(name, sig=None):
        raise IndexError("list index out of range")

    eos_cluster_module.__salt__["service.status"] = no_runlevel

    taken = eos_cluster_module.checkpoint(label="join")

    assert taken["unknown_services"] == ["docker", "haproxy", "nginx"]
    assert taken["services"]["nginx"] == {
        "active": None,
        "enabled": None,
        "unknown": "IndexError: list index out of range",
    }
    assert str(node.config / "eos.yaml") in taken["files"]


def test_rollback_leaves_a_service_of_unknown_state_alone(services):
    readable = services.functions()["service.status"]
    eos_cluster_module.__salt__["service.status"] = lambda name, sig=None: (
        readable(name) if name != "nginx" else int("not a state")
    )
    eos_cluster_module.checkpoint(label="join")
    services.units["nginx"] = {"active": False, "enabled": False}

    result = eos_cluster_module.rollback()

    assert result["services"]["nginx"].startswith("left alone: state unknown")
    assert services.units["nginx"] == {"active": False, "enabled": False}
    assert "retcode" not in eos_cluster_module.__context__


def test_checkpoints_lists_newest_first():
    # Labels in the reverse of their age: the order must come from the time.
    first = eos_cluster_module.checkpoint(label="zulu")
    time.sleep(0.01)
    second = eos_cluster_module.checkpoint(label="alpha")

    listed = eos_cluster_module.checkpoints()

    assert [item["id"] for item in listed] == [second["id"], first["id"]]
    assert listed[1]["services"] == first["services"]


def test_no_checkpoints_is_an_empty_list():
    assert eos_cluster_module.checkpoints() == []


@pytest.mark.parametrize("label", ["with space", "../up", "", "x\n"])
def test_a_bad_label_is_a_command_error_naming_it(node, label):
    with pytest.raises(CommandExecutionError) as err:
        eos_cluster_module.checkpoint(label=label)

    assert repr(label) in str(err.value)
    assert eos_cluster_module.checkpoints() == []


@pytest.mark.parametrize("config_dir", ["etc/eos", "", 7])
def test_a_relative_config_dir_is_an_error_naming_eos_config_dir(eos_config, config_dir):
    eos_config["config_dir"] = config_dir

    with pytest.raises(CommandExecutionError, match="eos:config_dir"):
        eos_cluster_module.checkpoint()

    assert eos_cluster_module.checkpoints() == []


# --- rollback ----------------------------------------------------------------------------------


def test_rollback_restores_files_and_removes_new_ones(node):
    before = snapshot(node.config, node.include)
    taken = eos_cluster_module.checkpoint(label="join")
    (node.config / "eos.yaml").write_text("cluster: broken\n")
    (node.config / "roles" / "edge.yaml").unlink()
    (node.config / "roles" / "core.yaml").write_text("docker: on\n")
    (node.include / "eos-roles.conf").write_text("eos: {roles: [edge]}\n")
    (node.include / "master.conf").write_text("master: other.example\n")

    result = eos_cluster_module.rollback()

    assert result["id"] == taken["id"]
    after = snapshot(node.config, node.include)
    # Everything EOS owns is back; master.conf is not EOS's and keeps its change.
    assert after == {
        **before,
        str(node.include / "master.conf"): b"master: other.example\n",
    }
    assert sorted(result["removed"]) == sorted(
        [str(node.config / "roles" / "core.yaml"), str(node.include / "eos-roles.conf")]
    )
    assert sorted(result["restored"]) == sorted(
        [str(node.config / "eos.yaml"), str(node.config / "roles" / "edge.yaml")]
    )
    assert "retcode" not in eos_cluster_module.__context__


def test_rollback_drives_the_services_back_to_their_recorded_state(services):
    recorded = services.state()
    eos_cluster_module.checkpoint(label="join")
    # The change being undone: a role state reconfigured the services.
    services.units["nginx"] = {"active": False, "enabled": False}
    services.units["haproxy"] = {"active": True, "enabled": False}
    services.units["docker"] = {"active": False, "enabled": True}
    services.units["sshd"] = {"active": False, "enabled": True}

    result = eos_cluster_module.rollback()

    assert {name: services.units[name] for name in ("nginx", "haproxy", "docker")} == {
        name: recorded[name] for name in ("nginx", "haproxy", "docker")
    }
    # sshd is no role's service: the rollback leaves it as it is.
    assert services.units["sshd"] == {"active": False, "enabled": True}
    assert result["services"] == {
        "docker": "disable, start",
        "haproxy": "enable, stop",
        "nginx": "enable, start",
    }
    assert "retcode" not in eos_cluster_module.__context__


def test_rollback_leaves_services_in_their_recorded_state_alone(services):
    eos_cluster_module.checkpoint(label="join")

    result = eos_cluster_module.rollback()

    assert set(result["services"].values()) == {"unchanged"}
    assert services.calls == []


@pytest.mark.parametrize("raises", [False, True], ids=["returns-false", "raises"])
def test_a_service_that_fails_to_start_fails_the_job(node, services, beacons, raises):
    eos_cluster_module.checkpoint(label="join")
    services.units["nginx"] = {"active": False, "enabled": False}
    services.units["docker"] = {"active": False, "enabled": False}
    services.failing = {"nginx": {"start"}}
    services.raises = raises
    (node.config / "eos.yaml").write_text("cluster: broken\n")
    beacons.running.pop("eos_storage")

    result = eos_cluster_module.rollback()

    assert eos_cluster_module.__context__["retcode"] == 1
    assert result["services"]["nginx"].startswith("failed")
    assert "start" in result["services"]["nginx"]
    # The failure stops nothing else: the other service, the files and the beacon come back.
    assert services.units["nginx"] == {"active": False, "enabled": True}
    assert services.units["docker"] == {"active": True, "enabled": False}
    assert result["services"]["docker"] == "start"
    assert (node.config / "eos.yaml").read_text() == "cluster: prod\n"
    assert beacons.running["eos_storage"] == STORAGE_BEACON


def test_rollback_removes_the_beacon_when_the_checkpoint_had_none(node, beacons):
    (node.include / "beacons.conf").unlink()
    beacons.running.pop("eos_storage")
    eos_cluster_module.checkpoint(label="before-beacon")
    (node.include / "beacons.conf").write_text(BEACONS_CONF)
    beacons.running["eos_storage"] = copy.deepcopy(STORAGE_BEACON)

    result = eos_cluster_module.rollback()

    assert not (node.include / "beacons.conf").exists()
    assert result["beacon"] == "removed"
    assert "eos_storage" not in beacons.running
    assert beacons.running["load"] == LOAD_BEACON


def test_rollback_modifies_a_changed_beacon_back(node, beacons):
    eos_cluster_module.checkpoint(label="join")
    (node.include / "beacons.conf").write_text("beacons:\n  eos_storage:\n  - interval: 5\n")
    beacons.running["eos_storage"] = [{"interval": 5}]

    result = eos_cluster_module.rollback()

    assert result["beacon"] == "modified"
    assert beacons.running["eos_storage"] == STORAGE_BEACON
    assert (node.include / "beacons.conf").read_text() == BEACONS_CONF


def test_rollback_adds_back_a_removed_beacon(node, beacons):
    eos_cluster_module.checkpoint(label="join")
    (node.include / "beacons.conf").write_text("beacons: {}\n")
    beacons.running.pop("eos_storage")

    result = eos_cluster_module.rollback()

    assert result["beacon"] == "added"
    assert beacons.running["eos_storage"] == STORAGE_BEACON


def test_rollback_leaves_a_matching_beacon_alone(beacons):
    eos_cluster_module.checkpoint(label="join")

    assert eos_cluster_module.rollback()["beacon"] == "unchanged"
    assert beacons.running["eos_storage"] == STORAGE_BEACON


def test_a_beacon_the_minion_refuses_fails_the_job(node, beacons):
    eos_cluster_module.checkpoint(label="join")
    beacons.running.pop("eos_storage")
    beacons.refuse = True

    result = eos_cluster_module.rollback()

    assert result["beacon"].startswith("failed")
    assert "configuration invalid" in result["beacon"]
    assert eos_cluster_module.__context__["retcode"] == 1


def test_beacons_the_minion_cannot_list_fail_the_job(node, beacons):
    eos_cluster_module.checkpoint(label="join")
    (node.config / "eos.yaml").write_text("cluster: broken\n")
    beacons.silent = True

    result = eos_cluster_module.rollback()

    assert result["beacon"].startswith("failed")
    assert eos_cluster_module.__context__["retcode"] == 1
    assert (node.config / "eos.yaml").read_text() == "cluster: prod\n"


def test_rollback_by_id_and_by_label(node):
    first = eos_cluster_module.checkpoint(label="before-upgrade")
    (node.config / "eos.yaml").write_text("cluster: upgraded\n")
    eos_cluster_module.checkpoint(label="join")
    (node.config / "eos.yaml").write_text("cluster: joined\n")

    assert eos_cluster_module.rollback(label="before-upgrade")["id"] == first["id"]
    assert (node.config / "eos.yaml").read_text() == "cluster: prod\n"

    (node.config / "eos.yaml").write_text("cluster: joined\n")
    assert eos_cluster_module.rollback(first["id"])["id"] == first["id"]
    assert (node.config / "eos.yaml").read_text() == "cluster: prod\n"


def test_rollback_of_an_unknown_id_names_it_and_changes_nothing(node, services, beacons):
    eos_cluster_module.checkpoint(label="join")
    (node.config / "eos.yaml").write_text("cluster: broken\n")
    (node.config / "new.yaml").write_text("new\n")
    services.units["nginx"] = {"active": False, "enabled": False}
    beacons.running.pop("eos_storage")
    files = snapshot(node.config, node.include)
    units = services.state()
    running = copy.deepcopy(beacons.running)

    with pytest.raises(CommandExecutionError, match=re.escape("'20200101T000000.000Z-nope'")):
        eos_cluster_module.rollback("20200101T000000.000Z-nope")

    assert snapshot(node.config, node.include) == files
    assert services.state() == units
    assert services.calls == []
    assert beacons.running == running
    assert "retcode" not in eos_cluster_module.__context__


def test_rollback_without_checkpoints_is_a_command_error():
    with pytest.raises(CommandExecutionError, match="no checkpoint taken yet"):
        eos_cluster_module.rollback()


def test_rollback_of_a_damaged_checkpoint_changes_nothing(node, services):
    taken = eos_cluster_module.checkpoint(label="join")
    blobs = node.cachedir / "eos" / "checkpoints" / taken["id"] / "files"
    for blob in blobs.iterdir():
        blob.write_bytes(blob.read_bytes() + b"#")
    (node.config / "eos.yaml").write_text("cluster: broken\n")
    services.units["nginx"] = {"active": False, "enabled": False}
    files = snapshot(node.config, node.include)

    with pytest.raises(CommandExecutionError, match="damaged"):
        eos_cluster_module.rollback()

    assert snapshot(node.config, node.include) == files
    assert services.units["nginx"] == {"active": False, "enabled": False}
    assert services.calls == []
