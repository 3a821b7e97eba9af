"""TokenMiddleware under wsgiref: through ``wsgiref.validate`` (the WSGI lint) and a real server."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator as wsgi_lint

import pytest
from _support import AUDIENCE, Kit

from token_middleware.core.context import get_current_token
from token_middleware.core.settings import Settings
from token_middleware.core.token import AccessToken
from token_middleware.core.validator import TokenValidator
from token_middleware.wsgi import ENVIRON_KEY, TokenMiddleware, get_token


def whoami(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    token = environ[ENVIRON_KEY]
    assert token is get_current_token()
    body = json.dumps({"sub": token.subject if token else None}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Response:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.code = int(status.split()[0])
        self.headers = dict(headers)
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def call(app: Any, *, method: str = "GET", authorization: str | None = None, query: str = "",
         accept: str | None = None) -> Response:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "QUERY_STRING": query}
    setup_testing_defaults(environ)
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    if accept is not None:
        environ["HTTP_ACCEPT"] = accept
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    result = wsgi_lint(app)(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()  # type: ignore[attr-defined]
    return Response(captured["status"], captured["headers"], body)


@pytest.fixture
def middleware(validator: TokenValidator) -> Callable[..., TokenMiddleware]:
    def make(app: Any = whoami, **kwargs: Any) -> TokenMiddleware:
        return TokenMiddleware(app, validator=validator, **kwargs)

    return make


def test_anonymous_passes_through(middleware: Callable[..., TokenMiddleware]) -> None:
    r = call(middleware())
    assert r.code == 200 and r.json() == {"sub": None}


def test_other_scheme_is_anonymous(middleware: Callable[..., TokenMiddleware]) -> None:
    assert call(middleware(), authorization="Basic YWxpY2U6cHc=").json() == {"sub": None}


def test_valid_token(kit: Kit, middleware: Callable[..., TokenMiddleware]) -> None:
    r = call(middleware(), authorization=f"Bearer {kit.token()}")
    assert r.code == 200 and r.json() == {"sub": "alice"}


@pytest.mark.parametrize("authorization", [None, "Basic YWxpY2U6cHc="])
def test_require_token_gives_the_plain_challenge(middleware: Callable[..., TokenMiddleware],
                                                 authorization: str | None) -> None:
    r = call(middleware(require_token=True), authorization=authorization)
    assert r.code == 401
    assert r.headers["WWW-Authenticate"] == f'Bearer realm="{AUDIENCE}"'


def test_require_token_lets_options_through(middleware: Callable[..., TokenMiddleware]) -> None:
    assert call(middleware(require_token=True), method="OPTIONS").code == 200


@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS", "DELETE"])
def test_invalid_token_is_401_json_with_challenge_on_every_method(kit: Kit, middleware: Callable[..., TokenMiddleware],
                                                                 method: str) -> None:
    raw = kit.token(key=kit.other)
    r = call(middleware(), method=method, authorization=f"Bearer {raw}")
    assert r.code == 401
    assert r.headers["WWW-Authenticate"] == (f'Bearer realm="{AUDIENCE}", error="invalid_token", '
                                             'error_description="the signature is not valid"')
    assert r.json() == {"error": "invalid_token", "error_description": "the signature is not valid"}
    assert raw.encode() not in r.body and raw.split(".")[2].encode() not in r.body


def test_html_clients_get_html(kit: Kit, middleware: Callable[..., TokenMiddleware]) -> None:
    r = call(middleware(), authorization=f"Bearer {kit.token(key=kit.other)}", accept="text/html")
    assert r.code == 401 and r.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer a b", "Bearer a,b", "", "Bearer \"x\""])
def test_malformed_header_is_400(middleware: Callable[..., TokenMiddleware], authorization: str) -> None:
    r = call(middleware(), authorization=authorization)
    assert r.code == 400
    assert r.headers["WWW-Authenticate"].startswith(f'Bearer realm="{AUDIENCE}", error="invalid_request"')
    assert r.json()["error"] == "invalid_request"


def test_head_gets_no_body(kit: Kit, middleware: Callable[..., TokenMiddleware]) -> None:
    r = call(middleware(), method="HEAD", authorization=f"Bearer {kit.token(key=kit.other)}")
    assert r.code == 401 and r.body == b""
    assert "WWW-Authenticate" in r.headers


def test_query_token_only_when_allowed(kit: Kit, make_validator: Callable[..., TokenValidator]) -> None:
    raw = kit.token()
    assert call(TokenMiddleware(whoami, validator=make_validator()), query=f"access_token={raw}").json() == {"sub": None}
    allowed = TokenMiddleware(whoami, validator=make_validator(ALLOW_QUERY_TOKEN=True))
    assert call(allowed, query=f"access_token={raw}").json() == {"sub": "alice"}
    assert call(allowed, query=f"access_token={raw}", authorization=f"Bearer {raw}").code == 400


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_keys_unavailable_is_503_with_retry_after(kit: Kit, method: str, clock: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings.from_mapping({"ISSUER": "https://issuer.test", "AUDIENCE": AUDIENCE,
                                      "JWKS_URL": f"http://127.0.0.1:{port}/jwks", "HTTP_TIMEOUT": 0.5,
                                      "JWKS_MIN_REFRESH_SECONDS": 3})
    app = TokenMiddleware(whoami, validator=TokenValidator(settings, clock=clock), prefetch=False)
    r = call(app, method=method, authorization=f"Bearer {kit.token()}")
    assert r.code == 503
    assert 1 <= int(r.headers["Retry-After"]) <= 3
    assert "WWW-Authenticate" not in r.headers
    if method == "HEAD":
        assert r.body == b""
    else:
        assert r.json()["error"] == "temporarily_unavailable"


def test_context_is_set_while_streaming_and_reset_after_close(kit: Kit, middleware: Callable[..., TokenMiddleware]) -> None:
    seen: list[AccessToken | None] = []

    def streaming(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body() -> Iterator[bytes]:
            for _ in range(3):
                seen.append(get_current_token())
                yield b"x"

        return body()

    app = middleware(streaming)
    environ: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {kit.token()}"}
    setup_testing_defaults(environ)
    result = app(environ, lambda status, headers, exc_info=None: None)
    assert get_token(environ) is environ[ENVIRON_KEY]
    assert get_current_token() is environ[ENVIRON_KEY]  # bound until close()
    assert b"".join(result) == b"xxx"
    assert [t.subject if t else None for t in seen] == ["alice"] * 3
    result.close()  # type: ignore[attr-defined]
    assert get_current_token() is None


def test_context_is_reset_when_the_app_raises(kit: Kit, middleware: Callable[..., TokenMiddleware]) -> None:
    def broken(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raise RuntimeError("app bug")

    environ: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {kit.token()}"}
    setup_testing_defaults(environ)
    with pytest.raises(RuntimeError):
        middleware(broken)(environ, lambda *a: None)
    assert get_current_token() is None


def test_inner_close_is_called(kit: Kit, middleware: Callable[..., TokenMiddleware]) -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"ok"

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    assert call(middleware(app), authorization=f"Bearer {kit.token()}").body == b"ok"
    assert closed == [True]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


def test_real_server_streams_with_the_callers_identity(kit: Kit, middleware: Callable[..., TokenMiddleware]) -> None:
    def streaming(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        for i in range(3):
            token = get_current_token()
            yield f"{i}:{token.subject if token else '-'}\n".encode()

    server = make_server("127.0.0.1", 0, middleware(streaming), server_class=WSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
        conn.request("GET", "/", headers={"Authorization": f"Bearer {kit.token()}"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == b"0:alice\n1:alice\n2:alice\n"
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"0:-\n1:-\n2:-\n"
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_revoked_token_is_refused_by_the_middleware_even_from_the_cache(
    kit: Kit, make_settings: Callable[..., Settings], clock: Any,
) -> None:
    revoked: set[str | None] = set()
    validator = TokenValidator(make_settings(), cache_size=16, clock=clock,
                               is_revoked=lambda token: token.jti in revoked)
    mw = TokenMiddleware(whoami, validator=validator, prefetch=False)
    raw = kit.token(payload=kit.claims(jti="j-wsgi"))
    assert call(mw, authorization=f"Bearer {raw}").json() == {"sub": "alice"}
    revoked.add("j-wsgi")
    r = call(mw, authorization=f"Bearer {raw}")
    assert r.code == 401
    assert r.headers["WWW-Authenticate"] == (f'Bearer realm="{AUDIENCE}", error="invalid_token", '
                                             'error_description="the token has been revoked"')
