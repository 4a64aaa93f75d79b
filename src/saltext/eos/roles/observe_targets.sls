{#-
  The scrape targets of an observe node: <config_dir>/prometheus/targets.json, the file_sd
  target groups of pillar eos:observe_targets (every member's node exporter, from the
  registry and the mine). Included by eos.roles.observe; reactor/observe_targets.sls applies
  it alone on the observe nodes when membership changes, and Prometheus rereads the file by
  itself. Nothing changes when the members and their addresses did not.
-#}
{%- from 'eos/roles/map.jinja' import config_dir with context %}
{%- set eos_dir = config_dir ~ '/prometheus' %}
{%- set found = salt['eos_observe.targets']() %}

eos_observe_dir:
  file.directory:
    - name: {{ eos_dir | json }}
    - makedirs: true
    - mode: "0755"

eos_observe_targets:
  file.serialize:
    - name: {{ (eos_dir ~ '/targets.json') | json }}
    - serializer: json
    - mode: "0644"
    - dataset: {{ found.groups | json }}
    - require:
      - file: eos_observe_dir
{%- if found.without_address %}

eos_observe_targets_without_address:
  test.configurable_test_state:
    - name: {{ ('not scraped: ' ~ found.without_address | join(', ')) | json }}
    - changes: false
    - result: true
    - warnings: {{ ('These members published no address yet (mine function of eos:role_config:edge:discovery): ' ~ found.without_address | join(', ')) | json }}
{%- endif %}
