{#-
  monolith: the single node of a one-node cluster: the roles in monolith:combines (edge,
  core and data, each with its own settings); the node exporter comes with eos.roles.common.
  monolith:packages and monolith:services list everything a monolith installs and runs;
  this state manages those the combined roles do not.
-#}
{%- from 'eos/roles/map.jinja' import roles, manage_software with context %}
{%- from 'eos/roles/macros.jinja' import software with context %}
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
{%- endif %}
