"""Cold start under load: a request that arrives while a worker's first key fetch is in flight.

Found by the isolation load test (``test_isolation.py``): each service worker fetches the
gateway's keys in the background as it boots, and a request arriving during that fetch used to
get 503 at once instead of waiting for the fetch already under way (17-37 of 1000 chained
requests in the first seconds). Fixed in the core (``RemoteKeySource._refresh`` now waits for an
in-flight fetch); this is the regression test. The key server is a real loopback HTTP server
that takes 0.5 s to answer.

A saturated sync-worker gateway that is also the key server can still starve a cold service
(its key fetch queues behind the requests that wait for it, until ``HTTP_TIMEOUT``): the load
tests therefore warm up first, and deployments should let services start (and fetch keys)
before sending them traffic.
"""

from __future__ import annotations

import json
import threading
import time

from reliability_stack import Received, Recorder

from token_middleware.core.issuer import SigningKey, jwks_document
from token_middleware.core.keys import RemoteKeySource

SLOW = 0.5


def test_a_request_during_the_first_key_fetch_waits_for_it() -> None:
    key = SigningKey.generate("ES256")
    body = json.dumps(jwks_document([key])).encode()

    def slow_jwks(received: Received) -> tuple[int, list[tuple[str, str]], bytes]:
        time.sleep(SLOW)
        return 200, [("Content-Type", "application/json")], body

    with Recorder(slow_jwks) as server:
        source = RemoteKeySource(algorithms=["ES256"], jwks_url=f"{server.url}/jwks.json",
                                 min_refresh_seconds=30, timeout=5)
        prefetch = threading.Thread(target=source.prefetch)
        prefetch.start()
        deadline = time.monotonic() + 5
        while not server.snapshot() and time.monotonic() < deadline:
            time.sleep(0.01)  # wait until the first fetch is really in flight
        try:
            found = source.find(key.kid, "ES256")
        finally:
            prefetch.join()

    assert found
    assert source.fetch_count == 1
