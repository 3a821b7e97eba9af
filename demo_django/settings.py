"""Settings of the customers service, read from the environment only.

``TOKEN_MIDDLEWARE`` is built from every ``TOKEN_MIDDLEWARE_<NAME>`` variable (the audience
defaults to ``customers-service``). No database, no sessions, no templates: the only identity is
the access token, validated by ``token_middleware.django_ext`` on every request.

Other variables: ``DJANGO_SECRET_KEY`` (default: random per process, which is fine because
nothing here is signed), ``DJANGO_ALLOWED_HOSTS`` (comma-separated; default loopback names),
``DJANGO_DEBUG`` (``1`` to enable; never in production).
"""

from __future__ import annotations

import importlib.util
import os
import secrets

PREFIX = "TOKEN_MIDDLEWARE_"

TOKEN_MIDDLEWARE = {
    name[len(PREFIX):]: value for name, value in os.environ.items() if name.startswith(PREFIX)
}
TOKEN_MIDDLEWARE.setdefault("AUDIENCE", "customers-service")
# Prometheus metrics (served at /metrics) when prometheus_client is installed; off without it.
if importlib.util.find_spec("prometheus_client") is not None:
    TOKEN_MIDDLEWARE.setdefault("OBSERVERS", ["token_middleware.metrics.PrometheusMetrics"])

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
    if h.strip()
]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "token_middleware.django_ext",
]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "token_middleware.django_ext.middleware.TokenMiddleware",
]
ROOT_URLCONF = "demo_django.urls"
WSGI_APPLICATION = "demo_django.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
APPEND_SLASH = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
