"""
A bootstrap's request checked whole, before anything is read from the network or written:
the arguments, the ``eos:bootstrap`` settings, where the config lives, and whether the
master's own config lets EOS's drop-in take effect.
"""

import dataclasses
import os

from saltext.eos.utils import errors
from saltext.eos.utils.cluster.bootstrap.dropins import hidden_master_keys
from saltext.eos.utils.cluster.bootstrap.dropins import site_join_state
from saltext.eos.utils.cluster.bootstrap.dropins import site_startup_states
from saltext.eos.utils.cluster.bootstrap.inputs import DEFAULT_HASH_TYPE
from saltext.eos.utils.cluster.bootstrap.inputs import JOIN_STATE
from saltext.eos.utils.cluster.bootstrap.inputs import SINGLE_MASTER
from saltext.eos.utils.cluster.bootstrap.inputs import BootstrapError
from saltext.eos.utils.cluster.bootstrap.inputs import InvalidRequest
from saltext.eos.utils.cluster.bootstrap.inputs import Request
from saltext.eos.utils.cluster.bootstrap.inputs import Settings
from saltext.eos.utils.cluster.bootstrap.inputs import node_id
from saltext.eos.utils.cluster.bootstrap.inputs import positive
from saltext.eos.utils.cluster.bootstrap.inputs import request
from saltext.eos.utils.cluster.bootstrap.inputs import settings
from saltext.eos.utils.cluster.bootstrap.locations import Paths
from saltext.eos.utils.cluster.bootstrap.locations import paths


class SiteConfigConflict(BootstrapError, errors.InvalidConfig):
    """The node's or master's own Salt config keeps EOS's drop-in from working; nothing changed."""


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A checked bootstrap: its settings, request, the node's id and where its config lives."""

    settings: Settings
    req: Request
    minion_id: str
    paths: Paths


@dataclasses.dataclass(frozen=True)
class Layout:
    """What the site's own config decides: the master's join state and the startup state."""

    join_state: str | None
    startup_state: bool


def prepare(layers, opts, mode, *, master_config_dir=None, timeout=None, **arguments):
    """
    The Prepared bootstrap for ``eos_cluster.bootstrap``'s arguments on the minion of
    ``opts``; InvalidRequest or InvalidConfig names the one at fault.

    ``arguments``: master, port, publish_port, cluster, minion_id, master_finger.
    """
    options = settings(layers)
    if timeout is not None:
        options = dataclasses.replace(options, timeout=positive(timeout, "timeout"))
    req = request(mode, hash_type=opts.get("hash_type") or DEFAULT_HASH_TYPE, **arguments)
    minion_id = node_id(req, opts["id"])
    if req.cluster is None and options.cluster is not None:
        req = dataclasses.replace(req, cluster=options.cluster)
    if mode == "single":
        req = dataclasses.replace(req, master=req.master or SINGLE_MASTER)
    where = paths(
        opts["conf_file"],
        opts.get("default_include") or "minion.d/*.conf",
        master_config_dir or options.master_config_dir,
    )
    return Prepared(options, req, minion_id, where)


def layout(prepared):
    """
    The Layout the site's config leaves to EOS. SiteConfigConflict when a config file cannot be
    read, or (single mode) when the master's main file sets a key EOS's drop-in would hide.
    """
    where, mode = prepared.paths, prepared.req.mode
    try:
        join_state = None
        if mode == "single" and not site_join_state(where):
            join_state = JOIN_STATE
        hidden = hidden_master_keys(where, join_state) if mode == "single" else []
        startup = prepared.settings.startup_state and not site_startup_states(where)
    except InvalidRequest as err:
        raise SiteConfigConflict(str(err)) from err
    if hidden:
        raise SiteConfigConflict(
            f"{where.master_conf} sets {', '.join(hidden)}: Salt lays {where.master_drop_in} "
            "over the main file key by key, so those settings would be hidden. Move them into "
            f"a drop-in of their own (e.g. {os.path.join(where.master_dir, 'site.conf')}; Salt "
            "merges drop-ins list by list and mapping by mapping) and run again; nothing was "
            "changed"
        )
    return Layout(join_state, bool(startup))
