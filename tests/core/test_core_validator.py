"""The validator's whole policy and the RFC 8725 attack classes, with real RSA and EC keys.

Every case runs once with an RS256 key and once with an ES256 key (the ``kit`` fixture). Each
row names the exact exception class expected; every refusal is also checked to carry a short
description that never contains the token or any of its segments.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _support import AUDIENCE, ISSUER, JWKSServer, Kit, b64url, forge
from cryptography.hazmat.primitives import serialization

from token_middleware.core.errors import (
    BearerError,
    ConfigurationError,
    CriticalHeader,
    DisallowedAlgorithm,
    ExpiredToken,
    InvalidAudience,
    InvalidClaim,
    InvalidHeader,
    InvalidIssuer,
    InvalidSignature,
    InvalidToken,
    InvalidType,
    IssuedInFuture,
    KeysUnavailable,
    MalformedToken,
    MissingClaim,
    NotYetValid,
    TokenTooLarge,
    UnknownKey,
    UnsupportedSerialization,
)
from token_middleware.core.issuer import SigningKey, jwks_document
from token_middleware.core.settings import Settings
from token_middleware.core.token import AccessToken
from token_middleware.core.validator import TokenValidator

Builder = Callable[[Kit], str]


def assert_refused(validator: TokenValidator, raw: str, expected: type[BearerError]) -> BearerError:
    """``raw`` is refused with exactly ``expected``, and the message leaks nothing of it."""
    with pytest.raises(BearerError) as excinfo:
        validator.validate(raw)
    err = excinfo.value
    assert type(err) is expected, f"expected {expected.__name__}, got {type(err).__name__}: {err.description}"
    assert isinstance(err, InvalidToken)
    assert err.status_code == 401 and err.error == "invalid_token"
    text = f"{err.description} {err!s} {err!r} {json.dumps(err.to_dict())} {err.www_authenticate('r')}"
    if raw:
        assert raw not in text
    for segment in raw.split("."):
        if len(segment) >= 8:
            assert segment not in text
    assert len(err.description) < 200
    return err


# -- the happy path -------------------------------------------------------------------------


def test_a_valid_token_gives_the_access_token(kit: Kit, validator: TokenValidator) -> None:
    raw = kit.issuer().mint(sub="alice", audience=[AUDIENCE, "customers-service"], scopes=["orders:read"],
                            client_id="web", jti="j-1")
    token = validator.validate(raw)
    assert isinstance(token, AccessToken)
    assert token.subject == "alice"
    assert token.scopes == frozenset({"orders:read"})
    assert token.client_id == "web"
    assert token.issuer == ISSUER
    assert token.audience == (AUDIENCE, "customers-service")
    assert token.expires_at == kit.now + 300
    assert token.jti == "j-1"
    assert token.key_id == kit.key.kid
    assert token.raw == raw
    assert token.claims["sub"] == "alice"


def test_the_forge_makes_tokens_the_validator_accepts(kit: Kit, validator: TokenValidator) -> None:
    # The table below builds its attacks with the forge: prove a forged *valid* token passes.
    assert validator.validate(kit.token()).subject == "alice"
    assert validator.validate(kit.token(payload=json.dumps(kit.claims()).encode())).subject == "alice"


# -- the attack table -----------------------------------------------------------------------


def _none(alg: str, signed: bool) -> Builder:
    def build(k: Kit) -> str:
        raw = k.token(header=k.header(alg=alg), signature=b"")
        return raw + ("c2lnbmF0dXJl" if signed else "")

    return build


def _public_key_as_hmac_secret(form: str) -> Builder:
    def build(k: Kit) -> str:
        public = serialization.load_pem_public_key(k.key.public_pem())
        if form == "pem":
            secret = k.key.public_pem()
        else:
            secret = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        return k.token(header=k.header(alg="HS256"), secret=secret)

    return build


def _resigned_header(**changes: Any) -> Builder:
    return lambda k: k.token(header=k.header(**changes))


def _claims(**changes: Any) -> Builder:
    return lambda k: k.token(payload=k.claims(**changes))


def _raw_payload(template: str) -> Builder:
    """A signed token whose payload is raw JSON text (``{now}`` is filled in)."""
    return lambda k: k.token(payload=template.replace("{now}", str(k.now)).encode())


def _raw_header(text: str) -> Builder:
    return lambda k: k.token(header=text.replace("{alg}", k.key.alg).replace("{kid}", k.key.kid).encode())


def _tampered_payload(k: Kit) -> str:
    h, _, s = k.token().split(".")
    return f"{h}.{b64url(json.dumps(k.claims(sub='mallory')).encode())}.{s}"


def _flip_trailing_bits(k: Kit) -> str:
    raw = k.token()
    head, sig = raw.rsplit(".", 1)
    assert len(sig) % 4 == 2, "RSA-2048 and P-256 signatures leave 4 unused bits"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(sig[-1]) | 0x01]
    return f"{head}.{sig[:-1]}{last}"


def _standard_base64_alphabet(index: int) -> Builder:
    """A valid token with one segment re-spelled in the standard base64 alphabet ('+', '/').

    The token is built once (ECDSA signatures are random, so every ``k.token()`` differs). When the
    segment has no '-' or '_' to re-spell, a '+' is appended to it instead, so it always holds a
    character outside the base64url alphabet. A validator that tolerated the standard alphabet
    would accept a re-spelled signature, and would report a re-spelled header or payload as a bad
    signature (the signing input changed), never the expected :class:`MalformedToken`.
    """

    def build(k: Kit) -> str:
        parts = k.token().split(".")
        segment = parts[index]
        parts[index] = (segment.replace("-", "+").replace("_", "/") if ("-" in segment or "_" in segment)
                        else segment + "+")
        assert "+" in parts[index] or "/" in parts[index]
        return ".".join(parts)

    return build


def _padded(index: int) -> Builder:
    def build(k: Kit) -> str:
        parts = k.token().split(".")
        parts[index] += "=" * (-len(parts[index]) % 4 or 4)
        return ".".join(parts)

    return build


def _alg_switched(alg: str) -> Builder:
    def build(k: Kit) -> str:
        h, p, s = k.token().split(".")
        header = json.loads(forge_decode(h))
        header["alg"] = alg
        return f"{b64url(json.dumps(header).encode())}.{p}.{s}"

    return build


def forge_decode(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _jwe(k: Kit) -> str:
    header = b64url(json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM", "typ": "at+jwt", "kid": k.key.kid}).encode())
    return f"{header}.{b64url(b'k' * 32)}.{b64url(b'iv' * 6)}.{b64url(b'ciphertext')}.{b64url(b'tag' * 5)}"


def _json_serialization(k: Kit) -> str:
    h, p, s = k.token().split(".")
    return json.dumps({"payload": p, "signatures": [{"protected": h, "signature": s}]})


def _flattened_json_serialization(k: Kit) -> str:
    h, p, s = k.token().split(".")
    return json.dumps({"payload": p, "protected": h, "signature": s})


def _nested(depth: int, where: str) -> Builder:
    def build(k: Kit) -> str:
        deep = "[" * depth + "]" * depth
        if where == "header":
            return k.token(header=f'{{"alg":"{k.key.alg}","typ":"at+jwt","kid":"{k.key.kid}","x":{deep}}}'.encode())
        claims = json.dumps(k.claims())[:-1] + f',"x":{deep}}}'
        return k.token(payload=claims.encode())

    return build


ATTACKS: list[Any] = [
    # RFC 8725 §2.1: alg none, any capitalisation, with and without a signature.
    *[pytest.param(_none(a, False), InvalidSignature, id=f"alg-{a}-unsigned") for a in ("none", "None", "NONE", "nOnE")],
    *[pytest.param(_none(a, True), DisallowedAlgorithm, id=f"alg-{a}-with-signature") for a in ("none", "None", "NONE", "nOnE")],
    # RFC 8725 §2.1 / §3.1: key confusion, the public key used as the HMAC secret.
    pytest.param(_public_key_as_hmac_secret("pem"), DisallowedAlgorithm, id="hs256-public-key-pem-as-secret"),
    pytest.param(_public_key_as_hmac_secret("openssh"), DisallowedAlgorithm, id="hs256-public-key-openssh-as-secret"),
    # kid injection: the kid only selects among configured keys.
    pytest.param(_resigned_header(kid="../../../../dev/null"), UnknownKey, id="kid-path-traversal"),
    pytest.param(_resigned_header(kid="/etc/passwd"), UnknownKey, id="kid-absolute-path"),
    pytest.param(_resigned_header(kid="x' UNION SELECT 'secret' --"), UnknownKey, id="kid-sql-injection"),
    pytest.param(_resigned_header(kid="|touch /tmp/pwned"), UnknownKey, id="kid-command-injection"),
    pytest.param(_resigned_header(kid=""), UnknownKey, id="kid-empty-string"),
    pytest.param(_resigned_header(kid=1), InvalidHeader, id="kid-number"),
    pytest.param(_resigned_header(kid=["rsa-1"]), InvalidHeader, id="kid-list"),
    pytest.param(_resigned_header(kid={"$ne": ""}), InvalidHeader, id="kid-object"),
    pytest.param(_resigned_header(kid=True), InvalidHeader, id="kid-bool"),
    pytest.param(_resigned_header(kid="k" * 300), InvalidHeader, id="kid-huge"),
    # Keys never come from the token (embedded jwk / x5c), whatever it claims.
    pytest.param(lambda k: k.token(header=k.header(jwk=k.other.public_jwk()), key=k.other), InvalidSignature,
                 id="embedded-jwk-attacker-key-same-kid"),
    pytest.param(lambda k: k.token(header=k.header(kid="attacker", jwk={**k.other.public_jwk(), "kid": "attacker"}),
                                   key=k.other), UnknownKey, id="embedded-jwk-attacker-kid"),
    pytest.param(lambda k: k.token(header=k.header(x5c=["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]), key=k.other),
                 InvalidSignature, id="embedded-x5c"),
    # crit, b64=false, JWE, JSON serialization.
    pytest.param(_resigned_header(crit=["exp"], exp=1), CriticalHeader, id="crit"),
    pytest.param(_resigned_header(crit=["b64"], b64=False), CriticalHeader, id="crit-b64-false"),
    pytest.param(_resigned_header(b64=False), UnsupportedSerialization, id="b64-false-without-crit"),
    pytest.param(_resigned_header(enc="A256GCM"), UnsupportedSerialization, id="header-enc"),
    pytest.param(_resigned_header(zip="DEF"), UnsupportedSerialization, id="header-zip"),
    pytest.param(_jwe, UnsupportedSerialization, id="jwe-five-segments"),
    pytest.param(_json_serialization, UnsupportedSerialization, id="json-serialization-general"),
    pytest.param(_flattened_json_serialization, UnsupportedSerialization, id="json-serialization-flattened"),
    # Integrity.
    pytest.param(_tampered_payload, InvalidSignature, id="tampered-payload"),
    pytest.param(lambda k: k.token().rsplit(".", 1)[0] + ".", InvalidSignature, id="stripped-signature"),
    pytest.param(lambda k: k.token().rsplit(".", 1)[0], MalformedToken, id="stripped-signature-and-dot"),
    pytest.param(lambda k: k.token(key=k.other), InvalidSignature, id="signature-from-another-key"),
    pytest.param(lambda k: k.token(signature=b"\x00" * 64), InvalidSignature, id="zero-signature"),
    # A signature segment that is not canonical base64url is, to the client, a bad signature; a
    # header or payload segment is malformed (the payload is decoded strictly before the key search).
    pytest.param(_flip_trailing_bits, InvalidSignature, id="non-canonical-signature-trailing-bits"),
    pytest.param(_padded(0), MalformedToken, id="padded-header"),
    pytest.param(_padded(1), MalformedToken, id="padded-payload"),
    pytest.param(_padded(2), InvalidSignature, id="padded-signature"),
    pytest.param(lambda k: k.token().replace(".", "..", 1), MalformedToken, id="extra-empty-segment"),
    pytest.param(lambda k: "." + k.token().split(".", 1)[1], MalformedToken, id="missing-header"),
    pytest.param(_standard_base64_alphabet(0), MalformedToken, id="standard-base64-alphabet-header"),
    pytest.param(_standard_base64_alphabet(1), MalformedToken, id="standard-base64-alphabet-payload"),
    pytest.param(_standard_base64_alphabet(2), InvalidSignature, id="standard-base64-alphabet-signature"),
    pytest.param(lambda k: " " + k.token(), MalformedToken, id="leading-space"),
    pytest.param(lambda k: "", MalformedToken, id="empty-string"),
    pytest.param(lambda k: "not-a-jwt", MalformedToken, id="one-segment"),
    pytest.param(lambda k: k.token(header=b"[1,2]"), MalformedToken, id="header-json-array"),
    pytest.param(lambda k: k.token(header=b"\xff\xfe"), MalformedToken, id="header-not-utf8"),
    pytest.param(lambda k: k.token(payload=b'"just a string"'), MalformedToken, id="payload-json-string"),
    pytest.param(lambda k: k.token(payload=b"foo"), MalformedToken, id="payload-not-json"),
    pytest.param(lambda k: k.token(payload=json.dumps(k.claims()).encode() + b" {}"), MalformedToken,
                 id="payload-second-json-value"),
    pytest.param(lambda k: k.token(payload=json.dumps(k.claims()).encode() + b"x"), MalformedToken,
                 id="payload-trailing-garbage"),
    pytest.param(lambda k: k.token(header=json.dumps(k.header()).encode() + b","), MalformedToken,
                 id="header-trailing-garbage"),
    # Algorithm substitution: the signature stays, the header lies.
    pytest.param(_alg_switched("RS384"), None, id="alg-switched-to-RS384"),
    pytest.param(_alg_switched("ES256"), None, id="alg-switched-to-ES256"),
    pytest.param(_alg_switched("RS256"), None, id="alg-switched-to-RS256"),
    pytest.param(_alg_switched("ES384"), None, id="alg-switched-to-ES384"),
    pytest.param(_resigned_header(alg="PS256"), DisallowedAlgorithm, id="alg-PS256-not-allowed"),
    pytest.param(_resigned_header(alg=None), DisallowedAlgorithm, id="alg-missing"),
    pytest.param(_resigned_header(alg=["RS256"]), DisallowedAlgorithm, id="alg-list"),
    pytest.param(_resigned_header(alg="rs256"), DisallowedAlgorithm, id="alg-lowercase"),
    # Duplicate member names and JSON constants (RFC 7515 §5.2, RFC 8259).
    pytest.param(_raw_header('{"alg":"{alg}","typ":"at+jwt","kid":"{kid}","kid":"{kid}"}'), MalformedToken,
                 id="duplicate-header-member"),
    pytest.param(_raw_header('{"alg":"none","alg":"{alg}","typ":"at+jwt","kid":"{kid}"}'), MalformedToken,
                 id="duplicate-alg-none-first"),
    pytest.param(_raw_payload(f'{{"iss":"{ISSUER}","sub":"alice","sub":"admin","aud":"{AUDIENCE}",'
                              '"iat":{now},"exp":9999999999}'), MalformedToken, id="duplicate-payload-member"),
    pytest.param(_raw_payload(f'{{"iss":"{ISSUER}","sub":"a","aud":"{AUDIENCE}","iat":{{now}},"exp":NaN}}'),
                 MalformedToken, id="exp-NaN-raw-json"),
    pytest.param(_raw_payload(f'{{"iss":"{ISSUER}","sub":"a","aud":"{AUDIENCE}","iat":{{now}},"exp":Infinity}}'),
                 MalformedToken, id="exp-Infinity-raw-json"),
    pytest.param(_raw_payload(f'{{"iss":"{ISSUER}","sub":"a","aud":"{AUDIENCE}","iat":{{now}},"exp":1e400}}'),
                 InvalidClaim, id="exp-1e400-overflows-to-inf"),
    pytest.param(_raw_payload(f'{{"iss":"{ISSUER}","sub":"a","aud":"{AUDIENCE}","iat":{{now}},"exp":' + "9" * 5000 + "}"),
                 MalformedToken, id="exp-5000-digit-integer"),
    # Claims of the wrong JSON type.
    pytest.param(_claims(exp="9999999999"), InvalidClaim, id="exp-string"),
    pytest.param(_claims(exp=True), InvalidClaim, id="exp-true"),
    pytest.param(_claims(exp=[1]), InvalidClaim, id="exp-list"),
    pytest.param(_claims(nbf="0"), InvalidClaim, id="nbf-string"),
    pytest.param(_claims(iat=False), InvalidClaim, id="iat-false"),
    pytest.param(_claims(aud=123), InvalidAudience, id="aud-number"),
    pytest.param(_claims(aud={"aud": AUDIENCE}), InvalidAudience, id="aud-object"),
    pytest.param(_claims(aud=[]), InvalidAudience, id="aud-empty-list"),
    pytest.param(_claims(aud=[AUDIENCE, 1]), InvalidAudience, id="aud-list-with-number"),
    pytest.param(_claims(sub=42), InvalidClaim, id="sub-number"),
    pytest.param(_claims(sub=["alice"]), InvalidClaim, id="sub-list"),
    pytest.param(_claims(client_id=7), InvalidClaim, id="client_id-number"),
    pytest.param(_claims(jti={"id": 1}), InvalidClaim, id="jti-object"),
    pytest.param(_claims(scope=1), InvalidClaim, id="scope-int"),
    pytest.param(_claims(scp=["a", 2]), InvalidClaim, id="scp-list-with-int"),
    pytest.param(_claims(scp={"a": True}), InvalidClaim, id="scp-object"),
    # Required claims.
    *[pytest.param(_claims(**{c: None}), MissingClaim, id=f"missing-{c}") for c in ("exp", "iat", "iss", "aud", "sub")],
    # Time.
    pytest.param(lambda k: k.token(payload=k.claims(iat=k.now - 600, exp=k.now - 31)), ExpiredToken, id="expired-beyond-leeway"),
    pytest.param(lambda k: k.token(payload=k.claims(nbf=k.now + 31)), NotYetValid, id="nbf-beyond-leeway"),
    pytest.param(lambda k: k.token(payload=k.claims(iat=k.now + 31)), IssuedInFuture, id="iat-in-the-future"),
    # Issuer: exact match only.
    *[pytest.param(_claims(iss=i), InvalidIssuer, id=f"iss-{n}") for n, i in [
        ("trailing-slash", ISSUER + "/"), ("prefix", ISSUER[:-1]), ("suffix", ISSUER + ".evil"),
        ("uppercase", ISSUER.upper()), ("other", "https://evil.test"), ("path", ISSUER + "/x"),
        ("leading-space", " " + ISSUER), ("empty", "")]],
    pytest.param(_claims(iss=1), InvalidIssuer, id="iss-number"),
    pytest.param(_claims(iss=[ISSUER]), InvalidIssuer, id="iss-list"),
    # Audience.
    pytest.param(_claims(aud="customers-service"), InvalidAudience, id="aud-other-service"),
    pytest.param(_claims(aud=["customers-service"]), InvalidAudience, id="aud-list-without-us"),
    pytest.param(_claims(aud=AUDIENCE.upper()), InvalidAudience, id="aud-case-variant"),
    pytest.param(_claims(aud=AUDIENCE + " "), InvalidAudience, id="aud-trailing-space"),
    # typ (RFC 9068 §4): JWT is refused by default.
    pytest.param(_resigned_header(typ="JWT"), InvalidType, id="typ-JWT-by-default"),
    pytest.param(_resigned_header(typ=None), InvalidType, id="typ-missing"),
    pytest.param(_resigned_header(typ="id_token+jwt"), InvalidType, id="typ-other"),
    pytest.param(_resigned_header(typ=["at+jwt"]), InvalidType, id="typ-list"),
    pytest.param(_resigned_header(typ="at+jwt "), InvalidType, id="typ-trailing-space"),
]


def _expected_for_alg_switch(kit: Kit, target: str) -> type[BearerError]:
    if target == kit.key.alg:
        return InvalidSignature  # same alg, but the header was re-encoded: the signing input changed
    if target not in ("RS256", "ES256"):
        return DisallowedAlgorithm  # not in the default ALGORITHMS
    return UnknownKey  # the kid names a key of the other type: no (kid, alg) match


@pytest.mark.parametrize(("build", "expected"), ATTACKS)
def test_attack_is_refused(kit: Kit, validator: TokenValidator, build: Builder, expected: type[BearerError] | None,
                           request: pytest.FixtureRequest) -> None:
    raw = build(kit)
    if expected is None:  # alg switches: the answer depends on the key type
        target = request.node.callspec.id.split("alg-switched-to-")[1].split("-")[0]
        expected = _expected_for_alg_switch(kit, target)
    err = assert_refused(validator, raw, expected)
    if isinstance(err, InvalidClaim) and expected in (MissingClaim, InvalidAudience, InvalidIssuer):
        assert err.claim is not None


@pytest.mark.parametrize(
    ("key_file", "expected"),
    [
        # The JWK declares "alg": "RS256", so the key is usable for RS256 only.
        pytest.param("jwks", UnknownKey, id="jwk-pinned-to-RS256"),
        # A PEM declares nothing: the key is tried for RS384/RS512 and the signature fails.
        pytest.param("pem", InvalidSignature, id="pem-any-RS-alg"),
    ],
)
def test_alg_switch_within_the_rsa_family_is_refused(rsa_key: SigningKey, clock: Any, tmp_path: Path, key_file: str,
                                                     expected: type[BearerError]) -> None:
    path = tmp_path / "key"
    path.write_bytes(json.dumps(jwks_document([rsa_key])).encode() if key_file == "jwks" else rsa_key.public_pem())
    settings = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "PUBLIC_KEYS": str(path),
                                      "ALGORITHMS": "RS256,RS384,RS512"})
    v = TokenValidator(settings, clock=clock, cache_size=0)
    kit = Kit(key=rsa_key, other=rsa_key, clock=clock)
    header = kit.header(kid=None) if key_file == "pem" else kit.header()  # PEM keys have no kid
    for alg in ("RS384", "RS512"):
        assert_refused(v, _alg_switched(alg)(_KitWithHeader(kit, header)), expected)
    assert v.validate(kit.token(header=header)).subject == "alice"


class _KitWithHeader(Kit):
    def __init__(self, kit: Kit, header: dict[str, Any]) -> None:
        super().__init__(key=kit.key, other=kit.other, clock=kit.clock)
        self._header = header

    def token(self, header: Any = None, payload: Any = None, **kwargs: Any) -> str:
        return super().token(header=self._header if header is None else header, payload=payload, **kwargs)


@pytest.mark.parametrize("key_file", ["pem", "jwk-without-kid"])
def test_a_key_file_without_kids_accepts_tokens_with_a_kid(kit: Kit, tmp_path: Path, key_file: str) -> None:
    path = tmp_path / "key"
    if key_file == "pem":
        path.write_bytes(kit.key.public_pem())
    else:
        jwk = kit.key.public_jwk()
        del jwk["kid"]
        path.write_text(json.dumps(jwk))
    settings = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "PUBLIC_KEYS": str(path)})
    v = TokenValidator(settings, clock=kit.clock, cache_size=0)
    assert v.validate(kit.token(header=kit.header(kid=None))).subject == "alice"  # works today
    assert v.validate(kit.token()).subject == "alice"  # the gateway always sets kid


def test_es256_token_against_a_p384_key_is_refused(tmp_path: Path, p384_key: SigningKey, ec_key: SigningKey,
                                                   clock: Any) -> None:
    # The issuer's key is P-384 (ES384); a token says ES256 and names that key's kid.
    path = tmp_path / "p384.json"
    path.write_text(json.dumps(jwks_document([p384_key])))
    settings = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "PUBLIC_KEYS": str(path),
                                      "ALGORITHMS": "ES256,ES384"})
    v = TokenValidator(settings, clock=clock, cache_size=0)
    kit = Kit(key=ec_key, other=ec_key, clock=clock)
    p256_token = kit.token(header=kit.header(kid=p384_key.kid))
    assert_refused(v, p256_token, UnknownKey)
    # Same P-256 signature under an ES384 header: the P-384 key does not verify it.
    assert_refused(v, kit.token(header=kit.header(kid=p384_key.kid, alg="ES384"), alg="ES256"), InvalidSignature)
    # The genuine ES384 token passes, so the refusals above are about the key, not the setup.
    p384 = Kit(key=p384_key, other=p384_key, clock=clock)
    assert v.validate(p384.token()).subject == "alice"


# -- HS256 key confusion with HS256 allowed ---------------------------------------------------


def test_hs256_beside_asymmetric_algorithms_cannot_even_be_configured(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigurationError, match="RFC 8725"):
        make_settings(ALGORITHMS="RS256,ES256,HS256")


@pytest.mark.parametrize("key_name", ["rsa", "ec"])
def test_hs256_only_with_a_public_key_file_is_refused_at_start_up(tmp_path: Path, key_name: str,
                                                                  rsa_key: SigningKey, ec_key: SigningKey) -> None:
    # An operator who points an HS256-only service at the issuer's *public* key gets a start-up
    # error, not a service that treats the public PEM as an HMAC secret.
    key = rsa_key if key_name == "rsa" else ec_key
    path = tmp_path / "public.pem"
    path.write_bytes(key.public_pem())
    settings = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "PUBLIC_KEYS": str(path), "ALGORITHMS": "HS256"})
    with pytest.raises(ConfigurationError, match="no key usable"):
        TokenValidator(settings)


def test_hs256_with_a_shared_secret_file_works_and_still_refuses_other_secrets(tmp_path: Path, clock: Any,
                                                                                rsa_key: SigningKey) -> None:
    secret = b"s" * 32
    path = tmp_path / "secret.json"
    path.write_text(json.dumps({"kty": "oct", "kid": "hs-1", "k": b64url(secret)}))
    settings = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "PUBLIC_KEYS": str(path), "ALGORITHMS": "HS256"})
    v = TokenValidator(settings, clock=clock, cache_size=0)
    kit = Kit(key=rsa_key, other=rsa_key, clock=clock)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": "hs-1"}
    assert v.validate(forge(header, kit.claims(), secret=secret)).subject == "alice"
    assert_refused(v, forge(header, kit.claims(), secret=rsa_key.public_pem()), InvalidSignature)
    assert_refused(v, kit.token(), DisallowedAlgorithm)  # an RS256 token at an HS256-only service


# -- jku / x5u: never fetched -------------------------------------------------------------------


@pytest.mark.parametrize("member", ["jku", "x5u"])
@pytest.mark.parametrize("source", ["static", "remote"])
def test_jku_and_x5u_are_never_fetched(kit: Kit, make_validator: Callable[..., TokenValidator], member: str, source: str,
                                       jwks_server: JWKSServer, attacker_server: JWKSServer) -> None:
    attacker_key = SigningKey.generate(kit.key.alg, kid="attacker")
    attacker_server.rotate([attacker_key])
    v = make_validator(JWKS_URL=jwks_server.jwks_url) if source == "remote" else make_validator()
    url = attacker_server.jwks_url
    own_kid = kit.token(header=kit.header(**{member: url}), key=attacker_key)
    attacker_kid = kit.token(header=kit.header(kid="attacker", **{member: url}), key=attacker_key)
    assert_refused(v, own_kid, InvalidSignature)
    assert_refused(v, attacker_kid, UnknownKey)
    # A genuine token with a jku is fine: the member is ignored, not trusted.
    assert v.validate(kit.token(header=kit.header(**{member: url}))).subject == "alice"
    assert attacker_server.count(None) == 0


# -- typ: accepted values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typ", "accepted_types", "accepted"),
    [
        pytest.param("at+jwt", None, True, id="at+jwt"),
        pytest.param("AT+JWT", None, True, id="AT+JWT-case-insensitive"),
        pytest.param("application/at+jwt", None, True, id="application/at+jwt"),
        pytest.param("Application/AT+JWT", None, True, id="application/at+jwt-mixed-case"),
        pytest.param("JWT", None, False, id="JWT-refused-by-default"),
        pytest.param("JWT", "at+jwt,JWT", True, id="JWT-when-configured"),
        pytest.param("jwt", "at+jwt,JWT", True, id="jwt-lowercase-when-configured"),
        pytest.param("at+jwt", "JWT", False, id="at+jwt-when-only-JWT-configured"),
    ],
)
def test_typ_policy(kit: Kit, make_validator: Callable[..., TokenValidator], typ: str, accepted_types: str | None,
                    accepted: bool) -> None:
    v = make_validator(**({"ACCEPTED_TYPES": accepted_types} if accepted_types else {}))
    raw = kit.token(header=kit.header(typ=typ))
    if accepted:
        assert v.validate(raw).subject == "alice"
    else:
        assert_refused(v, raw, InvalidType)


# -- time edges with a fixed clock --------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "offset", "leeway", "expected"),
    [
        pytest.param("exp", -30, 30, None, id="exp-at-leeway-edge-accepted"),
        pytest.param("exp", -31, 30, ExpiredToken, id="exp-one-past-leeway"),
        pytest.param("exp", 0, 0, None, id="exp-now-no-leeway-accepted"),
        pytest.param("exp", -1, 0, ExpiredToken, id="exp-one-second-ago-no-leeway"),
        pytest.param("nbf", 30, 30, None, id="nbf-at-leeway-edge-accepted"),
        pytest.param("nbf", 31, 30, NotYetValid, id="nbf-one-past-leeway"),
        pytest.param("nbf", 1, 0, NotYetValid, id="nbf-one-second-ahead-no-leeway"),
        pytest.param("iat", 30, 30, None, id="iat-at-leeway-edge-accepted"),
        pytest.param("iat", 31, 30, IssuedInFuture, id="iat-one-past-leeway"),
        pytest.param("iat", 1, 0, IssuedInFuture, id="iat-one-second-ahead-no-leeway"),
        pytest.param("exp", -0.5, 0, ExpiredToken, id="exp-fractional-past"),
        pytest.param("exp", 0.5, 0, None, id="exp-fractional-future"),
    ],
)
def test_time_claims_with_leeway(kit: Kit, make_validator: Callable[..., TokenValidator], claim: str, offset: float,
                                 leeway: int, expected: type[BearerError] | None) -> None:
    v = make_validator(LEEWAY=leeway)
    changes: dict[str, Any] = {claim: kit.now + offset}
    if claim == "exp":
        changes["iat"] = kit.now - 100
    raw = kit.token(payload=kit.claims(**changes))
    if expected is None:
        assert v.validate(raw).subject == "alice"
    else:
        err = assert_refused(v, raw, expected)
        assert getattr(err, "claim", None) == claim


def test_required_claims_can_be_reduced(kit: Kit, make_validator: Callable[..., TokenValidator]) -> None:
    v = make_validator(REQUIRED_CLAIMS="exp,iss,aud")
    assert v.validate(kit.token(payload=kit.claims(sub=None, iat=None))).subject == ""
    assert_refused(make_validator(), kit.token(payload=kit.claims(sub=None)), MissingClaim)


def test_several_trusted_issuers(kit: Kit, make_validator: Callable[..., TokenValidator]) -> None:
    v = make_validator(ISSUER=f"{ISSUER},https://second.test")
    assert v.validate(kit.token(payload=kit.claims(iss="https://second.test"))).issuer == "https://second.test"
    assert_refused(v, kit.token(payload=kit.claims(iss="https://third.test")), InvalidIssuer)


def test_aud_as_a_single_string(kit: Kit, validator: TokenValidator) -> None:
    assert validator.validate(kit.token(payload=kit.claims(aud=AUDIENCE))).audience == (AUDIENCE,)


@pytest.mark.parametrize("before, after", [(b" ", b""), (b"", b"\n"), (b"\t\r\n ", b" ")])
def test_json_with_whitespace_around_it_is_still_json(kit: Kit, validator: TokenValidator, before: bytes,
                                                      after: bytes) -> None:
    # RFC 8259 §2 allows whitespace around a value: the token is still well-formed JSON.
    header = before + json.dumps(kit.header()).encode() + after
    payload = before + json.dumps(kit.claims(sub="bob")).encode() + after
    assert validator.validate(kit.token(header=header, payload=payload)).subject == "bob"


def test_huge_but_finite_numbers_are_ordinary_numbers(kit: Kit, validator: TokenValidator) -> None:
    token = validator.validate(kit.token(payload=kit.claims(exp=10**15, nbf=-(10**15))))
    assert token.expires_at == float(10**15)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_integer_too_large_for_a_float_is_an_invalid_claim(kit: Kit, validator: TokenValidator, claim: str) -> None:
    assert_refused(validator, kit.token(payload=kit.claims(**{claim: 10**400})), InvalidClaim)


# -- deep nesting ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["header", "payload"])
def test_deeply_nested_json_is_malformed_never_a_crash(kit: Kit, make_validator: Callable[..., TokenValidator],
                                                       where: str) -> None:
    # Far beyond any interpreter's recursion limit: RecursionError must become MalformedToken.
    v = make_validator(MAX_TOKEN_BYTES=1_000_000)
    assert_refused(v, _nested(200_000, where)(kit), MalformedToken)


@pytest.mark.parametrize("where", ["header", "payload"])
def test_nesting_that_fits_the_default_size_limit_is_harmless(kit: Kit, validator: TokenValidator, where: str) -> None:
    # Within 8 KiB the depth stays below ~2900: refused as malformed or parsed, nothing else.
    raw = _nested(2500, where)(kit)
    assert len(raw) <= 8192
    try:
        validator.validate(raw)
    except MalformedToken:
        pass


# -- size -------------------------------------------------------------------------------------


def test_oversized_tokens_are_refused_before_parsing(kit: Kit, make_validator: Callable[..., TokenValidator]) -> None:
    v = make_validator(MAX_TOKEN_BYTES=1024)
    big_valid = kit.token(payload=kit.claims(pad="x" * 2000))
    assert_refused(v, big_valid, TokenTooLarge)
    # Garbage that would be MalformedToken at any size is TokenTooLarge: no parsing happened.
    assert_refused(v, "!" * 1025, TokenTooLarge)
    assert_refused(v, "{" * 1025, TokenTooLarge)
    with pytest.raises(TokenTooLarge):
        v.validate(b"\xff" * 1025)
    assert_refused(v, "!" * 1024, MalformedToken)
    # And the same token is fine when the limit allows it.
    assert make_validator(MAX_TOKEN_BYTES=8192).validate(big_valid).subject == "alice"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"\xff.\xfe.\xfd", MalformedToken, id="bytes-not-ascii"),
        pytest.param(None, MalformedToken, id="None"),
        pytest.param(12345, MalformedToken, id="int"),
    ],
)
def test_non_string_input(validator: TokenValidator, raw: Any, expected: type[BearerError]) -> None:
    with pytest.raises(expected):
        validator.validate(raw)


@pytest.mark.parametrize(
    "segment",
    [
        pytest.param(0, id="header"),
        pytest.param(1, id="payload"),
        pytest.param(2, id="signature"),
    ],
)
@pytest.mark.parametrize("char", ["\x80", "é", "\u2028", "\U0001f600"])
def test_non_ascii_in_a_segment_is_malformed(kit: Kit, validator: TokenValidator, segment: int, char: str) -> None:
    parts = kit.token().split(".")
    parts[segment] = parts[segment][:4] + char + parts[segment][4:]
    assert_refused(validator, ".".join(parts), MalformedToken)


def test_bytes_input_is_accepted(kit: Kit, validator: TokenValidator) -> None:
    assert validator.validate(kit.token().encode()).subject == "alice"


def test_static_keys_never_raise_keys_unavailable(kit: Kit, validator: TokenValidator) -> None:
    # Unknown kid with static keys: a token problem (401), not an outage (503).
    with pytest.raises(UnknownKey) as excinfo:
        validator.validate(kit.token(header=kit.header(kid="nope")))
    assert not isinstance(excinfo.value, KeysUnavailable)


def test_the_fast_build_equals_the_constructor_field_for_field(kit: Kit, validator: TokenValidator) -> None:
    """_build skips the dataclass __init__ (a measured 4%); it must never differ from it."""
    import dataclasses

    token = validator.validate(kit.token(payload=kit.claims(scope="a b", client_id="c", jti="j")))
    fields = validator.fields(token.raw, dict(token.claims), {"kid": token.key_id})
    assert {f.name for f in dataclasses.fields(AccessToken)} == set(fields)
    built = AccessToken(**fields)
    for f in dataclasses.fields(AccessToken):
        assert getattr(token, f.name) == getattr(built, f.name), f.name
    assert type(token) is AccessToken and repr(token) == repr(built)


# -- explain ------------------------------------------------------------------------------------


def test_explain_reports_every_check(kit: Kit, validator: TokenValidator) -> None:
    good = validator.explain(kit.token())
    assert all(c.passed for c in good), good
    names = [c.name for c in good]
    # explain() walks the very steps validate() runs, in the same order.
    assert names == [
        "size", "form",
        *(step.name for step in validator.header_steps),
        "signature",
        *(step.name for step in validator.claim_steps),
    ]
    assert names[2:6] == ["critical headers", "algorithm", "type", "key id"]
    assert validator._claim_checks == tuple(step.check for step in validator.claim_steps)
    bad = validator.explain(kit.token(key=kit.other))
    signature = next(c for c in bad if c.name == "signature")
    assert signature.passed is False
    raw = kit.token(payload=kit.claims(exp=kit.now - 1000, iat=kit.now - 2000))
    expired = {c.name: c.passed for c in validator.explain(raw)}
    assert expired["signature"] is True and expired["expiry"] is False
    for check in validator.explain(raw):
        assert raw.split(".")[2] not in check.detail


def test_explain_does_not_check_the_signature_of_a_foreign_issuer(kit: Kit, validator: TokenValidator) -> None:
    raw = kit.token(header=kit.header(kid="theirs"), payload=kit.claims(iss="https://evil.test"), key=kit.other)
    checks = {c.name: c for c in validator.explain(raw)}
    assert checks["signature"].passed is None and "not a trusted issuer" in checks["signature"].detail
    assert checks["issuer"].passed is False and "'https://evil.test'" in checks["issuer"].detail
    assert checks["claims"].passed is None and "unverified" in checks["claims"].detail
    # Our own issuer with a foreign key: the signature is checked, and fails.
    ours = {c.name: c for c in validator.explain(kit.token(header=kit.header(kid="theirs"), key=kit.other))}
    assert ours["signature"].passed is False and ours["issuer"].passed is True
