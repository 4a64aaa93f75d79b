"""
The configuration reference, ``docs/configuration.md``, built from the defaults in the code.

Each section takes its keys and defaults from the table its module validates against
(``cleanup.DEFAULTS``, ``datasets.REBALANCE_DEFAULTS``, ``api.DEFAULT_SETTINGS``...), so the
page shows what the code does. Keys the code reads with a default of its own rather than from
a table are in ``READ_INLINE``, which points at the module's constant wherever there is one.
``TYPES`` names the type of the keys whose default does not show it (``null``, a default that
depends on other settings, a number that must be whole, one of a few words).

Regenerate the page after changing a default, a key or the prose here::

    python -m saltext.eos.utils.configdoc > docs/configuration.md

A unit test compares the page with this output, so the two cannot disagree unnoticed.
"""

import re
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass

from saltext.eos.utils import api
from saltext.eos.utils import datasets
from saltext.eos.utils.cluster import bootstrap
from saltext.eos.utils.cluster import checkpoint
from saltext.eos.utils.cluster import health
from saltext.eos.utils.cluster import join
from saltext.eos.utils.cluster import lifecycle
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import resources
from saltext.eos.utils.cluster import roles
from saltext.eos.utils.datasets import rebalance
from saltext.eos.utils.datasets import transfer
from saltext.eos.utils.observe import alertmanager
from saltext.eos.utils.observe import prometheus
from saltext.eos.utils.observe import rules as observe_rules
from saltext.eos.utils.observe import targets
from saltext.eos.utils.storage import analyzer
from saltext.eos.utils.storage import cleanup
from saltext.eos.utils.storage import fsadvice
from saltext.eos.utils.storage import metrics
from saltext.eos.utils.storage import thresholds
from saltext.eos.utils.storage import watch

REGENERATE = "python -m saltext.eos.utils.configdoc > docs/configuration.md"
OBSERVE_PAGE = "metrics.md#the-observe-role"


@dataclass(frozen=True)
class Described:
    """A default that depends on other settings: shown as text, not as a value."""

    text: str


@dataclass(frozen=True)
class Row:
    """One key: its full name, default, type and the page (with anchor) that explains it."""

    key: str
    default: object
    type: str
    page: str


@dataclass(frozen=True)
class Section:
    """The keys below one name, where they are read from, and what else to know."""

    title: str
    read_from: str
    rows: tuple
    note: str = ""


def one_of(words):
    """The type of a setting that takes one of a few words: ``a``, ``b`` or ``c``."""
    quoted = [f"`{word}`" for word in words]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def per_scale(values):
    """A default that follows ``eos:scale``: ``{scale: value}`` as text."""
    return Described("by `eos:scale`: " + ", ".join(f"{s} {v}" for s, v in values.items()))


# Keys read with a default written where they are read, not taken from a table.
READ_INLINE = {
    # registry.acceptance_policy; require_health defaults to true only in the mapping form.
    "eos:accept": "manual",
    "eos:accept:auto": False,
    "eos:accept:match": None,
    "eos:accept:require_health": True,
    # The eos_cluster execution module, and roles/map.jinja with config.get.
    "eos:config_dir": checkpoint.DEFAULT_CONFIG_DIR,
    "eos:manage_software": True,
    # datasets.declarations, per dataset.
    "eos:datasets:<name>:role": rebalance.DEFAULT_ROLE,
    "eos:datasets:<name>:path": Described("the dataset's name"),
    "eos:datasets:<name>:pin": None,
    "eos:datasets:<name>:replica_group": None,
    # fsadvice.workload_paths adds these over fsadvice.WORKLOAD_PATHS.
    "eos:filesystems:workloads": {},
    "eos:metrics:textfile": metrics.DEFAULT_TEXTFILE,
    # resources.labels and the preferred role of eos_cluster.register.
    "eos:node:labels": {},
    "eos:node:preferred_role": None,
    "eos:registration:max_clock_skew_seconds": registry.DEFAULT_MAX_CLOCK_SKEW,
    # roles/map.jinja
    "eos:role_config:<role>": {},
    # roles.from_layers
    "eos:roles:pins": {},
    "eos:roles:exclude": [],
    "eos:roles:labels": {},
    "eos:scale": thresholds.DEFAULT_SCALE,
}

TYPES = {
    "eos:accept": "`manual`, `auto` or mapping",
    "eos:accept:match": "compound target or null",
    "eos:beacon:for": "integer",
    "eos:beacon:interval": "number",
    "eos:beacon:textfile": "absolute path or null",
    "eos:bootstrap:cluster": "string or null",
    "eos:bootstrap:master_config_dir": "absolute path or null",
    "eos:bootstrap:restart": "boolean or mapping",
    "eos:cleanup:compress_level": "integer",
    "eos:cleanup:max_listed_files": "integer",
    "eos:config_dir": "absolute path",
    "eos:dataset:capacity_bytes": "integer or null",
    "eos:dataset:root": "absolute path",
    "eos:datasets:<name>:path": "relative path",
    "eos:datasets:<name>:pin": "node id or null",
    "eos:datasets:<name>:replica_group": "string or null",
    "eos:metrics:textfile": "path",
    "eos:node:datacenter": "string or null",
    "eos:node:host": "string or null",
    "eos:node:labels": "mapping or list",
    "eos:node:preferred_role": "role name or null",
    "eos:node:rack": "string or null",
    "eos:node_count": "integer",
    "eos:node_status": "string or null",
    "eos:cluster_id": "string",
    "eos:profile:cleanup:automatic_up_to": one_of(thresholds.THRESHOLD_LEVELS),
    "eos:profile:monitoring_interval": "number",
    "eos:rebalance:bwlimit_kbps": "integer or null",
    "eos:rebalance:concurrency": "integer",
    "eos:rebalance:ssh_user": "string or null",
    "eos:rebalance:transport": one_of(transfer.TRANSPORTS),
    "eos:roles": "list of role names",
    "eos:scale": one_of(thresholds.PROFILES),
    **{f"eos:scale_boundaries:{scale}": "integer" for scale in registry.SCALE_STARTS},
    **{f"eos:thresholds:{level}": "number" for level in thresholds.THRESHOLD_LEVELS},
    "eos:thresholds:roles:<role>:<level>": "number",
    "eos:thresholds:mounts:<glob>:<level>": "number",
    "eos:observe:targets:node_exporter_port": "integer",
    "eos:observe:rules:for": "integer, or a mapping of level to integer",
    "eos:observe:rules:critical_from": one_of(thresholds.THRESHOLD_LEVELS),
    "eos:observe:prometheus:alertmanagers": "list of host:port",
    "eos_api:login_failures": "integer",
    "eos_api:login_window": "integer",
    "eos_api:max_body_bytes": "integer",
    "eos_api:port": "integer",
    "eos_api:ssl_crt": "path or null",
    "eos_api:ssl_key": "path or null",
    "eos_api:threads": "integer",
    "eos_api:webhook_eauth": "string or null",
}

NODE = "the minion config, then pillar (pillar wins key by key)."
MASTER = "the master config."

INTRO = f"""\
# Configuration reference

This page is generated from the defaults in the code: do not edit it, regenerate it with

```bash
{REGENERATE}
```

after changing a default or a key (a unit test fails while the page and the code disagree).

Every setting lives under one key, `eos`, and every key is optional: the default is what the
code uses when the key is not set. The REST API has a key of its own, `eos_api`, in the master
config (last section).

## Where settings live

`eos` is read in layers, lowest to highest:

1. the built-in defaults listed below;
2. the config file of the daemon that reads it: the minion config (`minion` and
   `minion.d/*.conf`) for execution modules, states and the beacon; the master config
   (`master` and `master.d/*.conf`) for runners, the ext_pillar, the reactor and the API;
3. pillar, on a minion.

A key set in a higher layer wins over the same key in a lower one; the sections below say
where a whole mapping is taken from one layer instead. Functions such as
`eos_storage.thresholds` report the layer each value came from, for example
`eos:thresholds:roles:data:cleanup (pillar)`.

Salt lays a drop-in over the main config file key by key, replacing a key's whole value, so a
drop-in that sets `eos` hides every `eos` setting of the main file: keep a daemon's `eos`
settings in one file.

The `eos` ext_pillar gives every minion `eos:scale`, `eos:thresholds`, `eos:roles` and
`eos:profile` from the cluster registry. Pillar outranks the minion config, so per-node
overrides belong in pillar (or, for thresholds, in the master config, which the ext_pillar
reads).

`eos:config_dir` and `eos:manage_software` are also read by the role states with Salt's
`config.get`, which looks in the minion config, the grains, pillar and the master config, in
that order, and takes the first it finds: there the minion config wins over pillar.

Invalid configuration is an error naming the key and the value, never a silent fallback, and
is detected before anything is measured or written.
"""


def type_of(key, default):
    """The type shown for ``key``: from ``TYPES``, else from its default's Python type."""
    if key in TYPES:
        return TYPES[key]
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, (int, float)):
        return "number"
    if isinstance(default, str):
        return "string"
    if isinstance(default, (list, tuple)):
        return "list"
    if isinstance(default, Mapping):
        return "mapping"
    raise ValueError(f"{key}: the default {default!r} does not tell the type; add it to TYPES")


def table_rows(prefix, defaults, page, expand=()):
    """A Row per key of a defaults table; the mappings named in ``expand`` get one per key."""
    rows = []
    for name, default in defaults.items():
        key = f"{prefix}:{name}"
        if name in expand:
            rows.extend(table_rows(key, default, page))
        else:
            rows.append(Row(key, default, type_of(key, default), page))
    return tuple(rows)


def inline_rows(prefix, page):
    """A Row per ``READ_INLINE`` key that is ``prefix`` or below it."""
    return tuple(
        Row(key, default, type_of(key, default), page)
        for key, default in READ_INLINE.items()
        if key == prefix or key.startswith(f"{prefix}:")
    )


def profile_of(level):
    """The default of ``eos:thresholds:<level>``: the level's limit in each scale's profile."""
    index = thresholds.THRESHOLD_LEVELS.index(level)
    return per_scale({scale: limits[index] for scale, limits in thresholds.PROFILES.items()})


def scale_policy(*path):
    """The default of a key the scale's policy decides, per scale."""
    values = {}
    for scale, policy in registry.SCALE_POLICIES.items():
        value = policy
        for part in path:
            value = value[part]
        values[scale] = value
    return per_scale(values)


def render_scalar(text):
    """``text`` as YAML reads it back: plain when that is unambiguous, else quoted."""
    plain = re.fullmatch(r"[A-Za-z0-9_/.][A-Za-z0-9_/.*@+ -]*", text) and text == text.strip()
    words = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"}
    try:
        float(text)
        numeric = True
    except ValueError:
        numeric = False
    if plain and not numeric and text.lower() not in words:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_value(value):
    """A default in YAML flow style, as one would write it in a config file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return render_scalar(value)
    if isinstance(value, Mapping):
        items = (f"{render_scalar(str(k))}: {render_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return "[" + ", ".join(render_value(item) for item in value) + "]"


def render_default(default):
    """The default column: a value as code, a described default as text."""
    if isinstance(default, Described):
        return default.text
    return f"`{render_value(default)}`"


def anchor(title):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as ``-``."""
    text = title.strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def page_link(page):
    """A link to a page of the docs, named by its file: ``[cleanup.md](cleanup.md#...)``."""
    return f"[{page.split('#', 1)[0]}]({page})"


def cell(text):
    """``text`` safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def paragraph(text):
    """``text`` wrapped as the hand-written prose of the docs is, never inside a code span."""
    # A code span broken over two lines still renders, but reads badly in the source.
    glued = re.sub(r"`[^`]*`", lambda span: span[0].replace(" ", "\0"), text)
    wrapped = textwrap.fill(glued, width=95, break_long_words=False, break_on_hyphens=False)
    return wrapped.replace("\0", " ")


def render_section(section):
    """One section: its heading, where its keys are read from, its note and its table."""
    lines = [f"## {section.title}", "", paragraph(f"Read from {section.read_from}")]
    if section.note:
        lines += ["", paragraph(section.note)]
    lines += ["", "| key | default | type | explained in |", "| --- | --- | --- | --- |"]
    for row in section.rows:
        cells = (f"`{row.key}`", render_default(row.default), row.type, page_link(row.page))
        lines.append("| " + " | ".join(cell(text) for text in cells) + " |")
    return "\n".join(lines) + "\n"


def contents(all_sections):
    """The list of sections, linked, for the top of the page."""
    lines = ["## Sections", ""]
    lines += [f"- [{s.title}](#{anchor(s.title)})" for s in all_sections]
    return "\n".join(lines) + "\n"


def render():
    """The whole page, ``docs/configuration.md``."""
    all_sections = sections()
    parts = [INTRO, contents(all_sections), *(render_section(s) for s in all_sections)]
    return "\n".join(parts)


# --- the sections ------------------------------------------------------------------------------


def sections():
    """Every section of the page, in the order it lists them."""
    return (
        *storage_sections(),
        *node_sections(),
        *cluster_sections(),
        *dataset_sections(),
        pillar_section(),
        api_section(),
    )


def storage_sections():
    """``eos:scale``, ``eos:thresholds``, the analyzer, the beacon, cleanup and metrics."""
    return (
        Section(
            "`eos:scale`",
            "the minion config, then pillar, where the `eos` ext_pillar sets it from the "
            "cluster's node count.",
            inline_rows("eos:scale", "cluster.md#scale"),
            "The scale picks the threshold profile, the monitoring interval and how far a node "
            "recovers space on its own.",
        ),
        Section(
            "`eos:thresholds`",
            "the minion config, then pillar, on a node; the master config and the pillar "
            "compiled before it, when the `eos` ext_pillar works out each minion's limits.",
            thresholds_rows("storage.md#levels-and-thresholds"),
            "Percent used. Limits start from the profile of `eos:scale` and are overridden by "
            "the global levels, then the node's roles (the lowest of its roles' limits), then "
            "the most specific matching mount glob; after merging they must be strictly "
            "increasing. The ext_pillar puts each minion's effective limits in its pillar, "
            "which outranks the minion config.",
        ),
        Section(
            "`eos:analyzer`",
            NODE,
            table_rows("eos:analyzer", analyzer.DEFAULTS, "storage.md#settings-eosanalyzer"),
            "The `eos_storage` execution module and the beacon read the same settings.",
        ),
        Section(
            "`eos:beacon`",
            "pillar, by the role state `eos.roles.common`, which saves the `eos_storage` "
            "beacon into the minion's `beacons.conf`.",
            beacon_rows("beacon.md#the-beacon"),
            "Without the role states, set the same options under `beacons:eos_storage` in the "
            "minion config or pillar; with them, a beacon in pillar `beacons:eos_storage` is "
            "left alone. An unknown option is an error.",
        ),
        Section(
            "`eos:cleanup`",
            NODE,
            table_rows("eos:cleanup", cleanup.DEFAULTS, "cleanup.md#configuration"),
            "Sizes are bytes or a number with K, M, G or T (powers of 1024); days may be "
            "fractions. `protected` merges class by class (see "
            "[Protected data](cleanup.md#protected-data)). An unknown key is an error.",
        ),
        Section(
            "`eos:metrics`",
            NODE,
            inline_rows("eos:metrics", "metrics.md#where-the-file-goes"),
            "A `path` argument wins over it. The directory must exist.",
        ),
        Section(
            "`eos:observe`",
            NODE + " Read on an observe node (eos.roles.observe, the eos_observe module).",
            (
                *table_rows("eos:observe:targets", targets.DEFAULTS, OBSERVE_PAGE),
                *table_rows(
                    "eos:observe:rules", observe_rules.DEFAULTS, OBSERVE_PAGE, ("time_to_full",)
                ),
                *table_rows("eos:observe:prometheus", prometheus.DEFAULTS, OBSERVE_PAGE),
                *table_rows("eos:observe:alertmanager", alertmanager.DEFAULTS, OBSERVE_PAGE),
            ),
            "Times are whole seconds, written into the generated files as Prometheus durations. "
            "`rules:for` is one number for every level or a mapping of level to seconds (a "
            f"level it does not name waits {observe_rules.DEFAULT_FOR_SECONDS}). "
            "An unknown key is an error.",
        ),
        Section(
            "`eos:filesystems`",
            NODE,
            inline_rows("eos:filesystems", "filesystems.md#mounted-filesystems"),
            "Mount point globs and their workload (one of "
            f"{one_of(fsadvice.WORKLOADS)}), added over the built-in ones; the most specific "
            f"glob wins. Built in: {built_in_workloads()}.",
        ),
    )


def built_in_workloads():
    """The built-in mount point globs, each with its workload."""
    return ", ".join(f"`{glob}` {name}" for glob, name in fsadvice.WORKLOAD_PATHS.items())


def thresholds_rows(page):
    """The global levels, then the per-role and per-mount overrides."""
    levels = {level: profile_of(level) for level in thresholds.THRESHOLD_LEVELS}
    overrides = {
        "roles:<role>:<level>": Described("`eos:thresholds:<level>`"),
        "mounts:<glob>:<level>": Described("the role's or the global limit"),
    }
    return (
        *table_rows("eos:thresholds", levels, page),
        *table_rows("eos:thresholds", overrides, page),
    )


def beacon_rows(page):
    """Salt's ``interval``, then the options of the storage watch."""
    interval = Described("`eos:profile:monitoring_interval`, else 60")
    return (
        *table_rows("eos:beacon", {"interval": interval}, page),
        *table_rows("eos:beacon", watch.DEFAULTS, page, expand=("time_to_full",)),
    )


def node_sections():
    """What a node says about itself, its checks, its files and its bootstrap."""
    return (
        Section(
            "`eos:node`",
            NODE,
            node_rows("cluster.md#minion-side-eos_cluster"),
            "The failure domain and labels the node registers with; the role solver spreads "
            "roles over them.",
        ),
        Section(
            "`eos:health`",
            NODE,
            table_rows("eos:health", health.DEFAULTS, "cluster.md#health-checks"),
            "Quote versions in `supported_os`: YAML reads `22.10` as the number 22.1, which is "
            "an error.",
        ),
        Section(
            "`eos:config_dir`, `eos:manage_software`",
            "Salt's `config.get` in the role states (minion config, grains, pillar, master "
            "config: the first that has the key wins); `eos_cluster.checkpoint` reads "
            "`eos:config_dir` from the minion config, then pillar.",
            (
                *inline_rows("eos:config_dir", "roles.md#configuration"),
                *inline_rows("eos:manage_software", "roles.md#configuration"),
            ),
            "Every file EOS itself writes on a node lives under `eos:config_dir`. With "
            "`eos:manage_software` false the role states apply only `eos.roles.common`: no "
            "package, service or software configuration is touched.",
        ),
        Section(
            "`eos:role_config`",
            "pillar.",
            inline_rows("eos:role_config", "roles.md#role-software"),
            "Merged key by key over the role's entry in `roles/defaults.yaml` and its "
            "`os_family` entry; a role found only here gets exactly these settings.",
        ),
        Section(
            "`eos:bootstrap`",
            NODE,
            table_rows("eos:bootstrap", bootstrap.DEFAULTS, "cluster.md#bootstrap"),
            "Times are seconds. `restart` is true (the service manager restarts salt-minion "
            "and salt-master), false (others restart them), or `{minion: <service>, master: "
            "<service>}`.",
        ),
    )


def node_rows(page):
    """The failure domain keys (grains stand in for some), then labels and preferred role."""
    domain = {
        key: Described(f"the `{key}` grain") if key in resources.GRAIN_DOMAIN_KEYS else None
        for key in resources.DOMAIN_KEYS
    }
    return (*table_rows("eos:node", domain, page), *inline_rows("eos:node", page))


def cluster_sections():
    """The master's registry, acceptance, scale, joins and role placement."""
    return (
        Section(
            "`eos:accept`",
            MASTER,
            inline_rows("eos:accept", "cluster.md#acceptance-policy"),
            "`manual` waits for `salt-run eos_cluster.accept`; `auto` accepts every node that "
            "asks; a mapping of `auto`, `match` (Salt's compound matcher on the node's grains) "
            "and `require_health` narrows it. The first node of a new cluster is always "
            "accepted. An unknown field is an error.",
        ),
        Section(
            "`eos:registration`",
            MASTER,
            inline_rows("eos:registration", "cluster.md#registration-order"),
        ),
        Section(
            "`eos:scale_boundaries`",
            MASTER,
            table_rows("eos:scale_boundaries", registry.SCALE_STARTS, "cluster.md#scale"),
            f"The node count at which each scale starts; `{thresholds.DEFAULT_SCALE}` starts at "
            "0. Whole numbers from 2, strictly increasing.",
        ),
        Section(
            "`eos:profile`",
            "pillar, where the `eos` ext_pillar sets it from the cluster's scale; "
            "`automatic_up_to` also from the minion config.",
            profile_rows(),
        ),
        Section(
            "`eos:join`",
            MASTER,
            table_rows("eos:join", join.DEFAULTS, "cluster.md#adding-a-node"),
            "Times are seconds, at least 1 (`wave_seconds` may be 0: a wave starts at once). "
            "`state` is `highstate` (`eos.roles` on nodes no top file targets) or an SLS "
            "name. `batch`: a whole number of nodes, at least 1. Nodes accepted within "
            "`wave_seconds` of each other, or while a wave runs, join together "
            '(cluster.md, "Waves").',
        ),
        Section(
            "`eos:coordination`",
            f"{MASTER} The registry lock: a file in the cachedir with `cache: localfs`, a key "
            "on the cache's redis server with `cache: redis`.",
            table_rows("eos:coordination", registry.LOCK_DEFAULTS, "cluster.md#several-masters"),
            "Seconds, at least 1.",
        ),
        Section(
            "`eos:lifecycle`",
            f"{MASTER} Read by the `eos_lifecycle` engine on every pass.",
            table_rows("eos:lifecycle", lifecycle.DEFAULTS, "cluster.md#node-lifecycle"),
            "Times are seconds. `probe_timeout_seconds` must be below "
            "`probe_interval_seconds`; `flap_limit` is a whole number, "
            "`max_unreachable_fraction` a fraction from 0 to 1.",
        ),
        Section(
            "`eos:roles`",
            f"{MASTER} On a minion, pillar `eos:roles` is instead the node's list of roles "
            "(see the ext_pillar section).",
            roles_rows("roles.md#catalogue-and-targets"),
            "Catalogue entries merge field by field over the built-in ones; a name that is "
            "not in the catalogue adds a role.",
        ),
    )


def profile_rows():
    """The monitoring interval and the automatic cleanup cap, per scale."""
    return (
        Row(
            "eos:profile:monitoring_interval",
            scale_policy("monitoring_interval"),
            TYPES["eos:profile:monitoring_interval"],
            "cluster.md#scale",
        ),
        Row(
            "eos:profile:cleanup:automatic_up_to",
            scale_policy("cleanup", "automatic_up_to"),
            TYPES["eos:profile:cleanup:automatic_up_to"],
            "beacon.md#reactions-reactorstorage_thresholdsls",
        ),
    )


def roles_rows(page):
    """The built-in catalogue, one row per role, then the placement policy."""
    catalogue = table_rows("eos:roles:catalog", roles.CATALOG, page)
    return (*catalogue, *inline_rows("eos:roles", "roles.md#the-solver"))


def dataset_sections():
    """Datasets and their rebalancing: declarations and the master's and nodes' settings."""
    return (
        Section(
            "`eos:datasets`",
            MASTER,
            inline_rows("eos:datasets", "rebalance.md#configuration"),
            "`<name>` is the dataset's name: letters, digits, `.`, `_` and `-`. A `path` is "
            "relative to each node's dataset root and stays below it. An unknown field is an "
            "error.",
        ),
        Section(
            "`eos:rebalance`",
            MASTER,
            table_rows("eos:rebalance", datasets.REBALANCE_DEFAULTS, "rebalance.md#configuration"),
            "`threshold` is percentage points around the mean, 1 to 50. An unknown key is an "
            "error.",
        ),
        Section(
            "`eos:dataset`",
            "the minion config or pillar of each data node: the highest layer that sets "
            "`eos:dataset` gives the whole mapping.",
            table_rows("eos:dataset", datasets.NODE_DEFAULTS, "rebalance.md#configuration"),
            "An unknown key is an error.",
        ),
    )


def pillar_section():
    """What the ``eos`` ext_pillar gives every minion, besides scale, thresholds and profile."""
    registry_says = Described("from the cluster registry")
    values = {
        "roles": [],
        "node_count": registry_says,
        "cluster_id": registry_says,
        "node_status": registry_says,
    }
    return Section(
        "Set by the `eos` ext_pillar",
        "pillar. The ext_pillar also sets `eos:scale`, `eos:thresholds` and `eos:profile` "
        "(above); these keys are the registry's, not settings.",
        table_rows("eos", values, "cluster.md#the-eos-ext_pillar"),
        "`eos:roles` is the node's roles in the current assignment; `eos:node_status` is null "
        "for a minion the registry does not know.",
    )


def api_section():
    """The REST API's own key in the master config."""
    return Section(
        "`eos_api`",
        "the master config, a key of its own beside `eos`. The `eos_api` netapi module loads "
        "only when it is set; `eos_api: {}` takes every default.",
        table_rows("eos_api", api.DEFAULT_SETTINGS, "api.md#enable-it"),
        "A `host` other hosts can reach needs `ssl_crt` (HTTPS), or `allow_plain_http: true` "
        "behind a TLS proxy. An unknown key is an error. The API serves its OpenAPI "
        "document at `GET /api/v1/openapi.json`.",
    )


def main():
    """Print the page; redirect it into ``docs/configuration.md``."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
