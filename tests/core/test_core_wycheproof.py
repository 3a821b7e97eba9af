"""Project Wycheproof's JWS vectors (``wycheproof/json_web_signature_test.json``) against the validator.

How a vector maps onto our policy (kept honest, vector by vector):

* **Key.** The group's public JWK (the ``oct`` JWK for HMAC groups) is the only configured key,
  loaded through :meth:`KeySet.from_jwks` exactly as a JWKS file would be. RFC 7520's EC key
  declares ``"alg": "ES521"``, a typo for ES512 in that RFC; we drop that one member so the key is
  usable, and say so here rather than skip the vectors.
* **ALGORITHMS** is the key's declared ``alg`` when the library supports it, else the vector's
  header ``alg`` when supported, else the default for the key type. PS* is not supported by
  token-middleware, so PS groups run with RS256 allowed: all their vectors, the "valid" ones
  included, must be refused (the honest outcome for an unsupported algorithm).
* **ACCEPTED_TYPES.** No vector carries ``typ``, and RFC 9068 §4 requires one, so ``validate``
  refuses every vector, valid ones with :class:`InvalidType`. The *signature* verdict is therefore
  checked separately, with the validator's own parser, header checks and key source
  (:func:`signature_verdict`), and must be true for every valid vector of a supported algorithm.
* **REQUIRED_CLAIMS** is empty (payloads are not JWT claim sets).
* **JWS but not JWT:** "valid" vectors with an empty payload are refused by the parser as
  :class:`MalformedToken`: an access token's payload is a JSON object, never empty.
* **Payload checked after the signature:** the signature covers the exact segment bytes, so a
  payload segment that is not canonical base64url (spaces, ``#``, padding) can carry a valid
  MAC (tc367-371, tc375). Such vectors must then fail the strict payload decoding, the next
  step of ``validate`` (the strict base64url decoder raises; ``validate`` turns that into
  :class:`MalformedToken`).
* **Stricter than Wycheproof:** vectors 372/373 are "valid" although a ``?`` was inserted into a
  segment; RFC 7515 requires base64url, and we refuse any character outside it
  (:class:`MalformedToken`).
* **Contradictory vectors:** tc367 ("invalidBase64Padding") and tc370
  ("invalidBase64PaddingInPayload") are marked invalid but are byte-identical to tc357, which
  is marked valid (the padding they are about is not in the file). They are checked to still be
  identical to tc357 and then treated as tc357 is.
* Every "invalid" vector must be refused by ``validate`` with an :class:`InvalidToken`
  subclass: never another exception, never acceptance.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from token_middleware.core import _jose
from token_middleware.core.errors import InvalidToken, InvalidType, MalformedToken
from token_middleware.core.keys import KeySet, StaticKeySource
from token_middleware.core.settings import SUPPORTED_ALGORITHMS, Settings
from token_middleware.core import b64url
from token_middleware.core.validator import TokenValidator

VECTORS = Path(__file__).parent / "wycheproof" / "json_web_signature_test.json"
STRICTER_THAN_WYCHEPROOF = {372, 373}  # '?' inserted into a segment: not base64url, refused
CONTRADICTORY = {367: 357, 370: 357}  # "invalid" vectors byte-identical to a "valid" one
_DEFAULT_FOR_KTY = {"RSA": "RS256", "EC": "ES256", "oct": "HS256"}


def _header_alg(jws: str) -> str | None:
    try:
        segment = jws.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        alg = header.get("alg")
        return alg if isinstance(alg, str) else None
    except (ValueError, AttributeError):
        return None


def _cases() -> list[Any]:
    data = json.loads(VECTORS.read_text())
    cases = []
    for group in data["testGroups"]:
        jwk = dict(group.get("public") or group["private"])
        if jwk.get("alg") == "ES521":
            del jwk["alg"]  # RFC 7520 §3.2 typo; see the module docstring
        for test in group["tests"]:
            if not isinstance(test["jws"], str):
                continue  # JSON objects: compact only here; JSON serialization is covered as a string below
            header_alg = _header_alg(test["jws"])
            declared = jwk.get("alg")
            if declared in SUPPORTED_ALGORITHMS:
                alg = declared
            elif declared is None and header_alg in SUPPORTED_ALGORITHMS:
                alg = header_alg
            else:
                alg = _DEFAULT_FOR_KTY[jwk["kty"]]
            supported = declared is None or declared in SUPPORTED_ALGORITHMS
            marks = []
            if test["tcId"] in CONTRADICTORY:
                twin = next(t for t in group["tests"] if t["tcId"] == CONTRADICTORY[test["tcId"]])
                assert twin["jws"] == test["jws"] and twin["result"] == "valid", "vector file changed: revisit"
                test = {**test, "result": "valid"}
            cases.append(pytest.param(test, jwk, alg, supported, marks=marks,
                                      id=f"tc{test['tcId']}-{test['result']}-{test['comment']}"))
    return cases


CASES = _cases()


def make_validator(jwk: dict[str, Any], alg: str, tmp_path: Path) -> TokenValidator:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(jwk))
    settings = Settings.from_mapping({
        "ISSUER": "https://issuer.test", "AUDIENCE": "wycheproof", "PUBLIC_KEYS": str(path),
        "ALGORITHMS": alg, "REQUIRED_CLAIMS": (), "ACCEPTED_TYPES": "at+jwt,JWT",
    })
    return TokenValidator(settings, keys=StaticKeySource(KeySet.from_jwks(jwk, [alg])), cache_size=0)


def signature_verdict(validator: TokenValidator, raw: str) -> bool:
    """The signature step alone: strict parse, alg/kid checks, key lookup, verification."""
    parsed = validator.parse(raw)
    validator._check_crit(parsed.header)
    validator._check_alg(parsed.header)
    validator._check_kid(parsed.header)
    (source,) = validator.key_sources
    keys = source.find(parsed.header.get("kid"), parsed.header["alg"])
    return any(_jose.verify(k.key, parsed.signing_input, parsed.signature) for k in keys)


def test_the_vector_file_is_the_expected_one() -> None:
    data = json.loads(VECTORS.read_text())
    assert data["numberOfTests"] == 401
    assert len(CASES) >= 390  # every compact vector is a case


@pytest.mark.parametrize(("test", "jwk", "alg", "supported"), CASES)
def test_wycheproof_vector(test: dict[str, Any], jwk: dict[str, Any], alg: str, supported: bool, tmp_path: Path) -> None:
    v = make_validator(jwk, alg, tmp_path)
    raw = test["jws"]
    with pytest.raises(InvalidToken) as excinfo:  # nothing here has typ: validate refuses everything
        v.validate(raw)
    if raw:
        assert raw not in excinfo.value.description

    if test["result"] == "invalid":
        # Refused by validate (above); the signature step must not pass either, unless the
        # vector is invalid for a reason outside the signature (checked by validate).
        try:
            verdict = signature_verdict(v, raw)
        except InvalidToken:
            verdict = False
        if verdict:
            # The signature verified: the vector must then be refused by the strict base64url
            # decoding of the payload (see the module docstring), or it would have been accepted.
            with pytest.raises(ValueError):
                b64url.decode(raw.split(".")[1])
        return

    # result "valid"
    if test["tcId"] in STRICTER_THAN_WYCHEPROOF:
        with pytest.raises((MalformedToken, ValueError)):
            v.parse(raw)
            b64url.decode(raw.split(".")[1])
        return
    if raw.split(".")[1] == "":
        assert type(excinfo.value) is MalformedToken  # JWS with an empty payload: not a JWT
        return
    if not supported:
        return  # PS*: refused above, and that is the expected outcome
    assert type(excinfo.value) is InvalidType, "only the missing typ may refuse a valid vector"
    assert signature_verdict(v, raw) is True


def test_json_serialization_vectors_are_refused(tmp_path: Path) -> None:
    data = json.loads(VECTORS.read_text())
    seen = 0
    for group in data["testGroups"]:
        jwk = dict(group.get("public") or group["private"])
        for test in group["tests"]:
            jws = test["jws"] if isinstance(test["jws"], str) else json.dumps(test["jws"])
            if not jws.startswith("{"):
                continue
            seen += 1
            v = make_validator(jwk, jwk.get("alg") or _DEFAULT_FOR_KTY[jwk["kty"]], tmp_path)
            with pytest.raises(InvalidToken):
                v.validate(jws)
    assert seen >= 1
