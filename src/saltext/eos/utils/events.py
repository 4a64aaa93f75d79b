"""
Firing events on the master's bus, for the runners.

Salt's ``fire_event`` adds its own keys (``_stamp``) to the mapping it is handed. Runners
fire the very dicts they return, so each event gets a copy and no return value carries
Salt's keys.
"""

import copy
import logging

import salt.utils.event

log = logging.getLogger(__name__)


def fire(opts, tag, data):
    """Fire a copy of ``data`` under ``tag`` on the master's event bus."""
    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False) as bus:
        bus.fire_event(copy.deepcopy(data), tag)


def fire_or_log(opts, tag, data):
    """``fire``, for changes already stored: a lost event is logged, never raised."""
    try:
        fire(opts, tag, data)
    except Exception as err:
        log.warning("could not fire %s: %s", tag, err)
