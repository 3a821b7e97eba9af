"""Settings of the Django test project: a real settings module, so that ``manage.py``, gunicorn
and uvicorn subprocesses use exactly what the in-process tests use (``conftest.py`` passes these
names to ``settings.configure``).

Environment (subprocesses only): ``TM_TEST_TOKEN_MIDDLEWARE``, JSON for ``TOKEN_MIDDLEWARE``
(default: a placeholder that every in-process test overrides); ``TM_TEST_DB``, a SQLite file that
gives the project a database (for ``migrate``); ``TM_TEST_STATIC_ROOT`` (for ``collectstatic``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

HAVE_DRF = importlib.util.find_spec("rest_framework") is not None
AUDIENCE = "customers-service"

DEBUG = False
SECRET_KEY = "token-middleware-tests"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
ROOT_URLCONF = "tm_django_project"
DATABASES: dict[str, dict[str, Any]] = (
    {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["TM_TEST_DB"]}}
    if "TM_TEST_DB" in os.environ
    else {}
)
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    *(["rest_framework"] if HAVE_DRF else []),
    "token_middleware.django_ext",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tm_django_project.other_auth_middleware",
    "tm_django_project.context_probe_middleware",
    "token_middleware.django_ext.middleware.TokenMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("TM_TEST_STATIC_ROOT")
# In-process tests override it (see conftest._point_at_issuer); subprocesses get it from the env.
TOKEN_MIDDLEWARE: Any = (
    json.loads(os.environ["TM_TEST_TOKEN_MIDDLEWARE"])
    if "TM_TEST_TOKEN_MIDDLEWARE" in os.environ
    else {"ISSUER": "https://placeholder.test", "AUDIENCE": AUDIENCE}
)
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "token_middleware.drf.exception_handler",
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
