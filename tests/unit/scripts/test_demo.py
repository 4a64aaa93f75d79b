"""
scripts/demo.py reports a failed join honestly: the node, the failed step and the error from
the master's join record, and main() exits 1. The master's answers are canned here; the real
daemons run in tests/integration/test_demo_unprivileged.py.
"""

import importlib.util
import subprocess

import pytest

from saltext.eos import PACKAGE_ROOT

DEMO = PACKAGE_ROOT.parents[2] / "scripts" / "demo.py"


@pytest.fixture
def demo(monkeypatch):
    spec = importlib.util.spec_from_file_location("eos_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "PROGRESS_EVERY_SECONDS", 0)
    monkeypatch.setattr(module.time, "sleep", lambda seconds: None)
    return module


class Master:
    """The master's JSON answers: the node list, and the join record of each node."""

    def __init__(self, nodes, joins):
        self.nodes = nodes
        self.joins = joins

    def salt_json(self, tool, conf, *args):
        if args[0] == "eos_cluster.nodes":
            return self.nodes
        if args[0] == "eos_join.status":
            return self.joins.get(args[1], {})
        raise AssertionError(args)


def failed_master(minion_id):
    return Master(
        nodes=[{"id": minion_id, "status": "failed", "roles": [], "history": []}],
        joins={
            minion_id: {
                "step": "rollback",
                "failed_step": "checkpoint",
                "error": f"{minion_id}: eos_cluster.checkpoint failed: runlevel not found",
            }
        },
    )


def quiet_daemons(demo, monkeypatch):
    monkeypatch.setattr(demo, "start", lambda daemons, name, tool, conf: None)
    monkeypatch.setattr(demo, "answers", lambda conf, minion_id: True)
    monkeypatch.setattr(
        demo, "run", lambda *args, **kwargs: subprocess.CompletedProcess(args, 0, "", "")
    )


def test_a_failed_join_names_the_node_the_step_and_the_error(demo, monkeypatch):
    quiet_daemons(demo, monkeypatch)
    monkeypatch.setattr(demo, "salt_json", failed_master("eos-demo-alpha").salt_json)
    confs = {"master": "conf/master", "eos-demo-alpha": "conf/alpha"}

    with pytest.raises(demo.DemoFailed) as failed:
        demo.join({}, confs, "eos-demo-alpha")

    assert str(failed.value) == (
        "the join of eos-demo-alpha failed at step checkpoint: "
        "eos-demo-alpha: eos_cluster.checkpoint failed: runlevel not found"
    )


def test_main_exits_one_and_keeps_the_logs_when_a_join_fails(demo, monkeypatch, tmp_path, capsys):
    quiet_daemons(demo, monkeypatch)
    monkeypatch.setattr(demo, "salt_json", failed_master("eos-demo-alpha").salt_json)
    monkeypatch.setattr(demo, "_os_name", lambda: "Debian")
    monkeypatch.setattr(demo.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "demo"))
    (tmp_path / "demo").mkdir()

    with pytest.raises(SystemExit) as exited:
        demo.main()

    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "Demo FAILED: the join of eos-demo-alpha failed at step checkpoint" in err
    assert "logs are kept" in err
    assert (tmp_path / "demo").is_dir()


def test_a_daemon_that_exits_early_fails_the_wait(demo):
    exited = subprocess.Popen(["true"])
    exited.wait()

    with pytest.raises(demo.DemoFailed, match="salt-master exited early with code 0"):
        demo.wait_for(lambda: None, "nothing", {"salt-master": exited}, timeout=5)


def test_a_wait_says_what_it_waits_for_and_where_the_join_stands(demo, capsys):
    answers = iter([None, None, {"id": "n1"}])

    demo.wait_for(
        lambda: next(answers), "the join of n1", {}, 60, progress=lambda: "join step: health"
    )

    out = capsys.readouterr().out
    assert "waiting for the join of n1 ..." in out
    assert "still waiting for the join of n1" in out
    assert "join step: health" in out
