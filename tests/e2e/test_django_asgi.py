"""Django under a real ASGI server: the test project (``tests/django``) served by uvicorn.

Sync and async views see the token, the context is reset after each response, streamed bodies
keep it, concurrent callers never see each other's identity, and an async view propagates the
caller's token through ``httpx.AsyncClient`` only to ``FORWARD_TO``. uvicorn listens on a free
loopback port, is waited for, and is always stopped; with bad settings it refuses to start.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("django")

from demo_gateway.supervisor import free_port, start_process, wait_until_answers  # noqa: E402
from token_middleware.core.errors import ExpiredToken  # noqa: E402
from token_middleware.testing import LocalIssuer, bearer  # noqa: E402

PROJECT_DIR = Path(__file__).resolve().parent.parent / "django"
REALM = 'Bearer realm="customers-service"'


def project_env(token_middleware: Mapping[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKEN_MIDDLEWARE_", "DJANGO_", "TM_TEST_"))}
    env["TM_TEST_TOKEN_MIDDLEWARE"] = json.dumps(token_middleware)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def uvicorn_argv(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "tm_django_asgi:application", "--app-dir", str(PROJECT_DIR),
        "--host", "127.0.0.1", "--port", str(port), "--lifespan", "off", "--no-access-log",
    ]


@pytest.fixture(scope="module")
def issuer(token_issuer_keys: LocalIssuer) -> LocalIssuer:
    return dataclasses.replace(token_issuer_keys, audience="customers-service")


@pytest.fixture(scope="module")
def server(issuer: LocalIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    settings = issuer.settings(FORWARD_TO=f"127.0.0.1:{port}")
    process = start_process("uvicorn", uvicorn_argv(port), env=project_env(settings),
                            log_dir=tmp_path_factory.mktemp("uvicorn"), cwd=PROJECT_DIR)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_answers(f"{base}/public", process=process)
        yield base
    finally:
        process.stop()
    # uvicorn ends with SIGTERM's status after a graceful shutdown.
    assert process.popen.returncode in (0, -signal.SIGTERM), process.log_tail()
    assert "Finished server process" in process.log_tail()


@pytest.fixture
def http() -> Iterator[Any]:
    with httpx.Client(timeout=10, trust_env=False) as client:
        yield client


CASES = [
    # path, token arguments (None: no token), status, WWW-Authenticate
    ("/token", {"sub": "sync-view"}, 200, None),
    ("/async", {"sub": "async-view", "scopes": ["customers:read"]}, 200, None),
    ("/cbv/mixin", {"sub": "sync-cbv", "scopes": ["customers:read"]}, 200, None),
    ("/cbv/async-mixin", {"sub": "async-cbv", "scopes": ["customers:write"]}, 200, None),
    ("/async", None, 401, REALM),
    ("/async", {"scopes": ["customers:read"], "expired": True}, 401,
     f'{REALM}, error="invalid_token", error_description="{ExpiredToken.default_description}"'),
    ("/async", {"scopes": ["orders:read"]}, 403,
     f'{REALM}, error="insufficient_scope", error_description="required scope: customers:read", '
     'scope="customers:read"'),
]


@pytest.mark.parametrize(("path", "token_args", "status", "www_authenticate"), CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_views_under_uvicorn(server: str, http: Any, issuer: LocalIssuer, path: str,
                             token_args: dict[str, Any] | None, status: int, www_authenticate: str | None) -> None:
    headers = {} if token_args is None else bearer(issuer.mint(**token_args))
    for _ in range(2):  # the second time from the verified-token cache
        response = http.get(f"{server}{path}", headers=headers)
        assert response.status_code == status, response.text
        assert response.headers.get("WWW-Authenticate") == www_authenticate
        if status == 200:
            assert token_args is not None
            assert response.json()["sub"] == token_args["sub"]
            assert response.json()["context_sub"] == token_args["sub"]


@pytest.mark.parametrize("path", ["/stream", "/async-stream"])
def test_streamed_body_keeps_the_token(server: str, http: Any, issuer: LocalIssuer, path: str) -> None:
    response = http.get(f"{server}{path}", headers=bearer(issuer.mint(sub="streamer")))
    assert response.status_code == 200
    assert response.text == "streamer\n" * 3


@pytest.mark.parametrize("path", ["/context", "/async"])
def test_context_is_reset_after_each_response(server: str, http: Any, issuer: LocalIssuer, path: str) -> None:
    token = bearer(issuer.mint(sub="before", scopes=["customers:read"]))
    for _ in range(3):
        seen = http.get(f"{server}{path}", headers=token)
        assert seen.json()["context_sub"] == "before"
        # The middleware listed before TokenMiddleware no longer sees the token.
        assert seen.headers["X-Context-After"] == "-"
        assert http.get(f"{server}/context").json() == {"context_sub": None}


def test_async_view_propagates_through_httpx_async_client(server: str, http: Any, issuer: LocalIssuer) -> None:
    headers = bearer(issuer.mint(sub="chained"))
    allowed = http.get(f"{server}/async-chain", headers=headers).json()
    assert allowed == {"sub": "chained", "context_sub": "chained", "downstream": {"status": 200, "sub": "chained"}}
    # localhost:<port> is the same server, but not in FORWARD_TO: no token goes there.
    port = server.rsplit(":", 1)[1]
    elsewhere = http.get(f"{server}/async-chain", params={"host": f"localhost:{port}"}, headers=headers).json()
    assert elsewhere["downstream"] == {"status": 200, "sub": None}


def test_concurrent_callers_keep_their_own_identity(server: str, issuer: LocalIssuer) -> None:
    subs = [f"caller-{i}" for i in range(6)]
    tokens = {sub: issuer.mint(sub=sub, scopes=["customers:read"]) for sub in subs}
    jobs = [(sub, path) for sub in subs for path in ("/async", "/token", "/async-chain")] * 3

    def call(job: tuple[str, str]) -> tuple[str, dict[str, Any]]:
        sub, path = job
        with httpx.Client(timeout=20, trust_env=False) as client:
            response = client.get(f"{server}{path}", headers=bearer(tokens[sub]))
        assert response.status_code == 200, response.text
        return sub, response.json()

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(call, jobs))
    assert len(results) == len(jobs)
    for sub, body in results:
        assert body["sub"] == body["context_sub"] == sub
        if "downstream" in body:
            assert body["downstream"]["sub"] == sub


def test_uvicorn_refuses_to_start_with_bad_settings() -> None:
    result = subprocess.run(
        uvicorn_argv(free_port()), env=project_env({"AUDIENCE": "svc"}), cwd=PROJECT_DIR,
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "token_middleware: ISSUER is required" in result.stderr
    assert '-- fix settings.TOKEN_MIDDLEWARE["ISSUER"]' in result.stderr
