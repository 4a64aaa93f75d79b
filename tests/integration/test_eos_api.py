"""
The REST API through a real salt-master, salt-api and minion, over real HTTP on loopback.

One master for the module, with file eauth for two users: ``admin`` may run every runner
the API uses, ``reader`` only ``eos_cluster.info`` and ``eos_cluster.nodes``. salt-api runs
the package's ``eos_api`` netapi module. One minion publishes ``eos_storage.analyze`` to
the mine. Tests build on each other, in file order.
"""

import base64
import time

import hypothesis
import pytest
import schemathesis
from pytestshellutils.utils import ports

from saltext.eos.utils import api
from tests.support.eos_api import EosApiDaemon
from tests.support.eos_api import call
from tests.support.eos_api import login

ADMIN = ("admin", "admin-secret")
READER = ("reader", "reader-secret")
ALERTER = ("alertmanager", "alerter-secret")  # Alertmanager's webhook: may send events only
ADMIN_RUNNERS = [
    "eos_cluster.*",
    "eos_roles.*",
    "mine.get",
    "jobs.list_jobs",
    "jobs.lookup_jid",
]
READER_RUNNERS = ["eos_cluster.info", "eos_cluster.nodes"]
PREREGISTERED = "api-node-1"
GIB = 1024**3
# Generated requests per endpoint: enough to find a crash, few enough to stay near a minute.
CONTRACT_EXAMPLES = 20


@pytest.fixture(scope="module")
def api_port():
    return ports.get_unused_localhost_port()


@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("eauth") / "users.txt"
    users = (ADMIN, READER, ALERTER)
    path.write_text("".join(f"{user}:{password}\n" for user, password in users))
    return path


@pytest.fixture(scope="module")
def master_config_overrides(api_port, users_file):
    return {
        "eos_api": {"port": api_port, "max_body_bytes": 64 * 1024, "webhook_eauth": "file"},
        "netapi_enable_clients": ["runner"],
        "external_auth": {
            "file": {
                "^filename": str(users_file),
                "^filetype": "text",
                ADMIN[0]: [{"@runner": ADMIN_RUNNERS}],
                READER[0]: [{"@runner": READER_RUNNERS}],
                # Argument-restricted, as a site grants a webhook: only the alert events.
                ALERTER[0]: [{"@runner": [{"event.send": {"kwargs": {"tag": "eos/alert/.*"}}}]}],
            }
        },
    }


@pytest.fixture(scope="module")
def minion_config_overrides():
    return {"mine_functions": {"eos_storage.analyze": []}}


@pytest.fixture(scope="module")
def salt_api(master):
    factory = master.salt_api_daemon(factory_class=EosApiDaemon)
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def base_url(salt_api, api_port):
    return f"http://127.0.0.1:{api_port}{api.PREFIX}"


@pytest.fixture(scope="module")
def admin_token(base_url):
    return login(base_url, ADMIN)


@pytest.fixture(scope="module")
def reader_token(base_url):
    return login(base_url, READER)


@pytest.fixture(scope="module")
def master_runners(salt_run_cli):
    """The runner functions the master can load."""
    ret = salt_run_cli.run("doc.runner")
    assert ret.returncode == 0, ret
    return set(ret.data)


# --- health and login --------------------------------------------------------------------------


def test_health_needs_no_token(base_url):
    reply = call(base_url, "GET", "/health")
    assert reply.status == 200, reply
    assert reply.data["master"] == "running"
    assert reply.data["api_version"] == api.API_VERSION
    assert reply.data["registry"] in ("ok", "empty")
    assert reply.data["status"] == "ok"


def test_openapi_document_is_served(base_url):
    reply = call(base_url, "GET", "/openapi.json")
    assert reply.status == 200
    assert reply.json == api.load_document()


def test_login_with_file_eauth(base_url):
    reply = call(
        base_url, "POST", "/login", {"username": "admin", "password": ADMIN[1], "eauth": "file"}
    )
    assert reply.status == 200, reply
    session = reply.data
    assert session["user"] == "admin"
    assert session["eauth"] == "file"
    assert session["expire"] > time.time()
    assert {"@runner": ADMIN_RUNNERS} in session["perms"]


def test_login_refuses_a_wrong_password(base_url):
    reply = call(
        base_url, "POST", "/login", {"username": "admin", "password": "x", "eauth": "file"}
    )
    assert reply.status == 401
    assert reply.error["code"] == "unauthorized"
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def test_login_names_a_missing_field(base_url):
    reply = call(base_url, "POST", "/login", {"username": "admin", "password": "x"})
    assert reply.status == 400
    assert reply.error["field"] == "eauth"


def test_login_accepts_an_existing_salt_token(base_url, reader_token):
    reply = call(base_url, "POST", "/login", {"token": reader_token})
    assert reply.status == 200, reply
    assert reply.data["user"] == "reader"
    assert reply.data["perms"] == [{"@runner": READER_RUNNERS}]


# --- authentication and authorisation on every endpoint -----------------------------------------

PROTECTED = [route for route in api.ROUTES if not route.public]
ADMIN_ONLY = [
    route for route in PROTECTED if route.runners and route.runners[0] not in READER_RUNNERS
]


def concrete(path):
    return path.replace("{id}", "no-such-node")


@pytest.mark.parametrize("route", PROTECTED, ids=lambda route: f"{route.method} {route.path}")
def test_every_protected_endpoint_needs_a_token(base_url, route):
    reply = call(base_url, route.method, concrete(route.path))
    assert reply.status == 401, reply
    assert reply.error["code"] == "unauthorized"


@pytest.mark.parametrize("route", PROTECTED, ids=lambda route: f"{route.method} {route.path}")
def test_an_unknown_token_is_refused(base_url, route):
    reply = call(base_url, route.method, concrete(route.path), token="0" * 40)
    assert reply.status == 401, reply


@pytest.mark.parametrize("route", ADMIN_ONLY, ids=lambda route: f"{route.method} {route.path}")
def test_reader_may_not_use_admin_endpoints(base_url, reader_token, route):
    # A body that passes its checks: the permission is what is refused.
    body = {"/cluster/register": {"id": "n-1"}, "/alerts": alert_payload("Refused")}.get(route.path)
    reply = call(base_url, route.method, concrete(route.path), body=body, token=reader_token)
    assert reply.status == 403, reply
    assert reply.error["code"] == "forbidden"
    assert route.runners[0] in reply.error["message"]


def test_reader_reads_cluster_info_and_nodes(base_url, reader_token):
    info = call(base_url, "GET", "/cluster/info", token=reader_token)
    assert info.status == 200, info
    assert {"node_count", "scale", "nodes", "roles"} <= set(info.data)
    nodes = call(base_url, "GET", "/nodes", token=reader_token)
    assert nodes.status == 200, nodes
    assert nodes.data["total"] == len(nodes.data["nodes"])


# --- storage report -----------------------------------------------------------------------------


def test_storage_report_from_the_mine(base_url, admin_token, reader_token, minion, salt_cli):
    ret = salt_cli.run("mine.update", minion_tgt=minion.id)
    assert ret.returncode == 0, ret
    reply = call(base_url, "GET", "/storage/report", token=admin_token)
    assert reply.status == 200, reply
    assert reply.data["source"] == "mine"
    assert "/" in reply.data["nodes"][minion.id]["mounts"]
    assert call(base_url, "GET", "/storage/report", token=reader_token).status == 403


def test_storage_report_from_the_job_cache(base_url, admin_token, minion, salt_cli):
    assert salt_cli.run("mine.flush", minion_tgt=minion.id).returncode == 0
    ret = salt_cli.run("eos_storage.analyze", minion_tgt=minion.id)
    assert ret.returncode == 0, ret
    reply = call(base_url, "GET", "/storage/report", token=admin_token)
    assert reply.status == 200, reply
    assert reply.data["source"] == "job_cache"
    report = reply.data["nodes"][minion.id]
    assert report["jid"]
    assert "/" in report["mounts"]


# --- the cluster flow ---------------------------------------------------------------------------


def test_accept_a_minion_known_by_its_salt_key(base_url, admin_token, reader_token, minion):
    refused = call(base_url, "POST", f"/nodes/{minion.id}/accept", token=reader_token)
    assert refused.status == 403, refused
    accepted = call(base_url, "POST", f"/nodes/{minion.id}/accept", token=admin_token)
    assert accepted.status == 200, accepted
    assert accepted.data["status"] == "accepted"
    record = call(base_url, "GET", f"/nodes/{minion.id}", token=reader_token)
    assert record.status == 200, record
    assert record.data["status"] == "accepted"


def test_register_accept_calculate(base_url, admin_token, reader_token, master_runners):
    if "eos_cluster.preregister" not in master_runners:
        pytest.skip(
            "the runner eos_cluster.preregister (pre-registration) is not on this master yet"
        )
    node = {
        "id": PREREGISTERED,
        "address": "10.0.0.7",
        "resources": {
            "cpu_cores": 16,
            "memory_bytes": 64 * GIB,
            "disks": [{"name": "nvme0n1", "size_bytes": 4 * 10**12, "storage_type": "nvme"}],
            "failure_domain": {"datacenter": "dc1", "rack": "r1"},
        },
        "preferred_role": "data",
        "labels": {"team": "storage"},
    }
    created = call(base_url, "POST", "/cluster/register", node, token=admin_token)
    assert created.status == 201, created
    assert created.headers["Location"] == f"{api.PREFIX}/nodes/{PREREGISTERED}"
    pending = call(base_url, "GET", "/nodes?status=pending", token=reader_token)
    assert PREREGISTERED in [record["id"] for record in pending.data["nodes"]]

    again = call(base_url, "POST", "/cluster/register", node, token=admin_token)
    assert again.status == 409, again

    accepted = call(base_url, "POST", f"/nodes/{PREREGISTERED}/accept", token=admin_token)
    assert accepted.status == 200, accepted
    assert accepted.data["status"] == "accepted"

    if "eos_roles.calculate" not in master_runners:
        pytest.skip("the runner eos_roles is not on this master yet")
    plan = call(base_url, "POST", "/roles/calculate", token=admin_token)
    assert plan.status == 200, plan
    assert PREREGISTERED in plan.data["assignments"]


def test_roles_what_if_and_apply(base_url, admin_token, master_runners):
    if "eos_roles.calculate" not in master_runners:
        pytest.skip("the runner eos_roles is not on this master yet")
    nodes = [
        {"id": f"w{i}", "cpu": 16, "memory_gb": 64, "disk_gb": 2000, "storage_type": "ssd",
         "datacenter": "dc1", "rack": f"r{i % 3}"}
        for i in range(5)
    ]  # fmt: skip
    plan = call(base_url, "POST", "/roles/calculate", {"nodes": nodes}, token=admin_token)
    assert plan.status == 200, plan
    assert set(plan.data["assignments"]) == {node["id"] for node in nodes}
    bad = call(base_url, "POST", "/roles/calculate", {"nodes": [{"id": "x"}]}, token=admin_token)
    assert bad.status == 400, bad
    assert "cpu" in bad.error["message"]
    applied = call(base_url, "POST", "/roles/apply", token=admin_token)
    assert applied.status == 200, applied
    assert applied.data["version"] >= 1
    assert "_stamp" not in applied.data, applied


def test_reject_then_remove(base_url, admin_token, reader_token, minion):
    rejected = call(base_url, "POST", f"/nodes/{minion.id}/reject", token=admin_token)
    assert rejected.status == 200, rejected
    assert rejected.data["status"] == "rejected"
    removed = call(base_url, "DELETE", f"/nodes/{minion.id}", token=admin_token)
    assert removed.status == 200, removed
    assert removed.data["removed"] is True
    gone = call(base_url, "GET", f"/nodes/{minion.id}", token=reader_token)
    assert gone.status == 404, gone


# --- error codes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nodes/no-such-node"),
        ("POST", "/nodes/no-such-node/accept"),
        ("POST", "/nodes/no-such-node/reject"),
        ("DELETE", "/nodes/no-such-node"),
    ],
)
def test_unknown_node_is_404(base_url, admin_token, method, path):
    reply = call(base_url, method, path, token=admin_token)
    assert reply.status == 404, reply
    assert reply.error["code"] == "not_found"
    assert "no-such-node" in reply.error["message"]


def test_unknown_endpoint_is_404(base_url, admin_token):
    reply = call(base_url, "GET", "/clusters", token=admin_token)
    assert reply.status == 404, reply


def test_bad_json_is_400_naming_the_body(base_url, admin_token):
    reply = call(base_url, "POST", "/roles/calculate", raw=b'{"nodes": [', token=admin_token)
    assert reply.status == 400, reply
    assert reply.error["field"] == "body"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/cluster/register", {"id": "n-1", "colour": "red"}, "colour"),
        ("/cluster/register", {"id": "a/b"}, "id"),
        ("/cluster/register", {"id": "n-1", "address": "not an address"}, "address"),
        ("/cluster/register", {"id": "n-1", "preferred_role": "Data!"}, "preferred_role"),
        ("/roles/calculate", {"nodes": "all"}, "nodes"),
        ("/nodes/n-1/accept", {"force": True}, "force"),
    ],
)
def test_invalid_field_is_400_naming_it(base_url, admin_token, path, body, field):
    reply = call(base_url, "POST", path, body, token=admin_token)
    assert reply.status == 400, reply
    assert reply.error["field"] == field
    assert reply.error["message"].startswith(f"{field}:")


def test_invalid_query_parameter_is_400_naming_it(base_url, admin_token):
    reply = call(base_url, "GET", "/nodes?status=sleeping", token=admin_token)
    assert reply.status == 400, reply
    assert reply.error["field"] == "status"


def test_large_body_is_413(base_url, admin_token):
    nodes = [{"id": f"n{i}", "cpu": 1, "memory_gb": 1, "disk_gb": 1} for i in range(2000)]
    reply = call(base_url, "POST", "/roles/calculate", {"nodes": nodes}, token=admin_token)
    assert reply.status == 413, reply
    assert reply.error["code"] == "payload_too_large"


def test_form_body_is_415(base_url, admin_token):
    reply = call(
        base_url,
        "POST",
        "/roles/calculate",
        raw=b"nodes=all",
        token=admin_token,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status == 415, reply


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/login", "POST"),
        ("PUT", "/nodes/n-1", "DELETE, GET"),
        ("GET", "/roles/apply", "POST"),
        ("POST", "/health", "GET"),
    ],
)
def test_wrong_method_is_405(base_url, admin_token, method, path, allowed):
    reply = call(base_url, method, path, token=admin_token)
    assert reply.status == 405, reply
    assert reply.headers["Allow"] == allowed


# --- Alertmanager's webhook ---------------------------------------------------------------------


def alert_payload(alertname, status="firing", **labels):
    return {
        "version": "4",
        "status": status,
        "receiver": "eos",
        "groupKey": "{}:{}",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": alertname, **labels},
                "annotations": {"summary": f"{alertname} in a test"},
                "startsAt": "2026-12-04T01:33:35.520285123Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "4d2a0c6b1f3e5a79",
            }
        ],
    }


def basic_auth(user):
    return {"Authorization": "Basic " + base64.b64encode(":".join(user).encode()).decode()}


def fired(event_listener, master, tag, since, timeout=30):
    matched = event_listener.wait_for_events([(master.id, tag)], after_time=since, timeout=timeout)
    assert matched.found_all_events, f"no {tag} on the master's bus"
    return next(iter(matched.matches)).data


def test_alerts_with_basic_credentials_become_events(base_url, master, event_listener):
    since = time.time()
    body = alert_payload("EosStorageCritical", node="web-3", mount="/var", level="critical")
    reply = call(base_url, "POST", "/alerts", body, headers=basic_auth(ALERTER))
    assert reply.status == 200, reply
    assert reply.data == {"fired": ["eos/alert/firing/EosStorageCritical"], "refused": []}
    data = fired(event_listener, master, "eos/alert/firing/EosStorageCritical", since)
    assert data["labels"] == body["alerts"][0]["labels"]
    assert data["annotations"] == {"summary": "EosStorageCritical in a test"}
    assert data["sent_by"] == ALERTER[0]
    assert data["starts_at"] == "2026-12-04T01:33:35.520285123Z"


def test_alerts_with_a_token_become_events(base_url, master, event_listener):
    since = time.time()
    token = login(base_url, ALERTER)
    body = alert_payload("EosStorageWarning", status="resolved", node="web-4")
    reply = call(base_url, "POST", "/alerts", body, headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 200, reply
    fired(event_listener, master, "eos/alert/resolved/EosStorageWarning", since)


@pytest.mark.parametrize(
    ("credentials", "status"),
    [
        ({"headers": basic_auth((ALERTER[0], "wrong"))}, 401),
        ({"headers": basic_auth(READER)}, 403),
        ({}, 401),
    ],
)
def test_refused_alerts_fire_nothing(base_url, master, event_listener, credentials, status):
    since = time.time()
    body = alert_payload("EosRefused")
    reply = call(base_url, "POST", "/alerts", body, **credentials)
    assert reply.status == status, reply
    matched = event_listener.wait_for_events(
        [(master.id, "eos/alert/firing/EosRefused")], after_time=since, timeout=3
    )
    assert not matched.found_all_events


def test_a_bad_alert_payload_is_400_naming_the_field(base_url):
    body = alert_payload("disk full")
    reply = call(base_url, "POST", "/alerts", body, headers=basic_auth(ALERTER))
    assert reply.status == 400, reply
    assert reply.json["error"]["field"] == "alerts[0].labels.alertname"


# --- schemathesis ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_schema(base_url, admin_token, master_runners):
    """The served OpenAPI document, for generated requests with the admin's token."""
    exclude = ["/logout"]  # it would revoke the token the run uses
    for fun, path in (
        ("eos_cluster.preregister", "/cluster/register"),
        ("eos_roles.calculate", "/roles/calculate"),
        ("eos_roles.apply", "/roles/apply"),
    ):
        if fun not in master_runners:
            exclude.append(path)  # 501 until that runner exists on the master
    config = schemathesis.Config.from_dict(
        {
            "base-url": base_url,
            "headers": {"X-Auth-Token": admin_token},
            "seed": 8,
            "generation": {"max-examples": CONTRACT_EXAMPLES},
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
            "checks": {
                "positive_data_acceptance": {"enabled": False},
                # Generated bodies can exceed the register body limit: 413 is a rejection too.
                "negative_data_rejection": {
                    "expected-statuses": [
                        "400",
                        "401",
                        "403",
                        "404",
                        "405",
                        "406",
                        "409",
                        "413",
                        "415",
                        "422",
                        "428",
                        "429",
                        "5xx",
                    ]
                },
            },
        }
    )
    served = call(base_url, "GET", "/openapi.json").json
    return schemathesis.openapi.from_dict(served, config=config).exclude(path=exclude)


def contract_check(operation, sent):
    """A hypothesis test sending generated requests to one operation."""

    @hypothesis.settings(
        max_examples=CONTRACT_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(
        case=hypothesis.strategies.one_of(
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        )
    )
    def check(case):
        sent.append(case.operation.label)
        case.call_and_validate(timeout=180)

    return check


def test_openapi_contract(api_schema):
    """No server error and no response outside the document, for generated requests."""
    failures = []
    sent = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        try:
            contract_check(operation, sent)()
        except Exception as err:  # every operation is reported, not only the first
            failures.append(f"{operation.label}: {err}")
    assert not failures, "\n\n".join(failures)
    print(f"{len(sent)} generated requests over {len(set(sent))} operations")
