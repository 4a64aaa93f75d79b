{#-
  Space recovery at the degraded or emergency level, for an operator (the reactor asks the
  minion itself, eos_storage.respond), with pillar eos_event: {minion, mount, level}; the
  minion is targeted by its exact id.

    salt-run state.orchestrate eos.orchestrate.storage_emergency \
        pillar='{"eos_event": {"minion": "web-1", "mount": "/var", "level": "emergency"}}'

  1. clean files at that level, without touching services; the cleanup fires
     eos/storage/cleanup/<id> with what it freed, and fails when the target is missed;
  2. only then stop the non-essential services (degrade), which the minion remembers for
     eos_storage.restore_services;
  3. re-analyze the mount, so the report and the beacon see the outcome.
-#}
{%- set event = salt['pillar.get']('eos_event', {}) %}
{%- set minion = event.get('minion') %}
{%- set mount = event.get('mount', '/') %}
{%- set level = 'degrade' if event.get('level') == 'degraded' else 'emergency' %}
{%- if not minion %}
eos_event_missing:
  test.fail_without_changes:
    - name: "pillar eos_event:minion is required (see the header of this file)"
{%- else %}
eos_clean_files:
  salt.function:
    - name: eos_storage.cleanup
    - tgt: {{ [minion] | json }}
    - tgt_type: list
    - kwarg:
        level: {{ level }}
        mount: {{ mount | json }}
        dry_run: false
        services: false

eos_degrade_services:
  salt.function:
    - name: eos_storage.cleanup
    - tgt: {{ [minion] | json }}
    - tgt_type: list
    - kwarg:
        level: degrade
        mount: {{ mount | json }}
        dry_run: false
    - onfail:
      - salt: eos_clean_files

eos_reanalyze:
  salt.function:
    - name: eos_storage.analyze
    - tgt: {{ [minion] | json }}
    - tgt_type: list
    - kwarg:
        mount: {{ mount | json }}
    - order: last
{%- endif %}
