"""Carrying out a plan through the world it acts on, and waiting for the node to answer."""

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from dataclasses import field

from saltext.eos.utils.cluster import checkpoint as checkpoints

from .dropins import write_atomically
from .inputs import FINGER_FAIL
from .inputs import STARTUP_SLS
from .inputs import BootstrapError
from .inputs import Request
from .inputs import Settings
from .inputs import StepFailed
from .locations import Paths

log = logging.getLogger(__name__)


@dataclass
class World:
    """The Salt side; every callable raises or returns plainly."""

    health: object  # health(req) -> {passed, checks}
    take_checkpoint: object  # take_checkpoint(label, trees, services) -> summary
    restore_checkpoint: object  # restore_checkpoint(checkpoint_id) -> {restored, removed, ...}
    service_available: object  # (name) -> bool
    service_state: object  # (name) -> {active, enabled}
    service: object  # service(action, name) -> bool; action: restart, start, stop, enable...
    salt_call: object  # salt_call(args, timeout) -> {retcode, data, stderr}
    ports_open: object  # ports_open(host, ports) -> bool
    clock: object = time.monotonic
    sleep: object = time.sleep
    # The minion's cached master key (pki_dir/minion_master.pub); None: not looked after.
    master_key_cache: object = None


def failed_checks(report, mode):
    """The failed critical checks; in single mode the master checks do not apply yet."""
    skipped = ("master_reachable", "minion_configured") if mode == "single" else ()
    return [
        check
        for check in report["checks"]
        if check["critical"] and not check["passed"] and check["name"] not in skipped
    ]


@dataclass
class Bootstrap:
    """Carries out a plan: checkpoint, steps, and the rollback when a step fails."""

    world: World
    settings: Settings
    paths: Paths
    req: Request
    minion_id: str
    progress: list = field(default_factory=list)
    restarted: list = field(default_factory=list)
    created_dirs: list = field(default_factory=list)
    checkpoint_id: object = None
    outcome: dict = field(default_factory=dict)
    services_before: dict = field(default_factory=dict)
    started_at: object = None
    master_key_cached_before: bool = True

    def run(self, steps):
        """{result, done, failed_step, error, rollback, checkpoint, outcome, progress}."""
        self.started_at = self.world.clock()
        cache = self.world.master_key_cache
        self.master_key_cached_before = cache is None or os.path.exists(cache)
        done = []
        for step in steps:
            try:
                note = getattr(self, f"_{step.name}")(step)
            except StepFailed as err:
                return self._failed(step.name, str(err), done, keep_config=err.keep_config)
            except (OSError, checkpoints.CheckpointError, BootstrapError) as err:
                return self._failed(step.name, str(err), done)
            done.append({"step": step.name, "result": note or "done"})
            log.info("eos bootstrap: step %s: %s", step.name, note or "done")
        return {
            "result": True,
            "done": done,
            "checkpoint": self.checkpoint_id,
            "outcome": self.outcome,
            "progress": self.progress,
        }

    def _failed(self, step, error, done, keep_config=False):
        log.error("eos bootstrap: step %s failed: %s", step, error)
        if keep_config:
            rollback = {"done": False, "reason": "the master knows this node and owns its join"}
        elif self.checkpoint_id:
            rollback = self.rollback()
        else:
            rollback = {"done": False, "reason": "nothing was changed"}
        return {
            "result": False,
            "failed_step": step,
            "error": error,
            "done": done,
            "checkpoint": self.checkpoint_id,
            "rollback": rollback,
            "outcome": self.outcome,
            "progress": self.progress,
        }

    # --- steps (each returns a short note) --------------------------------------------------

    def _health(self, step):
        report = self.world.health(self.req)
        failed = failed_checks(report, self.req.mode)
        self.outcome["health"] = report
        if failed:
            listed = "; ".join(f"{c['name']}: {c['detail']}" for c in failed)
            raise StepFailed("health", f"critical health checks failed: {listed}")
        return "passed"

    def _checkpoint(self, step):
        services = {}
        for name in (self.settings.restart_minion, self.settings.restart_master):
            if name and name not in services and self.world.service_available(name):
                services[name] = self.world.service_state(name)
        summary = self.world.take_checkpoint(
            f"bootstrap-{self.req.mode}", self.paths.trees(), services
        )
        self.services_before = services
        self.checkpoint_id = summary["id"]
        return summary["id"]

    def _master_config(self, step):
        write_atomically(self.paths.master_drop_in, step.payload, self.created_dirs)
        return step.changes["change"]

    def _minion_config(self, step):
        write_atomically(self.paths.minion_drop_in, step.payload, self.created_dirs)
        return step.changes["change"]

    def _restart_master(self, step):
        note = self._restart(step)
        host, port, publish = self.req.target()
        deadline = self.world.clock() + self.settings.master_wait
        while not self.world.ports_open(host, (publish, port)):
            if self.world.clock() >= deadline:
                raise StepFailed(
                    step.name,
                    f"salt-master does not answer on {host} ports {publish} and {port} "
                    f"{self.settings.master_wait:g} s after the new config",
                )
            self.world.sleep(1)
        return note

    def _restart_minion(self, step):
        return self._restart(step)

    def _restart(self, step):
        service = step.payload
        if service is None:
            return "skipped (eos:bootstrap:restart)"
        # Counted before the call: a failed restart may have stopped the daemon.
        self.restarted.append(service)
        if not self.world.service("restart", service):
            raise StepFailed(step.name, f"service.restart {service} failed")
        return f"restarted {service}"

    def _register(self, step):
        # Until the master accepts this minion's Salt key (eos:accept auto does so as soon as
        # the key is pending), salt-call cannot authenticate: try again for call_timeout.
        deadline = self.world.clock() + self.settings.call_timeout
        while True:
            answer = self.world.salt_call(["eos_cluster.register"], self.settings.call_timeout)
            self.check_master_key(step.name, answer)
            data = answer["data"]
            if answer["retcode"] == 0 and isinstance(data, dict) and data.get("sent"):
                return "sent"
            reason = salt_call_error(answer)
            if self.world.clock() + self.settings.poll_interval > deadline:
                break
            self.world.sleep(self.settings.poll_interval)
        # A key waiting for an operator (eos:accept manual) cannot send anything yet; the
        # master's join asks the node to register again once it is accepted.
        self.note(f"registration not sent yet: {reason}")
        return f"not sent yet ({reason}); the master's join registers the node again"

    def _wait(self, step):
        def check(answer):
            self.check_master_key(step.name, answer)

        outcome = wait_for_status(self.world, self.settings, self.minion_id, self.note, check)
        self.outcome.update(outcome)
        status, node = outcome["status"], self.minion_id
        if status == "active":
            return f"active, roles {', '.join(outcome['roles']) or 'none'}"
        if status == "failed":
            raise StepFailed(
                "wait",
                f"the master marked {node} failed and rolled its join back (salt-run "
                f"eos_join.status {node} says why); this node stays pointed at the master: fix "
                f"the cause, then salt-run eos_cluster.accept {node} retries",
                keep_config=True,
            )
        if status is not None:
            hint = (
                f"accept it on the master: salt-run eos_cluster.accept {node}"
                if status == "pending"
                else f"its join is still running: salt-run eos_join.status {node}"
            )
            raise StepFailed(
                "wait",
                f"{node} is {status}, not active, after {self.settings.timeout:g} s; the master "
                f"knows it, so this node stays pointed at the master: {hint}",
                keep_config=True,
            )
        raise StepFailed(
            "wait",
            f"the master gave no status for {node} within {self.settings.timeout:g} s (is its "
            f"Salt key accepted? salt-run eos_cluster.pending on the master)",
        )

    def _startup_state(self, step):
        write_atomically(self.paths.minion_drop_in, step.payload, self.created_dirs)
        return f"startup_states sls {STARTUP_SLS} (from the next minion start)"

    def check_master_key(self, step_name, answer):
        """StepFailed naming both fingerprints when salt-call refused the master's key."""
        refused = master_key_refusal(answer)
        if refused is None:
            return
        host = self.req.master
        expected = refused["expected"] or self.req.master_finger
        presented = refused["presented"] or "(not shown)"
        raise StepFailed(
            step_name,
            f"the master at {host} presents a key with fingerprint {presented}, not "
            f"master_finger {expected}: it is not the master to join (check `salt-key -F "
            f"master` there, and which host answers at {host}); refused",
        )

    def note(self, text):
        """A progress line: logged at info and returned in ``progress``."""
        if self.started_at is None:
            self.started_at = self.world.clock()
        elapsed = round(self.world.clock() - self.started_at, 1)
        self.progress.append({"after_seconds": elapsed, "status": text})
        log.info("eos bootstrap: %s", text)

    # --- rollback -----------------------------------------------------------------------------

    def rollback(self):
        """Restore the drop-ins, then the daemons that were restarted on the restored config."""
        report = {"done": True, "checkpoint": self.checkpoint_id}
        try:
            report["files"] = self.world.restore_checkpoint(self.checkpoint_id)
        except (OSError, checkpoints.CheckpointError) as err:
            report["files"] = {"error": str(err)}
        for directory in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                os.rmdir(directory)  # only when empty
        forgotten = self._forget_master_key()
        if forgotten:
            report["master_key"] = forgotten
        report["services"] = self._restore_services()
        log.warning("eos bootstrap: rolled back to checkpoint %s: %s", self.checkpoint_id, report)
        return report

    def _forget_master_key(self):
        """
        Remove the master key the minion cached during the bootstrap: kept, it would make the
        minion refuse the master of the restored config ("the master key has changed").
        """
        cache = self.world.master_key_cache
        if self.master_key_cached_before or not os.path.exists(cache):
            return None
        try:
            os.remove(cache)
        except OSError as err:
            return f"{cache}: cached during the bootstrap, not removed: {err}"
        return f"{cache}: cached during the bootstrap, removed"

    def _restore_services(self):
        done = {}
        for name in self.restarted:
            before = self.services_before.get(name)
            try:
                if before is None or before.get("active"):
                    ok = self.world.service("restart", name)
                    done[name] = "restarted on the restored config" if ok else "failed: restart"
                else:
                    ok = self.world.service("stop", name)
                    done[name] = "stopped (was not running)" if ok else "failed: stop"
            except Exception as err:
                done[name] = f"failed: {err}"
        return done


def salt_call_error(answer):
    """The line of a failed salt-call that says why (its ERROR line, else its last line)."""
    lines = [line.strip() for line in (answer.get("stderr") or "").splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "rror:" in line]
    if errors:
        return errors[-1]
    return lines[-1] if lines else f"salt-call exited {answer['retcode']}"


def master_key_refusal(answer):
    """
    ``{expected, presented}`` fingerprints when a salt-call exited because the master's key
    does not match ``master_finger`` (Salt logs both, then exits 42); None otherwise.
    """
    found = FINGER_FAIL.search(answer.get("stderr") or "")
    if found is None:
        return None
    return {"expected": found.group("expected"), "presented": found.group("presented")}


def wait_for_status(world, settings_, minion_id, note, check=None):
    """
    Poll the node's pillar (``eos:node_status``, ``eos:roles``) through ``salt-call
    pillar.get eos`` until it is active or failed or ``settings_.timeout`` passes.
    ``check(answer)`` sees each salt-call answer first, and may raise.
    """
    deadline = world.clock() + settings_.timeout
    last = None
    while True:
        remaining = deadline - world.clock()
        answer = world.salt_call(
            ["pillar.get", "eos", "unmask=True"], max(1.0, min(settings_.call_timeout, remaining))
        )
        if check is not None:
            check(answer)
        status, roles = None, []
        if answer["retcode"] == 0 and isinstance(answer["data"], dict):
            status = answer["data"].get("node_status")
            roles = list(answer["data"].get("roles") or [])
        seen = status or "no answer from the master yet"
        if seen != last:
            waited = settings_.timeout - max(0.0, deadline - world.clock())
            note(f"node {minion_id}: {seen} ({waited:.0f} s of {settings_.timeout:g} s)")
            last = seen
        if status in ("active", "failed"):
            return {"status": status, "roles": roles}
        if world.clock() + settings_.poll_interval > deadline:
            return {"status": status, "roles": roles}
        world.sleep(settings_.poll_interval)
