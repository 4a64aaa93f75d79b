"""
Provisioning: make a filesystem on a block device, mount it, persist it in fstab by UUID and
give its root directory an owner and a mode, each step only when it is not done yet.

Every guard is checked before anything changes, so a refusal leaves the device, the mount
point and fstab as they were:

- a device that holds anything (a filesystem of another type, a partition table, an LVM,
  RAID or LUKS signature, or non-zero bytes at its start that no signature explains) is
  formatted only with ``force``, and the refusal says what was found; a device that already
  holds the wanted filesystem is never formatted, with or without ``force``;
- a device that is, or has a partition that is, mounted anywhere but at the mount point, in
  use as swap, or what device-mapper (LVM, LUKS), md or bcache is built on (the holders in
  /sys), is refused even with ``force``, and the refusal names the partition and its user;
- a mount point where another device is mounted is refused; a non-empty directory is
  mounted over only with ``force``, since the mount hides its files;
- an fstab line for another mount point that names this device is refused, and so are two
  lines for the mount point.

fstab is replaced atomically (a new file, synced, renamed over the old one), so a crash
leaves the old or the new file, never a half-written one that stops the next boot.
"""

import grp
import json
import os
import pwd
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

from saltext.eos.utils import atomic
from saltext.eos.utils import errors
from saltext.eos.utils.storage import fsadvice
from saltext.eos.utils.storage import mounts

FSTAB = "/etc/fstab"
PROC_SWAPS = "/proc/swaps"
IN_USE = "the device is never touched while it or a partition of it is in use"
FSTAB_MODE = 0o644
# Non-zero bytes this far into a device with no signature are data of an unknown kind.
HEAD_BYTES = fsadvice.MIB
# The root directory of a filesystem mkfs has just made.
NEW_ROOT = (0, 0, 0o755)
BLKID_NOTHING_FOUND = 2
BLKID_AMBIVALENT = 8
# Options that mount(8) consumes itself or that the kernel takes as defaults without listing
# them in /proc/mounts: they can never be seen on a live mount.
UNSHOWN_OPTIONS = frozenset(
    {
        "defaults",
        "auto",
        "noauto",
        "nofail",
        "user",
        "nouser",
        "users",
        "owner",
        "group",
        "_netdev",
        "async",
        "exec",
        "suid",
        "dev",
        "atime",
        "diratime",
        "barrier",
        "barrier=1",
        "data=ordered",
    }
)
UNSHOWN_PREFIXES = ("x-", "X-", "comment=")
PREDICTED_UUID = "<assigned-by-mkfs>"


class InvalidRequest(errors.InvalidInput):
    """An argument that cannot be used; the message names it and its value."""


class Refused(errors.OperationFailed):
    """Going on would destroy or hide data, or break a boot; the message says what was found."""


class CommandFailed(errors.OperationFailed):
    """A command (blkid, mkfs, mount, ...) failed; the message has its output."""


class StepFailed(errors.OperationFailed):
    """A step failed after others succeeded; ``changes`` lists the ones that were done."""

    def __init__(self, message, changes):
        super().__init__(message)
        self.changes = changes


# ----------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class Request:
    mount_point: str
    device: str
    filesystem: str
    mkfs_options: tuple = ()
    mount_options: tuple = ()
    label: str | None = None
    persist: bool = True
    force: bool = False
    uid: int | None = None
    gid: int | None = None
    mode: int | None = None
    fstab: str = FSTAB
    warnings: tuple = ()

    @property
    def options_text(self):
        return ",".join(self.mount_options) or "defaults"

    @property
    def visible_options(self):
        """The mount options that /proc/mounts shows once they are in effect."""
        return tuple(option for option in self.mount_options if is_shown(option))


def request(
    name,
    device,
    filesystem,
    mkfs_options=(),
    mount_options=(),
    label=None,
    persist=True,
    force=False,
    user=None,
    group=None,
    mode=None,
    fstab=FSTAB,
    allow_unsafe=False,
):
    """A validated Request; InvalidRequest names the argument and value that are wrong."""
    mount_point = _mount_point(name)
    device = _device(device)
    fsadvice.checked_filesystem(filesystem)
    mount_options = option_list(mount_options, "options")
    mkfs_options = _mkfs_options(mkfs_options)
    label = _label(label, filesystem)
    for flag_name, flag in (("persist", persist), ("force", force), ("allow_unsafe", allow_unsafe)):
        if not isinstance(flag, bool):
            raise InvalidRequest(f"{flag_name}: {flag!r} is not True or False")
    unsafe = fsadvice.unsafe_options(mount_options)
    if unsafe and not allow_unsafe:
        option, why = next(iter(unsafe.items()))
        raise InvalidRequest(f"options: {option} {why}; pass allow_unsafe=True to accept that risk")
    return Request(
        mount_point=mount_point,
        device=device,
        filesystem=filesystem,
        mkfs_options=mkfs_options,
        mount_options=mount_options,
        label=label,
        persist=persist,
        force=force,
        uid=_user_id(user),
        gid=_group_id(group),
        mode=parse_mode(mode),
        fstab=_fstab_path(fstab) if persist else fstab,
        warnings=tuple(f"{option}: {why}" for option, why in unsafe.items()),
    )


def option_list(value, name):
    """Mount options from "a,b" or [a, b]; InvalidRequest naming ``name`` when malformed."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise InvalidRequest(f"{name}: {value!r} is not a list of mount options")
    options = tuple(item.strip() for item in items if item.strip())
    for option in options:
        if any(char.isspace() or char == "," for char in option):
            raise InvalidRequest(f"{name}: {option!r} is not a single mount option")
    return options


def _mkfs_options(value):
    if value is None:
        return ()
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise InvalidRequest(f"mkfs_options: {value!r} is not a list of mkfs arguments")
    return tuple(items)


def _mount_point(name):
    if not isinstance(name, str) or not name.startswith("/") or "\n" in name:
        raise InvalidRequest(f"name: {name!r} is not an absolute mount point path")
    point = os.path.normpath(name)
    if point == "/":
        raise InvalidRequest("name: '/' is the root filesystem; it is never provisioned")
    return point


def _device(device):
    if not isinstance(device, str) or not device.startswith("/"):
        raise InvalidRequest(f"device: {device!r} is not a device path such as /dev/sdb")
    return device


def _label(label, filesystem):
    if label is None:
        return None
    limit = fsadvice.FILESYSTEMS[filesystem].label_max
    if not isinstance(label, str) or not label or not label.isprintable():
        raise InvalidRequest(f"label: {label!r} is not a printable text")
    if any(char.isspace() for char in label):
        raise InvalidRequest(f"label: {label!r} contains whitespace; use - or _ instead")
    if len(label.encode()) > limit:
        raise InvalidRequest(
            f"label: {label!r} is longer than the {limit} bytes {filesystem} allows"
        )
    return label


def _user_id(user):
    if user is None:
        return None
    if isinstance(user, int) and not isinstance(user, bool) and user >= 0:
        return user
    try:
        return pwd.getpwnam(str(user)).pw_uid
    except KeyError:
        if str(user).isdigit():
            return int(user)
        raise InvalidRequest(f"user: {user!r} is not a user on this minion") from None


def _group_id(group):
    if group is None:
        return None
    if isinstance(group, int) and not isinstance(group, bool) and group >= 0:
        return group
    try:
        return grp.getgrnam(str(group)).gr_gid
    except KeyError:
        if str(group).isdigit():
            return int(group)
        raise InvalidRequest(f"group: {group!r} is not a group on this minion") from None


def parse_mode(mode):
    """
    A permission mode as an int, from "0750", "750" or 750.

    An int is read digit by digit as octal, because Salt's command line and YAML hand
    ``mode=0750`` over as the number 750.
    """
    if mode is None:
        return None
    text = str(mode) if isinstance(mode, int) and not isinstance(mode, bool) else mode
    if not isinstance(text, str) or not re.fullmatch(r"(0o)?[0-7]{1,4}", text.strip()):
        raise InvalidRequest(f"mode: {mode!r} is not an octal mode such as 0750")
    return int(text.strip().removeprefix("0o"), 8)


def _fstab_path(path):
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidRequest(f"fstab: {path!r} is not an absolute file path")
    if not os.path.isdir(os.path.dirname(path)):
        raise InvalidRequest(f"fstab: the directory of {path!r} does not exist")
    return path


def is_shown(option):
    return option not in UNSHOWN_OPTIONS and not option.startswith(UNSHOWN_PREFIXES)


# ----------------------------------------------------------------------------- the world


def partition_holders(facts, sys_dev_block=fsadvice.SYS_DEV_BLOCK):
    """
    {partition: its holders} for each partition of the device that has any: what device-mapper
    (LVM, LUKS), md or bcache built on it, listed in /sys/block/<disk>/<partition>/holders.
    A device-mapper holder is named with its name too: ``dm-0 (vg0-data)``.
    """
    if not facts.number or not facts.partitions:
        return {}
    node = os.path.realpath(os.path.join(sys_dev_block, facts.number))
    found = {}
    for partition in facts.partitions:
        holders = _named_holders(os.path.join(node, partition, "holders"))
        if holders:
            found[partition] = holders
    return found


def _named_holders(directory):
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return ()
    return tuple(_holder_name(directory, entry) for entry in entries)


def _holder_name(directory, holder):
    try:
        with open(os.path.join(directory, holder, "dm", "name"), encoding="utf-8") as stream:
            name = stream.read().strip()
    except OSError:
        name = ""
    return f"{holder} ({name})" if name else holder


def swap_devices(path=PROC_SWAPS):
    """The block devices in use as swap, as /proc/swaps names them; swap files are left out."""
    try:
        with open(path, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except FileNotFoundError:
        return ()
    except OSError as err:
        raise CommandFailed(f"cannot read {path}: {err.strerror or err}") from err
    devices = []
    for line in lines[1:]:  # the first line is the header
        fields = line.split()
        # The kernel calls every block device swap "partition", a whole disk's too.
        if len(fields) >= 2 and fields[1] == "partition":
            devices.append(_unescape(fields[0]))
    return tuple(devices)


def read_head(device, size=HEAD_BYTES):
    """The first ``size`` bytes of ``device``, read without writing anything."""
    descriptor = os.open(device, os.O_RDONLY)
    try:
        return os.read(descriptor, size)
    finally:
        os.close(descriptor)


@dataclass
class World:
    """
    What provisioning asks of the minion, injectable for tests.

    ``run(argv)`` returns a commands.CommandResult. ``mount`` and ``remount`` take Salt's
    mount.mount and mount.remount arguments (name, device, mkmnt, fstype, opts) and return
    True or the error text, as those functions do.
    """

    run: Callable
    mount: Callable
    remount: Callable
    live_mounts: Callable = mounts.all_mounts
    device_facts: Callable = fsadvice.device_facts
    device_number: Callable = fsadvice.device_number
    read_head: Callable = read_head
    partition_holders: Callable = partition_holders
    swap_devices: Callable = swap_devices


# ----------------------------------------------------------------------------- the device


@dataclass(frozen=True)
class Contents:
    """What blkid and wipefs found on a device, and whether unexplained data is there."""

    type: str | None = None  # ext4, xfs, LVM2_member, crypto_LUKS, swap, ...
    usage: str | None = None  # filesystem, raid, crypto or other
    uuid: str | None = None
    label: str | None = None
    partition_table: str | None = None
    signatures: tuple = ()
    unrecognised_data: bool = False

    @property
    def empty(self):
        return not (self.type or self.partition_table or self.signatures) and not (
            self.unrecognised_data
        )

    def holds(self, filesystem):
        return self.type == filesystem and self.usage == "filesystem"

    def describe(self):
        found = []
        if self.type:
            kind = "filesystem" if self.usage == "filesystem" else "signature"
            ids = ", ".join(
                f"{name} {value}"
                for name, value in (("UUID", self.uuid), ("label", self.label))
                if value
            )
            found.append(f"a {self.type} {kind}" + (f" ({ids})" if ids else ""))
        if self.partition_table:
            found.append(f"a {self.partition_table} partition table")
        if self.signatures and not found:
            found.append(f"signatures {', '.join(self.signatures)}")
        if self.unrecognised_data:
            found.append(
                f"non-zero data in its first {HEAD_BYTES // fsadvice.MIB} MiB that no "
                "signature explains"
            )
        return " and ".join(found) or "nothing"


def probe(device, world):
    """The Contents of ``device``: blkid's low-level probe, wipefs's signatures, its head."""
    found = _blkid(device, world.run)
    signatures = _wipefs(device, world.run)
    if found.get("AMBIVALENT"):
        signatures = (*signatures, "several conflicting signatures (blkid: ambivalent)")
    contents = Contents(
        type=found.get("TYPE"),
        usage=found.get("USAGE"),
        uuid=found.get("UUID"),
        label=found.get("LABEL"),
        partition_table=found.get("PTTYPE"),
        signatures=signatures,
    )
    if contents.empty and world.read_head(device).strip(b"\0"):
        return Contents(unrecognised_data=True)
    return contents


def _blkid(device, run):
    # --probe reads the device itself: the blkid cache can be stale right after mkfs.
    done = run(["blkid", "--probe", "--output", "export", device])
    if done.returncode == BLKID_NOTHING_FOUND:
        return {}
    if done.returncode == BLKID_AMBIVALENT:
        return {"AMBIVALENT": "1"}
    if done.returncode != 0:
        raise CommandFailed(f"blkid --probe {device} failed: {_output(done)}")
    found = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            # export format escapes special characters with a backslash
            found[key.strip()] = re.sub(r"\\(.)", r"\1", value.strip())
    return found


def _wipefs(device, run):
    done = run(["wipefs", "--no-act", "--json", device])
    if done.returncode != 0:
        raise CommandFailed(f"wipefs --no-act {device} failed: {_output(done)}")
    if not done.stdout.strip():
        return ()
    try:
        listed = json.loads(done.stdout).get("signatures", [])
    except (ValueError, AttributeError) as err:
        raise CommandFailed(f"wipefs --json {device}: unreadable output: {err}") from err
    return tuple(f"{entry.get('type')} at offset {entry.get('offset')}" for entry in listed)


def _output(done):
    text = (done.stderr or done.stdout or "").strip()
    return text or f"exit status {done.returncode}"


# ----------------------------------------------------------------------------- guards


def check_not_in_use(req, facts, live, world):
    """
    Refused when the device or a partition of it has holders, is in use as swap or is
    mounted elsewhere; the message names the partition and what uses it.
    """
    if facts.holders:
        raise Refused(
            f"{req.device} is in use by {', '.join(facts.holders)} (device-mapper, md RAID "
            "or bcache); it is never touched"
        )
    held = sorted(world.partition_holders(facts).items())
    if held:
        uses = "; ".join(
            f"its partition {partition} is in use by {', '.join(holders)}"
            for partition, holders in held
        )
        raise Refused(
            f"{req.device}: {uses} (device-mapper such as LVM or LUKS, md RAID or bcache); {IN_USE}"
        )
    for swap in world.swap_devices():
        number = world.device_number(swap)
        if number and facts.is_or_contains(number):
            raise Refused(
                f"{_which(req, facts, number)} is in use as swap ({swap} in {PROC_SWAPS}); "
                f"{IN_USE}: swapoff {swap} first"
            )
    for mount in live.values():
        if mount.mountpoint == _real(req.mount_point):
            continue
        number = world.device_number(mount.device)
        if number and facts.is_or_contains(number):
            raise Refused(
                f"{_which(req, facts, number)} is mounted at {mount.mountpoint} "
                f"({mount.device}); {IN_USE}"
            )


def _which(req, facts, number):
    """The device, or ``<device>: its partition <name>`` for the partition numbered so."""
    if number == facts.number or number not in facts.partition_numbers:
        return req.device
    partition = facts.partitions[facts.partition_numbers.index(number)]
    return f"{req.device}: its partition {partition}"


def mounted_here(req, facts, live, world):
    """The live mount at the mount point when it is this device, None when nothing is there."""
    current = live.get(_real(req.mount_point))
    if current is None:
        return None
    if world.device_number(current.device) != facts.number:
        raise Refused(f"{req.mount_point} is already a mount point of {current.device}")
    return current


def check_mount_point(req):
    """Refused when mounting would hide files (unless force) or the path is not a directory."""
    path = req.mount_point
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path):
        raise Refused(f"{path} exists and is not a directory")
    entries = os.listdir(path)
    if entries and not req.force:
        raise Refused(
            f"{path} holds {len(entries)} entries that the mount would hide; "
            "force=True mounts over them"
        )


def _real(path):
    # /proc/mounts lists mount points with symlinks resolved.
    return os.path.realpath(path)


# ----------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Step:
    name: str
    old: object
    new: object
    commands: tuple = ()
    payload: object = None


def filesystem_step(req, contents, here):
    """The mkfs (or relabel) Step, None when nothing is to be done; Refused on data."""
    if contents.holds(req.filesystem):
        if req.label is None or req.label == contents.label:
            return None
        template = fsadvice.FILESYSTEMS[req.filesystem]
        argv = template.relabel_mounted if here else template.relabel_unmounted
        fields = {"device": req.device, "label": req.label, "mount_point": req.mount_point}
        command = tuple(part.format(**fields) for part in argv)
        return Step("label", contents.label, req.label, (command,))
    if here is not None:
        raise Refused(
            f"{req.device} is mounted at {req.mount_point} with {contents.describe()}; "
            "a mounted filesystem is never formatted"
        )
    if contents.empty:
        return Step("filesystem", None, req.filesystem, (mkfs_argv(req, force=False),))
    if not req.force:
        raise Refused(
            f"{req.device} already holds {contents.describe()}; it is formatted only "
            "with force=True"
        )
    wipe = ("wipefs", "--all", req.device)
    return Step(
        "filesystem", contents.describe(), req.filesystem, (wipe, mkfs_argv(req, force=True))
    )


def mkfs_argv(req, force):
    argv = [f"mkfs.{req.filesystem}", "-q"]
    if force:
        argv.append(fsadvice.FILESYSTEMS[req.filesystem].force_flag)
    if req.label:
        argv += ["-L", req.label]
    return (*argv, *req.mkfs_options, req.device)


def mount_step(req, here):
    """The mount or remount Step, None when the device is mounted with every wanted option."""
    if here is None:
        where = f"{req.device} on {req.mount_point} ({req.filesystem}, {req.options_text})"
        return Step("mount", None, where)
    missing = missing_options(req, here.options)
    if not missing:
        return None
    return Step("remount", here.options, req.options_text, payload=missing)


def missing_options(req, live_options):
    live = set(live_options.split(","))
    return [option for option in req.visible_options if option not in live]


def ownership_steps(req, uid, gid, mode):
    """The owner and mode Steps that the mount point's root directory needs."""
    steps = []
    wanted_uid = uid if req.uid is None else req.uid
    wanted_gid = gid if req.gid is None else req.gid
    if (wanted_uid, wanted_gid) != (uid, gid):
        steps.append(
            Step(
                "owner",
                _owner_text(uid, gid),
                _owner_text(wanted_uid, wanted_gid),
                payload=(wanted_uid, wanted_gid),
            )
        )
    if req.mode is not None and req.mode != mode:
        steps.append(Step("mode", _mode_text(mode), _mode_text(req.mode), payload=req.mode))
    return steps


def _owner_text(uid, gid):
    if uid is None and gid is None:
        return None
    user = "" if uid is None else _user_name(uid)
    group = "" if gid is None else _group_name(gid)
    return f"{user}:{group}"


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _mode_text(mode):
    return None if mode is None else f"{mode:04o}"


# ----------------------------------------------------------------------------- fstab


@dataclass(frozen=True)
class FstabEntry:
    spec: str
    file: str
    vfstype: str
    mntops: str
    freq: str = "0"
    passno: str = "0"

    @classmethod
    def parse(cls, line):
        """The entry on ``line``, or None for a comment, a blank or a malformed line."""
        fields = line.split()
        if not fields or fields[0].startswith("#") or not 4 <= len(fields) <= 6:
            return None
        fields += ["0"] * (6 - len(fields))
        return cls(*(_unescape(value) for value in fields))

    def line(self):
        return "\t".join(
            _escape(value)
            for value in (self.spec, self.file, self.vfstype, self.mntops, self.freq, self.passno)
        )


def _unescape(value):
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), value)


def _escape(value):
    return "".join(f"\\{ord(char):03o}" if char in " \t\n\\" else char for char in value)


def fstab_entry(req, uuid):
    passno = fsadvice.FILESYSTEMS[req.filesystem].fsck_pass
    return FstabEntry(
        f"UUID={uuid}", req.mount_point, req.filesystem, req.options_text, "0", str(passno)
    )


def read_fstab(path):
    try:
        with open(path, encoding="utf-8") as stream:
            return stream.read()
    except FileNotFoundError:
        return ""
    except OSError as err:
        raise CommandFailed(f"fstab: cannot read {path}: {err.strerror or err}") from err


def check_fstab(req, text, facts, uuid, world):
    """Refused when another line names this device, or two lines name this mount point."""
    own = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = FstabEntry.parse(line)
        if entry is None:
            continue
        if os.path.normpath(entry.file) == req.mount_point:
            own.append(number)
        elif _names_device(entry.spec, facts, uuid, world):
            raise Refused(
                f"{req.fstab} line {number} already mounts {req.device} ({entry.spec}) at "
                f"{entry.file}"
            )
    if len(own) > 1:
        lines = ", ".join(str(number) for number in own)
        raise Refused(
            f"{req.fstab} has {len(own)} lines for {req.mount_point} (lines {lines}); "
            "leave one and run again"
        )


def _names_device(spec, facts, uuid, world):
    if uuid and spec == f"UUID={uuid}":
        return True
    if spec.startswith("/dev/"):
        number = world.device_number(spec)
        return number is not None and facts.is_or_contains(number)
    return False


def fstab_step(req, text, uuid):
    """The Step that makes fstab mount the filesystem by UUID, None when it already does."""
    wanted = fstab_entry(req, uuid)
    lines = text.splitlines()
    for index, line in enumerate(lines):
        entry = FstabEntry.parse(line)
        if entry is None or os.path.normpath(entry.file) != req.mount_point:
            continue
        if entry == wanted:
            return None
        lines[index] = wanted.line()
        return Step("fstab", line, wanted.line(), payload=_joined(lines))
    return Step("fstab", None, wanted.line(), payload=_joined([*lines, wanted.line()]))


def _joined(lines):
    return "\n".join(lines) + "\n"


def write_atomically(path, text):
    """Replace ``path`` with ``text``, keeping its mode and owner; readers see old or new."""
    target = os.path.realpath(path)  # a symlinked fstab keeps its link
    try:
        status = os.stat(target)
    except FileNotFoundError:
        status = None
    mode = stat.S_IMODE(status.st_mode) if status else FSTAB_MODE
    owner = (status.st_uid, status.st_gid) if status else None
    atomic.write_file(target, text, mode, owner)


# ----------------------------------------------------------------------------- the run


@dataclass
class Outcome:
    """What a run did (or, under test, would do), step by step."""

    changes: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    uuid: str | None = None

    def record(self, step):
        self.changes[step.name] = {"old": step.old, "new": step.new}


@dataclass(frozen=True)
class Survey:
    """Everything the guards looked at; a run acts only after a survey passes."""

    facts: object
    here: object
    contents: Contents
    fs_step: Step | None
    fstab_text: str | None


def survey(req, world):
    """Check every guard and read the state; Refused before anything is changed."""
    facts = world.device_facts(req.device)
    live = world.live_mounts()
    check_not_in_use(req, facts, live, world)
    here = mounted_here(req, facts, live, world)
    contents = probe(req.device, world)
    fs_step = filesystem_step(req, contents, here)
    fstab_text = None
    if req.persist:
        fstab_text = read_fstab(req.fstab)
        check_fstab(req, fstab_text, facts, contents.uuid, world)
    if here is None:
        check_mount_point(req)
    return Survey(facts, here, contents, fs_step, fstab_text)


def plan(req, world):
    """The Outcome a run would have, changing nothing."""
    seen = survey(req, world)
    outcome = Outcome(warnings=list(req.warnings), uuid=seen.contents.uuid)
    formats = seen.fs_step is not None and seen.fs_step.name == "filesystem"
    for step in (seen.fs_step, mount_step(req, seen.here)):
        if step:
            outcome.record(step)
    if req.persist:
        uuid = PREDICTED_UUID if formats else seen.contents.uuid
        step = fstab_step(req, seen.fstab_text, uuid)
        if step:
            outcome.record(step)
    for step in ownership_steps(req, *_predicted_root(req, seen, formats)):
        outcome.record(step)
    return outcome


def _predicted_root(req, seen, formats):
    if formats:
        return NEW_ROOT
    if seen.here is not None:
        return _root_status(req.mount_point)
    # An existing filesystem that is not mounted: its root is known only once mounted.
    return (None, None, None)


def _root_status(path):
    status = os.stat(path)
    return status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)


def apply(req, world):
    """Do every step that is not done yet; StepFailed lists the steps done before a failure."""
    seen = survey(req, world)
    outcome = Outcome(warnings=list(req.warnings), uuid=seen.contents.uuid)
    try:
        _make_filesystem(req, world, seen, outcome)
        _mount(req, world, seen, outcome)
        if req.persist:
            _persist(req, seen, outcome)
        for step in ownership_steps(req, *_root_status(req.mount_point)):
            _set_ownership(req, step)
            outcome.record(step)
    except (CommandFailed, OSError) as err:
        message = str(err) if isinstance(err, CommandFailed) else f"{req.mount_point}: {err}"
        raise StepFailed(message, outcome.changes) from err
    return outcome


def _make_filesystem(req, world, seen, outcome):
    step = seen.fs_step
    if step is None:
        return
    for argv in step.commands:
        _check(world.run(list(argv)), argv)
    outcome.record(step)
    if step.name == "filesystem":
        outcome.uuid = probe(req.device, world).uuid
        if not outcome.uuid:
            raise CommandFailed(f"mkfs.{req.filesystem} finished but blkid finds no UUID")


def _check(done, argv):
    if done.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} failed: {_output(done)}")


def _mount(req, world, seen, outcome):
    step = mount_step(req, seen.here)
    if step is None:
        return
    mount = world.mount if step.name == "mount" else world.remount
    result = mount(
        req.mount_point, req.device, mkmnt=True, fstype=req.filesystem, opts=req.options_text
    )
    if result is not True:
        hint = ""
        if step.name == "remount":
            hint = f"; some options ({', '.join(step.payload)}) take effect only on a new mount"
        raise CommandFailed(f"{step.name} of {req.mount_point} failed: {result}{hint}")
    outcome.record(step)
    live = world.live_mounts().get(_real(req.mount_point))
    missing = missing_options(req, live.options) if live else list(req.visible_options)
    if missing:
        outcome.warnings.append(
            f"the kernel does not show {', '.join(missing)} on {req.mount_point}: a default "
            "it does not list, or an option it ignored"
        )


def _persist(req, seen, outcome):
    step = fstab_step(req, seen.fstab_text, outcome.uuid)
    if step is None:
        return
    write_atomically(req.fstab, step.payload)
    outcome.record(step)


def _set_ownership(req, step):
    if step.name == "owner":
        uid, gid = step.payload
        os.chown(req.mount_point, -1 if uid is None else uid, -1 if gid is None else gid)
    else:
        os.chmod(req.mount_point, step.payload)
