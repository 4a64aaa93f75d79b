"""Steps that act on files: compress, delete and truncate, each re-checked just before it acts."""

import contextlib
import dataclasses
import gzip
import os
import stat

from saltext.eos.utils.storage import walk

from .safety import DIRECTORY_FLAGS
from .safety import _allocated_for
from .safety import _is_compressed
from .safety import _is_rotated
from .safety import _Keep
from .safety import _matches_any
from .safety import _real_paths

READ_CHUNK = 1024 * 1024


def _compress_logs(context, outcome, progress):
    s = context.settings
    roots = context.usable_directories(s.log_dirs, outcome)
    if not roots:
        return outcome.skip(context.no_directory_reason(s.log_dirs))
    cutoff = context.now - s.compress_after_seconds
    chosen = []
    for root, facts in _log_files(context, roots):
        if _is_compressed(facts.name) or facts.mtime > cutoff:
            continue
        chosen.append((root, facts))
    chosen.sort(key=lambda item: item[1].mtime)
    return _act_on_files(context, outcome, progress, chosen, COMPRESS)


def _tmp_files(context, outcome, progress):
    s = context.settings
    roots = context.usable_directories(s.tmp_dirs, outcome)
    if not roots:
        return outcome.skip(context.no_directory_reason(s.tmp_dirs))
    cutoff = context.now - s.tmp_after_seconds
    # All three times: an archive extracted yesterday keeps its old mtime but has a new ctime.
    chosen = [
        (root, facts)
        for root, facts in context.files_below(roots)
        if max(facts.atime, facts.mtime, facts.ctime) < cutoff
    ]
    chosen.sort(key=lambda item: max(item[1].atime, item[1].mtime, item[1].ctime))
    return _act_on_files(context, outcome, progress, chosen, DELETE)


def _user_caches(context, outcome, progress):
    s = context.settings
    roots = context.usable_directories(s.user_cache_dirs, outcome)
    if not roots:
        return outcome.skip(context.no_directory_reason(s.user_cache_dirs))
    cutoff = context.now - s.user_cache_after_seconds
    chosen = [(r, f) for r, f in context.files_below(roots) if f.mtime <= cutoff]
    # Least recently used first.
    chosen.sort(key=lambda item: item[1].atime)
    return _act_on_files(context, outcome, progress, chosen, DELETE)


def _rotated_logs(context, outcome, progress):
    s = context.settings
    roots = context.usable_directories(s.log_dirs, outcome)
    if not roots:
        return outcome.skip(context.no_directory_reason(s.log_dirs))
    cutoff = context.now - s.rotated_after_seconds
    chosen = [
        (root, facts)
        for root, facts in _log_files(context, roots)
        if _is_rotated(facts.name) and facts.mtime < cutoff
    ]
    chosen.sort(key=lambda item: item[1].mtime)
    return _act_on_files(context, outcome, progress, chosen, DELETE)


def _truncate_live_logs(context, outcome, progress):
    s = context.settings
    roots = context.usable_directories(s.log_dirs, outcome)
    if not roots:
        return outcome.skip(context.no_directory_reason(s.log_dirs))
    chosen = [
        (root, facts)
        for root, facts in _log_files(context, roots)
        if not _is_rotated(facts.name)
        and not _is_compressed(facts.name)
        and facts.allocated > s.truncate_over_bytes
    ]
    # The largest first: the fewest logs lost for the space needed.
    chosen.sort(key=lambda item: -item[1].allocated)
    return _act_on_files(context, outcome, progress, chosen, TRUNCATE)


def _log_files(context, roots):
    """The files below the log directories that log steps may consider."""
    # The journal is journalctl's to vacuum; log_exclude names binary logs kept by their tools.
    journal = _real_paths(context.settings.journal_dirs)
    for root, facts in context.files_below(roots, exclude_dirs=journal):
        if not _matches_any(facts.name, context.settings.log_exclude):
            yield root, facts


def _act_on_files(context, outcome, progress, chosen, operation):
    for root, facts in chosen:
        if progress.reached(outcome.freed_bytes):
            outcome.stopped_at_target = True
            break
        refusal = context.refusal(facts, open_is_fine=operation.open_is_fine)
        if refusal:
            outcome.keep(facts.path, refusal)
            continue
        try:
            if context.dry_run:
                freed, leaves = operation.predict(context, root, facts)
                context.overlay.replace(facts.path, leaves)
            else:
                freed = operation.perform(context, root, facts)
        except _Keep as why:
            outcome.keep(facts.path, str(why))
            continue
        except FileNotFoundError:
            outcome.error(f"{facts.path}: vanished before it could be handled")
            continue
        except OSError as err:
            outcome.error(f"{facts.path}: {err.strerror or err}")
            continue
        outcome.freed(facts.path, freed)


@contextlib.contextmanager
def _parent_directory(root, path, device):
    """
    A descriptor of ``path``'s directory, opened from ``root`` one component at a time with
    O_NOFOLLOW and checked to stay on ``device``: a directory swapped for a symlink after
    the plan was made fails here instead of leading elsewhere.
    """
    relative = os.path.relpath(os.path.dirname(path), root)
    parts = [] if relative == "." else relative.split(os.sep)
    if ".." in parts:
        raise _Keep("outside its root")
    descriptor = os.open(root, DIRECTORY_FLAGS)
    try:
        for part in [None, *parts]:
            if part is not None:
                child = os.open(part, DIRECTORY_FLAGS, dir_fd=descriptor)
                os.close(descriptor)
                descriptor = child
            if os.fstat(descriptor).st_dev != device:
                raise _Keep("on another filesystem")
        yield descriptor
    finally:
        os.close(descriptor)


def _check_still(facts, status, content_too=True):
    """Refuse a file that is no longer the one planned for, or no longer safe to touch."""
    if not stat.S_ISREG(status.st_mode):
        raise _Keep("no longer a regular file")
    if (status.st_dev, status.st_ino) != (facts.device, facts.inode):
        raise _Keep("replaced since it was chosen")
    if status.st_nlink > 1:
        raise _Keep(f"hard link ({status.st_nlink} links): unlinking one frees nothing")
    if content_too and (status.st_size, status.st_mtime_ns) != (facts.size, facts.mtime_ns):
        raise _Keep("modified since it was chosen")


class _Delete:
    open_is_fine = False

    @staticmethod
    def predict(_context, _root, facts):
        return facts.allocated, None

    @staticmethod
    def perform(context, root, facts):
        with _parent_directory(root, facts.path, context.fs.device) as directory:
            status = os.stat(facts.name, dir_fd=directory, follow_symlinks=False)
            _check_still(facts, status)
            # unlink never follows the last component: a link is removed, never its target.
            os.unlink(facts.name, dir_fd=directory)
        return walk.allocated_bytes(status)


class _Truncate:
    # Truncating in place is the one way to get a live log's space back.
    open_is_fine = True

    @staticmethod
    def predict(_context, _root, facts):
        return facts.allocated, dataclasses.replace(facts, size=0, allocated=0)

    @staticmethod
    def perform(context, root, facts):
        flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        with _parent_directory(root, facts.path, context.fs.device) as directory:
            descriptor = os.open(facts.name, flags, dir_fd=directory)
            try:
                before = os.fstat(descriptor)
                # A live log keeps growing between plan and act; only its identity must hold.
                _check_still(facts, before, content_too=False)
                os.ftruncate(descriptor, 0)
                after = os.fstat(descriptor)
            finally:
                os.close(descriptor)
        return walk.allocated_bytes(before) - walk.allocated_bytes(after)


class _ByteCounter:
    """A write-only sink that keeps nothing but the number of bytes written to it."""

    def __init__(self):
        self.count = 0

    def write(self, data):
        self.count += len(data)
        return len(data)

    def flush(self):
        pass


class _Compress:
    open_is_fine = False

    @staticmethod
    def predict(context, root, facts):
        _check_no_gzip_beside(context, facts)
        counter = _ByteCounter()
        with _parent_directory(root, facts.path, context.fs.device) as directory:
            source = _open_for_reading(facts.name, directory)
            try:
                _check_still(facts, os.fstat(source))
                _gzip(source, counter, facts, context.settings.compress_level)
            finally:
                os.close(source)
        compressed = _allocated_for(counter.count, context.block_size)
        freed = facts.allocated - compressed
        if freed <= 0:
            raise _Keep("would not shrink when compressed")
        packed = dataclasses.replace(
            facts,
            path=facts.path + ".gz",
            inode=context.overlay.fake_inode(),
            size=counter.count,
            allocated=compressed,
            ctime=context.now,
        )
        return freed, packed

    @staticmethod
    def perform(context, root, facts):
        _check_no_gzip_beside(context, facts)
        with _parent_directory(root, facts.path, context.fs.device) as directory:
            source = _open_for_reading(facts.name, directory)
            try:
                original = os.fstat(source)
                _check_still(facts, original)
                compressed = _write_gzip(source, original, facts, directory, context)
                try:
                    if compressed >= walk.allocated_bytes(original):
                        raise _Keep("would not shrink when compressed")
                    current = os.stat(facts.name, dir_fd=directory, follow_symlinks=False)
                    _check_still(facts, current)
                except _Keep:
                    # The original stays, so its compressed copy must not.
                    os.unlink(facts.name + ".gz", dir_fd=directory)
                    raise
                os.unlink(facts.name, dir_fd=directory)
            finally:
                os.close(source)
        return walk.allocated_bytes(original) - compressed


def _check_no_gzip_beside(context, facts):
    # Checked when acting, after the safety rules, so that a kept file says why it matters.
    if context.overlay.exists(facts.path + ".gz"):
        raise _Keep(f"{facts.name}.gz already exists")


COMPRESS, DELETE, TRUNCATE = _Compress(), _Delete(), _Truncate()


def _open_for_reading(name, directory):
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        # Reading a log to size its compressed copy should not make it look recently used.
        return os.open(name, flags | os.O_NOATIME, dir_fd=directory)
    except PermissionError:
        # O_NOATIME is for the file's owner (or root) only.
        return os.open(name, flags, dir_fd=directory)


def _gzip(source, sink, facts, level):
    """Stream ``source`` into ``sink``; the same call sizes the dry run and writes the file."""
    os.lseek(source, 0, os.SEEK_SET)
    header_time = int(facts.mtime)
    with gzip.GzipFile(
        filename=facts.name, mode="wb", compresslevel=level, fileobj=sink, mtime=header_time
    ) as packer:
        while chunk := os.read(source, READ_CHUNK):
            packer.write(chunk)


def _write_gzip(source, original, facts, directory, context):
    """Write ``<name>.gz`` beside the source with its owner, mode and times; its allocation."""
    name = facts.name + ".gz"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    target = os.open(name, flags, 0o600, dir_fd=directory)
    try:
        with os.fdopen(target, "wb", closefd=False) as sink:
            _gzip(source, sink, facts, context.settings.compress_level)
        os.fsync(target)
        os.fchown(target, original.st_uid, original.st_gid)
        os.fchmod(target, stat.S_IMODE(original.st_mode))
        os.utime(target, ns=(original.st_atime_ns, original.st_mtime_ns))
        if os.fstat(source).st_mtime_ns != original.st_mtime_ns:
            raise _Keep("written to while it was being compressed")
        allocated = walk.allocated_bytes(os.fstat(target))
    except BaseException:
        os.unlink(name, dir_fd=directory)
        raise
    finally:
        os.close(target)
    return allocated
