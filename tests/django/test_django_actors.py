"""``require_actor`` (Django decorators) and ``HasActor`` / ``require_actor`` (DRF): a view can
require that it is called through a given service, with a token that service obtained by
exchange, as easily as it requires a scope."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from django.test import Client, override_settings

from token_middleware.testing import bearer

HAVE_DRF = importlib.util.find_spec("rest_framework") is not None
PATHS = ["/through-orders", *(["/drf/through-orders"] if HAVE_DRF else [])]
EITHER = ["/through-either", *(["/drf/through-either"] if HAVE_DRF else [])]
NEEDS = "this resource must be called through orders-service"


@pytest.fixture(autouse=True)
def _urls() -> Any:
    with override_settings(ROOT_URLCONF="tm_django_actors"):
        yield


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("act", "status"),
    [
        (["orders-service"], 200),
        (["orders-service", "gateway"], 200),
        (None, 403),  # alice calling directly
        (["billing-service"], 403),
        (["billing-service", "orders-service"], 403),  # orders acted earlier; billing calls now
    ],
    ids=["orders", "orders-via-gateway", "nobody", "billing", "billing-after-orders"],
)
def test_the_nearest_actor_must_be_the_one_required(
    path: str, act: list[str] | None, status: int, make_token: Any
) -> None:
    token = make_token(sub="alice", scopes=["customers:read"], act=act)
    response = Client().get(path, headers=bearer(token))
    assert response.status_code == status
    if status == 200:
        assert response.json() == {"sub": "alice", "act": act}
    else:
        assert response.json() == {"error": "insufficient_scope", "error_description": NEEDS}
        assert response.headers["WWW-Authenticate"] == (
            f'Bearer realm="customers-service", error="insufficient_scope", error_description="{NEEDS}"'
        )


@pytest.mark.parametrize("path", PATHS + EITHER)
def test_no_token_is_a_plain_401(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="customers-service"'


@pytest.mark.parametrize("path", EITHER)
@pytest.mark.parametrize(("act", "status"), [(["billing-service"], 200), (["orders-service"], 200), (["x"], 403)])
def test_one_of_several_actors(path: str, act: list[str], status: int, make_token: Any) -> None:
    response = Client().get(path, headers=bearer(make_token(act=act)))
    assert response.status_code == status


def test_scopes_and_actor_are_both_required(make_token: Any) -> None:
    token = make_token(scopes=["other"], act=["orders-service"])
    response = Client().get("/through-orders", headers=bearer(token))
    assert response.status_code == 403
    assert response.json()["error_description"] == "required scope: customers:read"


def test_invalid_actor_names_fail_at_import_time() -> None:
    from token_middleware.core.errors import ConfigurationError
    from token_middleware.django_ext.decorators import require_actor

    for bad in ((), ("orders service",), ("",)):
        with pytest.raises(ConfigurationError):
            require_actor(*bad)
