{#-
  Reaction to the eos_storage beacon: salt/beacon/<id>/eos_storage/<level>.

  Master config:
    reactor:
      - 'salt/beacon/*/eos_storage/*':
        - salt://eos/reactor/storage_threshold.sls

  One reaction per level and no heavy Jinja: Salt renders reactions one after another.
  Every action re-measures on the minion first: cleanup stops as soon as the mount is under
  its target, so an event for a disk that is no longer full frees nothing.
    warning, none          nothing to do: the event itself is the record
    compress, cleanup      eos_storage.cleanup at that level on that minion and mount
    degraded, emergency    orchestrate/storage_emergency.sls (services only if needed)
    critical               eos_storage.cleanup level=critical: fires eos/storage/critical
                           with a diagnosis and deletes nothing more
-#}
{%- set level = data.get('level') %}
{%- set minion = data.get('id') %}
{%- set mount = data.get('mount') %}
{%- if minion and mount %}
{%- if level in ('compress', 'cleanup', 'critical') %}
eos_storage_{{ level }}:
  local.eos_storage.cleanup:
    - tgt: {{ minion | json }}
    - kwarg:
        level: {{ level }}
        mount: {{ mount | json }}
        dry_run: false
{%- elif level in ('degraded', 'emergency') %}
eos_storage_{{ level }}:
  runner.state.orchestrate:
    - args:
      - mods: eos.orchestrate.storage_emergency
      - pillar:
          eos_event:
            minion: {{ minion | json }}
            mount: {{ mount | json }}
            level: {{ level }}
{%- endif %}
{%- endif %}
