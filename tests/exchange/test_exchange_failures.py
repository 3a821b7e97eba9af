"""A failed exchange raises ExchangeFailed out of the call, and nothing reaches the downstream host.

Every way an exchange can fail (each RFC 6749 error the endpoint can answer, an endpoint that
answers nonsense, redirects, cannot be reached or cannot be discovered) runs through every
client. The downstream server records every request it gets: it must see none, so neither the
caller's token nor anything else went out (no fallback).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from token_middleware.core.exchange import ExchangeFailed, ExchangeRefused, ExchangeUnavailable
from token_middleware.core.forwarding import exchanger_for
from token_middleware.core.introspection import basic_credential
from token_middleware.core.issuer import SigningKey, TokenIssuer
from token_middleware.core.settings import Settings
from token_middleware.core.token_endpoint import ACCESS_TOKEN_TYPE
from token_middleware.core.validator import TokenValidator

from _exchange_support import (
    CLIENTS,
    CUSTOMERS,
    ORDERS,
    SECRET,
    RecordingServer,
    bound,
    running,
    service_settings,
)

if TYPE_CHECKING:
    from _endpoint import TokenEndpoint
    from _exchange_support import Caller, Downstream

ISSUED = {"access_token": "x.y.z", "token_type": "Bearer", "issued_token_type": ACCESS_TOKEN_TYPE, "expires_in": 60}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# (id, settings overrides, forced answer (status, body, headers), a function of the downstream
# giving one, or None; the exception; its error code)
Case = tuple[str, Callable[[Any, Any], dict[str, Any]], Any, type[ExchangeFailed], "str | None"]
CASES: list[Case] = [
    ("invalid_client", lambda e, d: {"CLIENT_SECRET": "wrong"}, None, ExchangeRefused, "invalid_client"),
    # the subject token was meant for orders-service, not for the billing client that presents it
    ("invalid_grant", lambda e, d: {"CLIENT_ID": "billing-service", "CLIENT_SECRET": "billing-secret"},
     None, ExchangeRefused, "invalid_grant"),
    ("invalid_target", lambda e, d: {"FORWARD_TO": f"{d.netloc}=payments-service"}, None,
     ExchangeRefused, "invalid_target"),
    ("invalid_scope", lambda e, d: {}, (400, {"error": "invalid_scope"}, None), ExchangeRefused, "invalid_scope"),
    ("invalid_request", lambda e, d: {}, (400, {"error": "invalid_request"}, None), ExchangeRefused,
     "invalid_request"),
    ("unsupported_grant_type", lambda e, d: {}, (400, {"error": "unsupported_grant_type"}, None),
     ExchangeRefused, "unsupported_grant_type"),
    ("server-error-500", lambda e, d: {}, (500, {"error": "server_error"}, None), ExchangeUnavailable, None),
    ("not-json", lambda e, d: {}, (200, b"<html>hello</html>", None), ExchangeUnavailable, None),
    ("error-code-not-a-word", lambda e, d: {}, (400, {"error": "\u00e9\"x"}, None), ExchangeUnavailable, None),
    ("no-token-type", lambda e, d: {}, (200, {**ISSUED, "token_type": None}, None), ExchangeUnavailable, None),
    ("not-bearer", lambda e, d: {}, (200, {**ISSUED, "token_type": "N_A"}, None), ExchangeUnavailable, None),
    ("header-injection", lambda e, d: {}, (200, {**ISSUED, "access_token": "x\r\nX-Evil: 1"}, None),
     ExchangeUnavailable, None),
    ("refresh-token-type", lambda e, d: {},
     (200, {**ISSUED, "issued_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}, None),
     ExchangeUnavailable, None),
    ("negative-expires-in", lambda e, d: {}, (200, {**ISSUED, "expires_in": -5}, None), ExchangeUnavailable, None),
    ("redirect-to-the-downstream", lambda e, d: {}, lambda d: (302, b"", {"Location": d.url("/stolen")}),
     ExchangeUnavailable, None),
    ("unreachable", lambda e, d: {"TOKEN_ENDPOINT": f"http://127.0.0.1:{_closed_port()}/oauth2/token"},
     None, ExchangeUnavailable, None),
]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(("case", "overrides", "forced", "raised", "error"), CASES, ids=[c[0] for c in CASES])
def test_a_failed_exchange_raises_and_sends_nothing_downstream(
    client: str, case: str, overrides: Callable[[Any, Any], dict[str, Any]], forced: Any,
    raised: type[ExchangeFailed], error: str | None,
    make_caller: Callable[[str], Caller], endpoint: TokenEndpoint, jwks_file: str,
    downstream: Downstream, issuer: TokenIssuer,
) -> None:
    names = {"FORWARD_TO": f"{downstream.netloc}={CUSTOMERS}", **overrides(endpoint, downstream)}
    settings = service_settings(endpoint, jwks_file, **names)
    if forced is not None:
        status, body, headers = forced(downstream) if callable(forced) else forced
        endpoint.answer_with(status, body, headers)
    token = TokenValidator(settings).validate(issuer.mint(sub="alice", audience=[ORDERS], scopes=["customers:read"]))
    call = make_caller(client)
    with bound(token, settings), pytest.raises(raised) as info:
        call(downstream.url())
    assert info.value.error == error
    assert info.value.audience == names["FORWARD_TO"].rpartition("=")[2]
    assert downstream.seen == []  # nothing at all, and never the caller's own token


def test_a_discovery_document_naming_another_issuer_is_refused(
    endpoint: TokenEndpoint, jwks_file: str, downstream: Downstream, signing_key: SigningKey,
    make_caller: Callable[[str], Caller],
) -> None:
    # The same server reached as localhost: its discovery document names 127.0.0.1.
    issuer_url = endpoint.issuer.replace("127.0.0.1", "localhost")
    settings = Settings.from_mapping({
        "ISSUER": issuer_url, "AUDIENCE": ORDERS, "PUBLIC_KEYS": jwks_file, "ALGORITHMS": "ES256",
        "CLIENT_ID": ORDERS, "CLIENT_SECRET": SECRET, "FORWARD_TO": f"{downstream.netloc}={CUSTOMERS}",
    })
    token = TokenValidator(settings).validate(TokenIssuer(issuer_url, signing_key).mint(sub="alice", audience=ORDERS))
    with bound(token, settings), pytest.raises(ExchangeUnavailable) as info:
        make_caller("requests-session")(downstream.url())
    assert info.value.cause is not None and "names issuer" in info.value.cause
    assert endpoint.calls == [] and downstream.seen == []


def test_a_plain_http_token_endpoint_behind_a_proxy_gets_nothing(
    endpoint: TokenEndpoint, jwks_file: str, downstream: Downstream, mint: Any,
    make_caller: Callable[[str], Caller], monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = service_settings(endpoint, jwks_file, FORWARD_TO=f"{downstream.netloc}={CUSTOMERS}",
                                TOKEN_ENDPOINT=endpoint.token_url.replace("127.0.0.1", "localhost"))
    with running(RecordingServer()) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.netloc}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the downstream is reached directly
        with bound(mint("alice"), settings), pytest.raises(ExchangeUnavailable) as info:
            make_caller("requests-session")(downstream.url())
        assert proxy.seen == []
    assert info.value.cause is not None and "proxy" in info.value.cause
    assert endpoint.calls == [] and downstream.seen == []


@pytest.mark.parametrize("where", ["by-hand", "environment"])
def test_no_credential_bound_with_the_token_is_a_failure_not_a_fallback(
    where: str, alice: Any, downstream: Downstream, endpoint: TokenEndpoint, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A token bound by hand, without the settings that hold CLIENT_ID/CLIENT_SECRET.
    import httpx

    from token_middleware.httpx_auth import PropagateTokenAuth

    entry = f"{downstream.netloc}={CUSTOMERS}"
    if where == "environment":
        monkeypatch.setenv("TOKEN_MIDDLEWARE_FORWARD_TO", entry)
    auth = PropagateTokenAuth([entry] if where == "by-hand" else None)
    with bound(alice, None), httpx.Client(auth=auth) as client, pytest.raises(ExchangeUnavailable) as info:
        client.get(downstream.url())
    assert info.value.cause is not None and "CLIENT_ID" in info.value.cause
    assert downstream.seen == [] and endpoint.calls == []


def test_neither_the_secret_nor_a_token_is_ever_logged_or_shown(
    caplog: pytest.LogCaptureFixture, alice: Any, orders: Settings, endpoint: TokenEndpoint,
    downstream: Downstream, make_caller: Callable[[str], Caller],
) -> None:
    caplog.set_level(logging.DEBUG, logger="token_middleware")
    call = make_caller("requests-session")
    issued = call(downstream.url())
    assert issued is not None
    endpoint.answer_with(400, {"error": "invalid_grant", "error_description": "no, thanks"})
    exchanger_for(orders).clear()
    with pytest.raises(ExchangeRefused) as info:
        call(downstream.url())
    secrets = [SECRET, basic_credential(ORDERS, SECRET)[6:], alice.raw, issued[7:]]
    shown = [r.getMessage() for r in caplog.records]
    shown += [str(info.value), repr(info.value), str(info.value.cause), repr(orders), repr(exchanger_for(orders))]
    assert any("invalid_grant" in text for text in shown)
    assert [s for s in secrets if any(s in text for text in shown)] == []
