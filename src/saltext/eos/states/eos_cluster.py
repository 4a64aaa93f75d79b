"""
Bring a node into an EOS cluster, idempotently: the state side of ``eos_cluster.bootstrap``.

.. code-block:: yaml

    # the first machine: master and only node
    eos_cluster:
      eos_cluster.bootstrapped:
        - mode: single
        - cluster: prod

    # another machine: join that master
    eos_cluster:
      eos_cluster.bootstrapped:
        - mode: join
        - master: 10.0.0.5

    # or find it on the local network (Salt's SSDP master discovery), pinning its key
    eos_cluster:
      eos_cluster.bootstrapped:
        - mode: discover
        - cluster: prod
        - master_finger: "4f:1e:...:9a"     # salt-key -F master, on the master

Applied with ``salt-call --local state.apply`` on a fresh machine. A node already bootstrapped
the same way (its ``minion.d/eos.conf`` says so: same mode, same master) is left alone.
``test=True`` lists the planned steps and what each changes. The settings
(``eos:bootstrap``), the checkpoint and the rollback are those of ``eos_cluster.bootstrap``.
"""

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

__virtualname__ = "eos_cluster"


def __virtual__():
    if "eos_cluster.bootstrap" in __salt__:
        return __virtualname__
    return (False, "the eos_cluster execution module is not available")


def bootstrapped(
    name,
    mode,
    master=None,
    port=None,
    cluster=None,
    minion_id=None,
    publish_port=None,
    wait=True,
    timeout=None,
    master_config_dir=None,
    master_finger=None,
):
    """
    Ensure this node was bootstrapped into an EOS cluster in ``mode``.

    name
        A label for the state (anything).
    mode
        ``single``, ``join`` or ``discover``, as for ``eos_cluster.bootstrap``.
    master, port, publish_port, cluster, minion_id, wait, timeout, master_config_dir
        As for ``eos_cluster.bootstrap``.
    master_finger
        The fingerprint of the master's public key (``salt-key -F master``), as for
        ``eos_cluster.bootstrap``: a master with another key is refused, and the minion keeps
        refusing it. A node bootstrapped with another (or no) fingerprint is bootstrapped again.

    CLI Example:

    .. code-block:: bash

        salt-call --local state.single eos_cluster.bootstrapped eos mode=join master=10.0.0.5
        salt-call --local state.single eos_cluster.bootstrapped eos mode=single test=True
        salt-call --local state.single eos_cluster.bootstrapped eos mode=discover \\
            master_finger=4f:1e:...

    No changes when the node is already bootstrapped in that mode with the same master. The
    changes list the steps done and the node's outcome (status and roles); a failed step fails
    the state, names the step and says what was rolled back.
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    args = {
        "mode": mode,
        "master": master,
        "port": port,
        "cluster": cluster,
        "minion_id": minion_id,
        "publish_port": publish_port,
        "wait": wait,
        "timeout": timeout,
        "master_config_dir": master_config_dir,
        "master_finger": master_finger,
    }
    try:
        planned = __salt__["eos_cluster.bootstrap"](dry_run=True, **args)
    except (CommandExecutionError, SaltInvocationError) as err:
        return {**ret, "result": False, "comment": str(err)}
    if planned.get("result") is False:
        return {**ret, "result": False, "comment": _failure(planned)}
    if planned.get("already"):
        return {**ret, "comment": planned["comment"]}
    if __opts__["test"]:
        return {
            **ret,
            "result": None,
            "changes": {"plan": planned["plan"], "master": planned.get("master")},
            "comment": f"would bootstrap this node ({mode}, master {planned.get('master')}): "
            + ", ".join(step["step"] for step in planned["plan"]),
        }
    try:
        done = __salt__["eos_cluster.bootstrap"](**args)
    except (CommandExecutionError, SaltInvocationError) as err:
        return {**ret, "result": False, "comment": str(err)}
    if done.get("already") or done.get("changed") is False:
        return {**ret, "result": bool(done.get("result")), "comment": done.get("comment", "")}
    changes = {
        "master": done.get("master"),
        "done": done.get("done"),
        "outcome": {k: v for k, v in (done.get("outcome") or {}).items() if k != "health"},
        "checkpoint": done.get("checkpoint"),
    }
    if not done["result"]:
        changes["rollback"] = done.get("rollback")
        return {**ret, "result": False, "changes": changes, "comment": _failure(done)}
    status = (done.get("outcome") or {}).get("status")
    comment = f"bootstrapped ({mode}, master {done.get('master')})"
    if status:
        comment += f": node {done['minion_id']} is {status}"
    return {**ret, "changes": changes, "comment": comment}


def _failure(answer):
    return f"bootstrap failed at step {answer.get('failed_step')}: {answer.get('error')}"
