"""Django test project, configured with ``settings.configure`` from ``tm_django_settings``.

No settings module in the environment, no database. Every test runs under
``override_settings(TOKEN_MIDDLEWARE=…)`` pointing at the test kit's ``token_issuer`` (real keys
in a temporary JWKS file, no network). The same settings module serves the ``manage.py``,
gunicorn and uvicorn subprocesses of the start-up and ASGI tests.
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
PROJECT_DIR = Path(__file__).parent
AUDIENCE = "customers-service"

if not HAVE_DJANGO:  # the tox factor without Django
    collect_ignore_glob = ["test_*.py"]
else:
    sys.path.insert(0, str(PROJECT_DIR))  # for ROOT_URLCONF = "tm_django_project"

    import django
    from django.conf import settings

    if not settings.configured:
        import tm_django_settings

        settings.configure(**{k: v for k, v in vars(tm_django_settings).items() if k.isupper()})
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
