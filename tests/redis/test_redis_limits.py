"""The login limiter over :class:`RedisFailureStore`, against a real redis-server.

Three limiter instances (three gateway replicas) share one Redis: an attacker spreading wrong
passwords over them gets exactly the tries one replica would give. Then Redis goes away: the
store falls back to per-process limits, says so once at WARNING, and shares again once Redis is
back. Every clock the limiters and the store's retry use is fake; Redis's own clock is real but
only ever compared with itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from itertools import cycle
from typing import Any

import pytest
from _redis_support import RedisServer

from token_middleware.gateway.limits import LoginLimiter, MemoryFailureStore
from token_middleware.redis_store import RedisFailureStore


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tries_until_refused(limiters: list[LoginLimiter], name: str, address: str | None, budget: int = 100) -> int:
    """Wrong passwords the attacker gets to try, spread round-robin over ``limiters``."""
    tried = 0
    for limiter in cycle(limiters):
        if tried >= budget or all(lim.retry_after(name, address) for lim in limiters):
            return tried
        if limiter.retry_after(name, address) == 0:
            limiter.failure(name, address)
            tried += 1
    raise AssertionError("unreachable")


Closing = Callable[[Any], Any]


def replicas(closing: Closing, url: str, count: int = 3) -> list[LoginLimiter]:
    # Each replica has its own monotonic clock, far apart: Redis's clock is the shared one.
    return [LoginLimiter(closing(RedisFailureStore(url)), max_failures=5, window=300, clock=Clock(1000.0 * (i + 1)))
            for i in range(count)]


def test_three_replicas_give_an_attacker_no_more_tries_than_one(redis_server: RedisServer, closing: Closing) -> None:
    one = tries_until_refused(replicas(closing, redis_server.url, 1), "alice", "203.0.113.7")
    three = tries_until_refused(replicas(closing, redis_server.url, 3), "bob", "203.0.113.7")
    assert one == three == 5
    per_process = [LoginLimiter(MemoryFailureStore(), max_failures=5) for _ in range(3)]
    assert tries_until_refused(per_process, "carol", "203.0.113.7") == 15  # what Redis fixes


def test_the_per_address_cap_and_the_wait_hold_across_replicas(redis_server: RedisServer, closing: Closing) -> None:
    limiters = [LoginLimiter(closing(RedisFailureStore(redis_server.url)), max_failures=5, max_failures_per_address=12,
                             window=300, clock=Clock(50.0 + 7000 * i)) for i in range(3)]
    names = [f"user{i}" for i in range(10)]
    tried = sum(tries_until_refused(limiters, name, "198.51.100.1") for name in names)
    assert tried == 12  # many names from one address: the address cap, counted once for all
    for limiter in limiters:
        wait = limiter.retry_after("user9", "198.51.100.1")
        assert 1 <= wait <= 300
    # Another address is not affected.
    assert limiters[0].retry_after("user0", "198.51.100.2") == 0


def test_redis_going_away_falls_back_to_per_process_limits(redis_server: RedisServer, closing: Closing,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    retry_clock = Clock(0.0)
    store = closing(RedisFailureStore(redis_server.url, retry_interval=5, clock=retry_clock))
    limiter = LoginLimiter(store, max_failures=5, window=300, clock=Clock(100.0))
    limiter.failure("dave", "192.0.2.1")
    assert store.available
    caplog.set_level(logging.INFO, logger="token_middleware.redis")

    redis_server.stop()
    for _ in range(4):
        assert limiter.retry_after("dave", "192.0.2.1") == 0
        limiter.failure("dave", "192.0.2.1")
    # Still limited (in this process, counting the failure seen before Redis went away).
    assert limiter.retry_after("dave", "192.0.2.1") > 0
    assert not store.available
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "login limits are per process until Redis answers again" in warnings[0].getMessage()
    assert "dave" not in caplog.text  # user names are never logged

    redis_server.start()  # back, empty (nothing is persisted)
    retry_clock.now += 5
    other = replicas(closing, redis_server.url, 1)[0]
    other.failure("erin", None)
    assert limiter.retry_after("erin", None) == 0
    assert store.available
    assert any("answers again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert tries_until_refused([limiter, other], "erin", None) == 4  # shared again


def test_gateway_redis_url_puts_the_gateways_login_limits_in_redis(redis_server: RedisServer,
                                                                  tmp_path: Any) -> None:
    from token_middleware.gateway.app import _failure_store
    from token_middleware.gateway.config import GatewayConfig

    users = tmp_path / "users.json"
    users.write_text("{}")
    config = GatewayConfig.from_env({"GATEWAY_USERS_FILE": str(users), "GATEWAY_KEYS_DIR": str(tmp_path / "k"),
                                     "GATEWAY_REDIS_URL": redis_server.url})
    assert config.redis_url == redis_server.url
    store = _failure_store(config.redis_url)
    assert isinstance(store, RedisFailureStore)
    store.close()
    assert isinstance(_failure_store(None), MemoryFailureStore)
