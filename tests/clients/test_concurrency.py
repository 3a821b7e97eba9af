"""Identity in threads: the pool helpers carry the caller's token; a threaded service never mixes them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests

from token_middleware.core.concurrency import ContextThreadPoolExecutor, with_current_context
from token_middleware.core.context import get_current_token
from token_middleware.requests_auth import propagating_session
from token_middleware.core.settings import Settings
from token_middleware.core.token import AccessToken
from token_middleware.wsgi import TokenMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from conftest import Echo, MintToken


def test_executor_map_carries_the_token(echo: Echo, alice: AccessToken) -> None:
    urls = [echo.url()] * 6
    with propagating_session([echo.netloc]) as session:

        def get(url: str) -> str | None:
            result: str | None = session.get(url, timeout=10).json()["authorization"]
            return result

        with ThreadPoolExecutor(max_workers=3) as plain:  # control: the plain pool loses it
            assert list(plain.map(get, urls)) == [None] * 6
        with ContextThreadPoolExecutor(max_workers=3) as pool:
            assert list(pool.map(get, urls)) == [f"Bearer {alice.raw}"] * 6


def test_executor_submit_uses_the_context_at_submit_time(
    echo: Echo, mint_token: MintToken, as_current: Any
) -> None:
    tokens = [mint_token(f"user-{i}") for i in range(8)]
    with propagating_session([echo.netloc]) as session, ContextThreadPoolExecutor(max_workers=3) as pool:
        futures = []
        for token in tokens:
            with as_current(token):
                futures.append(pool.submit(lambda: session.get(echo.url(), timeout=10).json()["authorization"]))
        with as_current(None):
            futures.append(pool.submit(lambda: session.get(echo.url(), timeout=10).json()["authorization"]))
        seen = [f.result() for f in futures]
    assert seen == [f"Bearer {t.raw}" for t in tokens] + [None]


def test_with_current_context_for_threads_and_foreign_pools(alice: AccessToken, as_current: Any) -> None:
    def whoami(_: object = None) -> str | None:
        token = get_current_token()
        return None if token is None else token.subject

    wrapped = with_current_context(whoami)
    with as_current(None):  # the snapshot was taken already; later changes do not matter
        results: list[str | None] = []
        thread = threading.Thread(target=lambda: results.append(wrapped()))
        thread.start()
        thread.join()
        with ThreadPoolExecutor(max_workers=4) as pool:  # concurrent calls of one wrapper
            results.extend(pool.map(wrapped, range(16)))
        with ThreadPoolExecutor(max_workers=1) as pool:
            results.append(pool.submit(whoami).result())  # control
    assert results == ["alice"] * 17 + [None]
    assert wrapped.__name__ == "whoami"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


def chain_app(downstream: str, session: requests.Session, pool: ContextThreadPoolExecutor) -> Any:
    """A service view that calls ``downstream`` twice, from a shared session and a shared pool."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        token = get_current_token()
        assert token is not None

        def call(_: int) -> str | None:
            seen: str | None = session.get(downstream, timeout=10).json()["authorization"]
            return seen

        seen = [call(0), *pool.map(call, range(2))]
        body = json.dumps({"sub": token.subject, "downstream": seen}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


@pytest.fixture
def chain_service(echo: Echo, service_settings: Settings) -> Iterator[str]:
    with propagating_session([echo.netloc]) as session, ContextThreadPoolExecutor(max_workers=4) as pool:
        app = TokenMiddleware(chain_app(echo.url(), session, pool), settings=service_settings, require_token=True)
        server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/chain"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def test_threaded_service_never_mixes_identities(chain_service: str, mint_token: MintToken) -> None:
    users = 12
    rounds = 5
    tokens = [mint_token(f"user-{i}") for i in range(users)]
    start = threading.Barrier(users)
    failures: list[str] = []
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()

    def client(token: AccessToken) -> None:
        start.wait()
        with requests.Session() as http:
            for _ in range(rounds):
                response = http.get(chain_service, headers={"Authorization": f"Bearer {token.raw}"}, timeout=30)
                answer = response.json()
                with lock:
                    answers.append(answer)
                    if answer != {"sub": token.subject, "downstream": [f"Bearer {token.raw}"] * 3}:
                        failures.append(f"{token.subject} got {answer.get('sub')}")

    threads = [threading.Thread(target=client, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(answers) == users * rounds


def test_threaded_service_refuses_a_request_without_token(chain_service: str) -> None:
    response = requests.get(chain_service, timeout=10)
    assert response.status_code == 401
