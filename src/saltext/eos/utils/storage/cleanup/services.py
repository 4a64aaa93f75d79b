"""The degrade step: stopping non-essential services, and remembering which were stopped."""

import contextlib
import json
import os

from saltext.eos.utils import atomic

from .options import _key

DEGRADED_FILE = "degraded_services.json"


def _stop_services(context, outcome, _progress):
    names = context.settings.services
    if context.keep_services:
        return outcome.skip("services left running: asked with services=False")
    if not names:
        return outcome.skip(f"no services configured in {_key('services')}")
    world = context.world
    if world.service_running is None or world.service_stop is None:
        return outcome.skip("no service control available")
    running = []
    for name in names:
        try:
            if world.service_running(name):
                running.append(name)
        except Exception as err:  # Salt's service modules raise many kinds
            outcome.error(f"service {name}: status failed: {err}")
    if context.dry_run:
        outcome.extra["services"] = running
        return None
    stopped = []
    degraded = DegradedServices(context.state_dir)
    for name in running:
        failure = _service_call_failure(world.service_stop, name, "service.stop")
        if failure:
            outcome.error(f"service {name}: {failure}")
            continue
        stopped.append(name)
        # Remembered at once, so that a crash later in the run cannot lose it.
        degraded.remember([name])
    outcome.extra["services"] = stopped
    return None


def _service_call_failure(call, name, what):
    """None when ``call(name)`` reports success, else why it did not."""
    try:
        succeeded = call(name)
    except Exception as err:  # Salt's service modules raise many kinds
        return f"{what} failed: {err}"
    return None if succeeded else f"{what} returned False"


class DegradedServices:
    """The services a degrade step stopped, kept in a JSON file until they are restored."""

    def __init__(self, state_dir):
        self.path = os.path.join(state_dir, DEGRADED_FILE)

    def names(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return []
        services = data.get("services") if isinstance(data, dict) else None
        return [name for name in services or [] if isinstance(name, str)]

    def remember(self, names):
        known = self.names()
        self._write(known + [name for name in names if name not in known])

    def restore(self, start):
        """
        Start every remembered service with ``start(name) -> bool``; forget those started.

        Returns {started, failed: {name: why}}; failed ones stay remembered for a retry.
        """
        started, failed = [], {}
        for name in self.names():
            failure = _service_call_failure(start, name, "service.start")
            if failure:
                failed[name] = failure
            else:
                started.append(name)
        self._write(list(failed))
        return {"started": started, "failed": failed}

    def _write(self, names):
        if not names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        atomic.write_file(self.path, json.dumps({"services": names}), 0o600)
