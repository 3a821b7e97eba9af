"""The failed-login limit: per user name, and per client address where the address is trustworthy.

Policy (SECURITY.md states it too):

- **Per user name and address.** At most ``max_failures`` wrong passwords for one user name from
  one client address in a sliding ``window``; then that name is refused from that address (429
  with ``Retry-After``) until the oldest failure leaves the window. Refused attempts are not
  counted, and they cost no password check.
- **Per user name alone** when the address is not trustworthy (``address=None``: a request that
  came through a trusted proxy without saying whom for). An attacker can then hold that one name
  back for a window; no other name is affected.
- **Per address,** a looser cap (``max_failures_per_address``) on failures for all names
  together, so one address cannot try many names. Since a name stops counting after
  ``max_failures``, a burst of wrong passwords for one name never reaches it: it takes guesses
  at many names.

So a burst of wrong passwords for one name never locks out another user, not even one behind the
same address (a shared NAT, or the demo's nginx, whose clients all come from loopback).

What is trusted: the ``address`` the caller passes (``client_address`` believes
``X-Forwarded-For`` only from ``GATEWAY_TRUSTED_PROXIES``). User names come from clients: they
are only ever used as keys, bounded in length, and never logged.

Counts live behind :class:`FailureStore`, a small interface: :class:`MemoryFailureStore` keeps
them in the process (the default; so per gunicorn worker: with ``W`` workers an attacker gets up
to ``W`` times the limits). With several workers or replicas, use
:class:`token_middleware.redis_store.RedisFailureStore` (the ``redis`` extra): one count for all
of them; while Redis is unreachable it falls back to per-process limits and says so in the log.

Example::

    limiter = LoginLimiter(MemoryFailureStore(), max_failures=5, window=300)
    if (wait := limiter.retry_after("alice", "203.0.113.7")): ...   # 429, Retry-After: wait
    limiter.failure("alice", "203.0.113.7")
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

#: Longest user name used as given in a key; longer ones are cut (the users file allows 256).
MAX_NAME_IN_KEY = 256


class FailureStore(Protocol):
    """Failure times per key, in a sliding window. Implementations must be thread-safe."""

    def record(self, key: str, now: float, window: float, keep: int) -> None:
        """Remember a failure for ``key`` at ``now``; keeping the newest ``keep`` is enough."""

    def recent(self, key: str, now: float, window: float) -> tuple[int, float]:
        """``(failures of key in (now - window, now], time of the oldest of them)``; ``(0, now)``
        when there are none."""


class MemoryFailureStore:
    """:class:`FailureStore` in this process's memory, bounded to ``max_keys`` keys (the least
    recently failed are forgotten first)."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self._times: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _prune(self, key: str, now: float, window: float) -> deque[float] | None:
        times = self._times.get(key)
        if times is None:
            return None
        while times and times[0] <= now - window:
            times.popleft()
        if not times:
            del self._times[key]
            return None
        return times

    def record(self, key: str, now: float, window: float, keep: int) -> None:
        with self._lock:
            times = self._prune(key, now, window)
            if times is None or times.maxlen != keep:
                times = deque(times or (), maxlen=keep)
                self._times[key] = times
            times.append(now)
            self._times.move_to_end(key)
            while len(self._times) > self.max_keys:
                self._times.popitem(last=False)

    def recent(self, key: str, now: float, window: float) -> tuple[int, float]:
        with self._lock:
            times = self._prune(key, now, window)
            if times is None:
                return 0, now
            return len(times), times[0]

    def __len__(self) -> int:
        return len(self._times)


class LoginLimiter:
    """The policy of the module docstring over a :class:`FailureStore`."""

    def __init__(
        self,
        store: FailureStore | None = None,
        *,
        max_failures: int = 5,
        max_failures_per_address: int = 50,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store: FailureStore = store if store is not None else MemoryFailureStore()
        self.max_failures = max_failures
        self.max_failures_per_address = max_failures_per_address
        self.window = window
        self.clock = clock

    @staticmethod
    def _name_key(name: str, address: str | None) -> str:
        # "\n" cannot occur in a user name that reached here (control characters are refused).
        name = name[:MAX_NAME_IN_KEY]
        return f"name\n{name}" if address is None else f"name@addr\n{name}\n{address}"

    def retry_after(self, name: str, address: str | None) -> int:
        """Seconds until ``name`` may try again from ``address``; 0 when it may now."""
        now = self.clock()
        waits = [
            self._wait(self._name_key(name, address), self.max_failures, now),
            self._wait(f"addr\n{address}", self.max_failures_per_address, now) if address else 0,
        ]
        return max(waits)

    def _wait(self, key: str, limit: int, now: float) -> int:
        count, oldest = self.store.recent(key, now, self.window)
        if count < limit:
            return 0
        return max(1, int(oldest + self.window - now + 0.999))

    def failure(self, name: str, address: str | None) -> None:
        """Record a wrong password (or an unknown name) for ``name`` from ``address``."""
        now = self.clock()
        self.store.record(self._name_key(name, address), now, self.window, self.max_failures)
        if address:
            self.store.record(f"addr\n{address}", now, self.window, self.max_failures_per_address)
