"""Each exchange made (not a cache hit) is one ``Exchange`` event for the app's observers, which
feed ``token_middleware_token_exchanges_total{result}``: from sync and async clients alike."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx
import pytest

from token_middleware.core.context import bind_token, reset_token
from token_middleware.core.exchange import ExchangeRefused
from token_middleware.core.observe import Event, Exchange, Watch
from token_middleware.core.settings import Settings
from token_middleware.core.token import AccessToken
from token_middleware.httpx_auth import PropagateTokenAuth
from token_middleware.requests_auth import propagating_session

from _exchange_support import CUSTOMERS, MintFor

if TYPE_CHECKING:
    from _endpoint import TokenEndpoint
    from _exchange_support import Downstream


@contextmanager
def observed(token: AccessToken, settings: Settings) -> Iterator[list[Event]]:
    events: list[Event] = []
    handle = bind_token(token, settings, Watch([events.append]))
    try:
        yield events
    finally:
        reset_token(handle)


def exchanges(events: list[Event]) -> list[tuple[str, str | None, str | None]]:
    return [(e.result, e.audience, e.error_type) for e in events if isinstance(e, Exchange)]


def test_sync_exchanges_are_counted_once(
    mint: MintFor, orders: Settings, downstream: Downstream, endpoint: TokenEndpoint
) -> None:
    with observed(mint("alice"), orders) as events, propagating_session() as session:
        for _ in range(3):
            session.get(downstream.url(), timeout=10)
    assert exchanges(events) == [("ok", CUSTOMERS, None)]


def test_async_exchanges_are_counted_from_the_executor_thread(
    mint: MintFor, orders: Settings, downstream: Downstream
) -> None:
    async def calls() -> None:
        async with httpx.AsyncClient(auth=PropagateTokenAuth(), timeout=10) as client:
            await asyncio.gather(*(client.get(downstream.url()) for _ in range(4)))

    with observed(mint("alice"), orders) as events:
        asyncio.run(calls())
    assert exchanges(events) == [("ok", CUSTOMERS, None)]


def test_a_failed_exchange_is_counted_as_an_error(
    mint: MintFor, orders: Settings, downstream: Downstream, endpoint: TokenEndpoint
) -> None:
    endpoint.answer_with(400, {"error": "invalid_scope"})
    with observed(mint("alice"), orders) as events, propagating_session() as session:
        with pytest.raises(ExchangeRefused):
            session.get(downstream.url(), timeout=10)
    assert exchanges(events) == [("error", CUSTOMERS, "exchange_refused")]
