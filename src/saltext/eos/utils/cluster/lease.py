"""
A cluster-wide lease in the master's Salt cache: at most one run of a kind at a time.

The join lease (``cluster.join``) and the rebalance lease (``datasets.execution``) are both
this one class.

A lease names the run that holds it (a token the run makes once) and the master it runs on,
and expires unless that run renews it, so a run that died frees it after ``seconds``. Every
read-and-write happens under the registry's lock, so two runs cannot both see it free. A run
checks that it still holds its lease (``renew``) before each step that changes something: a
run that lost it (it stalled past the expiry and another run took over) stops instead of
acting beside the new holder.

Fencing tokens: each new holder gets a token above every earlier holder's, from a counter
record beside the lease (``<key>_token``), incremented under the lock; a renewal, or a second
``take`` by the same run, keeps its token. A write made under the lease calls the check of
``fence(run, token)`` under the registry's lock, right before it writes: the check refuses
(``LeaseLost``) unless the run still holds the lease, unexpired (and under ``token``, when
given: a newer token is a newer holding). A run that stalled past its lease is refused even
when it has not noticed yet, so it never writes after its successor.

Time: the lease reads the clock of its lock (``lock.now()``, the coordination store's time,
the same for every master sharing it) when the lock has one, else this host's ``time.time``;
a ``clock`` given to the lease wins over both.

The record::

    {run, kind, master, token, taken_at, expires_at, ...details}
"""

import logging
import time
from dataclasses import dataclass

from saltext.eos.utils import errors

log = logging.getLogger(__name__)

TOKEN_SUFFIX = "_token"  # the counter record of lease <key> is <key>_token, in the same bank


class LeaseBusy(errors.Busy):
    """Another live run holds the lease; ``holder`` is its record."""

    def __init__(self, message, holder):
        super().__init__(message)
        self.holder = holder


class LeaseLost(errors.OperationFailed):
    """
    The run no longer holds the lease it took (it expired and was taken over); ``holder`` is
    the record of the lease now (None when nobody holds it).
    """

    def __init__(self, message, holder=None):
        super().__init__(message)
        self.holder = holder


@dataclass
class Lease:
    """The lease ``key`` in ``bank`` of ``cache``, guarded by ``lock``."""

    cache: object
    lock: object
    bank: str
    key: str
    kind: str  # what the lease is for, in messages: "rebalance", "join"
    seconds: float
    clock: object = None  # default: the lock's ``now`` when it has one, else time.time
    master: str | None = None  # the id of the master whose runs take this lease

    def __post_init__(self):
        if self.clock is None:
            self.clock = getattr(self.lock, "now", time.time)

    @property
    def token_key(self):
        """The key of the counter record of the last token given out."""
        return self.key + TOKEN_SUFFIX

    def holder(self):
        """The lease record, or None when nobody holds it (an expired one still shows)."""
        return self.cache.fetch(self.bank, self.key) or None

    def expired(self, held):
        """Whether the record ``held`` has expired, by the lease's clock."""
        return held["expires_at"] <= self.clock()

    def take(self, run, **details):
        """Take the lease for ``run``; LeaseBusy while another run holds it unexpired."""
        record, _ = self.acquire(run, **details)
        return record

    def acquire(self, run, **details):
        """
        ``take``, returning ``(record, replaced)``: ``replaced`` is the expired record of
        another run this take replaced (read under the same lock), else None.
        """
        with self.lock:
            held = self.holder()
            now = self.clock()
            if held is not None and held["run"] != run and held["expires_at"] > now:
                raise LeaseBusy(self._busy(held, now), held)
            replaced = held if held is not None and held["run"] != run else None
            own = held if replaced is None else None
            record = {
                **details,
                "run": run,
                "kind": self.kind,
                "master": self.master,
                "token": self._token(own, held),
                "taken_at": (own or {}).get("taken_at", now),
                "expires_at": now + self.seconds,
            }
            self.cache.store(self.bank, self.key, record)
        if replaced is not None:
            log.warning(
                "the %s lease of run %s (token %s, master %s) expired; run %s takes over "
                "with token %s",
                self.kind,
                replaced["run"],
                replaced.get("token"),
                replaced.get("master"),
                run,
                record["token"],
            )
        return record, replaced

    def renew(self, run, **expected):
        """
        Extend the lease of ``run``, keeping its token; LeaseLost when ``run`` does not hold
        it any more (or its record's details differ from ``expected``).
        """
        with self.lock:
            held = self.holder()
            if (
                held is None
                or held["run"] != run
                or any(held.get(name) != value for name, value in expected.items())
            ):
                raise LeaseLost(
                    f"run {run} lost the {self.kind} lease ({_describe(held)} holds it)", held
                )
            held["token"] = self._token(held, held)
            held["expires_at"] = self.clock() + self.seconds
            self.cache.store(self.bank, self.key, held)
            return held

    def release(self, run):
        """Give the lease up, if ``run`` still holds it (the token counter stays)."""
        with self.lock:
            held = self.holder()
            if held is not None and held["run"] == run:
                self.cache.flush(self.bank, self.key)

    def release_unless(self, run, busy):
        """
        Give the lease up unless ``busy()`` (called under the same lock) says there is work
        left for it; True when released. A run handing out work that others queue under the
        lock (a wave of joins) cannot release it just after a newcomer queued behind it.
        """
        with self.lock:
            if busy():
                return False
            held = self.holder()
            if held is not None and held["run"] == run:
                self.cache.flush(self.bank, self.key)
            return True

    def fence(self, run, token=None):
        """
        A check to call under the registry's lock right before a write made under this lease
        (``Registry.store_assignment(fence=...)`` calls it so): it returns the lease record
        while ``run`` holds the lease unexpired (under ``token``, when given), and raises
        LeaseLost, naming the holder and the tokens, otherwise. It takes no lock itself.
        """

        def check():
            held = self.holder()
            now = self.clock()
            if (
                held is not None
                and held["run"] == run
                and held["expires_at"] > now
                and (token is None or held.get("token") == token)
            ):
                return held
            raise LeaseLost(self._fenced(run, token, held, now), held)

        return check

    # --- internals: the lock is held ---

    def _token(self, own, held):
        """The token of ``own`` (this run's record), or the next one for a new holder."""
        if own is not None and own.get("token") is not None:
            return own["token"]
        counter = self.cache.fetch(self.bank, self.token_key) or {}
        # Above the counter and the record it replaces, should the counter ever be lost.
        token = max(counter.get("token", 0), (held or {}).get("token") or 0) + 1
        self.cache.store(self.bank, self.token_key, {"token": token})
        return token

    def _busy(self, held, now):
        master = f"master {held['master']}, " if held.get("master") else ""
        return (
            f"the {self.kind} run {held['run']} holds the {self.kind} lease "
            f"({master}token {held.get('token')}, taken {held.get('taken_at')}, "
            f"expires in {held['expires_at'] - now:.0f} s)"
        )

    def _fenced(self, run, token, held, now):
        mine = f" (token {token})" if token is not None else ""
        if held is None:
            why = "nobody holds it"
        elif held["run"] != run:
            why = f"{_describe(held)} holds it"
        elif token is not None and held.get("token") != token:
            why = f"it holds it again, with token {held.get('token')}"
        else:
            why = f"it expired {now - held['expires_at']:.0f} s ago (token {held.get('token')})"
        return f"run {run}{mine} no longer holds the {self.kind} lease: {why}"


def _describe(held):
    """``run R (token T, master M)`` for a lease record, or ``nobody``."""
    if held is None:
        return "nobody"
    master = f", master {held['master']}" if held.get("master") else ""
    return f"run {held['run']} (token {held.get('token')}{master})"
