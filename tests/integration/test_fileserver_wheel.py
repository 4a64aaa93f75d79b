"""
The ``eos`` fileserver backend of the *installed wheel*, through a real salt-master.

The wheel is built from a copy of the project to which one test-only SLS (a probe with a
random name) is added. The source tree lacks the probe, so a master that serves it, with the
exact bytes of the wheel, can only be running the installed wheel.
"""

import os
import shutil
import subprocess
import sys
import uuid
import zipfile

import pytest

from saltext.eos import PACKAGE_ROOT

PROJECT_ROOT = PACKAGE_ROOT.parents[2]
SERVED_FOLDERS = ("roles", "reactor", "orchestrate")
PACKAGE_IN_WHEEL = "saltext/eos/"


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
def site_dir(wheel, tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--target",
            target,
            wheel,
        ]
    )
    return target


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
def wheel_environ(site_dir):
    """The environment that puts the installed wheel ahead of the editable source install."""
    paths = [str(site_dir), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


@pytest.fixture(scope="module")
def master(salt_factories, master_id, wheel_environ):
    factory = salt_factories.salt_master_daemon(
        master_id, overrides={"fileserver_backend": ["eos"]}
    )
    # salt_master_daemon() passes the manager's environ itself, so the master's own copy is
    # replaced here; mutating it in place would change every other daemon's environment too.
    factory.environ = dict(wheel_environ)
    with factory.started():
        yield factory


def test_the_environment_imports_the_wheel_not_the_source_tree(wheel_environ, site_dir):
    code = "import saltext.eos; print(saltext.eos.PACKAGE_ROOT)"
    result = _run([sys.executable, "-c", code], env=wheel_environ)

    assert result.stdout.strip() == str(site_dir / "saltext" / "eos")


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
    # Orchestrate renders on the salt-run side, so that process needs the wheel too.
    salt_run_cli = master.salt_run_cli(timeout=120, environ=dict(wheel_environ))

    ret = salt_run_cli.run("state.orchestrate", probe["sls"])

    assert ret.returncode == 0, ret
    results = [state["result"] for state in ret.data["data"][master.id].values()]
    assert results == [True]


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
