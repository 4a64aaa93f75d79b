"""The eos ext_pillar over a real registry in a localfs Salt cache."""

import logging

import pytest
import salt.cache

from saltext.eos.pillar import eos as eos_pillar
from saltext.eos.utils.cluster import registry


@pytest.fixture
def opts(tmp_path):
    return {"cachedir": str(tmp_path), "cache": "localfs", "__role": "master"}


@pytest.fixture
def configure_loader_modules(opts):
    return {eos_pillar: {"__opts__": opts}}


def test_a_member_gets_its_status_and_roles(opts):
    reg = registry.open_registry(opts, cache=salt.cache.factory(opts))
    reg.ensure("web-1", "test")
    reg.accept("web-1")
    reg.store_assignment({"web-1": ["monolith"]})
    pillar = eos_pillar.ext_pillar("web-1", {})["eos"]
    assert (pillar["node_status"], pillar["roles"]) == ("accepted", ["monolith"])


def test_a_minion_whose_id_breaks_the_rule_gets_no_place_and_a_warning(opts, caplog):
    with caplog.at_level(logging.WARNING, logger=eos_pillar.__name__):
        pillar = eos_pillar.ext_pillar("web*", {})["eos"]
    assert (pillar["node_status"], pillar["roles"]) == (None, [])
    assert pillar["scale"] == "single"
    assert "node id 'web*': '*' at position 4 is a glob wildcard" in caplog.text


def cluster_of(opts, roles_by_node):
    """A registry of accepted nodes with these roles."""
    cache = salt.cache.factory(opts)
    reg = registry.open_registry(opts, cache=cache)
    for node in roles_by_node:
        reg.ensure(node, "test")
        reg.accept(node)
    reg.store_assignment(dict(roles_by_node))
    return cache


def test_an_observe_node_gets_every_member_at_its_address(opts):
    cache = cluster_of(opts, {"obs-1": ["observe"], "data-1": ["data"], "edge-1": ["edge"]})
    cache.store("mine", "data-1", {"eos_addresses": ["10.0.0.5", "10.0.0.6"]})
    cache.store("mine", "obs-1", {"eos_addresses": {"__data__": ["10.0.0.9"], "allow_tgt": "*"}})
    found = eos_pillar.ext_pillar("obs-1", {})["eos"]["observe_targets"]
    assert found["groups"] == [
        {"targets": ["10.0.0.5:9100"], "labels": {"node": "data-1", "roles": ",data,"}},
        {"targets": ["10.0.0.9:9100"], "labels": {"node": "obs-1", "roles": ",observe,"}},
    ]
    assert found["without_address"] == ["edge-1"]


def test_the_exporter_port_and_the_mine_function_follow_the_pillar(opts):
    cache = cluster_of(opts, {"obs-1": ["observe"]})
    cache.store("mine", "obs-1", {"my_addresses": ["10.0.0.9"]})
    pillar = {
        "eos": {
            "observe": {"targets": {"node_exporter_port": 9200}},
            "role_config": {"edge": {"discovery": {"mine_function": "my_addresses"}}},
        }
    }
    found = eos_pillar.ext_pillar("obs-1", pillar)["eos"]["observe_targets"]
    assert found["groups"][0]["targets"] == ["10.0.0.9:9200"]


def test_only_observe_nodes_get_the_fleet(opts):
    cluster_of(opts, {"obs-1": ["observe"], "data-1": ["data"]})
    assert "observe_targets" not in eos_pillar.ext_pillar("data-1", {})["eos"]


def test_a_minion_publishing_garbage_costs_only_its_own_target(opts):
    cache = cluster_of(opts, {"obs-1": ["observe"], "data-1": ["data"]})
    cache.store("mine", "data-1", {"eos_addresses": ["bad host!"]})
    cache.store("mine", "obs-1", {"eos_addresses": ["10.0.0.9"]})
    found = eos_pillar.ext_pillar("obs-1", {})["eos"]["observe_targets"]
    assert [group["labels"]["node"] for group in found["groups"]] == ["obs-1"]
    assert found["without_address"] == ["data-1"]
