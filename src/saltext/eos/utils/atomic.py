"""
Replacing a file so that a reader sees the old content or the new, never half of either.

The new content is written to a temporary file in the same directory (rename is atomic only
within one filesystem), with its final mode (and owner) set before it is visible, flushed to
disk, and renamed over the target; then the directory is synced, so the rename itself
survives a crash. The temporary name starts with a dot and ends in random characters, so
globs such as ``*.prom`` or ``*.conf`` never pick it up. On any error it is removed.
"""

import contextlib
import os
import tempfile


def write_file(path, data, mode=0o644, owner=None):
    """
    Replace ``path`` with ``data`` (str, written as UTF-8, or bytes).

    ``mode``: the file's permission bits; ``owner``: ``(uid, gid)`` to give it, or None.
    """
    directory = os.path.dirname(path) or "."
    content = data.encode("utf-8") if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            os.fchmod(stream.fileno(), mode)
            if owner is not None:
                os.fchown(stream.fileno(), *owner)
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    sync_directory(directory)


def sync_directory(directory):
    """fsync a directory: what makes a rename or an unlink in it durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
