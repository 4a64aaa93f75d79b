"""
Events forged by another minion drive nothing: a real master with the README's reactions,
a victim minion and an attacker minion.

The attacker sends batched ``_minion_event`` loads over its own authenticated channel (the
test module ``eos_forge``), as any minion can: the master fires the inner events with the
tag and data exactly as written. It claims the emergency level for the victim's "/", then
for ``*`` and a glob. The victim's mount is far below its thresholds. The reaction may ask
the victim to measure (a harmless re-check), and nothing is deleted anywhere.
"""

import os
import pathlib
import time

import pytest
from saltfactories.utils import random_string

from tests.support import readme
from tests.support.cluster import wait_for
from tests.support.filesystems import usage_percent

DAY = 86400
FILES = pathlib.Path(__file__).parent / "files"


def thresholds_above_usage():
    """Limits all above "/"'s usage now: the victim measures level none."""
    usage = usage_percent("/")
    levels = ("warning", "compress", "cleanup", "degraded", "emergency", "critical")
    return {
        level: round(usage + (100 - usage) * (n + 1) / (len(levels) + 1), 3)
        for n, level in enumerate(levels)
    }


@pytest.fixture(scope="module")
def victim_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("victim")
    log, tmp = root / "log", root / "tmp"
    log.mkdir()
    tmp.mkdir()
    old = time.time() - 30 * DAY
    files = {
        "rotated": log / "app.log.1",
        "live": log / "app.log",
        "tmp": tmp / "old.bin",
    }
    for path in files.values():
        path.write_bytes(os.urandom(64 * 1024))
        os.utime(path, (old, old))
    return {"root": root, "log": log, "tmp": tmp, "files": files}


def contents(tree):
    return {str(path): path.read_bytes() for path in tree["files"].values()}


@pytest.fixture(scope="module")
def master_config_overrides():
    # The README's block as it is: every reaction an operator would switch on.
    return readme.master_block()


@pytest.fixture(scope="module")
def victim(master, victim_tree):
    overrides = {
        "eos": {
            # The README's reactions join it to the cluster: its role states must leave this
            # host's packages, services and their configuration alone.
            "manage_software": False,
            "thresholds": thresholds_above_usage(),
            "analyzer": {"history_min_interval": 0},
            "cleanup": {
                "log_dirs": [str(victim_tree["log"])],
                "tmp_dirs": [str(victim_tree["tmp"])],
                "tmp_after_days": 0,
                "rotated_after_days": 0,
                "package_caches": {},
                "docker_prune": False,
                "journal_dirs": [],
                "user_cache_dirs": [],
                "services": [],
            },
        }
    }
    factory = master.salt_minion_daemon(random_string("victim-"), overrides=overrides)
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def attacker(master, victim):
    factory = master.salt_minion_daemon(
        random_string("attacker-"),
        overrides={"module_dirs": [str(FILES)], "eos": {"manage_software": False}},
    )
    with factory.started():
        yield factory


def forge(salt_cli, attacker, events):
    ret = salt_cli.run("eos_forge.batch", events=events, minion_tgt=attacker.id)
    assert ret.returncode == 0, ret
    assert ret.data is True


def beacon_claim(minion_id, level="emergency", mount="/"):
    return {
        "tag": f"salt/beacon/{minion_id}/eos_storage/{level}",
        "data": {
            "id": minion_id,
            "mount": mount,
            "level": level,
            "previous_level": "none",
            "usage_percent": 97.0,
        },
    }


def respond_returns(event_listener, master, since):
    events = event_listener.get_events([(master.id, "salt/job/*/ret/*")], after_time=since)
    return [event for event in events if event.data.get("fun") == "eos_storage.respond"]


def test_a_forged_emergency_for_the_victim_makes_it_measure_and_delete_nothing(
    salt_cli, event_listener, master, victim, attacker, victim_tree
):
    before = contents(victim_tree)
    since = time.time()

    forge(salt_cli, attacker, [beacon_claim(victim.id)])

    answers = wait_for(
        lambda: [
            event.data
            for event in respond_returns(event_listener, master, since)
            if event.data.get("id") == victim.id
        ],
        "the reaction to ask the victim to measure",
        timeout=60,
        interval=0.5,
    )
    (answer,) = answers
    assert answer["return"]["measured_level"] == "none"
    assert answer["return"]["action"] is None
    assert answer["return"]["runs"] == []
    assert contents(victim_tree) == before
    cleanups = event_listener.get_events(
        [(master.id, f"eos/storage/cleanup/{victim.id}")], after_time=since
    )
    assert not cleanups


@pytest.mark.parametrize("claimed", ["*", "victim-*", "victim-?????????"])
def test_a_forged_event_for_a_glob_reaches_no_minion(
    salt_cli, event_listener, master, victim, attacker, victim_tree, claimed
):
    before = contents(victim_tree)
    since = time.time()

    forge(salt_cli, attacker, [beacon_claim(claimed)])

    fired = event_listener.wait_for_events(
        [(master.id, f"salt/beacon/{claimed}/eos_storage/emergency")], after_time=since, timeout=30
    )
    assert fired.found_all_events, "the master did not fire the forged event"
    time.sleep(8)  # the reactor's turn
    assert respond_returns(event_listener, master, since) == []
    assert contents(victim_tree) == before


def test_the_victim_still_answers_a_real_measurement(salt_cli, victim):
    # The reaction path works: asked directly, the victim measures and finds nothing to do.
    ret = salt_cli.run("eos_storage.respond", mount="/", minion_tgt=victim.id)

    assert ret.returncode == 0, ret
    assert ret.data["measured_level"] == "none"
