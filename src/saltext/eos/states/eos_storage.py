"""
Keep a filesystem below a usage percentage, recovering space progressively when it is not.

.. code-block:: yaml

    /var:
      eos_storage.usage_below:
        - percent: 80
        - max_level: cleanup

The steps, their settings (``eos:cleanup``) and the safety rules are those of
``eos_storage.cleanup``; see the execution module and docs/cleanup.md.

Provision a filesystem for a workload: made only on an empty device (unless ``force``),
mounted, in fstab by UUID (see docs/filesystems.md):

.. code-block:: yaml

    /var/lib/postgresql:
      eos_storage.provisioned:
        - device: /dev/sdb
        - workload: database
"""

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

from saltext.eos.utils import formatting
from saltext.eos.utils.storage import cleanup as cleanup_engine
from saltext.eos.utils.storage import mounts
from saltext.eos.utils.storage import provision as provision_engine

__virtualname__ = "eos_storage"


def __virtual__():
    if "eos_storage.cleanup" in __salt__:
        return __virtualname__
    return (False, "the eos_storage execution module is not available")


def usage_below(name, percent, max_level="cleanup"):
    """
    Ensure the filesystem mounted at ``name`` is below ``percent`` used.

    Nothing happens when it already is. Otherwise ``eos_storage.cleanup`` runs its steps up
    to ``max_level`` (for real: degrade and emergency included), stopping as soon as usage is
    below ``percent``. With ``test=True`` it reports what each step would free and changes
    nothing.

    name
        The mount point.
    percent
        The usage to get below (0 < percent < 100).
    max_level
        The highest cleanup level allowed: compress, cleanup (default), degrade or emergency.

    The changes list freed_bytes, before_percent, after_percent, the bytes freed per step
    and any services stopped. The result is False when the target could not be reached.

    CLI Example:

    .. code-block:: bash

        salt '*' state.single eos_storage.usage_below /var percent=80 test=True
        salt '*' state.single eos_storage.usage_below /var percent=80 max_level=emergency

    .. code-block:: yaml

        /var:
          eos_storage.usage_below:
            - percent: 80
            - max_level: emergency
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    try:
        point = _checked_mount(name, percent, max_level)
    except (cleanup_engine.InvalidRequest, mounts.UnknownMount) as err:
        return {**ret, "result": False, "comment": str(err)}

    usage = cleanup_engine.measure_usage(point).percent()
    if usage < percent:
        ret["comment"] = f"{point} is at {usage:.1f}%, already below {percent:g}%"
        return ret

    testing = bool(__opts__["test"])
    try:
        report = __salt__["eos_storage.cleanup"](
            level=max_level, mount=point, dry_run=testing, target_percent=percent
        )
    except (CommandExecutionError, SaltInvocationError) as err:
        return {**ret, "result": False, "comment": str(err)}

    ret["changes"] = _changes(report)
    ret["comment"] = _comment(report, percent, testing)
    if testing:
        ret["result"] = None
    else:
        ret["result"] = report["target_reached"]
    return ret


def _checked_mount(name, percent, max_level):
    if cleanup_engine.level_name(max_level) not in cleanup_engine.LEVELS:
        raise cleanup_engine.InvalidRequest(
            f"max_level: {max_level!r} is not one of {', '.join(cleanup_engine.LEVELS)}"
        )
    cleanup_engine.checked_percent(percent, "percent")
    return mounts.find(name).mountpoint


def _changes(report):
    steps = {
        step["name"]: step["freed_bytes"]
        for step in report["steps"]
        if not step["skipped"] and step["freed_bytes"]
    }
    stopped = [name for step in report["steps"] for name in step.get("services", [])]
    if not steps and not stopped:
        return {}
    changes = {
        "freed_bytes": report["freed_bytes"],
        "before_percent": report["before_percent"],
        "after_percent": report["after_percent"],
        "steps": steps,
    }
    if stopped:
        changes["services_stopped"] = stopped
    return changes


def _comment(report, percent, testing):
    freed = formatting.human_bytes(report["freed_bytes"])
    verb = "Would free" if testing else "Freed"
    lines = [
        f"{verb} {freed} on {report['mount']}: {report['before_percent']:g}% -> "
        f"{report['after_percent']:g}%"
    ]
    if not report["target_reached"]:
        outlook = "would stay" if testing else "is still"
        lines.append(f"usage {outlook} at or above {percent:g}% after every allowed step")
    for step in report["steps"]:
        lines.extend(f"{step['name']}: {error}" for error in step["errors"])
    return "\n".join(lines)


def provisioned(
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
):
    """
    Ensure ``device`` carries a filesystem mounted at ``name``, in fstab by UUID.

    The filesystem and its options come from ``workload`` (as
    ``eos_storage.recommend_filesystem`` advises) or from ``filesystem``. A device that
    already holds another filesystem or data is never formatted unless ``force`` is True;
    the comment then says what was found. Each step runs only when needed, so a second run
    changes nothing; with ``test=True`` the changes show what would be done. The arguments
    are those of ``eos_storage.provision``.

    The changes list each step done: filesystem (or label), mount (or remount), fstab,
    owner and mode, each as {old, new}.

    CLI Example:

    .. code-block:: bash

        salt 'db-*' state.single eos_storage.provisioned /var/lib/postgresql \\
            device=/dev/sdb workload=database test=True
        salt 'db-*' state.single eos_storage.provisioned /srv/data device=/dev/sdc \\
            filesystem=xfs label=data user=postgres group=postgres mode=0700

    .. code-block:: yaml

        /var/lib/postgresql:
          eos_storage.provisioned:
            - device: /dev/disk/by-id/nvme-data-1
            - workload: database
            - label: pgdata
            - user: postgres
            - group: postgres
            - mode: "0700"
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    testing = bool(__opts__["test"])
    try:
        report = __salt__["eos_storage.provision"](
            name,
            device,
            workload=workload,
            filesystem=filesystem,
            options=options,
            mkfs_options=mkfs_options,
            label=label,
            persist=persist,
            force=force,
            user=user,
            group=group,
            mode=mode,
            allow_unsafe=allow_unsafe,
            fstab=fstab,
            test=testing,
        )
    except SaltInvocationError as err:
        return {**ret, "result": False, "comment": str(err)}
    except CommandExecutionError as err:
        done = (err.info or {}).get("changes", {})
        return {**ret, "result": False, "changes": done, "comment": err.error}
    ret["changes"] = report["changes"]
    ret["comment"] = _provision_comment(report, testing)
    if testing and report["changes"]:
        ret["result"] = None
    return ret


def _provision_comment(report, testing):
    where = f"{report['filesystem']} on {report['device']} at {report['name']}"
    if not report["changes"]:
        lines = [f"{where} is already provisioned"]
    else:
        verb = "Would change" if testing else "Changed"
        lines = [f"{verb} {where}: {', '.join(report['changes'])}"]
        lines += [
            f"{step}: {change['old']} -> {change['new']}"
            for step, change in report["changes"].items()
        ]
    lines += [f"warning: {warning}" for warning in report["warnings"]]
    return "\n".join(lines)
