"""Flask integration: the :class:`TokenAuth` extension, ``current_token``, ``token_user`` and
scope decorators.

Trusted: the settings in ``app.config`` (``TOKEN_MIDDLEWARE_*``, environment as fallback) and the
keys they point at; never anything a request says about keys. See :mod:`.extension` for what
happens on each request, :mod:`.decorators` for the authorization rules, :mod:`.users` for
the user loader and :mod:`.signals` for ``token_authenticated`` and ``token_refused``.

    from token_middleware.flask_ext import TokenAuth, current_token, require_scopes

    auth = TokenAuth(app)

    @app.get("/orders")
    @require_scopes("orders:read")
    def orders():
        return {"sub": current_token.subject}
"""

from __future__ import annotations

from .config import EXTENSION_KEY, TokenAuthState, get_state
from .decorators import require_actor, require_any_scope, require_scopes, require_token
from .errors import bearer_error_response
from .extension import TokenAuth, UserLoader, current_token, get_current_token
from .signals import token_authenticated, token_refused
from .users import get_token_user, token_user

__all__ = [
    "EXTENSION_KEY",
    "TokenAuth",
    "TokenAuthState",
    "UserLoader",
    "bearer_error_response",
    "current_token",
    "get_current_token",
    "get_state",
    "get_token_user",
    "require_actor",
    "require_any_scope",
    "require_scopes",
    "require_token",
    "token_authenticated",
    "token_refused",
    "token_user",
]
