{#-
  compute: a container runtime sized for work. compute:runtime names the entry of
  compute:runtimes in use (docker on Debian, podman on RedHat); its settings are written to
  its config_file as JSON (docker's daemon.json) or TOML (podman's containers.conf, one
  table per top-level key). Limits come from pillar
  eos:role_config:compute:runtimes:<runtime>:settings; a change restarts the runtime's
  service (docker keeps containers running across the restart: live-restore).
-#}
{%- from 'eos/roles/map.jinja' import roles, manage_software with context %}
{%- from 'eos/roles/macros.jinja' import software, service_requisites, requires_packages, fail with context %}
{%- set s = roles.compute %}
include:
  - eos.roles.common
{%- if manage_software %}
{{ software('compute', s) }}
{%-   set runtime = (s.runtimes or {}).get(s.runtime) %}
{%-   set watch = service_requisites('compute', s) %}
{%-   if runtime is not mapping or runtime.get('format') not in ('json', 'toml') %}

{{ fail('eos_compute_runtime_config', 'eos:role_config:compute:runtime: ' ~ (s.runtime | json) ~ ' names no entry of compute:runtimes with a format of json or toml') }}
{%-   elif runtime.format == 'json' %}

eos_compute_runtime_config:
  file.serialize:
    - name: {{ runtime.config_file | json }}
    - serializer: json
    - serializer_opts:
      - indent: 2
      - sort_keys: true
    - mode: "0644"
    - makedirs: true
    - dataset: {{ (runtime.settings or {}) | json }}
{{- requires_packages('compute', s) }}
{%-     if watch | trim %}
    - watch_in:
{{- watch }}
{%-     endif %}
{%-   else %}

eos_compute_runtime_config:
  file.managed:
    - name: {{ runtime.config_file | json }}
    - mode: "0644"
    - makedirs: true
    - contents: |
        # Managed by Salt (saltext-eos, role compute): changes made here are replaced.
{%-     for table, values in (runtime.settings or {}) | dictsort %}

        [{{ table }}]
{%-       for key, value in values | dictsort %}
        {{ key }} = {{ value | json }}
{%-       endfor %}
{%-     endfor %}
{{- requires_packages('compute', s) }}
{%-     if watch | trim %}
    - watch_in:
{{- watch }}
{%-     endif %}
{%-   endif %}
{%- endif %}
