"""Django test project, configured with ``settings.configure`` (no settings module, no database).

Every test runs under ``override_settings(TOKEN_MIDDLEWARE=…)`` pointing at the test kit's
``token_issuer`` (real keys in a temporary JWKS file, no network).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HAVE_DJANGO = importlib.util.find_spec("django") is not None
HAVE_DRF = HAVE_DJANGO and importlib.util.find_spec("rest_framework") is not None
AUDIENCE = "customers-service"

if not HAVE_DJANGO:  # the tox factor without Django
    collect_ignore_glob = ["test_*.py"]
else:
    sys.path.insert(0, str(Path(__file__).parent))  # for ROOT_URLCONF = "tm_django_project"

    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="token-middleware-tests",
            ALLOWED_HOSTS=["testserver", "127.0.0.1", "localhost"],
            ROOT_URLCONF="tm_django_project",
            DATABASES={},
            USE_TZ=True,
            INSTALLED_APPS=[
                "django.contrib.contenttypes",
                "django.contrib.auth",
                "django.contrib.sessions",
                *(["rest_framework"] if HAVE_DRF else []),
                "token_middleware.django_ext",
            ],
            MIDDLEWARE=[
                "django.contrib.sessions.middleware.SessionMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "tm_django_project.OtherAuthMiddleware",
                "token_middleware.django_ext.middleware.TokenMiddleware",
            ],
            SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
            # Placeholder valid at start-up; every test overrides it (see _point_at_issuer).
            TOKEN_MIDDLEWARE={"ISSUER": "https://placeholder.test", "AUDIENCE": AUDIENCE},
            REST_FRAMEWORK={
                "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
                "DEFAULT_AUTHENTICATION_CLASSES": [],
                "UNAUTHENTICATED_USER": None,
            },
        )
        django.setup()


@pytest.fixture
def token_audience() -> str:
    return AUDIENCE


@pytest.fixture(autouse=True)
def _point_at_issuer(token_issuer: Any) -> Iterator[None]:
    from token_middleware.testing import override_django_settings

    with override_django_settings(token_issuer):
        yield


@pytest.fixture
def client() -> Any:
    from django.test import Client

    return Client()


@pytest.fixture
def async_client() -> Any:
    from django.test import AsyncClient

    return AsyncClient()
