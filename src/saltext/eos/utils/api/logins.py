"""Failed logins, throttled per user and per client address."""

import collections
import dataclasses
import logging
import math
import threading
import time

from .fields import _short

log = logging.getLogger(__name__)

# Client addresses, and user names, tracked at once (each): past that the one whose latest
# failure is oldest is forgotten, so a flood of made-up user names cannot grow memory.
MAX_TRACKED_LOGINS = 10_000


@dataclasses.dataclass(frozen=True)
class LoginRefusal:
    """Logins for ``what`` (an address or a user) are refused for ``seconds`` more."""

    what: str
    seconds: int


class LoginThrottle:
    """
    Failed logins per client address and per user name, in memory.

    After ``failures`` of them within ``window`` seconds, logins from that address or for that
    user are refused until the oldest of those failures is ``window`` seconds old; refused
    logins are not counted. A success clears the user's failures, not the address's: one valid
    account must not reset the count of an address guessing others. ``failures`` 0: no limit.

    Thread safe and quick: the server asks it on its event loop and records on worker threads.
    """

    def __init__(self, failures, window, clock=time.monotonic, max_keys=MAX_TRACKED_LOGINS):
        self.failures = failures
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._lock = threading.Lock()
        # kind: {key: the times of its latest failures, oldest first}, least recent key first
        self._tracked = {"address": collections.OrderedDict(), "user": collections.OrderedDict()}

    @staticmethod
    def _keys(address, username):
        keys = []
        if address:
            keys.append(("address", address, f"address {address}"))
        if isinstance(username, str) and username:
            # Case variants of a name are one user to ldap and many other backends.
            keys.append(("user", username.casefold(), f"user {_short(username)}"))
        return keys

    def refusal(self, address, username):
        """A LoginRefusal when this address or user has failed too often lately, else None."""
        if not self.failures:
            return None
        now = self.clock()
        with self._lock:
            for kind, key, what in self._keys(address, username):
                times = self._recent(self._tracked[kind], key, now)
                if len(times) >= self.failures:
                    seconds = max(1, math.ceil(times[0] + self.window - now))
                    return LoginRefusal(what, seconds)
        return None

    def failed(self, address, username):
        """Count a failed login."""
        if not self.failures:
            return
        now = self.clock()
        with self._lock:
            for kind, key, what in self._keys(address, username):
                table = self._tracked[kind]
                times = self._recent(table, key, now)
                times.append(now)
                table[key] = times
                table.move_to_end(key)
                while len(table) > self.max_keys:
                    table.popitem(last=False)
                if len(times) == self.failures:
                    log.warning(
                        "eos_api: %s failed logins for %s within %s seconds: refusing its "
                        "logins until they are older",
                        self.failures,
                        what,
                        self.window,
                    )

    def succeeded(self, username):
        """A successful login: forget the user's failures."""
        with self._lock:
            for kind, key, _ in self._keys(None, username):
                self._tracked[kind].pop(key, None)

    def tracked(self):
        """How many addresses and user names are tracked now: {kind: count}."""
        with self._lock:
            return {kind: len(table) for kind, table in self._tracked.items()}

    def _recent(self, table, key, now):
        """The key's failures within the window (a deque of at most ``failures`` times)."""
        times = table.get(key)
        if times is None:
            return collections.deque(maxlen=self.failures)
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del table[key]
        return times
