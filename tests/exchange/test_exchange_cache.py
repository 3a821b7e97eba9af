"""The exchange cache: one exchange per (token, audience), shared by concurrent callers, keyed on
what the issuer signed (a second spelling of an ECDSA signature finds the same entry), bounded,
and never kept past the issued token's or the subject token's expiry.

Concurrency tests never sleep to "let threads start": the endpoint holds its answer until every
other caller has joined the one in-flight exchange (``TokenExchanger.joined``), or until every
caller's own request has arrived, which is what a broken single-flight would do, and the test
then fails on the count.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from token_middleware.core import b64url
from token_middleware.core.concurrency import ContextThreadPoolExecutor
from token_middleware.core.exchange import ExchangeRefused, ExchangeUnavailable, TokenExchanger
from token_middleware.core.forwarding import exchanger_for
from token_middleware.core.settings import Settings
from token_middleware.core.token import AccessToken
from token_middleware.core.token_endpoint import ACCESS_TOKEN_TYPE
from token_middleware.core.validator import TokenValidator
from token_middleware.httpx_auth import PropagateTokenAuth
from token_middleware.requests_auth import propagating_session

from _exchange_support import CUSTOMERS, ORDERS, SECRET, bound, service_settings

if TYPE_CHECKING:
    from _endpoint import TokenEndpoint
    from _exchange_support import Downstream, MintFor

N = 8
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition``; the deadline only turns a hang into a failure, it decides nothing."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.002)


def test_concurrent_threads_share_one_exchange(
    alice: AccessToken, orders: Settings, endpoint: TokenEndpoint, downstream: Downstream
) -> None:
    exchanger = exchanger_for(orders)
    with propagating_session() as session, endpoint.hold() as gate, ContextThreadPoolExecutor(N) as pool:
        futures = [pool.submit(lambda: session.get(downstream.url(), timeout=30).json()["authorization"])
                   for _ in range(N)]
        wait_until(lambda: exchanger.joined >= N - 1 or endpoint.arrivals >= N, "the callers")
        gate.set()
        seen = {f.result() for f in futures}
    assert len(endpoint.calls) == 1
    assert exchanger.joined == N - 1
    assert len(seen) == 1 and seen != {f"Bearer {alice.raw}"}
    assert len(downstream.seen) == N


def test_concurrent_tasks_share_one_exchange_without_blocking_the_loop(
    alice: AccessToken, orders: Settings, endpoint: TokenEndpoint, downstream: Downstream
) -> None:
    exchanger = exchanger_for(orders)
    ran_while_held = False

    async def main() -> set[str | None]:
        nonlocal ran_while_held
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(auth=PropagateTokenAuth(), timeout=30) as client:
            calls = [asyncio.ensure_future(client.get(downstream.url())) for _ in range(N)]
            with endpoint.hold() as gate:
                # A blocking exchange would stop the loop here until the endpoint gave up.
                while time.monotonic() < deadline and not (
                    (exchanger.joined >= N - 1 and endpoint.arrivals >= 1) or endpoint.arrivals >= N
                ):
                    await asyncio.sleep(0.002)
                ran_while_held = endpoint.arrivals == 1 and not gate.is_set()
                gate.set()
            return {r.json()["authorization"] for r in await asyncio.gather(*calls)}

    seen = asyncio.run(main())
    assert ran_while_held  # the loop ran while the one exchange was held at the endpoint
    assert len(endpoint.calls) == 1
    assert exchanger.joined == N - 1
    assert len(seen) == 1 and None not in seen


def test_threads_and_tasks_together_share_one_exchange(
    alice: AccessToken, orders: Settings, endpoint: TokenEndpoint, downstream: Downstream
) -> None:
    exchanger = exchanger_for(orders)

    async def tasks() -> list[str]:
        async with httpx.AsyncClient(auth=PropagateTokenAuth(), timeout=30) as client:
            answers = await asyncio.gather(*(client.get(downstream.url()) for _ in range(N)))
            return [a.json()["authorization"] for a in answers]

    with propagating_session() as session, endpoint.hold() as gate, ContextThreadPoolExecutor(N + 1) as pool:
        async_side = pool.submit(asyncio.run, tasks())
        sync_side = [pool.submit(lambda: session.get(downstream.url(), timeout=30).json()["authorization"])
                     for _ in range(N)]
        wait_until(lambda: exchanger.joined >= 2 * N - 1 or endpoint.arrivals >= 2 * N, "the callers")
        gate.set()
        seen = {*async_side.result(), *(f.result() for f in sync_side)}
    assert len(endpoint.calls) == 1
    assert len(seen) == 1


def test_a_failure_is_shared_by_the_waiters_and_not_cached(
    mint: MintFor, endpoint: TokenEndpoint, jwks_file: str, downstream: Downstream
) -> None:
    payments = service_settings(endpoint, jwks_file, FORWARD_TO=f"{downstream.netloc}=payments-service")
    exchanger = exchanger_for(payments)
    with bound(mint("alice"), payments), propagating_session() as session, endpoint.hold() as gate, \
            ContextThreadPoolExecutor(N) as pool:
        futures = [pool.submit(session.get, downstream.url(), timeout=30) for _ in range(N)]
        wait_until(lambda: exchanger.joined >= N - 1 or endpoint.arrivals >= N, "the callers")
        gate.set()
        errors = [f.exception() for f in futures]
        assert len(endpoint.calls) == 1
        assert all(isinstance(e, ExchangeRefused) and e.error == "invalid_target" for e in errors)
        assert len({id(e) for e in errors}) == N  # each caller raises its own exception
        with pytest.raises(ExchangeRefused):
            session.get(downstream.url(), timeout=30)
    assert len(endpoint.calls) == 2  # failures are never cached
    assert downstream.seen == []


def malleated(raw: str) -> str:
    """The same ES256 token with its signature's s replaced by n - s: it verifies just as well."""
    head, _, signature = raw.rpartition(".")
    sig = b64url.decode(signature)
    r, s = sig[:32], int.from_bytes(sig[32:], "big")
    return f"{head}.{b64url.encode(r + (P256_ORDER - s).to_bytes(32, 'big'))}"


def test_a_second_spelling_of_the_signature_shares_the_cache_entry(
    alice: AccessToken, orders: Settings, endpoint: TokenEndpoint, downstream: Downstream
) -> None:
    twin = TokenValidator(orders).validate(malleated(alice.raw))  # accepted: ECDSA is malleable
    assert twin.raw != alice.raw and twin.fingerprint == alice.fingerprint
    with propagating_session() as session:
        first = session.get(downstream.url(), timeout=10).json()["authorization"]
        with bound(twin, orders):
            second = session.get(downstream.url(), timeout=10).json()["authorization"]
    assert first == second
    assert len(endpoint.calls) == 1


def test_each_token_and_each_audience_gets_its_own_exchange(
    mint: MintFor, orders: Settings, endpoint: TokenEndpoint
) -> None:
    exchanger = exchanger_for(orders)
    alice, bob, alice_again = mint("alice"), mint("bob"), mint("alice")  # alice_again: a new jti
    with bound(alice, orders):
        pairs = [(alice, CUSTOMERS), (alice, "billing-service"), (bob, CUSTOMERS), (alice_again, CUSTOMERS)]
        issued = [exchanger.exchange(token, audience) for token, audience in pairs]
        again = [exchanger.exchange(token, audience) for token, audience in pairs]
    assert issued == again and len(set(issued)) == 4
    assert [(c.audience, c.subject_fingerprint) for c in endpoint.calls] == [
        (audience, token.fingerprint) for token, audience in pairs
    ]


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def direct(endpoint: TokenEndpoint, clock: Clock, **options: object) -> TokenExchanger:
    return TokenExchanger(client_id=ORDERS, client_secret=SECRET, issuers=[endpoint.issuer],
                          token_endpoint=endpoint.token_url, clock=clock, **options)  # type: ignore[arg-type]


def test_an_entry_is_exchanged_again_shortly_before_the_issued_token_expires(
    mint: MintFor, endpoint: TokenEndpoint
) -> None:
    clock = Clock()
    exchanger = direct(endpoint, clock, refresh_margin=30.0)
    token = mint("alice", ttl=600)  # the endpoint issues 300 s
    first = exchanger.exchange(token, CUSTOMERS)
    clock.now += 300 - 30 - 1
    assert exchanger.exchange(token, CUSTOMERS) == first and len(endpoint.calls) == 1
    clock.now += 2
    assert exchanger.cached(token, CUSTOMERS) is None
    exchanger.exchange(token, CUSTOMERS)
    assert len(endpoint.calls) == 2


@pytest.mark.parametrize("expires_in", [3600, None], ids=["longer-than-subject", "absent"])
def test_an_entry_never_outlives_the_subject_token(
    expires_in: int | None, mint: MintFor, endpoint: TokenEndpoint
) -> None:
    clock = Clock()
    exchanger = direct(endpoint, clock, refresh_margin=10.0)
    token = mint("alice", ttl=100)
    assert token.expires_at is not None
    answer = {"access_token": "issued.by.endpoint", "token_type": "Bearer", "issued_token_type": ACCESS_TOKEN_TYPE}
    endpoint.answer_with(200, answer if expires_in is None else {**answer, "expires_in": expires_in})
    assert exchanger.exchange(token, CUSTOMERS) == "issued.by.endpoint"
    clock.now = token.expires_at - 10 - 1
    assert exchanger.cached(token, CUSTOMERS) == "issued.by.endpoint"
    clock.now = token.expires_at - 10 + 1
    assert exchanger.cached(token, CUSTOMERS) is None


def test_the_cache_is_bounded(mint: MintFor, endpoint: TokenEndpoint) -> None:
    exchanger = direct(endpoint, Clock(), max_entries=2)
    one, two, three = mint("one"), mint("two"), mint("three")
    for token in (one, two, three):
        exchanger.exchange(token, CUSTOMERS)
    assert exchanger.cached(one, CUSTOMERS) is None  # the oldest went first
    assert exchanger.cached(three, CUSTOMERS) is not None
    exchanger.exchange(three, CUSTOMERS)
    assert len(endpoint.calls) == 3
    exchanger.exchange(one, CUSTOMERS)
    assert len(endpoint.calls) == 4


def test_an_unreachable_endpoint_is_not_cached_either(mint: MintFor, endpoint: TokenEndpoint) -> None:
    exchanger = direct(endpoint, Clock())
    token = mint("alice")
    endpoint.answer_with(503, {"error": "temporarily_unavailable"})
    with pytest.raises(ExchangeUnavailable):
        exchanger.exchange(token, CUSTOMERS)
    endpoint.answer_normally()
    assert exchanger.exchange(token, CUSTOMERS)
    assert len(endpoint.calls) == 2


def test_the_cache_hit_touches_no_lock_and_no_network(mint: MintFor, endpoint: TokenEndpoint) -> None:
    exchanger = direct(endpoint, Clock())
    token = mint("alice")
    issued = exchanger.exchange(token, CUSTOMERS)
    lock = threading.Lock()
    exchanger._lock = lock  # type: ignore[assignment]  # a hit must not wait for it
    with lock:
        assert exchanger.exchange(token, CUSTOMERS) == issued
    assert len(endpoint.calls) == 1
