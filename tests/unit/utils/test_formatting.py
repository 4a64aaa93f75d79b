import pytest

from saltext.eos.utils import formatting

RED = "\x1b[31m"
RESET = "\x1b[0m"


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (int(15.3 * 1024**3), "15.3 GiB"),
        (2 * 1024**4, "2.0 TiB"),
        (3 * 1024**6, "3.0 EiB"),
        (5 * 1024**9, "5120.0 YiB"),
        (1024**2 - 1, "1.0 MiB"),
        (512.7, "512 B"),
        (-2048, "-2.0 KiB"),
        (None, "-"),
        (float("nan"), "-"),
    ],
)
def test_human_bytes(n, expected):
    assert formatting.human_bytes(n) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (45, "45s"),
        (59.9, "59s"),
        (60, "1m"),
        (12 * 60 + 30, "12m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 20 * 60 + 15, "3h 20m"),
        (12 * 3600, "12h"),
        (2 * 86400 + 4 * 3600 + 59 * 60, "2d 4h"),
        (86400 + 5 * 60, "1d"),
        (5 * 604800 + 2 * 86400 + 3 * 3600, "5w 2d"),
        (520 * 604800, "520w"),
        (11 * 365 * 86400, "> 10y"),
        (float("inf"), "> 10y"),
        (-30, "0s"),
        (None, "-"),
        (float("nan"), "-"),
    ],
)
def test_human_duration(seconds, expected):
    assert formatting.human_duration(seconds) == expected


@pytest.mark.parametrize(
    ("percent", "expected"),
    [
        (0, "." * 20),
        (25, "#####" + "." * 15),
        (100, "#" * 20),
        (2.4, "." * 20),
        (2.6, "#" + "." * 19),
        (150, "#" * 20),
        (-5, "." * 20),
        (None, " " * 20),
    ],
)
def test_usage_bar(percent, expected):
    assert formatting.usage_bar(percent) == expected


@pytest.mark.parametrize("width", [0, 1, 10, 37])
def test_usage_bar_always_has_the_requested_width(width):
    for percent in (None, 0, 33.3, 50, 99.9, 100):
        assert len(formatting.usage_bar(percent, width=width)) == width


def test_usage_bar_width_scales_fill():
    assert formatting.usage_bar(50, width=10) == "#####....."


def test_visible_width_ignores_ansi_codes():
    assert formatting.visible_width(f"{RED}critical{RESET}") == len("critical")
    assert formatting.visible_width("\x1b[1;31mx\x1b[0m") == 1
    assert formatting.visible_width("plain") == 5


def test_render_table_layout():
    table = formatting.render_table(["NAME", "SIZE"], [["/", "1.0 GiB"], ["/var/lib", 7]])
    assert table.splitlines() == [
        "NAME      SIZE",
        "--------  -------",
        "/         1.0 GiB",
        "/var/lib  7",
    ]


def test_render_table_without_rows_keeps_header_and_dashes():
    assert formatting.render_table(["A", "BB"], []) == "A  BB\n-  --"


def test_render_table_without_headers_is_empty():
    assert formatting.render_table([], []) == ""


def test_render_table_lines_up_coloured_cells():
    coloured = f"{RED}critical{RESET}"
    table = formatting.render_table(
        ["LEVEL", "MOUNT"],
        [[coloured, "/"], ["none", "/boot"]],
    )
    plain_lines = [formatting.ANSI_ESCAPE.sub("", line) for line in table.splitlines()]
    assert plain_lines == [
        "LEVEL     MOUNT",
        "--------  -----",
        "critical  /",
        "none      /boot",
    ]
    # The escape codes survive; only the padding ignores them.
    assert coloured in table.splitlines()[2]


def test_render_table_middle_column_starts_at_the_same_place_in_every_line():
    coloured = f"{RED}x{RESET}"
    table = formatting.render_table(["A", "B", "C"], [[coloured, "yy", "z"], ["wwww", "v", "u"]])
    plain_lines = [formatting.ANSI_ESCAPE.sub("", line) for line in table.splitlines()]
    assert [line[6] for line in plain_lines] == ["B", "-", "y", "v"]
    assert [line[10] for line in plain_lines] == ["C", "-", "z", "u"]


def test_render_table_short_row_spans_remaining_columns_without_widening_them():
    table = formatting.render_table(
        ["MOUNT", "SIZE", "LEVEL"],
        [["/", "1 B", "none"], ["/data", "statvfs timed out after 5s"]],
    )
    assert table.splitlines() == [
        "MOUNT  SIZE  LEVEL",
        "-----  ----  -----",
        "/      1 B   none",
        "/data  statvfs timed out after 5s",
    ]


def test_render_table_has_no_trailing_blanks():
    table = formatting.render_table(["A", "B"], [["long value", ""], ["x", "y"]])
    assert all(line == line.rstrip() for line in table.splitlines())


@pytest.mark.parametrize("row", [[], ["a", "b", "c"]])
def test_render_table_rejects_rows_that_do_not_fit(row):
    with pytest.raises(ValueError, match="a row needs 1 to 2 cells"):
        formatting.render_table(["A", "B"], [row])
