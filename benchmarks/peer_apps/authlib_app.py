"""Authlib: RFC 9068 ``JWTBearerTokenValidator`` registered on a Flask ``ResourceProtector``.

``get_jwks`` follows Authlib's documented pattern (download once, keep it), returning a
``joserfc`` ``KeySet`` (what Authlib asks for instead of a JWKS dict, which it would re-import
on every request).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

from authlib.integrations.flask_oauth2 import ResourceProtector, current_token
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from flask import Flask, Response, jsonify
from joserfc.jwk import KeySet

from . import ROUTE, PeerConfig, whoami


class Validator(JWTBearerTokenValidator):  # type: ignore[misc]
    def __init__(self, jwks_url: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.jwks_url = jwks_url
        self._keys: KeySet | None = None
        self._lock = threading.Lock()

    def get_jwks(self) -> KeySet:
        if self._keys is None:
            with self._lock:
                if self._keys is None:
                    with urllib.request.urlopen(self.jwks_url, timeout=10) as response:  # noqa: S310 (loopback)
                        self._keys = KeySet.import_key_set(json.loads(response.read()))
        return self._keys


def create_app(**config: Any) -> Flask:
    cfg = PeerConfig.from_env(**config)
    app = Flask("peer_authlib")
    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(Validator(cfg.jwks_url, issuer=cfg.issuer, resource_server=cfg.audience))

    @app.get(ROUTE)
    @require_oauth()
    def view() -> Response:
        return jsonify(whoami(current_token["sub"], current_token.get("scope", "")))

    return app
