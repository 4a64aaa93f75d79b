"""
The ssh transport for real: ``eos_dataset.pull`` copies a dataset from a throwaway sshd on
127.0.0.1, as a destination pulls from a source on another host.

The sshd listens on a free loopback port, with a host key, a client key and the authorized
keys generated in a temporary directory. The client finds them through an ``ssh`` wrapper put
first on PATH that adds ``-F <that directory>/ssh_config``, where a real node has them in its
minion user's ``~/.ssh``: no file of this host's own ssh setup is read or written. The fixture
stops sshd, deletes the directory, and removes the privilege separation directory sshd needs
when it had to create it.
"""

import contextlib
import getpass
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
from types import SimpleNamespace

import pytest
from salt.exceptions import CommandExecutionError

from saltext.eos.utils import datasets
from saltext.eos.utils.datasets import transfer
from tests.support.datasets import tree_digest

SSHD = shutil.which("sshd", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
# Where Debian's sshd insists on chrooting its unprivileged child; the service makes it.
PRIVSEP_DIR = pathlib.Path("/run/sshd")
SOURCE_ALIAS = "eos-source"
STRANGER_ALIAS = "eos-source-stranger"
MIB = 1024 * 1024

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(SSHD is None, reason="sshd is missing (package openssh-server)"),
    pytest.mark.skip_if_binaries_missing("ssh", "ssh-keygen", "rsync"),
]


def keygen(path):
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "eos-test", "-f", str(path)],
        check=True,
    )


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_listening(process, port, log, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"sshd exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise AssertionError(f"sshd did not listen on {port} within {timeout}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def sshd():
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="eos-sshd-"))
    made_privsep = not PRIVSEP_DIR.exists()
    process = None
    try:
        for key in ("host_key", "client_key", "stranger_key"):
            keygen(workdir / key)
        (workdir / "authorized_keys").write_text((workdir / "client_key.pub").read_text())
        port = free_port()
        user = getpass.getuser()
        server_config = workdir / "sshd_config"
        server_config.write_text(
            f"ListenAddress 127.0.0.1:{port}\n"
            f"HostKey {workdir / 'host_key'}\n"
            f"PidFile {workdir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {workdir / 'authorized_keys'}\n"
            f"AllowUsers {user}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            # The temporary directory sits below the world-writable /tmp.
            "StrictModes no\n"
            "PermitTTY no\n"
            "AllowTcpForwarding no\n"
            "X11Forwarding no\n"
            "PrintMotd no\n"
            "PrintLastLog no\n"
        )
        host_key = (workdir / "host_key.pub").read_text().split()
        (workdir / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        client_config = workdir / "ssh_config"
        client_config.write_text(
            "".join(
                f"Host {alias}\n"
                "  HostName 127.0.0.1\n"
                f"  Port {port}\n"
                f"  IdentityFile {workdir / key}\n"
                "  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {workdir / 'known_hosts'}\n"
                "  GlobalKnownHostsFile /dev/null\n"
                "  StrictHostKeyChecking yes\n"
                "  ConnectTimeout 10\n"
                for alias, key in ((SOURCE_ALIAS, "client_key"), (STRANGER_ALIAS, "stranger_key"))
            )
        )
        bin_dir = workdir / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F "{client_config}" "$@"\n')
        wrapper.chmod(0o755)
        if made_privsep:
            PRIVSEP_DIR.mkdir(mode=0o755)
        subprocess.run([SSHD, "-t", "-f", str(server_config)], check=True)
        log = workdir / "sshd.log"
        with open(log, "wb") as log_handle:
            # -D: stay in the foreground, a child of this test; -e: log to stderr (the file).
            process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(server_config)],
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=log_handle,
            )
        wait_until_listening(process, port, log)
        yield SimpleNamespace(port=port, user=user, bin_dir=bin_dir, log=log)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
        if made_privsep:
            with contextlib.suppress(OSError):
                PRIVSEP_DIR.rmdir()
    # Nothing left behind: no sshd, no keys, no directory this fixture made.
    assert process.returncode is not None
    assert not workdir.exists()
    if made_privsep:
        assert not PRIVSEP_DIR.exists()


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("ssh-transport")
    return SimpleNamespace(source=base / "source", destination=base / "destination")


@pytest.fixture(scope="module")
def minion_config_overrides(roots):
    return {"eos": {"dataset": {"root": str(roots.destination)}}}


@pytest.fixture
def eos_dataset(loaders, sshd, monkeypatch):
    # rsync runs "ssh" from PATH, as on a node; the wrapper is found first.
    monkeypatch.setenv("PATH", f"{sshd.bin_dir}{os.pathsep}{os.environ['PATH']}")
    return loaders.modules.eos_dataset


def write_dataset(directory):
    """Random files in a nested tree, names with a space and non-ASCII, a symbolic link."""
    (directory / "nested" / "deeper").mkdir(parents=True)
    (directory / "part-0.bin").write_bytes(os.urandom(3 * MIB))
    (directory / "nested" / "part 1.bin").write_bytes(os.urandom(MIB + 17))
    (directory / "nested" / "deeper" / "résumé.txt").write_bytes(b"not empty\n")
    (directory / "empty.bin").write_bytes(b"")
    (directory / "latest").symlink_to("part-0.bin")
    return datasets.tree_bytes(directory)


def test_a_pull_over_ssh_arrives_byte_identical_and_commits(eos_dataset, sshd, roots):
    source = roots.source / "orders"
    size = write_dataset(source)
    original = tree_digest(source)

    pulled = eos_dataset.pull(
        "orders",
        str(source),
        source_host=SOURCE_ALIAS,
        transport="ssh",
        ssh_user=sshd.user,
        expected_bytes=size,
    )

    staging = pathlib.Path(datasets.staging_dir(str(roots.destination), "orders"))
    assert pulled == {"staging": str(staging), "bytes": size}
    assert tree_digest(staging) == original
    assert transfer.compare(transfer.manifest(str(source)), transfer.manifest(str(staging))) == []
    # The source was only read.
    assert tree_digest(source) == original
    # The copy came through sshd: its log shows the key login of this user.
    assert f"Accepted publickey for {sshd.user}" in sshd.log.read_text()

    assert eos_dataset.manifest("orders", staged=True) == transfer.manifest(str(source))
    eos_dataset.commit("orders")
    assert tree_digest(roots.destination / "orders") == original
    assert not staging.exists()


def test_a_key_the_source_does_not_accept_fails_at_once_and_copies_nothing(
    eos_dataset, sshd, roots
):
    source = roots.source / "refused"
    size = write_dataset(source)
    started = time.monotonic()
    with pytest.raises(CommandExecutionError, match=f"rsync from {STRANGER_ALIAS}:") as failed:
        eos_dataset.pull(
            "refused",
            str(source),
            source_host=STRANGER_ALIAS,
            transport="ssh",
            ssh_user=sshd.user,
            expected_bytes=size,
        )
    # BatchMode: no prompt for a password that would hang the move.
    assert time.monotonic() - started < 30
    assert "Permission denied" in str(failed.value)
    staging = pathlib.Path(datasets.staging_dir(str(roots.destination), "refused"))
    assert not any(path.is_file() for path in staging.rglob("*"))
    assert not (roots.destination / "refused").exists()
