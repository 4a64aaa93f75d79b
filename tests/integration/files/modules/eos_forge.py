"""
Test-only execution module: what a hostile minion can do with its own authenticated channel.

A minion sends its beacon events to the master in one batched ``_minion_event`` load; the
master re-fires each inner event with the tag and data exactly as the minion wrote them. Only
the outer load's ``id`` is the sender's. ``eos_forge.batch`` sends such a load, so the tests
can check that no EOS reaction trusts what it carries.
"""

import salt.channel.client

__virtualname__ = "eos_forge"


def __virtual__():
    return __virtualname__


def batch(events):
    """
    Send ``events`` (``[{tag, data}]``) to the master as one batched ``_minion_event``.

    CLI Example:

    .. code-block:: bash

        salt attacker eos_forge.batch '[{"tag": "salt/beacon/victim/eos_storage/emergency",
                                         "data": {"id": "victim", "mount": "/"}}]'
    """
    load = {"id": __opts__["id"], "cmd": "_minion_event", "events": list(events)}
    with salt.channel.client.ReqChannel.factory(__opts__) as channel:
        channel.send(load)
    return True
