"""Dataset declarations (``eos:datasets``) and the node and rebalance settings."""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from saltext.eos.utils import config
from saltext.eos.utils.datasets import rebalance
from saltext.eos.utils.datasets import transfer

DECLARATION_FIELDS = frozenset(("role", "path", "pin", "replica_group"))
# fullmatch, never match: with match, "$" also accepts a trailing newline ("data\n").
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


# The one table of defaults for the node side (minion config ``eos:dataset``) and the master
# side (``eos:rebalance``).
NODE_DEFAULTS = {
    "root": "/srv/eos/datasets",  # where this node keeps its datasets
    "capacity_bytes": None,  # a share of a shared filesystem; None: the whole filesystem
    "rsync": transfer.DEFAULT_RSYNC,
}
REBALANCE_DEFAULTS = {
    "threshold": rebalance.DEFAULT_THRESHOLD,
    "transport": "auto",  # local when both nodes report the same host, else ssh
    "ssh_user": None,
    "bwlimit_kbps": None,  # per move, rsync --bwlimit
    "concurrency": 1,  # moves at once
    "auto": False,  # the reactor executes plans, not only computes them
    "lease_seconds": 1800,  # a rebalance lease not renewed this long belongs to a dead run
}


class InvalidDatasets(config.InvalidConfig):
    """``eos:datasets`` (or a dataset report) that cannot be used; names the key and value."""


@dataclass(frozen=True)
class Declaration:
    name: str
    role: str
    path: str
    pin: str | None = None
    replica_group: str | None = None


def declarations(layers):
    """{name: Declaration} from ``eos:datasets``; InvalidDatasets names a bad entry."""
    given = layers.get("datasets", default={})
    if not isinstance(given, Mapping):
        raise InvalidDatasets(f"{config.key_name('datasets')}: {given!r} is not a mapping")
    return {name: _declaration(name, value) for name, value in sorted(given.items())}


def _declaration(name, value):
    key = config.key_name("datasets", name)
    check_name(name, key)
    value = {} if value is None else value
    if not isinstance(value, Mapping):
        raise InvalidDatasets(f"{key}: {value!r} is not a mapping")
    unknown = sorted(map(str, value.keys() - DECLARATION_FIELDS))
    if unknown:
        raise InvalidDatasets(f"{key}: unknown field {unknown[0]!r}")
    return Declaration(
        name=name,
        role=_word(value.get("role", rebalance.DEFAULT_ROLE), f"{key}:role"),
        path=relative_path(value.get("path", name), f"{key}:path"),
        pin=_optional_word(value.get("pin"), f"{key}:pin"),
        replica_group=_optional_word(value.get("replica_group"), f"{key}:replica_group"),
    )


def check_name(name, key="dataset"):
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise InvalidDatasets(
            f"{key}: {name!r} is not a dataset name (letters, digits, '.', '_', '-', "
            "starting with a letter or digit, at most 128)"
        )
    return name


def relative_path(value, key):
    """``value`` when it is a relative path that stays below the root it is joined to."""
    if not isinstance(value, str) or not value or os.path.isabs(value):
        raise InvalidDatasets(f"{key}: {value!r} is not a relative path")
    parts = value.split("/")
    if any(part in ("", ".", "..") or part.startswith(".eos") for part in parts):
        raise InvalidDatasets(f"{key}: {value!r} must name a directory below the dataset root")
    return value


def _word(value, key):
    if not isinstance(value, str) or not value:
        raise InvalidDatasets(f"{key}: {value!r} is not a name")
    return value


def _optional_word(value, key):
    return None if value is None else _word(value, key)


def node_settings(layers):
    """NODE_DEFAULTS overlaid with ``eos:dataset``, checked."""
    settings = _overlay(layers, "dataset", NODE_DEFAULTS)
    root = settings["root"]
    if not isinstance(root, str) or not os.path.isabs(root):
        raise InvalidDatasets(f"{config.key_name('dataset', 'root')}: {root!r} is not absolute")
    capacity = settings["capacity_bytes"]
    if capacity is not None and (
        isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0
    ):
        raise InvalidDatasets(
            f"{config.key_name('dataset', 'capacity_bytes')}: {capacity!r} is not a whole "
            "number of bytes above 0"
        )
    _word(settings["rsync"], config.key_name("dataset", "rsync"))
    return settings


def rebalance_settings(layers):
    """REBALANCE_DEFAULTS overlaid with ``eos:rebalance``, checked."""
    settings = _overlay(layers, "rebalance", REBALANCE_DEFAULTS)
    try:
        rebalance.check_threshold(settings["threshold"])
        transfer.choose_transport(settings["transport"], "", "")
        if settings["bwlimit_kbps"] is not None:
            transfer.check_bwlimit(settings["bwlimit_kbps"])
    except (rebalance.InvalidRebalance, transfer.TransferError) as err:
        raise InvalidDatasets(f"{config.key_name('rebalance')}: {err}") from err
    concurrency = settings["concurrency"]
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidDatasets(
            f"{config.key_name('rebalance', 'concurrency')}: {concurrency!r} is not a whole "
            "number of moves above 0"
        )
    if not isinstance(settings["auto"], bool):
        raise InvalidDatasets(
            f"{config.key_name('rebalance', 'auto')}: {settings['auto']!r} is not true or false"
        )
    if settings["ssh_user"] is not None:
        _word(settings["ssh_user"], config.key_name("rebalance", "ssh_user"))
    settings["lease_seconds"] = config.number(
        settings["lease_seconds"], config.key_name("rebalance", "lease_seconds"), minimum=1
    )
    return settings


def _overlay(layers, section, defaults):
    given = layers.get(section, default={})
    if not isinstance(given, Mapping):
        raise InvalidDatasets(f"{config.key_name(section)}: {given!r} is not a mapping")
    unknown = sorted(map(str, given.keys() - defaults.keys()))
    if unknown:
        raise InvalidDatasets(f"{config.key_name(section)}: unknown key {unknown[0]!r}")
    return {**defaults, **given}
