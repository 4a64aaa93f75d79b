"""``config.Layers`` as a master or a minion reads them, built from plain mappings."""

from saltext.eos.utils import config


def master(**eos):
    """The master's ``eos`` key, from its config file."""
    return config.Layers([("master config", eos)])


def minion(minion_config=None, pillar=None):
    """A minion's ``eos`` key: its config file, then its pillar (pillar wins)."""
    return config.Layers([("minion config", minion_config or {}), ("pillar", pillar or {})])
