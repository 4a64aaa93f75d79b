{#-
  edge: nginx, haproxy and keepalived in front of the cluster.

  haproxy balances its frontend (edge:haproxy:bind) over the core nodes (port
  edge:haproxy:server_port). The servers are pillar eos:role_config:edge:upstreams when it
  is a non-empty list; otherwise the core nodes found in the Salt mine: every node publishes
  its addresses there (eos.roles.common), and the edge reads those of the live core and
  monolith nodes the registry lists (pillar eos:holders, so a node that is down, drained,
  removed or rejected is gone from it), or of the minions matching edge:discovery:target
  when the site sets one, sorted by minion id, using each one's first address. With no core
  node yet the backend has no server and a comment says so.

  keepalived moves edge:keepalived:virtual_ip between the edge nodes; without a virtual_ip it
  runs with no VRRP instance.
-#}
{%- from 'eos/roles/map.jinja' import roles, manage_software with context %}
{%- from 'eos/roles/macros.jinja' import software, service_requisites, requires_packages, fail with context %}
{%- set s = roles.edge %}
include:
  - eos.roles.common
{%- if manage_software %}
{{ software('edge', s, reload=True) }}

{%- set servers = [] %}
{%- set missing = [] %}
{%- set invalid = [] %}
{%- set port = s.haproxy.server_port %}
{%- set upstreams = s.upstreams %}
{%- if upstreams is string %}
{%-   set upstreams = [upstreams] %}
{%- elif upstreams is mapping %}
{%-   do invalid.append(upstreams) %}
{%-   set upstreams = [] %}
{%- endif %}
{%- if upstreams or invalid %}
{%-   set source = 'pillar eos:role_config:edge:upstreams' %}
{%-   for entry in upstreams %}
{%-     if entry is mapping and entry.get('address') %}
{%-       do servers.append({'name': entry.get('name') or 'upstream-' ~ loop.index, 'address': entry.address, 'port': entry.get('port') or port}) %}
{%-     elif entry is string and entry %}
{%-       do servers.append({'name': 'upstream-' ~ loop.index, 'address': entry, 'port': port}) %}
{%-     else %}
{%-       do invalid.append(entry) %}
{%-     endif %}
{%-   endfor %}
{%- elif s.discovery.target %}
{%-   set source = 'mine ' ~ s.discovery.mine_function ~ ' of the minions matching ' ~ s.discovery.target %}
{%-   set found = salt['mine.get'](s.discovery.target, s.discovery.mine_function, tgt_type='compound') or {} %}
{%- else %}
{%-   set holders = salt['pillar.get']('eos:holders', {}) %}
{%-   set ids = ((holders.get('core') or []) + (holders.get('monolith') or [])) | unique | list %}
{%-   set source = 'mine ' ~ s.discovery.mine_function ~ ' of the core and monolith nodes of the registry (pillar eos:holders)' %}
{%-   set found = (salt['mine.get'](ids, s.discovery.mine_function, tgt_type='list') or {}) if ids else {} %}
{%-   for node, addresses in found | dictsort %}
{%-     if addresses is sequence and addresses is not string and addresses %}
{%-       do servers.append({'name': node | regex_replace('[^A-Za-z0-9_.:-]', '_'), 'address': addresses[0], 'port': port}) %}
{%-     else %}
{%-       do missing.append(node) %}
{%-     endif %}
{%-   endfor %}
{%- endif %}
{%- set haproxy_watch = service_requisites('edge', s, ['haproxy']) %}
{%- if invalid %}

{{ fail('eos_edge_haproxy_config', 'pillar eos:role_config:edge:upstreams: ' ~ (invalid | json) ~ ': each entry is an address or a mapping with an address (and optional name, port)') }}
{%- else %}

eos_edge_haproxy_config:
  file.managed:
    - name: {{ s.haproxy.config_file | json }}
    - source: salt://eos/roles/haproxy.cfg.jinja
    - template: jinja
    - makedirs: true
    - mode: "0644"
{%-   if s.haproxy.get('check_cmd') %}
    - check_cmd: {{ s.haproxy.check_cmd | json }}
{%-   endif %}
    - context:
        haproxy: {{ s.haproxy | json }}
        servers: {{ servers | json }}
        source: {{ source | json }}
        missing: {{ missing | json }}
{{- requires_packages('edge', s) }}
{%-   if haproxy_watch | trim %}
    - watch_in:
{{- haproxy_watch }}
{%-   endif %}
{%- endif %}
{%- set keepalived_watch = service_requisites('edge', s, ['keepalived']) %}
{%- if s.keepalived.virtual_ip and not s.keepalived.interface %}

{{ fail('eos_edge_keepalived_config', 'pillar eos:role_config:edge:keepalived:interface is required with virtual_ip ' ~ s.keepalived.virtual_ip) }}
{%- else %}

eos_edge_keepalived_config:
  file.managed:
    - name: {{ s.keepalived.config_file | json }}
    - source: salt://eos/roles/keepalived.conf.jinja
    - template: jinja
    - makedirs: true
    - mode: "0644"
    - context:
        keepalived: {{ s.keepalived | json }}
        router_id: {{ grains['id'] | json }}
{{- requires_packages('edge', s) }}
{%-   if keepalived_watch | trim %}
    - watch_in:
{{- keepalived_watch }}
{%-   endif %}
{%- endif %}
{%- endif %}
