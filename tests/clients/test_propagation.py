"""requests and httpx carry the current token to allowed hosts only, against real loopback servers.

One table of destinations runs through every client: the requests session and auth object, and
the httpx auth on Client and AsyncClient.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import requests

from token_middleware.httpx_auth import PropagateTokenAuth as HttpxAuth
from token_middleware.requests_auth import PropagateTokenAuth as RequestsAuth
from token_middleware.requests_auth import propagating_session
from token_middleware.core.token import AccessToken

if TYPE_CHECKING:
    from conftest import Echo, MintToken

CLIENTS = ["requests-session", "requests-auth", "httpx-client", "httpx-async"]


def fetch(
    client: str,
    url: str,
    forward_to: Iterable[str] | None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """GET ``url`` with ``client`` (following redirects); the echo server's JSON answer."""
    response: requests.Response | httpx.Response
    if client == "requests-session":
        with propagating_session(forward_to) as session:
            response = session.get(url, headers=headers, timeout=10)
    elif client == "requests-auth":
        response = requests.get(url, headers=headers, auth=RequestsAuth(forward_to), timeout=10)
    elif client == "httpx-client":
        with httpx.Client(auth=HttpxAuth(forward_to), follow_redirects=True, timeout=10) as c:
            response = c.get(url, headers=headers)
    elif client == "httpx-async":

        async def get() -> httpx.Response:
            async with httpx.AsyncClient(auth=HttpxAuth(forward_to), follow_redirects=True, timeout=10) as c:
                return await c.get(url, headers=headers)

        response = asyncio.run(get())  # the task runs in a copy of this context
    else:
        raise AssertionError(client)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    assert answer["path"] == "/echo"
    return answer


# (id, url, allowlist, token expected): url and allowlist built from the two echo servers.
CASES: list[tuple[str, Any, Any, bool]] = [
    ("allowed-host", lambda e, o: e.url(), lambda e, o: [e.netloc], True),
    ("allowed-by-name", lambda e, o: e.url(host="localhost"), lambda e, o: [f"LocalHost:{e.port}"], True),
    ("other-host-same-port", lambda e, o: e.url(host="localhost"), lambda e, o: [e.netloc], False),
    ("other-port", lambda e, o: o.url(), lambda e, o: [e.netloc], False),
    ("entry-without-port-is-default-port", lambda e, o: e.url(), lambda e, o: ["127.0.0.1"], False),
    ("empty-allowlist", lambda e, o: e.url(), lambda e, o: [], False),
    ("same-host-redirect", lambda e, o: e.redirect(e.url()), lambda e, o: [e.netloc], True),
    (
        "cross-host-redirect",
        lambda e, o: e.redirect(e.url(host="localhost")),
        lambda e, o: [e.netloc],
        False,
    ),
    ("redirect-to-other-port", lambda e, o: e.redirect(o.url()), lambda e, o: [e.netloc], False),
    (
        "redirect-to-other-allowed-host",
        lambda e, o: e.redirect(o.url(host="localhost")),
        lambda e, o: [e.netloc, f"localhost:{o.port}"],
        False,
    ),
]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(("url", "allow", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_destinations(
    client: str,
    url: Callable[[Echo, Echo], str],
    allow: Callable[[Echo, Echo], list[str]],
    expected: bool,
    echo: Echo,
    other_echo: Echo,
    alice: AccessToken,
) -> None:
    answer = fetch(client, url(echo, other_echo), allow(echo, other_echo))
    assert answer["authorization"] == (f"Bearer {alice.raw}" if expected else None)


@pytest.mark.parametrize("client", CLIENTS)
def test_no_current_token_sends_nothing(client: str, echo: Echo) -> None:
    assert fetch(client, echo.url(), [echo.netloc])["authorization"] is None


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("name", ["Authorization", "authorization"])
def test_explicit_header_wins(client: str, name: str, echo: Echo, alice: AccessToken) -> None:
    answer = fetch(client, echo.url(), [echo.netloc], headers={name: "Basic dXNlcjpwdw=="})
    assert answer["authorization"] == "Basic dXNlcjpwdw=="


def test_requests_auth_argument_wins_over_the_session(echo: Echo, alice: AccessToken) -> None:
    with propagating_session([echo.netloc]) as session:
        answer = session.get(echo.url(), auth=("user", "pw"), timeout=10).json()
    assert answer["authorization"] == "Basic dXNlcjpwdw=="


def test_httpx_client_auth_argument_wins(echo: Echo, alice: AccessToken) -> None:
    with httpx.Client(auth=HttpxAuth([echo.netloc])) as client:
        answer = client.get(echo.url(), auth=("user", "pw")).json()
    assert answer["authorization"] == "Basic dXNlcjpwdw=="


async def test_async_client_in_a_real_event_loop(echo: Echo, mint_token: MintToken, as_current: Any) -> None:
    bob, carol = mint_token("bob"), mint_token("carol")
    auth = HttpxAuth([echo.netloc])

    async def call_as(token: AccessToken) -> str | None:
        with as_current(token):
            await asyncio.sleep(0)  # let the other task run in between
            async with httpx.AsyncClient(auth=auth) as client:
                result: str | None = (await client.get(echo.url())).json()["authorization"]
                return result

    seen = await asyncio.gather(call_as(bob), call_as(carol))
    assert seen == [f"Bearer {bob.raw}", f"Bearer {carol.raw}"]


def test_token_is_read_at_call_time(echo: Echo, mint_token: MintToken, as_current: Any) -> None:
    bob, carol = mint_token("bob"), mint_token("carol")
    with propagating_session([echo.netloc]) as session, httpx.Client(auth=HttpxAuth([echo.netloc])) as client:
        for token in (bob, carol, None):
            with as_current(token):
                expected = None if token is None else f"Bearer {token.raw}"
                assert session.get(echo.url(), timeout=10).json()["authorization"] == expected
                assert client.get(echo.url()).json()["authorization"] == expected


def test_httpx_request_object_sent_twice_keeps_no_identity(
    echo: Echo, mint_token: MintToken, as_current: Any
) -> None:
    bob, carol = mint_token("bob"), mint_token("carol")
    with httpx.Client(auth=HttpxAuth([echo.netloc])) as client:
        request = client.build_request("GET", echo.url())
        with as_current(bob):
            first = client.send(request).json()["authorization"]
        with as_current(carol):
            second = client.send(request).json()["authorization"]
    assert (first, second) == (f"Bearer {bob.raw}", f"Bearer {carol.raw}")
    assert "Authorization" not in request.headers


def test_forward_to_none_reads_the_environment_at_construction(
    echo: Echo, alice: AccessToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN_MIDDLEWARE_FORWARD_TO", f"example.invalid, {echo.netloc}")
    session = propagating_session()
    auth = HttpxAuth()
    monkeypatch.setenv("TOKEN_MIDDLEWARE_FORWARD_TO", "")
    with session, httpx.Client(auth=auth) as client:
        assert session.get(echo.url(), timeout=10).json()["authorization"] == f"Bearer {alice.raw}"
        assert client.get(echo.url()).json()["authorization"] == f"Bearer {alice.raw}"
    monkeypatch.delenv("TOKEN_MIDDLEWARE_FORWARD_TO")
    with propagating_session() as session:
        assert session.get(echo.url(), timeout=10).json()["authorization"] is None


class _LenientSession(requests.Session):
    """A requests whose own redirect check would keep Authorization on any redirect."""

    def should_strip_auth(self, old_url: str, new_url: str) -> bool:
        return False


def test_session_strips_token_on_redirect_even_when_requests_would_keep_it(
    echo: Echo, alice: AccessToken
) -> None:
    from token_middleware.requests_auth import PropagatingSession

    class Lenient(_LenientSession, PropagatingSession):
        pass

    target = echo.redirect(echo.url(host="localhost"))
    with _LenientSession() as plain:  # without our check, the token would leak
        leaked = plain.get(target, auth=RequestsAuth([echo.netloc]), timeout=10).json()
    assert leaked["authorization"] == f"Bearer {alice.raw}"
    with Lenient([echo.netloc]) as ours:
        assert ours.get(target, timeout=10).json()["authorization"] is None
        # a caller's own credential is left to requests' rules
        kept = ours.get(target, headers={"Authorization": "Basic dXNlcjpwdw=="}, timeout=10).json()
    assert kept["authorization"] == "Basic dXNlcjpwdw=="


def test_only_the_decision_and_host_are_logged(
    echo: Echo, alice: AccessToken, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="token_middleware.forwarding")
    with propagating_session([echo.netloc]) as session:
        session.get(echo.url() + "?access_token=secret-query", timeout=10)
        session.get(echo.url(host="localhost"), timeout=10)
    messages = [r.getMessage() for r in caplog.records if r.name == "token_middleware.forwarding"]
    assert messages == [
        f"token forwarded to 127.0.0.1:{echo.port} (jti={alice.jti})",
        f"token not forwarded to localhost:{echo.port}: not in FORWARD_TO",
    ]
    assert alice.raw not in caplog.text
    assert "secret-query" not in caplog.text
