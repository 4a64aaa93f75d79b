"""
Minions that answer the master's flows (joins, replacement, drain, dataset moves) as EOS
minions do, and the registry they belong to.

``Fleet`` stands in for the minions twice over: ``Fleet.call`` is the ``call`` a
``join.Join`` or a ``datasets.Rebalance`` gets, and a ``Fleet`` is Salt's LocalClient over the
same minions, for a runner or the lifecycle engine (through ``tests.support.master.salt_world``):
jobs by exact id, answered with full returns. Pings,
registrations, checkpoints, rollbacks, state runs and pillar refreshes answer as Salt would
return them; a registration reaches the fleet's registry as the reactor records it; the dataset
functions of a move work on in-memory trees, so a copy can be verified (or made to differ).
Every call is kept, so a test checks who was configured, checkpointed, rolled back or had a
dataset removed.

``members`` and ``cluster`` set up the registry those minions belong to, as their joins left
it; ``unreachable_for`` makes a member one the probes have missed; ``join_flow`` is the join
flow (whose lease and steps a replacement uses) over a fleet.
"""

import hashlib
import time

from saltext.eos.utils import config
from saltext.eos.utils import master
from saltext.eos.utils.cluster import join
from saltext.eos.utils.cluster import registry
from tests.support.datasets import report
from tests.support.master import SilentClient

GB = 1000**3
GIB = 1024**3
# Meets every role of the default catalogue.
BIG = {"cpu_cores": 16, "memory_gb": 64, "disk_gb": 1000}
# Meets edge and app (and monolith) only.
SMALL = {"cpu_cores": 2, "memory_gb": 4, "disk_gb": 50}
CAPACITY = 1000  # bytes of a node's dataset filesystem; datasets move below 90 % of it
# The roles of clusters of up to five nodes, each sized to fit any node (``eos:roles:catalog``).


def resources(cpu_cores, memory_gb, disk_gb):
    """A record's ``resources`` as ``eos_cluster.register`` reports them."""
    return {
        "cpu_cores": cpu_cores,
        "memory_bytes": memory_gb * GIB,
        "disks": [{"name": "vda", "size_bytes": disk_gb * GB, "storage_type": "ssd"}],
    }


def members(reg, node_ids, size=None, sizes=None):
    """Active members with resources (``BIG`` unless ``sizes`` names another for a node)."""
    sizes = sizes or {}
    for node_id in node_ids:
        reg.ensure(node_id, "its Salt key is pending")
        reg.accept(node_id)
        reg.set_status(node_id, "active", "joined")
        reg.update(node_id, resources=resources(**sizes.get(node_id, size or BIG)))


def cluster(reg, assignment, size=None, sizes=None):
    """
    ``members`` holding the roles of ``assignment`` {id: [roles]}, stored as the registry's
    assignment.
    """
    members(reg, assignment, size=size, sizes=sizes)
    reg.store_assignment(assignment)


def unreachable_for(reg, node_id, seconds):
    """``node_id`` went unreachable ``seconds`` ago (by the wall clock) and missed every probe."""
    since = time.time() - seconds
    reg.set_status(
        node_id,
        "unreachable",
        "missed probes",
        liveness={
            "missed_since": since - 60,
            "missed_probes": 5,
            "unreachable_since": since,
            "unreachable_probes": 10,
            "answering_since": None,
            "returns": [],
        },
    )


def join_flow(reg, fleet, events, clock, roles=None, **join_settings):
    """
    The join flow (whose lease and steps a replacement uses) over ``fleet`` and ``clock``;
    ``roles`` is the master's ``eos:roles`` (default catalogue, no pins).
    """
    layers = config.Layers([("master config", {"roles": roles or {}, "join": join_settings})])
    return join.Join(
        registry=reg,
        call=fleet.call,
        fire=lambda tag, data: events.append((tag, data)),
        layers=layers,
        settings=join.settings(layers),
        clock=clock,
        sleep=clock.sleep,
    )


def tree_manifest(files):
    entries = {
        path: {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        for path, body in files.items()
    }
    return {"files": entries, "count": len(entries), "bytes": sum(map(len, files.values()))}


class Fleet(SilentClient):
    """
    EOS minions. ``silent`` minions answer nothing; ``silent_to`` {function: minions} do not
    answer that function; ``unhealthy`` ones fail a critical health check when they register;
    ``failing_state`` ones fail their state runs; ``untopped`` ones no top file targets; a pull
    onto a ``corrupting`` minion lands a copy that differs from its source. ``trees``
    {node: {dataset: {path: bytes}}} is what each node holds, ``capacity`` {node: bytes} the
    size of its dataset filesystem. A registration (with ``BIG`` resources) is recorded in
    ``reg``, the registry; a fleet without one is never asked to register.

    Every call is kept in ``calls`` as (minion, function, args, kwargs); as a LocalClient, every
    job published (answered or not) is kept in ``published`` as (target, function).
    """

    def __init__(self, reg=None):
        super().__init__()
        self.reg = reg
        self.silent = set()
        self.silent_to = {}
        self.unhealthy = set()
        self.failing_state = set()
        self.untopped = set()
        self.corrupting = set()
        self.calls = []
        self.dataset_steps = []  # (minion, step, dataset) of every eos_dataset call but sizes
        self.checkpoints = {}
        self.rolled_back = []
        self.trees = {}
        self.staging = {}
        self.capacity = {}
        self.sent_at_ms = 0

    def call(self, targets, fun, args=(), kwargs=None, timeout=None):
        answers = {}
        for minion in targets:
            self.calls.append((minion, fun, tuple(args), dict(kwargs or {})))
            if minion in self.silent or minion in self.silent_to.get(fun, ()):
                continue
            answers[minion] = self.answer(minion, fun, kwargs or {})
        return answers

    def cmd(self, tgt, fun, arg=(), timeout=None, tgt_type="glob", full_return=False, kwarg=None,
            **kwargs):  # fmt: skip
        """Salt's LocalClient.cmd, as ``Master.call`` runs it: minions by exact id."""
        assert tgt_type == "list", f"{fun}: minions are named by exact id, not {tgt_type}"
        self.published.append((tgt, fun))
        answers = self.call(list(tgt), fun, args=arg, kwargs=kwarg)
        return {minion: {"ret": a.ret, "retcode": a.retcode} for minion, a in answers.items()}

    # --- what was asked ---

    def called(self, fun):
        """The minions asked to run ``fun``, each once, sorted."""
        return sorted({minion for minion, called, _, _ in self.calls if called == fun})

    def asked(self, minion):
        """The functions ``minion`` was asked to run, in order."""
        return [fun for called_minion, fun, _, _ in self.calls if called_minion == minion]

    def steps_of(self, dataset):
        """(minion, step) of every call that moved ``dataset``, in order."""
        return [(minion, step) for minion, step, name in self.dataset_steps if name == dataset]

    def configured(self):
        """The minions that ran highstate (or the role states where no top file targets them)."""
        return sorted(
            {
                minion
                for minion, fun, args, _ in self.calls
                if fun == "state.highstate"
                or (fun == "state.apply" and args == (join.ROLES_STATE,))
            }
        )

    # --- the answers ---

    def answer(self, minion, fun, kwargs):
        if fun in ("test.ping", "saltutil.refresh_pillar"):
            return master.Answer(True)
        if fun == "eos_cluster.register":
            return master.Answer(self.register(minion))
        if fun == "eos_cluster.checkpoint":
            checkpoint_id = f"{minion}-{kwargs['label']}"
            self.checkpoints[minion] = checkpoint_id
            return master.Answer({"id": checkpoint_id, "label": kwargs["label"]})
        if fun == "eos_cluster.rollback":
            self.rolled_back.append((minion, kwargs["checkpoint_id"]))
            return master.Answer({"id": kwargs["checkpoint_id"]})
        if fun == "state.show_top":
            return master.Answer({} if minion in self.untopped else {"base": ["eos.roles"]})
        if fun in ("state.highstate", "state.apply"):
            failed = minion in self.failing_state
            chunk = {
                "__id__": "eos_role_file",
                "__run_num__": 0,
                "result": not failed,
                "comment": "Permission denied" if failed else "File is in the correct state",
            }
            return master.Answer(
                {"file_|-eos_role_file_|-/etc/eos/role.yaml_|-managed": chunk}, 2 if failed else 0
            )
        if fun.startswith("eos_dataset."):
            return self.dataset_answer(minion, fun.split(".", 1)[1], kwargs)
        raise AssertionError(f"unexpected call {fun} on {minion}")

    def register(self, minion):
        """What ``eos_cluster.register`` sends; the reactor records it in ``reg``."""
        assert self.reg is not None, f"{minion} was asked to register to no registry"
        passed = minion not in self.unhealthy
        check = {"name": "master_reachable", "critical": True, "passed": passed,
                 "detail": "port 4506 open" if passed else "connection refused"}  # fmt: skip
        # Each registration later than the last, by the registry's clock.
        self.sent_at_ms = max(self.sent_at_ms + 1, int(self.reg.clock() * 1000))
        payload = {
            "resources": resources(**BIG),
            "health": {"passed": passed, "checks": [check]},
            "preferred_role": None,
            "sent_at_ms": self.sent_at_ms,
            "signature": "c2lnbmVk",
        }
        registration = registry.check_registration(minion, payload, lambda *signed: True)
        self.reg.register(minion, registration, registry.AcceptancePolicy(), lambda *m: False)
        return {"sent": True, "tag": "eos/cluster/register", "preferred_role": None,
                "resources": payload["resources"], "health": payload["health"]}  # fmt: skip

    def dataset_answer(self, minion, fun, kwargs):
        tree = self.trees.setdefault(minion, {})
        if fun == "sizes":
            sizes = {name: tree_manifest(files)["bytes"] for name, files in tree.items()}
            return master.Answer(report(sizes, self.capacity.get(minion, CAPACITY), host=minion))
        name = kwargs["name"]
        self.dataset_steps.append((minion, fun, name))
        if fun == "pull":
            # The source is named by its host; every node of this fleet is its own host.
            copy = dict(self.trees[kwargs["source_host"]][name])
            if minion in self.corrupting:
                copy = {path: body[:-1] + b"?" for path, body in copy.items()}
            self.staging[(minion, name)] = copy
            return master.Answer({"pulled": name})
        if fun == "manifest":
            files = self.staging[(minion, name)] if kwargs["staged"] else tree[name]
            return master.Answer(tree_manifest(files))
        if fun == "commit":
            tree[name] = self.staging.pop((minion, name))
            return master.Answer({"committed": name})
        if fun == "remove":
            tree.pop(name, None)
            return master.Answer({"removed": name})
        if fun == "clean_partial":
            self.staging.pop((minion, name), None)
            if kwargs["committed"]:
                tree.pop(name, None)
            return master.Answer({"cleaned": name})
        raise AssertionError(f"unexpected call eos_dataset.{fun} on {minion}")

    def hold(self, node_id, **datasets):
        """``node_id`` holds each dataset ``name=bytes`` (one file of that many bytes)."""
        for name, size in datasets.items():
            self.trees.setdefault(node_id, {})[name] = {"file": b"x" * size}
