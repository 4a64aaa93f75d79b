"""
The role states through a real salt-master and two minions.

The master serves the package's states with the ``eos`` fileserver backend, and the base top
file applies ``eos.roles`` to every minion. Pillar comes from plain pillar SLS (no ``eos``
ext_pillar, which would replace ``eos:roles`` with the registry's assignment):

- ``core`` holds the core role and manages no software (``eos:manage_software: false`` in
  its minion config): it is applied for real, by state.apply and by highstate;
- ``edge`` holds the edge role and manages software, so it runs in test mode only (``test:
  True`` in its minion config as well, so nothing can install a package on this host).

Each minion has its own ``eos:config_dir``. Tests build on each other, in file order.
"""

import concurrent.futures
import json
import os

import pytest
import yaml
from saltfactories.utils import random_string

from saltext.eos import PACKAGE_ROOT

ROLES_DIR = PACKAGE_ROOT / "roles"
DEFAULTS = yaml.safe_load((ROLES_DIR / "defaults.yaml").read_text())
ROLES = [role for role in DEFAULTS if role != "os_family"]  # common, then the catalogue


def package_states(role):
    """The package states a role's state runs: its own, its combined roles' and common's."""
    settings = DEFAULTS[role]
    combined = settings.get("combines", [])
    # A monolith installs only what the roles it combines do not.
    covered = {name for other in combined for name in DEFAULTS[other]["packages"]}
    own = [role] if set(settings.get("packages") or []) - covered else []
    return {f"eos_{name}_packages" for name in (*own, *combined, "common")}


THRESHOLDS = {
    "warning": 65,
    "compress": 75,
    "cleanup": 80,
    "degraded": 85,
    "emergency": 90,
    "critical": 95,
}
CLUSTER = {"scale": "small", "cluster_id": "5e1f0c2a9b7d4e3f8a6b1c0d2e4f6a8b", "node_count": 2}
INTERVAL = 45


@pytest.fixture(scope="module")
def node_ids():
    return {"core": random_string("core-"), "edge": random_string("edge-")}


@pytest.fixture(scope="module")
def trees(tmp_path_factory, node_ids):
    """The master's file_roots (the top file only) and pillar_roots."""
    root = tmp_path_factory.mktemp("roles-trees")
    states, pillars = root / "states", root / "pillar"
    states.mkdir()
    pillars.mkdir()
    (states / "top.sls").write_text("base:\n  '*':\n    - eos.roles\n")
    top = {"base": {node_ids[name]: [name] for name in node_ids}}
    (pillars / "top.sls").write_text(yaml.safe_dump(top))
    for name, extra in (("core", {"beacon": {"hysteresis": 3, "mounts": ["/"]}}), ("edge", {})):
        eos = {
            "roles": [name],
            **CLUSTER,
            # As the ext_pillar gives it from the registry: the edge's upstreams.
            "holders": {"core": [node_ids["core"]], "monolith": []},
            "thresholds": THRESHOLDS,
            "profile": {"monitoring_interval": INTERVAL},
            **extra,
        }
        (pillars / f"{name}.sls").write_text(yaml.safe_dump({"eos": eos}))
    return {"states": states, "pillar": pillars}


@pytest.fixture(scope="module")
def master(salt_factories, master_id, trees):
    factory = salt_factories.salt_master_daemon(
        master_id,
        overrides={
            "fileserver_backend": ["roots", "eos"],
            "file_roots": {"base": [str(trees["states"])]},
            "pillar_roots": {"base": [str(trees["pillar"])]},
        },
    )
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def config_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eos-config")
    return {"core": root / "core" / "eos", "edge": root / "edge" / "eos"}


@pytest.fixture(scope="module")
def minions(master, node_ids, config_dirs):
    """Both minions, started and stopped together."""
    overrides = {
        "core": {"eos": {"config_dir": str(config_dirs["core"]), "manage_software": False}},
        "edge": {"test": True, "eos": {"config_dir": str(config_dirs["edge"])}},
    }
    factories = {
        name: master.salt_minion_daemon(node_ids[name], overrides=overrides[name])
        for name in overrides
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(factories)) as pool:
        starts = [pool.submit(factory.start) for factory in factories.values()]
        try:
            for start in starts:
                start.result()
            yield factories
        finally:
            for stop in [pool.submit(factory.terminate) for factory in factories.values()]:
                stop.result()


@pytest.fixture(scope="module")
def core(minions):
    return minions["core"]


@pytest.fixture(scope="module")
def edge(minions):
    return minions["edge"]


@pytest.fixture(scope="module")
def salt_cli(master, core, edge):
    return master.salt_cli(timeout=120)


def run(salt_cli, minion, *args):
    ret = salt_cli.run(*args, minion_tgt=minion.id)
    assert isinstance(ret.data, (dict, list)), ret
    return ret


def states_of(ret):
    assert isinstance(ret.data, dict), ret
    return ret.data


def failures(states):
    return {tag: state["comment"] for tag, state in states.items() if state["result"] is False}


def ids(states):
    return {tag.split("_|-")[1] for tag in states}


def changed(states):
    return {tag: state["changes"] for tag, state in states.items() if state["changes"]}


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="pkg states take the package manager's lock even with test=True, and only root "
    "may open it (CI runs as root)",
)
@pytest.mark.parametrize("role", ROLES)
def test_every_role_runs_in_test_mode_with_its_software(salt_cli, edge, config_dirs, role):
    states = states_of(run(salt_cli, edge, "state.apply", f"eos.roles.{role}", "test=True"))

    assert not failures(states)
    assert package_states(role) <= ids(states)
    assert {"eos_role_file", "eos_thresholds_file", "eos_storage_beacon"} <= ids(states)
    assert not config_dirs["edge"].exists()  # test mode wrote nothing


def test_every_role_together_renders_without_id_conflicts(salt_cli, edge):
    pillar = {"eos": {"roles": ROLES}}

    shown = run(salt_cli, edge, "state.show_sls", "eos.roles", pillar_arg(pillar)).data

    assert isinstance(shown, dict), shown  # a conflict is a list of render errors
    assert set().union(*map(package_states, ROLES)) <= set(shown)


def test_with_software_the_beacon_writes_into_the_node_exporters_directory(salt_cli, edge):
    exporter = DEFAULTS["common"]["node_exporter"]
    shown = run(salt_cli, edge, "state.show_sls", "eos.roles.common").data
    options = {
        key: value
        for item in shown["eos_storage_beacon"]["beacon"]
        if isinstance(item, dict)
        for key, value in item.items()
    }
    assert options["textfile"] == f"{exporter['textfile_dir']}/{exporter['textfile_name']}"
    assert shown["eos_common_textfile_dir"]["file"][0] == {"name": exporter["textfile_dir"]}
    flags = next(
        item["value"] for item in shown["eos_common_node_exporter_args"]["file"] if "value" in item
    )
    assert f"--collector.textfile.directory={exporter['textfile_dir']}" in flags
    assert f"--web.listen-address={exporter['listen_address']}" in flags


def test_a_role_without_software_writes_the_eos_files_and_the_beacon(salt_cli, core, config_dirs):
    states = states_of(run(salt_cli, core, "state.apply", "eos.roles.core"))

    assert not failures(states)
    assert not any(tag.startswith(("pkg_", "service_")) for tag in states)
    role_file = yaml.safe_load((config_dirs["core"] / "role.yaml").read_text())
    assert role_file == {"roles": ["core"], **CLUSTER}
    assert yaml.safe_load((config_dirs["core"] / "thresholds.yaml").read_text()) == THRESHOLDS
    beacons = run(salt_cli, core, "beacons.list", "return_yaml=False").data
    assert beacons["eos_storage"] == [{"interval": INTERVAL}, {"hysteresis": 3}, {"mounts": ["/"]}]


def test_a_second_apply_changes_nothing(salt_cli, core):
    states = states_of(run(salt_cli, core, "state.apply", "eos.roles.core"))

    assert not failures(states)
    assert not changed(states)


def test_highstate_includes_the_pillar_roles(salt_cli, edge):
    highstate = run(salt_cli, edge, "state.show_highstate").data

    assert isinstance(highstate, dict), highstate
    assert {state["__sls__"] for state in highstate.values()} == {
        "eos.roles.common",
        "eos.roles.edge",
    }


def test_highstate_applies_the_roles_and_changes_nothing_on_an_applied_node(salt_cli, core):
    states = states_of(run(salt_cli, core, "state.highstate"))

    assert not failures(states)
    assert {"eos_role_file", "eos_thresholds_file", "eos_storage_beacon"} <= ids(states)
    assert not changed(states)


def test_the_edge_finds_the_core_node_through_the_mine(salt_cli, core, edge):
    core_addresses = run(salt_cli, core, "network.ip_addrs").data
    assert core_addresses, "this host has no non-loopback address to publish"

    context = haproxy_context(salt_cli, edge)

    assert context["servers"] == [{"name": core.id, "address": core_addresses[0], "port": 8000}]


def test_the_upstreams_pillar_overrides_discovery(salt_cli, edge):
    upstreams = [{"name": "static-1", "address": "10.9.8.7", "port": 9000}, "10.9.8.6"]
    pillar = {"eos": {"role_config": {"edge": {"upstreams": upstreams}}}}

    context = haproxy_context(salt_cli, edge, pillar_arg(pillar))

    assert context["servers"] == [
        {"name": "static-1", "address": "10.9.8.7", "port": 9000},
        {"name": "upstream-2", "address": "10.9.8.6", "port": 8000},
    ]


def test_the_beacon_follows_the_profile_interval(salt_cli, core):
    pillar = {"eos": {"profile": {"monitoring_interval": 90}}}

    states = states_of(run(salt_cli, core, "state.apply", "eos.roles.common", pillar_arg(pillar)))

    assert not failures(states)
    assert set(changed(states)) == {"beacon_|-eos_storage_beacon_|-eos_storage_|-present"}
    beacons = run(salt_cli, core, "beacons.list", "return_yaml=False").data
    assert beacons["eos_storage"][0] == {"interval": 90}


def test_an_unknown_role_is_a_failing_state_naming_it(salt_cli, core, config_dirs):
    pillar = {"eos": {"roles": ["core", "nosuchrole"]}}

    ret = run(salt_cli, core, "state.apply", "eos.roles", pillar_arg(pillar))

    assert ret.returncode != 0
    states = states_of(ret)
    (failed,) = failures(states).values()
    assert "unknown role 'nosuchrole'" in failed
    assert "core" in failed.split("roles with a state:")[1]
    # Everything else is still applied: the known role and the EOS part.
    role_file = yaml.safe_load((config_dirs["core"] / "role.yaml").read_text())
    assert role_file["roles"] == ["core", "nosuchrole"]


def haproxy_context(salt_cli, edge, *args):
    shown = run(salt_cli, edge, "state.show_sls", "eos.roles.edge", *args).data
    assert isinstance(shown, dict), shown
    arguments = shown["eos_edge_haproxy_config"]["file"]
    (context,) = [arg["context"] for arg in arguments if isinstance(arg, dict) and "context" in arg]
    return context


def pillar_arg(pillar):
    return f"pillar={json.dumps(pillar)}"
