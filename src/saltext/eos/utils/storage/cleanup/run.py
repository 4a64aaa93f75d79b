"""The run: steps in level order, stopping as soon as the mount is under its target."""

import dataclasses
import functools
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from saltext.eos.utils.storage import openfiles
from saltext.eos.utils.storage import walk

from .file_steps import _compress_logs
from .file_steps import _rotated_logs
from .file_steps import _tmp_files
from .file_steps import _truncate_live_logs
from .file_steps import _user_caches
from .lock import exclusive
from .options import CATEGORIES
from .options import LEVELS
from .options import Settings
from .outcome import Progress
from .outcome import StepOutcome
from .safety import Overlay
from .safety import Protection
from .safety import _is_below
from .safety import _real_path
from .safety import _walk_files
from .services import _stop_services
from .tool_steps import _docker_prune
from .tool_steps import _journal_vacuum
from .tool_steps import _journal_vacuum_emergency
from .tool_steps import _package_caches
from .world import Filesystem
from .world import World


@dataclass
class Context:
    """What every step of one run shares."""

    fs: Filesystem
    settings: Settings
    world: World
    dry_run: bool
    state_dir: str | None
    now: float
    protection: Protection
    open_files: openfiles.OpenFiles
    overlay: Overlay
    block_size: int
    mount_table: walk.MountTable
    # The mount being cleaned; None when the mount table could not be read.
    mount: walk.Mount | None
    mount_error: str | None = None
    keep_services: bool = False

    def usable_directories(self, paths, outcome):
        """The configured directories that exist on this mount and may be touched."""
        if self.mount_error:
            # Without the mount table a bind mount cannot be told from a directory.
            outcome.error(self.mount_error)
            return []
        usable = []
        for path in paths:
            real = _real_path(path)
            try:
                status = os.lstat(real)
            except FileNotFoundError:
                continue
            except OSError as err:
                outcome.error(f"{real}: {err.strerror}")
                continue
            if stat.S_ISLNK(status.st_mode):
                outcome.keep(real, "a symlink: configured directories are never followed")
                continue
            if not stat.S_ISDIR(status.st_mode) or status.st_dev != self.fs.device:
                continue
            if self.mount_table.mount_at(real) != self.mount:
                # Another mount of the same filesystem: a bind mount, cleaned through its own.
                continue
            reason = self.protection.reason(real)
            if reason:
                outcome.keep(real, reason)
                continue
            if real not in usable:
                usable.append(real)
        return usable

    def files_below(self, directories, exclude_dirs=()):
        """(root, FileFacts) of each regular file below the directories, each path once."""
        # By path, not inode: nested roots repeat a path, while the links of a hard-linked
        # file are distinct paths that should each be reported.
        seen = set()
        for root in directories:
            for facts in self.overlay.view(root, _walk_files(root, self.mount_table)):
                if facts.path in seen or any(_is_below(facts.path, d) for d in exclude_dirs):
                    continue
                seen.add(facts.path)
                yield root, facts

    def refusal(self, facts, open_is_fine=False):
        """Why a safety rule forbids touching this file, or None."""
        reason = self.protection.reason(facts.path)
        if reason:
            return reason
        if facts.links > 1:
            return f"hard link ({facts.links} links): unlinking one frees nothing"
        holder = self.open_files.holder(facts.device, facts.inode)
        if holder is not None and not open_is_fine:
            return f"{holder.describe()}: its space would not come back"
        return None

    def no_directory_reason(self, paths):
        if self.mount_error:
            return f"nothing is touched: {self.mount_error}"
        if not paths:
            return "no directories configured"
        return f"none of {', '.join(paths)} is a directory on {self.fs.mount_point}"

    def run_tool(self, argv, outcome):
        """The CommandResult of a tool, or None after reporting its failure in ``outcome``."""
        result = self.world.run_command(argv, self.settings.command_timeout)
        if result.error is not None:
            outcome.error(f"{' '.join(argv)}: {result.error}")
            return None
        if result.returncode != 0:
            outcome.error(f"{' '.join(argv)} exited {result.returncode}: {result.detail()}")
            return None
        return result


@dataclass(frozen=True)
class Step:
    name: str
    level: str
    category: str | None
    run: Callable


def steps_for(level):
    """The steps a level runs, in order: those of every lower level first."""
    rank = LEVELS.index(level)
    return [step for step in STEPS if LEVELS.index(step.level) <= rank]


def cleanup(fs, req, target_percent, cleanup_settings, world, state_dir, keep_services=False):
    """
    Run (or, for a dry run, predict) the steps of ``req.level`` on ``fs`` down to the target.

    A real run holds the node's cleanup lock (CleanupBusy when another run has it); a dry run
    changes nothing and needs no lock. ``keep_services`` skips the degrade step, so that an
    orchestration can try files first and stop services only when that was not enough.
    """
    run = functools.partial(
        _run,
        fs,
        req.level,
        req.dry_run,
        target_percent,
        cleanup_settings,
        world,
        state_dir,
        keep_services=keep_services,
    )
    if req.dry_run:
        return run()
    with exclusive(state_dir, now=world.now):
        return run()


def reclaimable(fs, cleanup_settings, world):
    """
    What every emergency step could free on ``fs``, by category, as a dry run predicts it.

    Services are left out (stopping one frees nothing by itself).
    """
    plain_world = dataclasses.replace(world, service_running=None, service_stop=None)
    result = _run(fs, "emergency", True, None, cleanup_settings, plain_world, None)
    by_category = dict.fromkeys(CATEGORIES, 0)
    for step in result["steps"]:
        if step["category"]:
            by_category[step["category"]] += step["freed_bytes"]
    return {
        "usage_percent": result["before_percent"],
        "by_category": by_category,
        "total_bytes": sum(by_category.values()),
        "steps": [
            {key: step[key] for key in ("name", "category", "freed_bytes", "skip_reason", "errors")}
            for step in result["steps"]
        ],
    }


def _run(
    fs, level, dry_run, target_percent, cleanup_settings, world, state_dir, keep_services=False
):
    start = world.usage(fs.mount_point)
    progress = Progress(usage=start, used_bytes=start.used_bytes, target_percent=target_percent)
    mount_table, mount_error = _mount_table(world)
    context = Context(
        fs=fs,
        settings=cleanup_settings,
        world=world,
        dry_run=dry_run,
        state_dir=state_dir,
        now=world.now(),
        protection=Protection(cleanup_settings.preserve_paths, cleanup_settings.protected),
        open_files=world.open_files(),
        overlay=Overlay(),
        block_size=os.statvfs(fs.mount_point).f_frsize,
        mount_table=mount_table,
        mount=mount_table.mount_at(os.path.realpath(fs.mount_point)),
        mount_error=mount_error,
        keep_services=keep_services,
    )
    outcomes = [_run_step(step, context, progress) for step in steps_for(level)]
    after_percent = progress.percent
    if not dry_run:
        after_percent = round(world.usage(fs.mount_point).percent(), 2)
    return {
        "mount": fs.mount_point,
        "level": level,
        "dry_run": dry_run,
        "before_percent": round(start.percent(), 2),
        "after_percent": after_percent,
        "freed_bytes": sum(outcome.freed_bytes for outcome in outcomes),
        "target_percent": target_percent,
        "target_reached": progress.reached(),
        "steps": [outcome.as_dict(cleanup_settings.max_listed_files) for outcome in outcomes],
    }


def _mount_table(world):
    """The run's one reading of the mount table, or an empty one and why it is missing."""
    try:
        return world.mount_table(), None
    except (OSError, ValueError) as err:
        return walk.MountTable(()), f"cannot read the mount table: {err}"


def _run_step(step, context, progress):
    outcome = StepOutcome(name=step.name, level=step.level, category=step.category)
    if progress.reached():
        outcome.skip(f"target reached: {progress.percent:g}% is below {progress.target_percent:g}%")
        return outcome
    try:
        step.run(context, outcome, progress)
    except Exception as err:  # one broken step must not stop the others
        outcome.error(f"{step.name} failed: {err}")
    if context.dry_run:
        progress.used_bytes -= outcome.freed_bytes
    else:
        # Measured, not computed: other writers count too.
        progress.used_bytes = context.world.usage(context.fs.mount_point).used_bytes
    return outcome


STEPS = (
    Step("compress_logs", "compress", "logs", _compress_logs),
    Step("package_caches", "cleanup", "caches", _package_caches),
    Step("tmp_files", "cleanup", "tmp", _tmp_files),
    Step("docker_prune", "cleanup", "containers", _docker_prune),
    Step("journal_vacuum", "cleanup", "journal", _journal_vacuum),
    Step("stop_services", "degrade", None, _stop_services),
    Step("user_caches", "emergency", "caches", _user_caches),
    Step("rotated_logs", "emergency", "logs", _rotated_logs),
    Step("journal_vacuum_emergency", "emergency", "journal", _journal_vacuum_emergency),
    Step("truncate_live_logs", "emergency", "logs", _truncate_live_logs),
)
