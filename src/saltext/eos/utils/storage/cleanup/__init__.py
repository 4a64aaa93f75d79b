"""
Progressive space recovery on one filesystem: plan it, predict it, do it, stop at the target.

Levels and their steps, cheapest and least valuable first. A level runs the steps of every
level below it first, and the run stops as soon as the mount is under its target:

==========  ===============================================================================
compress    compress_logs: gzip logs not modified for ``compress_after_days``
cleanup     package_caches (apt-get/dnf/yum/zypper clean), tmp_files (not accessed, modified
            or changed for ``tmp_after_days``), docker_prune, journal_vacuum
degrade     stop_services: stop the configured non-essential services that are running
emergency   user_caches, rotated_logs (deleted after ``rotated_after_days``),
            journal_vacuum_emergency, truncate_live_logs (over ``truncate_over``)
==========  ===============================================================================

Every setting lives under ``eos:cleanup``; ``DEFAULTS`` is the one table of defaults.

Safety rules, applied to every file a step touches:

- only below the configured roots, only on the named mount, never following a symlink:
  roots are ``lstat``-ed and must be on that mount (``st_dev`` and the mount table read once
  per run from /proc/self/mountinfo, so a bind mount of the same filesystem is another
  mount), walks enter neither links nor mount points, and every change is made through
  directory descriptors opened with ``O_NOFOLLOW`` down from the root;
- never protected data (``protected.BUILTIN`` plus ``eos:cleanup:protected``: databases'
  binary and write-ahead logs, journals, keys...) nor ``preserve_paths``, whatever its name
  or age: preserved wins over every setting;
- never a file with several hard links (unlinking one frees nothing), and never a file that a
  process holds open, except to truncate a live log in place;
- sizes are allocated bytes (``st_blocks * 512``), what the filesystem gets back.

A dry run changes nothing (it reads logs with ``O_NOATIME``) and predicts each step against
a simulated view of the disk, so that a later step sees what an earlier one would have left;
a real run on an unchanged disk frees what the dry run said. Real runs take a lock, so that
two never run at once on one node.
"""

from .file_steps import COMPRESS
from .file_steps import DELETE
from .file_steps import READ_CHUNK
from .file_steps import TRUNCATE
from .lock import LOCK_FILE
from .lock import STATE_DIR
from .lock import CleanupBusy
from .lock import exclusive
from .lock import state_dir
from .options import CATEGORIES
from .options import CAUTIOUS_LEVELS
from .options import CRITICAL_LEVEL
from .options import DAY_SECONDS
from .options import DEFAULTS
from .options import GLOB_CHARACTER
from .options import LEVEL_ALIASES
from .options import LEVELS
from .options import PACKAGE_TOOLS
from .options import PROTECTED_CLASS_NAME
from .options import PROTECTED_FIELDS
from .options import REQUEST_LEVELS
from .options import SIZE_TEXT
from .options import SIZE_UNITS
from .options import THRESHOLD_OF_LEVEL
from .options import InvalidRequest
from .options import Request
from .options import Settings
from .options import checked_percent
from .options import default_target
from .options import level_name
from .options import parse_size
from .options import request
from .options import settings
from .outcome import Progress
from .outcome import StepOutcome
from .run import STEPS
from .run import Context
from .run import Step
from .run import cleanup
from .run import reclaimable
from .run import steps_for
from .safety import COMPRESSED_SUFFIXES
from .safety import DIRECTORY_FLAGS
from .safety import ROTATED_NAME
from .safety import FileFacts
from .safety import Overlay
from .safety import Protection
from .services import DEGRADED_FILE
from .services import DegradedServices
from .tool_steps import DOCKER_SIZE
from .tool_steps import DOCKER_UNITS
from .tool_steps import JOURNAL_SUFFIXES
from .tool_steps import PACKAGE_CACHE_KEEPS
from .world import CommandResult
from .world import Filesystem
from .world import Usage
from .world import World
from .world import measure_usage
from .world import run_command

__all__ = [
    "CATEGORIES",
    "CAUTIOUS_LEVELS",
    "COMPRESS",
    "COMPRESSED_SUFFIXES",
    "CRITICAL_LEVEL",
    "DAY_SECONDS",
    "DEFAULTS",
    "DEGRADED_FILE",
    "DELETE",
    "DIRECTORY_FLAGS",
    "DOCKER_SIZE",
    "DOCKER_UNITS",
    "GLOB_CHARACTER",
    "JOURNAL_SUFFIXES",
    "LEVELS",
    "LEVEL_ALIASES",
    "LOCK_FILE",
    "PACKAGE_CACHE_KEEPS",
    "PACKAGE_TOOLS",
    "PROTECTED_CLASS_NAME",
    "PROTECTED_FIELDS",
    "READ_CHUNK",
    "REQUEST_LEVELS",
    "ROTATED_NAME",
    "SIZE_TEXT",
    "SIZE_UNITS",
    "STATE_DIR",
    "STEPS",
    "THRESHOLD_OF_LEVEL",
    "TRUNCATE",
    "CleanupBusy",
    "CommandResult",
    "Context",
    "DegradedServices",
    "FileFacts",
    "Filesystem",
    "InvalidRequest",
    "Overlay",
    "Progress",
    "Protection",
    "Request",
    "Settings",
    "Step",
    "StepOutcome",
    "Usage",
    "World",
    "checked_percent",
    "cleanup",
    "default_target",
    "exclusive",
    "level_name",
    "measure_usage",
    "parse_size",
    "reclaimable",
    "request",
    "run_command",
    "settings",
    "state_dir",
    "steps_for",
]
