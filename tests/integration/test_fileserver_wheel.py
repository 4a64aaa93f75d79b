"""
The ``eos`` fileserver backend of the *installed wheel*, through a real salt-master.

The wheel is built from a copy of the project to which one test-only SLS (a probe with a
random name) is added. The source tree lacks the probe, so a master that serves it, with the
exact bytes of the wheel, can only be running the installed wheel.

The wheel goes into a venv of its own, and the master (with its ``salt``/``salt-run`` CLIs)
runs from that venv's python. Putting the wheel first on ``PYTHONPATH`` of the test venv is not
enough: the test venv holds the project as a setuptools editable install, an import finder
that a ``.pth`` file installs at start-up, and whether that finder or ``PYTHONPATH`` wins
differs between machines. The new venv reaches the test venv's dependencies (salt, ...)
through a ``.pth`` file of plain path lines: those directories are appended to ``sys.path``,
but the ``.pth`` files inside them are not processed, so the editable finder never exists
there. The first test checks that the source tree is unreachable in that interpreter.

The fixtures are module-scoped: building the wheel, making the venv and starting the master
take most of this module's time, and every test reads the same master.
"""

import json
import os
import shutil
import site
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from saltext.eos import PACKAGE_ROOT

PROJECT_ROOT = PACKAGE_ROOT.parents[2]
SERVED_FOLDERS = ("roles", "reactor", "orchestrate")
PACKAGE_IN_WHEEL = "saltext/eos/"

# Run by the wheel venv's python. The generated salt scripts put salt-factories' code_dir
# first on sys.path, so this does too; then it asks every import finder where ``saltext``
# and ``saltext.eos`` could come from (each ``saltext`` portion on its own, so a copy that
# merely loses the race is found as well).
FIND_SALTEXT_EOS = """
import json, sys
sys.path[:0] = sys.argv[1:]
import saltext, saltext.eos
locations = set()
queries = [("saltext", None), ("saltext.eos", None)]
queries += [("saltext.eos", [portion]) for portion in saltext.__path__]
for finder in sys.meta_path:
    for name, path in queries:
        spec = finder.find_spec(name, path) if hasattr(finder, "find_spec") else None
        if spec is not None:
            locations.update(spec.submodule_search_locations or [])
            if spec.has_location:
                locations.add(spec.origin)
print(json.dumps({"package_root": str(saltext.eos.PACKAGE_ROOT), "locations": sorted(locations)}))
"""


@pytest.fixture(scope="module")
def probe():
    name = f"wheel_probe_{uuid.uuid4().hex[:12]}"
    return {
        "member": f"{PACKAGE_IN_WHEEL}orchestrate/{name}.sls",
        "sls": f"eos.orchestrate.{name}",
        "text": f"# Built into the test wheel only.\n{name}:\n  test.nop\n",
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, probe):
    """The project's wheel, built from a copy so the checkout gets no build/ or egg-info."""
    workdir = tmp_path_factory.mktemp("wheel")
    project = _copy_project(workdir / "project")
    (project / "src" / probe["member"]).write_text(probe["text"])
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", workdir / "dist", project])
    (built,) = (workdir / "dist").glob("saltext_eos-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_venv(wheel, tmp_path_factory):
    """A venv holding the wheel (not editable) that borrows the test venv's dependencies."""
    root = tmp_path_factory.mktemp("venv")
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    _run([base_python, "-m", "venv", "--without-pip", root])
    python = root / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site_packages = Path(_run([python, "-c", code]).stdout.strip())
    pip_install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index"]
    _run([*pip_install, "--target", site_packages, wheel])
    (site_packages / "test_venv_dependencies.pth").write_text(
        "".join(f"{directory}\n" for directory in _dependency_dirs())
    )
    return SimpleNamespace(root=root, python=python, site_packages=site_packages)


@pytest.fixture(scope="module")
def wheel_environ(salt_factories):
    """The daemons' environment without PYTHONPATH, which would go ahead of the wheel."""
    return {key: value for key, value in salt_factories.environ.items() if key != "PYTHONPATH"}


@pytest.fixture(scope="module")
def shipped(wheel):
    """{salt:// path below the master: bytes} of every SLS the wheel ships in served folders."""
    files = {}
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            relative = member.removeprefix(PACKAGE_IN_WHEEL)
            if relative != member and relative.split("/", 1)[0] in SERVED_FOLDERS:
                files[f"eos/{relative}"] = archive.read(member)
    return files


@pytest.fixture(scope="module")
def master(salt_factories, master_id, wheel_venv, wheel_environ):
    factory = salt_factories.salt_master_daemon(
        master_id, overrides={"fileserver_backend": ["eos"]}
    )
    # The CLIs made by this factory (salt_cli, salt_run_cli) take its python_executable too.
    factory.python_executable = str(wheel_venv.python)
    # salt_master_daemon() passes the manager's environ itself, so the master's own copy is
    # replaced here; mutating it in place would change every other daemon's environment too.
    factory.environ = dict(wheel_environ)
    with factory.started():
        yield factory


def test_the_environment_imports_the_wheel_not_the_source_tree(
    salt_factories, wheel_venv, wheel_environ
):
    command = [wheel_venv.python, "-c", FIND_SALTEXT_EOS, *filter(None, [salt_factories.code_dir])]
    found = json.loads(_run(command, env=wheel_environ).stdout)

    installed = (wheel_venv.site_packages / "saltext" / "eos").resolve()
    assert Path(found["package_root"]) == installed
    assert installed.is_relative_to(wheel_venv.root.resolve())
    assert str(installed) in {str(Path(location).resolve()) for location in found["locations"]}
    source = (PROJECT_ROOT / "src").resolve()
    leaks = [loc for loc in found["locations"] if Path(loc).resolve().is_relative_to(source)]
    assert not leaks


def test_the_master_lists_exactly_the_wheels_files(salt_cli, minion, shipped, probe):
    ret = salt_cli.run("cp.list_master", "prefix=eos/", minion_tgt=minion.id)

    assert ret.returncode == 0, ret
    assert sorted(ret.data) == sorted(shipped)
    assert probe["member"].removeprefix("saltext/") in ret.data


def test_every_served_file_has_the_wheels_exact_content(salt_cli, minion, shipped):
    for path, content in shipped.items():
        ret = salt_cli.run("cp.get_file_str", f"salt://{path}", minion_tgt=minion.id)

        assert ret.returncode == 0, ret
        assert ret.data == content.decode(), path


def test_a_path_escaping_the_package_is_not_served(salt_cli, minion):
    ret = salt_cli.run(
        "cp.get_file_str", "salt://eos/orchestrate/../__init__.py", minion_tgt=minion.id
    )

    assert not ret.data


def test_an_orchestration_shipped_in_the_wheel_runs(master, wheel_environ, probe):
    # Orchestrate renders on the salt-run side, so that process runs from the wheel venv too
    # (it takes the master's python_executable).
    salt_run_cli = master.salt_run_cli(timeout=120, environ=dict(wheel_environ))

    ret = salt_run_cli.run("state.orchestrate", probe["sls"])

    assert ret.returncode == 0, ret
    results = [state["result"] for state in ret.data["data"][master.id].values()]
    assert results == [True]


def _dependency_dirs():
    """The test venv's site-packages directories (and the user site, if this venv uses it)."""
    directories = site.getsitepackages()
    if site.ENABLE_USER_SITE:
        directories.append(site.getusersitepackages())
    return [directory for directory in directories if os.path.isdir(directory)]


def _copy_project(destination):
    destination.mkdir()
    for item in PROJECT_ROOT.iterdir():
        if item.is_file():
            shutil.copy2(item, destination / item.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(PROJECT_ROOT / "src", destination / "src", ignore=ignore)
    return destination


def _run(command, env=None):
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    return result
