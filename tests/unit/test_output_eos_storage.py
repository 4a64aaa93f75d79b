from unittest.mock import patch

import pytest

from saltext.eos.output import eos_storage as outputter
from saltext.eos.utils import formatting

GIB = 1024**3


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
