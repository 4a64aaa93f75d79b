"""The OpenAPI document matches the API's routing table and its request rules."""

import json

import pytest
import schemathesis

from saltext.eos.utils import api
from saltext.eos.utils.api import alerts
from saltext.eos.utils.cluster import nodeid
from saltext.eos.utils.cluster import registry

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def document():
    return api.load_document()


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method.upper(), operation


def route_of(path, method):
    return next(r for r in api.ROUTES if (r.path, r.method) == (path, method))


def resolve(document, node):
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        section = node["$ref"].split("/")[2]
        node = document["components"][section][name]
    return node


def statuses(operation):
    return set(operation["responses"])


def test_document_is_openapi_3(document):
    assert document["openapi"].startswith("3.")
    assert document["info"]["version"] == api.API_VERSION
    assert document["servers"] == [{"url": api.PREFIX}]


def test_every_route_is_documented_and_nothing_else(document):
    documented = {(path, method) for path, method, _ in operations(document)}
    routed = {(route.path, route.method) for route in api.ROUTES}
    assert documented == routed


def test_documented_runners_are_the_routes_runners(document):
    for path, method, operation in operations(document):
        assert operation["x-eos-runners"] == list(route_of(path, method).runners), (path, method)


def test_public_routes_need_no_token_and_the_others_do(document):
    assert document["security"]
    for path, method, operation in operations(document):
        route = route_of(path, method)
        if route.public:
            assert operation.get("security") == [], (path, method)
        elif route.basic_auth:
            basic = [{"basicEauth": []}]
            assert operation["security"] == document["security"] + basic, (path, method)
            assert "401" in statuses(operation), (path, method)
        else:
            assert "security" not in operation, (path, method)
            assert "401" in statuses(operation), (path, method)


def test_each_operation_documents_the_errors_it_can_return(document):
    for path, method, operation in operations(document):
        route = route_of(path, method)
        documented = statuses(operation)
        assert {"400", "500"} <= documented, (path, method)
        if route.runners:
            assert {"403", "501", "503", "504"} <= documented, (path, method)
        if route.body is not None:
            assert {"413", "415"} <= documented, (path, method)
            assert "requestBody" in operation, (path, method)
        else:
            assert "requestBody" not in operation, (path, method)
        if "{id}" in path:
            assert "404" in documented, (path, method)


def test_request_bodies_list_the_fields_the_api_reads(document):
    for path, method, operation in operations(document):
        route = route_of(path, method)
        if route.body is None:
            continue
        schema = resolve(
            document, operation["requestBody"]["content"]["application/json"]["schema"]
        )
        variants = [resolve(document, one) for one in schema.get("oneOf", [schema])]
        fields = set().union(*(variant.get("properties", {}) for variant in variants))
        assert fields == set(route.body), (path, method)
        required = {name for name, field in route.body.items() if getattr(field, "required", False)}
        for variant in variants:
            assert variant.get("additionalProperties") is False, (path, method)
            assert required <= set(variant.get("required", [])), (path, method)


def test_query_parameters_are_the_routes(document):
    for path, method, operation in operations(document):
        route = route_of(path, method)
        names = {
            param["name"] for param in operation.get("parameters", []) if param["in"] == "query"
        }
        assert names == set(route.query), (path, method)


def test_patterns_and_enums_are_the_apis(document):
    schemas = document["components"]["schemas"]
    register = schemas["RegisterRequest"]["properties"]
    assert register["id"]["pattern"] == nodeid.PATTERN
    assert register["id"]["maxLength"] == registry.MAX_ID_LENGTH
    assert register["address"]["anyOf"][0]["pattern"] == api.HOSTNAME_PATTERN.pattern
    assert register["preferred_role"]["pattern"] == registry.ROLE_NAME.pattern
    assert schemas["Labels"]["maxProperties"] == registry.MAX_LABELS
    token = schemas["LoginRequest"]["oneOf"][1]["properties"]["token"]
    assert token["pattern"] == api.TOKEN_PATTERN.pattern
    assert schemas["Node"]["properties"]["status"]["enum"] == list(registry.STATUSES)
    assert schemas["Error"]["properties"]["error"]["properties"]["code"]["enum"] == list(
        api.ERROR_CODES.values()
    )
    nodes = schemas["CalculateRequest"]["properties"]["nodes"]
    assert nodes["maxItems"] == api.MAX_WHAT_IF_NODES
    list_nodes = document["paths"]["/nodes"]["get"]["parameters"]
    by_name = {param["name"]: param["schema"] for param in list_nodes}
    assert by_name["status"]["enum"] == list(registry.STATUSES)
    assert by_name["limit"]["maximum"] == api.MAX_PAGE


def test_the_alert_schema_is_the_apis(document):
    schemas = document["components"]["schemas"]
    webhook = schemas["AlertmanagerWebhook"]["properties"]
    assert webhook["version"]["enum"] == [alerts.WEBHOOK_VERSION]
    assert webhook["status"]["enum"] == list(alerts.ALERT_STATUSES)
    assert webhook["alerts"]["maxItems"] == alerts.MAX_ALERTS
    alert = schemas["Alert"]
    assert set(alert["properties"]) == set(alerts.ALERT_FIELDS)
    assert set(alert["required"]) == {n for n, f in alerts.ALERT_FIELDS.items() if f.required}
    assert alert["properties"]["status"]["enum"] == list(alerts.ALERT_STATUSES)
    name = alert["properties"]["labels"]["properties"]["alertname"]
    assert name["pattern"] == alerts.ALERT_NAME.pattern
    assert alert["properties"]["startsAt"]["pattern"] == alerts.TIMESTAMP.pattern
    assert alert["properties"]["fingerprint"]["pattern"] == alerts.FINGERPRINT.pattern
    assert (
        schemas["PrometheusLabels"]["additionalProperties"]["maxLength"] == alerts.MAX_LABEL_VALUE
    )
    assert alerts.LABEL_NAME.pattern in schemas["PrometheusLabels"]["description"]


def test_every_node_id_in_the_document_is_the_one_rule(document):
    levels = [*document["paths"].values(), *(op for _, _, op in operations(document))]
    id_schemas = [
        resolve(document, param["schema"])
        for level in levels
        for param in level.get("parameters", [])
        if param["in"] == "path" and param["name"] == "id"
    ]
    id_schemas.append(document["components"]["schemas"]["RegisterRequest"]["properties"]["id"])
    assert len(id_schemas) > 1
    for schema in id_schemas:
        assert (schema["pattern"], schema["maxLength"]) == (nodeid.PATTERN, nodeid.MAX_LENGTH)


def test_every_reference_resolves(document):
    text = json.dumps(document)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        _, section, kind, name = ref.split("/")
        assert section == "components"
        assert name in document["components"][kind], ref


def test_schemathesis_reads_every_operation(document):
    schema = schemathesis.openapi.from_dict(document)
    labels = [result.ok().label for result in schema.get_all_operations()]
    assert len(labels) == len(api.ROUTES)
