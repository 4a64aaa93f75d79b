{#-
  Add one node to the cluster, end to end; started by reactor/node_join.sls when a node is
  accepted (eos/cluster/node/<id>/accepted), or by hand:

    salt-run state.orchestrate eos.orchestrate.node_addition pillar='{"eos_join": {"node": "web-3"}}'

  Steps (runner eos_join; each names this run, so a repeated or stale run cannot act on
  another's join):
    1. start       the join lease (joins that arrive together wait their turn) and the
                   master checkpoint: assignment version, roles, scale
    2. health      the minion answers, registers afresh, passes its critical health checks
    3. checkpoint  eos_cluster.checkpoint on the node and every member
    4. assign      roles for the members and the node, stored as a new assignment version
    5. configure   pillar refreshed everywhere; highstate on the node and on every node whose
                   roles changed; eos.roles.common on the others when the scale changed
    6. finish      the node is active: eos/cluster/node/<id>/active
  When any step fails, rollback restores the assignment, marks the node failed
  (eos/cluster/node/<id>/failed with the step and the error), rolls the minions back to their
  checkpoints and re-applies the previous roles where they changed. Accepting the node again
  (salt-run eos_cluster.accept <id>) retries. Running this again by hand for an active node
  changes nothing.

  The reactor also passes eos_join:token, the join_token of the accepted event: start goes
  on only when it is the node's current acceptance's, and uses it up, so a forged or
  repeated accepted event starts nothing (it fails at start and touches no node).
-#}
{%- set options = salt['pillar.get']('eos_join', {}) %}
{%- set node = options.get('node') %}
{%- set run = options.get('run') or (node ~ '-' ~ salt['test.random_hash']()[:16]) %}
{%- if not node %}
eos_join_node_missing:
  test.fail_without_changes:
    - name: "pillar eos_join:node is required (see the header of this file)"
{%- else %}
{%- set steps = ['start', 'health', 'checkpoint', 'assign', 'configure', 'finish'] %}
{%- for step in steps %}

eos_join_{{ step }}:
  salt.runner:
    - name: eos_join.{{ step }}
    - node: {{ node | json }}
    - run: {{ run | json }}
{%- if loop.first and 'token' in options %}
    - token: {{ options['token'] | string | json }}
{%- endif %}
{%- if not loop.first %}
    - require:
      - salt: eos_join_{{ loop.previtem }}
{%- endif %}
{%- endfor %}

eos_join_rollback:
  salt.runner:
    - name: eos_join.rollback
    - node: {{ node | json }}
    - run: {{ run | json }}
    - onfail:
{%- for step in steps %}
      - salt: eos_join_{{ step }}
{%- endfor %}
{%- endif %}
