"""Request fields, query parameters and bodies: each checked, each error naming its field."""

import base64
import binascii
import dataclasses
import ipaddress
import json
import re
from collections.abc import Mapping

from saltext.eos.utils.cluster import registry

from .envelope import ApiError
from .pages import check_cursor

# The OpenAPI document carries these patterns. Check with fullmatch, never match: with match,
# "$" also accepts a trailing newline. Node ids follow the one rule of utils/nodeid.py.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_LABEL = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_PATTERN = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
MAX_CREDENTIAL_LENGTH = 4096
MAX_WHAT_IF_NODES = 10_000
MAX_PAGE = 10_000


def _field_error(field, message):
    return ApiError(400, f"{field}: {message}", field=field)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _name(text):
    """A field, parameter or path as the client sent it, cut short for an error message."""
    text = str(text)
    return text if len(text) <= 64 else f"{text[:61]}..."


def check_text(value, field, max_length=255, allow_empty=False):
    if not isinstance(value, str):
        raise _field_error(field, f"{_short(value)} is not a string")
    if not value and not allow_empty:
        raise _field_error(field, "must not be empty")
    if len(value) > max_length:
        raise _field_error(field, f"longer than {max_length} characters")
    return value


def check_node_id(value, field="id"):
    """The registry's node id rule: every id it allows can be named in a path as it is."""
    try:
        return registry.check_node_id(value)
    except registry.InvalidNodeId as err:
        raise _field_error(field, str(err)) from err


def check_address(value, field="address"):
    """A host name or an IP address: where the node will be reached."""
    check_text(value, field, max_length=253)
    if HOSTNAME_PATTERN.fullmatch(value):
        return value
    try:
        return str(ipaddress.IPv6Address(value))
    except ValueError as err:
        raise _field_error(field, f"{_short(value)} is not a host name or an IP address") from err


def check_role(value, field="preferred_role"):
    if value is None:
        return None
    if not isinstance(value, str) or not registry.ROLE_NAME.fullmatch(value):
        raise _field_error(
            field, f"{_short(value)} is not a role name (lower case letters, digits, - and _)"
        )
    return value


def check_labels(value, field="labels"):
    if not isinstance(value, Mapping):
        raise _field_error(field, f"{_short(value)} is not an object")
    if len(value) > registry.MAX_LABELS:
        raise _field_error(field, f"{len(value)} labels, over the cap of {registry.MAX_LABELS}")
    for key, label in value.items():
        check_text(key, f"{field}.{_name(key)}", max_length=registry.MAX_NAME_LENGTH)
        check_text(label, f"{field}.{_name(key)}", registry.MAX_NAME_LENGTH, allow_empty=True)
    return dict(value)


def check_object(value, field):
    if not isinstance(value, Mapping):
        raise _field_error(field, f"{_short(value)} is not an object")
    return dict(value)


def check_list(value, field, item, cap, hint=""):
    """A list of 1 to ``cap`` items (``item`` names one, for the message; ``hint`` follows)."""
    if not isinstance(value, list):
        raise _field_error(field, f"{_short(value)} is not a list")
    if not value:
        raise _field_error(field, f"must hold at least one {item}")
    if len(value) > cap:
        raise _field_error(field, f"{len(value)} {item}s, over the cap of {cap}{hint}")
    return value


def check_what_if_nodes(value, field="nodes"):
    """A list of node descriptions; eos_roles checks each description's fields."""
    check_list(value, field, "node", MAX_WHAT_IF_NODES)
    for index, node in enumerate(value):
        check_object(node, f"{field}[{index}]")
    return value


def check_credential(value, field):
    return check_text(value, field, max_length=MAX_CREDENTIAL_LENGTH)


def check_token_text(value, field="token"):
    check_text(value, field, max_length=256)
    if not TOKEN_PATTERN.fullmatch(value):
        raise _field_error(field, "is not a Salt token")
    return value


@dataclasses.dataclass(frozen=True)
class Field:
    check: object  # check(value, field name) -> the value to use
    required: bool = False


LOGIN_FIELDS = {
    "username": Field(check_credential),
    "password": Field(check_credential),
    "eauth": Field(lambda value, field: check_text(value, field, max_length=64)),
    "token": Field(check_token_text),
}
REGISTER_FIELDS = {
    "id": Field(check_node_id, required=True),
    "address": Field(check_address),
    "resources": Field(check_object),
    "preferred_role": Field(check_role),
    "labels": Field(check_labels),
}
CALCULATE_FIELDS = {"nodes": Field(check_what_if_nodes)}
NO_FIELDS = {}


def check_fields(body, fields):
    """The checked values of ``body`` (a JSON object): every field known, required ones given."""
    unknown = sorted(str(name) for name in body if name not in fields)
    if unknown:
        expected = ", ".join(fields) if fields else "no fields"
        raise _field_error(_name(unknown[0]), f"unknown field; expected {expected}")
    checked = {}
    for name, spec in fields.items():
        if name not in body:
            if spec.required:
                raise _field_error(name, "is required")
            continue
        checked[name] = spec.check(body[name], name)
    return checked


def check_status(value, field="status"):
    if value not in registry.STATUSES:
        raise _field_error(field, f"{_short(value)} is not one of {', '.join(registry.STATUSES)}")
    return value


def _whole(minimum, maximum):
    def check(value, field):
        if not re.fullmatch(r"\d{1,9}", value):
            raise _field_error(field, f"{_short(value)} is not a whole number")
        number = int(value)
        if not minimum <= number <= maximum:
            raise _field_error(field, f"{number} is outside {minimum}..{maximum}")
        return number

    return check


def check_boolean(value, field):
    flags = {"true": True, "false": False, "1": True, "0": False}
    if value not in flags:
        raise _field_error(field, f"{_short(value)} is not true, false, 1 or 0")
    return flags[value]


NODES_QUERY = {
    "status": check_status,
    "role": check_role,
    "limit": _whole(1, MAX_PAGE),
    "offset": _whole(0, 10**9),
    "cursor": check_cursor,
}
INFO_QUERY = {"recount": check_boolean}


def check_query(query, allowed):
    """{name: checked value} from ``query`` ({name: [values]}); each name at most once."""
    checked = {}
    for name, values in query.items():
        if name not in allowed:
            expected = ", ".join(allowed) if allowed else "no query parameters"
            raise _field_error(_name(name), f"unknown query parameter; expected {expected}")
        if len(values) != 1:
            raise _field_error(name, "given more than once")
        checked[name] = allowed[name](values[0], name)
    return checked


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def json_object(request):
    """The request body as a JSON object; an empty body is ``{}``."""
    if not request.body:
        return {}
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(415, f"Content-Type {media_type!r}: send application/json")
    try:
        text = request.body.decode("utf-8")
        body = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as err:
        raise _field_error("body", f"not UTF-8 ({err.reason} at byte {err.start})") from err
    except json.JSONDecodeError as err:
        raise _field_error(
            "body", f"not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})"
        ) from err
    except ValueError as err:
        raise _field_error("body", f"not valid JSON: {err}") from err
    except RecursionError as err:
        raise _field_error("body", "not valid JSON: nested too deeply") from err
    if not isinstance(body, dict):
        raise _field_error("body", f"must be a JSON object, not {type(body).__name__}")
    return body


def bearer_token(headers):
    """The Salt token a request carries (``X-Auth-Token`` or ``Authorization: Bearer``)."""
    given = []
    if headers.get("x-auth-token") is not None:
        given.append(headers["x-auth-token"].strip())
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise unauthorized("Authorization: only Bearer tokens are accepted")
        given.append(credentials.strip())
    if not given or not given[0]:
        raise unauthorized("no token: log in at POST /api/v1/login and send X-Auth-Token")
    if len(set(given)) > 1:
        # Which one the client meant is a guess; refusing both is the safe answer.
        raise unauthorized("X-Auth-Token and Authorization carry different tokens")
    if not TOKEN_PATTERN.fullmatch(given[0]):
        raise unauthorized("the token is not a Salt token")
    return given[0]


def basic_credentials(headers):
    """
    ``(username, password)`` of an ``Authorization: Basic`` header; None when the request
    carries no Basic credentials (it may carry a token).
    """
    authorization = headers.get("authorization")
    if authorization is None:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as err:
        raise unauthorized("Authorization: Basic credentials are not base64 of UTF-8") from err
    username, colon, password = decoded.partition(":")
    if not colon or not username or not password:
        raise unauthorized("Authorization: Basic credentials need a user name and a password")
    if len(username) > MAX_CREDENTIAL_LENGTH or len(password) > MAX_CREDENTIAL_LENGTH:
        raise unauthorized("Authorization: Basic credentials are too long")
    return username, password


def unauthorized(message):
    return ApiError(401, message, headers={"WWW-Authenticate": 'Bearer realm="eos_api"'})
