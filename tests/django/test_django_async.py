"""The middleware's async path (ASGI): a fresh verified-cache hit is accepted on the event loop;
only a cache miss (or an IS_REVOKED hook) pays the ``sync_to_async`` thread hop."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import AsyncClient

from token_middleware.core.context import get_current_token
from token_middleware.testing import bearer, override_django_settings


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The functions the middleware sends to a worker thread, in order."""
    from token_middleware.django_ext import middleware

    calls: list[str] = []
    real = middleware.sync_to_async

    def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(func.__name__)
        return real(func, *args, **kwargs)

    monkeypatch.setattr(middleware, "sync_to_async", counting)
    return calls


@pytest.mark.parametrize("path", ["/async", "/token"])  # an async view, and a sync one under ASGI
async def test_one_token_pays_one_hop(make_token: Any, hops: list[str], path: str) -> None:
    token = make_token(sub="hana", scopes=["customers:read"])
    client = AsyncClient()
    for _ in range(5):
        response = await client.get(path, headers=bearer(token))
        assert response.status_code == 200
        assert response.json()["context_sub"] == "hana"
        assert get_current_token() is None  # reset after each response
    assert hops == ["authenticate"]


async def test_each_new_token_pays_one_hop(make_token: Any, hops: list[str]) -> None:
    client = AsyncClient()
    tokens = [make_token(sub=f"user-{i}", scopes=["customers:read"]) for i in range(3)]
    for token in tokens + tokens:
        assert (await client.get("/async", headers=bearer(token))).status_code == 200
    assert hops == ["authenticate"] * 3


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 200, id="no-credentials"),
        pytest.param({"Authorization": "Basic YWxpY2U6cGFzcw=="}, 200, id="another-scheme"),
        pytest.param({"Authorization": "Bearer a b"}, 400, id="malformed-answered-on-the-loop"),
    ],
)
async def test_requests_without_a_bearer_token_pay_no_hop(hops: list[str], headers: dict[str, str], status: int) -> None:
    response = await AsyncClient().get("/public", headers=headers)
    assert response.status_code == status
    assert hops == []


async def test_invalid_tokens_are_refused_after_their_hop(make_token: Any, hops: list[str]) -> None:
    token = make_token(expired=True)
    for _ in range(2):
        assert (await AsyncClient().get("/public", headers=bearer(token))).status_code == 401
    assert hops == ["authenticate", "authenticate"]  # refusals are not cached


async def test_an_is_revoked_hook_is_asked_in_a_thread_on_every_request(
    token_issuer: Any, make_token: Any, hops: list[str]
) -> None:
    token = make_token(scopes=["customers:read"])
    with override_django_settings(token_issuer, IS_REVOKED="tm_django_project.is_revoked"):
        for _ in range(3):
            assert (await AsyncClient().get("/async", headers=bearer(token))).status_code == 200
    assert hops == ["authenticate"] * 3
