"""(b) A verified-cache hit: validating the exact token bytes that verified before.

Timed in alternation with the raw RS256 verify (the cold floor) so the saving shows as a ratio,
and with ``authenticate("Bearer …")`` (header parsing + hit), what the middleware calls per request.
Target: a hit costs ≤ 3 µs.

Beside them, the same two calls for an opaque token whose RFC 7662 introspection answer is
cached (issue 15): the endpoint is the test kit's loopback one, asked once before timing, so the
rows time the in-process hit alone. Target: no more than the JWT hit, and ≤ 3 µs.

Last, a stream of tokens cycling through five times what a full cache holds (issue 16's
20,000-token workload, scaled down): per validation with the cache on, against the cache off
(``cache_size=0``), alternating. Once the cache is full a token is admitted only on its second
verification, so this stream costs no insert or eviction, and the tokens that got in first stay
and hit. Target: ≤ 1.0×, i.e. the cache never makes a cold stream slower.
"""

from __future__ import annotations

import statistics

from collections.abc import Callable

from cryptography.hazmat.primitives import serialization

from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator
from token_middleware.testing import LoopbackIntrospection

from ._common import Fixture, Options, Row, interleave, median_ratio, mint, ratio_text, temp_dir, us_text
from .cold import raw_rs256

NAME = "cache"
TARGET_US = 3.0
CYCLE_CACHE = 64  # cache size of the cycling rows; the stream is five times as many tokens


def cycling(validator: TokenValidator, tokens: list[str]) -> Callable[[], object]:
    """A call that validates every token of ``tokens`` once, in order (a whole cycle: the hits
    and the misses of one call are those of the stream, not of a batch that saw only one kind)."""
    headers = ["Bearer " + raw for raw in tokens]

    def cycle() -> None:
        for header in headers:
            validator.authenticate(header)

    return cycle


def run(options: Options) -> list[Row]:
    rounds = options.rounds_or(41, 5)
    batch = 0.02
    with temp_dir() as directory:
        fx = Fixture.create(directory)
        validator = TokenValidator(fx.settings())
        token = fx.rs_token
        header = f"Bearer {token}"
        first = validator.validate(token)
        if validator.validate(token) is not first:
            raise RuntimeError("the second validation of the same token was not a cache hit")
        public = serialization.load_pem_public_key(fx.rs_key.public_pem())
        stream = [mint(fx.rs_key) for _ in range(5 * CYCLE_CACHE)]
        cached_stream = TokenValidator(fx.settings(), cache_size=CYCLE_CACHE)
        for raw in stream:
            cached_stream.validate(raw)  # the cache is full before timing starts
        with LoopbackIntrospection(issuer=fx.settings().issuer) as endpoint:
            opaque_validator = TokenValidator(Settings.from_mapping(
                {**fx.settings().as_mapping(), **endpoint.settings(INTROSPECTION_CACHE_SECONDS=3600)}))
            opaque = endpoint.issue(scope="orders:read orders:write", ttl=3600)
            opaque_header = f"Bearer {opaque}"
            if opaque_validator.validate(opaque) is not opaque_validator.validate(opaque):
                raise RuntimeError("the second introspection of the same token was not a cache hit")
            samples = interleave(
                {
                    "hit": lambda: validator.validate(token),
                    "authenticate": lambda: validator.authenticate(header),
                    "opaque hit": lambda: opaque_validator.validate(opaque),
                    "opaque authenticate": lambda: opaque_validator.authenticate(opaque_header),
                    "raw": raw_rs256(public, token),  # type: ignore[arg-type]
                },
                rounds=rounds,
                batch_seconds=batch,
            )
            samples.update(interleave(  # ten whole cycles per batch (calibrate's minimum)
                {
                    "stream, cache on": cycling(cached_stream, stream),
                    "stream, cache off": cycling(TokenValidator(fx.settings(), cache_size=0), stream),
                },
                rounds=options.rounds_or(15, 3),
                batch_seconds=batch,
            ))
            if endpoint.requests.get("/introspect") != 1:
                raise RuntimeError("an introspection cache hit made a call")
    hit = statistics.median(samples["hit"])
    auth = statistics.median(samples["authenticate"])
    opaque_hit = statistics.median(samples["opaque hit"])
    opaque_auth = statistics.median(samples["opaque authenticate"])
    opaque_ratio = median_ratio(samples, "opaque hit", "hit")
    stream_ratio = median_ratio(samples, "stream, cache on", "stream, cache off")
    on, off = (statistics.median(samples[f"stream, cache {side}"]) / (5 * CYCLE_CACHE) for side in ("on", "off"))
    return [
        Row("b", "cache hit, validate(token)", us_text(hit), target=f"≤ {TARGET_US:g} µs",
            met=hit <= TARGET_US, note=f"{rounds} rounds", data={"us": hit}),
        Row("b", "  cache hit, authenticate('Bearer …')", us_text(auth), data={"us": auth}),
        Row("b", "  cache hit / raw RS256 verify", ratio_text(median_ratio(samples, "hit", "raw")),
            note=f"raw {us_text(statistics.median(samples['raw']))}"),
        Row("b", "introspection cache hit, validate(opaque)", us_text(opaque_hit), target=f"≤ {TARGET_US:g} µs",
            met=opaque_hit <= TARGET_US, note=f"{rounds} rounds; 1 introspection call in all",
            data={"us": opaque_hit}),
        Row("b", "  introspection cache hit, authenticate('Bearer …')", us_text(opaque_auth),
            data={"us": opaque_auth}),
        Row("b", "  introspection cache hit / JWT cache hit", ratio_text(opaque_ratio),
            note="the same cache and the same path", data={"ratio": opaque_ratio}),
        Row("b", f"one-off tokens, cache full ({5 * CYCLE_CACHE} cycling, cache {CYCLE_CACHE}): on / off",
            ratio_text(stream_ratio), target="≤ 1.0×", met=stream_ratio <= 1.0,
            note=f"per token: on {us_text(on)}, off {us_text(off)}",
            data={"ratio": stream_ratio}),
    ]
