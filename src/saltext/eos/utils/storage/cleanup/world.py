"""What a cleanup run reads and runs outside Python: filesystem usage and commands."""

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from saltext.eos.utils import commands
from saltext.eos.utils.storage import mounts
from saltext.eos.utils.storage import openfiles
from saltext.eos.utils.storage import walk


@dataclass(frozen=True)
class Filesystem:
    """The filesystem being cleaned: its mount point and device number."""

    mount_point: str
    device: int

    @classmethod
    def at(cls, mount_point):
        return cls(mount_point=mount_point, device=os.stat(mount_point).st_dev)


@dataclass(frozen=True)
class Usage:
    used_bytes: int
    # Used plus available to unprivileged users: the denominator df uses for its percent.
    capacity_bytes: int

    def percent(self, used_bytes=None):
        used = self.used_bytes if used_bytes is None else used_bytes
        return 100.0 * used / self.capacity_bytes if self.capacity_bytes else 0.0


def measure_usage(mount_point):
    """The Usage of the filesystem at ``mount_point``, as ``df`` computes it."""
    figures = mounts.figures_from_statvfs(os.statvfs(mount_point))
    return Usage(figures.used_bytes, figures.used_bytes + figures.free_bytes)


CommandResult = commands.CommandResult


def run_command(argv, timeout):
    """Run a tool without a shell, in the C locale so its output parses the same everywhere."""
    return commands.run(argv, timeout=timeout, env=commands.C_LOCALE)


@dataclass
class World:
    """
    Everything a cleanup asks of the system outside the files it walks, injectable for tests.

    ``service_running`` and ``service_stop`` come from the loader module (Salt's service
    module); without them the degrade step is skipped.
    """

    usage: Callable = measure_usage
    run_command: Callable = run_command
    which: Callable = shutil.which
    open_files: Callable = openfiles.scan
    mount_table: Callable = walk.MountTable.read
    now: Callable = time.time
    service_running: Callable | None = None
    service_stop: Callable | None = None
