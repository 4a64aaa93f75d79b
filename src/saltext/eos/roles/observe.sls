{#-
  observe: Prometheus, Alertmanager and Grafana (Grafana's package repository comes from
  observe:repos, set per OS family), watching the whole fleet with EOS's own thresholds.

  Always (the EOS part, eos:manage_software false included), under <config_dir>/prometheus:
    targets.json   file_sd target groups: every member's node exporter (pillar
                   eos:observe_targets, from the registry and the mine); Prometheus rereads
                   it by itself, and reactor/observe_targets.sls rewrites it when membership
                   changes (the eos.roles.observe_targets state)
    rules.yml      the alert rules of eos_observe.rules: one per EOS level, the forecasts,
                   stale EOS metrics, a silent node exporter
  With eos:manage_software (the default), also:
    the packages and services; Prometheus's options (observe:prometheus: extra_args plus
    retention_time and retention_size, in its defaults file); prometheus.yml at
    observe:prometheus:config_file reading the two files above, checked with promtool first;
    alertmanager.yml at observe:alertmanager:config_file sending every alert to the EOS API's
    POST /api/v1/alerts (observe:alertmanager:api_url, with basic_auth or bearer_token_file),
    checked with amtool first. A change restarts the service it configures.
-#}
{%- from 'eos/roles/map.jinja' import roles, config_dir, manage_software with context %}
{%- from 'eos/roles/macros.jinja' import software, service_requisites, requires_packages with context %}
{%- set s = roles.observe %}
{%- set eos_dir = config_dir ~ '/prometheus' %}
{%- set watch_prometheus = service_requisites('observe', s, ['prometheus']) if manage_software else '' %}
include:
  - eos.roles.common
  - eos.roles.observe_targets

eos_observe_rules:
  file.serialize:
    - name: {{ (eos_dir ~ '/rules.yml') | json }}
    - serializer: yaml
    - serializer_opts:
      - default_flow_style: false
    - mode: "0644"
    - dataset: {{ salt['eos_observe.rules']() | json }}
    - require:
      - file: eos_observe_dir
{%- if watch_prometheus | trim %}
    - watch_in:
{{- watch_prometheus }}
{%- endif %}
{%- if manage_software %}
{{ software('observe', s) }}
{%-   set p = s.prometheus %}
{%-   set args = (p.get('extra_args') or []) + ['--storage.tsdb.retention.time=' ~ p.retention_time, '--storage.tsdb.retention.size=' ~ p.retention_size] %}

eos_observe_prometheus_args:
  file.keyvalue:
    - name: {{ p.defaults_file | json }}
    - key: {{ p.args_variable | json }}
    - value: {{ ('"' ~ args | join(' ') ~ '"') | json }}
    - separator: "="
    - append_if_not_found: true
    - create_if_missing: true
{{- requires_packages('observe', s) }}
{%-   if watch_prometheus | trim %}
    - watch_in:
{{- watch_prometheus }}
{%-   endif %}

eos_observe_prometheus_config:
  file.serialize:
    - name: {{ p.config_file | json }}
    - serializer: yaml
    - serializer_opts:
      - default_flow_style: false
    - mode: "0644"
    - dataset: {{ salt['eos_observe.prometheus_config'](eos_dir ~ '/targets.json', [eos_dir ~ '/rules.yml']) | json }}
    - check_cmd: {{ p.check_cmd | json }}
    - require:
      - file: eos_observe_rules
      - file: eos_observe_targets
{%-   if s.get('packages') %}
      - pkg: eos_observe_packages
{%-   endif %}
{%-   if watch_prometheus | trim %}
    - watch_in:
{{- watch_prometheus }}
{%-   endif %}
{%-   set a = s.alertmanager %}
{%-   if a.get('api_url') %}
{%-     set watch_alertmanager = service_requisites('observe', s, ['prometheus-alertmanager', 'alertmanager']) %}

eos_observe_alertmanager_config:
  file.serialize:
    - name: {{ a.config_file | json }}
    - serializer: yaml
    - serializer_opts:
      - default_flow_style: false
    - mode: "0644"
    - dataset: {{ salt['eos_observe.alertmanager_config'](a.api_url, a.get('bearer_token_file'), a.get('basic_auth')) | json }}
    - check_cmd: {{ a.check_cmd | json }}
{{- requires_packages('observe', s) }}
{%-     if watch_alertmanager | trim %}
    - watch_in:
{{- watch_alertmanager }}
{%-     endif %}
{%-   else %}

eos_observe_alertmanager_config:
  test.succeed_without_changes:
    - name: {{ a.config_file | json }}
    - comment: "No alertmanager.yml written: set eos:role_config:observe:alertmanager:api_url to the EOS API (https://<master>:8090) to have the alerts come back as Salt events."
{%-   endif %}
{%- endif %}
