"""``token_user``: the application's own user for the current token, the flask-login way.

Trusted: only the token :class:`~token_middleware.flask_ext.TokenAuth` validated for this
request. The user loader registered with ``@auth.user_loader`` (or ``TokenAuth(user_loader=…)``)
maps that :class:`~token_middleware.core.token.AccessToken` to whatever the app calls a user (a
database row, a dataclass built from claims). It is called lazily, the first time a request
reads ``token_user``, and at most once per request; requests that never read it never pay for
it. Without a token, ``token_user`` stands for ``None`` and the loader is not called.

A loader that returns ``None`` refuses the request with 401 ``invalid_token`` ("the token's
subject is not a user of this service", :class:`~token_middleware.core.errors.UnknownUser`), as
Django's ``USER_LOADER`` does; it may also raise an ``InvalidToken`` subclass itself. The only
difference is when: Django loads before the view, Flask the first time the view reads the user.

The name does not clash with flask-login's ``current_user``: both can live in one app (a
session login for browsers, tokens for the API)::

    auth = TokenAuth(app)

    @auth.user_loader
    def load_user(token):
        return User.query.filter_by(subject=token.subject).one_or_none()

    @app.get("/me")
    @require_token()
    def me():
        return {"name": token_user.name}
"""

from __future__ import annotations

from typing import Any

from flask import has_request_context
from werkzeug.local import LocalProxy

from ..core.errors import UnknownUser
from .config import AUTH_KEY, app_object, g_object
from .extension import TokenAuth, get_current_token
from .signals import refused

_G_USER = "_token_middleware_user"
_UNSET = object()


def get_token_user() -> Any:
    """The app's user for the current request's token, or ``None`` (no token, no request).

    Raises :class:`~token_middleware.core.errors.UnknownUser` (answered 401) when the loader
    returns ``None`` for a valid token.

    Raises :class:`RuntimeError` when no user loader is registered: a programming error, named
    with its fix, not something to answer with a 401.
    """
    if not has_request_context():
        return None
    request_g = g_object()
    user = getattr(request_g, _G_USER, _UNSET)
    if user is not _UNSET:
        return user
    auth = app_object().extensions.get(AUTH_KEY)
    loader = auth.user_loader_callback if isinstance(auth, TokenAuth) else None
    if loader is None:
        raise RuntimeError(
            "token_user needs a user loader: decorate a function of the token with "
            "@auth.user_loader (auth being your TokenAuth), or pass TokenAuth(user_loader=...)"
        )
    token = get_current_token()
    if token is None:
        user = None
    else:
        user = loader(token)
        if user is None:
            error = UnknownUser()
            refused(error, token)
            raise error
    setattr(request_g, _G_USER, user)
    return user


#: The current request's user, as the registered user loader returned it (``None`` without a
#: token). Typed ``Any``: it is whatever your loader returns.
token_user: Any = LocalProxy(get_token_user)
