"""Flask signals (blinker): ``token_authenticated`` and ``token_refused``, sent with the app.

Trusted: nothing from the request beyond what the validator accepted. Connect as with any Flask
signal; the sender is the app, receivers run on the request's thread and must be quick::

    from token_middleware.flask_ext.signals import token_authenticated, token_refused

    @token_authenticated.connect_via(app)
    def seen(app, token, **extra):
        ...                                   # token: the validated AccessToken

    @token_refused.connect_via(app)
    def refused(app, refusal, **extra):
        log.info("refused %s", refusal.reason)  # a core.observe.Refusal: reason, status, kid, …

``token_authenticated`` is sent once per request that carries a valid token, before the view.
``token_refused`` is sent once per refusal the extension answers (an invalid token, a missing
token or scope, an unknown user, or any ``BearerError`` reaching the default error handler),
right after the ``token_middleware.audit`` line and the observers (:mod:`.core.audit`) have been
told. Sending costs nothing measurable when nothing is connected.
"""

from __future__ import annotations

from blinker import Namespace  # what flask.signals is built on (a Flask dependency)
from flask import current_app, g, request

from ..core.audit import REQUEST_ID_ENVIRON, report_refusal
from ..core.errors import BearerError
from ..core.token import AccessToken
from .config import get_state

_signals = Namespace()

#: Sent with the app and ``token=`` (an AccessToken) for each request with a valid token.
token_authenticated = _signals.signal("token-authenticated")
#: Sent with the app and ``refusal=`` (a :class:`~token_middleware.core.observe.Refusal`).
token_refused = _signals.signal("token-refused")

# The refusal this request already reported: the default error handler reports only the others.
_G_REPORTED = "_token_middleware_reported"


def authenticated(token: AccessToken) -> None:
    """Send ``token_authenticated`` for the current request (nothing when nobody listens)."""
    if token_authenticated.receivers:
        token_authenticated.send(current_app._get_current_object(), token=token)  # type: ignore[attr-defined]


def refused(error: BearerError, token: AccessToken | None = None) -> None:
    """Report ``error`` once for the current request: audit line, observers, ``token_refused``."""
    if g.get(_G_REPORTED, None) is error:
        return
    setattr(g, _G_REPORTED, error)
    environ = request.environ
    refusal = report_refusal(
        get_state().validator, error, adapter="flask",
        authorization=environ.get("HTTP_AUTHORIZATION"), query=environ.get("QUERY_STRING"),
        request_id_header=environ.get(REQUEST_ID_ENVIRON), token=token,
    )
    if token_refused.receivers:
        token_refused.send(current_app._get_current_object(), refusal=refusal)  # type: ignore[attr-defined]
