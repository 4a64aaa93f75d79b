"""
Checkpoints on a node: the EOS-managed files and the state of the role services, saved before
a change (a join, a role change, a bootstrap) and put back when the change fails.

A checkpoint is a directory in the store, named so that names sort by age::

    <store>/20261125T204501.123Z-join-web-3/
        manifest.json        what was saved: files, trees, services
        files/0, files/1...  the saved contents

It is written under a temporary name and renamed into place, so a crash never leaves half a
checkpoint that a rollback could trust. Only the newest ``KEEP`` are kept.

What is saved:

- **trees**: a directory and the file names (globs) in it that EOS owns, for example every
  file under ``/etc/eos``, or ``eos*.conf`` and ``beacons.conf`` in ``minion.d``. A rollback
  makes the tree match the checkpoint: saved files come back, files created since are removed.
- **services**: ``{name: {active, enabled}}``; a rollback returns them to that state. A
  service whose state could not be read (no service manager, a tool missing from PATH) is
  saved as ``{active: null, enabled: null, unknown: <why>}`` and left alone by a rollback:
  the checkpoint is still taken, and says so.

A rollback first reads and checks every saved file (size and sha256), so a damaged checkpoint
is refused before anything changes; then each file is replaced atomically (written beside its
target, then renamed over it) with its saved mode.
"""

import fnmatch
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass

from saltext.eos.utils import atomic
from saltext.eos.utils import errors

# Where the role states write their files (``eos:config_dir``): a checkpoint saves it.
DEFAULT_CONFIG_DIR = "/etc/eos"
KEEP = 10
MANIFEST = "manifest.json"
FILES_DIR = "files"
TEMP_PREFIX = ".partial-"
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
# A checkpoint guards configuration, not data: a tree this large is a misconfiguration.
MAX_FILES = 10_000
MAX_FILE_BYTES = 16 * 1024 * 1024


class CheckpointError(errors.OperationFailed):
    """A checkpoint that cannot be taken, found or trusted; the message says which and why."""


@dataclass(frozen=True)
class Tree:
    """Files EOS owns: those in ``directory`` whose names match ``patterns``."""

    directory: str
    patterns: tuple = ("*",)
    recursive: bool = False

    def as_dict(self):
        return {
            "directory": self.directory,
            "patterns": list(self.patterns),
            "recursive": self.recursive,
        }

    @classmethod
    def from_dict(cls, data):
        return cls(data["directory"], tuple(data["patterns"]), bool(data["recursive"]))

    def files(self):
        """The matching regular files now, sorted; symlinks are not followed nor saved."""
        if not os.path.isdir(self.directory):
            return []
        found = []
        for root, dirs, names in os.walk(self.directory):
            dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d)))
            for name in sorted(names):
                path = os.path.join(root, name)
                if _owned(self, name) and os.path.isfile(path) and not os.path.islink(path):
                    found.append(path)
            if not self.recursive:
                break
        return found


def _owned(tree, name):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in tree.patterns)


def check_label(label):
    # fullmatch: with match, "$" also accepts a trailing newline ("abc\n").
    if not isinstance(label, str) or not LABEL.fullmatch(label):
        raise CheckpointError(
            f"label: {label!r} must be 1-100 characters of letters, digits, '_', '.', '@' or '-'"
        )
    return label


def new_id(label, now):
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}.{int(now * 1000) % 1000:03d}Z-{check_label(label)}"


def take(store, label, trees, services=None, clock=time.time):
    """
    Save the files of ``trees`` and the ``services`` states; returns the checkpoint summary.

    ``services``: ``{name: {"active": bool, "enabled": bool}}`` as found now.
    """
    os.makedirs(store, mode=0o700, exist_ok=True)
    checkpoint_id = new_id(label, clock())
    staging = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=store)
    try:
        os.mkdir(os.path.join(staging, FILES_DIR))
        files = _save_files(trees, os.path.join(staging, FILES_DIR))
        manifest = {
            "id": checkpoint_id,
            "label": label,
            "created_at": clock(),
            "trees": [tree.as_dict() for tree in trees],
            "files": files,
            "services": dict(sorted((services or {}).items())),
        }
        _write_json(os.path.join(staging, MANIFEST), manifest)
        target = os.path.join(store, checkpoint_id)
        if os.path.exists(target):
            raise CheckpointError(f"checkpoint {checkpoint_id} already exists")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    prune(store)
    return summary(manifest)


def _save_files(trees, into):
    saved = []
    for tree in trees:
        for path in tree.files():
            if len(saved) >= MAX_FILES:
                raise CheckpointError(f"more than {MAX_FILES} files under {tree.directory}")
            info = os.stat(path)
            if info.st_size > MAX_FILE_BYTES:
                raise CheckpointError(
                    f"{path}: {info.st_size} bytes; EOS-managed files are configuration, "
                    f"at most {MAX_FILE_BYTES} bytes"
                )
            blob = str(len(saved))
            with open(path, "rb") as source:
                content = source.read()
            with open(os.path.join(into, blob), "wb") as copy:
                copy.write(content)
            saved.append(
                {
                    "path": path,
                    "blob": blob,
                    "mode": info.st_mode & 0o7777,
                    "uid": info.st_uid,
                    "gid": info.st_gid,
                    "bytes": len(content),
                    "sha256": hashlib.sha256(content).hexdigest(),
                }
            )
    return saved


def checkpoints(store):
    """Every checkpoint in ``store``, newest first, as summaries."""
    return [summary(_manifest(store, checkpoint_id)) for checkpoint_id in _ids(store)]


def summary(manifest):
    return {
        "id": manifest["id"],
        "label": manifest["label"],
        "created_at": manifest["created_at"],
        "files": [entry["path"] for entry in manifest["files"]],
        "trees": [tree["directory"] for tree in manifest["trees"]],
        "services": manifest["services"],
        "unknown_services": unknown_services(manifest["services"]),
    }


def find(store, checkpoint_id=None, label=None):
    """The manifest of ``checkpoint_id``, of the newest with ``label``, or of the newest."""
    ids = _ids(store)
    if checkpoint_id is not None:
        if checkpoint_id not in ids:
            raise CheckpointError(f"no checkpoint {checkpoint_id!r} (see eos_cluster.checkpoints)")
        return _manifest(store, checkpoint_id)
    for candidate in ids:
        manifest = _manifest(store, candidate)
        if label is None or manifest["label"] == label:
            return manifest
    raise CheckpointError(
        f"no checkpoint labelled {label!r}" if label is not None else "no checkpoint taken yet"
    )


def restore(store, manifest):
    """
    Put the files of ``manifest`` back; returns ``{restored, removed, unchanged}`` (paths).

    Services are the caller's to restore (``manifest["services"]``): it knows the service
    manager.
    """
    contents = _verified_contents(store, manifest)
    saved_paths = {entry["path"] for entry in manifest["files"]}
    outcome = {"restored": [], "removed": [], "unchanged": []}
    for entry in manifest["files"]:
        content = contents[entry["blob"]]
        if _same_file(entry, content):
            outcome["unchanged"].append(entry["path"])
            continue
        _replace(entry, content)
        outcome["restored"].append(entry["path"])
    for tree in (Tree.from_dict(data) for data in manifest["trees"]):
        for path in tree.files():
            if path not in saved_paths:
                os.unlink(path)
                outcome["removed"].append(path)
    return outcome


def _verified_contents(store, manifest):
    contents = {}
    for entry in manifest["files"]:
        blob = os.path.join(store, manifest["id"], FILES_DIR, entry["blob"])
        try:
            with open(blob, "rb") as handle:
                content = handle.read()
        except OSError as err:
            raise CheckpointError(
                f"checkpoint {manifest['id']}: the copy of {entry['path']} is unreadable: {err}"
            ) from err
        if hashlib.sha256(content).hexdigest() != entry["sha256"]:
            raise CheckpointError(
                f"checkpoint {manifest['id']}: the copy of {entry['path']} is damaged "
                "(checksum mismatch); nothing was restored"
            )
        contents[entry["blob"]] = content
    return contents


def _same_file(entry, content):
    try:
        # lstat: a symlink put where a saved file was is not that file, whatever it points to.
        info = os.lstat(entry["path"])
        if not stat.S_ISREG(info.st_mode):
            return False
        if info.st_mode & 0o7777 != entry["mode"] or info.st_size != entry["bytes"]:
            return False
        with open(entry["path"], "rb") as handle:
            return handle.read() == content
    except OSError:
        return False


def _replace(entry, content):
    os.makedirs(os.path.dirname(entry["path"]), exist_ok=True)
    owner = (entry["uid"], entry["gid"]) if os.geteuid() == 0 else None
    atomic.write_file(entry["path"], content, entry["mode"], owner)


def prune(store, keep=KEEP):
    """Delete all but the newest ``keep`` checkpoints, and leftovers of interrupted ones."""
    for name in os.listdir(store):
        if name.startswith(TEMP_PREFIX):
            shutil.rmtree(os.path.join(store, name), ignore_errors=True)
    for old in _ids(store)[keep:]:
        shutil.rmtree(os.path.join(store, old), ignore_errors=True)


def _ids(store):
    if not os.path.isdir(store):
        return []
    names = [
        name
        for name in os.listdir(store)
        if not name.startswith(TEMP_PREFIX) and os.path.isfile(os.path.join(store, name, MANIFEST))
    ]
    return sorted(names, reverse=True)


def _manifest(store, checkpoint_id):
    path = os.path.join(store, checkpoint_id, MANIFEST)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {checkpoint_id}: unreadable manifest: {err}") from err


def _write_json(path, data):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())


# --- what EOS manages on a node ----------------------------------------------------------------

# In the minion's include directory (minion.d): the drop-ins EOS writes and the beacons file
# that beacon.present saves to.
MINION_CONFIG_PATTERNS = ("eos*.conf", "beacons.conf")


def managed_trees(config_dir, include_dir):
    """The trees a node checkpoint saves: all of ``config_dir``, EOS's minion config files."""
    return [
        Tree(config_dir, ("*",), recursive=True),
        Tree(include_dir, MINION_CONFIG_PATTERNS),
    ]


def service_states(names, available, active, enabled):
    """
    ``{name: {active, enabled}}`` of the services in ``names`` that this host knows.

    ``available``, ``active`` and ``enabled`` answer for one service name (Salt's
    ``service.available``, ``service.status``, ``service.enabled``). A state that cannot be
    read is recorded as unknown, with the reason, instead of failing the checkpoint.
    """
    states = {}
    for name in names:
        try:
            if available(name):
                states[name] = {"active": bool(active(name)), "enabled": bool(enabled(name))}
        # Each service backend fails its own way: debian_service raises IndexError when
        # `runlevel` is not on PATH, systemd ones raise CommandExecutionError.
        except Exception as err:
            states[name] = {"active": None, "enabled": None, "unknown": _reason(err)}
    return states


def unknown_services(services):
    """The names of the services whose state a checkpoint could not read."""
    return sorted(name for name, state in services.items() if state.get("unknown"))


def _reason(err):
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def role_services(defaults, os_family=None, overrides=None):
    """
    Every service a role state may run: ``services`` of each role in ``defaults`` (the
    package's ``roles/defaults.yaml``), with the ``os_family`` section's and the site's
    (``eos:role_config``) replacements.
    """
    defaults = defaults or {}
    family = ((defaults.get("os_family") or {}).get(os_family) or {}) if os_family else {}
    overrides = overrides or {}
    found = set()
    for role, settings in defaults.items():
        if role == "os_family" or not isinstance(settings, dict):
            continue
        services = []
        for layer in (settings, family.get(role) or {}, overrides.get(role) or {}):
            if isinstance(layer, dict) and "services" in layer:
                services = layer["services"] or []
        found.update(name for name in services if isinstance(name, str) and name)
    return sorted(found)
