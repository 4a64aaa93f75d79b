"""
What every EOS runner does on the master: fire events, call minions by their exact ids, open
the registry, and name nodes in event tags.

``Master(__opts__)`` wraps one runner's opts; the runners hand its ``call`` and ``fire`` to
the flows in ``utils`` (``cluster.join.Join``, ``datasets.execution.Rebalance``), which know
nothing of Salt and are unit-tested with fakes of both.

Calls target minions with ``tgt_type="list"``: an id is matched exactly, never as a glob, so a
node named ``web-*`` by a forged event could reach no other minion. Ids are checked against
the node id rule (``cluster.nodeid``) before any call.

Events:

``eos/cluster/node/<id>/<status>``
    A node's record, fired when its status changes (``node_tag``).
"""

import copy
import logging
import time
from dataclasses import dataclass

import salt.client
import salt.utils.event

from saltext.eos.utils import config
from saltext.eos.utils import errors
from saltext.eos.utils.cluster import registry

log = logging.getLogger(__name__)

NODE_TAG = "eos/cluster/node/{id}/{status}"


def node_tag(node_id, status):
    """The tag of the event that announces ``node_id``'s new ``status``."""
    return NODE_TAG.format(id=node_id, status=status)


def checked_node_id(node_id):
    """``node_id`` when it follows the node id rule, else Salt's SaltInvocationError saying why."""
    with errors.salt_errors():
        registry.check_node_id(node_id)
    return node_id


@dataclass(frozen=True)
class Answer:
    """What one minion answered: its return, its retcode and whether Salt counted it a success."""

    ret: object
    retcode: int = 0
    success: bool = True

    @property
    def ok(self):
        """True when the function ran and reported no failure."""
        return self.retcode == 0 and self.success is not False


class Master:
    """The master a runner runs on, from the runner's ``__opts__``."""

    def __init__(self, opts):
        self.opts = opts

    def layers(self):
        """The ``eos`` configuration of this master, in layers."""
        return config.Layers.from_salt(self.opts)

    def registry(self, on_change=None):
        """This master's registry; ``on_change(node_id, status, record)`` after each change."""
        return registry.open_registry(self.opts, on_change=on_change)

    def fire(self, tag, data):
        """Fire a copy of ``data`` under ``tag`` (Salt adds its ``_stamp`` to what it fires)."""
        with salt.utils.event.get_master_event(
            self.opts, self.opts["sock_dir"], listen=False
        ) as bus:
            bus.fire_event(copy.deepcopy(data), tag)

    def fire_or_log(self, tag, data):
        """``fire``, for changes already stored: a lost event is logged, never raised."""
        try:
            self.fire(tag, data)
        except Exception as err:
            log.warning("could not fire %s: %s", tag, err)

    def fire_status_change(self, node_id, status, record):
        """Announce a node's new status (a registry ``on_change``); a lost event is logged."""
        self.fire_or_log(node_tag(node_id, status), record)

    def call(self, targets, fun, args=(), kwargs=None, timeout=None):
        """
        Run ``fun`` on the listed minions, each named by its exact id; ``{id: Answer}`` for
        those that answered.
        """
        with self._client() as client:
            answers = client.cmd(
                list(targets),
                fun,
                arg=list(args),
                kwarg=kwargs or {},
                tgt_type="list",
                timeout=timeout,
                full_return=True,
            )
        return {
            minion: _answer(answer.get("ret"), answer)
            for minion, answer in answers.items()
            if isinstance(answer, dict)
        }

    def call_within(self, targets, fun, args=(), kwargs=None, timeout=None):
        """
        ``call``, with the answers that arrive within ``timeout`` seconds and not one moment
        more. Salt's ``cmd`` asks the silent minions whether they still run the job and waits
        ``gather_job_timeout`` (10 s) for that too: a probe of a dead minion would last three
        times its timeout, and the detector's bound with it.
        """
        expected = set(targets)
        deadline = time.monotonic() + (timeout or self.opts.get("timeout", 5))
        answers = {}
        with self._client() as client:
            published = client.run_job(
                sorted(expected),
                fun,
                arg=list(args),
                kwarg=kwargs or {},
                tgt_type="list",
                listen=True,
            )
            if not published or "jid" not in published:
                return answers
            for event in client.get_returns_no_block(f"salt/job/{published['jid']}/ret/"):
                data = (event or {}).get("data") or {}
                if data.get("id") in expected and "return" in data:
                    answers[data["id"]] = _answer(data["return"], data)
                if len(answers) == len(expected) or time.monotonic() >= deadline:
                    break
        return answers

    # --- the flows the runners and the lifecycle engine run ---

    def join_flow(self):
        """The join flow (``cluster.join.Join``) of this master; InvalidConfig as Salt's error."""
        from saltext.eos.utils.cluster import join  # join builds on this module's Answer

        layers = self.layers()
        with errors.salt_errors():
            return join.Join(
                registry=self.registry(on_change=self._announce_all_but_failed),
                call=self.call,
                fire=self.fire,
                layers=layers,
                settings=join.settings(layers),
                master=self.opts.get("id"),
            )

    def replacement(self):
        """The replacement of roles (``cluster.replacement.Replacement``) of this master."""
        from saltext.eos.utils.cluster import replacement

        return replacement.Replacement(self.join_flow())

    def lifecycle(self):
        """Failure detection (``cluster.lifecycle.Lifecycle``) on this master's registry."""
        from saltext.eos.utils.cluster import lifecycle

        with errors.salt_errors():
            limits = lifecycle.settings(self.layers())
        return lifecycle.Lifecycle(
            registry=self.registry(on_change=self.fire_status_change),
            call=self.call_within,
            settings=limits,
        )

    def rebalancer(self):
        """The dataset rebalancing (``datasets.Rebalance``) of this master."""
        import salt.cache

        from saltext.eos.utils import datasets

        layers = self.layers()
        with errors.salt_errors():
            return datasets.Rebalance(
                registry=self.registry(),
                store=datasets.Store(salt.cache.factory(self.opts)),
                settings=datasets.rebalance_settings(layers),
                declared=datasets.declarations(layers),
                call=self.call,
                # A move is stored whatever the event bus does; a lost event is only logged.
                fire=self.fire_or_log,
                master=self.opts.get("id"),
            )

    def _announce_all_but_failed(self, node_id, status, record):
        # A join's failed event is fired by its rollback, with the step and the error.
        if status != "failed":
            self.fire_status_change(node_id, status, record)

    def broadcast(self, fun):
        """Ask every minion to run ``fun``, without waiting; a failure is logged."""
        try:
            with self._client() as client:
                client.cmd_async("*", fun)
        except Exception as err:
            log.warning("could not ask every minion to run %s: %s", fun, err)

    def _client(self):
        # Built from the config file, as Salt's own saltutil.cmd does: the opts a runner gets
        # when the reactor starts it through orchestrate do not authenticate a LocalClient.
        return salt.client.get_local_client(self.opts["conf_file"])


def _answer(ret, job_return):
    """An Answer from what a minion returned and the rest of its job return."""
    return Answer(ret, job_return.get("retcode", 0) or 0, job_return.get("success", True))
