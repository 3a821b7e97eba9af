"""No token in clear through a proxy: a plain-http call that a proxy would carry gets none.

Against a real recording forward proxy and real echo servers on loopback: with ``HTTP_PROXY``
(or ``http_proxy``, ``ALL_PROXY``) set, or a proxy set on the session or client, the proxy
sees no ``Authorization`` and a WARNING names the host and the proxy's host (never the token
or the proxy's credentials); with ``NO_PROXY`` covering the host, the call goes direct and
carries the token. ``https`` through a proxy is a CONNECT tunnel the proxy cannot read: the
decision for it is tested without a TLS server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
import requests

from _clients_support import CLIENTS, Caller

from token_middleware.core.context import bind_token, reset_token
from token_middleware.core.forwarding import (
    ForwardTo,
    HostAllowlist,
    authorization_for,
    environment_has_proxies,
    environment_proxy,
    proxy_display,
)
from token_middleware.core.settings import Settings
from token_middleware.core.token import AccessToken
from token_middleware.httpx_auth import PropagateTokenAuth as HttpxAuth
from token_middleware.httpx_auth import client_proxy
from token_middleware.instrument import instrument
from token_middleware.requests_auth import PropagateTokenAuth as RequestsAuth
from token_middleware.requests_auth import propagating_session

if TYPE_CHECKING:
    from conftest import Echo, MintToken, Proxy

pytestmark = pytest.mark.usefixtures("clean_environment")

LOGGER = "token_middleware.forwarding"


@pytest.fixture
def alice(mint_token: MintToken, service_settings: Settings, echo: Echo) -> Iterator[AccessToken]:
    """Alice's token, current, bound with settings whose FORWARD_TO lists the echo server."""
    token = mint_token("alice")
    settings = Settings.from_mapping({**service_settings.as_mapping(), "FORWARD_TO": echo.netloc})
    handle = bind_token(token, settings)
    try:
        yield token
    finally:
        reset_token(handle)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def assert_refused_because_of(proxy: Proxy, echo: Echo, alice: AccessToken, caplog: pytest.LogCaptureFixture) -> None:
    """The call went through ``proxy`` without a token, and the WARNING says why."""
    assert proxy.seen == [(f"GET http://127.0.0.1:{echo.port}/echo HTTP/1.1", None)]
    [warning] = warnings_of(caplog)
    assert f"token not forwarded to 127.0.0.1:{echo.port}" in warning
    assert f"through the proxy {proxy.netloc}" in warning
    assert alice.raw not in caplog.text
    assert "proxy-secret" not in caplog.text and "proxy-user" not in caplog.text


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
@pytest.mark.parametrize("client", CLIENTS)
def test_no_token_to_an_environment_proxy(
    client: str, variable: str, make_caller: Callable[[str, ForwardTo], Caller], echo: Echo,
    proxy: Proxy, alice: AccessToken, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monkeypatch.setenv(variable, proxy.url)
    assert make_caller(client, None)(echo.url()) is None  # the proxy's answer: it saw none
    assert_refused_because_of(proxy, echo, alice, caplog)


@pytest.mark.parametrize("client", CLIENTS)
def test_no_proxy_covering_the_host_goes_direct_with_the_token(
    client: str, make_caller: Callable[[str, ForwardTo], Caller], echo: Echo, proxy: Proxy,
    alice: AccessToken, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "example.invalid,127.0.0.1")
    assert make_caller(client, None)(echo.url()) == f"Bearer {alice.raw}"
    assert proxy.seen == []
    assert warnings_of(caplog) == []


def _session_proxies(url: str, proxy_url: str) -> requests.Response:
    with propagating_session() as session:
        session.proxies = {"http": proxy_url}
        return session.get(url, timeout=10)


def _call_proxies(url: str, proxy_url: str) -> requests.Response:
    with propagating_session() as session:
        return session.get(url, proxies={"http": proxy_url}, timeout=10)


def _instrumented_requests_call_proxies(url: str, proxy_url: str) -> requests.Response:
    instrumentor = instrument()
    try:
        return requests.get(url, proxies={"http": proxy_url}, timeout=10)
    finally:
        instrumentor.uninstrument()


def _instrumented_httpx_client_proxy(url: str, proxy_url: str) -> httpx.Response:
    instrumentor = instrument()
    try:
        with httpx.Client(proxy=proxy_url, timeout=10) as client:
            return client.get(url)
    finally:
        instrumentor.uninstrument()


def _instrumented_httpx_mounted_proxy(url: str, proxy_url: str) -> httpx.Response:
    instrumentor = instrument()
    try:
        mounts = {"http://127.0.0.1": httpx.HTTPTransport(proxy=proxy_url)}
        with httpx.Client(mounts=mounts, timeout=10) as client:
            return client.get(url)
    finally:
        instrumentor.uninstrument()


EXPLICIT: list[tuple[str, Callable[[str, str], requests.Response | httpx.Response]]] = [
    ("session.proxies", _session_proxies),
    ("proxies=-on-a-session-call", _call_proxies),
    ("instrumented-requests-proxies=", _instrumented_requests_call_proxies),
    ("instrumented-httpx-Client(proxy=)", _instrumented_httpx_client_proxy),
    ("instrumented-httpx-mounts", _instrumented_httpx_mounted_proxy),
]


@pytest.mark.parametrize("call", [c for _, c in EXPLICIT], ids=[i for i, _ in EXPLICIT])
def test_no_token_to_a_proxy_set_on_the_session_or_client(
    call: Callable[[str, str], requests.Response | httpx.Response], echo: Echo, proxy: Proxy,
    alice: AccessToken, caplog: pytest.LogCaptureFixture,
) -> None:
    response = call(echo.url(), proxy.url)
    assert response.json()["authorization"] is None
    assert_refused_because_of(proxy, echo, alice, caplog)


def test_the_same_session_without_its_proxy_carries_the_token(echo: Echo, alice: AccessToken) -> None:
    # Control for the table above: the token is there when nothing proxies the call.
    with propagating_session() as session:
        assert session.get(echo.url(), timeout=10).json()["authorization"] == f"Bearer {alice.raw}"


def test_a_session_that_ignores_the_environment_goes_direct_with_the_token(
    echo: Echo, proxy: Proxy, alice: AccessToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests' own rule decides: with trust_env off, HTTP_PROXY does not apply to the session.
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with propagating_session() as session:
        session.trust_env = False
        assert session.get(echo.url(), timeout=10).json()["authorization"] == f"Bearer {alice.raw}"
    assert proxy.seen == []


def test_instrumented_httpx_follows_the_transport_httpx_picks(
    alice: AccessToken, echo: Echo, monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpx uses no environment proxy for a client given its own transport: neither do we.
    monkeypatch.setenv("HTTP_PROXY", PROXY)
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200)

    instrumentor = instrument()
    try:
        with httpx.Client(transport=httpx.MockTransport(handler)) as client:
            client.get(echo.url())
        with httpx.Client() as client:  # the environment's proxy: refused before any I/O
            assert client_proxy(client, httpx.URL(echo.url())) == "http://proxy.invalid:3128"
    finally:
        instrumentor.uninstrument()
    assert seen == [f"Bearer {alice.raw}"]


# -- https: a CONNECT tunnel keeps the token; the decision, without a TLS server -------------

PROXY = "http://proxy-user:proxy-secret@proxy.invalid:3128"
ALLOWED = HostAllowlist(["customers.invalid"])


def test_the_core_rule_http_refused_https_allowed(alice: AccessToken, caplog: pytest.LogCaptureFixture) -> None:
    asked: list[str] = []

    def through_proxy(url: str) -> str:
        asked.append(url)
        return PROXY

    assert authorization_for("https://customers.invalid/x", {}, ALLOWED, proxy_for=through_proxy) == (
        f"Bearer {alice.raw}"
    )
    assert authorization_for("http://customers.invalid/x", {}, ALLOWED, proxy_for=through_proxy) is None
    assert authorization_for("http://customers.invalid/x", {}, ALLOWED, proxy_for=None) == f"Bearer {alice.raw}"
    assert asked == ["http://customers.invalid/x"]  # https never asks: a tunnel is fine
    assert warnings_of(caplog) == [
        "token not forwarded to customers.invalid:80: this plain-http call would go through the "
        "proxy proxy.invalid:3128, which would read it; call the host over https, or exempt it "
        "from the proxy (NO_PROXY)"
    ]


@pytest.mark.parametrize("variable", ["ALL_PROXY", "HTTPS_PROXY"])
def test_each_client_keeps_the_token_for_https_through_an_environment_proxy(
    variable: str, alice: AccessToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, PROXY)
    monkeypatch.setenv("HTTP_PROXY", PROXY)
    bearer = f"Bearer {alice.raw}"
    auth = RequestsAuth(ALLOWED)
    seen = {}
    for scheme in ("https", "http"):
        url = f"{scheme}://customers.invalid/x"
        prepared = auth(requests.Request("GET", url).prepare())
        with propagating_session(ALLOWED) as session:
            from_session = session.prepare_request(requests.Request("GET", url))
        flow = HttpxAuth(ALLOWED).auth_flow(httpx.Request("GET", url))
        seen[scheme] = (
            prepared.headers.get("Authorization"),
            from_session.headers.get("Authorization"),
            next(flow).headers.get("Authorization"),
        )
    assert seen == {"https": (bearer, bearer, bearer), "http": (None, None, None)}


def test_a_session_or_client_proxy_keeps_the_token_for_https(alice: AccessToken) -> None:
    bearer = f"Bearer {alice.raw}"
    with propagating_session(ALLOWED) as session:
        session.proxies = {"http": PROXY, "https": PROXY}
        assert session.prepare_request(requests.Request("GET", "https://customers.invalid/")).headers[
            "Authorization"
        ] == bearer
        assert "Authorization" not in session.prepare_request(requests.Request("GET", "http://customers.invalid/")).headers
    with httpx.Client(proxy=PROXY) as client:
        for scheme, expected in (("https", bearer), ("http", None)):
            url = httpx.URL(f"{scheme}://customers.invalid/")
            assert client_proxy(client, url) == "http://proxy.invalid:3128"
            assert authorization_for(str(url), {}, ALLOWED, proxy_for=lambda _: client_proxy(client, url)) == expected


# -- the pieces ------------------------------------------------------------------------------


def test_environment_proxy_follows_the_standard_library(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not environment_has_proxies()
    assert environment_proxy("http://customers.invalid/") is None
    monkeypatch.setenv("Http_Proxy", PROXY)  # any case counts, as for urllib
    assert environment_has_proxies()
    assert environment_proxy("http://customers.invalid/") == PROXY
    assert environment_proxy("https://customers.invalid/") is None
    monkeypatch.setenv("no_proxy", "customers.invalid")
    assert environment_proxy("http://customers.invalid:8002/") is None
    assert environment_proxy("http://other.invalid/") == PROXY


@pytest.mark.parametrize(
    ("proxy_url", "shown"),
    [
        (PROXY, "proxy.invalid:3128"),
        ("proxy.invalid:3128", "proxy.invalid:3128"),
        ("socks5://u:p@[::1]:1080", "[::1]:1080"),
        ("http://proxy.invalid", "proxy.invalid"),
        ("http://[bad", "<unreadable proxy URL>"),
    ],
)
def test_proxy_display_shows_the_host_only(proxy_url: str, shown: str) -> None:
    assert proxy_display(proxy_url) == shown
