"""
``Master.call_within``: the probe's call, over a stand-in for Salt's LocalClient whose return
events the test scripts (a minion that answers late, one that was not asked, a non-return).
"""

import time

import salt.client

from saltext.eos.utils import master
from tests.support.master import SilentClient


class ScriptedClient(SilentClient):
    """``run_job`` publishes; ``get_returns_no_block`` plays ``events`` (None: no event yet)."""

    def __init__(self, events, publication=None):
        super().__init__()
        self.events = events
        self.publication = {"jid": "20250101000000000001"} if publication is None else publication
        self.jobs = []

    def run_job(self, tgt, fun, arg=(), tgt_type="glob", kwarg=None, listen=False, **kwargs):
        self.jobs.append((tgt, fun, tgt_type, listen))
        return self.publication

    def get_returns_no_block(self, tag, match_type=None):
        assert tag == f"salt/job/{self.publication['jid']}/ret/"
        for event in self.events:
            if event == "wait":
                time.sleep(0.05)
                yield None
            else:
                yield event
        while True:
            yield None


def ret(minion, value=True, retcode=0):
    return {
        "tag": f"salt/job/x/ret/{minion}",
        "data": {"id": minion, "return": value, "retcode": retcode},
    }


def here(monkeypatch, client, tmp_path):
    monkeypatch.setattr(salt.client, "get_local_client", client)
    return master.Master({"conf_file": str(tmp_path / "master"), "timeout": 5})


def test_it_returns_as_soon_as_every_asked_minion_answered(monkeypatch, tmp_path):
    client = ScriptedClient([ret("n1"), None, ret("n2", retcode=1)])
    started = time.monotonic()
    answers = here(monkeypatch, client, tmp_path).call_within(["n2", "n1"], "test.ping", timeout=30)
    assert time.monotonic() - started < 5
    assert answers == {"n1": master.Answer(True), "n2": master.Answer(True, 1)}
    # Each minion by its exact id, the bus listened to before the publication.
    assert client.jobs == [(["n1", "n2"], "test.ping", "list", True)]


def test_a_silent_minion_costs_the_timeout_and_nothing_more(monkeypatch, tmp_path):
    client = ScriptedClient([ret("n1")])
    started = time.monotonic()
    answers = here(monkeypatch, client, tmp_path).call_within(
        ["n1", "n2"], "test.ping", timeout=0.3
    )
    took = time.monotonic() - started
    assert answers == {"n1": master.Answer(True)}
    assert 0.3 <= took < 2


def test_returns_of_minions_not_asked_and_events_without_a_return_are_ignored(
    monkeypatch, tmp_path
):
    # Another minion's return on this job's tag cannot stand in for the asked one's.
    events = [ret("intruder"), {"tag": "salt/job/x/ret/n1", "data": {"id": "n1"}}, "wait"]
    answers = here(monkeypatch, ScriptedClient(events), tmp_path).call_within(
        ["n1"], "test.ping", timeout=0.3
    )
    assert answers == {}


def test_a_publication_that_failed_answers_nothing(monkeypatch, tmp_path):
    client = ScriptedClient([ret("n1")], publication={})
    assert here(monkeypatch, client, tmp_path).call_within(["n1"], "test.ping", timeout=1) == {}
