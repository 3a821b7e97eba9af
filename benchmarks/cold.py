"""(a) Cold validation against the physical floor: a raw ``cryptography`` verify of the same token.

Candidates, timed in alternation on the same token:

* ``raw``: ``cryptography`` verify with the key preloaded and the signing input and signature
  already split and decoded (RSA PKCS#1 v1.5 + SHA-256; for ES256 the raw ``r||s`` signature is
  converted to DER inside the timed call, as every JWS verifier must);
* ``minimal``: a hand-written verifier (split, base64, ``json.loads``, verify, exp/iss/aud):
  what any correct validator has to do at least, without the strict checks;
* ``validator``: ``TokenValidator(settings, cache_size=0).validate(token)``, the real policy;
* ``constructor``: the same validator building its ``AccessToken`` through the dataclass
  constructor instead of filling ``__dict__`` (the one hot-path trick the validator keeps, and
  only while this row shows it buys at least 3%);
* ``jose-key`` / ``jose-jwks``: python-jose's own ``jwt.decode`` with a prebuilt key, and with a
  JWKS dict (it tries every key), for context.

Target: cold RS256 validation ≤ 1.6× raw verify. When it is missed (or with ``--profile``) the
validator is profiled with :mod:`cProfile` and the top functions are reported.
"""

from __future__ import annotations

import base64
import cProfile
import io
import json
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jose import jwk as jose_jwk
from jose import jwt as jose_jwt

from token_middleware.core.token import AccessToken
from token_middleware.core.validator import TokenValidator

from ._common import AUDIENCE, ISSUER, Fixture, Options, Row, interleave, median_ratio, ratio_text, temp_dir, us_text

NAME = "cold"
TARGET_RS256 = 1.6


def _b64d(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _split(token: str) -> tuple[bytes, bytes]:
    header, payload, signature = token.split(".")
    return f"{header}.{payload}".encode("ascii"), _b64d(signature)


def raw_rs256(public: rsa.RSAPublicKey, token: str) -> Callable[[], None]:
    signing_input, signature = _split(token)
    pad, alg = padding.PKCS1v15(), hashes.SHA256()

    def verify() -> None:
        public.verify(signature, signing_input, pad, alg)

    return verify


def raw_es256(public: ec.EllipticCurvePublicKey, token: str) -> Callable[[], None]:
    signing_input, signature = _split(token)
    scheme = ec.ECDSA(hashes.SHA256())

    def verify() -> None:
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        public.verify(encode_dss_signature(r, s), signing_input, scheme)

    return verify


def minimal(verify_sig: Callable[[bytes, bytes], None], token: str) -> Callable[[], dict[str, Any]]:
    """A correct but lenient verifier: the least work a validator has to do."""

    def validate() -> dict[str, Any]:
        h, p, s = token.split(".")
        header = json.loads(_b64d(h))
        if header.get("alg") not in ("RS256", "ES256"):
            raise ValueError("alg")
        verify_sig(f"{h}.{p}".encode("ascii"), _b64d(s))
        claims: dict[str, Any] = json.loads(_b64d(p))
        if claims["exp"] < time.time() or claims["iss"] != ISSUER or AUDIENCE not in claims["aud"]:
            raise ValueError("claims")
        return claims

    return validate


class ConstructorValidator(TokenValidator):
    """The validator with ``AccessToken(**fields)`` in place of its ``__dict__`` fill."""

    def _build(self, raw: str, claims: dict[str, Any], header: Any) -> AccessToken:
        return AccessToken(**self.fields(raw, claims, header))


def _public(pem: bytes) -> Any:
    return serialization.load_pem_public_key(pem)


def profile(validator: TokenValidator, token: str, calls: int = 3000, top: int = 14) -> list[str]:
    """Where a cold validation spends its time: the top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        validator.validate(token)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    total = stats.total_tt  # type: ignore[attr-defined]
    lines = [f"cProfile of {calls} cold RS256 validations (own time, share of total; profiler overhead inflates Python code):"]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    for (filename, lineno, func), (_cc, ncalls, tottime, _cum, _callers) in rows[:top]:
        where = filename.rsplit("/site-packages/", 1)[-1].rsplit("/work/main/", 1)[-1]
        lines.append(
            f"  {tottime / total * 100:5.1f}%  {tottime / calls * 1e6:6.2f} µs/validation  "
            f"{ncalls // calls:>3}×  {where}:{lineno}({func})"
        )
    return lines


def run(options: Options, *, force_profile: bool = False) -> list[Row]:
    rounds = options.rounds_or(41, 5)
    batch = 0.02 if options.quick else 0.03
    with temp_dir() as directory:
        fx = Fixture.create(directory)
        settings = fx.settings()
        validator = TokenValidator(settings, cache_size=0)
        constructor = ConstructorValidator(settings, cache_size=0)
        rs_public = _public(fx.rs_key.public_pem())
        es_public = _public(fx.es_key.public_pem())
        rs_jwk, es_jwk = fx.rs_key.public_jwk(), fx.es_key.public_jwk()
        rs_jose_key = jose_jwk.construct(rs_jwk, "RS256")
        es_jose_key = jose_jwk.construct(es_jwk, "ES256")
        jwks = fx.jwks()

        def rs_sig(msg: bytes, sig: bytes) -> None:
            rs_public.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())

        def es_sig(msg: bytes, sig: bytes) -> None:
            r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            es_public.verify(encode_dss_signature(r, s), msg, ec.ECDSA(hashes.SHA256()))

        def jose(token: str, key: Any, alg: str) -> Callable[[], object]:
            return lambda: jose_jwt.decode(token, key, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)

        rs, es = fx.rs_token, fx.es_token
        for token in (rs, es):
            validator.validate(token)  # fail loudly before timing anything

        rs_samples = interleave(
            {
                "raw": raw_rs256(rs_public, rs),
                "minimal": minimal(rs_sig, rs),
                "validator": lambda: validator.validate(rs),
                "constructor": lambda: constructor.validate(rs),
                "jose-key": jose(rs, rs_jose_key, "RS256"),
                "jose-jwks": jose(rs, jwks, "RS256"),
            },
            rounds=rounds,
            batch_seconds=batch,
        )
        es_samples = interleave(
            {
                "raw": raw_es256(es_public, es),
                "minimal": minimal(es_sig, es),
                "validator": lambda: validator.validate(es),
                "jose-key": jose(es, es_jose_key, "ES256"),
            },
            rounds=rounds,
            batch_seconds=batch,
        )

        rows: list[Row] = []
        for alg, samples in (("RS256", rs_samples), ("ES256", es_samples)):
            med = {name: statistics.median(values) for name, values in samples.items()}
            ratio = median_ratio(samples, "validator", "raw")
            target = alg == "RS256"
            rows.append(
                Row(
                    "a",
                    f"cold {alg} validation / raw verify",
                    ratio_text(ratio),
                    target=f"≤ {TARGET_RS256}×" if target else "",
                    met=(ratio <= TARGET_RS256) if target else None,
                    note=(f"{us_text(med['validator'])} vs {us_text(med['raw'])}; {rounds} rounds; "
                          f"ratio of the fastest rounds {min(samples['validator']) / min(samples['raw']):.2f}×"),
                    data={"alg": alg, "ratio": ratio, "median_us": med},
                )
            )
            for name, label in (
                ("minimal", "minimal hand-written verifier"),
                ("constructor", "validator with AccessToken(**fields) constructor"),
                ("jose-key", "python-jose jwt.decode, prebuilt key"),
                ("jose-jwks", "python-jose jwt.decode, JWKS dict"),
            ):
                if name in samples:
                    r = median_ratio(samples, name, "raw")
                    rows.append(
                        Row("a", f"  {alg} {label} / raw", ratio_text(r), note=us_text(med[name]),
                            data={"alg": alg, "ratio": r})
                    )
            if "constructor" in samples:
                r = median_ratio(samples, "constructor", "validator")
                rows.append(
                    Row("a", f"  {alg} AccessToken constructor / __dict__ fill", ratio_text(r),
                        target="≥ 1.03× keeps the fill", met=r >= 1.03,
                        note="validator._build keeps its trick only while this holds",
                        data={"alg": alg, "ratio": r})
                )
        rs_ratio = float(rows[0].data["ratio"])
        if force_profile or rs_ratio > TARGET_RS256:
            details = profile(validator, rs, calls=500 if options.quick else 3000)
            rows[0] = Row(**{**rows[0].__dict__, "data": {**rows[0].data, "details": details}})
    return rows
