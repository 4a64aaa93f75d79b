"""What the registry refuses, by type."""


class RegistryError(Exception):
    """Base of the registry's errors; the message says what and which node."""


class UnknownNode(RegistryError):
    """No record (and, where the caller checked, no Salt key) for this id."""


class InvalidNodeId(RegistryError):
    """A node id that cannot name a record."""


class AlreadyRegistered(RegistryError):
    """A pre-registration for an id the registry already holds."""


class InvalidTransition(RegistryError):
    """A status change that ``TRANSITIONS`` does not allow."""


class InvalidPayload(RegistryError):
    """A registration payload that fails validation; nothing was written."""


class ClockSkew(InvalidPayload):
    """A registration sent, by the node's clock, too far ahead of the master's; nothing written."""


class StaleJoin(RegistryError):
    """A join asked for with a token that is not the node's current acceptance's."""


class RegistryBusy(RegistryError):
    """The registry lock could not be taken in time."""
