{#-
  monolith: the single node of a one-node cluster: the roles in monolith:combines (edge,
  core and data, each with its own settings) plus host monitoring (the Prometheus node
  exporter and its textfile collector directory, monolith:monitoring:textfile_dir).
  monolith:packages and monolith:services list everything a monolith installs and runs;
  this state manages those the combined roles do not.
-#}
{%- from 'eos/roles/map.jinja' import roles, manage_software with context %}
{%- from 'eos/roles/macros.jinja' import software, requires_packages with context %}
{%- set s = roles.monolith %}
{%- set combined = s.get('combines') or [] %}
include:
  - eos.roles.common
{%- for role in combined %}
  - eos.roles.{{ role }}
{%- endfor %}
{%- if manage_software %}
{%-   set covered = {'packages': [], 'services': []} %}
{%-   for role in combined if role in roles %}
{%-     do covered.packages.extend(roles[role].get('packages') or []) %}
{%-     do covered.services.extend(roles[role].get('services') or []) %}
{%-   endfor %}
{%-   set own = {
        'repos': s.get('repos') or {},
        'packages': (s.packages or []) | reject('in', covered.packages) | list,
        'services': (s.services or []) | reject('in', covered.services) | list,
      } %}
{{ software('monolith', own) }}

eos_monolith_textfile_dir:
  file.directory:
    - name: {{ s.monitoring.textfile_dir | json }}
    - makedirs: true
    - mode: "0755"
{{- requires_packages('monolith', own) }}
{%- endif %}
