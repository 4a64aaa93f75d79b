"""A node's dataset root: sizes, usage, staging a copy and committing it by rename."""

import os
import shutil
import stat

from saltext.eos.utils.datasets import transfer

from .moves import MoveFailed
from .settings import DATASET_NAME

# Where a pull stages its copy, under the destination's dataset root: hidden, so a dataset
# can never be named like it, and on the same filesystem, so the commit is a rename.
STAGING_DIR = ".eos-staging"


def dataset_dir(root, path):
    return os.path.join(root, path)


def staging_dir(root, name):
    return os.path.join(root, STAGING_DIR, name)


def tree_bytes(path):
    """Bytes of the regular files under ``path`` (apparent sizes), not following links."""
    total = 0
    for directory, _, names in os.walk(path):
        for name in names:
            info = os.lstat(os.path.join(directory, name))
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def top_level_dirs(root):
    """Names of the directories directly below ``root`` that could be datasets."""
    if not os.path.isdir(root):
        return []
    return sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir(follow_symlinks=False) and DATASET_NAME.fullmatch(entry.name)
    )


def local_sizes(root, paths):
    """{name: bytes} of the datasets of ``paths`` ({name: relative path}) present under root."""
    found = {}
    for name, path in sorted(paths.items()):
        directory = dataset_dir(root, path)
        if os.path.isdir(directory) and not os.path.islink(directory):
            found[name] = tree_bytes(directory)
    return found


def mount_point(path):
    """The mount point of the filesystem holding ``path`` (its nearest existing parent)."""
    path = os.path.realpath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def node_usage(root, capacity_bytes=None):
    """
    (capacity, used) bytes of this node's datasets' space: the filesystem of ``root``, or
    ``capacity_bytes`` of it (a node's share of a shared filesystem), used by what is under
    ``root``, staging copies included (they take room until committed or cleaned).
    """
    if capacity_bytes is not None:
        used = tree_bytes(root) if os.path.isdir(root) else 0
        return capacity_bytes, min(used, capacity_bytes)
    usage = shutil.disk_usage(mount_point(root))
    return usage.total, usage.used


def free_bytes(root, capacity_bytes=None):
    """Bytes a pull may still write: the share left, never more than the filesystem has."""
    free = shutil.disk_usage(mount_point(root)).free
    if capacity_bytes is not None:
        capacity, used = node_usage(root, capacity_bytes)
        free = min(free, capacity - used)
    return free


def commit_staging(root, name, path):
    """Rename the staging copy of ``name`` into place; never over an existing directory."""
    staged = staging_dir(root, name)
    target = dataset_dir(root, path)
    if not os.path.isdir(staged):
        raise MoveFailed(f"dataset {name}: no staging copy at {staged}")
    if os.path.lexists(target):
        raise MoveFailed(f"dataset {name}: {target} exists already; nothing was replaced")
    partial = os.path.join(staged, transfer.PARTIAL_DIR)
    if os.path.isdir(partial):
        shutil.rmtree(partial)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(staged, target)
    return target


def remove_tree(path):
    """Delete ``path`` (a directory, not followed if it is a link); True when it existed."""
    if os.path.islink(path):
        os.unlink(path)
        return True
    if os.path.isdir(path):
        shutil.rmtree(path)
        return True
    return False


def clean_partial(root, name, path, committed=False):
    """
    Delete the staging copy of ``name`` and, when ``committed`` (the move reached its commit
    but not its switch), the copy in place. The caller has checked the dataset is not placed
    here. Returns the paths deleted.
    """
    candidates = [staging_dir(root, name)]
    if committed:
        candidates.append(dataset_dir(root, path))
    return [candidate for candidate in candidates if remove_tree(candidate)]
