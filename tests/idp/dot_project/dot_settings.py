"""A minimal django-oauth-toolkit authorization server for the introspection end-to-end test.

Configured by the environment only: ``DOT_DATABASE`` (a SQLite file made by ``dot_setup.py``).
Its access tokens are django-oauth-toolkit's own opaque random strings; its RFC 7662 endpoint is
``/o/introspect/`` and its RFC 7009 revocation endpoint ``/o/revoke_token/``.
"""

import os

SECRET_KEY = "dot-e2e-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "oauth2_provider",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "dot_urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DOT_DATABASE"]}}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
OAUTH2_PROVIDER = {
    "SCOPES": {"orders:read": "read orders", "orders:write": "write orders", "introspection": "introspect"},
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
