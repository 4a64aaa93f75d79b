{#-
  core: the container runtime that runs the applications (docker.io on Debian, podman on
  RedHat) and the application directories: core:apps_dir and its core:app_subdirs.
-#}
{%- from 'eos/roles/map.jinja' import roles, manage_software with context %}
{%- from 'eos/roles/macros.jinja' import software with context %}
{%- set s = roles.core %}
include:
  - eos.roles.common
{%- if manage_software %}
{{ software('core', s) }}

eos_core_apps_dir:
  file.directory:
    - name: {{ s.apps_dir | json }}
    - makedirs: true
    - mode: {{ s.apps_dir_mode | json }}
{%-   if s.app_subdirs %}

eos_core_app_subdirs:
  file.directory:
    - names: {{ s.app_subdirs | map('regex_replace', '^', s.apps_dir ~ '/') | list | json }}
    - mode: {{ s.apps_dir_mode | json }}
    - require:
      - file: eos_core_apps_dir
{%-   endif %}
{%- endif %}
