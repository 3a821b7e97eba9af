"""FORWARD_TO set in Django's TOKEN_MIDDLEWARE dict reaches every outgoing client.

The same checks as ``test_forward_to_flask.py``, through the real Django middleware: a view
that calls a URL with one outgoing client, built before any request with no allowlist of its
own, under ``override_settings(TOKEN_MIDDLEWARE={..., "FORWARD_TO": ...})``. The calls go to
real loopback servers. Django is configured here only when no other test module did it
(``tests/django/conftest.py`` does, at collection); either way this module brings its own
URLconf and middleware list, and the environment has no ``TOKEN_MIDDLEWARE_*`` variable.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("django")

import django  # noqa: E402
from django.conf import settings as django_settings  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from _clients_support import CLIENTS, Caller  # noqa: E402

from token_middleware.core.forwarding import ForwardTo  # noqa: E402
from token_middleware.core.settings import Settings  # noqa: E402

if TYPE_CHECKING:
    from conftest import Echo, MintToken

pytestmark = pytest.mark.usefixtures("clean_environment")

MIDDLEWARE = ["token_middleware.django_ext.middleware.TokenMiddleware"]


@pytest.fixture(scope="module", autouse=True)
def _django_configured() -> None:
    if not django_settings.configured:
        django_settings.configure(
            SECRET_KEY="token-middleware-client-tests",
            ALLOWED_HOSTS=["testserver"],
            DATABASES={},
            USE_TZ=True,
            INSTALLED_APPS=[
                "django.contrib.contenttypes",
                "django.contrib.auth",
                "token_middleware.django_ext",
            ],
            MIDDLEWARE=MIDDLEWARE,
            TOKEN_MIDDLEWARE={"ISSUER": "https://placeholder.test", "AUDIENCE": "placeholder"},
        )
        django.setup()


def urlconf(caller: Caller) -> types.ModuleType:
    """A URLconf (a module object, as ``ROOT_URLCONF`` allows): ``GET /call?url=…``."""

    def call(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"authorization": caller(request.GET["url"])})

    module = types.ModuleType("forward_to_urls")
    module.urlpatterns = [path("call", call)]  # type: ignore[attr-defined]
    return module


Through = Callable[..., "str | None"]


@pytest.fixture
def alice_bearer(mint_token: MintToken) -> str:
    return f"Bearer {mint_token('alice').raw}"


@pytest.fixture
def through_django(
    service_settings: Settings, make_caller: Callable[[str, ForwardTo], Caller], alice_bearer: str
) -> Iterator[Through]:
    """``through_django(client, url, forward_to=…, client_forward_to=…)``.

    Builds the client (``client_forward_to``: its own allowlist), then serves ``/call`` with
    ``TOKEN_MIDDLEWARE["FORWARD_TO"] = forward_to`` (left out when ``None``), sends alice's
    token and returns the ``Authorization`` that the server at ``url`` saw.
    """

    def run(client: str, url: str, *, forward_to: str | None, client_forward_to: ForwardTo = None) -> str | None:
        conf: dict[str, Any] = {
            "ISSUER": service_settings.issuer,
            "AUDIENCE": service_settings.audience,
            "PUBLIC_KEYS": service_settings.public_keys,
            "ALGORITHMS": "ES256",
        }
        if forward_to is not None:
            conf["FORWARD_TO"] = forward_to
        caller = make_caller(client, client_forward_to)
        with override_settings(ROOT_URLCONF=urlconf(caller), MIDDLEWARE=MIDDLEWARE, TOKEN_MIDDLEWARE=conf):
            response = Client().get("/call", {"url": url}, headers={"Authorization": alice_bearer})
        assert response.status_code == 200, response.content
        seen: str | None = response.json()["authorization"]
        return seen

    yield run


@pytest.mark.parametrize("client", CLIENTS)
def test_forward_to_in_the_token_middleware_dict_only(
    client: str, through_django: Through, echo: Echo, other_echo: Echo, alice_bearer: str
) -> None:
    forward_to = f"example.invalid, {echo.netloc}"
    assert through_django(client, echo.url(), forward_to=forward_to) == alice_bearer
    assert through_django(client, other_echo.url(), forward_to=forward_to) is None  # not listed


@pytest.mark.parametrize("client", CLIENTS)
def test_no_forward_to_anywhere_sends_nothing(client: str, through_django: Through, echo: Echo) -> None:
    assert through_django(client, echo.url(), forward_to=None) is None


@pytest.mark.parametrize("client", CLIENTS)
def test_an_allowlist_given_by_hand_wins_over_the_settings(
    client: str, through_django: Through, echo: Echo, other_echo: Echo, alice_bearer: str
) -> None:
    by_hand = [other_echo.netloc]
    assert through_django(client, echo.url(), forward_to=echo.netloc, client_forward_to=by_hand) is None
    assert (
        through_django(client, other_echo.url(), forward_to=echo.netloc, client_forward_to=by_hand)
        == alice_bearer
    )


@pytest.mark.parametrize("client", ["requests-session", "httpx-client"])
def test_the_environment_alone_still_works(
    client: str, through_django: Through, echo: Echo, alice_bearer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A NAME missing from the dict is read from the environment: same settings, same list.
    monkeypatch.setenv("TOKEN_MIDDLEWARE_FORWARD_TO", echo.netloc)
    assert through_django(client, echo.url(), forward_to=None) == alice_bearer
