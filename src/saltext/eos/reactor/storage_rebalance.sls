{#-
  Reaction to the eos_storage beacon that balances data across nodes:
  salt/beacon/<id>/eos_storage/<level>.

  Master config (beside storage_threshold.sls, which recovers space on the node itself):
    reactor:
      - 'salt/beacon/*/eos_storage/*':
        - salt://eos/reactor/storage_threshold.sls
        - salt://eos/reactor/storage_rebalance.sls

  From the cleanup level up, the runner eos_storage.react plans a rebalance when the node is
  a data node, and executes it only when eos:rebalance:auto is true and the node's own level
  is within automatic_up_to. It refuses to move anything while a data node is failed or a
  node is joining. Nothing here is trusted: any minion can send this event in another's
  name, so the runner checks the id and asks that node (by exact id) for its usage.
-#}
{%- set level = data.get('level') %}
{%- set minion = data.get('id') %}
{%- if minion and level in ('cleanup', 'degraded', 'emergency', 'critical') %}
eos_storage_rebalance:
  runner.eos_storage.react:
    - args:
      - node: {{ minion | json }}
      - level: {{ level }}
{%- endif %}
