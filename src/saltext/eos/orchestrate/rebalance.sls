{#-
  Rebalance the datasets of the data nodes: plan, then execute.

    salt-run state.orchestrate eos.orchestrate.rebalance
    salt-run state.orchestrate eos.orchestrate.rebalance pillar='{"eos_rebalance": {"threshold": 5}}'
    salt-run state.orchestrate eos.orchestrate.rebalance pillar='{"eos_rebalance": {"dry_run": true}}'

  1. plan (dry run): the plan is in the job's return;
  2. execute: interrupted moves are finished or undone first; each move is verified before
     the placement switches and the source is removed. The step fails, moving nothing, while
     a data node is failed or a node is joining, and fails when any move failed (its source
     stays intact; the next run cleans up and completes it).
-#}
{%- set options = salt['pillar.get']('eos_rebalance', {}) %}
{%- set threshold = options.get('threshold') %}
eos_rebalance_plan:
  salt.runner:
    - name: eos_storage.rebalance
    - dry_run: true
{%- if threshold is not none %}
    - threshold: {{ threshold }}
{%- endif %}

{%- if not options.get('dry_run', false) %}

eos_rebalance_execute:
  salt.runner:
    - name: eos_storage.rebalance
    - dry_run: false
{%- if threshold is not none %}
    - threshold: {{ threshold }}
{%- endif %}
    - require:
      - salt: eos_rebalance_plan
{%- endif %}
