from unittest.mock import patch

import pytest
import salt.utils.color

from saltext.eos.output import eos_storage as outputter
from saltext.eos.utils import datasets
from saltext.eos.utils import formatting
from saltext.eos.utils.storage import thresholds
from tests.support.memory_cache import MemoryCache

GIB = 1024**3
TIB = 1024**4


@pytest.fixture
def configure_loader_modules():
    return {outputter: {"__opts__": {"color": False}}}


@pytest.fixture
def colour_on():
    with patch.dict(outputter.__opts__, {"color": True}):
        yield


def mount_report(level="none", usage_percent=40.0, time_to_full_seconds=None, **overrides):
    total = 100 * GIB
    used = int(total * usage_percent / 100)
    report = {
        "device": "/dev/vda1",
        "fstype": "ext4",
        "total_bytes": total,
        "used_bytes": used,
        "free_bytes": total - used,
        "usage_percent": usage_percent,
        "inodes_total": 1000,
        "inodes_used": 125,
        "inode_percent": 12.5,
        "read_only": False,
        "level": level,
        "actions": [],
        "growth_bytes_per_day": None,
        "time_to_full_seconds": time_to_full_seconds,
    }
    report.update(overrides)
    return report


def failed_mount(error="statvfs timed out after 5s"):
    return {"device": "nfs:/export", "fstype": "nfs4", "error": error}


def lines_of(text):
    return [formatting.ANSI_ESCAPE.sub("", line) for line in text.splitlines()]


def row_for(text, mount):
    """The table line of one mount, colour codes removed, split into its cells."""
    for line in lines_of(text):
        cells = line.split()
        if cells and cells[0] == mount:
            return line
    raise AssertionError(f"no row for {mount} in:\n{text}")


def test_virtual_name():
    assert outputter.__virtual__() == "eos_storage"


def test_two_minions_render_ids_mounts_levels_durations_and_bars():
    data = {
        "node2": {"/srv": mount_report(level="critical", usage_percent=97.25)},
        "node1": {
            "/": mount_report(level="warning", usage_percent=62.5, time_to_full_seconds=43200),
            "/boot": mount_report(usage_percent=25.0, inode_percent=None),
        },
    }
    text = outputter.output(data)
    lines = text.splitlines()

    assert "node1:" in lines
    assert "node2:" in lines
    # Minions come out in a stable order whatever order they returned in.
    assert lines.index("node1:") < lines.index("node2:")

    root = row_for(text, "/")
    assert "ext4" in root
    assert "100.0 GiB" in root
    assert "62.5%" in root
    assert "#" * 12 + "." * 8 in root
    assert "12.5%" in root
    assert "warning" in root
    assert root.endswith("12h")

    boot = row_for(text, "/boot")
    assert "#####" + "." * 15 in boot
    assert "none" in boot
    # No inode figures and no estimate: shown as dashes, not "None".
    assert "None" not in boot
    assert boot.split()[-1] == "-"

    srv = row_for(text, "/srv")
    assert "97.2%" in srv or "97.3%" in srv
    assert "critical" in srv
    assert "#" * 19 + "." in srv


def test_headers_and_indentation():
    text = outputter.output({"node1": {"/": mount_report()}})
    header = lines_of(text)[1]
    assert header.split() == [
        "MOUNT",
        "FSTYPE",
        "SIZE",
        "USED%",
        "USAGE",
        "INODE%",
        "LEVEL",
        "FULL",
        "IN",
    ]
    assert header.startswith("    MOUNT")


def test_read_only_mount_is_marked():
    text = outputter.output({"node1": {"/mnt": mount_report(level="degraded", read_only=True)}})
    assert "ext4 (ro)" in row_for(text, "/mnt")


def test_failed_mount_shows_its_error_instead_of_figures():
    data = {"node1": {"/": mount_report(), "/mnt/nfs": failed_mount()}}
    text = outputter.output(data)
    row = row_for(text, "/mnt/nfs")
    assert "nfs4" in row
    assert row.endswith("statvfs timed out after 5s")
    assert "%" not in row
    # The long message does not widen the SIZE column for the other rows.
    assert "100.0 GiB  40.0%" in row_for(text, "/")


def test_multi_line_error_stays_on_its_row():
    text = outputter.output({"node1": {"/mnt": failed_mount("first line\n  second line")}})
    assert row_for(text, "/mnt").endswith("first line second line")


def test_unexpected_level_value_does_not_crash():
    text = outputter.output({"node1": {"/": mount_report(level=["odd"])}})
    assert "['odd']" in row_for(text, "/")


def test_only_failed_mounts_still_render_a_table():
    text = outputter.output({"node1": {"/mnt/nfs": failed_mount("permission denied")}})
    assert "MOUNT" in text
    assert row_for(text, "/mnt/nfs").endswith("permission denied")


def test_string_result_is_printed_as_text():
    data = {
        "node1": "'eos_storage.analyze' is not available.",
        "node2": {"/": mount_report()},
    }
    text = outputter.output(data)
    assert "node1:\n    'eos_storage.analyze' is not available." in text
    assert "MOUNT" in text


@pytest.mark.parametrize(
    "result",
    [
        {"error": "invalid thresholds: cleanup must be above warning"},
        {
            "mount": "/",
            "scale": "small",
            "roles": ["data"],
            "levels": {"warning": {"value": 65, "source": "profile:small"}},
        },
        {"/": {"usage_percent": "high"}},
        {"/": mount_report(), "extra": 3},
        {},
        ["a", "list"],
        None,
        42,
        True,
    ],
    ids=[
        "top-level-error",
        "thresholds",
        "non-numeric-usage",
        "mixed-values",
        "empty",
        "list",
        "none",
        "int",
        "bool",
    ],
)
def test_other_results_fall_back_to_yaml_without_crashing(result):
    text = outputter.output({"node1": result})
    assert text.startswith("node1:")
    assert "MOUNT" not in text


def test_fallback_shows_the_values_as_yaml():
    result = {"mount": "/", "scale": "small", "levels": {"warning": {"value": 65}}}
    text = outputter.output({"node1": result})
    assert lines_of(text) == [
        "node1:",
        "    levels:",
        "      warning:",
        "        value: 65",
        "    mount: /",
        "    scale: small",
    ]


def test_scalar_fallback_has_no_yaml_document_marker():
    assert outputter.output({"node1": 42}) == "node1:\n    42"


def test_value_yaml_cannot_represent_does_not_crash():
    text = outputter.output({"node1": {"when": object(), "tags": ("a", "b")}})
    assert lines_of(text) == ["node1:", "    tags:", "    - a", "    - b", "    when: NULL"]


def test_data_that_is_not_a_dict_of_minions_does_not_crash():
    assert outputter.output("just a message") == "just a message"


def test_report_with_missing_fields_renders_dashes():
    text = outputter.output({"node1": {"/": {"usage_percent": 50.0}}})
    row = row_for(text, "/")
    assert "50.0%" in row
    assert "None" not in row
    assert row.split()[1:3] == ["-", "-"]


def test_no_escape_codes_when_colour_is_off():
    text = outputter.output({"node1": {"/": mount_report(level="critical"), "/x": failed_mount()}})
    assert "\x1b[" not in text


@pytest.mark.usefixtures("colour_on")
@pytest.mark.parametrize(
    ("level", "colour"),
    [
        ("none", "GREEN"),
        ("warning", "YELLOW"),
        ("compress", "LIGHT_YELLOW"),
        ("cleanup", "LIGHT_YELLOW"),
        ("degraded", "LIGHT_RED"),
        ("emergency", "LIGHT_RED"),
        ("critical", "RED"),
    ],
)
def test_level_cell_is_coloured_when_colour_is_on(level, colour):
    colours = outputter.salt.utils.color.get_colors(True)
    text = outputter.output({"node1": {"/": mount_report(level=level)}})
    assert f"{colours[colour]}{level}{colours['ENDC']}" in text


@pytest.mark.usefixtures("colour_on")
def test_coloured_table_still_lines_up():
    data = {
        "node1": {
            "/": mount_report(level="critical", usage_percent=99.0, time_to_full_seconds=3600),
            "/boot": mount_report(level="none", usage_percent=5.0),
            "/var/lib/data": mount_report(level="emergency", usage_percent=93.0),
        }
    }
    text = outputter.output(data)
    assert "\x1b[" in text
    plain = lines_of(text)[1:]
    header = plain[0]
    level_column = header.index("LEVEL")
    full_in_column = header.index("FULL IN")
    levels = [line[level_column:full_in_column].strip() for line in plain[2:]]
    assert levels == ["critical", "none", "emergency"]
    assert plain[2][full_in_column:] == "1h"


@pytest.mark.usefixtures("colour_on")
def test_unknown_level_is_shown_uncoloured():
    text = outputter.output({"node1": {"/": mount_report(level="mystery")}})
    row = text.splitlines()[-1]
    assert "mystery" in row
    assert "\x1b[" not in row


# --- the fleet report (salt-run eos_storage.report) --------------------------------------------


def node_row(status="active", capacity=4 * TIB, used=None, level="none", placed=None, **extra):
    """One node of ``salt-run eos_storage.report``; used=None: the node never reported."""
    row = {
        "status": status,
        "roles": ["data"],
        "capacity_bytes": capacity if used is not None else None,
        "used_bytes": used,
        "usage_percent": round(100 * used / capacity, 3) if used is not None else None,
        "level": level if used is not None else None,
        "datasets": placed or {},
        "time_to_full_seconds": None,
        "reported_at": "2025-01-01T00:00:00+00:00" if used is not None else None,
    }
    row.update(extra)
    return row


def fleet(nodes, conflicts=(), unreported=()):
    return {"nodes": nodes, "conflicts": list(conflicts), "unreported": list(unreported)}


def fleet_line(text, node):
    for line in lines_of(text):
        cells = line.split()
        if cells and cells[0] == node:
            return line
    raise AssertionError(f"no row for {node} in:\n{text}")


def test_fleet_report_renders_one_row_per_node_with_bar_level_datasets_and_full_in():
    data = fleet(
        {
            "data-2": node_row(used=1 * TIB, placed={"logs": 512 * GIB, "media": 256 * GIB}),
            "data-1": node_row(
                used=3 * TIB + 512 * GIB,
                level="cleanup",
                placed={f"set-{n}": 256 * GIB for n in range(12)},
                time_to_full_seconds=6 * 86400 + 2 * 3600 + 59,
            ),
        }
    )
    text = outputter.output(data)
    plain = lines_of(text)

    assert plain[0].split() == [
        "NODE",
        "STATUS",
        "CAPACITY",
        "USED",
        "USED%",
        "USAGE",
        "LEVEL",
        "DATASETS",
        "FULL",
        "IN",
    ]
    # A runner's return has no minion id above it: the table starts at the margin.
    assert plain[0].startswith("NODE")
    # Nodes in id order, whatever order the registry gave.
    assert [line.split()[0] for line in plain[2:4]] == ["data-1", "data-2"]

    full = fleet_line(text, "data-1")
    assert full.split()[1:7] == ["active", "4.0", "TiB", "3.5", "TiB", "87.5%"]
    assert "#" * 18 + "." * 2 in full
    assert "cleanup" in full
    assert "12 (3.0 TiB)" in full
    assert full.endswith("6d 2h")

    light = fleet_line(text, "data-2")
    assert "25.0%" in light
    assert "#" * 5 + "." * 15 in light
    assert "none" in light
    assert "2 (768.0 GiB)" in light
    assert light.split()[-1] == "-"
    assert "None" not in text


def test_fleet_report_of_the_real_runner_rows_is_recognised():
    """The rows datasets.fleet_report builds, as the runner returns them, make the table."""
    store = datasets.Store(MemoryCache(), clock=lambda: 1000.0)
    store.store_report(
        "n1",
        {
            "root": "/srv/eos/datasets",
            "host": "h1",
            "capacity_bytes": 100 * GIB,
            "used_bytes": 62 * GIB,
            "cleanup_percent": 75,
            "thresholds": thresholds.profile("single"),
            "datasets": {"a": 10 * GIB},
        },
    )
    store.place("a", "n1", 10 * GIB)
    rows = datasets.fleet_report(
        [{"id": "n1", "status": "active", "roles": ["data"]}, {"id": "n2", "status": "pending"}],
        store.reports(),
        store.placements(),
    )
    data = {"nodes": rows, "conflicts": [], "unreported": ["n2"]}
    assert outputter._is_fleet_report(data)

    text = outputter.output(data)
    row = fleet_line(text, "n1")
    assert "100.0 GiB" in row
    assert "62.0 GiB" in row
    assert "62.0%" in row
    assert "1 (10.0 GiB)" in row
    assert rows["n1"]["level"] in row
    pending = fleet_line(text, "n2")
    assert pending.split() == ["n2", "pending", "-", "-", "-", "-", "0", "-"]


def test_fleet_total_counts_reported_nodes_capacity_usage_and_datasets():
    data = fleet(
        {
            "a": node_row(used=1 * TIB, placed={"x": TIB}),
            "b": node_row(used=3 * TIB, placed={"y": TIB, "z": 2 * TIB}),
            "c": node_row(status="failed"),
        },
        unreported=["c"],
    )
    lines = lines_of(outputter.output(data))
    assert lines[-2] == (
        "total: 3 nodes (2 reported), 8.0 TiB capacity, 4.0 TiB used (50.0%), 3 datasets"
    )
    assert lines[-1] == "unreported: c"


def test_fleet_total_without_any_report_has_no_figures():
    lines = lines_of(outputter.output(fleet({"a": node_row()}, unreported=["a"])))
    assert "total: 1 node (0 reported), 0 datasets" in lines


def test_fleet_conflicts_are_listed_one_per_line_after_the_table():
    conflict = "dataset logs: found on data-3, placed on data-1;\nthe extra copies are left alone"
    text = outputter.output(fleet({"data-1": node_row(used=TIB)}, conflicts=[conflict]))
    lines = lines_of(text)
    assert lines[-2] == "conflicts:"
    assert lines[-1] == (
        "  - dataset logs: found on data-3, placed on data-1; the extra copies are left alone"
    )
    assert not any(line.startswith("unreported") for line in lines)


def test_fleet_without_conflicts_or_unreported_nodes_ends_with_the_total():
    lines = lines_of(outputter.output(fleet({"data-1": node_row(used=TIB)})))
    assert lines[-1].startswith("total: 1 node,")
    assert len(lines) == 4


def test_empty_fleet_says_so():
    assert outputter.output(fleet({})) == "no nodes in the registry"


def test_datasets_out_of_reach_are_listed_after_the_table_with_their_node_and_status():
    data = fleet(
        {
            "data-1": node_row(used=TIB, placed={"logs": TIB}),
            "data-3": node_row(status="down", placed={"media": TIB, "logs-2023": TIB}),
        },
        unreported=["data-3"],
    )
    data["unavailable"] = {
        "media": {"node": "data-3", "status": "down"},
        "logs-2023": {"node": "data-3", "status": "down"},
    }
    text = outputter.output(data)
    lines = lines_of(text)
    assert lines[-1] == "unavailable: logs-2023 (data-3, down), media (data-3, down)"
    assert fleet_line(text, "data-3").split()[:2] == ["data-3", "down"]


@pytest.mark.usefixtures("colour_on")
@pytest.mark.parametrize(
    ("status", "colour"), [("down", "LIGHT_RED"), ("unreachable", "LIGHT_YELLOW")]
)
def test_an_unreachable_or_down_node_is_coloured(status, colour):
    text = outputter.output(fleet({"data-3": node_row(status=status)}))
    colours = salt.utils.color.get_colors(True)
    assert f"{colours[colour]}{status}{colours['ENDC']}" in text


def test_an_unavailable_entry_that_is_not_a_mapping_is_shown_as_it_is():
    data = fleet({"data-1": node_row(used=TIB)})
    data["unavailable"] = {"media": "data-3"}
    assert lines_of(outputter.output(data))[-1] == "unavailable: media (data-3)"


def test_fleet_report_without_the_optional_lists_is_still_recognised():
    text = outputter.output({"nodes": {"data-1": node_row(used=TIB)}})
    assert lines_of(text)[0].startswith("NODE")


def test_fleet_report_under_a_minion_id_is_indented_below_it():
    text = outputter.output({"master-minion": fleet({"data-1": node_row(used=TIB)})})
    lines = lines_of(text)
    assert lines[0] == "master-minion:"
    assert lines[1].startswith("    NODE")
    assert lines[3].startswith("    data-1")


def test_odd_values_in_a_fleet_row_do_not_crash():
    row = node_row(used=TIB, status=["odd"], level=7, time_to_full_seconds="soon")
    row["datasets"] = {"a": "big", "b": 3}
    text = outputter.output(fleet({"data-1": row, "data-2": node_row(used=TIB, datasets=None)}))
    odd = fleet_line(text, "data-1")
    assert "['odd']" in odd
    assert " 7 " in odd
    assert odd.split()[-2:] == ["2", "-"]
    assert fleet_line(text, "data-2").split()[-2:] == ["-", "-"]


@pytest.mark.parametrize(
    "data",
    [
        # eos_storage.rebalance: it has nodes too, with other rows, and more keys.
        {
            "threshold": 10,
            "moves": [],
            "nodes": {"data-1": {"role": "data", "capacity_bytes": 1, "used_bytes_before": 1}},
            "bytes_moved": 0,
            "dry_run": True,
        },
        {"nodes": [{"capacity_bytes": 1}]},
        {"nodes": {"data-1": {"capacity_bytes": 1, "used_bytes": 1}}},
        {"nodes": {"data-1": "not a row"}},
        {"nodes": {}, "conflicts": "not a list"},
        {"nodes": {}, "unreported": None},
    ],
    ids=[
        "rebalance-plan",
        "nodes-list",
        "row-missing-keys",
        "row-not-dict",
        "bad-conflicts",
        "bad-unreported",
    ],
)
def test_other_runner_returns_are_not_taken_for_a_fleet_report(data):
    assert not outputter._is_fleet_report(data)
    text = outputter.output(data)
    assert "NODE" not in text
    assert "CAPACITY" not in text


def test_analyze_results_are_not_taken_for_a_fleet_report():
    assert not outputter._is_fleet_report({"/": mount_report()})
    assert not outputter._is_storage_report(fleet({"data-1": node_row(used=TIB)}))


def test_fleet_table_has_no_escape_codes_when_colour_is_off():
    data = fleet({"a": node_row(status="failed", used=TIB, level="critical")})
    assert "\x1b[" not in outputter.output(data)


@pytest.mark.usefixtures("colour_on")
def test_fleet_levels_and_holding_statuses_are_coloured_and_still_line_up():
    colours = outputter.salt.utils.color.get_colors(True)
    data = fleet(
        {
            "a": node_row(used=3 * TIB + 900 * GIB, level="critical", status="failed"),
            "b": node_row(used=TIB, level="none", status="pending"),
            "c": node_row(used=2 * TIB, level="warning"),
        }
    )
    text = outputter.output(data)
    assert f"{colours['RED']}critical{colours['ENDC']}" in text
    assert f"{colours['LIGHT_RED']}failed{colours['ENDC']}" in text
    assert f"{colours['YELLOW']}pending{colours['ENDC']}" in text
    # An active node's status stays plain.
    assert f"active{colours['ENDC']}" not in text
    plain = lines_of(text)
    level_column = plain[0].index("LEVEL")
    datasets_column = plain[0].index("DATASETS")
    levels = [line[level_column:datasets_column].strip() for line in plain[2:5]]
    assert levels == ["critical", "none", "warning"]
    assert all(line[datasets_column:].startswith("0") for line in plain[2:5])
