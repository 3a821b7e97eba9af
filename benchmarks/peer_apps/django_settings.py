"""Django settings shared by the three DRF apps of figure ``peers`` (no database, no sessions).

``PEER_DRF_APP`` (``bare``, ``project`` or ``simplejwt``) picks the URLconf; everything else is
the same for all three: ``TOKEN_MIDDLEWARE`` for the project's ``BearerTokenAuthentication``
(keys from ``PEER_JWKS_URL``), ``SIMPLE_JWT`` for djangorestframework-simplejwt (RS256, the PEM
public key in ``PEER_PUBLIC_KEY_FILE``), JSON rendering only.
"""

from __future__ import annotations

import os
import secrets

from . import PeerConfig

_cfg = PeerConfig.from_env()
_APP = os.environ.get("PEER_DRF_APP", "bare")
if _APP not in ("bare", "project", "simplejwt"):
    raise RuntimeError(f"PEER_DRF_APP must be bare, project or simplejwt, not {_APP!r}")


def _public_key() -> str:
    return _cfg.public_key_pem() if _cfg.public_key_file else ""


SECRET_KEY = secrets.token_urlsafe(50)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "token_middleware.django_ext",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = f"benchmarks.peer_apps.drf_{_APP}"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}

TOKEN_MIDDLEWARE = {
    "ISSUER": _cfg.issuer,
    "AUDIENCE": _cfg.audience,
    "JWKS_URL": _cfg.jwks_url or None,
    "ALGORITHMS": ["RS256"],
}

SIMPLE_JWT = {
    "ALGORITHM": "RS256",
    "SIGNING_KEY": "",  # verification only: this service never signs
    "VERIFYING_KEY": _public_key(),
    "AUDIENCE": _cfg.audience,
    "ISSUER": _cfg.issuer,
    "USER_ID_CLAIM": "sub",
    "USER_ID_FIELD": "id",
    "TOKEN_TYPE_CLAIM": None,  # RFC 9068 tokens carry typ in the header, not a token_type claim
    "AUTH_HEADER_TYPES": ("Bearer",),
}
