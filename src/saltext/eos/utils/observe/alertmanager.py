"""
The Alertmanager configuration: every EOS alert goes to the EOS REST API's webhook.

- route: one receiver, alerts grouped by alertname, node and mount;
- inhibition, for the same node and mount: a critical alert silences the warnings, and an
  alert of a level silences those of the levels below it (a forecast's included), so a disk
  filling up notifies its current level, not every level it passed;
- receiver: a webhook at ``<api_url>/api/v1/alerts`` (the API's route prefix), resolved alerts
  included, authenticated with a Salt token read from a file, or with HTTP Basic credentials
  (a user name and a password file) that the API checks with ``eos_api:webhook_eauth``; a
  Salt token expires, so Basic credentials suit a receiver left running.
"""

import os
import urllib.parse
from dataclasses import dataclass

from saltext.eos.utils import api
from saltext.eos.utils import errors
from saltext.eos.utils.observe import rules
from saltext.eos.utils.observe import settings as observe_settings
from saltext.eos.utils.observe import targets
from saltext.eos.utils.storage import metrics
from saltext.eos.utils.storage import thresholds

SECTION = "alertmanager"
DEFAULTS = {"group_wait": 30, "group_interval": 300, "repeat_interval": 14400}
RECEIVER = "eos-api"
ALERTS_PATH = api.PREFIX + "/alerts"
GROUP_BY = ("alertname", targets.NODE_LABEL, metrics.MOUNT_LABEL)
# Inhibition acts within one mount of one node; a node-wide alert has no mount label, and an
# empty label matches only another empty one, so no mount's alert silences it.
SAME_MOUNT = (targets.NODE_LABEL, metrics.MOUNT_LABEL)
URL_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Settings:
    group_wait: int
    group_interval: int
    repeat_interval: int


def read_settings(given=None):
    """Validated Settings from ``eos:observe:alertmanager`` (a mapping or None)."""
    values = observe_settings.section(SECTION, given, DEFAULTS)
    return Settings(
        **{
            name: observe_settings.whole_number(values[name], SECTION, name, minimum=1)
            for name in DEFAULTS
        }
    )


def alertmanager_config(api_url, bearer_token_file=None, settings=None, basic_auth=None):
    """
    alertmanager.yml as a YAML-serialisable mapping, sending to the API at ``api_url``.
    ``basic_auth``: ``{"username", "password_file"}``, instead of ``bearer_token_file``.

    InvalidInput names an ``api_url`` that is not an http(s) URL, a credential file path that
    is not absolute, or both kinds of credentials given; InvalidConfig a bad setting.
    """
    opts = read_settings(settings)
    return {
        "route": {
            "receiver": RECEIVER,
            "group_by": list(GROUP_BY),
            "group_wait": observe_settings.duration(opts.group_wait),
            "group_interval": observe_settings.duration(opts.group_interval),
            "repeat_interval": observe_settings.duration(opts.repeat_interval),
        },
        "inhibit_rules": inhibit_rules(),
        "receivers": [receiver(api_url, bearer_token_file, basic_auth)],
    }


def inhibit_rules():
    """Critical silences warning, and each level the levels below it, on the same mount."""
    by_severity = _inhibit(f'severity="{rules.CRITICAL}"', f'severity="{rules.WARNING}"')
    by_level = [
        _inhibit(f'level="{level}"', f'level=~"{"|".join(thresholds.THRESHOLD_LEVELS[:rank])}"')
        for rank, level in enumerate(thresholds.THRESHOLD_LEVELS)
        if rank > 0
    ]
    return [by_severity, *by_level]


def _inhibit(source, target):
    return {"source_matchers": [source], "target_matchers": [target], "equal": list(SAME_MOUNT)}


def receiver(api_url, bearer_token_file=None, basic_auth=None):
    """The webhook receiver posting to the API's alerts endpoint."""
    webhook = {"url": webhook_url(api_url), "send_resolved": True}
    if bearer_token_file is not None and basic_auth is not None:
        raise errors.InvalidInput("give bearer_token_file or basic_auth, not both")
    if bearer_token_file is not None:
        webhook["http_config"] = {
            "authorization": {
                "type": "Bearer",
                "credentials_file": _absolute(bearer_token_file, "bearer_token_file"),
            }
        }
    elif basic_auth is not None:
        webhook["http_config"] = {"basic_auth": _basic_auth(basic_auth)}
    return {"name": RECEIVER, "webhook_configs": [webhook]}


def _basic_auth(given):
    if not isinstance(given, dict) or set(given) != {"username", "password_file"}:
        raise errors.InvalidInput(
            f"basic_auth: {given!r} is not a mapping of username and password_file"
        )
    username = given["username"]
    if not isinstance(username, str) or not username or ":" in username:
        raise errors.InvalidInput(f"basic_auth:username: {username!r} is not a user name")
    return {
        "username": username,
        "password_file": _absolute(given["password_file"], "basic_auth:password_file"),
    }


def _absolute(path, name):
    if not isinstance(path, str) or not os.path.isabs(path):
        raise errors.InvalidInput(f"{name}: {path!r} is not an absolute path")
    return path


def webhook_url(api_url):
    """
    ``<api_url>/api/v1/alerts``, for the API at ``api_url`` (``https://master:8090``, or
    below a proxy's path); a URL that names the endpoint already is kept as it is.
    """
    wrong = errors.InvalidInput(f"api_url: {api_url!r} is not an http or https URL of the EOS API")
    if not isinstance(api_url, str):
        raise wrong
    try:
        parts = urllib.parse.urlsplit(api_url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as err:
        raise wrong from err
    if parts.scheme not in URL_SCHEMES or not parts.hostname or parts.query or parts.fragment:
        raise wrong
    path = parts.path.rstrip("/")
    if not path.endswith(ALERTS_PATH):
        path += ALERTS_PATH
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
