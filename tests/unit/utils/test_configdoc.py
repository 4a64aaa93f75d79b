"""docs/configuration.md is the generator's output and lists every key the code defaults."""

import re

import pytest
import yaml

from saltext.eos import PACKAGE_ROOT
from saltext.eos.utils import api
from saltext.eos.utils import configdoc
from saltext.eos.utils import datasets
from saltext.eos.utils.cluster import bootstrap
from saltext.eos.utils.cluster import health
from saltext.eos.utils.cluster import join
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import resources
from saltext.eos.utils.cluster import roles
from saltext.eos.utils.storage import analyzer
from saltext.eos.utils.storage import cleanup
from saltext.eos.utils.storage import fsadvice
from saltext.eos.utils.storage import thresholds
from saltext.eos.utils.storage import watch
from tests.support import layers as support_layers

DOCS = PACKAGE_ROOT.parents[2] / "docs"
PAGE = DOCS / "configuration.md"
ROW = re.compile(r"^\| `(?P<key>[^`]+)` \| (?P<default>.*?) \| (?P<type>.*?) \| (?P<page>.*) \|$")
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")

# Each table of defaults the code validates against, with the name its keys have.
TABLES = [
    ("eos:analyzer", analyzer.DEFAULTS),
    ("eos:beacon", watch.DEFAULTS),
    ("eos:bootstrap", bootstrap.DEFAULTS),
    ("eos:cleanup", cleanup.DEFAULTS),
    ("eos:dataset", datasets.NODE_DEFAULTS),
    ("eos:rebalance", datasets.REBALANCE_DEFAULTS),
    ("eos:health", health.DEFAULTS),
    ("eos:join", join.DEFAULTS),
    ("eos:scale_boundaries", registry.SCALE_STARTS),
    ("eos:roles:catalog", roles.CATALOG),
    ("eos_api", api.DEFAULT_SETTINGS),
]
# Keys whose names the code lists without defaults beside them.
NAMES = [
    ("eos:accept", registry.POLICY_FIELDS),
    ("eos:datasets:<name>", sorted(datasets.DECLARATION_FIELDS)),
    ("eos:node", resources.DOMAIN_KEYS),
    ("eos:thresholds", thresholds.THRESHOLD_LEVELS),
]


def rows(text):
    """{key: {default, type, page}} of every table row of the page."""
    found = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            found[match["key"]] = match.groupdict()
    return found


def headings(path):
    """The anchors of a page's headings, outside code blocks."""
    anchors, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            anchors.add(configdoc.anchor(line.lstrip("#")))
    return anchors


layers = support_layers.master


@pytest.fixture(scope="module")
def listed():
    return rows(configdoc.render())


def test_the_page_is_the_generators_output():
    # On a mismatch: python -m saltext.eos.utils.configdoc > docs/configuration.md
    assert PAGE.read_text(encoding="utf-8") == configdoc.render()


def test_the_page_says_how_to_regenerate_it():
    assert configdoc.REGENERATE in configdoc.render().split("## ", 1)[0]


@pytest.mark.parametrize(("prefix", "table"), TABLES, ids=[prefix for prefix, _ in TABLES])
def test_every_key_of_every_defaults_table_is_listed_with_its_default(listed, prefix, table):
    for name, default in table.items():
        key = f"{prefix}:{name}"
        if key in listed:
            assert listed[key]["default"] == f"`{configdoc.render_value(default)}`", key
        else:
            # A mapping whose keys merge one by one gets a row per key.
            below = {k: v for k, v in listed.items() if k.startswith(f"{key}:")}
            assert below, f"{key} is not on the page"
            assert set(below) == {f"{key}:{sub}" for sub in default}, key


@pytest.mark.parametrize(("prefix", "names"), NAMES, ids=[prefix for prefix, _ in NAMES])
def test_every_key_the_code_names_is_listed(listed, prefix, names):
    for name in names:
        assert f"{prefix}:{name}" in listed


def test_every_row_has_a_type_and_a_link(listed):
    assert len(listed) > 100
    for key, row in listed.items():
        assert row["type"], key
        assert LINK.search(row["page"]), key


def test_the_type_overrides_name_listed_keys(listed):
    assert set(configdoc.TYPES) <= set(listed)


def test_every_linked_page_and_heading_exists():
    targets = {match["target"] for match in LINK.finditer(configdoc.render())}
    assert targets
    own = headings(PAGE)
    for target in targets:
        page, _, fragment = target.partition("#")
        path = DOCS / page if page else PAGE
        assert path.is_file(), target
        if fragment:
            assert fragment in (headings(path) if page else own), target


def test_anchor_is_githubs():
    assert configdoc.anchor(" Settings (`eos:analyzer`)") == "settings-eosanalyzer"
    assert configdoc.anchor("Set by the `eos` ext_pillar") == "set-by-the-eos-ext_pillar"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (5.0, "5"),
        (0.5, "0.5"),
        ("22.04", '"22.04"'),
        ("yes", '"yes"'),
        ("/var/lib/docker*", "/var/lib/docker*"),
        ("a: b", '"a: b"'),
        ({"x": [1, "z", "y"]}, '{x: [1, z, "y"]}'),
    ],
)
def test_defaults_are_written_as_yaml_reads_them(value, text):
    assert configdoc.render_value(value) == text


@pytest.mark.parametrize(("prefix", "table"), TABLES, ids=[prefix for prefix, _ in TABLES])
def test_every_default_reads_back_as_the_tables(prefix, table):
    for name, default in table.items():
        assert yaml.safe_load(configdoc.render_value(default)) == default, f"{prefix}:{name}"


def test_a_default_without_a_type_is_refused():
    with pytest.raises(ValueError, match="eos:x:y"):
        configdoc.type_of("eos:x:y", None)


# The keys read with a default of their own: the page's value is the code's.


def test_inline_acceptance_defaults_are_the_policys():
    inline = configdoc.READ_INLINE
    default = registry.acceptance_policy(layers())
    assert default == registry.acceptance_policy(layers(accept=inline["eos:accept"]))
    assert registry.acceptance_policy(layers(accept={})) == registry.AcceptancePolicy(
        auto=inline["eos:accept:auto"],
        match=inline["eos:accept:match"],
        require_health=inline["eos:accept:require_health"],
    )


def test_inline_role_policy_defaults_are_the_solvers():
    inline = configdoc.READ_INLINE
    _, policy = roles.from_layers(layers())
    assert policy == roles.policy(
        {name: inline[f"eos:roles:{name}"] for name in ("pins", "exclude", "labels")}
    )


def test_inline_dataset_defaults_are_the_declarations():
    inline = configdoc.READ_INLINE
    declared = datasets.declarations(layers(datasets={"logs": {}}))["logs"]
    assert declared == datasets.Declaration(
        name="logs",
        role=inline["eos:datasets:<name>:role"],
        path="logs",
        pin=inline["eos:datasets:<name>:pin"],
        replica_group=inline["eos:datasets:<name>:replica_group"],
    )


def test_inline_node_and_storage_defaults_are_the_codes():
    inline = configdoc.READ_INLINE
    assert resources.labels(layers()) == inline["eos:node:labels"]
    assert resources.failure_domain(layers(), {}) == dict.fromkeys(resources.DOMAIN_KEYS)
    workloads = inline["eos:filesystems:workloads"]
    assert fsadvice.workload_paths(layers()) == {**fsadvice.WORKLOAD_PATHS, **workloads}
    assert registry.max_clock_skew(layers()) == inline["eos:registration:max_clock_skew_seconds"]
    assert thresholds.Resolver(layers()).scale == inline["eos:scale"]
