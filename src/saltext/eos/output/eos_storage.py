"""
Display storage results as tables: ``eos_storage.analyze`` per minion, and the fleet report
of ``salt-run eos_storage.report``.

**analyze**: one table per minion. Each mount gets a row with its size, how full it is (as a
percentage and a bar), inode use, threshold level (coloured when colour is on) and the
estimated time until it is full.

CLI Example:

.. code-block:: bash

    salt '*' eos_storage.analyze --out=eos_storage
    salt-call eos_storage.analyze /var/lib/postgresql --out=eos_storage
    salt-run eos_storage.report --out=eos_storage

Example output:

.. code-block:: text

    node1:
        MOUNT      FSTYPE  SIZE      USED%  USAGE                 INODE%  LEVEL    FULL IN
        ---------  ------  --------  -----  --------------------  ------  -------  -------
        /          ext4    39.1 GiB  62.4%  ############........  8.1%    warning  4d 3h
        /var/data  xfs     statvfs timed out after 5s

A read-only mount shows ``(ro)`` after its filesystem type; figures that are unknown (no
inodes on the filesystem, no growth estimate yet) show as ``-``.

**The fleet report** (``{nodes, conflicts, unreported}``): one table, a row per node (by id)
with its registry status, the capacity and use of its dataset space, the usage as a
percentage and a bar, its level (coloured), its datasets (how many, and their bytes) and the
time until it is full at its recent growth; then a total line over the nodes that reported,
the nodes that did not answer, the datasets that cannot be read (on an unreachable or down
node) and the copies found outside their placement, when there are any. A failed, unreachable
or down node's status is coloured, a joining one's too: each holds moves back or has data
out of reach.

.. code-block:: text

    NODE    STATUS  CAPACITY  USED     USED%  USAGE                 LEVEL    DATASETS       FULL IN
    ------  ------  --------  -------  -----  --------------------  -------  -------------  -------
    data-1  active  4.0 TiB   3.4 TiB  86.0%  #################...  cleanup  12 (3.0 TiB)   6d 2h
    data-2  active  4.0 TiB   1.1 TiB  27.5%  ######..............  none     4 (901.1 GiB)  -
    data-3  down    -         -        -                            -        2 (1.2 TiB)    -
    total: 3 nodes (2 reported), 8.0 TiB capacity, 4.5 TiB used (56.7%), 18 datasets
    unreported: data-3
    unavailable: logs-2023 (data-3, down), media (data-3, down)

A node that has not reported shows ``-`` for what only its report can say.

Any other return (an error message, ``eos_storage.thresholds``, ``eos_storage.rebalance`` or
another function's result) is shown as YAML (under the minion id, or per key of a runner's
return) instead of failing, so this outputter is safe to use with any function.
"""

import salt.utils.color
import salt.utils.yaml

from saltext.eos.utils import formatting

__virtualname__ = "eos_storage"

HEADERS = ("MOUNT", "FSTYPE", "SIZE", "USED%", "USAGE", "INODE%", "LEVEL", "FULL IN")
FLEET_HEADERS = (
    "NODE",
    "STATUS",
    "CAPACITY",
    "USED",
    "USED%",
    "USAGE",
    "LEVEL",
    "DATASETS",
    "FULL IN",
)
# The keys of ``salt-run eos_storage.report``'s return, and what each node row must carry.
FLEET_KEYS = frozenset(("nodes", "conflicts", "unreported", "unavailable"))
FLEET_ROW_KEYS = frozenset(("capacity_bytes", "used_bytes", "usage_percent", "datasets"))
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
# Registry statuses worth a glance: a failed node or a join holds every rebalance back, and
# an unreachable or down node's datasets cannot be read.
STATUS_COLOURS = {
    "failed": "LIGHT_RED",
    "down": "LIGHT_RED",
    "unreachable": "LIGHT_YELLOW",
    "pending": "YELLOW",
    "accepted": "YELLOW",
}


def __virtual__():
    return __virtualname__


def output(data, **kwargs):
    """
    Render ``{minion_id: result}`` as text, a storage table for each ``analyze`` result, or
    a fleet report (``salt-run eos_storage.report``) as one table.
    """
    colours = salt.utils.color.get_colors(__opts__.get("color"), __opts__.get("color_theme"))
    if _is_fleet_report(data):
        return _fleet_table(data, colours)
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
    if _is_storage_report(result):
        body = _storage_table(result, colours)
    elif _is_fleet_report(result):
        # The runner's return reached through a minion (saltutil.runner, say).
        body = _fleet_table(result, colours)
    else:
        body = _as_text(result)
    return f"{title}\n{_indent(body)}" if body else title


def _is_storage_report(result):
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


# --- the fleet report ------------------------------------------------------------------------


def _is_fleet_report(result):
    """
    Whether ``result`` looks like ``salt-run eos_storage.report`` output: a dict with a
    ``nodes`` mapping of node rows (each with ``capacity_bytes``, ``used_bytes``,
    ``usage_percent`` and ``datasets``, which may be None) and at most the lists
    ``conflicts`` and ``unreported`` and the mapping ``unavailable`` beside it.
    """
    if not isinstance(result, dict) or "nodes" not in result or not set(result) <= FLEET_KEYS:
        return False
    nodes = result["nodes"]
    if not isinstance(nodes, dict):
        return False
    if not all(isinstance(row, dict) and set(row) >= FLEET_ROW_KEYS for row in nodes.values()):
        return False
    if not isinstance(result.get("unavailable", {}), dict):
        return False
    return all(isinstance(result.get(key, []), list) for key in ("conflicts", "unreported"))


def _fleet_table(report, colours):
    nodes = report["nodes"]
    rows = [_node_row(node_id, row, colours) for node_id, row in _sorted_items(nodes)]
    lines = [formatting.render_table(FLEET_HEADERS, rows)] if rows else ["no nodes in the registry"]
    if rows:
        lines.append(_fleet_total(nodes))
    unreported = report.get("unreported") or []
    if unreported:
        lines.append("unreported: " + ", ".join(str(node_id) for node_id in unreported))
    unavailable = report.get("unavailable") or {}
    if unavailable:
        lines.append("unavailable: " + ", ".join(_unavailable_cells(unavailable)))
    conflicts = report.get("conflicts") or []
    if conflicts:
        lines.append("conflicts:")
        lines.extend(f"  - {' '.join(str(conflict).split())}" for conflict in conflicts)
    return "\n".join(lines)


def _unavailable_cells(unavailable):
    """``"media (data-3, down)"`` per dataset; a malformed entry shows as it is."""
    for name, where in sorted(unavailable.items(), key=lambda item: str(item[0])):
        if isinstance(where, dict):
            yield f"{name} ({where.get('node')}, {where.get('status')})"
        else:
            yield f"{name} ({where})"


def _node_row(node_id, row, colours):
    usage_percent = _number(row.get("usage_percent"))
    return [
        str(node_id),
        _status_cell(row.get("status"), colours),
        formatting.human_bytes(_number(row.get("capacity_bytes"))),
        formatting.human_bytes(_number(row.get("used_bytes"))),
        _percent(usage_percent),
        formatting.usage_bar(usage_percent),
        _level_cell(row.get("level"), colours),
        _datasets_cell(row.get("datasets")),
        formatting.human_duration(_number(row.get("time_to_full_seconds"))),
    ]


def _status_cell(status, colours):
    if not isinstance(status, str):
        return formatting.MISSING if status is None else str(status)
    colour = colours.get(STATUS_COLOURS.get(status), "")
    return f"{colour}{status}{colours['ENDC']}" if colour else status


def _datasets_cell(placed):
    """How many datasets the node holds and their bytes: ``"3 (1.2 GiB)"``, ``"0"``."""
    if not isinstance(placed, dict):
        return formatting.MISSING if placed is None else str(placed)
    if not placed:
        return "0"
    sizes = [_number(size) for size in placed.values()]
    if any(size is None for size in sizes):
        return str(len(placed))
    return f"{len(placed)} ({formatting.human_bytes(sum(sizes))})"


def _fleet_total(nodes):
    """One line: nodes, how many reported, capacity and use over those, datasets."""
    reported = [
        (row["capacity_bytes"], row["used_bytes"])
        for row in nodes.values()
        if (_number(row.get("capacity_bytes")) or 0) > 0
        and _number(row.get("used_bytes")) is not None
    ]
    capacity = sum(size for size, _ in reported)
    used = sum(taken for _, taken in reported)
    count = sum(len(row["datasets"]) for row in nodes.values() if isinstance(row["datasets"], dict))
    text = f"total: {len(nodes)} node{'' if len(nodes) == 1 else 's'}"
    if len(reported) != len(nodes):
        text += f" ({len(reported)} reported)"
    if reported:
        text += (
            f", {formatting.human_bytes(capacity)} capacity, {formatting.human_bytes(used)} used"
            f" ({_percent(100 * used / capacity)})"
        )
    return text + f", {count} dataset{'' if count == 1 else 's'}"


# --- cells shared by both tables ---------------------------------------------------------------


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
