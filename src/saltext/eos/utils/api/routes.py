"""The routes: method, path, handler, the fields each accepts and the permission it needs."""

import dataclasses
import re
import urllib.parse
from collections.abc import Mapping

from .alerts import ALERT_RUNNER
from .alerts import WEBHOOK_FIELDS
from .envelope import ApiError
from .fields import CALCULATE_FIELDS
from .fields import INFO_QUERY
from .fields import LOGIN_FIELDS
from .fields import NO_FIELDS
from .fields import NODES_QUERY
from .fields import REGISTER_FIELDS
from .fields import _name

PREFIX = "/api/v1"


@dataclasses.dataclass(frozen=True)
class Route:
    """
    One endpoint: ``path`` below PREFIX as OpenAPI writes it, the Api method serving it, and
    the runner functions a caller's eauth permissions must allow (``public``: no token;
    ``basic_auth``: HTTP Basic eauth credentials are accepted besides a token). ``pool``
    names the workers that run it, so work of one kind never waits behind another's:
    ``liveness`` (health and the document), ``login`` (eauth, which may be slow to refuse),
    ``read`` (reads of the registry in this process) or ``runner`` (runner jobs).
    """

    method: str
    path: str
    operation: str
    runners: tuple = ()
    public: bool = False
    body: Mapping | None = None  # Field specs of a JSON object body; None: no body read
    query: Mapping = dataclasses.field(default_factory=dict)
    basic_auth: bool = False
    pool: str = "runner"

    @property
    def pattern(self):
        template = re.escape(PREFIX + self.path).replace(r"\{id\}", "(?P<id>[^/]+)")
        return re.compile(f"^{template}$")


ROUTES = (
    Route("POST", "/login", "login", public=True, body=LOGIN_FIELDS, pool="login"),
    Route("POST", "/logout", "logout", body=NO_FIELDS),
    Route("GET", "/health", "health", public=True, pool="liveness"),
    Route("GET", "/openapi.json", "openapi", public=True, pool="liveness"),
    Route(
        "GET",
        "/cluster/info",
        "cluster_info",
        ("eos_cluster.info",),
        query=INFO_QUERY,
        pool="read",
    ),
    Route(
        "POST",
        "/cluster/register",
        "register_node",
        ("eos_cluster.preregister",),
        body=REGISTER_FIELDS,
    ),
    Route("GET", "/nodes", "list_nodes", ("eos_cluster.nodes",), query=NODES_QUERY, pool="read"),
    Route("GET", "/nodes/{id}", "get_node", ("eos_cluster.nodes",), pool="read"),
    Route("DELETE", "/nodes/{id}", "remove_node", ("eos_cluster.remove",)),
    Route("POST", "/nodes/{id}/accept", "accept_node", ("eos_cluster.accept",), body=NO_FIELDS),
    Route("POST", "/nodes/{id}/reject", "reject_node", ("eos_cluster.reject",), body=NO_FIELDS),
    Route(
        "POST",
        "/roles/calculate",
        "calculate_roles",
        ("eos_roles.calculate",),
        body=CALCULATE_FIELDS,
    ),
    Route("POST", "/roles/apply", "apply_roles", ("eos_roles.apply",), body=NO_FIELDS),
    # Also jobs.list_jobs and jobs.lookup_jid when the mine is empty and the caller may run them.
    Route("GET", "/storage/report", "storage_report", ("mine.get",), pool="read"),
    # Alertmanager's webhook. Its receiver cannot log in, and a Salt token expires: HTTP Basic
    # credentials (checked by eos_api:webhook_eauth) are accepted too. Nothing runs a runner:
    # the events are fired on the master's bus, as Salt's own /hook does, when the caller's
    # eauth allows the runner that would send them.
    Route(
        "POST",
        "/alerts",
        "receive_alerts",
        (ALERT_RUNNER,),
        body=WEBHOOK_FIELDS,
        basic_auth=True,
    ),
)


def route_for(method, path, routes=ROUTES):
    """(route, path parameters) for a request; ApiError 404 or 405 (with Allow) otherwise."""
    allowed = []
    for route in routes:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if route.method == method:
            params = {
                name: urllib.parse.unquote(value) for name, value in found.groupdict().items()
            }
            return route, params
        allowed.append(route.method)
    if allowed:
        methods = ", ".join(sorted(set(allowed)))
        raise ApiError(
            405,
            f"{_name(method)} is not allowed on {_name(path)}; use {methods}",
            headers={"Allow": methods},
        )
    raise ApiError(404, f"no endpoint {_name(path)}; the API lives under {PREFIX}")
