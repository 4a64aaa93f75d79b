"""
Display ``eos_storage.analyze`` results as one table per minion.

Each mount gets a row with its size, how full it is (as a percentage and a bar), inode use,
threshold level (coloured when colour is on) and the estimated time until it is full.

CLI Example:

.. code-block:: bash

    salt '*' eos_storage.analyze --out=eos_storage
    salt-call eos_storage.analyze /var/lib/postgresql --out=eos_storage

Example output:

.. code-block:: text

    node1:
        MOUNT      FSTYPE  SIZE      USED%  USAGE                 INODE%  LEVEL    FULL IN
        ---------  ------  --------  -----  --------------------  ------  -------  -------
        /          ext4    39.1 GiB  62.4%  ############........  8.1%    warning  4d 3h
        /var/data  xfs     statvfs timed out after 5s

A read-only mount shows ``(ro)`` after its filesystem type; figures that are unknown (no
inodes on the filesystem, no growth estimate yet) show as ``-``.

Any other return (an error message, ``eos_storage.thresholds`` or another function's result)
is shown as YAML under the minion id instead of failing, so this outputter is safe to use
with any function.
"""

import salt.utils.color
import salt.utils.yaml

from saltext.eos.utils import formatting

__virtualname__ = "eos_storage"

HEADERS = ("MOUNT", "FSTYPE", "SIZE", "USED%", "USAGE", "INODE%", "LEVEL", "FULL IN")
INDENT = "    "

# Colour names as salt.utils.color.get_colors spells them; unknown levels stay uncoloured.
LEVEL_COLOURS = {
    "none": "GREEN",
    "warning": "YELLOW",
    "compress": "LIGHT_YELLOW",
    "cleanup": "LIGHT_YELLOW",
    "degraded": "LIGHT_RED",
    "emergency": "LIGHT_RED",
    "critical": "RED",
}


def __virtual__():
    return __virtualname__


def output(data, **kwargs):
    """
    Render ``{minion_id: result}`` as text, a storage table for each ``analyze`` result.
    """
    colours = salt.utils.color.get_colors(__opts__.get("color"), __opts__.get("color_theme"))
    if not isinstance(data, dict):
        return _as_text(data)
    return "\n".join(
        _render_minion(minion_id, result, colours) for minion_id, result in _sorted_items(data)
    )


def _sorted_items(data):
    # Minion ids are usually strings, but nothing stops a caller passing other keys.
    return sorted(data.items(), key=lambda item: str(item[0]))


def _render_minion(minion_id, result, colours):
    title = f"{colours['CYAN']}{minion_id}{colours['ENDC']}:"
    body = _storage_table(result, colours) if is_storage_report(result) else _as_text(result)
    return f"{title}\n{_indent(body)}" if body else title


def is_storage_report(result):
    """
    Whether ``result`` looks like ``eos_storage.analyze`` output: a non empty dict of mount
    reports, each carrying either a numeric ``usage_percent`` or an ``error`` message.
    """
    return (
        isinstance(result, dict)
        and bool(result)
        and all(_is_mount_report(report) for report in result.values())
    )


def _is_mount_report(report):
    if not isinstance(report, dict):
        return False
    return _number(report.get("usage_percent")) is not None or isinstance(report.get("error"), str)


def _storage_table(result, colours):
    rows = [_mount_row(mount, report, colours) for mount, report in result.items()]
    return formatting.render_table(HEADERS, rows)


def _mount_row(mount, report, colours):
    fstype = str(report.get("fstype") or formatting.MISSING)
    if report.get("read_only"):
        fstype += " (ro)"
    if "error" in report:
        # Fewer cells than headers: the message runs across the figure columns. A multi-line
        # message (a traceback tail, say) would break the table, so it is kept on one line.
        message = " ".join(str(report["error"]).split())
        return [str(mount), fstype, f"{colours['LIGHT_RED']}{message}{colours['ENDC']}"]
    usage_percent = _number(report.get("usage_percent"))
    return [
        str(mount),
        fstype,
        formatting.human_bytes(_number(report.get("total_bytes"))),
        _percent(usage_percent),
        formatting.usage_bar(usage_percent),
        _percent(_number(report.get("inode_percent"))),
        _level_cell(report.get("level"), colours),
        formatting.human_duration(_number(report.get("time_to_full_seconds"))),
    ]


def _level_cell(level, colours):
    if not isinstance(level, str):
        return formatting.MISSING if level is None else str(level)
    colour = colours.get(LEVEL_COLOURS.get(level), "")
    if not colour:
        return str(level)
    return f"{colour}{level}{colours['ENDC']}"


def _number(value):
    # bool is an int subclass, but True is not a size; strings from odd returns are not either.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _percent(value):
    return formatting.MISSING if value is None else f"{value:.1f}%"


def _as_text(value):
    if not isinstance(value, (dict, list, tuple)):
        # YAML would wrap a lone scalar in document markers ("...") that mean nothing here.
        return str(value)
    # Salt's dumper writes objects it cannot represent as NULL instead of raising.
    return salt.utils.yaml.safe_dump(value, default_flow_style=False).rstrip("\n")


def _indent(text):
    return "\n".join(f"{INDENT}{line}" if line else line for line in text.splitlines())
