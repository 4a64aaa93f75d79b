{#-
  The roles of this node: eos.roles.common, then eos.roles.<role> for each role in pillar
  eos:roles (the cluster registry's assignment, through the eos ext_pillar).

    # top.sls
    base:
      '*':
        - eos.roles

  A role needs a state eos/roles/<role>.sls: the package ships one for every role of its
  catalogue, and a site adds its own roles in file_roots. A role without one, or an
  eos:roles that is not a list of names, is a failing state naming it; the other roles
  are still applied.
-#}
{%- from 'eos/roles/macros.jinja' import fail with context %}
{%- set wanted = salt['pillar.get']('eos:roles', []) %}
{%- if wanted is none %}
{%-   set wanted = [] %}
{%- elif wanted is string %}
{%-   set wanted = [wanted] %}
{%- endif %}
{%- set served = salt['cp.list_master'](saltenv=saltenv, prefix='eos/roles/') %}
{%- set available = [] %}
{%- for path in served if path.endswith('.sls') and path.count('/') == 2 %}
{%-   set name = path.split('/')[-1][:-4] %}
{%-   if name not in ('init', 'common') %}
{%-     do available.append(name) %}
{%-   endif %}
{%- endfor %}
{%- set available = available | sort %}
{%- set known = [] %}
{%- set unknown = [] %}
{%- if wanted is mapping or wanted is not sequence %}
{%-   set invalid = true %}
{%- else %}
{%-   set invalid = false %}
{%-   for role in wanted %}
{%-     if role is string and role in available %}
{%-       if role not in known %}{% do known.append(role) %}{% endif %}
{%-     elif role not in unknown %}
{%-       do unknown.append(role) %}
{%-     endif %}
{%-   endfor %}
{%- endif %}
include:
  - eos.roles.common
{%- for role in known %}
  - eos.roles.{{ role }}
{%- endfor %}
{%- if invalid %}

{{ fail('eos_roles_invalid', 'pillar eos:roles: ' ~ (wanted | json) ~ ' is not a list of role names') }}
{%- endif %}
{%- for role in unknown %}

{{ fail('eos_role_unknown_' ~ loop.index, "pillar eos:roles: unknown role '" ~ role ~ "': there is no state eos.roles." ~ role ~ ' (roles with a state: ' ~ available | join(', ') ~ ')') }}
{%- endfor %}
