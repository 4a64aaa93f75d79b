"""
eos_storage.cleanup, diagnose and restore_services with mocked Salt dunders.

Every directory setting points below tmp_path and the tools are switched off, so that the
real mount "/" can be named without anything outside the test tree being touched.
"""

import json
import os
import time
from unittest.mock import MagicMock

import pytest
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.modules import eos_storage as eos_storage_module
from saltext.eos.utils.storage import cleanup as cleanup_engine
from saltext.eos.utils.storage import walk
from tests.support.filesystems import usage_percent

MINION_ID = "node-7"
DAY = 86400
# Below any real usage of "/", so that nothing stops early.
FORCE = 0.001


@pytest.fixture
def tree(tmp_path):
    roots = {name: tmp_path / name for name in ("log", "tmp", "cache", "cachedir")}
    for directory in roots.values():
        directory.mkdir()
    return roots


@pytest.fixture
def running():
    return {"jenkins": True, "gitlab-runner": False, "elasticsearch": True}


@pytest.fixture
def configure_loader_modules(tree, running):
    service_status = MagicMock(side_effect=lambda name: running.get(name, False))
    return {
        eos_storage_module: {
            "__opts__": {
                "cachedir": str(tree["cachedir"]),
                "id": MINION_ID,
                "eos": {
                    "cleanup": {
                        "log_dirs": [str(tree["log"])],
                        "tmp_dirs": [str(tree["tmp"])],
                        "user_cache_dirs": [str(tree["cache"])],
                        "journal_dirs": [],
                        "package_caches": {},
                        "docker_prune": False,
                    }
                },
            },
            "__salt__": {
                "event.send": MagicMock(return_value=True),
                "service.status": service_status,
                "service.stop": MagicMock(return_value=True),
                "service.start": MagicMock(return_value=True),
            },
            "__pillar__": {},
            "__grains__": {"id": MINION_ID},
            "__context__": {},
        }
    }


def old_file(path, days=30, size=8192):
    path.write_bytes(os.urandom(size))
    # atime and mtime only: ctime stays now, so tmp files are not old enough to go.
    when = time.time() - days * DAY
    os.utime(path, (when, when))
    return path


def salt(name):
    return eos_storage_module.__salt__[name]


def test_degrade_is_a_dry_run_unless_asked(tree):
    result = eos_storage_module.cleanup(level="degrade", target_percent=FORCE)
    assert result["dry_run"] is True
    services = next(s for s in result["steps"] if s["name"] == "stop_services")
    assert services["services"] == ["jenkins", "elasticsearch"]
    salt("service.stop").assert_not_called()
    salt("event.send").assert_not_called()


def test_degrade_stops_only_running_configured_services_and_restore_starts_them(tree):
    result = eos_storage_module.cleanup(level="degrade", dry_run=False, target_percent=FORCE)
    stopped = [call.args[0] for call in salt("service.stop").call_args_list]
    assert stopped == ["jenkins", "elasticsearch"]
    services = next(s for s in result["steps"] if s["name"] == "stop_services")
    assert services["services"] == ["jenkins", "elasticsearch"]
    state_file = tree["cachedir"] / "eos" / "degraded_services.json"
    assert json.loads(state_file.read_text()) == {"services": ["jenkins", "elasticsearch"]}

    restored = eos_storage_module.restore_services()
    assert restored == {"started": ["jenkins", "elasticsearch"], "failed": {}}
    started = [call.args[0] for call in salt("service.start").call_args_list]
    assert started == ["jenkins", "elasticsearch"]
    assert not state_file.exists()
    assert eos_storage_module.restore_services() == {"started": [], "failed": {}}


def test_services_false_runs_the_file_steps_but_stops_no_service(tree):
    old_file(tree["tmp"] / "old.bin")
    result = eos_storage_module.cleanup(
        level="degrade", dry_run=False, target_percent=FORCE, services=False
    )
    salt("service.stop").assert_not_called()
    services = next(s for s in result["steps"] if s["name"] == "stop_services")
    assert services["skipped"]
    assert "services=False" in services["skip_reason"]


def test_a_missed_target_sets_a_failing_retcode(tree):
    eos_storage_module.cleanup(level="cleanup", target_percent=FORCE)
    assert eos_storage_module.__context__["retcode"] == 1


def test_a_reached_target_leaves_the_retcode_alone(tree):
    eos_storage_module.cleanup(level="cleanup", target_percent=99.9)
    assert "retcode" not in eos_storage_module.__context__


def test_services_must_be_a_boolean(tree):
    with pytest.raises(SaltInvocationError, match="services: 'no' is not True or False"):
        eos_storage_module.cleanup(level="degrade", services="no")


def test_a_real_run_fires_the_cleanup_event_with_its_result(tree):
    log = old_file(tree["log"] / "app.log.1", days=3)
    result = eos_storage_module.cleanup(level="emergency", dry_run=False, target_percent=FORCE)
    assert not log.exists()
    salt("event.send").assert_called_once_with(f"eos/storage/cleanup/{MINION_ID}", result)
    assert result["freed_bytes"] == 8192


def test_a_dry_run_fires_no_event_and_changes_nothing(tree):
    log = old_file(tree["log"] / "app.log.1", days=3)
    result = eos_storage_module.cleanup(level="emergency", target_percent=FORCE)
    assert result["dry_run"] is True
    assert result["freed_bytes"] == 8192
    assert log.exists()
    salt("event.send").assert_not_called()


def test_result_has_the_documented_shape(tree):
    result = eos_storage_module.cleanup(level="compress")
    assert set(result) == {
        "mount",
        "level",
        "dry_run",
        "before_percent",
        "after_percent",
        "freed_bytes",
        "target_percent",
        "target_reached",
        "steps",
    }
    assert result["mount"] == "/"
    # The default target: the compress threshold of the single profile (70) minus 5.
    assert result["target_percent"] == 65
    assert {"name", "files", "freed_bytes", "skipped", "skip_reason", "errors"} <= set(
        result["steps"][0]
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"level": "panic"}, "level: 'panic' is not one of"),
        ({"level": "cleanup", "mount": "/no/such/mount"}, "'/no/such/mount' is not a mount"),
        ({"level": "cleanup", "target_percent": 150}, "target_percent: 150 is not"),
        ({"level": "cleanup", "dry_run": "maybe"}, "dry_run: 'maybe' is not True or False"),
    ],
)
def test_bad_arguments_raise_and_touch_nothing(tree, arguments, message):
    log = old_file(tree["log"] / "app.log.1", days=30)
    with pytest.raises(SaltInvocationError, match=message):
        eos_storage_module.cleanup(**arguments)
    assert log.exists()
    salt("event.send").assert_not_called()


def test_bad_configuration_is_a_command_error_naming_the_key(tree):
    log = old_file(tree["log"] / "app.log", days=30)
    eos_storage_module.__opts__["eos"]["cleanup"]["compress_after_days"] = -3
    with pytest.raises(CommandExecutionError, match="eos:cleanup:compress_after_days: -3"):
        eos_storage_module.cleanup(level="compress", target_percent=FORCE)
    assert log.exists()


def test_a_second_run_is_refused_with_a_clear_message(tree):
    busy = pytest.raises(CommandExecutionError, match="another cleanup is already running")
    with cleanup_engine.exclusive(str(tree["cachedir"] / "eos")), busy:
        eos_storage_module.cleanup(level="cleanup", target_percent=FORCE)


def test_critical_deletes_nothing_and_asks_for_a_human(tree, monkeypatch):
    # Walking all of "/" for the largest entries is slow and beside the point here.
    monkeypatch.setattr(walk, "largest", lambda *args, **kwargs: {"files": [], "complete": True})
    log = old_file(tree["log"] / "app.log.1", days=3)
    result = eos_storage_module.cleanup(level="critical")
    assert log.exists()
    assert result["level"] == "critical"
    assert result["reclaimable"]["logs"] == 8192
    salt("event.send").assert_called_once()
    tag, data = salt("event.send").call_args.args
    assert tag == "eos/storage/critical"
    assert set(data) == {"mount", "usage", "diagnosis"}
    assert data["mount"] == "/"
    assert data["diagnosis"]["reclaimable"] == result["reclaimable"]


def test_diagnose_reports_largest_and_reclaimable_and_changes_nothing(tree):
    log = old_file(tree["log"] / "app.log.1", days=3)
    cached = old_file(tree["cache"] / "blob", days=0, size=4096)
    result = eos_storage_module.diagnose("/", n=3, time_budget=0.5)
    assert log.exists()
    assert cached.exists()
    assert result["reclaimable"] == {
        "logs": 8192,
        "caches": 4096,
        "tmp": 0,
        "containers": 0,
        "journal": 0,
    }
    assert result["reclaimable_bytes"] == 8192 + 4096
    assert {"directories", "files", "complete"} <= set(result["largest"])
    salt("service.status").assert_not_called()


def test_diagnose_rejects_a_bad_count(tree):
    with pytest.raises(SaltInvocationError, match="n"):
        eos_storage_module.diagnose("/", n=0)


# --- respond: the answer to a beacon event, on the node's own measurement -------------------


def thresholds_measuring(level):
    """Strictly increasing limits that put "/" (as used now) exactly at ``level``."""
    usage = usage_percent("/")
    levels = ("warning", "compress", "cleanup", "degraded", "emergency", "critical")
    reached = levels.index(level) + 1
    below = [usage * (n + 1) / (reached + 1) for n in range(reached)]
    above = [usage + (100 - usage) * (n + 1) / (len(levels) - reached + 1)
             for n in range(len(levels) - reached)]  # fmt: skip
    return dict(zip(levels, below + above, strict=True))


def events():
    return [call.args for call in eos_storage_module.__salt__["event.send"].call_args_list]


def test_a_mount_that_measures_below_compress_is_left_alone(tree):
    eos_storage_module.__pillar__["eos"] = {"thresholds": thresholds_measuring("warning")}
    rotated = old_file(tree["log"] / "app.log.3")

    answer = eos_storage_module.respond("/")

    assert answer["measured_level"] == "warning"
    assert answer["action"] is None
    assert answer["runs"] == []
    assert rotated.exists()
    assert events() == []


def test_the_measured_level_above_the_cap_is_only_planned(tree):
    eos_storage_module.__pillar__["eos"] = {
        "thresholds": thresholds_measuring("emergency"),
        "profile": {"cleanup": {"automatic_up_to": "cleanup"}},
    }
    # Emergency deletes rotated logs older than a day; cleanup level keeps them.
    rotated = old_file(tree["log"] / "app.log.3")

    answer = eos_storage_module.respond("/")

    assert (answer["measured_level"], answer["action"]) == ("emergency", "cleanup")
    assert [run["level"] for run in answer["runs"]] == ["cleanup"]
    assert rotated.exists()
    assert answer["held_back"]["held_back"] == "emergency"
    assert answer["held_back"]["would_free_bytes"] >= 4096
    assert answer["held_back"]["command"] == (
        f"salt {MINION_ID} eos_storage.cleanup level=emergency mount=/ dry_run=False"
    )
    tags = [tag for tag, _ in events()]
    assert f"eos/storage/held_back/{MINION_ID}" in tags


def test_within_the_cap_files_go_first_at_the_measured_level(tree):
    eos_storage_module.__pillar__["eos"] = {
        "thresholds": thresholds_measuring("emergency"),
        "profile": {"cleanup": {"automatic_up_to": "emergency"}},
    }
    rotated = old_file(tree["log"] / "app.log.3")

    answer = eos_storage_module.respond("/")

    assert answer["held_back"] is None
    levels = [(run["level"], run["dry_run"]) for run in answer["runs"]]
    # The target ("/" far below its real usage) is missed, so degrade follows the files.
    assert levels == [("emergency", False), ("degrade", False)]
    assert not rotated.exists()


def test_an_unknown_mount_is_an_error_and_nothing_runs(tree):
    with pytest.raises(Exception, match="not a mount point"):
        eos_storage_module.respond(str(tree["log"]))
    assert events() == []


def test_a_bad_cap_is_a_command_error(tree):
    eos_storage_module.__pillar__["eos"] = {
        "profile": {"cleanup": {"automatic_up_to": "everything"}}
    }
    with pytest.raises(CommandExecutionError, match="automatic_up_to"):
        eos_storage_module.respond("/")
