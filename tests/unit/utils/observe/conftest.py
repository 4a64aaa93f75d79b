"""
Prometheus' and Alertmanager's own checkers, for the generated files: ``promtool`` (Debian's
``prometheus`` package) and ``amtool`` (``prometheus-alertmanager``). A test needing one skips
when it is not on PATH; ``.ci/install-deps`` installs both.
"""

import shutil
import subprocess

import pytest
import yaml


def _tool(name, package):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not on PATH (Debian package {package}; see .ci/install-deps)")
    return path


@pytest.fixture
def promtool():
    return _tool("promtool", "prometheus")


@pytest.fixture
def amtool():
    return _tool("amtool", "prometheus-alertmanager")


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(*command):
    """The tool's result; a failure shows everything it said."""
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout}{result.stderr}"
    return result
