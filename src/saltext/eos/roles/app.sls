{#-
  app: the application runtime: app:packages (python3), a system user and group
  (app:user, app:group) and the runtime directory app:runtime_dir with its app:app_subdirs,
  owned by that user.
-#}
{%- from 'eos/roles/map.jinja' import roles, manage_software with context %}
{%- from 'eos/roles/macros.jinja' import software with context %}
{%- set s = roles.app %}
include:
  - eos.roles.common
{%- if manage_software %}
{{ software('app', s) }}

eos_app_group:
  group.present:
    - name: {{ s.group | json }}
    - system: true

eos_app_user:
  user.present:
    - name: {{ s.user | json }}
    - gid: {{ s.group | json }}
    - home: {{ s.runtime_dir | json }}
    - createhome: false
    - shell: {{ s.shell | json }}
    - system: true
    - require:
      - group: eos_app_group

eos_app_runtime_dir:
  file.directory:
    - name: {{ s.runtime_dir | json }}
    - user: {{ s.user | json }}
    - group: {{ s.group | json }}
    - mode: {{ s.runtime_dir_mode | json }}
    - makedirs: true
    - require:
      - user: eos_app_user
{%-   if s.app_subdirs %}

eos_app_subdirs:
  file.directory:
    - names: {{ s.app_subdirs | map('regex_replace', '^', s.runtime_dir ~ '/') | list | json }}
    - user: {{ s.user | json }}
    - group: {{ s.group | json }}
    - mode: {{ s.runtime_dir_mode | json }}
    - require:
      - file: eos_app_runtime_dir
{%-   endif %}
{%- endif %}
