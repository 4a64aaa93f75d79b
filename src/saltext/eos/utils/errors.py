"""
The one error hierarchy of EOS, and how its errors become Salt's.

Every exception EOS raises on purpose derives from ``EosError`` through one of its kinds:

=================  ==============================================  =========================
kind               meaning                                          Salt raises
=================  ==============================================  =========================
InvalidInput       an argument the caller gave cannot be used       SaltInvocationError
NotFound           the caller named something that does not exist   SaltInvocationError
Conflict           the request is sound, the current state          SaltInvocationError
                   forbids it (a status change, a second record)
InvalidConfig      a configuration value cannot be used             CommandExecutionError
Busy               another run holds the lock or lease              CommandExecutionError
OperationFailed    something outside EOS failed: a command, a       CommandExecutionError
                   file, a node
=================  ==============================================  =========================

Loader modules turn them into Salt's exceptions with ``salt_errors()`` (or ``to_salt``), never
by hand. A runner's exception reaches the REST API as text only (Salt's runner client formats
it), so ``NotFound`` and ``Conflict`` add their ``code`` to the message (``[not_found]``,
``[conflict]``): the API reads the kind back with ``code_of`` and strips it.
"""

import contextlib
import re

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError


class EosError(Exception):
    """Any error EOS raises on purpose; its message names what is wrong."""

    code = "failed"


class InvalidInput(EosError, ValueError):
    """An argument the caller gave cannot be used."""

    code = "invalid"


class NotFound(InvalidInput):
    """The caller named something (a node, a mount) that does not exist."""

    code = "not_found"


class Conflict(EosError):
    """A sound request that the current state forbids."""

    code = "conflict"


class InvalidConfig(EosError, ValueError):
    """A configuration value that cannot be used; the message names the key and the value."""

    code = "invalid_config"


class Busy(EosError, RuntimeError):
    """Another run holds the lock or the lease this one needs."""

    code = "busy"


class OperationFailed(EosError, RuntimeError):
    """Something outside EOS failed: a command, a file, a node, a transfer."""

    code = "failed"


# The kinds whose code travels in the message, because a client must tell them apart.
CODED_KINDS = (NotFound, Conflict)
_CODE_SUFFIX = re.compile(r" \[(" + "|".join(kind.code for kind in CODED_KINDS) + r")\]\Z")


def message_of(err):
    """The message Salt shows for ``err``: its text, plus its code for the coded kinds."""
    text = str(err)
    for kind in CODED_KINDS:
        if isinstance(err, kind):
            return f"{text} [{kind.code}]"
    return text


def code_of(message):
    """``(code, the message without it)`` when ``message_of`` coded it, else ``(None, message)``."""
    if not isinstance(message, str):
        return None, message
    found = _CODE_SUFFIX.search(message)
    if found is None:
        return None, message
    return found.group(1), message[: found.start()]


def to_salt(err, prefix=None, caller_errors=(), failure_errors=()):
    """
    Salt's exception for ``err``: SaltInvocationError when the caller's request is at fault
    (InvalidInput, NotFound, Conflict), else CommandExecutionError. A call may know better:
    types in ``caller_errors`` are the caller's fault there (a configuration the caller
    passed as an argument), types in ``failure_errors`` are not (a node a flow named itself).
    ``prefix`` goes before the message (``"join of n1, step start: ..."``).
    """
    message = message_of(err)
    if prefix:
        message = f"{prefix}: {message}"
    if isinstance(err, tuple(failure_errors)):
        return CommandExecutionError(message)
    if isinstance(err, (InvalidInput, Conflict, *caller_errors)):
        return SaltInvocationError(message)
    return CommandExecutionError(message)


@contextlib.contextmanager
def salt_errors(prefix=None, caller_errors=(), failure_errors=()):
    """
    Raise every ``EosError`` of the block as Salt's exception (see ``to_salt``), chained to it.

    .. code-block:: python

        with errors.salt_errors():
            return cleanup.cleanup(...)
    """
    try:
        yield
    except EosError as err:
        raise to_salt(err, prefix, caller_errors, failure_errors) from err


def with_retcode(context, result, retcode):
    """
    ``result`` with ``retcode`` in it, and in the runner's ``context``: salt-run exits with a
    retcode it finds in the return, and an orchestration's ``salt.runner`` step fails on the
    context's. A refused or partly done operation must not look like a finished one to either.
    """
    context["retcode"] = retcode
    return {**result, "retcode": retcode}
