"""What the registry refuses, by type: each a kind of ``utils.errors``."""

from saltext.eos.utils import errors


class RegistryError(errors.EosError):
    """Base of the registry's errors; the message says what and which node."""


class UnknownNode(RegistryError, errors.NotFound):
    """No record (and, where the caller checked, no Salt key) for this id."""


class InvalidNodeId(RegistryError, errors.InvalidInput):
    """A node id that cannot name a record."""


class AlreadyRegistered(RegistryError, errors.Conflict):
    """A pre-registration for an id the registry already holds."""


class InvalidTransition(RegistryError, errors.Conflict):
    """A status change that ``TRANSITIONS`` does not allow."""


class InvalidPayload(RegistryError, errors.InvalidInput):
    """A registration payload that fails validation; nothing was written."""


class ClockSkew(InvalidPayload):
    """A registration sent, by the node's clock, too far ahead of the master's; nothing written."""


class StaleJoin(RegistryError, errors.Conflict):
    """A join asked for with a token that is not the node's current acceptance's."""


class RegistryBusy(RegistryError, errors.Busy):
    """The registry lock could not be taken in time."""
