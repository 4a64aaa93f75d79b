"""
Copying a dataset between nodes and proving the copy is whole.

The destination pulls: it runs rsync with the source as the remote side, so a source that
dies mid-copy leaves only a partial staging directory on the destination, never a changed
source. Two transports:

- ``local``: source and destination share a host (two minions on one machine, or one node's
  disks); rsync copies path to path.
- ``ssh`` (the default between hosts): ``rsync -e "ssh -o BatchMode=yes" [user@]host:path``.
  The destination's SSH key must be accepted by the source; BatchMode makes a missing key an
  immediate failure instead of a password prompt that hangs the move.

Verification compares manifests of both trees: every regular file's relative path, size and
sha256, and the file count. rsync's own checks cover the wire; the manifest covers what landed
on disk, which is what the source is about to be deleted on the strength of.
"""

import hashlib
import os
import stat
from dataclasses import dataclass

from saltext.eos.utils import errors

TRANSPORTS = ("auto", "local", "ssh")
DEFAULT_RSYNC = "rsync"
# rsync keeps half-copied files here (inside the staging directory) so a retried pull resumes
# instead of starting each large file again.
PARTIAL_DIR = ".rsync-partial"
HASH_CHUNK = 1024 * 1024


class TransferError(errors.OperationFailed):
    """A transfer that cannot be built or a manifest that cannot be read; names the item."""


@dataclass(frozen=True)
class Endpoint:
    """Where a dataset is: the node's host name and the directory's absolute path."""

    host: str
    path: str


def choose_transport(transport, source_host, destination_host):
    """``local`` or ``ssh`` for a move between these hosts; ``auto`` picks by host."""
    if transport not in TRANSPORTS:
        raise TransferError(f"transport: {transport!r} is not one of {', '.join(TRANSPORTS)}")
    if transport != "auto":
        return transport
    return "local" if source_host == destination_host else "ssh"


def rsync_command(
    source,
    staging,
    transport,
    bwlimit_kbps=None,
    ssh_user=None,
    rsync=DEFAULT_RSYNC,
):
    """
    The argument list that copies ``source`` (an Endpoint) into the local ``staging`` path.

    ``transport`` is ``local`` or ``ssh`` (see ``choose_transport``); ``bwlimit_kbps`` caps
    the bandwidth in KiB/s (rsync's ``--bwlimit``); ``ssh_user`` logs in as that user.
    """
    _absolute(source.path, "source path")
    _absolute(staging, "staging path")
    command = [
        rsync,
        # Archive (permissions, times, links as links), hard links, numeric ids: a node's
        # user names need not match; the files' owners must.
        "--archive",
        "--hard-links",
        "--numeric-ids",
        # A retried pull into the same staging directory drops files the source no longer has.
        "--delete",
        f"--partial-dir={PARTIAL_DIR}",
    ]
    if bwlimit_kbps is not None:
        command.append(f"--bwlimit={check_bwlimit(bwlimit_kbps)}")
    # The trailing slash copies the directory's contents, not the directory, into staging.
    source_path = source.path.rstrip("/") + "/"
    if transport == "local":
        return [*command, source_path, staging.rstrip("/") + "/"]
    if transport == "ssh":
        login = f"{ssh_user}@{source.host}" if ssh_user else source.host
        return [
            *command,
            "--rsh=ssh -o BatchMode=yes",
            f"{login}:{source_path}",
            staging.rstrip("/") + "/",
        ]
    raise TransferError(f"transport: {transport!r} is not local or ssh")


def _absolute(path, what):
    if not isinstance(path, str) or not os.path.isabs(path):
        raise TransferError(f"{what}: {path!r} is not an absolute path")


def check_bwlimit(value):
    """``value`` when it is a whole number of KiB/s above 0, else TransferError."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise TransferError(f"bwlimit_kbps: {value!r} is not a whole number of KiB/s above 0")
    return value


# --- verification ----------------------------------------------------------------------------


def manifest(root):
    """
    ``{files: {relative path: {size, sha256}}, count, bytes}`` of every regular file under
    ``root``. Symbolic links are listed as ``{link: target}`` and never followed; rsync's
    partial directory is left out (it is not part of the dataset).
    """
    if not os.path.isdir(root) or os.path.islink(root):
        raise TransferError(f"manifest: {root!r} is not a directory")
    files = {}
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(name for name in subdirs if name != PARTIAL_DIR)
        for name in sorted(names):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            files[relative] = _entry(path)
    return {
        "files": files,
        "count": len(files),
        "bytes": sum(entry.get("size", 0) for entry in files.values()),
    }


def _entry(path):
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return {"link": os.readlink(path)}
    if not stat.S_ISREG(info.st_mode):
        return {"special": stat.S_IFMT(info.st_mode)}
    return {"size": info.st_size, "sha256": file_sha256(path)}


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def compare(source, copy):
    """
    The differences between two manifests, one sentence each; empty when the copy is whole.

    At most a few paths are named per kind of difference, so a wholly failed copy of a
    million files still gives a readable answer.
    """
    problems = []
    if source["count"] != copy["count"]:
        problems.append(f"file count: source {source['count']}, copy {copy['count']}")
    missing = sorted(source["files"].keys() - copy["files"].keys())
    extra = sorted(copy["files"].keys() - source["files"].keys())
    changed = sorted(
        path
        for path in source["files"].keys() & copy["files"].keys()
        if source["files"][path] != copy["files"][path]
    )
    for what, paths in (("missing in the copy", missing), ("only in the copy", extra)):
        if paths:
            problems.append(f"{len(paths)} {what}: {_some(paths)}")
    if changed:
        problems.append(f"{len(changed)} differ in size or sha256: {_some(changed)}")
    return problems


def _some(paths, shown=5):
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more
