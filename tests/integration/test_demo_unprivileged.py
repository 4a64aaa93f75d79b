"""
`make demo` as a newcomer runs it: an unprivileged user, a fresh copy of the project, only
the system's python3, and a minimal environment (``env -i PATH=/usr/bin:/bin HOME=...``), so
no /usr/sbin and nothing inherited from this test run.

Run as root only (CI is root): it needs to switch to another user. The copy builds its own
``.venv`` through the Makefile, so this also proves the two-command promise of the README.
"""

import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest

from saltext.eos import PACKAGE_ROOT

pytestmark = pytest.mark.root

PROJECT_ROOT = PACKAGE_ROOT.parents[2]
NOBODY = 65534
DEMO_TIMEOUT = 1500
EXPECTED_ROLES = ["core", "data", "edge"]


@pytest.fixture(scope="module")
def workspace():
    # Not under pytest's tmp_path: its base directory is private to root.
    root = pathlib.Path(tempfile.mkdtemp(prefix="saltext-eos-demo-test-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def project_copy(workspace):
    """The project's files as they are in this checkout, owned by the unprivileged user."""
    copy = workspace / "saltext-eos"
    for relative in _project_files():
        target = copy / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / relative, target)
    (workspace / "home").mkdir()
    for path in [workspace, *workspace.rglob("*")]:
        os.lchown(path, NOBODY, NOBODY)
    return copy


@pytest.fixture(scope="module")
def demo(project_copy, workspace):
    before = _demo_dirs()
    result = subprocess.run(
        ["make", "demo"],
        cwd=project_copy,
        env={"PATH": "/usr/bin:/bin", "HOME": str(workspace / "home")},
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )
    result.left_behind = _demo_dirs() - before
    return result


def test_the_demo_exits_zero(demo):
    assert demo.returncode == 0, f"{demo.stdout[-4000:]}\n{demo.stderr[-4000:]}"


def test_three_nodes_end_active_with_the_expected_roles(demo):
    found = re.search(r"^Demo passed: 3 nodes active \((.*)\) in \d+s\.$", demo.stdout, re.M)
    assert found, demo.stdout[-4000:]
    roles = sorted(part.split(": ", 1)[1] for part in found.group(1).split("; "))
    assert roles == EXPECTED_ROLES
    assert "Demo FAILED" not in demo.stdout + demo.stderr


def test_the_demo_says_what_it_waits_for(demo):
    assert "waiting for eos-demo-alpha to connect" in demo.stdout
    assert "waiting for the join of eos-demo-charlie" in demo.stdout


def test_the_demo_leaves_no_temporary_directory(demo):
    assert demo.left_behind == set()


def _project_files():
    if (PROJECT_ROOT / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            check=True,
        ).stdout
        return [name for name in listed.decode().split("\0") if name and _exists(name)]
    skipped = {".venv", ".git", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache"}
    return [
        str(path.relative_to(PROJECT_ROOT))
        for path in PROJECT_ROOT.rglob("*")
        if path.is_file() and not skipped & set(path.relative_to(PROJECT_ROOT).parts)
    ]


def _exists(name):
    # Listed by git but deleted in the working tree.
    return (PROJECT_ROOT / name).is_file()


def _demo_dirs():
    return {path.name for path in pathlib.Path("/tmp").glob("eos-demo-*")
            if path.stat().st_uid == NOBODY}  # fmt: skip
