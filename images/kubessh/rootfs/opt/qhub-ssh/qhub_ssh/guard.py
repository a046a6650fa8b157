"""What guards the login: limits on failed logins, and user-supplied text made safe for the log."""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

# How many client addresses and user names the limiter remembers at most (per gateway pod); the least recently
# seen are forgotten first, so memory stays bounded whatever a client sends.
MAX_TRACKED = 10000
# Longest user-supplied text written to the log.
MAX_SHOWN = 80


def shown(text: object) -> str:
    """`text` as it may appear in a log line: quoted, control and non-ASCII characters escaped, cut to MAX_SHOWN
    characters. A user name like 'bob accepted for alice' or one with escape sequences cannot pass for log text."""
    raw = str(text)
    cut = raw[:MAX_SHOWN]
    return json.dumps(cut, ensure_ascii=True) + ("..." if len(raw) > MAX_SHOWN else "")


@dataclass(frozen=True)
class Limits:
    """Failed logins allowed per client address and per user name within `window` seconds (0: no limit)."""

    window: float = 300
    per_source: int = 20
    per_user: int = 10


class FailedLogins:
    """Sliding-window counts of failed logins per key ("source", address) and ("user", name).

    A login attempt first calls begin(); it is refused without asking the hub when any of its keys has reached
    its limit, counting attempts still in flight, so a burst of parallel connections cannot test more tokens than
    the limit. end() records the outcome: a failure counts against every key, a success clears the user's count
    (not the source's: one valid login must not reset the count of an address that guesses other names).
    """

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic, max_tracked: int = MAX_TRACKED):
        self.limits = limits
        self.clock = clock
        self.max_tracked = max_tracked
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._in_flight: dict[tuple[str, str], int] = {}

    def _limit(self, key: tuple[str, str]) -> int:
        return self.limits.per_source if key[0] == "source" else self.limits.per_user

    def _recent(self, key: tuple[str, str]) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        horizon = self.clock() - self.limits.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        return len(times)

    def begin(self, source: str, user: str) -> bool:
        """True if this attempt may go to the hub (and is now in flight); False if a limit is reached."""
        keys = (("source", source), ("user", user))
        for key in keys:
            limit = self._limit(key)
            if limit and self._recent(key) + self._in_flight.get(key, 0) >= limit:
                return False
        for key in keys:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return True

    def end(self, source: str, user: str, ok: bool | None) -> None:
        """Close an attempt begun with begin(): ok True (accepted), False (refused), None (no answer: not counted)."""
        keys = (("source", source), ("user", user))
        for key in keys:
            left = self._in_flight.get(key, 0) - 1
            if left > 0:
                self._in_flight[key] = left
            else:
                self._in_flight.pop(key, None)
        if ok:
            self._failures.pop(("user", user), None)
        elif ok is False:
            now = self.clock()
            for key in keys:
                if not self._limit(key):
                    continue
                times = self._failures.pop(key, None) or deque(maxlen=self._limit(key))
                times.append(now)
                self._failures[key] = times  # most recently failed last
            while len(self._failures) > self.max_tracked:
                self._failures.popitem(last=False)

    def tracked(self) -> int:
        return len(self._failures)
