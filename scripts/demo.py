"""
`make demo`: a real salt-master and salt-minion, as the current user, in a temporary
directory, answering `salt '*' eos_storage.analyze`.

Nothing outside the temporary directory is touched and no root is needed. The daemons are
stopped on exit, on Ctrl-C and on SIGTERM.
"""

import contextlib
import getpass
import json
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BIN = pathlib.Path(sys.executable).parent
MINION_ID = "eos-demo-minion"
START_TIMEOUT_SECONDS = 90


def free_port():
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_configs(root):
    publish_port, ret_port = free_port(), free_port()
    common = {"root_dir": str(root), "user": getpass.getuser(), "log_level_logfile": "info"}
    master = {
        **common,
        "interface": "127.0.0.1",
        "publish_port": publish_port,
        "ret_port": ret_port,
        "auto_accept": True,
        "log_file": str(root / "master.log"),
    }
    minion = {
        **common,
        "id": MINION_ID,
        "master": "127.0.0.1",
        "master_port": ret_port,
        "publish_port": publish_port,
        "log_file": str(root / "minion.log"),
        # The analyzer keeps a sample per call; the demo calls it a few seconds apart.
        "eos": {"analyzer": {"history_min_interval": 0}},
    }
    conf = root / "conf"
    conf.mkdir()
    # JSON is valid YAML, and keeps this script free of a yaml dependency.
    (conf / "master").write_text(json.dumps(master, indent=2))
    (conf / "minion").write_text(json.dumps(minion, indent=2))
    return conf


def salt(conf, *args, check=True):
    command = [str(BIN / "salt"), "-c", str(conf), "--timeout=60", *args]
    return subprocess.run(command, check=check, text=True, capture_output=True)


def wait_for_minion(conf, daemons):
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for name, process in daemons.items():
            if process.poll() is not None:
                raise SystemExit(f"salt-{name} exited early with code {process.returncode}")
        ret = salt(conf, MINION_ID, "test.ping", "--out=json", "--static", check=False)
        if '"' + MINION_ID + '": true' in ret.stdout:
            return
        time.sleep(1)
    raise SystemExit(f"the minion did not answer within {START_TIMEOUT_SECONDS}s")


def stop(daemons):
    for process in daemons.values():
        if process.poll() is None:
            process.terminate()
    for process in daemons.values():
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def show(conf, title, *args):
    print(f"\n$ salt '*' {' '.join(args)}")
    ret = salt(conf, "*", *args, check=False)
    print(ret.stdout.rstrip() or ret.stderr.rstrip())
    if ret.returncode != 0:
        raise SystemExit(f"{title} failed with exit code {ret.returncode}")


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    root = pathlib.Path(tempfile.mkdtemp(prefix="eos-demo-"))
    daemons = {}
    try:
        conf = write_configs(root)
        print(f"Starting salt-master and salt-minion as {getpass.getuser()} under {root}")
        for name in ("master", "minion"):
            daemons[name] = subprocess.Popen(
                [str(BIN / f"salt-{name}"), "-c", str(conf), "-l", "quiet"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        wait_for_minion(conf, daemons)
        print("Minion connected; its key was accepted by the demo master.")
        color = "--force-color" if sys.stdout.isatty() else "--no-color"
        show(conf, "analyze", "eos_storage.analyze", "--out=eos_storage", color)
        show(conf, "thresholds", "eos_storage.thresholds", "/", "--out=yaml")
    except KeyboardInterrupt:
        print("\nInterrupted.")
    finally:
        stop(daemons)
        shutil.rmtree(root, ignore_errors=True)
        print("Daemons stopped, temporary directory removed.")


if __name__ == "__main__":
    main()
