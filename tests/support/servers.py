"""Throwaway servers the tests share a registry through: each on a free loopback port."""

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

REDIS_SERVER = shutil.which("redis-server")
ETCD_SERVER = shutil.which("etcd")
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, server, name, timeout=15):
    """Until ``server`` (a Popen) listens on ``port``; fails the test when it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"{name} exited with {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{name} did not listen on {port} within {timeout} s")


def stop(server):
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@contextlib.contextmanager
def redis_server():
    """A redis-server without persistence; yields its port. Skips where redis is missing."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (CI installs it with .ci/install-deps)")
    pytest.importorskip("redis", reason="Salt's redis cache needs the redis Python package")
    port = free_port()
    command = [
        REDIS_SERVER,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, server, "redis-server")
        yield port
    finally:
        stop(server)


@contextlib.contextmanager
def etcd_server(home):
    """
    A one-member etcd on loopback ports, with the v2 API Salt's etcd cache speaks; yields
    its client port; stopped, and its data in ``home`` removed, on the way out. Skips where
    etcd or python-etcd is missing.
    """
    if ETCD_SERVER is None:
        pytest.skip("etcd is not installed (CI installs etcd-server with .ci/install-deps)")
    pytest.importorskip("etcd", reason="Salt's etcd cache needs the python-etcd package")
    port, peer_port = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer_port}"
    with open(home / "etcd.log", "wb") as log:
        server = subprocess.Popen(
            [
                ETCD_SERVER,
                "--name=eos-test",
                f"--data-dir={home / 'data'}",
                "--enable-v2=true",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=eos-test={peer_url}",
                "--initial-cluster-state=new",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_etcd(client_url, server, home / "etcd.log")
        yield port
    finally:
        stop(server)
        shutil.rmtree(home, ignore_errors=True)


def _wait_for_etcd(url, server, log, timeout=30):
    """Until etcd reports itself healthy (it has elected itself leader)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"etcd exited with {server.returncode}: {_tail(log)}")
        try:
            with DIRECT.open(f"{url}/health", timeout=1) as answer:
                if json.load(answer).get("health") == "true":
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    pytest.fail(f"etcd did not answer on {url} within {timeout} s: {_tail(log)}")


def _tail(log):
    return log.read_text(errors="replace")[-2000:]
