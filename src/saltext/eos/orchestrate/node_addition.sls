{#-
  Add a node to the cluster, in a wave with the nodes accepted together; started by
  reactor/node_join.sls when a node is accepted (eos/cluster/node/<id>/accepted), or by hand:

    salt-run state.orchestrate eos.orchestrate.node_addition pillar='{"eos_join": {"node": "web-3"}}'

  One step, eos_join.join: the node is queued. When no wave is running, this run takes the join
  lease, gathers until no node was queued for eos:join:wave_seconds (six windows at most),
  joins the queue as one wave, then the nodes queued meanwhile as the next one; otherwise it
  returns at once, and the running wave takes the node. A wave:
    health      every node answers, registers afresh, passes its critical health checks
    checkpoint  roles placed over the members and the wave; eos_cluster.checkpoint on the
                nodes that placement touches (the wave, the members whose roles change, and
                every member when the scale changes)
    assign      the placement stored as one new assignment version
    configure   pillar refreshed and highstate on the touched nodes, eos:join:batch at a time
    finish      each node that got through is active: eos/cluster/node/<id>/active
  A node that fails its health, checkpoint or states is rolled back and marked failed alone
  (eos/cluster/node/<id>/failed with the step and the error); roles are placed again without
  it. A failure on a member that was already in the cluster rolls the whole wave back.
  Accepting a failed node again (salt-run eos_cluster.accept <id>) retries. Running this again
  by hand for an active node changes nothing.

  The reactor also passes eos_join:token, the join_token of the accepted event: the node is
  queued only when it is the node's current acceptance's, and the token is used up, so a
  forged or repeated accepted event starts nothing (it fails and touches no node).

  The single-node steps (eos_join.start ... finish, rollback) remain for joining one node by
  hand, step by step.
-#}
{%- set options = salt['pillar.get']('eos_join', {}) %}
{%- set node = options.get('node') %}
{%- set run = options.get('run') or (node ~ '-' ~ salt['test.random_hash']()[:16]) %}
{%- if not node %}
eos_join_node_missing:
  test.fail_without_changes:
    - name: "pillar eos_join:node is required (see the header of this file)"
{%- else %}
eos_join:
  salt.runner:
    - name: eos_join.join
    - node: {{ node | json }}
    - run: {{ run | json }}
{%- if 'token' in options %}
    - token: {{ options['token'] | string | json }}
{%- endif %}
{%- endif %}
