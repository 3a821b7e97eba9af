"""The failed-login limit (token_middleware.gateway.limits): per user name and address, per name
alone where the address is not trustworthy, a looser cap per address, and never a lockout of
another user. Also which address the gateway believes (X-Forwarded-For from trusted proxies only).
"""

from __future__ import annotations

import pytest

from token_middleware.gateway.authn import client_address
from token_middleware.gateway.limits import LoginLimiter, MemoryFailureStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **options: int) -> LoginLimiter:
    values = {"max_failures": 3, "max_failures_per_address": 8, "window": 60}
    values.update(options)
    return LoginLimiter(MemoryFailureStore(), clock=clock, **values)  # type: ignore[arg-type]


A, B = "203.0.113.1", "203.0.113.2"

# (failures recorded as (name, address), the attempt (name, address), blocked?)
CASES = [
    pytest.param([("bob", A)] * 2, ("bob", A), False, id="below-the-limit"),
    pytest.param([("bob", A)] * 3, ("bob", A), True, id="name-limited-from-that-address"),
    pytest.param([("bob", A)] * 3, ("bob", B), False, id="same-name-from-another-address"),
    pytest.param([("mallory", A)] * 3, ("bob", A), False, id="burst-for-one-name-never-locks-out-another"),
    pytest.param([("mallory", A)] * 30, ("bob", A), False, id="long-burst-for-one-name-still-not"),
    pytest.param([(f"user{i}", A) for i in range(8)], ("bob", A), True, id="many-names-from-one-address"),
    pytest.param([(f"user{i}", A) for i in range(8)], ("bob", B), False, id="address-cap-is-per-address"),
    pytest.param([("bob", None)] * 3, ("bob", None), True, id="untrusted-address-name-alone"),
    pytest.param([("bob", None)] * 3, ("alice", None), False, id="untrusted-address-other-name"),
    pytest.param([(f"user{i}", None) for i in range(20)], ("bob", None), False, id="no-address-cap-without-address"),
]


@pytest.mark.parametrize(("failures", "attempt", "blocked"), CASES)
def test_policy(failures: list[tuple[str, str | None]], attempt: tuple[str, str | None], blocked: bool) -> None:
    clock = Clock()
    limit = limiter(clock)
    for name, address in failures:
        if not limit.retry_after(name, address):  # as the gateway does: refused tries do not count
            limit.failure(name, address)
    assert bool(limit.retry_after(*attempt)) is blocked


def test_the_window_slides() -> None:
    clock = Clock()
    limit = limiter(clock)
    for step in range(3):
        limit.failure("bob", A)
        clock.now += 10
    wait = limit.retry_after("bob", A)
    assert 0 < wait <= 60 - 20
    clock.now += wait
    assert limit.retry_after("bob", A) == 0


def test_the_memory_store_is_bounded() -> None:
    store = MemoryFailureStore(max_keys=4)
    limit = LoginLimiter(store, max_failures=2, window=60)
    for i in range(10):
        limit.failure(f"user{i}", A)
    assert len(store) == 4


@pytest.mark.parametrize(
    ("environ", "trusted", "expected"),
    [
        pytest.param({"REMOTE_ADDR": A}, (), A, id="direct-client"),
        pytest.param({"REMOTE_ADDR": A, "HTTP_X_FORWARDED_FOR": "6.6.6.6"}, (), A, id="xff-from-an-untrusted-client-ignored"),
        pytest.param({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": B}, ("127.0.0.1",), B, id="xff-from-the-trusted-proxy"),
        pytest.param({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": f"6.6.6.6, {B}"}, ("127.0.0.1",), B, id="rightmost-untrusted-hop"),
        pytest.param({"REMOTE_ADDR": "127.0.0.1"}, ("127.0.0.1",), None, id="trusted-proxy-without-xff"),
        pytest.param({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "nonsense"}, ("127.0.0.1",), None, id="xff-not-an-address"),
        pytest.param({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "127.0.0.1"}, ("127.0.0.1",), None, id="xff-only-trusted-hops"),
    ],
)
def test_which_address_is_believed(environ: dict[str, str], trusted: tuple[str, ...], expected: str | None) -> None:
    assert client_address(environ, trusted) == expected
