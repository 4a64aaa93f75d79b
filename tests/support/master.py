"""
Stand-ins for what a runner (or the lifecycle engine) reaches outside Python on the master:
the event bus and the LocalClient that publishes jobs to minions. ``salt_world`` puts them
(and a Salt cache) in place of Salt's own for the length of a test. ``SilentClient`` is the
base of every fake LocalClient: it is called, entered and destroyed as Salt's is.

``master_opts`` are a master's opts over a temporary directory; ``seeded`` is the registry
over the stand-in cache, to set up a cluster without the runner.
"""

import contextlib
import copy
from unittest.mock import patch

import salt.cache
import salt.client
import salt.utils.event

from saltext.eos.utils.cluster import registry


class Bus:
    """The master's event bus: every event fired on it, in order."""

    def __init__(self):
        self.fired = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def fire_event(self, data, tag, timeout=1000):
        self.fired.append((tag, copy.deepcopy(data)))
        return True

    def destroy(self):
        pass

    def tags(self):
        return [tag for tag, _ in self.fired]

    def data(self, tag):
        return [data for fired, data in self.fired if fired == tag]

    def node_events(self):
        return [(tag, data) for tag, data in self.fired if tag.startswith("eos/cluster/node/")]

    def node_tags(self):
        return [tag for tag, _ in self.node_events()]


class SilentClient:
    """Salt's LocalClient: the jobs published to minions, none of which answer."""

    def __init__(self):
        self.published = []

    def __call__(self, *args, **kwargs):  # salt.client.get_local_client(...)
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def destroy(self):
        pass

    def cmd_async(self, tgt, fun, arg=(), tgt_type="glob", **kwargs):
        self.published.append((tgt, fun))
        return "20250101000000000000"

    def cmd(self, tgt, fun, arg=(), timeout=None, tgt_type="glob", **kwargs):
        self.published.append((tgt, fun))
        return {}

    def run_job(self, tgt, fun, arg=(), tgt_type="glob", kwarg=None, listen=False, **kwargs):
        """Publish as ``cmd`` does; the answers come back from ``get_returns_no_block``."""
        jid = f"2025010100000000{len(self._returns()):04d}"
        answers = self.cmd(tgt, fun, arg=arg, tgt_type=tgt_type, kwarg=kwarg, full_return=True)
        self._returns()[jid] = answers
        return {"jid": jid, "minions": list(tgt)}

    def get_returns_no_block(self, tag, match_type=None):
        """The return events of the job, then the end: the wait for the others ran out."""
        jid = tag.split("/")[2]
        for minion, answer in self._returns().pop(jid, {}).items():
            data = {"id": minion, "return": answer.get("ret"), "retcode": answer.get("retcode")}
            yield {"tag": f"{tag}{minion}", "data": {**data, "success": True}}

    def _returns(self):
        # Set on first use: subclasses need not call this class's __init__.
        return self.__dict__.setdefault("pending_returns", {})


@contextlib.contextmanager
def salt_world(cache, bus, client):
    """Salt's cache backend, event bus and LocalClient: ``cache``, ``bus`` and ``client``."""
    with (
        patch.object(salt.cache, "factory", lambda opts, **kwargs: cache),
        patch.object(salt.utils.event, "get_master_event", lambda *args, **kwargs: bus),
        patch.object(salt.utils.event, "get_event", lambda *args, **kwargs: bus),
        patch.object(salt.client, "get_local_client", client),
    ):
        yield


def master_opts(tmp_path, **eos):
    """A master's opts over ``tmp_path`` (its cache directory made), ``eos`` its ``eos:`` config."""
    (tmp_path / "cache").mkdir(exist_ok=True)
    return {
        "__role": "master",
        "cache": "localfs",
        "cachedir": str(tmp_path / "cache"),
        "sock_dir": str(tmp_path / "sock"),
        "conf_file": str(tmp_path / "master"),
        "eos": eos,
    }


def seeded(cache):
    """The registry over ``cache``, to set up a cluster without the runner."""
    return registry.Registry(cache)
