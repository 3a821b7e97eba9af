"""A tiny WSGI service for the isolation tests, served by gunicorn as ``reliability_stream_app:app``.

It sits behind :class:`token_middleware.wsgi.TokenMiddleware` (settings from
``TOKEN_MIDDLEWARE_*``) and reports who it thinks is calling, read from the context at the last
possible moment:

- ``GET /stream/chunks?n=6``: a streamed body of ``n`` lines ``"<i> <sub>"``; every line reads
  :func:`get_current_token` again inside the generator, after ``__call__`` has returned, with a
  short sleep between lines so that other requests run in between;
- ``GET /stream/fanout?n=6``: ``n`` tasks on a :class:`ContextThreadPoolExecutor` that the app
  owns and every request shares; each task reports ``get_current_token().subject``.

``anonymous`` stands for no token. What is trusted: only the validated token.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from token_middleware import Settings, TokenMiddleware, get_current_token
from token_middleware.core.concurrency import ContextThreadPoolExecutor

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

MAX_N = 32


def current_subject() -> str:
    token = get_current_token()
    return token.subject if token is not None else "anonymous"


class StreamApp:
    """The app; its thread pool is per instance (per worker process), shared by all requests."""

    def __init__(self, pool_size: int = 4, pause: float = 0.002) -> None:
        self.pool = ContextThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="fanout")
        self.pause = pause

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            n = max(1, min(MAX_N, int(query.get("n", ["6"])[0])))
        except ValueError:
            n = 6
        path = environ.get("PATH_INFO", "")
        if path == "/stream/chunks":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return self.chunks(n)
        if path == "/stream/fanout":
            tasks = [self.pool.submit(self.task) for _ in range(n)]
            body = json.dumps({"sub": current_subject(), "tasks": [t.result(10) for t in tasks]}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    def chunks(self, n: int) -> Iterator[bytes]:
        for i in range(n):
            if i:
                time.sleep(self.pause)
            yield f"{i} {current_subject()}\n".encode()

    def task(self) -> str:
        time.sleep(self.pause)
        return current_subject()


app = TokenMiddleware(StreamApp(), settings=Settings.from_env())
