"""TokenMiddleware: RFC 6750 bearer-token validation for any WSGI application.

Trusted: the settings (or validator) it is built with, and keys only from the configured source.
Not trusted: the ``Authorization`` header and (when ``ALLOW_QUERY_TOKEN`` is on) the
``access_token`` query parameter.

When a request carries a bearer token, it is validated, whatever the method; an invalid one is
answered here with 400/401 and the RFC 6750 challenge, and unobtainable keys with 503 and
``Retry-After``. A valid token is put in ``environ["token_middleware.access_token"]`` and in
the context (:func:`token_middleware.core.context.get_current_token`) until the response iterable is
closed, so streamed bodies see it too. A request without a token passes through as anonymous
(the environ key is ``None``), unless ``require_token=True``; per-view scope checks belong to
the framework adapters or to :func:`token_middleware.core.scopes.check_scopes`::

    from token_middleware.wsgi import TokenMiddleware
    app = TokenMiddleware(app)          # settings from TOKEN_MIDDLEWARE_* environment variables

A denylist or extra claim checks go on the validator (:mod:`token_middleware.core.hooks`):
``TokenMiddleware(app, validator=TokenValidator(settings, is_revoked=…, claim_checks=[…]))``.
A revoked token gets 401 like any invalid one; a failing ``is_revoked`` gets 503.

Every refusal is written to the ``token_middleware.audit`` log and told to the validator's
observers (:mod:`token_middleware.core.audit`); metrics and a plain callback go on the validator:
``TokenValidator(settings, observers=[PrometheusMetrics(), my_callback])``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .core.audit import REQUEST_ID_ENVIRON, report_refusal
from .core.context import Current, bind_token, reset_token
from .core.errors import BearerError, MissingToken
from .core.responses import error_response
from .core.settings import Settings
from .core.token import AccessToken
from .core.validator import TokenValidator, validator_from

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ENVIRON_KEY = "token_middleware.access_token"

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType]


class _ResetOnClose:
    """Wraps a response iterable; resets the context when the server closes it."""

    __slots__ = ("_iterable", "_handle")

    def __init__(self, iterable: Iterable[bytes], handle: Token[Current]) -> None:
        self._iterable = iterable
        self._handle = handle

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._iterable)

    def close(self) -> None:
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            reset_token(self._handle)


class TokenMiddleware:
    """WSGI middleware validating bearer tokens. See the module docstring."""

    def __init__(
        self,
        app: WSGIApplication,
        *,
        settings: Settings | None = None,
        validator: TokenValidator | None = None,
        require_token: bool = False,
        prefetch: bool = True,
    ) -> None:
        self.app = app
        self.validator = validator_from(settings, validator)
        self.settings = self.validator.settings
        self.require_token = require_token
        if prefetch:
            self.validator.prefetch()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            token = self.validator.authenticate(environ.get("HTTP_AUTHORIZATION"), environ.get("QUERY_STRING"))
            if token is None and self.require_token and environ.get("REQUEST_METHOD") != "OPTIONS":
                raise MissingToken()
        except BearerError as err:
            report_refusal(self.validator, err, adapter="wsgi", authorization=environ.get("HTTP_AUTHORIZATION"),
                           query=environ.get("QUERY_STRING"), request_id_header=environ.get(REQUEST_ID_ENVIRON))
            return self.error(err, environ, start_response)
        environ[ENVIRON_KEY] = token
        handle = bind_token(token, self.settings, self.validator.watch)
        try:
            result = self.app(environ, start_response)
        except BaseException:
            reset_token(handle)
            raise
        return _ResetOnClose(result, handle)

    def error(self, err: BearerError, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        """Answer ``err`` with its status, challenge and JSON body."""
        status, headers, body = error_response(err, self.settings.realm, environ.get("HTTP_ACCEPT"))
        start_response(status, headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def get_token(environ: Any) -> AccessToken | None:
    """The validated token the middleware stored in ``environ``."""
    token = environ.get(ENVIRON_KEY)
    return token if isinstance(token, AccessToken) else None

