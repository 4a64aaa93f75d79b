"""
Adding nodes to the EOS cluster, in waves: ``join``, and the single-node steps.

The reactor calls ``join`` when a node is accepted (``eos/cluster/node/<id>/accepted``, see
``reactor/node_join.sls``); ``orchestrate/node_addition.sls`` calls it for a join by hand.
The nodes accepted together join together: the first run takes the join lease, gathers
until no node was queued for ``wave_seconds`` (six such windows at most), and joins them all
as one wave (one health pass, one placement, one checkpoint of each node it touches, one
batched state run), then the nodes accepted meanwhile as the next wave; every other run
returns at once. A node that fails its health, checkpoint or states is rolled back and failed
alone; the rest of its wave goes on. ``saltext.eos.utils.cluster.wave`` documents the rule.

The steps of a single join, for an operator adding one node by hand: ``start`` (join lease and
master checkpoint), ``health``, ``checkpoint`` (on the minions), ``assign`` (roles),
``configure`` (highstate where roles changed) and ``finish`` (node active); ``rollback``
after any failed step (``saltext.eos.utils.cluster.join``). ``status`` shows a node's last
join, or the lease, the current wave and the queue.

Master configuration, every key optional:

.. code-block:: yaml

    eos:
      join:
        lease_wait: 900           # seconds a join waits while another node joins
        lease_seconds: 1800       # a join lease not renewed this long is taken over
        minion_wait: 120          # seconds for the node to answer and register
        state: highstate          # or an SLS, e.g. eos.roles, to configure nodes with
        state_timeout: 900
        wave_seconds: 5           # a wave gathers until no node was queued this long
        batch: 20                 # nodes one state call configures at once
    reactor:
      - 'eos/cluster/node/*/accepted':
        - salt://eos/reactor/node_join.sls

highstate needs a top file that gives the nodes the role states: ``'*': [eos.roles]``.

Events:

``eos/cluster/node/<id>/active``
    the node joined: its record (fired by ``finish``, and for each node of a wave).
``eos/cluster/node/<id>/failed``
    a step failed and the join was rolled back: the record plus ``step`` and ``error``.
``eos/roles/changed``
    the assignment changed (``assign``, and ``rollback`` with ``restored_from``).
"""

import logging
import secrets

from salt.exceptions import SaltInvocationError

from saltext.eos.utils import errors
from saltext.eos.utils import master
from saltext.eos.utils.cluster import wave as waves

log = logging.getLogger(__name__)

__virtualname__ = "eos_join"


def __virtual__():
    return __virtualname__


def join(node, run=None, token=None):
    """
    Join ``node`` in a wave: queued for the wave that runs, or, when none runs, the waves this
    call leads (it gathers first, until no node was queued for ``wave_seconds``).

    CLI Example:

    .. code-block:: bash

        salt-run eos_join.join web-3 run=manual-1

    ``node`` is an accepted (or active) node, ``run`` a token naming this call (the waves it
    leads are named after it; made up when not given), ``token`` the accepted event's
    ``join_token``, as for ``start``. Returns ``queued`` and ``wave_run`` (the run of the wave
    that takes the node), or ``led``: for each wave this call ran, its nodes, the ones active
    and the ones failed (with the step and the error).
    """
    _check_node(node)
    if run is None:
        run = f"{node}-{secrets.token_hex(8)}"
    _check_run(run)
    flow = _flow()
    with errors.salt_errors(f"join of {node}", failure_errors=(errors.EosError,)):
        return waves.Waves(flow).join(node, run, token=token)


def start(node, run, token=None):
    """
    Take the join lease for ``node`` (waiting while another node joins) and checkpoint the
    assignment and scale.

    CLI Example:

    .. code-block:: bash

        salt-run eos_join.start web-3 run=manual-1

    node
        An accepted (or active) node.
    run
        A token naming this join; every later step must give the same one.
    token
        The ``join_token`` of the accepted event, which the reactor passes: it must be the
        node's current acceptance's and is used up, so a forged or repeated event starts
        nothing. An operator leaves it out.
    """
    return _do("start", node, run, token=token)


def health(node, run):
    """
    Wait for the node's minion, have it register afresh and pass its critical health checks.

    CLI Example:

    .. code-block:: bash

        salt-run eos_join.health web-3 run=manual-1
    """
    return _do("health", node, run)


def checkpoint(node, run):
    """
    ``eos_cluster.checkpoint`` on the node and every member; the ids are kept for rollback.

    CLI Example:

    .. code-block:: bash

        salt-run eos_join.checkpoint web-3 run=manual-1
    """
    return _do("checkpoint", node, run)


def assign(node, run):
    """
    Place roles over the active members, the members holding roles and the node; store them.

    CLI Example:

    .. code-block:: bash

        salt-run eos_join.assign web-3 run=manual-1
    """
    return _do("assign", node, run)


def configure(node, run):
    """
    Refresh pillar on every member; highstate the node and every node whose roles changed;
    re-apply ``eos.roles.common`` on the others when the scale changed.

    CLI Example:

    .. code-block:: bash

        salt-run eos_join.configure web-3 run=manual-1
    """
    return _do("configure", node, run)


def finish(node, run):
    """
    Mark the node active (fires ``eos/cluster/node/<id>/active``) and release the lease.

    CLI Example:

    .. code-block:: bash

        salt-run eos_join.finish web-3 run=manual-1
    """
    return _do("finish", node, run)


def rollback(node, run):
    """
    Undo a failed join of this run: the assignment as it was, the node failed (fires
    ``eos/cluster/node/<id>/failed`` with the step and the error), the minions back to their
    checkpoints, the previous roles re-applied where they changed. Without the lease (the
    run never started, or already finished) there is nothing to undo and nothing changes.

    CLI Example:

    .. code-block:: bash

        salt-run eos_join.rollback web-3 run=manual-1
    """
    return _do("rollback", node, run)


def status(node=None):
    """
    The last join of a node (its wave, step, outcome, error), or the join lease, the current
    (or last) wave with its nodes and phase, and the nodes queued for the next wave.

    CLI Example:

    .. code-block:: bash

        salt-run eos_join.status
        salt-run eos_join.status web-3
    """
    flow = _flow()
    if node is None:
        joining = waves.Waves(flow)
        return {"lease": flow.lease(), "wave": joining.current(), "queue": sorted(joining.queue())}
    _check_node(node)
    return flow.record(node) or {}


def _do(step, node, run, **extra):
    _check_node(node)
    _check_run(run)
    flow = _flow()
    # A node the flow finds unknown or in the wrong status failed the join: not an argument.
    with errors.salt_errors(f"join of {node}, step {step}", failure_errors=(errors.EosError,)):
        return getattr(flow, step)(node, run, **extra)


def _check_run(run):
    if not isinstance(run, str) or not run.strip():
        raise SaltInvocationError(f"run: {run!r} must be a non-empty token naming this join")


def _check_node(node):
    master.checked_node_id(node)


def _flow():
    return master.Master(__opts__).join_flow()
