{#-
  data: PostgreSQL and Redis, a backup directory (data:backup_dir) and a daily cron.d entry
  (data:retention_cron_file) that deletes backups older than data:backup_retention_days.
  Where the package does not create the database cluster (RedHat), data:postgresql:initdb
  runs once before the service starts.
-#}
{%- from 'eos/roles/map.jinja' import roles, manage_software with context %}
{%- from 'eos/roles/macros.jinja' import software, service_requisites, requires_packages, fail with context %}
{%- set s = roles.data %}
include:
  - eos.roles.common
{%- if manage_software %}
{{ software('data', s) }}
{%-   set initdb = s.postgresql.get('initdb') %}
{%-   if initdb %}
{%-     set postgresql_services = service_requisites('data', s, ['postgresql']) %}

eos_data_postgresql_initdb:
  cmd.run:
    - name: {{ initdb.cmd | json }}
    - creates: {{ initdb.creates | json }}
{{- requires_packages('data', s) }}
{%-     if postgresql_services | trim %}
    - require_in:
{{- postgresql_services }}
{%-     endif %}
{%-   endif %}

eos_data_backup_dir:
  file.directory:
    - name: {{ s.backup_dir | json }}
    - makedirs: true
    - mode: {{ s.backup_dir_mode | json }}
{%-   set days = s.backup_retention_days %}
{%-   if days is not number or days is sameas true or days is sameas false or days < 1 %}

{{ fail('eos_data_backup_retention', 'eos:role_config:data:backup_retention_days: ' ~ (days | json) ~ ' is not a whole number of days >= 1') }}
{%-   else %}

eos_data_backup_retention:
  file.managed:
    - name: {{ s.retention_cron_file | json }}
    - mode: "0644"
    - makedirs: true
    - contents: |
        # Managed by Salt (saltext-eos, role data): delete backups older than {{ days | int }} days.
        SHELL=/bin/sh
        PATH=/usr/sbin:/usr/bin:/sbin:/bin
        {{ s.retention_schedule }} root find {{ s.backup_dir }} -mindepth 1 -type f -mtime +{{ days | int }} -delete
    - require:
      - file: eos_data_backup_dir
{%-   endif %}
{%- endif %}
