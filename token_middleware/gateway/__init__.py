"""The issuer side of the pattern: a small API gateway that authenticates clients and mints tokens.

Pieces (each usable on its own; ``demo_gateway`` only wires them up):

- :mod:`.config`    ``GatewayConfig.from_env(os.environ)``: the ``GATEWAY_*`` variables
- :mod:`.users`     ``UserStore``: the users file (werkzeug password hashes, scopes)
- :mod:`.sessions`  signed session cookie, CSRF tokens
- :mod:`.authn`     who the caller is: Basic or the session cookie; the client address believed
- :mod:`.limits`    the failed-login limit (per user name, and per trustworthy address)
- :mod:`.browser`   the login form, logout and the demo page
- :mod:`.issuing`   the issuing job: ``KeyStore``, ``TokenMinter``, JWKS and discovery
- :mod:`.edge`      the edge job: ``Proxy``, request bodies, and the urllib3 upstream pools
- :mod:`.app`       ``Gateway`` / ``create_app``: endpoints, ``/_auth``, login

Imports only the core, werkzeug and urllib3 (the ``gateway`` extra).
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
