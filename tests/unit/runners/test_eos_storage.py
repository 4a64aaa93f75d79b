"""
The eos_storage runner as Salt meets it: its arguments checked into Salt's exceptions, its
retcode in ``__context__``, over a real registry and store in an in-memory Salt cache whose
minions never answer. What a rebalance decides is tested on ``datasets.Rebalance``.
"""

import pytest
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.runners import eos_storage
from saltext.eos.utils import datasets
from saltext.eos.utils.cluster import registry
from tests.support.datasets import report
from tests.support.master import Bus
from tests.support.master import salt_world


@pytest.fixture
def opts(tmp_path):
    (tmp_path / "cache").mkdir()
    return {
        "__role": "master",
        "cachedir": str(tmp_path / "cache"),
        "sock_dir": str(tmp_path / "sock"),
        "conf_file": str(tmp_path / "master"),
        "eos": {"datasets": {"a": {}, "b": {}, "pinned": {"pin": "w1"}}},
    }


@pytest.fixture
def configure_loader_modules(opts, context):
    return {eos_storage: {"__opts__": opts, "__context__": context}}


@pytest.fixture(autouse=True)
def fleet(opts, cache, client):
    """n1 (data) holds a and b; n2 (data) is empty and failed; w1 is a web node."""
    reg = registry.open_registry(opts, cache=cache)
    for node_id in ("n1", "n2", "w1"):
        reg.preregister(node_id, registry.check_preregistration())
        reg.accept(node_id)
        reg.set_status(node_id, "active", "test")
    reg.store_assignment({"n1": ["data"], "n2": ["data"], "w1": ["web"]})
    reg.set_status("n2", "failed", "test")
    store = datasets.Store(cache)
    for node_id, sizes in (("n1", {"a": 300, "b": 300}), ("n2", {}), ("w1", {})):
        store.store_report(node_id, report(sizes))
    store.place("a", "n1", 300)
    store.place("b", "n1", 300)
    with salt_world(cache, Bus(), client):
        yield store


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"threshold": 0}, "threshold: 0"),
        ({"dry_run": "no"}, "dry_run: 'no' is not true or false"),
        ({"exclude_nodes": ["n9"]}, "exclude_nodes: unknown node 'n9'"),
    ],
)
def test_bad_arguments_are_salt_invocation_errors(arguments, message, client):
    with pytest.raises(SaltInvocationError, match=message):
        eos_storage.rebalance(**arguments)
    assert client.published == [], "no minion was asked anything"


def test_a_blocked_execution_exits_non_zero_through_the_context(context):
    result = eos_storage.rebalance(dry_run=False)
    assert result["blocked"] == ["node n2 is failed"]
    assert context["retcode"] == result["retcode"] == 1


def test_a_plan_leaves_the_retcode_alone(context):
    eos_storage.rebalance()
    assert "retcode" not in context


def test_a_pin_on_a_node_of_another_role_is_a_configuration_error(opts):
    opts["eos"]["datasets"]["pinned"] = {"pin": "w1"}
    opts["eos"]["datasets"]["b"] = {"pin": "w1"}
    with pytest.raises(CommandExecutionError, match="w1"):
        eos_storage.rebalance(dry_run=False)


def test_the_reaction_refuses_a_targeting_node_id_as_an_invocation_error(client):
    with pytest.raises(SaltInvocationError):
        eos_storage.react("data-*", level="cleanup")
    assert client.published == []


def test_the_report_asks_every_member_by_exact_id(client):
    fleet_report = eos_storage.report()
    # Members are the accepted and active nodes: failed n2 is not asked.
    assert client.published == [(["n1", "w1"], "eos_dataset.sizes")]
    assert set(fleet_report["nodes"]) == {"n1", "n2", "w1"}
    assert fleet_report["unreported"] == ["n1", "w1"]


def test_the_report_lists_the_datasets_of_a_down_node_as_unavailable_and_does_not_ask_it(
    opts, cache, client
):
    reg = registry.open_registry(opts, cache=cache)
    reg.set_status("n1", "unreachable", "missed probes")
    reg.set_status("n1", "down", "unreachable too long")
    fleet_report = eos_storage.report()
    assert client.published == [(["w1"], "eos_dataset.sizes")]
    assert fleet_report["nodes"]["n1"]["available"] is False
    assert fleet_report["nodes"]["w1"]["available"] is True
    assert fleet_report["unavailable"] == {
        "a": {"node": "n1", "status": "down"},
        "b": {"node": "n1", "status": "down"},
    }
    # Reported, never moved: the placements still point at the node holding the only copy.
    assert {name: p["node"] for name, p in datasets.Store(cache).placements().items()} == {
        "a": "n1",
        "b": "n1",
    }
