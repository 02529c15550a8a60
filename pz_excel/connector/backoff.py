"""Reconnect delays: how long to wait before the next attempt, by what the last one met."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable


class Backoff:
    """Reconnect delays, with jitter, by what the last attempt met.

    * **refused** (nothing listens: a connector restarting; costs it nothing): retried
      quickly, ``refused_base`` doubling to ``refused_cap`` (0.25 s → 1 s; never above
      ``base``/``cap``), so a connector that is back is found within about a second;
    * **any other failure** (accepted then dropped before or at login, a timeout, HTTP
      503, a connection that dropped within ``stable_after`` of its login): ``base``
      doubling to ``cap`` (0.5 s → 30 s);
    * **a connection that was logged in** (up for ``stable_after`` seconds, 0.5 s: a
      connector refuses a login at once, with HTTP 403 or a close right after the upgrade)
      resets both sequences, so its drop is retried promptly (after one ``base`` delay).

    And whatever the delays say, at most ``max_per_minute`` attempts that reached the
    connector (TCP accepted, see :meth:`reached`) in any rolling minute: a connector that
    accepts and drops is never hammered. ``None`` or 0: no cap.

    ``jitter``: ``"equal"`` (default: half the ceiling plus a random half, so a restarted
    connector is not hit by every client at once yet no client hammers it), ``"full"``
    (random in [0, ceiling)) or ``"none"``. ``rand`` and ``clock`` are injectable for tests.
    """

    WINDOW = 60.0  # seconds of the rolling attempt cap

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        factor: float = 2.0,
        jitter: str = "equal",
        stable_after: float = 0.5,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        *,
        refused_base: float = 0.25,
        refused_cap: float = 1.0,
        max_per_minute: int | None = 30,
    ):
        if jitter not in ("equal", "full", "none"):
            raise ValueError(f"jitter must be 'equal', 'full' or 'none', not {jitter!r}")
        if base <= 0 or cap < base or factor < 1:
            raise ValueError("backoff needs 0 < base <= cap and factor >= 1")
        if refused_base <= 0 or refused_cap < refused_base:
            raise ValueError("backoff needs 0 < refused_base <= refused_cap")
        self.base, self.cap, self.factor = base, cap, factor
        self.jitter, self.stable_after = jitter, stable_after
        self.refused_base = min(refused_base, base)
        self.refused_cap = min(refused_cap, cap)
        self.max_per_minute = max_per_minute or None
        self._rand, self._clock = rand, clock
        self._attempt = 0
        self._refused = 0
        self._up_since: float | None = None
        self._reached: deque[float] = deque(maxlen=self.max_per_minute)

    @property
    def attempt(self) -> int:
        """Failures (other than refused connects) since the last reset."""
        return self._attempt

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * self.factor ** min(attempt, 64))

    def refused_ceiling(self, attempt: int) -> float:
        return min(self.refused_cap, self.refused_base * self.factor ** min(attempt, 64))

    def reached(self) -> None:
        """A TCP connection to the connector was made: it counts toward the per-minute cap
        (refused connects do not), and the connector listens again."""
        self._refused = 0
        if self.max_per_minute is not None:
            self._reached.append(self._clock())

    def connected(self) -> None:
        """The upgrade succeeded: a reset follows if it stays up for ``stable_after``."""
        self._up_since = self._clock()

    def reset(self) -> None:
        self._attempt = 0
        self._refused = 0
        self._up_since = None

    def next_delay(self, refused: bool = False) -> float:
        """The wait before the next attempt (call once per failure or drop); ``refused``:
        the connect was refused (nothing listens)."""
        now = self._clock()
        if self._up_since is not None and now - self._up_since >= self.stable_after:
            self.reset()  # it was logged in: its drop is retried promptly
        self._up_since = None
        if refused:
            ceiling = self.refused_ceiling(self._refused)
            self._refused += 1
        else:
            ceiling = self.ceiling(self._attempt)
            self._attempt += 1
        r = min(max(float(self._rand()), 0.0), 1.0)
        if self.jitter == "full":
            delay = ceiling * r
        elif self.jitter == "equal":
            delay = ceiling / 2 + ceiling / 2 * r
        else:
            delay = ceiling
        return max(delay, self._capped_until(now) - now)

    def _capped_until(self, now: float) -> float:
        """When the next attempt may reach the connector without passing the cap."""
        cap = self.max_per_minute
        if cap is None or len(self._reached) < cap:
            return now
        oldest = self._reached[0]  # the deque holds the last ``cap`` attempts
        return max(now, oldest + self.WINDOW)
