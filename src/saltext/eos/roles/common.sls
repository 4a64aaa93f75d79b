{#-
  The EOS part of every node, included by every role state and applied even when
  eos:manage_software is false.

    <config_dir>/role.yaml         roles, scale, cluster_id, node_count (pillar eos:*)
    <config_dir>/thresholds.yaml   pillar eos:thresholds: the effective limits for this node
    beacon eos_storage             interval: eos:beacon:interval, else
                                   eos:profile:monitoring_interval, else 60; the other
                                   options from pillar eos:beacon; saved to beacons.conf
    mine <discovery.mine_function> this node's addresses, for the edge nodes to find it
                                   (role_config edge:discovery: interface, cidr)

  With eos:manage_software (the default), also the Prometheus node exporter (settings
  eos:role_config:common): its package and service, its textfile collector directory
  (common:node_exporter:textfile_dir) and its flags in its defaults file (a change restarts
  it); the beacon's textfile option defaults to <textfile_dir>/<textfile_name>, so the EOS
  metrics are served with the host's. Without it, the beacon writes a textfile only where
  pillar eos:beacon:textfile says.

  <config_dir> is config.get eos:config_dir (default /etc/eos). Every state reports no
  change when nothing changed, so applying twice in a row changes nothing the second time.
-#}
{%- from 'eos/roles/map.jinja' import roles, config_dir, manage_software with context %}
{%- from 'eos/roles/macros.jinja' import fail, software, service_requisites, requires_packages with context %}
{%- set eos = salt['pillar.get']('eos', {}) or {} %}
{%- set c = roles.common %}
{%- set exporter = c.node_exporter %}

eos_config_dir:
  file.directory:
    - name: {{ config_dir | json }}
    - makedirs: true
    - mode: "0755"

eos_role_file:
  file.serialize:
    - name: {{ (config_dir ~ '/role.yaml') | json }}
    - serializer: yaml
    - serializer_opts:
      - default_flow_style: false
    - mode: "0644"
    - dataset:
        roles: {{ (eos.get('roles') or []) | json }}
        scale: {{ eos.get('scale') | json }}
        cluster_id: {{ eos.get('cluster_id') | json }}
        node_count: {{ eos.get('node_count') | json }}
    - require:
      - file: eos_config_dir

eos_thresholds_file:
  file.serialize:
    - name: {{ (config_dir ~ '/thresholds.yaml') | json }}
    - serializer: yaml
    - serializer_opts:
      - default_flow_style: false
    - mode: "0644"
    - dataset: {{ (eos.get('thresholds') or {}) | json }}
    - require:
      - file: eos_config_dir

{#- The beacon: options in a fixed order (interval, then the others by name), so that
    beacon.present, which compares the option list as a whole, finds it unchanged. #}
{%- set beacon = eos.get('beacon') or {} %}
{%- if beacon is sequence and beacon is not string and beacon is not mapping %}
{%-   set merged = {} %}
{%-   for item in beacon if item is mapping %}
{%-     do merged.update(item) %}
{%-   endfor %}
{%-   set beacon = merged %}
{%- endif %}
{%- if beacon is mapping and manage_software and not beacon.get('textfile') %}
{%-   set beacon = dict(beacon, textfile=exporter.textfile_dir ~ '/' ~ exporter.textfile_name) %}
{%- endif %}
{%- if beacon is not mapping %}

{{ fail('eos_storage_beacon', 'pillar eos:beacon: ' ~ (beacon | json) ~ ' is not a mapping of eos_storage beacon options') }}
{%- elif salt['pillar.get']('beacons:eos_storage') %}

eos_storage_beacon:
  test.succeed_without_changes:
    - name: eos_storage
    - comment: "The eos_storage beacon is configured in pillar (beacons:eos_storage): left alone."
{%- else %}
{%-   set profile = eos.get('profile') or {} %}
{%-   set interval = beacon.get('interval') or (profile.get('monitoring_interval') if profile is mapping else none) or 60 %}

eos_storage_beacon:
  beacon.present:
    - name: eos_storage
    - save: true
    - interval: {{ interval | json }}
{%-   for key, value in beacon | dictsort if key != 'interval' %}
    - {{ key | json }}: {{ value | json }}
{%-   endfor %}
{%- endif %}

{#- Discovery: every node publishes its addresses in the mine; an edge reads those of the
    core nodes. Published only when the mine does not hold them already. #}
{%- set discovery = roles.edge.discovery %}
{%- set address_args = {} %}
{%- for key in ('interface', 'cidr') if discovery.get(key) %}
{%-   do address_args.update({key: discovery[key]}) %}
{%- endfor %}
{%- set addresses = salt['network.ip_addrs'](**address_args) %}
{%- set published = salt['mine.get'](grains['id'], discovery.mine_function, tgt_type='list') or {} %}

eos_mine_addresses:
{%- if published.get(grains['id']) == addresses %}
  test.succeed_without_changes:
    - name: {{ discovery.mine_function | json }}
    - comment: {{ ('The mine holds this node\'s addresses under ' ~ discovery.mine_function ~ ': ' ~ addresses | join(', ')) | json }}
{%- else %}
  module.run:
    - mine.send:
      - {{ discovery.mine_function | json }}
      - mine_function: network.ip_addrs
{%-   for key, value in address_args | dictsort %}
      - {{ key }}: {{ value | json }}
{%-   endfor %}
{%- endif %}
{%- if manage_software %}
{%-   set args = ['--collector.textfile.directory=' ~ exporter.textfile_dir, '--web.listen-address=' ~ exporter.listen_address] + (exporter.get('extra_args') or []) %}
{%-   set watch = service_requisites('common', c) %}
{{ software('common', c) }}

eos_common_textfile_dir:
  file.directory:
    - name: {{ exporter.textfile_dir | json }}
    - makedirs: true
    - mode: "0755"
{{- requires_packages('common', c) }}

eos_common_node_exporter_args:
  file.keyvalue:
    - name: {{ exporter.defaults_file | json }}
    - key: {{ exporter.args_variable | json }}
    - value: {{ ('"' ~ args | join(' ') ~ '"') | json }}
    - separator: "="
    - append_if_not_found: true
    - create_if_missing: true
{{- requires_packages('common', c) }}
{%-   if watch | trim %}
    - watch_in:
{{- watch }}
{%-   endif %}
{%- endif %}
