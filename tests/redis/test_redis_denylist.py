"""The ``jti`` denylist over Redis, against a real redis-server, through a real validator.

Two validators stand for two service replicas sharing one Redis. A revocation at one reaches
the other within its ``cache_seconds`` (1 s, on a fake clock: nothing sleeps). Then Redis goes
away: by default the validator answers ``RevocationUnavailable`` (503); with ``fail_open`` it
accepts and says so at WARNING.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from _redis_support import RedisServer

from token_middleware.core.errors import RevocationUnavailable, RevokedToken
from token_middleware.core.issuer import SigningKey, TokenIssuer, jwks_document
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator
from token_middleware.redis_store import RedisDenylist, StoreUnavailable

ISSUER = "https://issuer.test"
AUDIENCE = "orders-service"
Closing = Callable[[Any], Any]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("ES256", kid="k1")


@pytest.fixture
def settings(tmp_path: Path, key: SigningKey) -> Settings:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_document([key])))
    return Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "PUBLIC_KEYS": str(path)})


def mint(key: SigningKey, **claims: Any) -> str:
    return TokenIssuer(ISSUER, key).mint(sub="alice", audience=AUDIENCE, jti=secrets.token_hex(8), **claims)


def test_a_revocation_reaches_every_replica_within_a_second(redis_server: RedisServer, closing: Closing,
                                                            settings: Settings, key: SigningKey) -> None:
    clocks = [Clock(10.0), Clock(900.0)]
    lists = [closing(RedisDenylist(redis_server.url, clock=c)) for c in clocks]
    replicas = [TokenValidator(settings, is_revoked=d.is_revoked) for d in lists]
    raw = mint(key)
    token = replicas[1].validate(raw)  # replica 1 has now cached "not revoked"
    assert replicas[0].validate(raw).subject == "alice"

    lists[0].revoke(token)
    with pytest.raises(RevokedToken):
        replicas[0].validate(raw)  # the replica that revoked: at once
    clocks[1].now += 0.5
    assert replicas[1].validate(raw).subject == "alice"  # within its 1 s cache
    clocks[1].now += 0.5
    with pytest.raises(RevokedToken):
        replicas[1].validate(raw)  # a second after: everywhere
    other = mint(key)
    assert replicas[1].validate(other).subject == "alice"  # only that token


def test_entries_expire_with_the_token(redis_server: RedisServer, closing: Closing, settings: Settings,
                                       key: SigningKey) -> None:
    denylist = closing(RedisDenylist(redis_server.url, leeway=60, cache_seconds=0))
    token = TokenValidator(settings).validate(mint(key, ttl=300))
    assert token.expires_at is not None and token.jti is not None
    denylist.revoke(token)
    client = closing(redis.Redis.from_url(redis_server.url))
    (stored,) = client.keys("token_middleware:revoked:*")
    assert 355_000 <= client.pttl(stored) <= 360_000  # exp (300 s) + leeway (60 s)
    assert token.jti.encode() not in stored  # hashed, never the raw value

    denylist.revoke(ISSUER, "by-hand", until=token.expires_at)
    assert len(client.keys("token_middleware:revoked:*")) == 2
    with pytest.raises(ValueError, match="jti"):
        denylist.revoke(ISSUER, None, until=token.expires_at)
    with pytest.raises(ValueError, match="until"):
        denylist.revoke(ISSUER, "no-expiry")
    with pytest.raises(ValueError, match="within a second"):
        RedisDenylist(redis_server.url, cache_seconds=5)


def test_redis_away_fails_closed_by_default(redis_server: RedisServer, closing: Closing, settings: Settings,
                                            key: SigningKey, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(0.0)
    denylist = closing(RedisDenylist(redis_server.url, clock=clock, retry_interval=1))
    validator = TokenValidator(settings, is_revoked=denylist.is_revoked, cache_size=0)
    raw = mint(key)
    assert validator.validate(raw).subject == "alice"

    redis_server.stop()
    clock.now += 1.0  # past the "not revoked" cache
    with caplog.at_level(logging.WARNING):
        with pytest.raises(RevocationUnavailable):
            validator.validate(raw)
        with pytest.raises(RevocationUnavailable):
            validator.validate(mint(key))
    assert "StoreUnavailable" in caplog.text and "answering 503" in caplog.text
    with pytest.raises(StoreUnavailable):
        denylist.revoke(ISSUER, "x", until=2e9)

    redis_server.start()
    clock.now += 1.0  # the retry interval
    assert validator.validate(raw).subject == "alice"


def test_redis_away_with_fail_open_accepts_and_warns(redis_server: RedisServer, closing: Closing,
                                                     settings: Settings, key: SigningKey,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    denylist = closing(RedisDenylist(redis_server.url, fail_open=True, cache_seconds=0))
    validator = TokenValidator(settings, is_revoked=denylist.is_revoked)
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="token_middleware.redis"):
        for _ in range(3):
            assert validator.validate(mint(key)).subject == "alice"
    warnings = [r for r in caplog.records if r.name == "token_middleware.redis"]
    assert len(warnings) == 1 and "fail_open" in warnings[0].getMessage()
