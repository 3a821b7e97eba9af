"""token-middleware: access tokens for WSGI microservices.

The core (this package's top-level modules) imports only the standard library, python-jose and
cryptography. Framework adapters live in ``token_middleware.flask_ext``,
``token_middleware.django_ext``, ``token_middleware.drf``, ``token_middleware.requests_auth``,
``token_middleware.httpx_auth`` and ``token_middleware.gateway``.
"""

from __future__ import annotations

from .core.context import get_current_token
from .core.errors import (
    BearerError,
    ConfigurationError,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    KeysUnavailable,
    MissingToken,
    TokenMiddlewareError,
)
from .core.scopes import check_scopes
from .core.settings import Settings
from .core.token import AccessToken
from .core.validator import TokenValidator
from .wsgi import TokenMiddleware

__version__ = "0.1.0"

__all__ = [
    "AccessToken",
    "BearerError",
    "ConfigurationError",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "KeysUnavailable",
    "MissingToken",
    "Settings",
    "TokenMiddleware",
    "TokenMiddlewareError",
    "TokenValidator",
    "check_scopes",
    "get_current_token",
]
