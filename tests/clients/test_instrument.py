"""Opt-in automatic injection: on, calls carry the token with no call-site change; off, they don't."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import requests

from token_middleware.instrument import Instrumentor, active_instrumentor, instrument, uninstrument
from token_middleware.core.token import AccessToken

if TYPE_CHECKING:
    from conftest import Echo

PATCHED = [
    (requests.Session, "prepare_request"),
    (requests.Session, "send"),
    (requests.Session, "rebuild_auth"),
    (httpx.Client, "send"),
    (httpx.AsyncClient, "send"),
]


def originals() -> dict[tuple[type, str], object]:
    return {(cls, name): cls.__dict__.get(name) for cls, name in PATCHED}


@pytest.fixture
def pristine() -> Iterator[dict[tuple[type, str], object]]:
    """The unpatched methods; fails the test if they are not back in place afterwards."""
    assert active_instrumentor() is None
    before = originals()
    yield before
    active = active_instrumentor()
    if active is not None:
        active.uninstrument()
        pytest.fail("test left instrumentation on")
    assert originals() == before


def seen_by_each_client(url: str, **kwargs: Any) -> dict[str, str | None]:
    """What the server received from each client, with no auth configured at the call site."""
    import asyncio

    async def async_get() -> str | None:
        async with httpx.AsyncClient(follow_redirects=True) as client:
            result: str | None = (await client.get(url, **kwargs)).json()["authorization"]
            return result

    return {
        "requests.get": requests.get(url, timeout=10, **kwargs).json()["authorization"],
        "requests.Session": requests.Session().get(url, timeout=10, **kwargs).json()["authorization"],
        "httpx.get": httpx.get(url, follow_redirects=True, **kwargs).json()["authorization"],
        "httpx.AsyncClient": asyncio.run(async_get()),
    }


def everywhere(value: str | None) -> dict[str, str | None]:
    return dict.fromkeys(["requests.get", "requests.Session", "httpx.get", "httpx.AsyncClient"], value)


def test_on_then_off(echo: Echo, alice: AccessToken, pristine: dict[tuple[type, str], object]) -> None:
    bearer = f"Bearer {alice.raw}"
    assert seen_by_each_client(echo.url()) == everywhere(None)

    instrumentor = instrument(forward_to=[echo.netloc])
    try:
        assert instrumentor.is_instrumented
        assert instrumentor.instrumented_libraries == ("requests", "httpx")
        assert originals() != pristine
        assert seen_by_each_client(echo.url()) == everywhere(bearer)
        assert seen_by_each_client(echo.url(host="localhost")) == everywhere(None)
        assert seen_by_each_client(echo.redirect(echo.url(host="localhost"))) == everywhere(None)
        assert seen_by_each_client(echo.redirect(echo.url())) == everywhere(bearer)
        explicit = {"headers": {"Authorization": "Basic dXNlcjpwdw=="}}
        assert seen_by_each_client(echo.url(), **explicit) == everywhere("Basic dXNlcjpwdw==")
    finally:
        uninstrument()

    assert not instrumentor.is_instrumented
    assert originals() == pristine
    assert seen_by_each_client(echo.url()) == everywhere(None)


def test_no_current_token_sends_nothing(echo: Echo, pristine: dict[tuple[type, str], object]) -> None:
    instrumentor = Instrumentor([echo.netloc]).instrument()
    try:
        assert seen_by_each_client(echo.url()) == everywhere(None)
    finally:
        instrumentor.uninstrument()


def test_redirect_hop_to_a_disallowed_host_loses_the_token(
    echo: Echo, alice: AccessToken, pristine: dict[tuple[type, str], object]
) -> None:
    class Lenient(requests.Session):  # requests' own check would keep Authorization
        def should_strip_auth(self, old_url: str, new_url: str) -> bool:
            return False

    target = echo.redirect(echo.url(host="localhost"))
    instrument([echo.netloc])
    try:
        assert Lenient().get(target, timeout=10).json()["authorization"] is None
    finally:
        uninstrument()
    assert Lenient().get(target, auth=_Bearer(alice.raw), timeout=10).json()["authorization"] == (
        f"Bearer {alice.raw}"  # control: without the check, the redirect would carry it
    )


class _Bearer(requests.auth.AuthBase):
    def __init__(self, raw: str) -> None:
        self.raw = raw

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.raw}"
        return r


def test_idempotent(pristine: dict[tuple[type, str], object]) -> None:
    first = instrument(["customers:8002"])
    patched = originals()
    try:
        assert instrument(["CUSTOMERS:8002"]) is first
        assert first.instrument() is first
        assert originals() == patched
        assert active_instrumentor() is first
    finally:
        uninstrument()
    uninstrument()
    first.uninstrument()
    assert originals() == pristine
    assert active_instrumentor() is None


def test_second_allowlist_or_instrumentor_is_refused(pristine: dict[tuple[type, str], object]) -> None:
    first = instrument(["customers:8002"])
    patched = originals()
    try:
        with pytest.raises(RuntimeError, match="another allowlist"):
            instrument(["evil.example"])
        with pytest.raises(RuntimeError, match="already instrumented"):
            Instrumentor(["customers:8002"]).instrument()
        assert originals() == patched
    finally:
        first.uninstrument()


def test_uninstrument_refuses_to_drop_a_later_patch(pristine: dict[tuple[type, str], object]) -> None:
    instrumentor = instrument(["customers:8002"])
    ours = httpx.Client.__dict__["send"]

    def someone_elses(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        return ours(self, request, **kwargs)  # type: ignore[no-any-return]

    httpx.Client.send = someone_elses  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError, match="patched again"):
            instrumentor.uninstrument()
        assert instrumentor.is_instrumented
        assert requests.Session.__dict__["prepare_request"] is not pristine[(requests.Session, "prepare_request")]
    finally:
        httpx.Client.send = ours  # type: ignore[method-assign]
        instrumentor.uninstrument()


def test_only_importable_libraries_are_instrumented() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["httpx"] = None          # httpx is not installed
        import requests
        from token_middleware.instrument import instrument, uninstrument
        original = requests.Session.__dict__["prepare_request"]
        inst = instrument(["customers:8002"])
        assert inst.instrumented_libraries == ("requests",), inst.instrumented_libraries
        assert requests.Session.__dict__["prepare_request"] is not original
        uninstrument()
        assert requests.Session.__dict__["prepare_request"] is original
        assert "httpx" not in [m for m, v in sys.modules.items() if v is not None]
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
