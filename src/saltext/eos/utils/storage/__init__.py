"""
Storage on one node: what its mounts hold, how fast they grow, what may be freed, and how a
new filesystem is made.

=============  ================================================================================
mounts         which mounts are real filesystems, and their statvfs figures
walk           the largest files and directories below a directory, on one filesystem
openfiles      which regular files a process holds open, and whether for writing
analyzer       per-mount figures, threshold level, growth and time to full
history        the tiered usage history per mount, kept across runs
growth         growth rate and time to full from that history
thresholds     the six levels, their actions and where each limit comes from
watch          the ``eos_storage`` beacon's level transitions
response       what a node does when the reactor says a mount may be filling up
protected      data no cleanup step may touch
cleanup        progressive space recovery on one filesystem
metrics        storage reports as Prometheus metrics
fsadvice       which filesystem and options suit a workload on a device
provision      making, mounting and persisting a filesystem
=============  ================================================================================
"""

from saltext.eos.utils.storage import analyzer
from saltext.eos.utils.storage import cleanup
from saltext.eos.utils.storage import fsadvice
from saltext.eos.utils.storage import growth
from saltext.eos.utils.storage import history
from saltext.eos.utils.storage import metrics
from saltext.eos.utils.storage import mounts
from saltext.eos.utils.storage import openfiles
from saltext.eos.utils.storage import protected
from saltext.eos.utils.storage import provision
from saltext.eos.utils.storage import response
from saltext.eos.utils.storage import thresholds
from saltext.eos.utils.storage import walk
from saltext.eos.utils.storage import watch

__all__ = [
    "analyzer",
    "cleanup",
    "fsadvice",
    "growth",
    "history",
    "metrics",
    "mounts",
    "openfiles",
    "protected",
    "provision",
    "response",
    "thresholds",
    "walk",
    "watch",
]
