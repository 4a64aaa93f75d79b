"""Salt's answers turned into HTTP statuses: exceptions by type, runner results by shape."""

import logging
import re
from collections.abc import Mapping

from saltext.eos.utils import errors

from .envelope import ApiError

log = logging.getLogger(__name__)

# Salt's exceptions by class name, and what they mean to a client. A runner's exception
# reaches the API as text (its class name and message), a local one as an object: both are
# looked up here by name.
SALT_ERRORS = {
    "SaltInvocationError": 400,
    "CommandExecutionError": 500,
    "TokenAuthenticationError": 401,
    "AuthenticationError": 401,
    "EauthAuthenticationError": 403,
    "AuthorizationError": 403,
    "SaltDaemonNotRunning": 503,
    "SaltReqTimeoutError": 503,
    "SaltMasterUnresolvableError": 503,
    "SaltClientTimeout": 504,
}
# EOS's own kinds, which the runners' messages carry as a code (``utils.errors.message_of``).
EOS_ERRORS = {errors.NotFound.code: 404, errors.Conflict.code: 409}
# Salt's loader says a runner function it cannot load "is not available", or that its
# "__virtual__ returned False": Salt gives those no type of their own, only this wording.
SALT_LOADER_WORDING = (
    ("CommandExecutionError", "is not available"),
    ("CommandExecutionError", "__virtual__ returned False"),
)
# How many of the newest ``eos_storage.analyze`` jobs the storage report reads when the mine
# holds nothing: enough to find every node's latest run, bounded so a large job cache stays fast.
MAX_REPORT_JOBS = 10
ANALYZE_FUNCTION = "eos_storage.analyze"
INVALID_ARGUMENTS = "Passed invalid arguments: "
# Python's own TypeError for a call that does not fit the function: the API's mistake.
SIGNATURE_MISMATCH = re.compile(
    r"^[\w.]+\(\) (got an unexpected keyword|got multiple values|missing \d+ required|takes )"
)
JOB_CACHE_RUNNERS = ("jobs.list_jobs", "jobs.lookup_jid")


def salt_error(name, message):
    """
    ``(status, message for the client)`` for a Salt exception, by class name and the EOS error
    code its message carries; the status is None when the exception is unknown.
    """
    code, message = errors.code_of(message)
    if code in EOS_ERRORS:
        return EOS_ERRORS[code], message
    for error_name, wording in SALT_LOADER_WORDING:
        if name == error_name and wording in message:
            return 501, message
    return SALT_ERRORS.get(name), message


def runner_exception(text):
    """
    (class name, message) of the exception a runner raised, from the text Salt returns for it:
    ``Exception occurred in runner <fun>: <traceback>``; (None, None) when it is not one.
    """
    if not isinstance(text, str) or not text.startswith("Exception occurred in runner"):
        return None, None
    lines = text.rstrip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    start = frames[-1] + 1 if frames else 1
    # After the last frame come its indented source line, then the exception's own lines.
    while start < len(lines) and lines[start][:1].isspace():
        start += 1
    first, *rest = lines[start:] or [""]
    name, _, message = first.partition(": ")
    message = "\n".join([message, *rest]).strip()
    return name.rsplit(".", 1)[-1], message


def runner_result(fun, full_return):
    """The return of a runner call, or ApiError for a runner that failed."""
    if not isinstance(full_return, Mapping):
        log.error("eos_api: %s returned %r instead of a job return", fun, full_return)
        raise ApiError(500, f"{fun}: the master's answer could not be read")
    value = full_return.get("return")
    name, message = runner_exception(value)
    if name is not None:
        return _raise_runner_exception(fun, name, message)
    message = invalid_arguments(value)
    if message is not None:
        if SIGNATURE_MISMATCH.match(message):
            log.error("eos_api: %s refused the API's arguments: %s", fun, message)
            raise ApiError(500, f"{fun} does not take the arguments this API sends; see the log")
        return _raise_runner_exception(fun, "SaltInvocationError", message)
    if full_return.get("success", True) is False:
        comment = value.get("comment") if isinstance(value, Mapping) else None
        raise ApiError(400, f"{fun}: {comment or 'the runner reported a failure'}")
    return value


def invalid_arguments(text):
    """
    The message of a SaltInvocationError (or TypeError) a runner raised, or None.

    Salt's runner client reports those as ``Passed invalid arguments: <message>`` followed by
    the function's usage, since SaltInvocationError is a TypeError.
    """
    if not isinstance(text, str) or not text.lstrip().startswith(INVALID_ARGUMENTS):
        return None
    message = text.lstrip()[len(INVALID_ARGUMENTS) :]
    return message.split("\n\nUsage:", 1)[0].strip()


def _raise_runner_exception(fun, name, message):
    status, message = salt_error(name, message)
    if status is None:
        log.error("eos_api: %s raised %s: %s", fun, name, message)
        raise ApiError(500, f"{fun} failed on the master; see the master log")
    if status == 501:
        raise ApiError(501, f"{fun} is not available on this master: {message}")
    raise ApiError(status, message)
