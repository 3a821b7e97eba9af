"""Helpers shared by the identity-provider tests (a uniquely named module, not ``conftest``:
several test directories have a conftest, and only one of them can be imported by that name)."""

from __future__ import annotations

#: A fixed "now" for claims (2023-11-14T22:13:20Z); the validators here read a FakeClock.
NOW = 1_700_000_000


class FakeClock:
    """``time.time`` that only moves when told to."""

    def __init__(self, now: float = NOW) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
