"""
The role software defaults, ``roles/defaults.yaml``: the one table of what each role installs,
runs and configures. The role states read it through ``roles/map.jinja``; Python reads it here.
"""

from collections.abc import Mapping

import yaml

from saltext.eos import PACKAGE_ROOT

ROLE_DEFAULTS = PACKAGE_ROOT / "roles" / "defaults.yaml"


def load(path=ROLE_DEFAULTS):
    """The table as a mapping; empty when the file is missing (a trimmed install)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle) or {}
    except FileNotFoundError:
        return {}


def setting(defaults, role, *path):
    """``defaults[role][path...]``, or None where the table has no such key."""
    value = defaults.get(role)
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value
