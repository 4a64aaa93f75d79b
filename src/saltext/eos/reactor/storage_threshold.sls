{#-
  Reaction to the eos_storage beacon: salt/beacon/<id>/eos_storage/<level>.

  Master config:
    reactor:
      - 'salt/beacon/*/eos_storage/*':
        - salt://eos/reactor/storage_threshold.sls

  Nothing in this event is trusted: beacons send their events in a batch, and the master
  fires each with the tag and data exactly as the sending minion wrote them, so any minion
  can send one in another's name. The event only names a minion (exactly: tgt_type list, so
  '*' or 'data-*' match no one) and a mount; that minion measures the mount itself and acts
  on its own level (eos_storage.respond), never above eos:profile:cleanup:automatic_up_to.
  A forged event costs a re-measure.
    warning, none          nothing to do: the event itself is the record
    compress ... critical  eos_storage.respond mount=<mount> on that minion
-#}
{%- set level = data.get('level') %}
{%- set minion = data.get('id') %}
{%- set mount = data.get('mount') %}
{%- if minion is string and mount is string and mount.startswith('/')
      and level in ('compress', 'cleanup', 'degraded', 'emergency', 'critical') %}
eos_storage_respond:
  local.eos_storage.respond:
    - tgt: {{ [minion] | json }}
    - tgt_type: list
    - kwarg:
        mount: {{ mount | json }}
{%- endif %}
