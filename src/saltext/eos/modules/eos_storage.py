"""
Storage analysis for EOS nodes: how full each filesystem is, how fast it fills, when it will
be full, and which threshold level it has reached.

Configuration (minion config or pillar; pillar wins), every key optional:

.. code-block:: yaml

    eos:
      scale: small                # single | small | medium | distributed (set by ext_pillar)
      thresholds:                 # percent used, strictly increasing after merging
        warning: 60
        cleanup: 75
        roles:
          data: {warning: 60, cleanup: 70, critical: 80}
        mounts:
          "/var/lib/*": {emergency: 92}
      analyzer:
        include_tmpfs: false
        mount_timeout: 5
        growth_window: 21600

Every ``analyze`` records one sample per mount in a bounded history under the minion
cachedir; growth and time to full come from that history once it spans enough time.

``metrics`` writes the same figures as Prometheus metrics for node_exporter's textfile
collector (see docs/metrics.md); the file it writes by default:

.. code-block:: yaml

    eos:
      metrics:
        textfile: /var/lib/node_exporter/textfile_collector/eos_storage.prom

Space recovery (``cleanup``, ``diagnose``, ``restore_services``) reads ``eos:cleanup``; every
key is optional and the defaults are shown (see docs/cleanup.md for each step):

.. code-block:: yaml

    eos:
      cleanup:
        # compress
        log_dirs: [/var/log]
        log_exclude: [wtmp, btmp, lastlog, faillog]
        compress_after_days: 7
        compress_level: 6
        # cleanup
        package_caches:             # tool: cache directories; [] disables a tool
          apt: [/var/cache/apt]
          dnf: [/var/cache/dnf]
          yum: [/var/cache/yum]
          zypper: [/var/cache/zypp/packages]
        tmp_dirs: [/tmp, /var/tmp]
        tmp_after_days: 7           # atime, mtime and ctime must all be older
        docker_prune: true
        docker_prune_volumes: false
        docker_root: /var/lib/docker
        journal_dirs: [/var/log/journal]
        journal_max_size: 500M
        # degrade
        services: [jenkins, gitlab-runner, elasticsearch]
        # emergency
        user_cache_dirs: [/root/.cache]
        user_cache_after_days: 0
        rotated_after_days: 1
        emergency_journal_max_size: 100M
        truncate_over: 100M
        # every level
        protected: {}               # {class: {paths, names, reason}} added to the built-in
        preserve_paths: []          # paths or globs added to the protected data; always win
        target_margin: 5            # default target: the level's threshold minus this
        max_listed_files: 100
        command_timeout: 1800

Protected data is never touched, whatever the settings: database binary and write-ahead
logs (MySQL, PostgreSQL, etcd, ZooKeeper, Kafka, Redis, MongoDB, Elasticsearch), journal
files, ``/etc``, ``/var/lib/mysql``, ``/var/lib/postgresql``, ``/var/lib/vault``, ``/home``,
keys and certificates; docs/cleanup.md lists every class.

Events:

``eos/storage/cleanup/<minion id>``
    After every real (not dry) cleanup run; the data is the cleanup result.
``eos/storage/critical``
    From ``cleanup level=critical``: ``{mount, usage, diagnosis}``. Nothing was deleted; a
    human must act.
``eos/storage/held_back/<minion id>``
    From ``respond``, when the level measured is above ``eos:profile:cleanup:automatic_up_to``:
    ``{mount, measured_level, automatic_up_to, held_back, would_free_bytes, command}``; what
    the measured level would do was only planned (a dry run). An operator decides.

Filesystem advice and provisioning (``recommend_filesystem``, ``filesystems``,
``provision``; see docs/filesystems.md). ``filesystems`` learns a mount's workload from
mount point globs, added to the well-known paths (/var/lib/postgresql, /var/lib/docker, ...):

.. code-block:: yaml

    eos:
      filesystems:
        workloads:
          "/srv/pg*": database
          "/data/media": media
"""

import logging

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.utils import commands
from saltext.eos.utils import config
from saltext.eos.utils import errors
from saltext.eos.utils.storage import analyzer
from saltext.eos.utils.storage import cleanup as cleanup_engine
from saltext.eos.utils.storage import fsadvice
from saltext.eos.utils.storage import metrics as prometheus
from saltext.eos.utils.storage import mounts
from saltext.eos.utils.storage import provision as provision_engine
from saltext.eos.utils.storage import response
from saltext.eos.utils.storage import thresholds as threshold_engine
from saltext.eos.utils.storage import walk

log = logging.getLogger(__name__)

__virtualname__ = "eos_storage"


def __virtual__():
    if __grains__.get("kernel") != "Linux":
        return (
            False,
            "eos_storage: needs Linux (mounts and open files from /proc, statvfs, blkid, mkfs)",
        )
    return __virtualname__


def _layers():
    return config.Layers.from_salt(__opts__, __pillar__)


def analyze(mount=None):
    """
    Report every real filesystem: usage, inodes, level, growth and time to full.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_storage.analyze
        salt '*' eos_storage.analyze mount=/var
        salt '*' eos_storage.analyze --out=eos_storage

    mount
        Only this mount point. A path that is not a mount point is an error.

    Each report holds device, fstype, total_bytes, used_bytes, free_bytes (available to
    unprivileged users), usage_percent (reserved blocks count as used, as in df), inode
    figures, read_only, level, actions, growth_bytes_per_day and time_to_full_seconds (null
    until the history is long enough, or when the mount is not growing).
    """
    with errors.salt_errors():
        return analyzer.analyze(_layers(), __opts__["cachedir"], mount=mount)


def thresholds(mount="/"):
    """
    The effective thresholds for a mount, and where each value came from.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_storage.thresholds
        salt '*' eos_storage.thresholds /var/lib/postgresql

    mount
        The mount point (default ``/``). Mount overrides are matched against it as globs.

    Sources read ``profile:<scale>``, or the configuration key and the layer that set it,
    for example ``eos:thresholds:roles:data:cleanup (pillar)``.
    """
    layers = _layers()
    with errors.salt_errors():
        limits = threshold_engine.effective(layers, mount=mount)
    return {
        "mount": mount,
        "scale": layers.get("scale", default=threshold_engine.DEFAULT_SCALE),
        "roles": threshold_engine.node_roles(layers),
        "levels": limits.as_dict(),
    }


def top(mount="/", n=10, time_budget=10):
    """
    The largest directories and files on one mount.

    The walk stays on that filesystem, never follows symlinks, and stops when the time budget
    is spent (``complete`` is then False).

    CLI Example:

    .. code-block:: bash

        salt '*' eos_storage.top
        salt '*' eos_storage.top /var n=20 time_budget=30

    mount
        A mount point (default ``/``).
    n
        How many directories and files to list (a whole number >= 1).
    time_budget
        Seconds the walk may take.
    """
    with errors.salt_errors():
        point = mounts.find(mount).mountpoint
        return walk.largest(point, n=_whole_number(n, "n"), time_budget_seconds=time_budget)


def metrics(path=None):
    """
    Write every real filesystem's figures as Prometheus metrics for node_exporter.

    The file is replaced atomically (mode 0644), so the textfile collector never reads half
    of it. Like ``analyze``, each call records a history sample per mount.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_storage.metrics
        salt '*' eos_storage.metrics path=/var/lib/prometheus/node-exporter/eos_storage.prom

    path
        The file to write; default ``eos:metrics:textfile``, else
        ``/var/lib/node_exporter/textfile_collector/eos_storage.prom``. Its directory must
        exist: none is created.

    Returns the path, the number of samples (``metrics``) and the size of the file in bytes.
    Every mount's samples are labelled with mount, device, fstype and this minion's id (its
    thresholds also with level); the run's timestamp with the minion's id only.
    """
    target = _metrics_path(path)
    with errors.salt_errors():
        # Checked before measuring, so a wrong path records no history either.
        prometheus.check_target(target)
    collected = prometheus.samples(analyze(), minion_id=__opts__.get("id"))
    text = prometheus.exposition(collected)
    try:
        prometheus.write_atomically(target, text)
    except OSError as err:
        raise CommandExecutionError(f"{target}: cannot write metrics: {err}") from err
    return {"path": target, "metrics": len(collected), "bytes": len(text.encode())}


def _metrics_path(path):
    if path is not None:
        return str(path)
    value = _layers().get("metrics", "textfile", default=prometheus.DEFAULT_TEXTFILE)
    if not isinstance(value, str) or not value:
        key = config.key_name("metrics", "textfile")
        raise CommandExecutionError(f"{key}: {value!r} is not a file path")
    return value


def _whole_number(value, name):
    # The CLI hands "10" as an int already; a string here is a typo such as n=ten.
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SaltInvocationError(f"{name}: {value!r} is not a whole number")
    return value


def cleanup(level, mount="/", dry_run=None, target_percent=None, services=True):
    """
    Recover space on one filesystem in escalating steps, stopping once it is under a target.

    Each level runs the steps of the levels below it first, cheapest and least valuable
    first: ``compress`` gzips old logs; ``cleanup`` also cleans package caches, old files in
    /tmp and /var/tmp, docker and the journal; ``degrade`` also stops the configured
    non-essential services (``eos_storage.restore_services`` starts them again);
    ``emergency`` also deletes user caches and rotated logs, vacuums the journal harder and
    truncates huge live logs. ``critical`` deletes nothing: it fires ``eos/storage/critical``
    with a diagnosis and returns it, since a human must act.

    Only configured directories on this mount are touched (never through a bind mount),
    symlinks are never followed, and protected data (docs/cleanup.md) and
    ``eos:cleanup:preserve_paths`` are never touched. A second real run
    while one is going on is refused.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_storage.cleanup level=compress
        salt '*' eos_storage.cleanup level=cleanup mount=/var dry_run=True
        salt '*' eos_storage.cleanup level=emergency mount=/var dry_run=False target_percent=70

    level
        compress, cleanup, degrade, emergency or critical.
    mount
        The mount point to clean (default ``/``). A path that is not a mount point is an error.
    dry_run
        List what each step would free, change nothing. Defaults to False for compress and
        cleanup, and to True for degrade and emergency, which act only with dry_run=False.
    target_percent
        Stop once usage is below this (0 < N < 100). Default: the threshold of the level
        (``degraded`` for degrade) minus ``eos:cleanup:target_margin``.
    services
        False skips the degrade step (stopping services) while still running the file steps
        of the level; the storage_emergency orchestration tries files first this way.

    Returns mount, level, dry_run, before_percent, after_percent, freed_bytes,
    target_percent, target_reached and steps: for each step its name, files
    ([{path, bytes}], the largest ``max_listed_files`` of them), files_not_listed,
    freed_bytes, skipped, skip_reason (for example the target was reached), errors and kept
    (files a safety rule kept, with the reason). A real run also fires
    ``eos/storage/cleanup/<minion id>`` with this result, and exits non-zero when the target
    was not reached, so scripts and orchestrations can tell.
    """
    if not isinstance(services, bool):
        raise SaltInvocationError(f"services: {services!r} is not True or False")
    with errors.salt_errors():
        req = cleanup_engine.request(level, dry_run=dry_run, target_percent=target_percent)
        point = mounts.find(mount).mountpoint
    layers = _layers()
    cleanup_settings = _cleanup_settings(layers)
    fs = cleanup_engine.Filesystem.at(point)
    if req.level == cleanup_engine.CRITICAL_LEVEL:
        return _declare_critical(fs, cleanup_settings, fire=not req.dry_run)
    target = req.target_percent
    if target is None:
        with errors.salt_errors():
            limits = threshold_engine.effective(layers, mount=point)
            target = cleanup_engine.default_target(
                req.level, limits, cleanup_settings.target_margin
            )
    with errors.salt_errors():
        result = cleanup_engine.cleanup(
            fs,
            req,
            target,
            cleanup_settings,
            _cleanup_world(),
            _cleanup_state_dir(),
            keep_services=not services,
        )
    if not result["dry_run"]:
        _send_event(f"eos/storage/cleanup/{__grains__['id']}", result)
        if not result["target_reached"]:
            __context__["retcode"] = 1
    return result


def respond(mount="/"):
    """
    Answer a storage beacon event for ``mount``, as the reactor asks: measure the mount here
    and recover space for the level measured, never for the level the event claimed (events
    can be forged by other minions) and never above ``eos:profile:cleanup:automatic_up_to``.

    compress and cleanup run that cleanup level; degraded and emergency clean files first and
    stop services (degrade) only when the files were not enough; critical deletes nothing
    and fires ``eos/storage/critical``. Above the cap, the cap's level runs and the measured
    level is only planned (a dry run), reported in ``held_back`` and by
    ``eos/storage/held_back/<minion id>``.

    CLI Example:

    .. code-block:: bash

        salt web-1 eos_storage.respond mount=/var

    mount
        The mount point the event named. A path that is not a mount point here is an error.

    Returns ``{mount, measured_level, usage_percent, action, automatic_up_to, held_back,
    runs}``: ``runs`` are the cleanup results, in order.
    """
    layers = _layers()
    with errors.salt_errors():
        cap = response.automatic_up_to(layers)
    ((point, measured),) = analyze(mount=mount).items()
    if measured.get("error"):
        raise CommandExecutionError(f"{point}: not measured: {measured['error']}")
    decision = response.decide(measured["level"], cap)
    runs = []
    if decision.action in response.FILES_FIRST:
        runs.append(cleanup(decision.action, point, dry_run=False, services=False))
        if not runs[-1]["target_reached"]:
            runs.append(cleanup("degrade", point, dry_run=False))
    elif decision.action is not None:
        runs.append(cleanup(decision.action, point, dry_run=False))
    held_back = None
    if decision.held_back is not None:
        planned = cleanup(decision.held_back, point, dry_run=True)
        held_back = {
            "mount": point,
            "measured_level": decision.measured_level,
            "automatic_up_to": cap,
            "held_back": decision.held_back,
            "would_free_bytes": planned["freed_bytes"],
            "command": f"salt {__grains__['id']} eos_storage.cleanup "
            f"level={decision.held_back} mount={point} dry_run=False",
        }
        _send_event(f"eos/storage/held_back/{__grains__['id']}", held_back)
    return {
        "mount": point,
        "usage_percent": measured["usage_percent"],
        **decision.as_dict(),
        "held_back": held_back,
        "runs": runs,
    }


def diagnose(mount="/", n=10, time_budget=10):
    """
    What fills a filesystem and what cleanup could get back from it; nothing is changed.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_storage.diagnose
        salt '*' eos_storage.diagnose /var n=20

    mount
        A mount point (default ``/``).
    n
        How many of the largest directories and files to list.
    time_budget
        Seconds the walk for the largest entries may take.

    Returns mount, usage_percent, largest (``eos_storage.top``'s answer), reclaimable bytes
    per category (logs, caches, tmp, containers, journal) as the emergency dry run predicts
    them, reclaimable_bytes (their sum) and reclaimable_steps (the prediction per step).
    """
    cleanup_settings = _cleanup_settings(_layers())
    with errors.salt_errors():
        point = mounts.find(mount).mountpoint
        largest = walk.largest(point, n=_whole_number(n, "n"), time_budget_seconds=time_budget)
    return _diagnosis(cleanup_engine.Filesystem.at(point), cleanup_settings, largest)


def restore_services():
    """
    Start again the services that a degrade cleanup stopped, and forget them.

    Services that fail to start stay remembered, so a later call retries them.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_storage.restore_services

    Returns started (names) and failed ({name: why}).
    """
    directory = _cleanup_state_dir()
    with errors.salt_errors(), cleanup_engine.exclusive(directory):
        return cleanup_engine.DegradedServices(directory).restore(start=__salt__["service.start"])


def _cleanup_settings(layers):
    with errors.salt_errors():
        return cleanup_engine.settings(layers)


def _cleanup_state_dir():
    return cleanup_engine.state_dir(__opts__["cachedir"])


def _cleanup_world():
    return cleanup_engine.World(
        service_running=__salt__["service.status"],
        service_stop=__salt__["service.stop"],
    )


def _diagnosis(fs, cleanup_settings, largest):
    recoverable = cleanup_engine.reclaimable(fs, cleanup_settings, _cleanup_world())
    return {
        "mount": fs.mount_point,
        "usage_percent": recoverable["usage_percent"],
        "largest": largest,
        "reclaimable": recoverable["by_category"],
        "reclaimable_bytes": recoverable["total_bytes"],
        "reclaimable_steps": recoverable["steps"],
    }


def _declare_critical(fs, cleanup_settings, fire):
    diagnosis = _diagnosis(fs, cleanup_settings, walk.largest(fs.mount_point))
    if fire:
        _send_event(
            "eos/storage/critical",
            {"mount": fs.mount_point, "usage": diagnosis["usage_percent"], "diagnosis": diagnosis},
        )
    return {
        **diagnosis,
        "level": cleanup_engine.CRITICAL_LEVEL,
        "comment": "nothing was deleted: this filesystem needs a human",
    }


def _send_event(tag, data):
    # The work is done whether or not the event bus takes the news; a failure is only logged.
    try:
        __salt__["event.send"](tag, data)
    except Exception as err:  # whatever the transport raised, the result still stands
        log.warning("Could not send event %s: %s", tag, err)


# ----------------------------------------------------------------------------- filesystems


def _run_command(argv):
    return commands.via_salt(__salt__["cmd.run_all"])(argv)


def _filesystem_world():
    return fsadvice.World(run=_run_command)


def recommend_filesystem(workload, device=None, allow_unsafe=False):
    """
    The filesystem, mkfs options and mount options that suit a workload, with the reason.

    The workload's usual choice is refined with what this minion and the device say: the
    kernel must support the filesystem (/proc/filesystems, then a module probe), its mkfs
    must be installed and the device large enough; an SSD gets lighter btrfs compression, a
    small btrfs mixed block groups. When the usual choice is not usable the best usable
    alternative is recommended and the reason says why.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_storage.recommend_filesystem database
        salt '*' eos_storage.recommend_filesystem backup device=/dev/sdb
        salt '*' eos_storage.recommend_filesystem high-performance allow_unsafe=True

    workload
        database, container, backup, media, general, high-performance, snapshots or
        distributed (which points to a distributed store; its alternatives are for the
        store's local data).
    device
        A block device; its size and rotational flag refine the advice.
    allow_unsafe
        Add the mount options that trade crash safety for speed (nobarrier, data=writeback)
        where the filesystem accepts them, each with a warning. Never the default.

    Returns filesystem (null for distributed), mkfs_options, mount_options, reason, notes,
    warnings, device_facts and alternatives (each with usable and why_not).
    """
    if not isinstance(allow_unsafe, bool):
        raise SaltInvocationError(f"allow_unsafe: {allow_unsafe!r} is not True or False")
    with errors.salt_errors():
        facts = fsadvice.device_facts(device) if device is not None else None
        advice = fsadvice.recommend(workload, facts, _filesystem_world(), allow_unsafe=allow_unsafe)
    return advice.as_dict()


def filesystems(mount=None):
    """
    The mounted filesystems with their live options and the advice that applies to them.

    A mount's workload comes from ``eos:filesystems:workloads`` (mount point globs) over the
    well-known paths (/var/lib/postgresql: database, /var/lib/docker: container, ...). The
    advice flags options that risk data on a power failure, and a filesystem or missing
    options that the workload's advice does not match, such as a database on ext4 without
    noatime.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_storage.filesystems
        salt '*' eos_storage.filesystems /var/lib/postgresql

    mount
        Only this mount point. A path that is not a mount point is an error.

    Returns {mount point: {device, fstype, options, workload, workload_from, advice}}, each
    advice a {severity, message}.
    """
    with errors.salt_errors():
        paths = fsadvice.workload_paths(_layers())
    with errors.salt_errors():
        selected = [mounts.find(mount)] if mount is not None else mounts.real_mounts()
    return {entry.mountpoint: fsadvice.mounted_report(entry, paths) for entry in selected}


def provision(
    name,
    device,
    workload=None,
    filesystem=None,
    options=None,
    mkfs_options=None,
    label=None,
    persist=True,
    force=False,
    user=None,
    group=None,
    mode=None,
    allow_unsafe=False,
    fstab=provision_engine.FSTAB,
    test=False,
):
    """
    Make a filesystem on a device, mount it, persist it in fstab by UUID, set owner and mode.

    Each step runs only when it is not done yet, so a second run changes nothing. A device
    that already holds the filesystem is never formatted. A device holding anything else (a
    filesystem of another type, a partition table, LVM, RAID or LUKS signatures, unknown
    data) is formatted only with ``force=True``, and the refusal says what was found. A
    device mounted elsewhere or used by device-mapper or md is never touched, and a
    non-empty mount point is mounted over only with ``force=True``. Every check is made
    before anything changes.

    CLI Example:

    .. code-block:: bash

        salt '*' eos_storage.provision /var/lib/postgresql /dev/sdb workload=database
        salt '*' eos_storage.provision /srv/backup /dev/sdc workload=backup test=True
        salt '*' eos_storage.provision /data /dev/sdd filesystem=xfs label=data user=app mode=0750

    name
        The mount point (created when missing).
    device
        The block device.
    workload
        Chooses the filesystem and its options as ``recommend_filesystem`` does.
    filesystem
        ext4, xfs or btrfs; with a workload, that workload's options for it.
    options
        Mount options ("noatime,logbsize=256k" or a list), replacing the recommended ones.
        nobarrier, barrier=0 and data=writeback are refused unless ``allow_unsafe=True``.
    mkfs_options
        Extra mkfs arguments, replacing the recommended ones.
    label
        The filesystem label; an existing filesystem is relabelled.
    persist
        Write the fstab line, by UUID (default True). False leaves fstab alone.
    force
        Format a device that holds something else, and mount over a non-empty directory.
    user, group, mode
        Owner, group and mode (such as 0750) of the mounted filesystem's root directory.
    fstab
        The fstab file (default /etc/fstab); it is replaced atomically.
    test
        Report what would be done; change nothing.

    Returns name, device, filesystem, uuid, mkfs_options, mount_options, reason, warnings
    and changes: {step: {old, new}} for filesystem or label, mount or remount, fstab, owner
    and mode.
    """
    with errors.salt_errors():
        facts = fsadvice.device_facts(device)
        advice = fsadvice.recommend(
            workload,
            facts,
            _filesystem_world(),
            filesystem=filesystem,
            allow_unsafe=allow_unsafe is True,
        )
        if advice.chosen is None:
            raise fsadvice.InvalidAdvice(
                f"workload: {workload!r}: {advice.reason}. Name filesystem= (xfs for a "
                "GlusterFS brick) to provision local storage for it"
            )
        chosen = advice.chosen
        req = provision_engine.request(
            name,
            device,
            chosen.filesystem,
            mkfs_options=chosen.mkfs_options if mkfs_options is None else mkfs_options,
            mount_options=chosen.mount_options if options is None else options,
            label=label,
            persist=persist,
            force=force,
            user=user,
            group=group,
            mode=mode,
            fstab=fstab,
            allow_unsafe=allow_unsafe,
        )
    world = provision_engine.World(
        run=_run_command, mount=__salt__["mount.mount"], remount=__salt__["mount.remount"]
    )
    try:
        outcome = (provision_engine.plan if test else provision_engine.apply)(req, world)
    except (provision_engine.Refused, provision_engine.CommandFailed) as err:
        raise errors.to_salt(err) from err
    except provision_engine.StepFailed as err:
        raise CommandExecutionError(str(err), info={"changes": err.changes}) from err
    return {
        "name": req.mount_point,
        "device": req.device,
        "filesystem": req.filesystem,
        "uuid": outcome.uuid,
        "mkfs_options": list(req.mkfs_options),
        "mount_options": list(req.mount_options),
        "reason": advice.reason,
        "test": bool(test),
        "warnings": list(dict.fromkeys([*advice.warnings, *outcome.warnings])),
        "changes": outcome.changes,
    }
