"""token-middleware: access tokens for WSGI microservices.

The framework-free core is :mod:`token_middleware.core`; it imports only the standard library,
python-jose and cryptography. The adapters sit beside it, one per framework or client:
:mod:`~token_middleware.wsgi`, :mod:`~token_middleware.flask_ext`,
:mod:`~token_middleware.django_ext`, :mod:`~token_middleware.drf`,
:mod:`~token_middleware.requests_auth`, :mod:`~token_middleware.httpx_auth`,
:mod:`~token_middleware.instrument` and :mod:`~token_middleware.gateway`. This module re-exports
the names most code needs, so ``from token_middleware import TokenValidator`` is the stable path.
"""

from __future__ import annotations

from .core.concurrency import ContextThreadPoolExecutor, with_current_context
from .core.context import get_current_token
from .core.errors import (
    BearerError,
    ConfigurationError,
    InsufficientScope,
    InvalidClaim,
    InvalidRequest,
    InvalidToken,
    KeysUnavailable,
    MissingToken,
    RevocationUnavailable,
    RevokedToken,
    TokenMiddlewareError,
)
from .core.forwarding import HostAllowlist
from .core.scopes import check_scopes
from .core.settings import Settings
from .core.token import AccessToken
from .core.validator import TokenValidator
from .wsgi import TokenMiddleware

#: The one place the version is written; setup.cfg reads it (``attr:``).
__version__ = "0.2.0"

__all__ = [
    "AccessToken",
    "BearerError",
    "ConfigurationError",
    "ContextThreadPoolExecutor",
    "HostAllowlist",
    "InsufficientScope",
    "InvalidClaim",
    "InvalidRequest",
    "InvalidToken",
    "KeysUnavailable",
    "MissingToken",
    "RevocationUnavailable",
    "RevokedToken",
    "Settings",
    "TokenMiddleware",
    "TokenMiddlewareError",
    "TokenValidator",
    "check_scopes",
    "get_current_token",
    "with_current_context",
]
