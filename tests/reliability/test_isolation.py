"""Concurrency isolation: under load, every caller sees only its own identity, everywhere.

Real gunicorn with sync, gthread and gevent workers runs the gateway, the orders (Flask) and
customers (Django) services and a streaming test app. Many distinct users call at once with
their own Basic credentials; every answer must name the caller at every hop. A crossover (any
other name) or a 5xx fails the test; the figures are printed.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from reliability_stack import (
    Call,
    Stack,
    chain_shows_caller,
    fanout_shows_caller,
    gateway_token,
    run_load,
    scaled,
    stream_shows_caller,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHAIN_REQUESTS = scaled(2000, 50_000)
STREAM_REQUESTS = scaled(300, 10_000)
CONCURRENCY = scaled(48, 64)
CHUNKS = 6


def basic_calls(stack: Stack, passwords: dict[str, str], path: str, count: int, seed: int) -> list[Call]:
    """``count`` calls spread over every user, in a shuffled but reproducible order."""
    users = sorted(passwords)
    rng = random.Random(seed)
    calls = [
        Call(user, f"{stack.gateway_url}{path}", auth=(user, passwords[user]))
        for user in (users[i % len(users)] for i in range(count))
    ]
    rng.shuffle(calls)
    return calls


def assert_clean(result: Any) -> None:
    assert result.crossovers == 0, result.examples
    assert result.server_errors == 0, result.examples
    assert result.other_failures == 0, result.examples


def test_chained_requests_never_cross_identities(
    request: pytest.FixtureRequest, stack: Stack, passwords: dict[str, str], report: Any
) -> None:
    calls = basic_calls(stack, passwords, "/orders/chain", CHAIN_REQUESTS, seed=1)

    result = run_load(f"chain gateway->orders->customers [{request.node.callspec.id}]", calls,
                      chain_shows_caller, concurrency=CONCURRENCY)

    report(result)
    assert_clean(result)


def stream_check(call: Call, response: Any) -> bool:
    return len(response.text.splitlines()) == CHUNKS and stream_shows_caller(call, response)


def test_streamed_responses_keep_the_callers_identity(
    request: pytest.FixtureRequest, stack: Stack, passwords: dict[str, str], report: Any
) -> None:
    calls = basic_calls(stack, passwords, f"/stream/chunks?n={CHUNKS}", STREAM_REQUESTS, seed=2)

    result = run_load(f"streamed chunks via gateway [{request.node.callspec.id}]", calls, stream_check,
                      concurrency=CONCURRENCY)

    report(result)
    assert_clean(result)


def test_requests_without_a_token_never_inherit_one(
    request: pytest.FixtureRequest, stack: Stack, passwords: dict[str, str], report: Any
) -> None:
    """Straight to the stream app: token-bearing and anonymous requests interleaved on the same
    workers. A stale context (not reset when a response closes) would show a name to anonymous."""
    users = sorted(passwords)[:10]
    tokens = {u: gateway_token(stack.gateway_url, u, passwords[u], "/stream/chunks") for u in users}
    url = f"{stack.stream_url}/stream/chunks?n={CHUNKS}"
    calls = []
    for i in range(STREAM_REQUESTS):
        if i % 2:
            calls.append(Call("anonymous", url))
        else:
            user = users[i % len(users)]
            calls.append(Call(user, url, headers={"Authorization": f"Bearer {tokens[user]}"}))

    result = run_load(f"direct stream, half anonymous [{request.node.callspec.id}]", calls, stream_check,
                      concurrency=CONCURRENCY)

    report(result)
    assert_clean(result)


def test_thread_pool_fan_out_keeps_the_callers_identity(
    request: pytest.FixtureRequest, stack: Stack, passwords: dict[str, str], report: Any
) -> None:
    calls = basic_calls(stack, passwords, "/stream/fanout?n=6", STREAM_REQUESTS, seed=3)

    result = run_load(f"ContextThreadPoolExecutor fan-out [{request.node.callspec.id}]", calls,
                      fanout_shows_caller, concurrency=CONCURRENCY)

    report(result)
    assert_clean(result)
