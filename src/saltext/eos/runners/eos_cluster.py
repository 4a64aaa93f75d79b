"""
The cluster registry on the master: registration, acceptance, status and the cluster summary.

Records live in the master's Salt cache (banks ``eos/nodes`` and ``eos/cluster``), so the
master's ``cache`` setting decides where: ``localfs`` by default; ``redis``, ``etcd``,
``consul`` or ``mysql`` for several masters.

Master configuration, every key optional:

.. code-block:: yaml

    eos:
      accept: manual              # manual | auto | {auto: true, match: "G@os:Debian",
                                  #                  require_health: true}
      scale_boundaries:           # member count where each scale starts
        small: 2
        medium: 4
        distributed: 7
      registration:
        max_clock_skew_seconds: 300   # refuse registrations sent further ahead of this clock
    reactor:
      - 'salt/auth':
        - salt://eos/reactor/node_join.sls
      - 'eos/cluster/register':
        - salt://eos/reactor/node_join.sls

Trust: a registration is recorded only under the id of the minion whose Salt key signed it
(``eos_cluster.register`` on the minion signs it). An ``id`` inside the payload is ignored
and logged. A pending-key notice creates a record only when Salt really holds a pending key
for that id.

When a change moves the cluster to another scale, every minion is asked to refresh its pillar
(``saltutil.refresh_pillar``), so the analyzer and the beacon take the new scale's thresholds.

Events, fired on every status change with the node record as data:

``eos/cluster/node/<id>/<status>``
    status is pending, accepted, active, failed, unreachable, down, drained, rejected or
    removed (the runner ``eos_lifecycle`` says when a node is unreachable or down).
``eos/cluster/node/<id>/cordoned``, ``eos/cluster/node/<id>/uncordoned``
    ``drain`` cordoned the node, ``uncordon`` lifted it.
"""

import logging

import salt.crypt
import salt.key
import salt.loader
import salt.utils.minions
from salt.exceptions import InvalidKeyError
from salt.exceptions import SaltInvocationError

from saltext.eos.utils import errors
from saltext.eos.utils import master
from saltext.eos.utils.cluster import drain as cluster_drain
from saltext.eos.utils.cluster import registry
from saltext.eos.utils.cluster import replacement as replacements

log = logging.getLogger(__name__)

__virtualname__ = "eos_cluster"

# salt.key's key directories and the states they stand for.
KEY_STATES = {
    "minions": "accepted",
    "minions_pre": "pending",
    "minions_rejected": "rejected",
    "minions_denied": "denied",
}


def __virtual__():
    return __virtualname__


def register(node_id=None, payload=None, pending_key=False):
    """
    Record a node: its registration (from the reactor, for ``eos/cluster/register``) or its
    pending Salt key (for ``salt/auth`` with ``act: pend``). Applies the acceptance policy.

    CLI Example:

    .. code-block:: bash

        salt-run eos_cluster.register node-7 pending_key=True

    node_id
        The minion id Salt authenticated: the event envelope's ``data['id']``, never an id
        inside the payload. An id that breaks the node id rule
        (``saltext.eos.utils.cluster.nodeid``: glob or targeting characters, whitespace, a
        leading ``-`` or ``.``, non-ASCII, over 253 characters) is refused with the reason,
        its Salt key left as it is.
    payload
        ``{resources, health, preferred_role, sent_at_ms, signature}`` as the minion's
        ``eos_cluster.register`` sends it. It must be signed with node_id's accepted Salt key;
        anything malformed, too large, not signed by node_id or sent more than
        ``eos:registration:max_clock_skew_seconds`` (300) ahead of the master's clock is
        refused, logged and leaves the registry unchanged.
    pending_key
        True: node_id has a pending Salt key; create its pending record. The pending key of a
        node already accepted (Salt can put a just accepted key back in pending when two
        first authentications race) is accepted again if the policy accepts the node, or it
        is the cluster's first node.

    Returns ``{id, registered, status, transitions, comment}``.
    """
    try:
        registry.check_node_id(node_id)
    except registry.InvalidNodeId as err:
        return _refused(node_id, str(err))
    reg = _registry()
    policy = _policy()
    if pending_key:
        if _key_state(node_id) != "pending":
            return _refused(node_id, "Salt holds no pending key for it")
        outcome = _apply(reg, reg.note_pending_key, node_id, policy, _grains_match)
    else:
        try:
            registration = registry.check_registration(node_id, payload, _signed_by)
        except registry.InvalidPayload as err:
            return _refused(node_id, str(err))
        if registration.claimed_id not in (None, node_id):
            log.warning(
                "eos_cluster: registration sent by %s names id %r; recorded as %s",
                node_id,
                registration.claimed_id,
                node_id,
            )
        try:
            outcome = _apply(reg, reg.register, node_id, registration, policy, _grains_match)
        except registry.ClockSkew as err:
            return _refused(node_id, str(err))
    key = _accept_key(node_id) if "accepted" in outcome.transitions or outcome.accept_key else None
    return {**_report(outcome), "registered": True, **({"key": key} if key else {})}


def preregister(node_id, address=None, resources=None, preferred_role=None, labels=None):
    """
    Record a node before its minion exists: it shows as pending, waiting for
    ``eos_cluster.accept``. Its minion, once it joins, registers itself under the same id.

    CLI Example:

    .. code-block:: bash

        salt-run eos_cluster.preregister node-9 address=10.0.0.9 preferred_role=data
        salt-run eos_cluster.preregister node-9 \\
            resources='{cpu_cores: 16, memory_bytes: 68719476736}' labels='{rack: r2}'

    node_id
        The minion id the node will have.
    address
        Where the node will be reached (kept in the record).
    resources
        What the node will have, in the shape ``eos_cluster.resources`` reports
        (``cpu_cores`` and ``memory_bytes`` at least).
    preferred_role
        A role name such as ``data``.
    labels
        ``{key: value}`` labels for role placement.

    An id the registry already holds is an error (``already registered``).
    """
    _check_id(node_id)
    with errors.salt_errors():
        details = registry.check_preregistration(resources, preferred_role, labels, address)
    reg = _registry()
    with errors.salt_errors():
        outcome = reg.preregister(node_id, details)
    return _report(outcome)


def nodes(status=None):
    """
    Every node record, sorted by id, or only those with a status.

    CLI Example:

    .. code-block:: bash

        salt-run eos_cluster.nodes
        salt-run eos_cluster.nodes status=accepted

    status
        pending, accepted, active, failed, unreachable, down, drained or rejected.

    Each record: id, status, resources, health, preferred_role, roles, registered_at,
    accepted_at, last_seen, pending_reason (what a pending node waits for), history
    (``[{status, at, reason}]``), and once the lifecycle has seen it, ``cordoned`` and
    ``liveness`` (``{missed_since, unreachable_since, returns, ...}``, master clock).
    """
    if status is not None and status not in registry.STATUSES:
        raise SaltInvocationError(
            f"status: {status!r} is not one of {', '.join(registry.STATUSES)}"
        )
    return _registry().records(status)


def pending():
    """
    The nodes waiting for acceptance, with what each waits for (``pending_reason``).

    CLI Example:

    .. code-block:: bash

        salt-run eos_cluster.pending
    """
    return nodes(status="pending")


def accept(node_id):
    """
    Accept a node into the cluster, and its Salt key when that is pending (or rejected).

    CLI Example:

    .. code-block:: bash

        salt-run eos_cluster.accept node-7

    node_id
        A node in the registry, or a minion with a Salt key (its record is then created).

    Returns ``{id, status, changed, key, comment}``; key says what happened to the Salt key.
    """
    reg = _registry()
    _known(reg, node_id)
    outcome = _apply(reg, reg.accept, node_id)
    return {**_report(outcome), "key": _accept_key(node_id)}


def reject(node_id):
    """
    Reject a node: its record becomes rejected (it loses its roles) and its Salt key is
    rejected too, whether pending or accepted, so it can no longer talk to the master. When
    it held roles, they are re-placed over the live members (``eos_lifecycle.replace``) and
    the edges are configured again; the answer's ``replacement`` says how that went.

    CLI Example:

    .. code-block:: bash

        salt-run eos_cluster.reject node-7
    """
    reg = _registry()
    _known(reg, node_id)
    outcome = _apply(reg, reg.reject, node_id)
    key = _reject_key(node_id)
    return {**_report(outcome), "key": key, **_hand_roles_over(reg, f"rejection of {node_id}")}


def remove(node_id):
    """
    Remove a node: delete its record and its Salt key. It may join again later as new.

    CLI Example:

    .. code-block:: bash

        salt-run eos_cluster.remove node-7

    Fires ``eos/cluster/node/<id>/removed`` with the last record.
    """
    _check_id(node_id)
    reg = _registry()
    record = reg.get(node_id)
    key_state = _key_state(node_id)
    if record is None and key_state is None:
        raise errors.to_salt(
            registry.UnknownNode(f"{node_id}: no such node (no registry record, no Salt key)")
        )
    outcome = None
    if record is not None:
        outcome = _apply(reg, reg.remove, node_id)
    return {
        "id": node_id,
        "removed": outcome is not None,
        "key": _delete_key(node_id, key_state),
        **_hand_roles_over(reg, f"removal of {node_id}"),
    }


def drain(node_id):
    """
    Empty a node before it leaves: cordon it, move its datasets to other nodes (each copy
    verified before the source is removed), hand its roles over, mark it ``drained``.

    CLI Example:

    .. code-block:: bash

        salt-run eos_cluster.drain data-3
        salt-run eos_cluster.remove data-3     # then: its record and Salt key go

    node_id
        An active or accepted node. A down node cannot be drained (its datasets cannot be
        copied from it; its roles were re-placed already).

    A drain that cannot complete (no room, a pin, a failed copy, a failed role hand-over)
    stops where it is: the node stays cordoned and active, every dataset not verifiably moved
    stays on it, and ``comment`` and ``remaining`` say what is left (retcode 1: salt-run
    exits with it). Running it again goes on from there; ``eos_cluster.uncordon`` gives up.

    Returns ``{id, drained, status, cordoned, moved, failed, left, remaining,
    roles_changed, unplaced, comment, retcode}``. Fires ``eos/cluster/node/<id>/cordoned``
    and, at the end, ``eos/cluster/node/<id>/drained``.
    """
    _check_id(node_id)
    here = _master()
    reg = _registry()
    rebalancer = here.rebalancer()
    handover = here.replacement()
    before = reg.summary()["scale"]
    with errors.salt_errors(failure_errors=(errors.OperationFailed,)):
        result = cluster_drain.drain(
            reg, rebalancer.evacuate, handover.run, node_id, fire=here.fire_or_log
        )
    after = reg.summary()["scale"]
    if after != before:
        _refresh_pillars(before, after)
    return errors.with_retcode(__context__, result, 0 if result["drained"] else 1)


def uncordon(node_id):
    """
    Lift a node's cordon: it may take roles and datasets again. A drained node is accepted
    again, which runs its join (health, checkpoint, roles, highstate).

    CLI Example:

    .. code-block:: bash

        salt-run eos_cluster.uncordon data-3

    Returns ``{id, changed, status}``.
    """
    _check_id(node_id)
    here = _master()
    reg = _registry()
    with errors.salt_errors():
        return _apply(reg, cluster_drain.uncordon, reg, node_id, here.fire_or_log)


def set_status(node_id, status, reason=None):
    """
    Mark an accepted node active (its configuration finished) or failed.

    CLI Example:

    .. code-block:: bash

        salt-run eos_cluster.set_status node-7 active
        salt-run eos_cluster.set_status node-7 failed reason="highstate failed"

    status
        active or failed. A pending node must be accepted first.
    reason
        Kept in the node's history.
    """
    if status not in ("active", "failed"):
        # The lifecycle states are the master's own findings, drained is drain's: not set by hand.
        raise SaltInvocationError(
            f"status: {status!r} is not active or failed (unreachable and down come from the "
            "master's probes, drained from eos_cluster.drain)"
        )
    reg = _registry()
    _known(reg, node_id, need_record=True)
    reason = reason or f"marked {status} by an operator"
    outcome = _apply(reg, reg.set_status, node_id, status, reason)
    return _report(outcome)


def info(recount=False):
    """
    The cluster at a glance: id, size, scale and its profile, nodes per status, roles.

    CLI Example:

    .. code-block:: bash

        salt-run eos_cluster.info
        salt-run eos_cluster.info recount=True

    recount
        Recount nodes per status and roles from every record first (after a shared cache
        was written by several masters at once, or edited by hand).

    Returns ``{cluster_id, created_at, node_count, scale, profile, nodes, roles,
    assignment_version, first_node, accept, scale_boundaries}``; nodes holds the count per
    status and node_count the accepted and active ones that make the scale.
    """
    reg = _registry()
    summary = reg.rebuild_summary() if recount else reg.summary()
    return registry.cluster_info(summary, _policy().describe(), reg.boundaries)


# --- registry, policy and events ---------------------------------------------------------------


def _master():
    return master.Master(__opts__)


def _layers():
    return _master().layers()


def _registry():
    here = _master()
    with errors.salt_errors():
        return here.registry(on_change=here.fire_status_change)


def _policy():
    with errors.salt_errors():
        return registry.acceptance_policy(_layers())


def _apply(reg, change, *args):
    """
    ``change(*args)`` with the registry's errors as Salt's; when it moved the cluster to
    another scale, every minion refreshes its pillar.
    """
    before = reg.summary()["scale"]
    try:
        outcome = change(*args)
    except (registry.UnknownNode, registry.InvalidTransition, registry.RegistryBusy) as err:
        # Only these: a registration's ClockSkew is the caller's refusal, not an exception.
        raise errors.to_salt(err) from err
    after = reg.summary()["scale"]
    if after != before:
        _refresh_pillars(before, after)
    return outcome


def _hand_roles_over(reg, reason):
    """A replacement when the assignment still gives roles to nodes that left."""
    if not replacements.stale_holders(reg):
        return {}
    try:
        record = _master().replacement().run(reason)
    except errors.EosError as err:
        # The record change stands; the lifecycle engine re-places the roles later.
        log.warning("eos_cluster: %s: roles not re-placed now: %s", reason, err)
        return {"replacement": {"outcome": "postponed", "error": str(err)}}
    if record["outcome"] == "failed":
        __context__["retcode"] = 1
    return {"replacement": record}


def _refresh_pillars(before, after):
    # Minions keep their pillar in memory; without a refresh the analyzer and the beacon
    # would keep the old scale's thresholds until their next highstate.
    log.info("eos_cluster: scale %s -> %s; refreshing the pillar of every minion", before, after)
    _master().broadcast("saltutil.refresh_pillar")


def _grains_match(node_id, expression):
    """Salt's compound matcher over the grains (and pillar) the master cached for node_id."""
    _, grains, pillar = salt.utils.minions.get_minion_data(node_id, __opts__)
    if not grains:
        log.info("eos_cluster: no cached grains for %s yet; %r cannot match", node_id, expression)
        return False
    opts = dict(__opts__)
    opts.update(id=node_id, grains=grains, pillar=pillar or {})
    matcher = salt.loader.matchers(opts)["compound_match.match"]
    return bool(matcher(expression, opts=opts, minion_id=node_id))


def _signed_by(node_id, message, signature):
    public_key = _accepted_public_key(node_id)
    if public_key is None:
        return False
    try:
        key = salt.crypt.PublicKey.from_str(public_key)
    except InvalidKeyError:
        log.error("eos_cluster: the accepted Salt key of %s cannot be read", node_id)
        return False
    return key.verify(message, signature, algorithm=registry.SIGNATURE_ALGORITHM)


def _refused(node_id, reason):
    log.warning("eos_cluster: registration of %r refused: %s", node_id, reason)
    __context__["retcode"] = 1
    return {"id": node_id, "registered": False, "comment": reason}


def _report(outcome):
    record = outcome.record
    return {
        "id": record["id"],
        "status": record["status"],
        "changed": outcome.changed,
        "transitions": outcome.transitions,
        "comment": outcome.note or record.get("pending_reason") or "",
    }


def _check_id(node_id):
    master.checked_node_id(node_id)


def _known(reg, node_id, need_record=False):
    """A record for node_id, created from its Salt key when only the key exists."""
    _check_id(node_id)
    if reg.get(node_id) is not None:
        return
    key_state = None if need_record else _key_state(node_id)
    if key_state is None:
        raise errors.to_salt(registry.UnknownNode(f"{node_id}: no such node in the registry"))
    reg.ensure(node_id, f"known from its {key_state} Salt key")


# --- Salt keys ---------------------------------------------------------------------------------


def _key_entry(node_id):
    """(key directory, cache entry) of node_id's Salt key, or (None, None)."""
    with salt.key.get_key(__opts__) as keys:
        for directory in keys.list_match(node_id):
            return directory, keys.cache.fetch("keys", node_id)
    return None, None


def _key_state(node_id):
    directory, _ = _key_entry(node_id)
    return KEY_STATES.get(directory)


def _accepted_public_key(node_id):
    directory, entry = _key_entry(node_id)
    if KEY_STATES.get(directory) != "accepted" or not entry:
        return None
    return entry.get("pub")


def _accept_key(node_id):
    directory, _ = _key_entry(node_id)
    state = KEY_STATES.get(directory)
    if state not in ("pending", "rejected"):
        return _key_unchanged(state)
    with salt.key.get_key(__opts__) as keys:
        keys.accept(match_dict={directory: [node_id]}, include_rejected=True)
    return f"accepted (was {state})"


def _reject_key(node_id):
    directory, _ = _key_entry(node_id)
    state = KEY_STATES.get(directory)
    if state not in ("pending", "accepted"):
        return _key_unchanged(state)
    with salt.key.get_key(__opts__) as keys:
        keys.reject(match_dict={directory: [node_id]}, include_accepted=True)
    return f"rejected (was {state})"


def _delete_key(node_id, state):
    if state is None:
        return "no key"
    directory = next(d for d, s in KEY_STATES.items() if s == state)
    with salt.key.get_key(__opts__) as keys:
        keys.delete_key(match_dict={directory: [node_id]})
    return f"deleted (was {state})"


def _key_unchanged(state):
    return "no key" if state is None else f"unchanged ({state})"
