{#-
  Node registration: salt/auth (a pending key) and eos/cluster/register (a minion's report);
  node addition: eos/cluster/node/<id>/accepted.

  Master config:
    reactor:
      - 'salt/auth':
        - salt://eos/reactor/node_join.sls
      - 'eos/cluster/register':
        - salt://eos/reactor/node_join.sls
      - 'eos/cluster/node/*/accepted':
        - salt://eos/reactor/node_join.sls

  Thin on purpose: the runner eos_cluster.register validates and decides everything. It
  refuses, naming the character, a data['id'] that breaks the node id rule (docs/cluster.md,
  "Node ids": glob and targeting characters, whitespace, a leading '-' or '.', non-ASCII);
  such a minion gets no record and its Salt key is left as it is.
    salt/auth, act pend    a pending record for data['id'] (the runner checks that Salt
                           really holds a pending key); the acceptance policy may accept it
    eos/cluster/register   the registration data['data'] of data['id'], the minion id Salt
                           authenticated; the runner also checks the payload's signature
    eos/cluster/node/<id>/accepted
                           the runner eos_join.join for data['id'] with the event's
                           join_token (what orchestrate/node_addition.sls runs by hand): it
                           queues the node for a wave only when the registry holds that
                           token for the node's current acceptance, and uses it up: a minion
                           can forge this event (a batched _minion_event is fired as
                           written), but not the token. The runner is called directly, not
                           through state.orchestrate: Salt's orchestrations started together
                           in the reactor's threads load grains at once, and one of them can
                           fail with a KeyError before it runs anything.
-#}
{%- if tag == 'salt/auth' and data.get('act') == 'pend' and data.get('id') %}
eos_cluster_pending_key:
  runner.eos_cluster.register:
    - args:
      - node_id: {{ data['id'] | json }}
      - pending_key: true
{%- elif tag == 'eos/cluster/register' and data.get('id') %}
eos_cluster_register:
  runner.eos_cluster.register:
    - args:
      - node_id: {{ data['id'] | json }}
      - payload: {{ data.get('data') | json }}
{%- elif tag.startswith('eos/cluster/node/') and tag.endswith('/accepted') and data.get('id') %}
eos_node_addition:
  runner.eos_join.join:
    - args:
      - node: {{ data['id'] | json }}
      - token: {{ (data.get('join_token') or '') | string | json }}
{%- endif %}
