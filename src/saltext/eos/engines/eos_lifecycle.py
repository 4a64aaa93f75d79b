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

Every ``probe_interval_seconds`` the engine first takes over a join lease that expired with
its join half done (its master died: ``cluster.join.Join.recover_abandoned`` rolls that join
back and the node joins again), then runs one probe (``salt-run eos_lifecycle.probe``
does the same by hand). When a member went down, or the assignment still gives roles to a
node that is down, drained, rejected or removed, it runs a replacement
(``eos_lifecycle.replace``) in the same process: probing waits while the replacement
configures nodes, and goes on after it. A failed replacement is tried again after
``eos:lifecycle:retry_seconds``, until one succeeds or has nothing to change. A node is so
found unreachable at most ``grace_seconds`` plus one probe interval and one probe timeout
after it stopped answering (plus the length of a replacement running then).

The settings are read again on every pass: a changed master config applies without a restart.
An error in one pass is logged and the next pass runs.
"""

import logging
import time

from saltext.eos.utils import master
from saltext.eos.utils.cluster import join as joins
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
    previous = None
    while True:
        started = time.monotonic()
        every = interval or lifecycle.DEFAULTS["probe_interval_seconds"]
        try:
            previous, configured = one_pass(here, previous)
            every = interval or configured  # ``interval`` only sets the wait
        except Exception:  # pylint: disable=broad-except
            # A broken pass (a cache error, a bad setting) must not end detection for good.
            previous = None
            log.exception("eos_lifecycle: this pass failed; the next one runs in %s s", every)
        time.sleep(max(0.0, every - (time.monotonic() - started)))


def one_pass(here, previous=None):
    """
    One probe (``previous``: the last pass's), and a replacement when one is due; returns
    ``(probe, probe interval to keep)``.
    """
    _recover_abandoned_join(here)
    detector = here.lifecycle()
    outcome = detector.probe(previous)
    stale = replacements.stale_holders(detector.registry)
    last = here.replacement().last()
    # A failed run is retried even with no stale holder left: its rollback drops a removed
    # node from the assignment, and the roles it held are still missing.
    failed = bool(last) and last.get("outcome") == "failed"
    if outcome.went_down or ((stale or failed) and _retry_due(last, detector.settings)):
        if outcome.went_down:
            reason = f"down: {', '.join(outcome.went_down)}"
        elif stale:
            reason = f"roles held by nodes that left: {', '.join(stale[:5])}"
        else:
            reason = f"retry of the failed replacement {last['run']}"
        record = here.replacement().run(reason)
        log.warning(
            "eos_lifecycle: replacement %s (%s): %s",
            record["run"],
            reason,
            record["outcome"],
        )
    return outcome, detector.settings.probe_interval_seconds


def _recover_abandoned_join(here):
    # A join whose master died holds the join lease until it expires; any master's engine
    # then rolls it back and the node joins again.
    try:
        recovered = here.join_flow().recover_abandoned()
    except joins.JoinFailed as err:
        log.info("eos_lifecycle: another master is recovering an abandoned join: %s", err)
        return
    if recovered:
        log.warning("eos_lifecycle: abandoned join recovered: %s", recovered)


def _retry_due(last, limits):
    if not last or last.get("outcome") != "failed":
        return True
    return time.time() - last.get("finished_at", 0) >= limits.retry_seconds
