"""Moving a dataset: journalled steps, recovery after a crash, and waves of moves."""

from collections.abc import Callable
from dataclasses import dataclass

from saltext.eos.utils import errors
from saltext.eos.utils.datasets import transfer

# Journal stages, in order. Before "switched" the source is the dataset; from it, the copy is.
PULLING = "pulling"
COMMITTED = "committed"
SWITCHED = "switched"
REBALANCE_LEASE_KEY = "rebalance_lease"  # in the registry's cluster bank


class MoveFailed(errors.OperationFailed):
    """
    A move stopped. Before the switch the source is intact and still the placement; after it,
    the journal entry at ``switched`` has the next run remove the source.
    """


@dataclass(frozen=True)
class MoveSteps:
    """
    What a move needs from Salt, each a callable returning plain data or raising MoveFailed:

    - ``pull(move)``: copy the source into staging on the destination;
    - ``manifest(node, name, staged)``: the transfer.manifest of the dataset on ``node``
      (its staging copy when ``staged``);
    - ``commit(move)``: rename staging into place on the destination;
    - ``remove(node, name)``: delete the dataset's directory on ``node``;
    - ``clean_partial(node, name, committed)``: delete staging (and, when ``committed``, the
      uncommitted final copy) on ``node``;
    - ``announce(result)``: fire the moved event;
    - ``still_leased()``: raise MoveFailed when this run no longer holds the rebalance lease;
      called before every step that changes something.
    """

    pull: Callable
    manifest: Callable
    commit: Callable
    remove: Callable
    clean_partial: Callable
    announce: Callable
    still_leased: Callable = lambda: None


def execute_move(store, move, steps, run=None):
    """
    Run one move (``{dataset, from, to, bytes}``) for ``run``; returns its result. Raises
    MoveFailed when it stops: before the switch with the source intact and still placed;
    after it (the source's removal failed, or the run lost its lease) with the journal entry
    at ``switched``, for the next run's recovery to remove the source. Under a lease, ``store``
    is a ``FencedStore``: a run that lost its lease writes no journal entry and no placement.
    """
    name, source, destination = move["dataset"], move["from"], move["to"]
    steps.still_leased()
    placement = store.placement(name)
    if placement is None or placement["node"] != source:
        where = placement["node"] if placement else "nowhere"
        raise MoveFailed(f"dataset {name}: placed on {where}, not {source}; plan again")
    store.write_journal(move, PULLING, run)
    steps.pull(move)
    problems = transfer.compare(
        steps.manifest(source, name, False), steps.manifest(destination, name, True)
    )
    if problems:
        raise MoveFailed(
            f"dataset {name}: the copy on {destination} differs: {'; '.join(problems)}"
        )
    steps.still_leased()
    steps.commit(move)
    # Journalled only once the commit answered: a commit refused because a directory of that
    # name was already there must not let the cleanup delete that directory.
    store.write_journal(move, COMMITTED, run)
    copied = steps.manifest(destination, name, False)
    steps.still_leased()
    store.switch(move, copied["bytes"], run)
    result = {**move, "verified_files": copied["count"], "verified_bytes": copied["bytes"]}
    steps.announce(result)
    # Switched: a run that lost its lease leaves the source to its successor's recovery,
    # which may have moved the dataset on (even back onto the source) meanwhile.
    steps.still_leased()
    steps.remove(source, name)
    store.drop_journal(name)
    return result


def recover(store, steps, live_run=None):
    """
    Finish or undo every journalled move; returns what was done, one entry per move.

    Placement still on the source: the copy never became the dataset, so the destination's
    staging (and an uncommitted final copy) is deleted. Placement on the destination: the
    switch happened, so the source is removed. An entry whose cleanup fails stays for the
    next run. Entries of ``live_run`` (the run holding the rebalance lease) are in flight,
    not interrupted: they are never touched.
    """
    done = []
    for name, entry in store.journal().items():
        if live_run is not None and entry.get("run") == live_run:
            done.append({"dataset": name, "action": f"left alone: run {live_run} is moving it"})
            continue
        placement = store.placement(name)
        placed_on = placement["node"] if placement else None
        try:
            steps.still_leased()
            if placed_on == entry["to"]:
                steps.remove(entry["from"], name)
                action = f"removed the source on {entry['from']}"
            else:
                steps.clean_partial(entry["to"], name, entry["stage"] != PULLING)
                action = f"cleaned the partial copy on {entry['to']}"
            store.drop_journal(name)
        except MoveFailed as err:
            done.append({"dataset": name, "action": "kept in the journal", "error": str(err)})
            continue
        done.append({"dataset": name, "action": action})
    return done


def waves(moves, concurrency):
    """
    The moves in groups that may run at once: at most ``concurrency`` each, no node in two
    moves of a group, and the planner's order kept (a move that relies on an earlier move
    freeing its destination always runs in a later group).
    """
    groups, current, busy = [], [], set()
    for move in moves:
        nodes = {move["from"], move["to"]}
        if len(current) >= concurrency or nodes & busy:
            groups.append(current)
            current, busy = [], set()
        current.append(move)
        busy |= nodes
    if current:
        groups.append(current)
    return groups
