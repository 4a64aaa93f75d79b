"""
`make demo`: a real salt-master and three salt-minions, as the current user, in a temporary
directory. The master runs the README's master block as it is (no top file); the minions join
the EOS cluster one after another (registration, acceptance by policy, the node-addition
orchestration, role states) while the demo prints what it waits for, the registry and the
role assignment; then `salt '*' eos_storage.analyze` for the cluster.

It ends with one line: every node active with its roles and the time taken, exit code 0; or
the failed node, step and error from its node record, exit code 1, and the daemons' logs are
kept for reading. Nothing outside the temporary directory is touched and no root is needed.
The daemons are stopped on exit, on Ctrl-C and on SIGTERM.
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

from saltext.eos.utils.cluster.bootstrap import MASTER_BLOCK

BIN = pathlib.Path(sys.executable).parent
MINION_IDS = ("eos-demo-alpha", "eos-demo-bravo", "eos-demo-charlie")
START_TIMEOUT_SECONDS = 90
JOIN_TIMEOUT_SECONDS = 300
PROGRESS_EVERY_SECONDS = 10
# The demo's minions share this machine: any machine is big enough for every role here.
SMALL_CATALOGUE = {
    role: {"cpu": 1, "memory_gb": 1, "disk_gb": 1}
    for role in ("monolith", "edge", "core", "data", "message", "observe", "compute", "app")
}


def free_port():
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_json(path, data):
    # JSON is valid YAML, and keeps this script free of a yaml dependency.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def write_configs(root):
    """The master's config dir, and one per minion: {"master": dir, minion id: dir}."""
    publish_port, ret_port = free_port(), free_port()
    user = getpass.getuser()
    confs = {"master": root / "conf" / "master"}
    (root / "states").mkdir()
    write_json(
        confs["master"] / "master",
        {
            # The README's master block, as a user pastes it; the rest keeps the demo local.
            **MASTER_BLOCK,
            "root_dir": str(root / "master"),
            "user": user,
            "interface": "127.0.0.1",
            "publish_port": publish_port,
            "ret_port": ret_port,
            "auto_accept": True,
            "log_file": str(root / "master.log"),
            "log_level_logfile": "info",
            # An empty state tree of its own: nothing is read from /srv/salt.
            "file_roots": {"base": [str(root / "states")]},
            "eos": {"accept": "auto", "roles": {"catalog": SMALL_CATALOGUE}},
        },
    )
    for minion_id in MINION_IDS:
        confs[minion_id] = root / "conf" / minion_id
        write_json(
            confs[minion_id] / "minion",
            {
                "root_dir": str(root / minion_id),
                "user": user,
                "id": minion_id,
                "master": "127.0.0.1",
                "master_port": ret_port,
                "publish_port": publish_port,
                "log_file": str(root / f"{minion_id}.log"),
                "log_level_logfile": "info",
                "eos": {
                    # Kept apart per minion; packages and services are left to the machine.
                    "config_dir": str(root / minion_id / "etc" / "eos"),
                    "manage_software": False,
                    # The demo asks for an analysis a few seconds apart.
                    "analyzer": {"history_min_interval": 0},
                    # A laptop or CI box is not a supported server OS; the demo joins anyway.
                    "health": {"supported_os": {_os_name(): "0"}, "min_root_free_gb": 0},
                },
            },
        )
    return confs


def _os_name():
    """This machine's 'os' grain, as the health check will see it."""
    import salt.config  # pylint: disable=import-outside-toplevel
    import salt.loader  # pylint: disable=import-outside-toplevel

    return salt.loader.grains(salt.config.minion_config(None)).get("os", "unknown")


def run(tool, conf, *args, check=True):
    command = [str(BIN / tool), "-c", str(conf), "--timeout=120", *args]
    return subprocess.run(command, check=check, text=True, capture_output=True)


def start(daemons, name, tool, conf):
    daemons[name] = subprocess.Popen(
        [str(BIN / tool), "-c", str(conf), "-l", "quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class DemoFailed(Exception):
    """The demo cannot go on; the message says what failed and where to look."""


def wait_for(probe, what, daemons, timeout, progress=None):
    """Poll ``probe`` until it returns something; say what is awaited every few seconds."""
    started = time.monotonic()
    said_at = started
    print(f"    waiting for {what} ...", flush=True)
    while time.monotonic() - started < timeout:
        for name, process in daemons.items():
            if process.poll() is not None:
                raise DemoFailed(f"{name} exited early with code {process.returncode}")
        value = probe()
        if value:
            return value
        if time.monotonic() - said_at >= PROGRESS_EVERY_SECONDS:
            said_at = time.monotonic()
            detail = progress() if progress else None
            print(f"    still waiting for {what} ({int(said_at - started)}s"
                  f"{', ' + detail if detail else ''})", flush=True)  # fmt: skip
        time.sleep(1)
    raise DemoFailed(f"timed out after {timeout}s waiting for {what}")


def answers(master_conf, minion_id):
    ret = run("salt", master_conf, minion_id, "test.ping", "--out=json", "--static", check=False)
    return f'"{minion_id}": true' in ret.stdout


def salt_json(tool, conf, *args):
    """The JSON a salt command printed, or None when it printed none."""
    ret = run(tool, conf, *args, "--out=json", check=False)
    try:
        return json.loads(ret.stdout)
    except ValueError:
        return None


def node_status(master_conf, minion_id):
    """The node record once the join has ended (active or failed), else None."""
    for record in salt_json("salt-run", master_conf, "eos_cluster.nodes") or []:
        if record["id"] == minion_id and record["status"] in ("active", "failed"):
            return record
    return None


def last_reason(record):
    history = record.get("history") or [{}]
    return history[-1].get("reason") or "no error recorded"


def join_step(master_conf, minion_id):
    """Where the join of ``minion_id`` stands, as the master records it."""
    joined = salt_json("salt-run", master_conf, "eos_join.status", minion_id)
    if isinstance(joined, dict) and joined.get("step"):
        return f"join step: {joined['step']} (wave {joined.get('wave') or '-'})"
    if isinstance(joined, dict) and joined.get("status") == "queued":
        return "queued for the next wave of joins"
    return "no join started yet"


def stop(daemons):
    for process in daemons.values():
        if process.poll() is None:
            process.terminate()
    for process in daemons.values():
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def show(command, *args):
    tool, conf = command
    print(f"\n$ {tool} {' '.join(args)}")
    ret = run(tool, conf, *args, check=False)
    print(ret.stdout.rstrip() or ret.stderr.rstrip())
    if ret.returncode != 0:
        raise DemoFailed(f"{tool} {args[0]} failed with exit code {ret.returncode}")


def print_registry(master_conf):
    ret = run("salt-run", master_conf, "eos_cluster.nodes", "--out=json")
    print("\n$ salt-run eos_cluster.nodes   (id, status, roles)")
    for record in json.loads(ret.stdout):
        print(f"    {record['id']:<20} {record['status']:<8} {', '.join(record['roles']) or '-'}")


def join(daemons, confs, minion_id):
    master_conf = confs["master"]
    print(f"\n=== {minion_id} joins ===")
    start(daemons, minion_id, "salt-minion", confs[minion_id])
    wait_for(lambda: answers(master_conf, minion_id), f"{minion_id} to connect", daemons,
             START_TIMEOUT_SECONDS)  # fmt: skip
    # What a new machine does on first start: register; the master accepts it by policy and
    # the reactor runs orchestrate/node_addition.sls.
    run("salt", master_conf, minion_id, "eos_cluster.register")
    record = wait_for(lambda: node_status(master_conf, minion_id), f"the join of {minion_id}",
                      daemons, JOIN_TIMEOUT_SECONDS,
                      progress=lambda: join_step(master_conf, minion_id))  # fmt: skip
    if record["status"] != "active":
        joined = salt_json("salt-run", master_conf, "eos_join.status", minion_id) or {}
        raise DemoFailed(
            f"the join of {minion_id} failed at step {joined.get('failed_step') or '?'}: "
            f"{joined.get('error') or last_reason(record)}"
        )
    print(f"{minion_id} is active with roles {', '.join(record['roles']) or '-'}")
    print_registry(master_conf)
    show(("salt-run", master_conf), "eos_roles.show", "--out=yaml")


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    root = pathlib.Path(tempfile.mkdtemp(prefix="eos-demo-"))
    daemons = {}
    started = time.monotonic()
    outcome = 1
    try:
        confs = write_configs(root)
        print(f"Starting a salt-master and three salt-minions as {getpass.getuser()} under {root}")
        start(daemons, "salt-master", "salt-master", confs["master"])
        for minion_id in MINION_IDS:
            join(daemons, confs, minion_id)
        color = "--force-color" if sys.stdout.isatty() else "--no-color"
        show(("salt-run", confs["master"]), "eos_cluster.info", "--out=yaml")
        show(("salt", confs["master"]), "*", "eos_storage.analyze", "--out=eos_storage", color)
        records = salt_json("salt-run", confs["master"], "eos_cluster.nodes") or []
        active = [r for r in records if r["status"] == "active"]
        if len(active) != len(MINION_IDS):
            raise DemoFailed(f"{len(active)} of {len(MINION_IDS)} nodes are active at the end")
        roles = "; ".join(f"{r['id']}: {', '.join(r['roles']) or '-'}" for r in active)
        print(f"\nDemo passed: {len(active)} nodes active ({roles}) "
              f"in {time.monotonic() - started:.0f}s.")  # fmt: skip
        outcome = 0
    except DemoFailed as err:
        print(f"\nDemo FAILED: {err}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nInterrupted.")
        outcome = 130
    finally:
        stop(daemons)
        if outcome in (0, 130):
            shutil.rmtree(root, ignore_errors=True)
            print("Daemons stopped, temporary directory removed.")
        else:
            print(f"Daemons stopped; their logs are kept: {root}/*.log", file=sys.stderr)
    sys.exit(outcome)


if __name__ == "__main__":
    main()
