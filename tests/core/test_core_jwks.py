"""JWKS behaviour against a real HTTP server on loopback: discovery, rotation, throttling,
outages (warm and cold), slow and oversized responses, Cache-Control, and the verified-token cache.

Where time matters, the key source gets a fake monotonic clock (``RemoteKeySource(clock=…)``)
and the validator a fake wall clock, so nothing here depends on how fast the machine is. The
only wall-clock assertions are generous "no hang" bounds on cold outages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from _support import AUDIENCE, ISSUER, FakeClock, JWKSServer, Kit

from token_middleware.core.errors import InvalidToken, KeysUnavailable, UnknownKey
from token_middleware.core.issuer import SigningKey, TokenIssuer
from token_middleware.core.keys import RemoteKeySource
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator


class Remote:
    """A validator on a :class:`RemoteKeySource` with fake clocks, pointed at a JWKS server."""

    def __init__(self, server: JWKSServer, wall: FakeClock, *, cache_size: int = 0, cache_seconds: int = 300,
                 min_refresh: int = 30, timeout: float = 1.0) -> None:
        self.mono = FakeClock(1000.0)
        self.source = RemoteKeySource(algorithms=("RS256", "ES256"), jwks_url=server.jwks_url, cache_seconds=cache_seconds,
                                      min_refresh_seconds=min_refresh, timeout=timeout, clock=self.mono)
        settings = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "JWKS_URL": server.jwks_url})
        self.validator = TokenValidator(settings, keys=self.source, cache_size=cache_size, clock=wall)

    def advance(self, seconds: float) -> None:
        self.mono.advance(seconds)


def mint(key: SigningKey, clock: FakeClock, **claims: Any) -> str:
    return TokenIssuer(ISSUER, key, clock=clock).mint(sub="alice", audience=AUDIENCE, **claims)


# -- discovery ---------------------------------------------------------------------------------


def test_discovery_from_the_issuer(ec_key: SigningKey, clock: FakeClock, jwks_server: JWKSServer) -> None:
    settings = Settings.from_mapping({"ISSUER": jwks_server.url, "AUDIENCE": AUDIENCE})
    v = TokenValidator(settings, clock=clock)
    raw = TokenIssuer(jwks_server.url, ec_key, clock=clock).mint(sub="alice", audience=AUDIENCE)
    assert v.validate(raw).issuer == jwks_server.url
    assert jwks_server.count("/.well-known/openid-configuration") == 1
    assert jwks_server.count("/jwks") == 1


def test_discovery_with_a_different_issuer_is_refused(ec_key: SigningKey, clock: FakeClock,
                                                      jwks_server: JWKSServer) -> None:
    jwks_server.discovery_issuer = "https://someone-else.test"
    settings = Settings.from_mapping({"ISSUER": jwks_server.url, "AUDIENCE": AUDIENCE, "JWKS_MIN_REFRESH_SECONDS": 2})
    v = TokenValidator(settings, clock=clock)
    raw = TokenIssuer(jwks_server.url, ec_key, clock=clock).mint(sub="alice", audience=AUDIENCE)
    with pytest.raises(KeysUnavailable) as excinfo:
        v.validate(raw)
    assert excinfo.value.cause is not None
    assert f"names issuer 'https://someone-else.test' but ISSUER is {jwks_server.url!r}" in excinfo.value.cause
    assert jwks_server.count("/.well-known/openid-configuration") == 1
    assert jwks_server.count("/jwks") == 0  # the advertised jwks_uri was never trusted


# -- rotation ----------------------------------------------------------------------------------


def test_rotation_new_kid_triggers_one_refetch(ec_key: SigningKey, clock: FakeClock, jwks_server: JWKSServer) -> None:
    jwks_server.rotate([ec_key])
    r = Remote(jwks_server, clock)
    assert r.validator.validate(mint(ec_key, clock)).subject == "alice"
    assert jwks_server.count() == 1

    new_key = SigningKey.generate("ES256", kid="ec-2")
    jwks_server.rotate([ec_key, new_key])
    # The start-up fetch does not count against the unknown-kid throttle: one refetch at once.
    r.advance(10)
    assert r.validator.validate(mint(new_key, clock)).subject == "alice"
    assert jwks_server.count() == 2
    assert r.validator.validate(mint(new_key, clock)).subject == "alice"
    assert r.validator.validate(mint(ec_key, clock)).subject == "alice"
    assert jwks_server.count() == 2
    # Within JWKS_MIN_REFRESH_SECONDS of that refetch, another unknown kid does not fetch.
    newer = SigningKey.generate("ES256", kid="ec-3")
    jwks_server.rotate([ec_key, new_key, newer])
    r.advance(29)
    with pytest.raises(UnknownKey):
        r.validator.validate(mint(newer, clock))
    assert jwks_server.count() == 2
    # After it, exactly one refetch, and the newer key is accepted.
    r.advance(1)
    assert r.validator.validate(mint(newer, clock)).subject == "alice"
    assert jwks_server.count() == 3


def test_rotation_through_settings_with_no_min_refresh(ec_key: SigningKey, clock: FakeClock,
                                                       jwks_server: JWKSServer) -> None:
    jwks_server.rotate([ec_key])
    settings = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "JWKS_URL": jwks_server.jwks_url,
                                      "JWKS_MIN_REFRESH_SECONDS": 0})
    v = TokenValidator(settings, clock=clock)
    assert v.validate(mint(ec_key, clock)).subject == "alice"
    new_key = SigningKey.generate("ES256", kid="ec-new")
    jwks_server.rotate([new_key])
    assert v.validate(mint(new_key, clock)).subject == "alice"
    assert jwks_server.count() == 2


# -- unknown-kid throttling under concurrency ---------------------------------------------------


def _flood(validator: TokenValidator, tokens: list[str]) -> list[BaseException | None]:
    results: list[BaseException | None] = [None] * len(tokens)
    barrier = threading.Barrier(len(tokens))

    def work(i: int) -> None:
        barrier.wait()
        try:
            validator.validate(tokens[i])
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    return results


def test_unknown_kid_flood_causes_at_most_one_fetch_per_interval(ec_key: SigningKey, clock: FakeClock,
                                                                 jwks_server: JWKSServer) -> None:
    jwks_server.rotate([ec_key])
    r = Remote(jwks_server, clock)
    r.validator.validate(mint(ec_key, clock))
    assert jwks_server.count() == 1
    strangers = [SigningKey.generate("ES256", kid=f"unknown-{i}") for i in range(5)]
    tokens = [mint(strangers[i % 5], clock, jti=f"j{i}") for i in range(50)]

    for interval, expected_fetches in [(31, 2), (5, 2), (5, 2), (30, 3)]:
        r.advance(interval)
        results = _flood(r.validator, tokens)
        assert all(isinstance(e, UnknownKey) for e in results), {type(e).__name__ for e in results}
        assert jwks_server.count() == expected_fetches
    # Known tokens keep validating throughout.
    assert r.validator.validate(mint(ec_key, clock)).subject == "alice"


def test_unknown_kid_flood_with_default_settings_fetches_nothing_more(ec_key: SigningKey, clock: FakeClock,
                                                                       jwks_server: JWKSServer) -> None:
    settings = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "JWKS_URL": jwks_server.jwks_url})
    v = TokenValidator(settings, clock=clock)
    v.validate(mint(ec_key, clock))
    stranger = SigningKey.generate("ES256", kid="stranger")
    results = _flood(v, [mint(stranger, clock, jti=f"j{i}") for i in range(50)])
    assert all(isinstance(e, UnknownKey) for e in results)
    assert jwks_server.count() == 2  # the start-up fetch, then one unknown-kid refetch for all 50
    results = _flood(v, [mint(stranger, clock, jti=f"k{i}") for i in range(50)])
    assert all(isinstance(e, UnknownKey) for e in results)
    assert jwks_server.count() == 2  # JWKS_MIN_REFRESH_SECONDS (30) has not elapsed since it


def test_cold_concurrent_start_shares_one_fetch(ec_key: SigningKey, clock: FakeClock, jwks_server: JWKSServer) -> None:
    jwks_server.delay = 0.3  # a slow but working key server: every thread arrives during the first fetch
    r = Remote(jwks_server, clock)
    results = _flood(r.validator, [mint(ec_key, clock, jti=f"j{i}") for i in range(50)])
    assert results == [None] * 50
    assert jwks_server.count() == 1


# -- outages -----------------------------------------------------------------------------------

FAULTS = ["500", "garbage", "html", "empty", "hang", "slow", "flap", "huge"]


@pytest.mark.parametrize("mode", FAULTS)
def test_warm_cache_survives_key_server_faults(mode: str, ec_key: SigningKey, rsa_key: SigningKey, clock: FakeClock,
                                               jwks_server: JWKSServer) -> None:
    r = Remote(jwks_server, clock, timeout=0.5)
    assert r.validator.validate(mint(ec_key, clock)).subject == "alice"
    jwks_server.mode = mode
    if mode == "flap":
        jwks_server.reset_counts()  # the next request is the 1st: ok, then 500, ...
        jwks_server.mode = "flap"
    for round_ in range(3):
        r.advance(301)  # the cached set is stale: every round tries to refetch
        before = jwks_server.count()
        for key in (ec_key, rsa_key):
            assert r.validator.validate(mint(key, clock, jti=f"{round_}-{key.kid}")).subject == "alice"
        assert jwks_server.count() == before + 1, "a refetch was attempted"
    # An unknown kid is still a token problem (401), never an outage (503).
    with pytest.raises(UnknownKey):
        r.validator.validate(mint(SigningKey.generate("ES256", kid="nope"), clock))


COLD_FAULTS = ["500", "garbage", "html", "empty", "hang", "slow", "huge", "unreachable"]


@pytest.mark.parametrize("mode", COLD_FAULTS)
def test_cold_outage_is_503_with_retry_after_within_the_timeout(mode: str, ec_key: SigningKey, clock: FakeClock,
                                                                 jwks_server: JWKSServer) -> None:
    timeout, min_refresh = 0.5, 2
    if mode == "unreachable":
        url = f"http://127.0.0.1:{_closed_port()}/jwks"
    else:
        jwks_server.mode = mode
        url = jwks_server.jwks_url
    settings = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "JWKS_URL": url,
                                      "HTTP_TIMEOUT": timeout, "JWKS_MIN_REFRESH_SECONDS": min_refresh})
    v = TokenValidator(settings, clock=clock)
    started = time.monotonic()
    with pytest.raises(KeysUnavailable) as excinfo:
        v.validate(mint(ec_key, clock))
    elapsed = time.monotonic() - started
    assert elapsed < timeout * 3 + 1, f"took {elapsed:.1f}s"
    err = excinfo.value
    assert 1 <= err.retry_after <= min_refresh
    assert err.status_code == 503 and not isinstance(err, InvalidToken)
    if mode != "unreachable":
        assert jwks_server.count() >= 1


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cold_outage_then_recovery(ec_key: SigningKey, clock: FakeClock, jwks_server: JWKSServer) -> None:
    jwks_server.mode = "500"
    r = Remote(jwks_server, clock, min_refresh=30)
    with pytest.raises(KeysUnavailable) as excinfo:
        r.validator.validate(mint(ec_key, clock))
    assert excinfo.value.retry_after <= 30
    # Retries without keys are throttled to Retry-After, not hammering the key server.
    with pytest.raises(KeysUnavailable):
        r.validator.validate(mint(ec_key, clock))
    assert jwks_server.count() == 1
    jwks_server.mode = "ok"
    r.advance(excinfo.value.retry_after)
    assert r.validator.validate(mint(ec_key, clock)).subject == "alice"
    assert jwks_server.count() == 2


def test_slow_response_is_bounded_by_the_overall_deadline(ec_key: SigningKey, clock: FakeClock,
                                                          jwks_server: JWKSServer) -> None:
    # Each byte arrives well within the socket timeout; only an overall deadline stops this.
    jwks_server.mode = "slow"
    jwks_server.trickle_interval = 0.02
    r = Remote(jwks_server, clock, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(KeysUnavailable):
        r.validator.validate(mint(ec_key, clock))
    assert time.monotonic() - started < 0.5 * 3 + 1


def test_oversized_jwks_is_refused(ec_key: SigningKey, clock: FakeClock, jwks_server: JWKSServer) -> None:
    jwks_server.mode = "huge"
    assert len(__import__("json").dumps(jwks_server.document())) < 512 * 1024  # the real keys are small
    r = Remote(jwks_server, clock)
    with pytest.raises(KeysUnavailable):
        r.validator.validate(mint(ec_key, clock))
    jwks_server.mode = "ok"
    r.advance(30)
    assert r.validator.validate(mint(ec_key, clock)).subject == "alice"


# -- Cache-Control -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        pytest.param(None, 300, id="no-header-uses-JWKS_CACHE_SECONDS"),
        pytest.param("public, max-age=60", 60, id="max-age-shortens"),
        pytest.param("max-age=5", 30, id="max-age-below-min-refresh-is-raised"),
        pytest.param("max-age=100000", 300, id="max-age-above-cache-seconds-is-capped"),
        pytest.param("no-store", 30, id="no-store-means-min-refresh"),
        pytest.param("max-age=oops", 300, id="bad-max-age-ignored"),
    ],
)
def test_cache_control_max_age_within_bounds(cache_control: str | None, ttl: int, ec_key: SigningKey,
                                             clock: FakeClock, jwks_server: JWKSServer) -> None:
    jwks_server.cache_control = cache_control
    r = Remote(jwks_server, clock)
    r.validator.validate(mint(ec_key, clock))
    r.advance(ttl - 1)
    r.validator.validate(mint(ec_key, clock))
    assert jwks_server.count() == 1, "still fresh"
    r.advance(1)
    r.validator.validate(mint(ec_key, clock))
    assert jwks_server.count() == 2, "stale: refetched"


# -- verified-token cache ----------------------------------------------------------------------


def test_cache_hit_returns_the_same_object(kit: Kit, make_validator: Callable[..., TokenValidator]) -> None:
    v = make_validator(cache_size=16)
    raw = kit.token()
    first = v.validate(raw)
    assert v.validate(raw) is first
    assert make_validator(cache_size=0).validate(raw) is not make_validator(cache_size=0).validate(raw)


def test_cache_entry_dies_at_exp(kit: Kit, make_validator: Callable[..., TokenValidator], clock: FakeClock) -> None:
    v = make_validator(cache_size=16, LEEWAY=0)
    raw = kit.token(payload=kit.claims(exp=kit.now + 60))
    first = v.validate(raw)
    clock.advance(60)
    assert v.validate(raw) is first  # exactly at exp (no leeway): still valid
    clock.advance(1)
    with pytest.raises(InvalidToken) as excinfo:
        v.validate(raw)
    assert type(excinfo.value).__name__ == "ExpiredToken"


def test_cache_entry_dies_when_its_key_leaves_the_key_set(ec_key: SigningKey, clock: FakeClock,
                                                         jwks_server: JWKSServer) -> None:
    jwks_server.rotate([ec_key])
    r = Remote(jwks_server, clock, cache_size=16)
    raw = mint(ec_key, clock)
    first = r.validator.validate(raw)
    assert r.validator.validate(raw) is first

    new_key = SigningKey.generate("ES256", kid="ec-next")
    jwks_server.rotate([new_key])
    r.advance(301)  # the cached key set goes stale; the next lookup refetches
    assert r.validator.validate(mint(new_key, clock)).subject == "alice"
    assert jwks_server.count() == 2
    with pytest.raises(UnknownKey):
        r.validator.validate(raw)


def test_cache_is_a_bounded_lru(kit: Kit, make_validator: Callable[..., TokenValidator]) -> None:
    v = make_validator(cache_size=2)
    t1, t2, t3 = (kit.token(payload=kit.claims(jti=f"j{i}")) for i in range(3))
    a1, a2 = v.validate(t1), v.validate(t2)
    assert v.validate(t1) is a1  # t1 is now the most recent
    a3 = v.validate(t3)  # the cache is full: t3's first verification only notes it
    assert v.validate(t2) is a2 and v.validate(t1) is a1  # nothing was evicted; t1 most recent
    b3 = v.validate(t3)  # its second verification admits it, evicting t2, the least recent
    assert b3 is not a3
    assert v.validate(t3) is b3
    assert v.validate(t1) is a1
    assert v.validate(t2) is not a2


def test_one_off_tokens_do_not_push_out_the_cached_ones(kit: Kit,
                                                        make_validator: Callable[..., TokenValidator]) -> None:
    v = make_validator(cache_size=2)
    t1, t2 = (kit.token(payload=kit.claims(jti=f"kept{i}")) for i in range(2))
    a1, a2 = v.validate(t1), v.validate(t2)
    one_offs = [kit.token(payload=kit.claims(jti=f"once{i}")) for i in range(7)]
    for raw in one_offs:
        v.validate(raw)
    assert v.validate(t1) is a1 and v.validate(t2) is a2
    # The doorkeeper holds at most cache_size sightings: the first one-offs were forgotten, so a
    # second sighting of one is again a first one and the cache keeps t1 and t2.
    v.validate(one_offs[0])
    assert v.validate(t1) is a1 and v.validate(t2) is a2
    # Seen twice in a row, it goes in, pushing out the least recent (t1).
    again = v.validate(one_offs[0])
    assert v.validate(one_offs[0]) is again and v.validate(t2) is a2
    assert v.validate(t1) is not a1


def test_non_canonical_variant_of_a_cached_token_is_refused(kit: Kit,
                                                            make_validator: Callable[..., TokenValidator]) -> None:
    v = make_validator(cache_size=16)
    raw = kit.token()
    v.validate(raw)
    head, sig = raw.rsplit(".", 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    variant = f"{head}.{sig[:-1]}{alphabet[alphabet.index(sig[-1]) ^ 0x01]}"
    assert variant != raw
    # Refused (never served from the cache); which 401 it is (bad base64url or a signature that
    # does not verify) is the validator's wording, tested in test_core_validator.
    with pytest.raises(InvalidToken):
        v.validate(variant)
    with pytest.raises(InvalidToken):
        v.validate(raw + "==")
