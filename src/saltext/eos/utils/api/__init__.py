"""
The EOS REST API without a server: its settings, routes, request checks, authorisation,
response envelopes and the mapping of Salt's answers to HTTP statuses.

The netapi module ``eos_api`` wires this to a tornado server and to Salt through a *backend*,
an object with these methods (a unit test passes a fake one, so nothing here needs a master):

``login(username, password, eauth)``
    A new Salt token for these credentials, or None when eauth refuses them.
``session(token)``
    ``{user, eauth, start, expire, perms}`` for a valid Salt token (perms is its eauth
    access list), or None when the token is unknown or expired.
``may_run(session, fun, kwarg)``
    Whether the session's eauth permissions allow the runner function ``fun`` with ``kwarg``.
``run(token, fun, kwarg)``
    The runner's full return (``{success, return, ...}``), run by the master under eauth.
``eauth_session(username, password, eauth)``
    The session (as ``session`` gives it) of eauth credentials, or None when eauth refuses
    them; no token is made. For HTTP Basic credentials on ``POST /alerts``.
``fire(tag, data)``
    Fire an event on the master's bus (``POST /alerts``).
``logout(token)``
    Revoke the token.
``master_running()`` and ``registry_state()``
    For ``/health``: a bool, and ``ok``, ``empty`` or ``unavailable``.

The methods may raise Salt's exceptions; ``SALT_ERRORS`` maps them to statuses by class name.

Every response is JSON, ``{"status": "success", "data": ...}`` or ``{"status": "error",
"error": {"code", "message"}}`` (plus ``field`` when one request field is at fault), except
``GET /api/v1/openapi.json``, which is the OpenAPI document itself.
"""

from .answers import ANALYZE_FUNCTION
from .answers import EOS_ERRORS
from .answers import INVALID_ARGUMENTS
from .answers import JOB_CACHE_RUNNERS
from .answers import MAX_REPORT_JOBS
from .answers import SALT_ERRORS
from .answers import SALT_LOADER_WORDING
from .answers import SIGNATURE_MISMATCH
from .answers import invalid_arguments
from .answers import runner_exception
from .answers import runner_result
from .answers import salt_error
from .envelope import ERROR_CODES
from .envelope import ApiError
from .envelope import Request
from .envelope import Response
from .envelope import failure
from .envelope import success
from .fields import CALCULATE_FIELDS
from .fields import HOSTNAME_PATTERN
from .fields import INFO_QUERY
from .fields import LOGIN_FIELDS
from .fields import MAX_CREDENTIAL_LENGTH
from .fields import MAX_PAGE
from .fields import MAX_WHAT_IF_NODES
from .fields import NO_FIELDS
from .fields import NODES_QUERY
from .fields import REGISTER_FIELDS
from .fields import TOKEN_PATTERN
from .fields import Field
from .fields import bearer_token
from .fields import check_address
from .fields import check_boolean
from .fields import check_credential
from .fields import check_fields
from .fields import check_labels
from .fields import check_node_id
from .fields import check_object
from .fields import check_query
from .fields import check_role
from .fields import check_status
from .fields import check_text
from .fields import check_token_text
from .fields import check_what_if_nodes
from .fields import json_object
from .fields import unauthorized
from .health import CHECK_INTERVAL_SECONDS
from .health import STALE_AFTER_SECONDS
from .health import HealthWatch
from .logins import MAX_TRACKED_LOGINS
from .logins import LoginRefusal
from .logins import LoginThrottle
from .options import DEFAULT_SETTINGS
from .options import InvalidSettings
from .options import Settings
from .options import is_loopback
from .options import settings
from .pages import MAX_CURSOR_LENGTH
from .pages import check_cursor
from .pages import entity_tag
from .pages import make_cursor
from .pages import node_page
from .pages import not_modified
from .pages import read_cursor
from .routes import PREFIX
from .routes import ROUTES
from .routes import Route
from .routes import route_for
from .service import API_VERSION
from .service import OPENAPI_DOCUMENT
from .service import Api
from .service import Call
from .service import load_document

__all__ = [
    "ANALYZE_FUNCTION",
    "API_VERSION",
    "CALCULATE_FIELDS",
    "CHECK_INTERVAL_SECONDS",
    "DEFAULT_SETTINGS",
    "EOS_ERRORS",
    "ERROR_CODES",
    "HOSTNAME_PATTERN",
    "INFO_QUERY",
    "INVALID_ARGUMENTS",
    "JOB_CACHE_RUNNERS",
    "LOGIN_FIELDS",
    "MAX_CREDENTIAL_LENGTH",
    "MAX_CURSOR_LENGTH",
    "MAX_PAGE",
    "MAX_REPORT_JOBS",
    "MAX_TRACKED_LOGINS",
    "MAX_WHAT_IF_NODES",
    "NODES_QUERY",
    "NO_FIELDS",
    "OPENAPI_DOCUMENT",
    "PREFIX",
    "REGISTER_FIELDS",
    "ROUTES",
    "SALT_ERRORS",
    "SALT_LOADER_WORDING",
    "SIGNATURE_MISMATCH",
    "STALE_AFTER_SECONDS",
    "TOKEN_PATTERN",
    "Api",
    "ApiError",
    "Call",
    "Field",
    "HealthWatch",
    "InvalidSettings",
    "LoginRefusal",
    "LoginThrottle",
    "Request",
    "Response",
    "Route",
    "Settings",
    "bearer_token",
    "check_address",
    "check_boolean",
    "check_credential",
    "check_cursor",
    "check_fields",
    "check_labels",
    "check_node_id",
    "check_object",
    "check_query",
    "check_role",
    "check_status",
    "check_text",
    "check_token_text",
    "check_what_if_nodes",
    "entity_tag",
    "failure",
    "invalid_arguments",
    "is_loopback",
    "json_object",
    "load_document",
    "make_cursor",
    "node_page",
    "not_modified",
    "read_cursor",
    "route_for",
    "runner_exception",
    "runner_result",
    "salt_error",
    "settings",
    "success",
    "unauthorized",
]
