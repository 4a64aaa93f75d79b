{#-
  Keep every observe node's scrape targets current: eos/cluster/node/<id>/<status>.

  Master config:
    reactor:
      - 'eos/cluster/node/*/*': [salt://eos/reactor/observe_targets.sls]

  When a node's status changes (accepted, active, failed, unreachable, down, drained,
  rejected, removed), the observe nodes apply eos.roles.observe_targets: their pillar is
  compiled afresh from the registry and the mine, and targets.json is rewritten when the
  members or their addresses changed (Prometheus rereads it by itself). Nothing here is
  trusted: a forged event makes the observe nodes read the registry again, nothing more.
-#}
{%- set parts = tag.split('/') %}
{%- if parts | length == 5 and parts[4] in ('accepted', 'active', 'failed', 'unreachable', 'down', 'drained', 'rejected', 'removed') %}
eos_observe_targets:
  local.state.apply:
    - tgt: 'I@eos:roles:observe'
    - tgt_type: compound
    - args:
      - mods: eos.roles.observe_targets
      # Queued behind a state run in progress (a join's highstate), not refused.
      - queue: true
{%- endif %}
