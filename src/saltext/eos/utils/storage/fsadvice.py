"""
Filesystem advice: which filesystem, mkfs options and mount options suit a workload on a device.

A recommendation starts from the workload's row of ``WORKLOADS`` (filesystems best first) and
is refined by what the minion and the device say:

- the kernel must support the filesystem: listed in /proc/filesystems, else a module that
  ``modprobe --dry-run`` would load, else (no modprobe) a module under /lib/modules/<release>;
- its ``mkfs.<fs>`` must be on PATH;
- the device must be large enough for it and, for ext4, not beyond what is advisable;
- the device's rotational flag and size tune the options (btrfs compression level, mixed
  block groups on a small btrfs) and add notes (periodic TRIM on SSDs).

A filesystem that fails a check is skipped, and the reason of the one recommended says why.

Mount options that trade crash safety for speed (``nobarrier``, ``barrier=0``,
``data=writeback``) are never recommended by default: a power failure with them can corrupt
the filesystem or leave stale data in files. ``allow_unsafe`` adds the ones the filesystem
accepts, each with a warning.

``mount_advice`` applies the same table to filesystems already mounted, for example a database
on ext4 without ``noatime``.
"""

import fnmatch
import functools
import os
import shutil
import stat
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace

from saltext.eos.utils import commands
from saltext.eos.utils import config
from saltext.eos.utils import errors

MIB = 1024**2
GIB = 1024**3
TIB = 1024**4
SECTOR_BYTES = 512  # /sys/.../size counts 512-byte sectors whatever the device's sector size
PROC_FILESYSTEMS = "/proc/filesystems"
SYS_DEV_BLOCK = "/sys/dev/block"
MODULES_ROOT = "/lib/modules"
MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")

UNSAFE_MOUNT_OPTIONS = {
    "nobarrier": "turns off write barriers: a power failure can corrupt the filesystem",
    "barrier=0": "turns off write barriers: a power failure can corrupt the filesystem",
    "data=writeback": (
        "journals metadata only: after a power failure recently written files can hold "
        "stale or garbage data"
    ),
}


@dataclass(frozen=True)
class Filesystem:
    """What a filesystem needs and accepts, whatever the workload."""

    package: str  # the package that ships mkfs.<fs> on Debian and Red Hat alike
    min_bytes: int
    label_max: int
    force_flag: str  # lets mkfs overwrite a signature it found
    fsck_pass: int  # fstab's sixth field: xfs and btrfs check themselves at mount time
    unsafe_options: tuple  # the speed-over-safety mount options it still accepts
    # argv templates that change the label, of an unmounted and of a mounted filesystem
    relabel_unmounted: tuple
    relabel_mounted: tuple
    max_advised_bytes: int | None = None
    max_advised_why: str = ""
    min_why: str = ""


FILESYSTEMS = {
    "ext4": Filesystem(
        package="e2fsprogs",
        min_bytes=16 * MIB,
        min_why="below 16 MiB the journal leaves little room for data",
        label_max=16,
        force_flag="-F",
        fsck_pass=2,
        unsafe_options=("nobarrier", "data=writeback"),
        relabel_unmounted=("e2label", "{device}", "{label}"),
        relabel_mounted=("e2label", "{device}", "{label}"),
        max_advised_bytes=50 * TIB,
        max_advised_why=(
            "ext4 is supported up to 50 TiB by the major distributions and its fsck takes "
            "hours at that size"
        ),
    ),
    "xfs": Filesystem(
        package="xfsprogs",
        min_bytes=300 * MIB,
        min_why="mkfs.xfs refuses devices smaller than 300 MiB",
        label_max=12,
        force_flag="-f",
        fsck_pass=0,
        # xfs dropped nobarrier in Linux 4.19: a mount with it fails.
        unsafe_options=(),
        relabel_unmounted=("xfs_admin", "-L", "{label}", "{device}"),
        relabel_mounted=("xfs_io", "-c", "label -s {label}", "{mount_point}"),
    ),
    "btrfs": Filesystem(
        package="btrfs-progs",
        min_bytes=64 * MIB,
        min_why="mkfs.btrfs needs at least 64 MiB even with mixed block groups",
        label_max=255,
        force_flag="-f",
        fsck_pass=0,
        unsafe_options=("nobarrier",),
        relabel_unmounted=("btrfs", "filesystem", "label", "{device}", "{label}"),
        relabel_mounted=("btrfs", "filesystem", "label", "{mount_point}", "{label}"),
    ),
}


@dataclass(frozen=True)
class Choice:
    """One filesystem for a workload, with the options that suit that workload on it."""

    filesystem: str
    reason: str
    mkfs_options: tuple = ()
    mount_options: tuple = ()


@dataclass(frozen=True)
class Workload:
    choices: tuple  # best first; the first one this minion supports is recommended
    # When set, no local filesystem is recommended: this says what to use instead, and the
    # choices are what such a store keeps its local data on.
    instead: str | None = None


NOATIME = "noatime saves a metadata write on every read"

# The one table of advice: every default of this module is here.
WORKLOADS = {
    "database": Workload(
        choices=(
            Choice(
                "xfs",
                "xfs keeps latency steady under the parallel, fsync-heavy random writes of "
                f"databases; larger log buffers (logbsize=256k) absorb fsync bursts; {NOATIME}",
                mount_options=("noatime", "logbsize=256k"),
            ),
            Choice(
                "ext4",
                "ext4 in its default data=ordered mode is a safe, well-tuned database "
                f"filesystem; {NOATIME}",
                mount_options=("noatime",),
            ),
        )
    ),
    "container": Workload(
        choices=(
            Choice(
                "ext4",
                "ext4 is the most tested backing filesystem of overlay2; image layers are many "
                f"small files and {NOATIME}",
                mount_options=("noatime",),
            ),
            Choice(
                "xfs",
                "xfs backs overlay2 only with ftype=1 (d_type), which mkfs is told explicitly; "
                f"{NOATIME}",
                mkfs_options=("-n", "ftype=1"),
                mount_options=("noatime",),
            ),
        )
    ),
    "backup": Workload(
        choices=(
            Choice(
                "btrfs",
                "btrfs checksums data, so a rotten backup is detected when read, compresses it "
                "(zstd) and snapshots give cheap restore points",
                mount_options=("noatime", "compress=zstd:3"),
            ),
            Choice(
                "xfs",
                "xfs streams large sequential writes well and its reflinks (cp --reflink) make "
                "deduplicated copies",
                mount_options=("noatime",),
            ),
            Choice(
                "ext4",
                "ext4 is simple and robust, with mature repair tools",
                mount_options=("noatime",),
            ),
        )
    ),
    "media": Workload(
        choices=(
            Choice(
                "xfs",
                "xfs streams large files and its delayed allocation keeps them contiguous; "
                f"largeio advertises large preferred I/O sizes to applications; {NOATIME}",
                mount_options=("noatime", "largeio"),
            ),
            Choice(
                "ext4",
                f"ext4 with one inode per MiB (-T largefile) suits few, large files; {NOATIME}",
                mkfs_options=("-T", "largefile"),
                mount_options=("noatime",),
            ),
        )
    ),
    "general": Workload(
        choices=(
            Choice(
                "ext4",
                "ext4 is the most widely used Linux filesystem, with the most mature repair "
                "tools; the kernel's default relatime keeps access times useful at little cost",
            ),
            Choice(
                "xfs",
                "xfs is a robust general-purpose filesystem that scales to very large devices",
            ),
        )
    ),
    "high-performance": Workload(
        choices=(
            Choice(
                "xfs",
                "xfs scales parallel I/O across its allocation groups; larger log buffers "
                f"(logbsize=256k) cut metadata log writes; {NOATIME}",
                mount_options=("noatime", "logbsize=256k"),
            ),
            Choice(
                "ext4",
                f"ext4 is fast on small and medium devices; {NOATIME}",
                mount_options=("noatime",),
            ),
        )
    ),
    "snapshots": Workload(
        choices=(
            Choice(
                "btrfs",
                "btrfs snapshots are instant and share unchanged blocks; noatime keeps reads "
                "from unsharing metadata between snapshots, and light zstd compression saves "
                "space",
                mount_options=("noatime", "compress=zstd:1"),
            ),
            Choice(
                "xfs",
                "xfs has no snapshots of its own: put it on LVM thin provisioning to take "
                "them; reflinks (cp --reflink) give cheap file copies",
                mount_options=("noatime",),
            ),
        )
    ),
    "distributed": Workload(
        instead=(
            "a distributed workload belongs on a distributed store (Ceph, GlusterFS, or the "
            "application's own replication), not on one node's filesystem; the alternatives "
            "are for the local data such a store keeps on each node"
        ),
        choices=(
            Choice(
                "xfs",
                "xfs is the filesystem GlusterFS recommends for bricks; 512-byte inodes keep "
                f"its extended attributes inline; {NOATIME}",
                mkfs_options=("-i", "size=512"),
                mount_options=("noatime", "inode64"),
            ),
            Choice(
                "ext4",
                f"ext4 serves a store's local data directories well; {NOATIME}",
                mount_options=("noatime",),
            ),
        ),
    ),
}

# Mount points whose workload is known without configuration; eos:filesystems:workloads adds
# to them and wins on the same pattern.
WORKLOAD_PATHS = {
    "/var/lib/postgresql*": "database",
    "/var/lib/pgsql*": "database",
    "/var/lib/mysql*": "database",
    "/var/lib/mongodb*": "database",
    "/var/lib/docker*": "container",
    "/var/lib/containerd*": "container",
    "/var/lib/containers*": "container",
    "/var/backups*": "backup",
    "/backup*": "backup",
}

# A btrfs smaller than this reserves space for metadata that data can then not use.
BTRFS_MIXED_BELOW_BYTES = GIB
# On an SSD the device is fast enough that a higher zstd level makes the CPU the bottleneck.
FAST_DEVICE_COMPRESSION = "compress=zstd:1"


class InvalidAdvice(errors.InvalidInput):
    """An argument the advisor cannot use; the message names it and its value."""


class InvalidDevice(InvalidAdvice):
    """A device path that is not a block device."""


class NoUsableFilesystem(errors.OperationFailed):
    """No filesystem of the workload's row can be made on this minion and device."""


# ----------------------------------------------------------------------------- commands


def run_command(argv):
    """Run argv without a shell; a missing program is returncode 127, as in a shell."""
    return commands.run(argv)


# ----------------------------------------------------------------------------- the device


@dataclass(frozen=True)
class DeviceFacts:
    """What /sys says of a block device; rotational is None when the kernel does not say."""

    device: str
    kernel_name: str
    size_bytes: int
    rotational: bool | None
    number: str = ""  # major:minor
    partitions: tuple = ()
    partition_numbers: tuple = ()
    holders: tuple = ()  # device-mapper, md or bcache devices built on it

    def is_or_contains(self, number):
        """Whether the device numbered ``number`` (major:minor) is this one or a partition."""
        return number == self.number or number in self.partition_numbers

    def as_dict(self):
        return {
            "kernel_name": self.kernel_name,
            "size_bytes": self.size_bytes,
            "rotational": self.rotational,
            "partitions": list(self.partitions),
            "holders": list(self.holders),
        }


def device_facts(device, sys_dev_block=SYS_DEV_BLOCK, stat_path=os.stat):
    """
    Size, rotational flag, partitions and holders of ``device`` from /sys.

    The device is found by its major:minor number, so any name of it works (/dev/sdb,
    /dev/disk/by-id/..., /dev/mapper/...). InvalidDevice when it is not a block device.
    """
    if not isinstance(device, str) or not device:
        raise InvalidDevice(f"device: {device!r} is not a device path such as /dev/sdb")
    try:
        status = stat_path(device)
    except OSError as err:
        raise InvalidDevice(f"device: {device!r}: {err.strerror or err}") from err
    if not stat.S_ISBLK(status.st_mode):
        raise InvalidDevice(f"device: {device!r} is not a block device")
    number = _number(status)
    node = os.path.realpath(os.path.join(sys_dev_block, number))
    size_text = _read(os.path.join(node, "size"))
    if size_text is None:
        raise InvalidDevice(f"device: {device!r}: the kernel reports no size for {number}")
    partitions = _partitions(node)
    return DeviceFacts(
        device=device,
        kernel_name=os.path.basename(node),
        size_bytes=int(size_text) * SECTOR_BYTES,
        rotational=_rotational(node),
        number=number,
        partitions=partitions,
        partition_numbers=tuple(_read(os.path.join(node, name, "dev")) for name in partitions),
        holders=_listing(os.path.join(node, "holders")),
    )


def device_number(path, stat_path=os.stat):
    """The major:minor of the block device at ``path``, or None when it is not one."""
    try:
        status = stat_path(path)
    except OSError:
        return None
    return _number(status) if stat.S_ISBLK(status.st_mode) else None


def _number(status):
    return f"{os.major(status.st_rdev)}:{os.minor(status.st_rdev)}"


def _rotational(node):
    # A partition has no queue of its own: its disk's queue answers for it.
    for queue in (os.path.join(node, "queue"), os.path.join(os.path.dirname(node), "queue")):
        value = _read(os.path.join(queue, "rotational"))
        if value is not None:
            return value == "1"
    return None


def _partitions(node):
    return tuple(
        entry for entry in _listing(node) if os.path.exists(os.path.join(node, entry, "partition"))
    )


def _listing(directory):
    try:
        return tuple(sorted(os.listdir(directory)))
    except OSError:
        return ()


def _read(path):
    try:
        with open(path, encoding="ascii") as stream:
            return stream.read().strip()
    except OSError:
        return None


# ----------------------------------------------------------------------------- the minion


@dataclass
class World:
    """What the minion's kernel and tools support; every source injectable for tests."""

    run: Callable = run_command
    which: Callable = shutil.which
    proc_filesystems: str = PROC_FILESYSTEMS
    modules_dir: str = field(default_factory=lambda: os.path.join(MODULES_ROOT, os.uname().release))

    @functools.cached_property
    def _listed(self):
        text = _read(self.proc_filesystems) or ""
        return {line.split()[-1] for line in text.splitlines() if line.split()}

    def kernel_support(self, filesystem):
        """(supported, how we know) for ``filesystem`` in the running kernel."""
        if filesystem in self._listed:
            return True, f"{filesystem} is in {self.proc_filesystems}"
        if self.which("modprobe"):
            # A dry run resolves the module (or finds it built in) without loading anything.
            done = self.run(["modprobe", "--dry-run", "--quiet", filesystem])
            if done.returncode == 0:
                return True, f"modprobe finds the {filesystem} module"
            return False, (
                f"the kernel does not support {filesystem}: it is not in "
                f"{self.proc_filesystems} and modprobe finds no {filesystem} module"
            )
        if self._module_installed(filesystem):
            return True, f"the {filesystem} module is installed under {self.modules_dir}"
        return False, (
            f"the kernel does not support {filesystem}: it is not in {self.proc_filesystems} "
            f"and {self.modules_dir} has no {filesystem} module"
        )

    def _module_installed(self, filesystem):
        relative = os.path.join("kernel", "fs", filesystem, filesystem)
        if any(
            os.path.exists(os.path.join(self.modules_dir, relative + suffix))
            for suffix in MODULE_SUFFIXES
        ):
            return True
        builtin = _read(os.path.join(self.modules_dir, "modules.builtin")) or ""
        return f"{relative}.ko" in builtin.splitlines()

    def mkfs_missing(self, filesystem):
        """Why mkfs for ``filesystem`` cannot run here, or None when it can."""
        if self.which(f"mkfs.{filesystem}"):
            return None
        package = FILESYSTEMS[filesystem].package
        return f"mkfs.{filesystem} is not installed (package {package})"


# ----------------------------------------------------------------------------- advice


@dataclass(frozen=True)
class Candidate:
    """A Choice checked against this minion and device, with its options tuned to them."""

    filesystem: str
    reason: str
    mkfs_options: tuple
    mount_options: tuple
    why_not: str | None = None
    notes: tuple = ()

    @property
    def usable(self):
        return self.why_not is None

    def as_dict(self):
        return {
            "filesystem": self.filesystem,
            "mkfs_options": list(self.mkfs_options),
            "mount_options": list(self.mount_options),
            "reason": self.reason,
            "usable": self.usable,
            "why_not": self.why_not,
        }


@dataclass(frozen=True)
class Recommendation:
    workload: str | None
    device: DeviceFacts | None
    chosen: Candidate | None
    reason: str
    alternatives: tuple
    warnings: tuple = ()

    def as_dict(self):
        chosen = self.chosen
        return {
            "workload": self.workload,
            "device": self.device.device if self.device else None,
            "device_facts": self.device.as_dict() if self.device else None,
            "filesystem": chosen.filesystem if chosen else None,
            "mkfs_options": list(chosen.mkfs_options) if chosen else [],
            "mount_options": list(chosen.mount_options) if chosen else [],
            "reason": self.reason,
            "notes": list(chosen.notes) if chosen else [],
            "warnings": list(self.warnings),
            "alternatives": [candidate.as_dict() for candidate in self.alternatives],
        }


def checked_workload(workload):
    if workload not in WORKLOADS:
        raise InvalidAdvice(f"workload: {workload!r} is not one of {', '.join(WORKLOADS)}")
    return workload


def checked_filesystem(filesystem):
    if filesystem not in FILESYSTEMS:
        raise InvalidAdvice(f"filesystem: {filesystem!r} is not one of {', '.join(FILESYSTEMS)}")
    return filesystem


def recommend(workload=None, facts=None, world=None, filesystem=None, allow_unsafe=False):
    """
    The Recommendation for ``workload`` on the device described by ``facts`` (optional).

    With ``filesystem`` the choice is that filesystem, with the workload's options for it
    when the workload lists it; it must be usable here or NoUsableFilesystem says why.
    Without it the first usable filesystem of the workload's row is chosen.
    """
    world = world or World()
    if workload is None and filesystem is None:
        raise InvalidAdvice("workload or filesystem: give at least one")
    if workload is not None:
        checked_workload(workload)
    if filesystem is not None:
        checked_filesystem(filesystem)
        return _named(workload, filesystem, facts, world, allow_unsafe)
    row = WORKLOADS[workload]
    candidates = tuple(evaluate(choice, workload, facts, world) for choice in row.choices)
    if row.instead:
        return Recommendation(workload, facts, None, row.instead, candidates)
    chosen = next((candidate for candidate in candidates if candidate.usable), None)
    if chosen is None:
        reasons = "; ".join(f"{c.filesystem}: {c.why_not}" for c in candidates)
        raise NoUsableFilesystem(f"no filesystem for workload {workload!r} is usable: {reasons}")
    chosen, warnings = _with_unsafe_options(chosen, allow_unsafe)
    return Recommendation(
        workload,
        facts,
        chosen,
        _reason(chosen, candidates),
        tuple(c for c in candidates if c.filesystem != chosen.filesystem),
        warnings,
    )


def _named(workload, filesystem, facts, world, allow_unsafe):
    listed = {c.filesystem: c for c in WORKLOADS[workload].choices} if workload else {}
    warnings = ()
    if filesystem in listed:
        choice = listed[filesystem]
    else:
        choice = Choice(filesystem, f"{filesystem} was named explicitly")
        if workload:
            advised = ", ".join(listed)
            warnings = (
                f"{filesystem} is not among the filesystems advised for {workload} "
                f"({advised}); it gets no workload-specific options",
            )
    candidate = evaluate(choice, workload, facts, world)
    if not candidate.usable:
        raise NoUsableFilesystem(f"filesystem {filesystem!r} cannot be used: {candidate.why_not}")
    candidate, unsafe_warnings = _with_unsafe_options(candidate, allow_unsafe)
    return Recommendation(
        workload, facts, candidate, candidate.reason, (), warnings + unsafe_warnings
    )


def _reason(chosen, candidates):
    preferred = candidates[0]
    if preferred.filesystem == chosen.filesystem:
        return chosen.reason
    skipped = "; ".join(
        f"{c.filesystem} is not usable: {c.why_not}"
        for c in candidates[: [c.filesystem for c in candidates].index(chosen.filesystem)]
    )
    return f"{chosen.reason} (instead of {preferred.filesystem}: {skipped})"


def evaluate(choice, workload, facts, world):
    """The Candidate for ``choice``: usable or why not, options tuned to the device."""
    why_not = _why_not(choice.filesystem, facts, world)
    mkfs_options, mount_options, notes = _tuned(choice, workload, facts)
    return Candidate(
        filesystem=choice.filesystem,
        reason=choice.reason,
        mkfs_options=mkfs_options,
        mount_options=mount_options,
        why_not=why_not,
        notes=notes,
    )


def _why_not(filesystem, facts, world):
    supported, how = world.kernel_support(filesystem)
    if not supported:
        return how
    missing = world.mkfs_missing(filesystem)
    if missing:
        return missing
    if facts is None:
        return None
    limits = FILESYSTEMS[filesystem]
    if facts.size_bytes < limits.min_bytes:
        return f"the device has {_mib(facts.size_bytes)}: {limits.min_why}"
    if limits.max_advised_bytes and facts.size_bytes > limits.max_advised_bytes:
        return f"the device has {_tib(facts.size_bytes)}: {limits.max_advised_why}"
    return None


def _tuned(choice, workload, facts):
    mkfs_options = list(choice.mkfs_options)
    mount_options = list(choice.mount_options)
    notes = []
    if facts is None:
        return tuple(mkfs_options), tuple(mount_options), ()
    fs = choice.filesystem
    if fs == "btrfs" and facts.size_bytes < BTRFS_MIXED_BELOW_BYTES:
        mkfs_options.append("--mixed")
        notes.append(
            "mixed block groups (--mixed): on a device under 1 GiB, separate metadata block "
            "groups would hold space that data cannot use"
        )
    if facts.rotational is False:
        mount_options = _lighter_compression(mount_options, notes)
        if fs in ("ext4", "xfs"):
            notes.append(
                "SSD: enable periodic TRIM (fstrim.timer) rather than the discard mount "
                "option, which slows every delete"
            )
    if facts.rotational is True and workload in ("database", "high-performance"):
        notes.append(
            "rotational disk: random I/O is limited by seek time whatever the filesystem; "
            "an SSD or NVMe device suits this workload better"
        )
    return tuple(mkfs_options), tuple(mount_options), tuple(notes)


def _lighter_compression(mount_options, notes):
    tuned = []
    for option in mount_options:
        if option_key(option) == "compress" and option != FAST_DEVICE_COMPRESSION:
            notes.append(
                f"SSD: {FAST_DEVICE_COMPRESSION} instead of {option}; on a fast device a "
                "higher zstd level makes the CPU the bottleneck"
            )
            tuned.append(FAST_DEVICE_COMPRESSION)
        else:
            tuned.append(option)
    return tuned


def _with_unsafe_options(candidate, allow_unsafe):
    if not allow_unsafe:
        return candidate, ()
    accepted = FILESYSTEMS[candidate.filesystem].unsafe_options
    if not accepted:
        return candidate, (
            f"allow_unsafe: {candidate.filesystem} accepts none of "
            f"{', '.join(UNSAFE_MOUNT_OPTIONS)} (xfs dropped nobarrier in Linux 4.19); "
            "nothing was added",
        )
    warnings = tuple(f"{option}: {UNSAFE_MOUNT_OPTIONS[option]}" for option in accepted)
    added = tuple(o for o in accepted if o not in candidate.mount_options)
    return replace(candidate, mount_options=candidate.mount_options + added), warnings


def unsafe_options(options):
    """{option: why} for each option of ``options`` that risks data on a power failure."""
    return {
        option: UNSAFE_MOUNT_OPTIONS[option] for option in options if option in UNSAFE_MOUNT_OPTIONS
    }


def option_key(option):
    """The name of a mount option: ``compress`` for ``compress=zstd:1``."""
    return option.split("=", 1)[0]


def _mib(size):
    return f"{size / MIB:.0f} MiB"


def _tib(size):
    return f"{size / TIB:.1f} TiB"


# ----------------------------------------------------------------------------- mounted


def workload_paths(layers):
    """{mount glob: workload}: WORKLOAD_PATHS with ``eos:filesystems:workloads`` over them."""
    key = config.key_name("filesystems", "workloads")
    configured = layers.get("filesystems", "workloads", default={})
    if not isinstance(configured, Mapping):
        raise config.InvalidConfig(f"{key}: {configured!r} is not a mapping of glob: workload")
    for pattern, workload in configured.items():
        if not isinstance(pattern, str) or workload not in WORKLOADS:
            raise config.InvalidConfig(
                f"{key}: {pattern!r}: {workload!r} is not one of {', '.join(WORKLOADS)}"
            )
    return {**WORKLOAD_PATHS, **configured}


def workload_of(mount_point, paths):
    """(workload, the glob that matched) for a mount point, the most specific glob winning."""
    matching = [p for p in paths if fnmatch.fnmatchcase(mount_point, p)]
    if not matching:
        return None, None
    best = max(matching, key=lambda p: (sum(ch not in "*?[]" for ch in p), p))
    return paths[best], best


def mount_advice(fstype, options, workload):
    """
    [{severity, message}] for one mounted filesystem.

    ``options`` are its live mount options; ``workload`` may be None (only the unsafe
    options are then checked).
    """
    advice = [
        {"severity": "warning", "message": f"mounted with {option}: {why}"}
        for option, why in unsafe_options(options).items()
    ]
    if workload is None or fstype not in FILESYSTEMS:
        return advice
    row = WORKLOADS[workload]
    listed = {choice.filesystem: choice for choice in row.choices}
    if fstype not in listed:
        advised = ", ".join(listed)
        advice.append(
            {
                "severity": "advice",
                "message": f"{fstype} is not among the filesystems advised for {workload} "
                f"({advised})",
            }
        )
        return advice
    live_keys = {option_key(option) for option in options}
    for option in listed[fstype].mount_options:
        if option_key(option) not in live_keys:
            advice.append(
                {
                    "severity": "advice",
                    "message": f"a {workload} on {fstype} is mounted without {option}, "
                    f"advised because {listed[fstype].reason}",
                }
            )
    return advice


def mounted_report(mount, paths):
    """One mounted filesystem: its options, its workload (and the glob that said so), advice."""
    options = [option for option in mount.options.split(",") if option]
    workload, pattern = workload_of(mount.mountpoint, paths)
    return {
        "device": mount.device,
        "fstype": mount.fstype,
        "options": options,
        "workload": workload,
        "workload_from": pattern,
        "advice": mount_advice(mount.fstype, options, workload),
    }
