"""The audit log: its fields, its bounds, and a scan of every log record of a run for token material.

The scan mirrors tests/reliability/test_no_leaks.py in process: every logger at DEBUG while the
WSGI middleware, the Flask and Django demo services and a DRF view answer good tokens and refused
ones of every kind, then every record (message, arguments, extra fields, traceback) is searched
for each token, each of its segments and each segment's first 12 characters.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import pytest

from obs_support import call, hello, record_text, token_material
from token_middleware.core.audit import peek, report_refusal
from token_middleware.core.errors import ExpiredToken, InvalidSignature, TokenTooLarge
from token_middleware.core.issuer import SigningKey
from token_middleware.core.observe import bounded, request_id
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator
from token_middleware.testing import LocalIssuer, bearer
from token_middleware.wsgi import TokenMiddleware


@pytest.mark.parametrize(
    ("value", "authorization", "expected"),
    [
        ("7f1c9e2a-1b3c-4d5e-8f90-123456789abc", None, "7f1c9e2a-1b3c-4d5e-8f90-123456789abc"),
        ("gw:42/abc=", None, "gw:42/abc="),
        (None, None, None),
        ("", None, None),
        ("two words", None, None),
        ("line\nbreak", None, None),
        ("x" * 129, None, None),
        ("x" * 128, None, "x" * 128),
        ("eyJhbGciOiJFUzI1NiJ9", "Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig", None),  # a piece of the token
    ],
    ids=["uuid", "punctuated", "absent", "empty", "space", "newline", "too-long", "longest", "token-piece"],
)
def test_request_id(value: str | None, authorization: str | None, expected: str | None) -> None:
    assert request_id(value, authorization) == expected


def test_kid_and_iss_from_an_unverified_token_are_bounded() -> None:
    from token_middleware.testing import sign_exact

    key = SigningKey.generate("ES256")
    token = sign_exact(key, {"alg": "ES256", "typ": "at+jwt", "kid": "k\n" + "x" * 500},
                       {"iss": "https://evil.example/\x1b[31m"})
    kid, iss = peek(token, 8192)
    assert kid is not None and len(kid) == 128 and kid.endswith("…") and "\n" not in kid
    assert iss == "https://evil.example/[31m"
    assert peek(token, 100) == (None, None)  # longer than MAX_TOKEN_BYTES: not opened
    assert peek("a.b", 8192) == (None, None) and peek("!!.??.--", 8192) == (None, None)
    assert bounded(42) is None


def test_the_audit_line_fields(token_issuer: LocalIssuer, logs: Any) -> None:
    validator = TokenValidator(Settings.from_mapping(token_issuer.settings()))
    token = token_issuer.mint(expired=True)
    refusal = report_refusal(validator, ExpiredToken(claim="exp"), adapter="wsgi",
                             authorization=f"Bearer {token}", request_id_header="abc-123")
    [line] = logs.audit()
    assert line.levelno == logging.INFO
    fields = {k: getattr(line, k) for k in ("reason", "status", "kid", "iss", "request_id", "adapter", "sub", "jti")}
    assert fields == {"reason": "expired", "status": 401, "kid": token_issuer.key.kid, "iss": token_issuer.url,
                      "request_id": "abc-123", "adapter": "wsgi", "sub": None, "jti": None}
    assert line.getMessage() == (f"token refused: reason=expired status=401 kid={token_issuer.key.kid!r} "
                                 f"iss={token_issuer.url!r} request_id='abc-123' adapter=wsgi")
    assert refusal.reason == "expired" and refusal.kid == token_issuer.key.kid
    # A token too large is never opened; an unreadable one gives no kid.
    report_refusal(validator, TokenTooLarge(), adapter="wsgi", authorization=f"Bearer {token}")
    report_refusal(validator, InvalidSignature(), adapter="wsgi", authorization="Bearer garbage")
    assert [(r.reason, r.kid) for r in logs.audit()[1:]] == [("too_large", None), ("signature", None)]  # type: ignore[attr-defined]


def test_no_audit_work_when_the_logger_is_off(token_issuer: LocalIssuer, caplog: pytest.LogCaptureFixture) -> None:
    validator = TokenValidator(Settings.from_mapping(token_issuer.settings()))
    with caplog.at_level(logging.WARNING, logger="token_middleware.audit"):
        report_refusal(validator, ExpiredToken(), adapter="wsgi", authorization="Bearer x.y.z")
    assert caplog.records == []


def _refused_tokens(issuer: LocalIssuer, audience: str) -> list[str]:
    good = issuer.mint(sub="alice", audience=audience)
    header, payload, signature = good.split(".")
    return [
        issuer.mint(expired=True, audience=audience),
        issuer.mint(unknown_key=True, audience=audience),
        issuer.mint(audience="somebody-else"),
        issuer.mint(typ="JWT", audience=audience),
        issuer.mint(alg="HS256", audience=audience),
        f"{header}.{payload}.{signature[:-4]}AAAA",
        f"{header}.{payload[:-3]}xyz.{signature}",
        f"{header}.{payload}.{signature}.{signature}.{payload}",          # JWE-shaped
        f"{header}.{payload}{'A' * 9000}.{signature}",                      # too large
    ]


def test_every_log_record_of_a_run_is_free_of_token_material(token_issuer: LocalIssuer, logs: Any) -> None:
    pytest.importorskip("flask")
    pytest.importorskip("django")
    from django.test import Client, override_settings

    import demo_django.settings as demo
    from demo_flask.app import create_app

    used: list[str] = []
    refusals = 0

    def expect(status: int, got: int) -> None:
        nonlocal refusals
        assert got == status
        refusals += status >= 400

    # The plain WSGI middleware.
    validator = TokenValidator(Settings.from_mapping(token_issuer.settings()))
    wsgi = TokenMiddleware(hello, validator=validator, prefetch=False)
    good = token_issuer.mint(scopes=["orders:read"])
    used.append(good)
    expect(200, call(wsgi, bearer(good)))
    for bad in _refused_tokens(token_issuer, "orders-service"):
        used.append(bad)
        expect(401, call(wsgi, {**bearer(bad), "X-Request-ID": bad.split(".")[0][:100]}))
    # The Flask orders service.
    orders = create_app(token_issuer.flask_config()).test_client()
    expect(200, orders.get("/orders/whoami", headers=bearer(good)).status_code)
    expect(403, orders.post("/orders", headers=bearer(good), json={"item": "x", "quantity": 1}).status_code)
    for bad in _refused_tokens(token_issuer, "orders-service"):
        used.append(bad)
        expect(401, orders.get("/orders/whoami", headers=bearer(bad)).status_code)
    expect(400, orders.get("/orders/whoami", headers={"Authorization": f"Bearer {good} {good}"}).status_code)
    # The Django customers service, then DRF.
    reader = token_issuer.mint(scopes=["customers:read"], audience="customers-service")
    used.append(reader)
    config = {**token_issuer.settings(AUDIENCE="customers-service"), "OBSERVERS": demo.TOKEN_MIDDLEWARE["OBSERVERS"]}
    with override_settings(ROOT_URLCONF="demo_django.urls", MIDDLEWARE=demo.MIDDLEWARE, TOKEN_MIDDLEWARE=config):
        client = Client()
        expect(200, client.get("/customers/alice", headers=bearer(reader)).status_code)
        for bad in _refused_tokens(token_issuer, "customers-service"):
            used.append(bad)
            expect(401, client.get("/customers/whoami", headers=bearer(bad)).status_code)
    if importlib.util.find_spec("rest_framework") is not None:
        with override_settings(ROOT_URLCONF="obs_drf_urls", MIDDLEWARE=[], TOKEN_MIDDLEWARE=config):
            client = Client()
            plain = token_issuer.mint(audience="customers-service")
            used.append(plain)
            expect(403, client.get("/drf/customers", headers=bearer(plain)).status_code)
            for bad in _refused_tokens(token_issuer, "customers-service")[:4]:
                used.append(bad)
                expect(401, client.get("/drf/customers", headers=bearer(bad)).status_code)

    assert len(logs.audit()) == refusals  # one line per refusal: the scan below is not vacuous
    needles = {needle for token in used for needle in token_material(token)}
    for record in logs.records:
        text = record_text(record)
        for needle in needles:
            assert needle not in text, f"{record.name} logged token material: {record.getMessage()[:120]}"
        assert "Bearer " not in text
