"""The plan: the file changes and restarts that turn a request into a configured node."""

from dataclasses import dataclass
from dataclasses import field

from .dropins import render_master
from .dropins import render_minion
from .inputs import DEFAULT_CLUSTER
from .inputs import JOIN_STATE
from .inputs import STARTUP_SLS


@dataclass
class Step:
    """One step of a bootstrap: its name, what it does, and what it changes."""

    name: str
    action: str
    changes: dict = field(default_factory=dict)
    payload: object = None  # what the step needs to run (file text, service name...)

    def as_dict(self):
        return {"step": self.name, "action": self.action, "changes": self.changes}


def _file_change(path, old, new):
    if old is None:
        return {"file": path, "change": "created"}
    if old == new:
        return {"file": path, "change": "unchanged"}
    return {"file": path, "change": "replaced"}


def plan(req, minion_id, p, settings_, current, join_state=JOIN_STATE, startup_state=True):
    """
    The steps of a bootstrap. ``current``: ``{path: text or None}`` of the drop-ins now.
    ``req.master`` must be known (discover has run).
    """
    host, port, _ = req.target()
    if req.mode == "single":
        checks = "pre-join health checks of this host (the master checks wait for its master)"
    else:
        ports = f"ports {req.publish_port}, {port}" if req.publish_port else f"port {port}"
        checks = f"pre-join health checks against {host} ({ports})"
    steps = [Step("health", checks)]
    steps.append(
        Step(
            "checkpoint",
            "checkpoint EOS's drop-ins and the salt-master/salt-minion service states",
            {"trees": [tree.directory for tree in p.trees()]},
        )
    )
    if req.mode == "single":
        text = render_master(req.cluster or DEFAULT_CLUSTER, join_state)
        steps.append(
            Step(
                "master_config",
                f"write {p.master_drop_in}: EOS's master block, discovery announcing cluster "
                f"{req.cluster or DEFAULT_CLUSTER!r}"
                + (f", eos:join:state {join_state}" if join_state else ""),
                _file_change(p.master_drop_in, current.get(p.master_drop_in), text),
                text,
            )
        )
    text = render_minion(req, minion_id)
    steps.append(
        Step(
            "minion_config",
            f"write {p.minion_drop_in}: master {host}"
            + (f" port {req.port}" if req.port else "")
            + f", id {minion_id}"
            + (f", master_finger {req.master_finger}" if req.master_finger else ""),
            _file_change(p.minion_drop_in, current.get(p.minion_drop_in), text),
            text,
        )
    )
    if req.mode == "single":
        steps.append(_restart_step("restart_master", settings_.restart_master, "salt-master"))
    steps.append(_restart_step("restart_minion", settings_.restart_minion, "salt-minion"))
    steps.append(
        Step("register", f"salt-call eos_cluster.register: send this node's registration to {host}")
    )
    steps.append(
        Step(
            "wait",
            f"wait up to {settings_.timeout:g} s for the master to mark {minion_id} active or "
            "failed (pillar eos:node_status)",
        )
    )
    if startup_state:
        final = render_minion(req, minion_id, startup_state=True)
        steps.append(
            Step(
                "startup_state",
                f"add startup_states sls {STARTUP_SLS} to {p.minion_drop_in}: the node "
                "re-applies its roles at every minion start",
                {"file": p.minion_drop_in, "change": "replaced"},
                final,
            )
        )
    return steps


def _restart_step(name, service, daemon):
    if service is None:
        return Step(
            name,
            f"{daemon} is not restarted here (eos:bootstrap:restart): restart it yourself so "
            "it reads the new drop-in",
            {"service": None, "change": "none"},
        )
    return Step(
        name,
        f"service.restart {service}",
        {"service": service, "change": "restarted"},
        service,
    )
