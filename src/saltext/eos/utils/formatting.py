"""
Human readable sizes, durations, usage bars and plain text tables for terminal output.

Plain Python with no Salt imports, so outputters, runners and scripts can all share it.
"""

import datetime
import math
import re

MISSING = "-"

BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
BYTE_STEP = 1024

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
# Beyond this an estimate is noise: growth would have to hold steady for a decade.
DURATION_CEILING = int(10 * 365.25 * DAY)
DURATION_CEILING_TEXT = "> 10y"
DURATION_UNITS = (("w", WEEK), ("d", DAY), ("h", HOUR), ("m", MINUTE))

BAR_FILLED = "#"
BAR_EMPTY = "."

COLUMN_GAP = "  "
# CSI sequences (colours, bold, reset...) take no room on screen.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


def _is_unknown(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def human_bytes(n):
    """
    A byte count in binary units: ``"0 B"``, ``"1023 B"``, ``"1.0 KiB"``, ``"15.3 GiB"``.

    Whole bytes below 1 KiB, one decimal above. ``None`` gives ``"-"``.
    """
    if _is_unknown(n):
        return MISSING
    sign = "-" if n < 0 else ""
    size = abs(n)
    if size < BYTE_STEP:
        return f"{sign}{int(size)} B"
    unit_index = 0
    # Compare the rounded figure so 1023.96 KiB shows as "1.0 MiB", not "1024.0 KiB".
    while round(size, 1) >= BYTE_STEP and unit_index < len(BYTE_UNITS) - 1:
        size /= BYTE_STEP
        unit_index += 1
    return f"{sign}{size:.1f} {BYTE_UNITS[unit_index]}"


def human_duration(seconds):
    """
    A duration in its two largest units: ``"45s"``, ``"12m"``, ``"3h 20m"``, ``"2d 4h"``,
    ``"5w 2d"``.

    Seconds only show below one minute, since sub-minute precision on longer estimates is
    noise. A zero second unit is dropped (``"3h"``). Negative durations count as zero, ``None``
    gives ``"-"`` and anything beyond about ten years gives ``"> 10y"``.
    """
    if _is_unknown(seconds):
        return MISSING
    if seconds > DURATION_CEILING:
        return DURATION_CEILING_TEXT
    remaining = max(int(seconds), 0)
    if remaining < MINUTE:
        return f"{remaining}s"
    parts = []
    for suffix, length in DURATION_UNITS:
        count, remaining = divmod(remaining, length)
        if count or parts:
            parts.append((count, suffix))
    largest, second = parts[0], parts[1] if len(parts) > 1 else None
    text = f"{largest[0]}{largest[1]}"
    if second and second[0]:
        text += f" {second[0]}{second[1]}"
    return text


def usage_bar(percent, width=20):
    """
    A bar of ``width`` characters, ``"#"`` for the used share and ``"."`` for the rest.

    The percent is clamped to 0..100 and rounded to whole characters. ``None`` gives blanks
    of the same width so table columns stay aligned.
    """
    if _is_unknown(percent):
        return " " * width
    share = min(max(percent, 0), 100) / 100
    filled = round(share * width)
    return BAR_FILLED * filled + BAR_EMPTY * (width - filled)


def visible_width(text):
    """How many columns ``text`` takes on a terminal, not counting ANSI escape codes."""
    return len(ANSI_ESCAPE.sub("", text))


def _pad(text, width):
    # str.ljust would count escape codes as characters and under-pad coloured cells.
    return text + " " * (width - visible_width(text))


def _column_widths(headers, rows):
    widths = [visible_width(header) for header in headers]
    for row in rows:
        # The last cell of a short row spans the missing columns, so it sizes nothing.
        sizing_cells = row if len(row) == len(headers) else row[:-1]
        for index, cell in enumerate(sizing_cells):
            widths[index] = max(widths[index], visible_width(cell))
    return widths


def _render_line(cells, widths):
    # The last cell is never padded: trailing blanks would only wrap narrow terminals.
    padded = [_pad(cell, width) for cell, width in zip(cells[:-1], widths, strict=False)]
    return COLUMN_GAP.join([*padded, cells[-1]]).rstrip(" ")


def render_table(headers, rows):
    """
    A plain text table: a header line, a line of dashes, then one line per row.

    Columns are left aligned, as wide as their widest cell, and two spaces apart. Widths
    ignore ANSI colour codes, so coloured cells line up. Cells may be any value (``str()`` is
    applied). A row shorter than the headers lets its last cell run across the remaining
    columns, which suits a message (such as an error) in place of figures.
    """
    headers = [str(header) for header in headers]
    if not headers:
        return ""
    rows = [[str(cell) for cell in row] for row in rows]
    for row in rows:
        if not row or len(row) > len(headers):
            raise ValueError(f"a row needs 1 to {len(headers)} cells, got {len(row)}: {row!r}")
    widths = _column_widths(headers, rows)
    lines = [
        _render_line(headers, widths),
        _render_line(["-" * width for width in widths], widths),
    ]
    lines.extend(_render_line(row, widths) for row in rows)
    return "\n".join(lines)


def timestamp(seconds):
    """ISO 8601 in UTC, to the second (``2026-12-02T17:50:37+00:00``): what records show."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds")
