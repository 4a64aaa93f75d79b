"""Where a node's Salt configuration lives: config files, drop-in directories, pki."""

import os
from dataclasses import dataclass

from saltext.eos.utils.cluster import checkpoint as checkpoints

from .inputs import DROP_IN
from .inputs import DROP_IN_PATTERNS


@dataclass(frozen=True)
class Paths:
    minion_conf: str
    minion_dir: str
    master_conf: str
    master_dir: str

    @property
    def minion_drop_in(self):
        return os.path.join(self.minion_dir, DROP_IN)

    @property
    def master_drop_in(self):
        return os.path.join(self.master_dir, DROP_IN)

    def trees(self):
        """What a bootstrap checkpoint saves: EOS's drop-ins of both daemons."""
        found = [checkpoints.Tree(self.minion_dir, DROP_IN_PATTERNS)]
        if self.master_dir != self.minion_dir:
            found.append(checkpoints.Tree(self.master_dir, DROP_IN_PATTERNS))
        return found


def paths(conf_file, default_include="minion.d/*.conf", master_config_dir=None):
    """The drop-in directories: minion.d beside the minion config, master.d beside it too."""
    base = os.path.dirname(os.path.abspath(conf_file))
    minion_dir = os.path.join(base, os.path.dirname(default_include) or "minion.d")
    master_dir = master_config_dir or os.path.join(base, "master.d")
    return Paths(
        minion_conf=os.path.abspath(conf_file),
        minion_dir=minion_dir,
        master_conf=os.path.join(os.path.dirname(master_dir), "master"),
        master_dir=master_dir,
    )
