"""
The Prometheus and Alertmanager configuration of an observe node, generated from EOS's own
thresholds: the role state ``eos.roles.observe`` writes what these functions return.

Configuration (minion config or pillar; pillar wins), every key optional; the defaults are
in docs/configuration.md (``eos:observe:*``), generated from the code:

.. code-block:: yaml

    eos:
      observe:
        targets:
          node_exporter_port: 9100    # where a member's node exporter listens
        rules:
          for: 300                    # seconds a level holds before its alert fires, or
                                      # {warning: 600, critical: 60, ...} per level
          forecast_for: 600           # and a time-to-full forecast
          time_to_full: {warning: 86400, critical: 14400}    # forecast horizons, seconds
          stale_after: 900            # EOS metrics older than this: EosStorageMetricsStale
          exporter_down_for: 300      # a silent node exporter: EosNodeExporterDown
          inodes: true                # inodes count towards a level, as in the beacon
          critical_from: degraded     # levels from here on have severity critical
        prometheus:
          scrape_interval: 15
          scrape_timeout: 10
          evaluation_interval: 15
          alertmanagers: [localhost:9093]
        alertmanager:
          group_wait: 30
          group_interval: 300
          repeat_interval: 14400

The scrape targets come from pillar ``eos:observe_targets`` (the ``eos`` ext_pillar gives it
to observe nodes: every member of the registry at its address). No events are fired; the
alerts come back to Salt through the EOS API's ``POST /api/v1/alerts``
(``eos/alert/<status>/<alertname>``).
"""

from saltext.eos.utils import config
from saltext.eos.utils import errors
from saltext.eos.utils.observe import alertmanager
from saltext.eos.utils.observe import prometheus
from saltext.eos.utils.observe import rules as observe_rules
from saltext.eos.utils.observe import settings as observe_settings

__virtualname__ = "eos_observe"


def __virtual__():
    return __virtualname__


def _section(name):
    layers = config.Layers.from_salt(__opts__, __pillar__)
    return layers.get(observe_settings.SECTION, name)


def targets():
    """
    The file_sd target groups of this observe node (pillar ``eos:observe_targets:groups``),
    and the members left out for want of an address.

    CLI Example:

    .. code-block:: bash

        salt observe-1 eos_observe.targets
    """
    given = (__pillar__.get("eos") or {}).get("observe_targets") or {}
    return {
        "groups": list(given.get("groups") or []),
        "without_address": list(given.get("without_address") or []),
    }


def rules():
    """
    The Prometheus rules file: an alert for every EOS level, for the forecasts under the
    warning and critical horizons, for stale EOS metrics and for a silent node exporter.

    CLI Example:

    .. code-block:: bash

        salt observe-1 eos_observe.rules
    """
    with errors.salt_errors():
        return observe_rules.rules_file(_section(observe_rules.SECTION))


def prometheus_config(targets_file, rules_files):
    """
    prometheus.yml scraping the members listed in ``targets_file`` and evaluating
    ``rules_files`` (a path or a list of paths, all absolute).

    CLI Example:

    .. code-block:: bash

        salt observe-1 eos_observe.prometheus_config \
            /etc/eos/prometheus/targets.json /etc/eos/prometheus/rules.yml
    """
    with errors.salt_errors():
        return prometheus.prometheus_config(targets_file, rules_files, _section(prometheus.SECTION))


def alertmanager_config(api_url, bearer_token_file=None, basic_auth=None):
    """
    alertmanager.yml sending every alert to the EOS API at ``api_url``, with a Salt token
    read from ``bearer_token_file`` or HTTP Basic credentials
    (``basic_auth={"username": ..., "password_file": ...}``).

    CLI Example:

    .. code-block:: bash

        salt observe-1 eos_observe.alertmanager_config https://master:8090 \
            basic_auth='{"username": "alertmanager", "password_file": "/etc/am-password"}'
    """
    with errors.salt_errors():
        return alertmanager.alertmanager_config(
            api_url, bearer_token_file, _section(alertmanager.SECTION), basic_auth
        )
