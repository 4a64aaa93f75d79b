"""
A cluster-wide lease in the master's Salt cache: at most one run of a kind at a time.

A lease names the run that holds it (a token the run makes once) and expires unless that run
renews it, so a run that died frees it after ``seconds``. Every read-and-write happens under
the registry's lock, so two runs cannot both see it free. A run checks that it still holds
its lease (``renew``) before each step that changes something: a run that lost it (it
stalled past the expiry and another run took over) stops instead of acting beside the new
holder.

The record::

    {run, kind, taken_at, expires_at, ...details}
"""

import logging
import time
from dataclasses import dataclass

from saltext.eos.utils import errors

log = logging.getLogger(__name__)


class LeaseBusy(errors.Busy):
    """Another live run holds the lease; ``holder`` is its record."""

    def __init__(self, message, holder):
        super().__init__(message)
        self.holder = holder


class LeaseLost(errors.OperationFailed):
    """The run no longer holds the lease it took (it expired and was taken over)."""


@dataclass
class Lease:
    """The lease ``key`` in ``bank`` of ``cache``, guarded by ``lock``."""

    cache: object
    lock: object
    bank: str
    key: str
    kind: str  # what the lease is for, in messages: "rebalance", "join"
    seconds: float
    clock: object = time.time

    def holder(self):
        """The lease record, or None when nobody holds it (an expired one still shows)."""
        return self.cache.fetch(self.bank, self.key) or None

    def take(self, run, **details):
        """Take the lease for ``run``; LeaseBusy while another run holds it unexpired."""
        with self.lock:
            held = self.holder()
            now = self.clock()
            if held is not None and held["run"] != run and held["expires_at"] > now:
                raise LeaseBusy(
                    f"the {self.kind} run {held['run']} holds the {self.kind} lease "
                    f"(taken {held.get('taken_at')}, expires in {held['expires_at'] - now:.0f} s)",
                    held,
                )
            if held is not None and held["run"] != run:
                log.warning(
                    "the %s lease of run %s expired; run %s takes over", self.kind, held["run"], run
                )
            record = {
                **details,
                "run": run,
                "kind": self.kind,
                "taken_at": now,
                "expires_at": now + self.seconds,
            }
            self.cache.store(self.bank, self.key, record)
            return record

    def renew(self, run):
        """Extend the lease of ``run``; LeaseLost when ``run`` does not hold it any more."""
        with self.lock:
            held = self.holder()
            if held is None or held["run"] != run:
                holder = f"run {held['run']}" if held else "nobody"
                raise LeaseLost(f"run {run} lost the {self.kind} lease ({holder} holds it)")
            held["expires_at"] = self.clock() + self.seconds
            self.cache.store(self.bank, self.key, held)
            return held

    def release(self, run):
        """Give the lease up, if ``run`` still holds it."""
        with self.lock:
            held = self.holder()
            if held is not None and held["run"] == run:
                self.cache.flush(self.bank, self.key)
