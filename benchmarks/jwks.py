"""(e) JWKS fetches, counted by the JWKS server itself: steady state, and a flood of unknown kids.

A counting JWKS server runs on 127.0.0.1 (a free port) in this process. One validator (one
"process") with ``JWKS_URL`` pointing at it and the verified-token cache **off**, so that every
validation goes through the key lookup:

* steady state: after one warm-up fetch, many threads validate good RS256/ES256 tokens for a
  while. Target: 0 fetches;
* flood: many threads validate tokens whose ``kid`` is not in the key set (a fresh ``kid`` per
  token), mixed with good tokens. Target: at most one fetch per ``JWKS_MIN_REFRESH_SECONDS``
  (``floor(duration / interval) + 1`` in all), and the good tokens keep validating.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from token_middleware.core.errors import InvalidToken
from token_middleware.core.issuer import SigningKey, TokenIssuer
from token_middleware.core.settings import Settings
from token_middleware.core.validator import TokenValidator

from ._common import AUDIENCE, ISSUER, SCOPES, SUBJECT, Fixture, Options, Row, temp_dir

NAME = "jwks"
THREADS = 16


class CountingJwksServer:
    """Serves one JWKS document at ``/jwks.json`` and counts the GETs (thread-safe)."""

    def __init__(self, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        counter = self
        self._lock = threading.Lock()
        self._count = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path != "/jwks.json":
                    self.send_error(404)
                    return
                counter._increment()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, name="bench-jwks", daemon=True)

    def _increment(self) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def counting_jwks_server(document: dict[str, Any]) -> Iterator[CountingJwksServer]:
    server = CountingJwksServer(document)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _hammer(validator: TokenValidator, good: list[str], bad: list[str], seconds: float) -> tuple[int, int, int]:
    """Run THREADS threads for ``seconds``; returns (good accepted, bad refused, surprises)."""
    totals = [0, 0, 0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(offset: int) -> None:
        accepted = refused = surprises = 0
        i = offset
        while time.monotonic() < deadline:
            if bad:
                try:
                    validator.validate(bad[i % len(bad)])
                    surprises += 1
                except InvalidToken:
                    refused += 1
            if good:
                try:
                    validator.validate(good[i % len(good)])
                    accepted += 1
                except InvalidToken:
                    surprises += 1
            i += 1
        with lock:
            totals[0] += accepted
            totals[1] += refused
            totals[2] += surprises

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return totals[0], totals[1], totals[2]


def run(options: Options) -> list[Row]:
    interval = 1
    steady_seconds = options.duration_or(3.0, 1.5)
    flood_seconds = options.duration_or(5.0, 2.5)
    with temp_dir() as directory:
        fx = Fixture.create(directory)
        good = [fx.rs_token, fx.es_token]
        stranger = SigningKey.generate("ES256")
        strange_issuer = TokenIssuer(ISSUER, stranger, ttl=3600)
        bad = [
            strange_issuer.mint(sub=SUBJECT, audience=AUDIENCE, scopes=SCOPES, headers={"kid": f"unknown-{n}"})
            for n in range(500)
        ]
        with counting_jwks_server(fx.jwks()) as server:
            settings = Settings.from_mapping(
                {"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "JWKS_URL": server.url,
                 "JWKS_MIN_REFRESH_SECONDS": interval}
            )
            validator = TokenValidator(settings, cache_size=0)
            validator.prefetch(background=False)
            for token in good:
                validator.validate(token)
            warm = server.count

            before = server.count
            accepted, _, surprises = _hammer(validator, good, [], steady_seconds)
            steady_fetches = server.count - before

            # Start the flood one full interval after the last fetch, so the first unknown kid
            # may legitimately refetch: the worst case for the bound.
            time.sleep(interval)
            before = server.count
            started = time.monotonic()
            flood_good, flood_bad, flood_surprises = _hammer(validator, good, bad, flood_seconds)
            elapsed = time.monotonic() - started
            flood_fetches = server.count - before

    allowed = math.floor(elapsed / interval) + 1
    per_window = flood_fetches / (elapsed / interval)
    return [
        Row("e", "JWKS fetches in steady state", f"{steady_fetches} fetches",
            target="0 per request", met=steady_fetches == 0 and surprises == 0,
            note=f"{accepted} validations (cache off), {THREADS} threads, after {warm} warm-up fetch(es)",
            data={"fetches": steady_fetches, "validations": accepted, "warm_up_fetches": warm}),
        Row("e", "JWKS fetches, flood of unknown kids", f"{flood_fetches} in {elapsed:.1f} s",
            target=f"≤ {allowed} (1 per {interval} s)", met=flood_fetches <= allowed and flood_surprises == 0,
            note=(f"{per_window:.2f} per interval; {flood_bad} unknown-kid "
                  f"tokens refused, {flood_good} good tokens accepted meanwhile"),
            data={"fetches": flood_fetches, "seconds": elapsed, "allowed": allowed,
                  "refused": flood_bad, "accepted": flood_good, "interval": interval}),
    ]
