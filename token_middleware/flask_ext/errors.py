"""RFC 6750 error responses for Flask, through Flask's own error handling.

:meth:`TokenAuth.init_app` registers :func:`handle_bearer_error` for
:class:`~token_middleware.core.errors.BearerError`, so an app can replace it with its own
``@app.errorhandler(BearerError)`` (or a handler for one subclass such as ``InsufficientScope``).
The error objects build their own ``WWW-Authenticate`` and ``Retry-After`` headers; this module
only serialises them. Bodies are JSON ``{"error": …, "error_description": …}`` unless the client
prefers HTML; descriptions never contain the token. A ``BearerError`` that reaches the default
handler without having been reported (one the app raised itself) is reported there: audit line,
observers and ``token_refused`` (:mod:`.signals`).
"""

from __future__ import annotations

from flask import Response, request

from ..core.errors import BearerError
from ..core.responses import error_response
from .config import get_state
from .signals import refused


def bearer_error_response(error: BearerError) -> Response:
    """The response for ``error`` in the current request, with the app's realm."""
    status_line, headers, body = error_response(
        error, get_state().realm, accept=request.headers.get("Accept")
    )
    return Response(body, status=int(status_line.split(" ", 1)[0]), headers=headers)


def handle_bearer_error(error: BearerError) -> Response:
    """The default Flask error handler for every :class:`BearerError`."""
    refused(error)  # once: the extension's own refusals were reported where they were decided
    return bearer_error_response(error)
