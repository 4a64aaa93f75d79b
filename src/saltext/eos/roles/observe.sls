{#-
  observe: Prometheus and Grafana (Grafana's package repository comes from
  observe:repos, set per OS family). Prometheus keeps observe:prometheus:retention_time
  and retention_size of data: the options variable (args_variable) of its defaults file
  is set to extra_args plus the retention flags; a change restarts it.
-#}
{%- from 'eos/roles/map.jinja' import roles, manage_software with context %}
{%- from 'eos/roles/macros.jinja' import software, service_requisites, requires_packages with context %}
{%- set s = roles.observe %}
include:
  - eos.roles.common
{%- if manage_software %}
{{ software('observe', s) }}
{%-   set p = s.prometheus %}
{%-   set args = (p.get('extra_args') or []) + ['--storage.tsdb.retention.time=' ~ p.retention_time, '--storage.tsdb.retention.size=' ~ p.retention_size] %}
{%-   set watch = service_requisites('observe', s, ['prometheus']) %}

eos_observe_prometheus_args:
  file.keyvalue:
    - name: {{ p.defaults_file | json }}
    - key: {{ p.args_variable | json }}
    - value: {{ ('"' ~ args | join(' ') ~ '"') | json }}
    - separator: "="
    - append_if_not_found: true
    - create_if_missing: true
{{- requires_packages('observe', s) }}
{%-   if watch | trim %}
    - watch_in:
{{- watch }}
{%-   endif %}
{%- endif %}
