"""The API's settings (master config ``eos_api``) and their checks."""

import dataclasses
import ipaddress
from collections.abc import Mapping

from saltext.eos.utils import errors

# Master config ``eos_api``; the module does not load without that key.
DEFAULT_SETTINGS = {
    "host": "127.0.0.1",
    "port": 8090,
    "ssl_crt": None,
    "ssl_key": None,
    "max_body_bytes": 1024 * 1024,
    "runner_timeout": 120,
    "threads": 4,
    # Plain HTTP on an address other hosts can reach would send passwords and tokens in clear.
    "allow_plain_http": False,
    # After this many failed logins within login_window seconds, further logins from that
    # client address or for that user name get 429 until the window has passed; 0: no limit.
    "login_failures": 5,
    "login_window": 300,
    # The eauth backend that checks HTTP Basic credentials on POST /api/v1/alerts, where
    # Alertmanager's receiver (basic_auth with a password_file) cannot hold an expiring token.
    # None: that endpoint takes tokens only.
    "webhook_eauth": None,
}


class InvalidSettings(errors.InvalidConfig):
    """``eos_api`` in the master config is not usable; the message names the key."""


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str
    port: int
    ssl_crt: str | None
    ssl_key: str | None
    max_body_bytes: int
    runner_timeout: float
    threads: int
    allow_plain_http: bool
    login_failures: int
    login_window: int
    webhook_eauth: str | None

    @property
    def tls(self):
        return self.ssl_crt is not None


def settings(given):
    """Checked Settings from the master's ``eos_api`` mapping (None: every default)."""
    given = {} if given is None else given
    if not isinstance(given, Mapping):
        raise InvalidSettings(f"eos_api: {given!r} is not a mapping")
    unknown = sorted(str(key) for key in given if key not in DEFAULT_SETTINGS)
    if unknown:
        raise InvalidSettings(
            f"eos_api: unknown key {unknown[0]!r}; expected {', '.join(DEFAULT_SETTINGS)}"
        )
    merged = {**DEFAULT_SETTINGS, **given}
    checked = Settings(
        host=_setting_text(merged, "host"),
        port=_setting_integer(merged, "port", 1, 65535),
        ssl_crt=_setting_optional_text(merged, "ssl_crt"),
        ssl_key=_setting_optional_text(merged, "ssl_key"),
        max_body_bytes=_setting_integer(merged, "max_body_bytes", 1024, 1024**3),
        runner_timeout=_setting_number(merged, "runner_timeout"),
        threads=_setting_integer(merged, "threads", 1, 64),
        allow_plain_http=_setting_flag(merged, "allow_plain_http"),
        login_failures=_setting_integer(merged, "login_failures", 0, 1000),
        login_window=_setting_integer(merged, "login_window", 1, 86400),
        webhook_eauth=_setting_optional_text(merged, "webhook_eauth"),
    )
    if checked.ssl_key is not None and checked.ssl_crt is None:
        raise InvalidSettings("eos_api:ssl_key: set, but eos_api:ssl_crt is not")
    if not checked.tls and not checked.allow_plain_http and not is_loopback(checked.host):
        raise InvalidSettings(
            f"eos_api:host: {checked.host!r} is reachable from other hosts, but no "
            "eos_api:ssl_crt is set: passwords and tokens would cross the network in clear; "
            "set ssl_crt and ssl_key, or allow_plain_http: true behind a TLS proxy"
        )
    return checked


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _setting_text(values, key):
    value = values[key]
    if not isinstance(value, str) or not value.strip():
        raise InvalidSettings(f"eos_api:{key}: {value!r} is not a non-empty string")
    return value


def _setting_optional_text(values, key):
    """A text setting that may be unset (None)."""
    return None if values[key] is None else _setting_text(values, key)


def _setting_integer(values, key, minimum, maximum):
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSettings(f"eos_api:{key}: {value!r} is not a whole number")
    if not minimum <= value <= maximum:
        raise InvalidSettings(f"eos_api:{key}: {value} is outside {minimum}..{maximum}")
    return value


def _setting_number(values, key):
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidSettings(f"eos_api:{key}: {value!r} is not a number of seconds > 0")
    return float(value)


def _setting_flag(values, key):
    value = values[key]
    if not isinstance(value, bool):
        raise InvalidSettings(f"eos_api:{key}: {value!r} is not true or false")
    return value
