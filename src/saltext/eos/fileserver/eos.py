"""
Serve the SLS files shipped in this package as ``salt://eos/...``.

The role states, reactor SLS and orchestrations travel inside the installed Python package, so
the master needs no copy of them in its ``file_roots``; adding this backend is enough:

.. code-block:: yaml

    fileserver_backend:
      - roots
      - eos

The package folders appear as:

- ``salt://eos/roles/``: role states (``eos.roles`` in a top file)
- ``salt://eos/reactor/``: reactor SLS for the events in the design
- ``salt://eos/orchestrate/``: orchestrations

The files are the same in every saltenv: they belong to the installed package version, not to
an environment. The backend reports only ``base`` as its own environment, so it creates no new
saltenv, but it answers in whichever saltenv a request names, so an orchestration or top file
in another environment can still include ``eos.roles``. When ``roots`` also serves a path
under ``eos/``, the backend listed first in ``fileserver_backend`` wins.

Only regular files are served: a path with ``..``, ``.``, empty or absolute parts, or whose
real location is not exactly below a package folder (a symlink anywhere below it), is not found.
``file_ignore_regex`` and ``file_ignore_glob`` apply to the ``eos/...`` paths.

Nothing is cached: the files change only when the package is upgraded and are few and small,
so there is no ``update`` to run and no cache or lock to clear.

CLI Example:

.. code-block:: bash

    salt-run fileserver.file_list backend=eos
    salt '*' cp.get_file_str salt://eos/reactor/storage_threshold.sls
"""

import logging
import os

import salt.fileserver
import salt.utils.files
import salt.utils.gzip_util
import salt.utils.hashutils

from saltext.eos import PACKAGE_ROOT

log = logging.getLogger(__name__)

__virtualname__ = "eos"

URL_PREFIX = "eos"
FOLDERS = ("roles", "reactor", "orchestrate")
# The directory holding FOLDERS: the installed package itself.
SOURCE_DIR = str(PACKAGE_ROOT)

NOT_FOUND = {"path": "", "rel": ""}


def __virtual__():
    return __virtualname__


def envs():
    """
    The saltenvs this backend adds: only ``base`` (files are served in every saltenv).

    CLI Example:

    .. code-block:: bash

        salt-run fileserver.envs backend=eos
    """
    return ["base"]


def find_file(path, saltenv="base", **kwargs):
    """
    The local file behind ``eos/<folder>/...`` in any saltenv, or empty path and rel.

    CLI Example:

    .. code-block:: bash

        salt '*' cp.get_file_str salt://eos/reactor/storage_threshold.sls saltenv=prod
    """
    full = _local_path(path)
    if full is None or salt.fileserver.is_file_ignored(__opts__, path):
        return dict(NOT_FOUND)
    return {"path": full, "rel": path, "stat": list(os.stat(full))}


def serve_file(load, fnd):
    """
    One chunk of a found file, gzipped when the client asks for it.

    CLI Example:

    .. code-block:: bash

        salt '*' cp.get_file salt://eos/roles/init.sls /tmp/init.sls
    """
    ret = {"data": "", "dest": ""}
    # Resolve again from the relative path: a fnd dict is never trusted to stay in bounds.
    full = _local_path(fnd.get("rel", ""))
    if full is None or "loc" not in load:
        return ret
    ret["dest"] = fnd["rel"]
    with salt.utils.files.fopen(full, "rb") as handle:
        handle.seek(load["loc"])
        data = handle.read(__opts__["file_buffer_size"])
    gzip = load.get("gzip")
    if gzip and data:
        data = salt.utils.gzip_util.compress(data, gzip)
        ret["gzip"] = gzip
    ret["data"] = data
    return ret


def file_hash(load, fnd):
    """
    The hash of a found file, of the master's ``hash_type``.

    CLI Example:

    .. code-block:: bash

        salt '*' cp.hash_file salt://eos/roles/init.sls
    """
    full = _local_path(fnd.get("rel", ""))
    if full is None:
        return {}
    hash_type = __opts__["hash_type"]
    return {"hash_type": hash_type, "hsum": salt.utils.hashutils.get_hash(full, hash_type)}


def file_list(load):
    """
    Every served file, as ``eos/<folder>/...``.

    CLI Example:

    .. code-block:: bash

        salt-run fileserver.file_list backend=eos
    """
    return _tree()["files"]


def dir_list(load):
    """
    Every served directory, ``eos`` itself included.

    CLI Example:

    .. code-block:: bash

        salt-run fileserver.dir_list backend=eos
    """
    return _tree()["dirs"]


def file_list_emptydirs(load):
    """
    Served directories that hold nothing.

    CLI Example:

    .. code-block:: bash

        salt-run fileserver.empty_dir_list backend=eos
    """
    return _tree()["empty_dirs"]


def symlink_list(load):
    """
    Always empty: symlinks are never served.

    CLI Example:

    .. code-block:: bash

        salt-run fileserver.symlink_list backend=eos
    """
    return {}


def _local_path(path):
    """The regular file behind the ``eos/<folder>/...`` path, or None when not served."""
    if not isinstance(path, str):
        return None
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != URL_PREFIX or parts[1] not in FOLDERS:
        return None
    if any(part in ("", ".", "..") or "\0" in part for part in parts):
        return None
    folder = os.path.realpath(os.path.join(SOURCE_DIR, parts[1]))
    full = os.path.join(folder, *parts[2:])
    # Equal real and expected paths mean no symlink below the folder redirected the lookup.
    if os.path.realpath(full) != full or not os.path.isfile(full):
        return None
    return full


def _tree():
    """Files, directories and empty directories served, as sorted ``eos/...`` paths."""
    files, dirs, empty_dirs = [], [], []
    for folder in FOLDERS:
        local_folder = os.path.join(SOURCE_DIR, folder)
        if not os.path.isdir(local_folder):
            continue
        for parent, subdirs, names in os.walk(local_folder):
            url_parent = _url_path(local_folder, parent, folder)
            dirs.append(url_parent)
            if not subdirs and not names:
                empty_dirs.append(url_parent)
            files.extend(f"{url_parent}/{name}" for name in names)
    if dirs:
        dirs.append(URL_PREFIX)
    return {
        "files": sorted(path for path in files if _served(path)),
        "dirs": sorted(path for path in dirs if not _ignored(path)),
        "empty_dirs": sorted(path for path in empty_dirs if not _ignored(path)),
    }


def _url_path(local_folder, local_dir, folder):
    relative = os.path.relpath(local_dir, local_folder)
    parts = [URL_PREFIX, folder] + ([] if relative == "." else relative.split(os.sep))
    return "/".join(parts)


def _served(path):
    return _local_path(path) is not None and not _ignored(path)


def _ignored(path):
    return salt.fileserver.is_file_ignored(__opts__, path)
