"""The issuer side of the pattern: a small API gateway that authenticates clients and mints tokens.

Pieces (each usable on its own; ``demo_gateway`` only wires them up):

- :mod:`.config`   ``GatewayConfig.from_env(os.environ)``: the ``GATEWAY_*`` variables
- :mod:`.keystore` ``KeyStore``: signing keys on disk, shared by all workers, rotation
- :mod:`.users`    ``UserStore``: the users file (werkzeug password hashes, scopes)
- :mod:`.sessions` signed session cookie, CSRF tokens, failed-login limiter
- :mod:`.minting`  ``TokenMinter``: RFC 9068 tokens, reused per principal and route
- :mod:`.proxy`    ``Proxy``: the forwarding WSGI app (pooled, streaming, header hygiene)
- :mod:`.upstream` ``UpstreamPool``: the lean keep-alive HTTP/1.1 client the proxy forwards with
- :mod:`.app`      ``Gateway`` / ``create_app``: endpoints, client authentication, ``/_auth``

Imports only the core and werkzeug (the ``gateway`` extra); upstream calls use the standard library.
"""

from __future__ import annotations

from .app import Gateway, create_app
from .config import GatewayConfig, Route
from .keystore import KeyStore
from .minting import TokenMinter
from .proxy import Proxy
from .users import User, UserStore

__all__ = [
    "Gateway",
    "GatewayConfig",
    "KeyStore",
    "Proxy",
    "Route",
    "TokenMinter",
    "User",
    "UserStore",
    "create_app",
]
