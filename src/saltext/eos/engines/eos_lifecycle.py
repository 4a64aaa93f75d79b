"""
The master's failure detector: probe the members, mark unreachable and down nodes, re-place
the roles of the down ones.

Master configuration:

.. code-block:: yaml

    engines:
      - eos_lifecycle: {}
    eos:
      lifecycle:
        probe_interval_seconds: 15   # and the other keys of saltext.eos.utils.cluster.lifecycle

Every ``probe_interval_seconds`` the engine runs one probe (``salt-run eos_lifecycle.probe``
does the same by hand). When a member went down, or the assignment still gives roles to a
node that is down, drained, rejected or removed, it runs a replacement
(``eos_lifecycle.replace``) in the same process: probing waits while the replacement
configures nodes, and goes on after it. A failed replacement is tried again after
``eos:lifecycle:retry_seconds``. A node is so found unreachable at most ``grace_seconds``
plus one probe interval after its last answer (plus the length of a replacement running then).

The settings are read again on every pass: a changed master config applies without a restart.
An error in one pass is logged and the next pass runs.
"""

import logging
import time

from saltext.eos.utils import master
from saltext.eos.utils.cluster import lifecycle
from saltext.eos.utils.cluster import replacement as replacements

log = logging.getLogger(__name__)

__virtualname__ = "eos_lifecycle"


def __virtual__():
    return __virtualname__


def start(interval=None):
    """
    Run the detector until the master stops.

    interval
        Seconds between probes; overrides ``eos:lifecycle:probe_interval_seconds``.
    """
    here = master.Master(__opts__)
    log.info("eos_lifecycle: failure detection started")
    while True:
        started = time.monotonic()
        every = interval or lifecycle.DEFAULTS["probe_interval_seconds"]
        try:
            every = interval or one_pass(here)
        except Exception:  # pylint: disable=broad-except
            # A broken pass (a cache error, a bad setting) must not end detection for good.
            log.exception("eos_lifecycle: this pass failed; the next one runs in %s s", every)
        time.sleep(max(0.0, every - (time.monotonic() - started)))


def one_pass(here):
    """One probe, and a replacement when one is due; returns the probe interval to keep."""
    detector = here.lifecycle()
    outcome = detector.probe()
    registry = detector.registry
    stale = replacements.stale_holders(registry)
    if outcome.went_down or (stale and _retry_due(here, detector.settings)):
        reason = (
            f"down: {', '.join(outcome.went_down)}"
            if outcome.went_down
            else f"roles held by nodes that left: {', '.join(stale[:5])}"
        )
        record = here.replacement().run(reason)
        log.warning(
            "eos_lifecycle: replacement %s (%s): %s",
            record["run"],
            reason,
            record["outcome"],
        )
    return detector.settings.probe_interval_seconds


def _retry_due(here, limits):
    last = here.replacement().last()
    if not last or last.get("outcome") != "failed":
        return True
    return time.time() - last.get("finished_at", 0) >= limits.retry_seconds
