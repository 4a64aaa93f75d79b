"""
Reading the registry for the API: node pages by an opaque cursor, and entity tags.

A page is a run of node records in id order matching the filters (``status``, ``role``). Its
``next_cursor`` names the last id it gave and the filters: the next page starts after that id,
so records added or removed between two requests shift nothing, and every record present all
along is given exactly once. A cursor is only good for the filters it was made with.

An entity tag names the registry's generation (``registry.Snapshot.tag``) and what was asked:
the same tag, the same answer, so a poller sending ``If-None-Match`` gets 304 until something
in the registry changes.
"""

import base64
import bisect
import hashlib
import json
import re

from .envelope import ApiError

MAX_CURSOR_LENGTH = 1024
# RFC 9110's entity-tag list: ``*`` or tags, weak ones with ``W/``, comma separated.
ENTITY_TAGS = re.compile(r'\*|(?:W/)?"[^"]*"')
NOT_A_CURSOR = "not a cursor this API gave (send next_cursor as it came)"


def _cursor_error(message):
    return ApiError(400, f"cursor: {message}", field="cursor")


def make_cursor(after_id, filters):
    """The opaque cursor of the page after ``after_id`` under ``filters`` ({name: value})."""
    text = json.dumps({"after": after_id, "filters": filters}, sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def check_cursor(value, field="cursor"):
    """A query's cursor as text of a cursor's shape; what it says is read by ``read_cursor``."""
    if len(value) > MAX_CURSOR_LENGTH or not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        raise ApiError(400, f"{field}: {NOT_A_CURSOR}", field=field)
    return value


def read_cursor(cursor, filters):
    """The id a cursor's page starts after; ApiError 400 naming ``cursor`` when it is bad."""
    check_cursor(cursor)
    try:
        content = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as err:
        raise _cursor_error(NOT_A_CURSOR) from err
    if (
        not isinstance(content, dict)
        or not isinstance(content.get("after"), str)
        or not isinstance(content.get("filters"), dict)
    ):
        raise _cursor_error(NOT_A_CURSOR)
    if content["filters"] != filters:
        raise _cursor_error(
            f"was made for other filters ({_describe(content['filters'])}), not "
            f"{_describe(filters)}: keep the filters while paging"
        )
    return content["after"]


def _describe(filters):
    return ", ".join(f"{name}={value}" for name, value in sorted(filters.items())) or "none"


def matching_ids(snapshot, filters):
    """The ids of ``snapshot`` (sorted) whose records match ``filters``."""
    status, role = filters.get("status"), filters.get("role")
    if status is None and role is None:
        return snapshot.ids
    return [
        node_id
        for node_id in snapshot.ids
        if (status is None or snapshot.records[node_id]["status"] == status)
        and (role is None or role in (snapshot.records[node_id].get("roles") or ()))
    ]


def node_page(snapshot, filters, limit=None, offset=0, cursor=None):
    """
    ``{nodes, total, offset, limit, next_cursor}``: the records matching ``filters`` from
    ``offset``, or after ``cursor``, at most ``limit`` of them (None: all).
    """
    if cursor is not None and offset:
        raise _cursor_error("give a cursor or an offset, not both")
    ids = matching_ids(snapshot, filters)
    start = offset if cursor is None else bisect.bisect_right(ids, read_cursor(cursor, filters))
    end = len(ids) if limit is None else start + limit
    page = ids[start:end]
    more = end < len(ids) and bool(page)
    return {
        "nodes": [snapshot.records[node_id] for node_id in page],
        "total": len(ids),
        "offset": start,
        "limit": limit,
        "next_cursor": make_cursor(page[-1], filters) if more else None,
    }


def entity_tag(snapshot, *asked):
    """The strong entity tag of an answer read from ``snapshot`` for what was ``asked``."""
    digest = hashlib.sha256(json.dumps(asked, sort_keys=True, default=str).encode())
    return f'"{snapshot.tag}.{digest.hexdigest()[:16]}"'


def not_modified(if_none_match, tag):
    """Whether an ``If-None-Match`` header value names ``tag`` (weakly compared, as for GET)."""
    if not if_none_match:
        return False
    for candidate in ENTITY_TAGS.findall(if_none_match):
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False
