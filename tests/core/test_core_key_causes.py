"""Why keys cannot be had, said to the operator: the WARNING at start-up, its throttling, the
INFO on recovery, ``KeysUnavailable.cause``, and a 503 body that says none of it.

Every cause comes from a real exchange on loopback: a :class:`JWKSServer` (wrong issuer in its
discovery document, HTTP errors, bad bodies, a server that accepts and never answers) or a
port that refuses connections. A port that refuses is a socket bound and never listening, held
for the whole test, so no other process can take it. Time is driven with the key source's
clock (``RemoteKeySource(clock=…)``); nothing here sleeps or measures time.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from _support import AUDIENCE, ISSUER, FakeClock, JWKSServer

from token_middleware.core.errors import KeysUnavailable
from token_middleware.core.issuer import SigningKey, TokenIssuer
from token_middleware.core.keys import RemoteKeySource
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator
from token_middleware.wsgi import TokenMiddleware

LOGGER = "token_middleware.keys"
COLD = "cannot get the token signing keys, requests with a token get 503: "
MISMATCH_FIX = ": set ISSUER to exactly the issuer the document names"


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening, held until the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def discovery_url(base: str) -> str:
    return base + "/.well-known/openid-configuration"


# Each case: (settings for the server and the refusing port, the cause the operator must read).
Case = Callable[[JWKSServer, int], "tuple[dict[str, Any], str]"]


def _trailing_slash_in_issuer(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    return {"ISSUER": server.url + "/"}, (
        f"discovery document at {discovery_url(server.url)} names issuer {server.url!r} but ISSUER is "
        f"'{server.url}/' (they differ only by a trailing slash){MISMATCH_FIX}"
    )


def _trailing_slash_in_document(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    server.discovery_issuer = server.url + "/"
    return {"ISSUER": server.url}, (
        f"discovery document at {discovery_url(server.url)} names issuer '{server.url}/' but ISSUER is "
        f"{server.url!r} (they differ only by a trailing slash){MISMATCH_FIX}"
    )


def _localhost_vs_loopback(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    # The issuer calls itself localhost; the service was configured with 127.0.0.1.
    server.discovery_issuer = f"http://localhost:{server.port}"
    return {"ISSUER": server.url}, (
        f"discovery document at {discovery_url(server.url)} names issuer 'http://localhost:{server.port}' "
        f"but ISSUER is {server.url!r}{MISMATCH_FIX}"
    )


def _refused_jwks(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    url = f"http://127.0.0.1:{port}/jwks.json"
    return {"JWKS_URL": url}, f"connection refused by 127.0.0.1:{port} fetching {url}"


def _refused_discovery(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    base = f"http://127.0.0.1:{port}"
    return {"ISSUER": base}, f"connection refused by 127.0.0.1:{port} fetching {discovery_url(base)}"


def _timeout(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    server.mode = "hang"  # accepts the request and never answers
    return {"JWKS_URL": server.jwks_url, "HTTP_TIMEOUT": 0.2}, f"timed out after 0.2 s fetching {server.jwks_url}"


def _http_500(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    server.mode = "500"
    return {"JWKS_URL": server.jwks_url}, f"HTTP 500 from {server.jwks_url}"


def _http_404(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    return {"JWKS_URL": server.url + "/keys"}, f"HTTP 404 from {server.url}/keys"


def _no_discovery_document(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    base = server.url + "/tenant-a"
    return {"ISSUER": base}, (
        f"HTTP 404 from {discovery_url(base)}: is ISSUER right? "
        "Set JWKS_URL if the issuer publishes no discovery document"
    )


def _invalid_json(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    server.mode = "garbage"
    return {"JWKS_URL": server.jwks_url}, f"the response from {server.jwks_url} is not JSON"


def _html_login_page(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    server.mode = "html"
    return {"JWKS_URL": server.jwks_url}, f"the response from {server.jwks_url} is not JSON (Content-Type 'text/html')"


def _empty_key_set(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    server.mode = "empty"
    return {"JWKS_URL": server.jwks_url}, (
        f"the JWKS at {server.jwks_url} has no usable key for algorithms RS256, ES256 (it lists no keys)"
    )


def _no_key_for_the_algorithms(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    server.rotate([SigningKey.generate("RS256", kid="rsa-only")])
    return {"JWKS_URL": server.jwks_url, "ALGORITHMS": "ES256"}, (
        f"the JWKS at {server.jwks_url} has no usable key for algorithms ES256 "
        "(it lists 1 key: RSA RS256): check ALGORITHMS"
    )


def _too_large(server: JWKSServer, port: int) -> tuple[dict[str, Any], str]:
    server.mode = "huge"
    return {"JWKS_URL": server.jwks_url}, f"the response from {server.jwks_url} is larger than 512 KiB"


CASES: dict[str, Case] = {
    "trailing-slash-in-ISSUER": _trailing_slash_in_issuer,
    "trailing-slash-in-the-document": _trailing_slash_in_document,
    "localhost-vs-127.0.0.1": _localhost_vs_loopback,
    "connection-refused-jwks": _refused_jwks,
    "connection-refused-discovery": _refused_discovery,
    "timeout": _timeout,
    "http-500": _http_500,
    "http-404-jwks": _http_404,
    "http-404-discovery": _no_discovery_document,
    "invalid-json": _invalid_json,
    "html-login-page": _html_login_page,
    "empty-key-set": _empty_key_set,
    "no-key-for-ALGORITHMS": _no_key_for_the_algorithms,
    "too-large": _too_large,
}


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def es256_token(key: SigningKey, clock: FakeClock, settings: Settings) -> str:
    """A token the service would accept once it has keys: from its own ISSUER, for its audience."""
    return TokenIssuer(settings.issuers[0], key, clock=clock).mint(sub="alice", audience=AUDIENCE)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_cause_is_logged_at_start_up_and_carried_by_keys_unavailable(
    case: Case, ec_key: SigningKey, clock: FakeClock, jwks_server: JWKSServer, refusing_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    overrides, cause = case(jwks_server, refusing_port)
    settings = Settings.from_mapping({"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, **overrides})
    validator = TokenValidator(settings, clock=clock)
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    validator.prefetch(background=False)  # what the adapters do at start-up
    assert warnings(caplog) == [COLD + cause]

    token = es256_token(ec_key, clock, settings)
    with pytest.raises(KeysUnavailable) as excinfo:
        validator.validate(token)
    err = excinfo.value
    assert err.cause == cause
    assert err.description == KeysUnavailable.default_description
    assert cause not in json.dumps(err.to_dict()) and cause not in repr(err.headers("r"))
    assert warnings(caplog) == [COLD + cause], "the request did not log the same cause again"
    assert token not in caplog.text


# -- throttling and recovery, on the key source's clock --------------------------------------


def test_one_warning_per_cause_per_interval_a_new_cause_at_once_and_info_on_recovery(
    jwks_server: JWKSServer, caplog: pytest.LogCaptureFixture,
) -> None:
    mono = FakeClock(1000.0)
    source = RemoteKeySource(algorithms=("ES256",), jwks_url=jwks_server.jwks_url, min_refresh_seconds=30,
                             cache_seconds=300, clock=mono)
    caplog.set_level(logging.INFO, logger=LOGGER)
    http_500 = f"HTTP 500 from {jwks_server.jwks_url}"
    jwks_server.mode = "500"

    source.prefetch()
    assert warnings(caplog) == [COLD + http_500]
    for _ in range(20):  # a burst of requests within Retry-After: no fetch, no log line
        with pytest.raises(KeysUnavailable):
            source.find("ec-1", "ES256")
    assert source.fetch_count == 1

    mono.advance(source.retry_after)  # the next request fetches again and fails the same way
    with pytest.raises(KeysUnavailable) as excinfo:
        source.find("ec-1", "ES256")
    assert source.fetch_count == 2 and excinfo.value.cause == http_500
    assert len(warnings(caplog)) == 1, "the same cause within JWKS_MIN_REFRESH_SECONDS is not repeated"

    mono.advance(30)
    with pytest.raises(KeysUnavailable):
        source.find("ec-1", "ES256")
    assert source.fetch_count == 3
    assert warnings(caplog)[1:] == [
        f"cannot get the token signing keys (3 failed fetches in a row), requests with a token get 503: {http_500}"
    ]

    jwks_server.mode = "garbage"  # a different cause is logged at once
    mono.advance(source.retry_after)
    with pytest.raises(KeysUnavailable) as excinfo:
        source.find("ec-1", "ES256")
    not_json = f"the response from {jwks_server.jwks_url} is not JSON"
    assert excinfo.value.cause == not_json == source.last_error
    assert warnings(caplog)[2:] == [
        f"cannot get the token signing keys (4 failed fetches in a row), requests with a token get 503: {not_json}"
    ]

    jwks_server.mode = "ok"
    mono.advance(source.retry_after)
    caplog.clear()
    assert source.find("ec-1", "ES256")
    assert source.last_error is None
    infos = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
    assert infos == [f"token signing keys available again from {jwks_server.jwks_url} after 4 failed fetch(es): "
                     "kids=['ec-1']"]
    assert warnings(caplog) == []

    # With keys cached, a failed refresh says the last good set is kept, and is logged afresh.
    jwks_server.mode = "500"
    mono.advance(301)
    assert source.find("ec-1", "ES256")
    assert warnings(caplog) == [f"cannot refresh the token signing keys, keeping the last good key set: {http_500}"]
    assert source.last_error == http_500


def test_a_first_success_logs_the_key_set_not_a_recovery(jwks_server: JWKSServer,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    source = RemoteKeySource(algorithms=("ES256",), jwks_url=jwks_server.jwks_url, clock=FakeClock())
    caplog.set_level(logging.INFO, logger=LOGGER)

    source.prefetch()

    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == ["key set loaded: kids=['ec-1']"]
    assert source.last_error is None


def test_a_hostile_discovery_document_cannot_forge_log_lines(jwks_server: JWKSServer,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    jwks_server.discovery_issuer = "http://x\nCRITICAL forged line " + "A" * 500
    source = RemoteKeySource(algorithms=("ES256",), issuer=jwks_server.url, clock=FakeClock())
    caplog.set_level(logging.WARNING, logger=LOGGER)

    source.prefetch()

    [line] = warnings(caplog)
    assert "\n" not in line and "AAAA..." in line and len(line) < 400
    assert source.last_error is not None and "\\nCRITICAL" in source.last_error


# -- on the wire: the 503 tells clients nothing of the cause ----------------------------------


def test_the_503_response_carries_no_cause(ec_key: SigningKey, clock: FakeClock, jwks_server: JWKSServer,
                                           caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_mapping({"ISSUER": jwks_server.url + "/", "AUDIENCE": AUDIENCE})
    validator = TokenValidator(settings, clock=clock)
    validator.prefetch(background=False)
    [source] = validator.key_sources
    assert isinstance(source, RemoteKeySource) and source.last_error is not None

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise AssertionError("never reached without keys")

    environ: dict[str, Any] = {"HTTP_AUTHORIZATION": "Bearer " + es256_token(ec_key, clock, settings)}
    setup_testing_defaults(environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        captured.update(status=status, headers=headers)
        return lambda data: None

    body = b"".join(TokenMiddleware(app, validator=validator, prefetch=False)(environ, start_response))

    assert captured["status"].startswith("503")
    headers = dict(captured["headers"])
    assert headers["Retry-After"].isdigit()
    assert json.loads(body)["error_description"] == KeysUnavailable.default_description
    everything = body.decode() + repr(captured["headers"])
    for secret in (source.last_error, "discovery", "ISSUER", jwks_server.url):
        assert secret not in everything
