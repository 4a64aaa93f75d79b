"""
The observe role's configuration, generated: Prometheus scrapes every node's exporter, judges
the EOS storage metrics by each mount's own thresholds, and Alertmanager posts the alerts to
the EOS REST API.

=============  ================================================================================
generator      what it generates
=============  ================================================================================
targets        the ``file_sd`` target groups (JSON): one per member node, ``node`` and
               ``roles`` labels, from the registry's records and the nodes' addresses
rules          the rules file: an alert per EOS level, the forecast horizons, stale metrics
               and a silent exporter
alertmanager   alertmanager.yml: route, inhibition, the webhook to ``POST /api/v1/alerts``
prometheus     prometheus.yml: the targets file, the rules files, the Alertmanagers
settings       what they share: reading a section, whole numbers, Prometheus durations
=============  ================================================================================

Each generator returns plain data for the caller to write as YAML (JSON for the targets);
none reads a file, the registry or the mine itself. What the node measures comes from the
``eos_storage`` beacon's ``textfile`` (``storage.metrics``): usage and inode ratios, the
threshold of each level per mount, the time to full and the timestamp of the run.

Configuration, each generator its section as ``settings`` (these are the defaults; times in
seconds):

.. code-block:: yaml

    eos:
      observe:
        targets:
          node_exporter_port: 9100    # added to an address given without a port
        rules:
          for: 300                    # a level must hold this long; or {level: seconds}
          forecast_for: 600
          time_to_full:               # the beacon's horizons (its time_to_full option)
            warning: 86400
            critical: 14400
          stale_after: 900            # three runs of the slowest scale's beacon interval
          exporter_down_for: 300
          inodes: true                # judge inode usage too, as the beacon does
          critical_from: degraded     # this level and those above alert as critical
        alertmanager:
          group_wait: 30
          group_interval: 300
          repeat_interval: 14400
        prometheus:
          scrape_interval: 15
          scrape_timeout: 10
          evaluation_interval: 15
          alertmanagers: ["localhost:9093"]

And as arguments, what only the caller knows: the registry records and ``{node id: address}``
(``targets.target_groups``), the API's URL and the token file (``alertmanager_config``), the
paths of the targets and rules files (``prometheus_config``).
"""

from saltext.eos.utils.observe import alertmanager
from saltext.eos.utils.observe import prometheus
from saltext.eos.utils.observe import rules
from saltext.eos.utils.observe import settings
from saltext.eos.utils.observe import targets

__all__ = ["alertmanager", "prometheus", "rules", "settings", "targets"]
