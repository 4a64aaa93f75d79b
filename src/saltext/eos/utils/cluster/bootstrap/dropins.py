"""The drop-in files a bootstrap writes, and what an earlier bootstrap recorded in them."""

import os

import salt.utils.yaml

from saltext.eos.utils import atomic

from .inputs import CLUSTER_KEY
from .inputs import DEFAULT_CLUSTER
from .inputs import FILE_MODE
from .inputs import JOIN_STATE
from .inputs import MASTER_BLOCK
from .inputs import RECORD_KEY
from .inputs import STARTUP_SLS
from .inputs import InvalidRequest

HEADER = (
    "# Written by eos_cluster.bootstrap (mode {mode}). EOS keeps its {daemon} settings in this\n"
    "# drop-in and never edits the main config file; the next bootstrap replaces it, and a\n"
    "# failed bootstrap restores what was here before.\n"
)


def dump(data, mode, daemon):
    body = salt.utils.yaml.safe_dump(data, default_flow_style=False, sort_keys=False)
    return HEADER.format(mode=mode, daemon=daemon) + body


def master_settings(cluster, join_state=JOIN_STATE):
    """The single-mode master drop-in as data: MASTER_BLOCK, discovery and eos:join:state."""
    data = {
        key: [dict(item) if isinstance(item, dict) else item for item in value]
        for key, value in MASTER_BLOCK.items()
    }
    data["discovery"] = {"mapping": {CLUSTER_KEY: cluster}}
    if join_state is not None:
        data["eos"] = {"join": {"state": join_state}}
    return data


def minion_settings(req, minion_id, startup_state=False):
    """The minion drop-in as data: master, id, ports, startup state and what was bootstrapped."""
    data = {"master": req.master, "id": minion_id}
    if req.port is not None:
        data["master_port"] = req.port
    if req.publish_port is not None:
        data["publish_port"] = req.publish_port
    if req.master_finger is not None:
        # Salt's own option: salt-minion and salt-call refuse a master with another key.
        data["master_finger"] = req.master_finger
    if startup_state:
        data["startup_states"] = "sls"
        data["sls_list"] = [STARTUP_SLS]
    # Not under ``eos``: Salt lays a drop-in over the main config file key by key, so an
    # ``eos`` mapping here would hide the node's own ``eos`` settings. Salt ignores this key.
    data[RECORD_KEY] = {
        "mode": req.mode,
        "master": req.master,
        "port": req.port,
        "cluster": req.cluster,
    }
    if req.master_finger is not None:
        data[RECORD_KEY]["master_finger"] = req.master_finger
    return data


def render_master(cluster, join_state=JOIN_STATE):
    return dump(master_settings(cluster, join_state), "single", "salt-master")


def render_minion(req, minion_id, startup_state=False):
    return dump(minion_settings(req, minion_id, startup_state), req.mode, "salt-minion")


def recorded(text):
    """The record of an existing minion drop-in: what an earlier bootstrap did, or None."""
    if not text:
        return None
    try:
        data = salt.utils.yaml.safe_load(text) or {}
    except salt.utils.yaml.YAMLError:
        return None
    record = data.get(RECORD_KEY) if isinstance(data, dict) else None
    return record if isinstance(record, dict) else None


def already_done(req, text):
    """True when the minion drop-in says this node was bootstrapped the way ``req`` asks."""
    record = recorded(text)
    if not record or record.get("mode") != req.mode:
        return False
    if record.get("master_finger") != req.master_finger:
        return False
    if req.mode == "join":
        return record.get("master") == req.master and record.get("port") == req.port
    if req.mode == "discover":
        return req.cluster is None or record.get("cluster") == req.cluster
    return True


def read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def load_yaml_files(files):
    """The merged top-level mappings of YAML config files that exist (later files win)."""
    merged = {}
    for path in files:
        text = read_text(path)
        if not text:
            continue
        try:
            data = salt.utils.yaml.safe_load(text)
        except salt.utils.yaml.YAMLError as err:
            raise InvalidRequest(f"{path}: not valid YAML: {err}") from err
        if isinstance(data, dict):
            merged.update(data)
    return merged


def site_join_state(p):
    """``eos:join:state`` as the master's own config (not EOS's drop-in) sets it, or None."""
    others = []
    if os.path.isdir(p.master_dir):
        others = sorted(
            os.path.join(p.master_dir, name)
            for name in os.listdir(p.master_dir)
            if name.endswith(".conf") and not name.startswith("eos")
        )
    data = load_yaml_files([p.master_conf, *others])
    return ((data.get("eos") or {}).get("join") or {}).get("state")


def hidden_master_keys(p, join_state=JOIN_STATE):
    """
    Keys of the main master config file that the single-mode drop-in would hide.

    Salt lays each drop-in over the main file key by key, replacing a key's whole value (it
    merges drop-ins with each other list by list and mapping by mapping, but not with the main
    file). A ``reactor`` list or an ``eos`` mapping in the main file would silently disappear.
    """
    main = load_yaml_files([p.master_conf])
    keys = set(master_settings(DEFAULT_CLUSTER, join_state))
    return sorted(key for key in keys if key in main)


def site_startup_states(p):
    """The ``startup_states`` the minion's own config sets (main file and non-EOS drop-ins)."""
    others = []
    if os.path.isdir(p.minion_dir):
        others = sorted(
            os.path.join(p.minion_dir, name)
            for name in os.listdir(p.minion_dir)
            if name.endswith(".conf") and not name.startswith("eos")
        )
    return load_yaml_files([p.minion_conf, *others]).get("startup_states")


def write_atomically(path, text, created_dirs=None):
    """Replace ``path`` with ``text`` so a daemon reading it sees the old file or the new one."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o755)
        if created_dirs is not None:
            created_dirs.append(directory)
    atomic.write_file(path, text, FILE_MODE)
