"""The apps of figure ``peers`` (:mod:`benchmarks.peers`): one route, five ways to guard it.

Every app answers ``GET /orders/whoami`` with the same small JSON, ``{"sub": …, "scopes": […]}``.
The Flask ones are built by ``create_app()`` (gunicorn target ``benchmarks.peer_apps.<module>:create_app()``):

* :mod:`.bare` - no token work at all (the limit; the ``Authorization`` header is ignored);
* :mod:`.project` - ``token_middleware.flask_ext.TokenAuth``, keys from the JWKS URL;
* :mod:`.flask_jwt_ext` - flask-jwt-extended's ``@jwt_required()``, an RS256 PEM public key;
* :mod:`.pyjwt_app` - PyJWT with ``PyJWKClient`` in a ``before_request`` hook, keys from the JWKS URL;
* :mod:`.authlib_app` - Authlib's RFC 9068 ``JWTBearerTokenValidator`` in a ``ResourceProtector``,
  the JWKS fetched from the URL once and kept as a ``joserfc`` ``KeySet``.

The DRF ones share :mod:`.django_settings` (``PEER_DRF_APP`` picks the URLconf: ``bare``,
``project`` or ``simplejwt``) and are served by :mod:`.drf_wsgi`.

Each app checks the issuer, the audience, the expiry and the RS256 signature, and answers 401
to a token that fails any of them (bare apps excepted). Configuration comes from the arguments
of ``create_app`` or, for gunicorn, from the environment: ``PEER_ISSUER``, ``PEER_AUDIENCE``,
``PEER_JWKS_URL`` and ``PEER_PUBLIC_KEY_FILE`` (a PEM file). Nothing here is security-relevant:
the keys are made fresh per benchmark run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

ROUTE = "/orders/whoami"


@dataclass(frozen=True)
class PeerConfig:
    issuer: str
    audience: str
    jwks_url: str
    public_key_file: str

    @classmethod
    def from_env(cls, **overrides: Any) -> PeerConfig:
        values = {
            "issuer": os.environ.get("PEER_ISSUER", ""),
            "audience": os.environ.get("PEER_AUDIENCE", ""),
            "jwks_url": os.environ.get("PEER_JWKS_URL", ""),
            "public_key_file": os.environ.get("PEER_PUBLIC_KEY_FILE", ""),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def public_key_pem(self) -> str:
        with open(self.public_key_file) as fh:
            return fh.read()


def whoami(sub: Any, scope: Any) -> dict[str, Any]:
    """The answer of every app: the subject and the sorted scopes (from a space-separated ``scope``)."""
    scopes = scope.split() if isinstance(scope, str) else list(scope or ())
    return {"sub": sub, "scopes": sorted(scopes)}
