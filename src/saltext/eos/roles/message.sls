{#-
  message: the RabbitMQ broker, with message:config written to message:config_file as
  `key = value` lines (sorted); a change restarts the broker.
-#}
{%- from 'eos/roles/map.jinja' import roles, manage_software with context %}
{%- from 'eos/roles/macros.jinja' import software, service_requisites, requires_packages with context %}
{%- set s = roles.message %}
include:
  - eos.roles.common
{%- if manage_software %}
{{ software('message', s) }}
{%-   set watch = service_requisites('message', s) %}

eos_message_config:
  file.managed:
    - name: {{ s.config_file | json }}
    - mode: "0644"
    - makedirs: true
    - contents: |
        # Managed by Salt (saltext-eos, role message): changes made here are replaced.
{%-   for key, value in (s.config or {}) | dictsort %}
        {{ key }} = {{ (value | string | lower) if value is sameas true or value is sameas false else value }}
{%-   endfor %}
{{- requires_packages('message', s) }}
{%-   if watch | trim %}
    - watch_in:
{{- watch }}
{%-   endif %}
{%- endif %}
