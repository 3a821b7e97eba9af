"""Django signals: ``token_authenticated`` and ``token_refused``.

Trusted: nothing from the request beyond what the validator accepted. Receivers run on the
request's thread (or, under ASGI, in the request's task) and must be quick::

    from django.dispatch import receiver
    from token_middleware.django_ext.signals import token_refused

    @receiver(token_refused)
    def refused(sender, request, refusal, **kwargs):
        ...                  # refusal: a core.observe.Refusal (reason, status, kid, issuer, …)

``token_authenticated`` (``request``, ``token``) is sent once per request whose token the
middleware (or DRF's ``BearerTokenAuthentication``) accepted, before the view. ``token_refused``
(``request``, ``refusal``) is sent once per refusal answered by the middleware, the scope
decorators and mixin, or DRF, right after the ``token_middleware.audit`` line and the observers
(:mod:`token_middleware.core.audit`). The sender is the adapter's class
(:class:`~.middleware.TokenMiddleware`, or DRF's ``BearerTokenAuthentication`` / ``HasScopes``).
Sending costs nothing measurable when nothing is connected.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal
from django.http import HttpRequest

from ..core.audit import REQUEST_ID_ENVIRON, report_refusal
from ..core.errors import BearerError
from ..core.observe import Refusal
from ..core.token import AccessToken
from ..core.validator import TokenValidator

#: Sent with ``request`` and ``token`` (the validated AccessToken).
token_authenticated = Signal()
#: Sent with ``request`` and ``refusal`` (a :class:`~token_middleware.core.observe.Refusal`).
token_refused = Signal()


def authenticated(sender: Any, request: HttpRequest, token: AccessToken) -> None:
    """Send ``token_authenticated`` (nothing when nobody listens)."""
    if token_authenticated.receivers:
        token_authenticated.send(sender=sender, request=request, token=token)


def refused(
    sender: Any,
    validator: TokenValidator,
    request: HttpRequest,
    error: BearerError,
    *,
    adapter: str = "django",
    token: AccessToken | None = None,
) -> Refusal:
    """Report one refusal of ``request``: audit line, observers, then ``token_refused``."""
    meta = request.META
    refusal = report_refusal(
        validator, error, adapter=adapter, authorization=meta.get("HTTP_AUTHORIZATION"),
        query=meta.get("QUERY_STRING"), request_id_header=meta.get(REQUEST_ID_ENVIRON), token=token,
    )
    if token_refused.receivers:
        token_refused.send(sender=sender, request=request, refusal=refusal)
    return refusal
