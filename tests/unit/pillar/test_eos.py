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
