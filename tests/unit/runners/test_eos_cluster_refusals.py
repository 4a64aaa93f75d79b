"""
The eos_cluster runner's refusals, over a real registry in a localfs Salt cache: ids that
break the node id rule (from the reactor's salt/auth and register reactions) and
registrations from a clock too far ahead. Salt keys and signatures are stand-ins.
"""

import time
from unittest.mock import patch

import pytest
import salt.cache
import salt.config
import salt.utils.templates
import salt.utils.yaml

from saltext.eos import PACKAGE_ROOT
from saltext.eos.runners import eos_cluster
from saltext.eos.utils import master
from saltext.eos.utils.cluster import registry

NODE_JOIN = PACKAGE_ROOT / "reactor" / "node_join.sls"


@pytest.fixture
def opts(tmp_path):
    return {"cachedir": str(tmp_path), "cache": "localfs", "__role": "master", "sock_dir": ""}


@pytest.fixture
def configure_loader_modules(opts, context):
    return {eos_cluster: {"__opts__": opts, "__context__": context}}


@pytest.fixture
def salt_keys():
    """The key lookups the runner made; every id has a pending key."""
    asked = []

    def key_state(node_id):
        asked.append(node_id)
        return "pending"

    with (
        patch.object(eos_cluster, "_key_state", key_state),
        patch.object(eos_cluster, "_accept_key", lambda node_id: "accepted (was pending)"),
        patch.object(eos_cluster, "_signed_by", lambda node_id, message, signature: True),
        patch.object(master.Master, "fire", lambda self, tag, data: None),
    ):
        yield asked


def stored_ids(opts):
    return registry.open_registry(opts, cache=salt.cache.factory(opts)).node_ids()


def reaction(tag, data, tmp_path):
    """What reactor/node_join.sls renders for an event: {state id: {function: [args]}}."""
    master = {**salt.config.DEFAULT_MASTER_OPTS, "cachedir": str(tmp_path / "render")}
    text = salt.utils.templates.render_jinja_tmpl(
        NODE_JOIN.read_text(),
        {"tag": tag, "data": data, "opts": master, "saltenv": "base", "sls": "", "grains": {}},
    )
    return salt.utils.yaml.safe_load(text)


def runner_kwargs(rendered):
    (state,) = rendered.values()
    (args,) = state["runner.eos_cluster.register"]
    return {key: value for arg in args["args"] for key, value in arg.items()}


def signed_payload(sent_at_ms):
    return {
        "resources": {"cpu_cores": 4, "memory_bytes": 8 * 1024**3},
        "health": {"passed": True, "checks": []},
        "preferred_role": None,
        "sent_at_ms": sent_at_ms,
        "signature": "c2ln",
    }


@pytest.mark.parametrize(
    ("node_id", "named"),
    [("web*", "'*' at position 4"), ("web[12]", "'[' at position 4"), ("web 1", "' ' (a space)")],
)
def test_a_pending_key_with_a_glob_id_is_refused_before_salt_keys_are_read(
    opts, context, salt_keys, tmp_path, node_id, named
):
    kwargs = runner_kwargs(reaction("salt/auth", {"act": "pend", "id": node_id}, tmp_path))
    assert kwargs == {"node_id": node_id, "pending_key": True}
    answer = eos_cluster.register(**kwargs)
    assert answer["registered"] is False
    assert answer["comment"].startswith(f"node id {node_id!r}: {named}")
    assert context["retcode"] == 1
    assert salt_keys == []  # no key was looked up, let alone accepted
    assert stored_ids(opts) == []


def test_a_registration_under_an_id_breaking_the_rule_is_refused(
    opts, context, salt_keys, tmp_path
):
    data = {"id": "-web1", "data": signed_payload(int(time.time() * 1000))}
    answer = eos_cluster.register(**runner_kwargs(reaction("eos/cluster/register", data, tmp_path)))
    assert (answer["id"], answer["registered"]) == ("-web1", False)
    assert "starts with '-': a command line reads it as an option" in answer["comment"]
    assert context["retcode"] == 1
    assert stored_ids(opts) == []


def test_a_registration_from_a_clock_far_ahead_is_refused_and_writes_nothing(
    opts, context, salt_keys
):
    ahead = int((time.time() + 3600) * 1000)
    answer = eos_cluster.register("web-1", payload=signed_payload(ahead))
    assert answer["registered"] is False
    assert "ahead of the master's clock" in answer["comment"]
    assert "eos:registration:max_clock_skew_seconds (300 s)" in answer["comment"]
    assert context["retcode"] == 1
    assert stored_ids(opts) == []


def test_a_registration_within_the_skew_is_recorded(opts, salt_keys):
    answer = eos_cluster.register("web-1", payload=signed_payload(int(time.time() * 1000)))
    assert answer["registered"] is True
    assert answer["status"] == "accepted"  # the first node of a new cluster
    assert stored_ids(opts) == ["web-1"]


def test_an_accepted_event_calls_the_join_runner_with_its_token(tmp_path):
    # The runner itself, not state.orchestrate: orchestrations started together in the
    # reactor's threads can fail while loading grains, and leave their node never joined.
    rendered = reaction(
        "eos/cluster/node/web-3/accepted",
        {"id": "web-3", "status": "accepted", "join_token": "t0ken"},
        tmp_path,
    )
    (state,) = rendered.values()
    (args,) = state["runner.eos_join.join"]
    assert {key: value for arg in args["args"] for key, value in arg.items()} == {
        "node": "web-3",
        "token": "t0ken",
    }
    forged = reaction("eos/cluster/node/web-3/accepted", {"id": "web-3"}, tmp_path)
    (state,) = forged.values()
    (args,) = state["runner.eos_join.join"]
    assert {"token": ""} in args["args"]  # no token: the runner refuses it
