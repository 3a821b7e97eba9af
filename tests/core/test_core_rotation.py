"""Rotations at a service with the default settings, against a real JWKS on loopback.

The issuer here is any issuer (not our gateway): it publishes one key ahead, as the gateway
used to, or none at all. The service's key source runs on a fake monotonic clock and its
validator on a fake wall clock, so no test sleeps or depends on the machine's speed. Each test
counts refusals the way a load test would: every token the issuer signs is validated.

What is checked (``token_middleware.core.keys``): the start-up fetch does not spend the
unknown-kid refetch, so a key promoted seconds after start-up is learnt at once; a flood of
random ``kid`` values still fetches at most once per ``JWKS_MIN_REFRESH_SECONDS``.
"""

from __future__ import annotations

import secrets

from _support import AUDIENCE, ISSUER, FakeClock, JWKSServer

from token_middleware.core.errors import UnknownKey
from token_middleware.core.issuer import SigningKey, TokenIssuer
from token_middleware.core.keys import RemoteKeySource
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator


class Service:
    """One service worker with the default settings; ``validate`` counts refusals."""

    def __init__(self, server: JWKSServer, wall: FakeClock) -> None:
        settings = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "JWKS_URL": server.jwks_url})
        assert (settings.jwks_min_refresh_seconds, settings.jwks_cache_seconds) == (30, 300)
        self.mono = FakeClock(5000.0)
        self.source = RemoteKeySource(
            algorithms=settings.algorithms, jwks_url=settings.jwks_url,
            cache_seconds=settings.jwks_cache_seconds,
            min_refresh_seconds=settings.jwks_min_refresh_seconds, clock=self.mono,
        )
        self.validator = TokenValidator(settings, keys=self.source, clock=wall)
        self.wall = wall
        self.refused = 0
        self.accepted = 0

    def advance(self, seconds: float) -> None:
        self.mono.advance(seconds)
        self.wall.advance(seconds)

    def validate(self, token: str) -> None:
        try:
            self.validator.validate(token)
        except UnknownKey:
            self.refused += 1
        else:
            self.accepted += 1


def mint(key: SigningKey, wall: FakeClock) -> str:
    return TokenIssuer(ISSUER, key, clock=wall).mint(sub="alice", audience=AUDIENCE, jti=secrets.token_hex(8))


def test_two_rotations_3_s_apart_with_one_key_ahead_refuse_nothing(clock: FakeClock, jwks_server: JWKSServer) -> None:
    """The issue's measurement: start-up fetch at 0, rotations at 11 s and 14 s, load to 40 s."""
    keys = [SigningKey.generate("ES256", kid=f"k{i}") for i in range(4)]
    current = 0
    jwks_server.rotate(keys[:2])  # the current key and one ahead
    service = Service(jwks_server, clock)
    service.source.prefetch()
    for second in range(40):
        if second in (11, 14):
            current += 1  # promote the key ahead, publish a new one ahead
            jwks_server.rotate(keys[current - 1:current + 2])
        for _ in range(3):
            service.validate(mint(keys[current], clock))
        service.advance(1)
    assert service.refused == 0 and service.accepted == 120
    assert jwks_server.count() <= 3  # start-up, one refetch at 14 s, perhaps the 60 s refresh


def test_an_issuer_that_signs_with_a_key_it_just_published_costs_no_refusal(
    clock: FakeClock, jwks_server: JWKSServer
) -> None:
    """No key ahead at all (many IdPs): the first token of the new key gets its refetch."""
    old, new = SigningKey.generate("ES256", kid="old"), SigningKey.generate("ES256", kid="new")
    jwks_server.rotate([old])
    service = Service(jwks_server, clock)
    service.source.prefetch()
    service.advance(2)  # well within JWKS_MIN_REFRESH_SECONDS of the start-up fetch
    jwks_server.rotate([new, old])
    for _ in range(20):
        service.validate(mint(new, clock))
        service.validate(mint(old, clock))
    assert service.refused == 0
    assert jwks_server.count() == 2


def test_a_flood_of_random_kids_cannot_make_the_service_hammer_the_jwks(
    clock: FakeClock, jwks_server: JWKSServer, ec_key: SigningKey
) -> None:
    jwks_server.rotate([ec_key])
    service = Service(jwks_server, clock)
    service.source.prefetch()
    strangers = [SigningKey.generate("ES256", kid=secrets.token_hex(6)) for _ in range(8)]
    for second in range(300):
        for stranger in strangers:  # a hostile client: a new kid every time
            service.validate(mint(stranger, clock))
        service.advance(1)
    assert service.accepted == 0
    # The start-up fetch, then one unknown-kid refetch per 30 s: 1 + 10, whatever the flood.
    assert jwks_server.count() <= 11
    service.validate(mint(ec_key, clock))
    assert service.accepted == 1
