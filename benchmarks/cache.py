"""(b) A verified-cache hit: validating the exact token bytes that verified before.

Timed in alternation with the raw RS256 verify (the cold floor) so the saving shows as a ratio,
and with ``authenticate("Bearer …")`` (header parsing + hit), what the middleware calls per request.
Target: a hit costs ≤ 3 µs.
"""

from __future__ import annotations

import statistics

from cryptography.hazmat.primitives import serialization

from token_middleware.core.validator import TokenValidator

from ._common import Fixture, Options, Row, interleave, median_ratio, ratio_text, temp_dir, us_text
from .cold import raw_rs256

NAME = "cache"
TARGET_US = 3.0


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
        samples = interleave(
            {
                "hit": lambda: validator.validate(token),
                "authenticate": lambda: validator.authenticate(header),
                "raw": raw_rs256(public, token),  # type: ignore[arg-type]
            },
            rounds=rounds,
            batch_seconds=batch,
        )
    hit = statistics.median(samples["hit"])
    auth = statistics.median(samples["authenticate"])
    return [
        Row("b", "cache hit, validate(token)", us_text(hit), target=f"≤ {TARGET_US:g} µs",
            met=hit <= TARGET_US, note=f"{rounds} rounds", data={"us": hit}),
        Row("b", "  cache hit, authenticate('Bearer …')", us_text(auth), data={"us": auth}),
        Row("b", "  cache hit / raw RS256 verify", ratio_text(median_ratio(samples, "hit", "raw")),
            note=f"raw {us_text(statistics.median(samples['raw']))}"),
    ]
