"""
The registry's change journal, and a reader's copy of the registry kept current by it.

Every registry write happens under the registry's lock (``Registry.lock``). When a critical
section that wrote something ends, the registry appends the ids of the node records it
stored or removed to a bounded journal and bumps a generation number, both in the
``eos/cluster`` bank:

- key ``journal``: ``{epoch, generation, changes: [[generation, node id or null], ...]}``, the
  last ``JOURNAL_LIMIT`` changes (``null``: only the summary or the assignment changed);
- key ``generation``: ``{epoch, generation}``, written after the journal, so a reader that
  sees a generation finds its changes in the journal.

``RegistryView`` is a reader outside the master's runners (the REST API): one small fetch per
read tells it whether anything changed; it then fetches only the records the journal names,
and reloads everything when the journal does not reach back far enough, when the epoch
changed (the bank was flushed and started again), or every ``FULL_RELOAD_SECONDS`` (a writer
that died between storing a record and writing the journal is caught up then).
"""

import bisect
import dataclasses
import threading
import time
import uuid

JOURNAL_KEY = "journal"
GENERATION_KEY = "generation"
JOURNAL_LIMIT = 2000
FULL_RELOAD_SECONDS = 300


class Journalled:
    """
    The registry's lock, recording what its critical sections change: ``touch(node_id)``
    (``None``: the summary or assignment only) inside one; the journal is written as it ends,
    still under the lock, so generations follow the order of the writes.
    """

    def __init__(self, lock, cache, cluster_bank):
        self.lock = lock
        self.cache = cache
        self.cluster_bank = cluster_bank
        # Only the holder of the lock (which is not re-entrant) touches it.
        self.touched = []

    def __getattr__(self, name):
        # The wrapped lock's own interface (now(), and what the flows fence with) stays.
        return getattr(self.lock, name)

    def __enter__(self):
        return self.lock.__enter__()

    def __exit__(self, exc_type, exc, traceback):
        try:
            if self.touched:
                touched, self.touched = self.touched, []
                # Also after an error: what was stored before it must reach the readers.
                self._write(touched)
        finally:
            self.lock.__exit__(exc_type, exc, traceback)
        return False

    def touch(self, node_id):
        if node_id not in self.touched:
            self.touched.append(node_id)

    def _write(self, touched):
        journal = self.cache.fetch(self.cluster_bank, JOURNAL_KEY) or {}
        if not journal.get("epoch"):
            journal = {"epoch": uuid.uuid4().hex, "generation": 0, "changes": []}
        generation = journal["generation"] + 1
        changes = [*journal["changes"], *([generation, node_id] for node_id in touched)]
        journal = {
            "epoch": journal["epoch"],
            "generation": generation,
            "changes": changes[-JOURNAL_LIMIT:],
        }
        self.cache.store(self.cluster_bank, JOURNAL_KEY, journal)
        self.cache.store(
            self.cluster_bank,
            GENERATION_KEY,
            {"epoch": journal["epoch"], "generation": generation},
        )


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One consistent reading: records by id, their ids sorted, the summary, when it was read."""

    epoch: str | None
    generation: int
    records: dict
    ids: tuple
    summary: dict
    read_at: float

    @property
    def tag(self):
        """Names this reading: equal tags, equal contents."""
        return f"{self.epoch or 'none'}-{self.generation}"


class RegistryView:
    """
    A copy of a registry (``registry``: a ``Registry``) for a process that only reads it;
    thread safe. ``snapshot()`` gives the current reading, fetching only what changed.

    The first reading, and one after the journal lost track (another epoch, a gap), loads
    every record while the other readers wait: there is nothing older to give them. The
    reload every ``full_reload_seconds`` runs in the thread that found it due, while the
    others go on with the journal.
    """

    def __init__(self, registry, clock=time.monotonic, full_reload_seconds=FULL_RELOAD_SECONDS):
        self.registry = registry
        self.clock = clock
        self.full_reload_seconds = full_reload_seconds
        self.lock = threading.Lock()
        self.current = None
        self.loaded_at = None
        self.reloading = False
        self.full_reloads = 0

    def snapshot(self):
        with self.lock:
            self.current = self._read()
            due = self.clock() - self.loaded_at > self.full_reload_seconds and not self.reloading
            self.reloading = self.reloading or due
            if not due:
                return self.current
        try:
            fresh, loaded_at = self._load()
        finally:
            with self.lock:
                self.reloading = False
        with self.lock:
            previous, self.current, self.loaded_at = self.current, fresh, loaded_at
            # Then forward by the journal: never an older reading than one already given.
            self.current = self._read()
            same_epoch = self.current.epoch == previous.epoch
            if same_epoch and self.current.generation < previous.generation:
                self.current = previous
            return self.current

    def _fetch(self, key):
        return self.registry.cache.fetch(self.registry.cluster_bank, key)

    def _read(self):
        """The current reading brought up to date (under ``self.lock``)."""
        marker = self._fetch(GENERATION_KEY) or self._start_journal()
        if self.current is not None:
            seen = (marker.get("epoch"), marker.get("generation"))
            if seen == (self.current.epoch, self.current.generation):
                return self.current
            caught_up = self._catch_up(marker)
            if caught_up is not None:
                return caught_up
        # No reading yet, or the journal lost track of this one.
        fresh, self.loaded_at = self._load()
        return fresh

    def _start_journal(self):
        """
        The marker of a registry no write has journalled yet (written before the journal
        existed): a first, empty change is journalled, so later writes move it on.
        """
        with self.registry.lock:
            self.registry.lock.touch(None)
        return self._fetch(GENERATION_KEY) or {}

    def _catch_up(self, marker):
        """The current reading moved on by the journal; None when it must be reloaded."""
        journal = self._fetch(JOURNAL_KEY) or {}
        if marker.get("epoch") != self.current.epoch or journal.get("epoch") != self.current.epoch:
            return None
        changes = journal.get("changes") or []
        since = self.current.generation
        if not changes or changes[0][0] > since + 1:
            return None  # the journal no longer reaches back to this reading
        records = dict(self.current.records)
        ids = list(self.current.ids)
        for node_id in dict.fromkeys(node for seen, node in changes if seen > since):
            if node_id is not None:
                self._refetch(node_id, records, ids)
        return Snapshot(
            journal["epoch"],
            journal["generation"],
            records,
            tuple(ids),
            self.registry.summary(),
            time.time(),
        )

    def _refetch(self, node_id, records, ids):
        record = self.registry.get(node_id)
        present = node_id in records
        if record is None:
            if present:
                del records[node_id]
                ids.remove(node_id)
            return
        if not present:
            bisect.insort(ids, node_id)
        records[node_id] = record

    def _load(self):
        """(a reading of every record, when it began)."""
        # The marker first: a write landing during the load is caught up on the next read.
        marker = self._fetch(GENERATION_KEY) or {}
        began = self.clock()
        records = {record["id"]: record for record in self.registry.records()}
        self.full_reloads += 1
        reading = Snapshot(
            marker.get("epoch"),
            marker.get("generation", 0),
            records,
            tuple(sorted(records)),
            self.registry.summary(),
            time.time(),
        )
        return reading, began
