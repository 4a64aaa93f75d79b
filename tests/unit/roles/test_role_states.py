"""
The role states' data and templates, without Salt: roles/defaults.yaml against the role
catalogue, the SLS files that must exist, and the haproxy and keepalived templates.
"""

import configparser
import os
import shutil
import subprocess

import jinja2
import pytest
import yaml

from saltext.eos import PACKAGE_ROOT
from saltext.eos.utils.cluster import roles

ROLES_DIR = PACKAGE_ROOT / "roles"
PROJECT_ROOT = PACKAGE_ROOT.parents[2]
DEFAULTS = yaml.safe_load((ROLES_DIR / "defaults.yaml").read_text())
FAMILIES = sorted(DEFAULTS["os_family"])
COMMON = "common"  # not a role: what eos.roles.common gives every node
HAPROXY = os.environ.get("HAPROXY") or shutil.which("haproxy")


def merged(role, family=None):
    """A role's settings as map.jinja merges them: mappings key by key, the rest replaced."""
    overlay = DEFAULTS["os_family"].get(family, {}).get(role, {}) if family else {}
    return _merge(DEFAULTS[role], overlay)


def _merge(base, overlay):
    result = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def render(template, **context):
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ROLES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,  # as Salt's jinja renderer
    )
    return environment.get_template(template).render(**context)


# --- defaults.yaml ----------------------------------------------------------------------------


def test_defaults_name_exactly_common_and_the_catalogue_roles():
    assert isinstance(DEFAULTS, dict)
    assert [role for role in DEFAULTS if role != "os_family"] == [COMMON, *roles.CATALOG]


def test_every_role_has_a_state():
    for role in roles.CATALOG:
        assert (ROLES_DIR / f"{role}.sls").is_file(), role
    for name in ("init", "common"):
        assert (ROLES_DIR / f"{name}.sls").is_file(), name


@pytest.mark.parametrize("family", [None, *FAMILIES])
def test_packages_and_services_are_lists_of_names(family):
    for role in (COMMON, *roles.CATALOG):
        settings = merged(role, family)
        for key in ("packages", "services"):
            names = settings[key]
            assert isinstance(names, list), (role, family, key)
            assert all(isinstance(name, str) and name.strip() for name in names), (role, key)
            assert len(set(names)) == len(names), (role, family, key)


def test_os_family_sections_only_name_catalogue_roles():
    for family, overlay in DEFAULTS["os_family"].items():
        assert set(overlay) <= {COMMON, *roles.CATALOG}, family


@pytest.mark.parametrize("family", [None, *FAMILIES])
def test_a_monolith_lists_everything_of_the_roles_it_combines(family):
    # Tools reading `services` from this file see every service a monolith runs.
    monolith = merged("monolith", family)
    assert monolith["combines"] == ["edge", "core", "data"]
    for role in monolith["combines"]:
        for key in ("packages", "services"):
            missing = set(merged(role, family)[key]) - set(monolith[key])
            assert not missing, (family, role, key)


def test_the_compute_runtime_names_a_runtime_with_a_known_format():
    for family in [None, *FAMILIES]:
        compute = merged("compute", family)
        runtime = compute["runtimes"][compute["runtime"]]
        assert runtime["format"] in ("json", "toml"), family
        assert runtime["config_file"].startswith("/")


def test_the_package_ships_the_role_files():
    parser = configparser.ConfigParser()
    parser.read(PROJECT_ROOT / "setup.cfg")
    shipped = parser["options.package_data"]["saltext.eos"].split()
    for pattern in ("roles/*.sls", "roles/*.yaml", "roles/*.jinja"):
        assert pattern in shipped
    kinds = {path.suffix for path in ROLES_DIR.iterdir() if path.is_file()}
    assert kinds == {".sls", ".yaml", ".jinja"}


# --- templates ----------------------------------------------------------------------------------

CORE_SERVERS = [
    {"name": "core-1", "address": "10.0.0.11", "port": 8000},
    {"name": "core-2", "address": "10.0.0.12", "port": 8000},
]


def haproxy_config(servers, missing=()):
    return render(
        "haproxy.cfg.jinja",
        haproxy=DEFAULTS["edge"]["haproxy"],
        servers=servers,
        source="a test",
        missing=list(missing),
    )


def backend_lines(text):
    lines = text.splitlines()
    start = lines.index("backend eos_core")
    return [line.strip() for line in lines[start + 1 :] if line.strip()]


def test_haproxy_balances_over_every_core_node():
    text = haproxy_config(CORE_SERVERS)

    backend = backend_lines(text)
    assert "server core-1 10.0.0.11:8000 check" in backend
    assert "server core-2 10.0.0.12:8000 check" in backend
    assert "bind *:8080" in text
    assert "No core node found" not in text
    assert text.endswith("\n")  # haproxy refuses a last line without one


def test_haproxy_without_core_nodes_has_no_server_and_says_why():
    text = haproxy_config([], missing=["core-3"])

    backend = backend_lines(text)
    assert not [line for line in backend if line.startswith("server ")]
    assert any("No core node found yet" in line for line in backend)
    assert "# core-3: a core node with no published address" in backend


@pytest.mark.skipif(not HAPROXY, reason="haproxy is not installed (set HAPROXY to a binary)")
@pytest.mark.parametrize("servers", [CORE_SERVERS, []], ids=["servers", "no-servers"])
def test_haproxy_accepts_the_rendered_config(tmp_path, servers):
    config = tmp_path / "haproxy.cfg"
    # The check needs no haproxy user on this host: drop the user and group lines.
    lines = haproxy_config(servers).splitlines(keepends=True)
    config.write_text(
        "".join(line for line in lines if line.split()[:1] not in (["user"], ["group"]))
    )

    result = subprocess.run(
        [HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_keepalived_has_no_vrrp_instance_without_a_virtual_ip():
    text = render(
        "keepalived.conf.jinja", keepalived=DEFAULTS["edge"]["keepalived"], router_id="edge-1"
    )

    assert "router_id edge-1" in text
    assert "vrrp_instance" not in text


def test_keepalived_moves_the_virtual_ip_with_haproxy():
    settings = {**DEFAULTS["edge"]["keepalived"], "virtual_ip": "10.0.0.100/24"}
    settings["interface"] = "eth1"

    text = render("keepalived.conf.jinja", keepalived=settings, router_id="edge-1")

    assert "vrrp_instance eos_edge {" in text
    assert "interface eth1" in text
    assert "10.0.0.100/24" in text
    assert "process haproxy" in text
    assert text.count("{") == text.count("}")
