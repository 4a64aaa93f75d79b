"""Steps that ask a tool (package managers, journald, docker) to free space, and measure it."""

import re

from .options import PACKAGE_TOOLS
from .options import _key

# Files the package tools keep for themselves while cleaning.
PACKAGE_CACHE_KEEPS = frozenset({"lock"})
JOURNAL_SUFFIXES = (".journal", ".journal~")
# docker prints sizes in powers of 1000.
DOCKER_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kKMGTP]?B)")
DOCKER_UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15}


def _package_caches(context, outcome, _progress):
    tools = []
    for tool, directories in context.settings.package_caches.items():
        if not directories or not context.world.which(PACKAGE_TOOLS[tool][0]):
            continue
        usable = context.usable_directories(directories, outcome)
        refusal = _preserved_inside(context, usable)
        if refusal:
            outcome.keep(usable[0], refusal)
        elif usable:
            tools.append((tool, usable))
    if not tools:
        return outcome.skip(f"no package manager cache on {context.fs.mount_point}")
    outcome.extra["commands"] = [" ".join(PACKAGE_TOOLS[tool]) for tool, _ in tools]
    for tool, directories in tools:
        _run_and_measure(context, outcome, PACKAGE_TOOLS[tool], directories, _cache_files)
    return None


def _cache_files(context, directories):
    return {
        facts.path: facts
        for _root, facts in context.files_below(directories)
        if facts.name not in PACKAGE_CACHE_KEEPS
    }


def _journal_vacuum(context, outcome, _progress):
    _vacuum_journal(context, outcome, context.settings.journal_max_bytes)


def _journal_vacuum_emergency(context, outcome, _progress):
    _vacuum_journal(context, outcome, context.settings.emergency_journal_max_bytes)


def _vacuum_journal(context, outcome, max_bytes):
    if not context.world.which("journalctl"):
        return outcome.skip("journalctl is not installed")
    directories = context.usable_directories(context.settings.journal_dirs, outcome)
    if not directories:
        return outcome.skip(context.no_directory_reason(context.settings.journal_dirs))
    refusal = _preserved_inside(context, directories)
    if refusal:
        return outcome.skip(refusal)
    command = ("journalctl", f"--vacuum-size={max_bytes}")
    outcome.extra["commands"] = [" ".join(command)]

    def vacuumed(context, directories):
        return _journal_files_removed_by_vacuum(context, directories, max_bytes)

    return _run_and_measure(context, outcome, command, directories, vacuumed)


def _journal_files(context, directories):
    return {
        facts.path: facts
        for _root, facts in context.files_below(directories)
        if facts.name.endswith(JOURNAL_SUFFIXES)
    }


def _journal_files_removed_by_vacuum(context, directories, max_bytes):
    """The journal files ``journalctl --vacuum-size`` removes: archived ones, oldest first."""
    files = _journal_files(context, directories)
    total = sum(facts.allocated for facts in files.values())
    # Archived files are named system@...journal; dirty ones end in ~. Active ones stay.
    archived = sorted(
        (f for f in files.values() if "@" in f.name or f.name.endswith("~")),
        key=lambda facts: facts.mtime,
    )
    removed = {}
    for facts in archived:
        if total <= max_bytes:
            break
        removed[facts.path] = facts
        total -= facts.allocated
    return removed


def _run_and_measure(context, outcome, command, directories, predicted_files):
    """
    A dry run lists the files ``predicted_files`` says the tool removes; a real run runs the
    tool and lists what really went, by allocated bytes before and after.
    """
    if context.dry_run:
        for facts in predicted_files(context, directories).values():
            outcome.freed(facts.path, facts.allocated)
            context.overlay.replace(facts.path, None)
        return
    before = _all_files(context, directories)
    # Measured even when the tool fails: it may have removed part of what it meant to.
    context.run_tool(command, outcome)
    after = _all_files(context, directories)
    for path, facts in before.items():
        if path not in after:
            outcome.freed(path, facts.allocated)
    # Files the tool shrank rather than removed count too; growth by others does not.
    for path, facts in after.items():
        if path in before and before[path].allocated > facts.allocated:
            outcome.freed(path, before[path].allocated - facts.allocated)


def _all_files(context, directories):
    return {facts.path: facts for _root, facts in context.files_below(directories)}


def _preserved_inside(context, directories):
    """Why a tool may not clean these directories (they hold preserved paths), or None."""
    for directory in directories:
        if context.protection.covers_part_of(directory):
            return f"{directory} holds preserved paths, which its tool would not respect"
    return None


def _docker_prune(context, outcome, _progress):
    s = context.settings
    if not s.docker_prune:
        return outcome.skip(f"disabled by {_key('docker_prune')}")
    if not context.world.which("docker"):
        return outcome.skip("docker is not installed")
    if not context.usable_directories([s.docker_root], outcome):
        return outcome.skip(f"{s.docker_root} is not a directory on {context.fs.mount_point}")
    command = ["docker", "system", "prune", "-f"]
    if s.docker_prune_volumes:
        command.append("--volumes")
    outcome.extra["commands"] = [" ".join(command)]
    if context.dry_run:
        return _predict_docker(context, outcome)
    result = context.run_tool(command, outcome)
    if result is not None:
        reclaimed = re.search(r"Total reclaimed space:\s*(.+)", result.stdout)
        freed = _docker_bytes(reclaimed.group(1)) if reclaimed else 0
        outcome.freed(s.docker_root, freed)
    return None


def _predict_docker(context, outcome):
    # docker only estimates: it counts all unused images, prune removes the dangling ones.
    command = ["docker", "system", "df", "--format", "{{.Type}}\t{{.Reclaimable}}"]
    result = context.run_tool(command, outcome)
    if result is None:
        return
    estimate = 0
    for line in result.stdout.splitlines():
        kind, _, reclaimable = line.partition("\t")
        if kind.strip() == "Local Volumes" and not context.settings.docker_prune_volumes:
            continue
        estimate += _docker_bytes(reclaimable)
    outcome.extra["estimate"] = "upper bound from docker system df"
    outcome.freed(context.settings.docker_root, estimate)


def _docker_bytes(text):
    found = DOCKER_SIZE.search(text or "")
    if not found:
        return 0
    number, unit = found.groups()
    return int(float(number) * DOCKER_UNITS.get(unit, 1))
