"""
Prometheus ``file_sd`` targets: the node exporter of every member of the registry.

``target_groups(records, addresses)`` keeps the members among the registry's records
(``registry.MEMBER_STATUSES``: an unreachable node is still scraped, so its silence shows) and
gives each one group at its address, which comes from the caller (``{node id: address}``, from
the Salt mine say). A member without an address is left out and listed in ``without_address``.
Written as JSON, the groups are what ``file_sd_configs`` reads::

    [{"targets": ["10.0.0.5:9100"], "labels": {"node": "data-1", "roles": ",data,"}}]

An address is ``host`` (the exporter's port is added) or ``host:port``; an IPv6 address is
written in brackets with a port (``[fd00::5]:9100``) or bare without one.
"""

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from saltext.eos.utils import api
from saltext.eos.utils import errors
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.observe import settings as observe_settings

SECTION = "targets"
DEFAULTS = {"node_exporter_port": 9100}
# The scrape job of these targets: the prometheus.yml job and the rules' ``up`` selector.
JOB = "eos-nodes"
NODE_LABEL = "node"
ROLES_LABEL = "roles"
MAX_PORT = 65535


@dataclass(frozen=True)
class Settings:
    node_exporter_port: int


@dataclass(frozen=True)
class Targets:
    """The target groups, in node id order, and the members left out for want of an address."""

    groups: list
    without_address: tuple


def read_settings(given=None):
    """Validated Settings from ``eos:observe:targets`` (a mapping or None)."""
    values = observe_settings.section(SECTION, given, DEFAULTS)
    port = observe_settings.whole_number(
        values["node_exporter_port"], SECTION, "node_exporter_port", minimum=1, maximum=MAX_PORT
    )
    return Settings(node_exporter_port=port)


def target_groups(records, addresses, settings=None):
    """
    The Targets of the members among ``records`` (registry node records) at ``addresses``.

    InvalidInput names an address that is not a host or host:port.
    """
    opts = read_settings(settings)
    if not isinstance(addresses, Mapping):
        raise errors.InvalidInput(
            f"addresses: {addresses!r} is not a mapping of node id to address"
        )
    groups, without_address = [], []
    for record in members(records):
        node_id = record["id"]
        given = addresses.get(node_id)
        if given is None:
            without_address.append(node_id)
            continue
        where = f"address of {node_id}"
        groups.append(
            {
                "targets": [host_port(given, opts.node_exporter_port, where)],
                "labels": node_labels(record),
            }
        )
    return Targets(groups=groups, without_address=tuple(without_address))


def addresses(records, mine, mine_function):
    """
    ``{node id: address}`` of the members among ``records``: the record's own ``address`` (an
    operator gave it at pre-registration, so it wins), else the first address the node
    published in the Salt mine under ``mine_function`` (``mine``: ``{node id: its mine data}``,
    as the master caches it). Only a host or host:port counts: any minion writes its own mine
    data, and one bad value must not stop the others from being scraped. A node with no
    usable address is left out.
    """
    found = {}
    for record in members(records):
        node_id = record["id"]
        candidates = [record.get("address"), *_published(mine.get(node_id), mine_function)]
        usable = next((value for value in candidates if _is_address(value)), None)
        if usable is not None:
            found[node_id] = usable
    return found


def _published(mine_data, mine_function):
    if not isinstance(mine_data, Mapping):
        return []
    published = mine_data.get(mine_function)
    if isinstance(published, Mapping):
        # Published with an ACL (allow_tgt): Salt wraps the data.
        published = published.get("__data__")
    if isinstance(published, str):
        return [published]
    return list(published) if isinstance(published, (list, tuple)) else []


def _is_address(value):
    try:
        host_port(value, MAX_PORT, "address")
    except errors.InvalidInput:
        return False
    return True


def members(records):
    """The member records (accepted, active, unreachable), in node id order."""
    return sorted(
        (record for record in records if record.get("status") in registry.MEMBER_STATUSES),
        key=lambda record: record["id"],
    )


def node_labels(record):
    """The target labels of a node: its id, and its roles as ``,a,b,`` (matchable by regex)."""
    roles = sorted(record.get("roles") or [])
    return {NODE_LABEL: record["id"], ROLES_LABEL: f",{','.join(roles)}," if roles else ""}


def host_port(value, default_port, where):
    """``value`` (``host`` or ``host:port``) as ``host:port``; InvalidInput names ``where``."""
    wrong = errors.InvalidInput(f"{where}: {value!r} is not a host or host:port")
    if not isinstance(value, str) or not value:
        raise wrong
    host, port = _split(value)
    if host is None or not _is_host(host):
        raise wrong
    if port is None:
        return f"{host}:{default_port}"
    if not port.isdigit() or not 1 <= int(port) <= MAX_PORT:
        raise wrong
    return f"{host}:{int(port)}"


def _split(value):
    """``(host, port or None)``; an IPv6 host comes back in brackets, host None if unparsable."""
    if value.startswith("["):
        inner, bracket, rest = value[1:].partition("]")
        if not bracket or not _is_ipv6(inner) or (rest and not rest.startswith(":")):
            return None, None
        return f"[{inner}]", rest[1:] if rest else None
    if value.count(":") > 1:
        # Only an IPv6 address has several colons; without brackets it cannot carry a port.
        return (f"[{value}]", None) if _is_ipv6(value) else (None, None)
    host, colon, port = value.partition(":")
    return host, port if colon else None


def _is_host(host):
    if host.startswith("["):
        return True  # checked by _split
    return bool(api.HOSTNAME_PATTERN.fullmatch(host))


def _is_ipv6(text):
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
