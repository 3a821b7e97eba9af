"""The issuer side of the pattern: a small API gateway that authenticates clients and mints tokens.

Pieces (each usable on its own; ``demo_gateway`` only wires them up):

- :mod:`.config`    ``GatewayConfig.from_env(os.environ)``: the ``GATEWAY_*`` variables
- :mod:`.users`     ``UserStore``: the users file (werkzeug password hashes, scopes)
- :mod:`.sessions`  signed session cookie, CSRF tokens, failed-login limiter
- :mod:`.issuing`   the issuing job: ``KeyStore``, ``TokenMinter``, JWKS and discovery
- :mod:`.edge`      the edge job: ``Proxy`` and the upstream client it forwards with
- :mod:`.app`       ``Gateway`` / ``create_app``: endpoints, client authentication, ``/_auth``

Imports only the core and werkzeug (the ``gateway`` extra); upstream calls use the standard library.
"""

from __future__ import annotations

from .app import Gateway, create_app
from .config import GatewayConfig, Route
from .edge.proxy import Proxy
from .issuing.keystore import KeyStore
from .issuing.minting import TokenMinter
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
