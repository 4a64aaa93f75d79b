"""
Datasets on this node: their sizes, and the steps of a move as the master's
``salt-run eos_storage.rebalance`` drives them.

Configuration (minion config or pillar), every key optional:

.. code-block:: yaml

    eos:
      dataset:
        root: /srv/eos/datasets     # each dataset is a directory below it
        capacity_bytes: null        # this node's share when nodes share a filesystem
        rsync: rsync                # the rsync program

A move runs on its destination: ``pull`` (rsync from the source into
``<root>/.eos-staging/<name>``), ``manifest`` on both sides, ``commit`` (rename into place),
then ``remove`` on the source once the master has switched the placement. ``clean_partial``
deletes what an interrupted move left. The master fires ``eos/storage/rebalance/moved``; this
module fires no events.
"""

import logging
import socket

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.utils import commands
from saltext.eos.utils import config
from saltext.eos.utils import datasets
from saltext.eos.utils import errors
from saltext.eos.utils.datasets import transfer
from saltext.eos.utils.storage import thresholds

log = logging.getLogger(__name__)

__virtualname__ = "eos_dataset"


def __virtual__():
    return __virtualname__


def sizes(paths=None):
    """
    Report this node's dataset space and the datasets under its root.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_dataset.sizes
        salt '*' eos_dataset.sizes paths='{"orders": "orders", "media": "shared/media"}'

    paths
        {name: path below the root} of the datasets to look for (the master passes its
        declarations). Default: every directory directly below the root, by its name.

    Returns ``{root, host, capacity_bytes, used_bytes, cleanup_percent, thresholds: {level:
    percent}, datasets: {name: bytes}}``.
    """
    settings = _settings()
    root = settings["root"]
    if paths is None:
        paths = {name: name for name in datasets.top_level_dirs(root)}
    paths = _checked_paths(paths)
    capacity, used = datasets.node_usage(root, settings["capacity_bytes"])
    limits = _limits(root)
    return {
        "root": root,
        "host": socket.getfqdn(),
        "capacity_bytes": capacity,
        "used_bytes": used,
        "cleanup_percent": limits["cleanup"],
        "thresholds": limits,
        "datasets": datasets.local_sizes(root, paths),
    }


def pull(
    name,
    source_path,
    source_host=None,
    transport="local",
    bwlimit_kbps=None,
    ssh_user=None,
    expected_bytes=0,
):
    """
    Copy a dataset from its source into this node's staging directory for it.

    CLI Example:

    .. code-block:: bash

        salt data-7 eos_dataset.pull orders /srv/eos/datasets/orders source_host=data-3 \\
            transport=ssh bwlimit_kbps=50000 expected_bytes=1073741824

    name
        The dataset.
    source_path
        Its directory on the source node (absolute).
    source_host
        The source's host name (ssh transport).
    transport
        ``local`` (both on this host) or ``ssh``.
    bwlimit_kbps
        rsync --bwlimit, KiB/s.
    ssh_user
        Log in to the source as this user.
    expected_bytes
        The dataset's size; the pull refuses to start without room for it.

    A retried pull resumes in the same staging directory. Returns ``{staging, bytes}``.
    """
    settings = _settings()
    root = settings["root"]
    _name(name)
    free = datasets.free_bytes(root, settings["capacity_bytes"])
    if expected_bytes > free:
        raise CommandExecutionError(
            f"dataset {name}: needs {expected_bytes} bytes, {free} are free under {root}"
        )
    staging = datasets.staging_dir(root, name)
    with errors.salt_errors(caller_errors=(transfer.TransferError,)):
        command = transfer.rsync_command(
            transfer.Endpoint(source_host or "", source_path),
            staging,
            transport,
            bwlimit_kbps=bwlimit_kbps,
            ssh_user=ssh_user,
            rsync=settings["rsync"],
        )
    __salt__["file.makedirs"](staging + "/")
    result = commands.via_salt(__salt__["cmd.run_all"])(command)
    if not result.ok:
        raise CommandExecutionError(
            f"dataset {name}: rsync from {source_host or 'this host'}:{source_path} exited "
            f"{result.returncode}: {result.detail()}"
        )
    return {"staging": staging, "bytes": datasets.tree_bytes(staging)}


def manifest(name, path=None, staged=False):
    """
    Every file of a dataset on this node, with its size and sha256, and the file count.

    CLI Example:

    .. code-block:: bash

        salt data-3 eos_dataset.manifest orders
        salt data-7 eos_dataset.manifest orders staged=True

    name
        The dataset.
    path
        Its directory below the root (default: its name).
    staged
        True: the staging copy a pull made, not the dataset in place.
    """
    root = _settings()["root"]
    directory = (
        datasets.staging_dir(root, _name(name))
        if staged
        else datasets.dataset_dir(root, _path(name, path))
    )
    with errors.salt_errors(prefix=f"dataset {name}"):
        return transfer.manifest(directory)


def commit(name, path=None):
    """
    Move a verified staging copy into place; never over an existing directory.

    CLI Example:

    .. code-block:: bash

        salt data-7 eos_dataset.commit orders
    """
    root = _settings()["root"]
    with errors.salt_errors():
        return {"path": datasets.commit_staging(root, _name(name), _path(name, path))}


def remove(name, path=None):
    """
    Delete a dataset from this node, once the master has placed it elsewhere.

    CLI Example:

    .. code-block:: bash

        salt data-3 eos_dataset.remove orders

    The master calls it only after the copy was verified and the placement switched.
    Returns ``{removed: path or None}``.
    """
    directory = datasets.dataset_dir(_settings()["root"], _path(name, path))
    return {"removed": directory if datasets.remove_tree(directory) else None}


def clean_partial(name, path=None, committed=False):
    """
    Delete what an interrupted move of a dataset left on this node.

    CLI Example:

    .. code-block:: bash

        salt data-7 eos_dataset.clean_partial orders
        salt data-7 eos_dataset.clean_partial orders committed=True

    committed
        The move had committed its copy but not switched the placement: the copy in place
        goes too. The master passes it only when the dataset is placed on another node.
    """
    root = _settings()["root"]
    removed = datasets.clean_partial(root, _name(name), _path(name, path), committed=committed)
    return {"removed": removed}


def _settings():
    with errors.salt_errors():
        return datasets.node_settings(config.Layers.from_salt(__opts__, __pillar__))


def _limits(root):
    layers = config.Layers.from_salt(__opts__, __pillar__)
    with errors.salt_errors():
        limits = thresholds.effective(layers, mount=datasets.mount_point(root))
    return dict(limits.values)


def _checked_paths(paths):
    if not isinstance(paths, dict):
        raise SaltInvocationError(f"paths: {paths!r} is not a mapping of name to path")
    return {_name(name): _path(name, path) for name, path in paths.items()}


def _name(name):
    with errors.salt_errors(caller_errors=(datasets.InvalidDatasets,)):
        return datasets.check_name(name, "name")


def _path(name, path):
    with errors.salt_errors(caller_errors=(datasets.InvalidDatasets,)):
        return datasets.relative_path(_name(name) if path is None else path, "path")
