"""The Flask extension: validate a present bearer token on every request.

Trusted: the keys and settings the deployer configured, nothing from the request. On each
request a ``before_request`` hook reads ``Authorization`` (and ``?access_token=`` only when
``ALLOW_QUERY_TOKEN`` is on) and validates any bearer token it finds, whatever the view and the
method (``HEAD`` and ``OPTIONS`` included). A request without bearer credentials goes on with no
token; the scope decorators decide whether a view needs one. A malformed header or an invalid
token is refused right there, with the RFC 6750 response of the registered error handler.

Per-request state lives in ``flask.g`` and in the core ``ContextVar``
(:func:`token_middleware.core.context.get_current_token`), which is reset when the response is
closed, so streamed bodies and outgoing calls made by the view see the token. Per-app state (the
settings and the validator with its key cache) lives in ``app.extensions["token_middleware"]``;
the extension object itself is in ``app.extensions["token_middleware.auth"]``, where
:data:`~token_middleware.flask_ext.users.token_user` finds the user loader.

``is_revoked`` and ``claim_checks`` go to the validator the extension builds
(:mod:`token_middleware.core.hooks`); ``@auth.user_loader`` maps a token to the app's own user.
``observers`` go there too (:mod:`token_middleware.core.observe`: metrics, tracing, a plain
callback). Each refusal is written to the ``token_middleware.audit`` log and sent as the
``token_refused`` signal; each valid token as ``token_authenticated`` (:mod:`.signals`).

    auth = TokenAuth()

    def create_app():
        app = Flask(__name__)
        app.config["TOKEN_MIDDLEWARE_ISSUER"] = "https://gateway.example"
        app.config["TOKEN_MIDDLEWARE_AUDIENCE"] = "orders-service"
        auth.init_app(app)
        return app
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import Token
from functools import partial
from typing import Any, TypeVar, cast

from flask import Flask, Response, has_request_context
from werkzeug.local import LocalProxy

from ..core.context import Current, bind_token, reset_token
from ..core.errors import BearerError, ConfigurationError
from ..core.hooks import ClaimCheck, RevocationCheck
from ..core.observe import Observer, Tracer
from ..core.settings import Settings
from ..core.token import AccessToken
from ..core.validator import TokenValidator, validator_from
from ..core.runtime import Runtime
from .config import AUTH_KEY, EXTENSION_KEY, app_object, g_object, get_state, request_object, settings_from_config
from .errors import handle_bearer_error
from .signals import authenticated, refused

# Attribute names in flask.g; namespaced so they cannot collide with the app's own.
_G_TOKEN = "_token_middleware_token"
_G_HANDLE = "_token_middleware_context"

#: ``loader(token) -> user``: the app's own user for a validated token (or ``None``).
UserLoader = Callable[[AccessToken], Any]
_L = TypeVar("_L", bound=UserLoader)


class TokenAuth:
    """Access-token validation for Flask apps (``init_app`` pattern; no state on ``self``).

    ``settings`` or ``validator`` may be given to share them across apps; by default each app
    gets its own, built from its config. ``prefetch`` warms the key cache in the background at
    start-up; an unreachable key server never stops the app (requests get 503 until keys come).

    ``is_revoked`` and ``claim_checks`` are given to the validator it builds (see
    :mod:`token_middleware.core.hooks`); with your own ``validator``, give them to it instead.
    ``user_loader`` (or ``@auth.user_loader``, registered before or after ``init_app``) maps a
    token to your own user object, read through ``token_user``. ``observers`` are given to the
    validator it builds (``[PrometheusMetrics()]``, see :mod:`token_middleware.core.observe`).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        settings: Settings | None = None,
        validator: TokenValidator | None = None,
        prefetch: bool = True,
        is_revoked: RevocationCheck | None = None,
        claim_checks: Sequence[ClaimCheck] = (),
        user_loader: UserLoader | None = None,
        observers: Sequence[Observer | Tracer] = (),
    ) -> None:
        self.settings = settings
        self.observers = observers
        self.validator = validator
        self.prefetch = prefetch
        self.is_revoked = is_revoked
        self.claim_checks = claim_checks
        self.user_loader_callback: UserLoader | None = None
        if user_loader is not None:
            self.user_loader(user_loader)
        if app is not None:
            self.init_app(app)

    def user_loader(self, loader: _L) -> _L:
        """Register ``loader(token) -> user``, flask-login style: ``@auth.user_loader``.

        It is called lazily, at most once per request, the first time the view reads
        :data:`~token_middleware.flask_ext.token_user`, and only for a validated token. Return
        ``None`` for "no such user"; raise a ``BearerError`` (``InvalidToken("the account is
        disabled")``) to refuse the request.
        """
        if not callable(loader):
            raise ConfigurationError(
                f"user_loader takes a function of the AccessToken, not {type(loader).__name__}"
            )
        self.user_loader_callback = loader
        return loader

    def init_app(self, app: Flask) -> None:
        """Validate the settings (raising ``ConfigurationError`` now) and install the hooks."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("TokenAuth.init_app() was already called for this app")
        if self.validator is not None:
            if self.is_revoked is not None or self.claim_checks or self.observers:
                raise ConfigurationError(
                    "TokenAuth got a validator and is_revoked/claim_checks/observers: give them to the "
                    "validator (TokenValidator(settings, is_revoked=..., claim_checks=[...], "
                    "observers=[...])), or drop validator="
                )
            validator = validator_from(self.settings, self.validator)  # refuses a mismatch
        else:
            settings = self.settings if self.settings is not None else settings_from_config(app.config)
            validator = TokenValidator(settings, is_revoked=self.is_revoked, claim_checks=self.claim_checks,
                                       observers=self.observers)
        app.extensions[EXTENSION_KEY] = Runtime(validator=validator)
        app.extensions[AUTH_KEY] = self
        app.before_request(_authenticate_request)
        app.after_request(_reset_context_on_close)
        # Register the default handler unless the app already has its own for BearerError.
        app_handlers = app.error_handler_spec[None][None]
        if BearerError not in app_handlers:
            app.register_error_handler(BearerError, handle_bearer_error)
        if self.prefetch:
            validator.prefetch()


def _authenticate_request() -> None:
    state = get_state(app_object())
    validator = state.validator
    request_g = g_object()
    # Bind "no token" first: whatever happens next (hooks of the validator included), resetting
    # this handle restores the value from before the request, and no earlier identity is seen.
    setattr(request_g, _G_HANDLE, bind_token(None, state.settings, validator.watch))
    environ = request_object().environ
    try:
        token = validator.authenticate(environ.get("HTTP_AUTHORIZATION"), environ.get("QUERY_STRING"))
    except BearerError as err:
        refused(err)
        raise
    setattr(request_g, _G_TOKEN, token)
    if token is not None:
        bind_token(token, state.settings, validator.watch)
        authenticated(token)


def _reset_context_on_close(response: Response) -> Response:
    handle: Token[Current] | None = g_object().pop(_G_HANDLE, None)
    if handle is not None:
        response.call_on_close(partial(reset_token, handle))
    return response


def get_current_token() -> AccessToken | None:
    """The validated token of the current Flask request, or ``None`` (no token, no request)."""
    if not has_request_context():
        return None
    token: AccessToken | None = getattr(g_object(), _G_TOKEN, None)
    return token


#: The current request's :class:`~token_middleware.core.token.AccessToken`, like flask-login's
#: ``current_user``, typed ``AccessToken | None``: without a token it stands for ``None``.
#: Inside a view decorated with ``require_scopes``/``require_any_scope``/``require_token`` it is
#: always a token; ``assert current_token`` tells a type checker so. Test it for truth
#: (``if current_token:``), never with ``is None``: the name is a proxy, never ``None`` itself.
current_token: AccessToken | None = cast("AccessToken | None", LocalProxy(get_current_token))
