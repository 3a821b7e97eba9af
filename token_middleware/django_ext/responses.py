"""RFC 6750 error responses as Django ``HttpResponse`` objects.

The error objects build their own ``WWW-Authenticate``/``Retry-After`` headers; this only
serialises them with the current realm: JSON ``{"error": …, "error_description": …}`` unless the
client prefers HTML. Descriptions never contain the token.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from ..core.errors import BearerError
from ..core.responses import error_response


def bearer_error_response(request: HttpRequest, error: BearerError, realm: str) -> HttpResponse:
    """The ``HttpResponse`` for ``error``."""
    status_line, headers, body = error_response(error, realm, accept=request.headers.get("Accept"))
    response = HttpResponse(body, status=int(status_line.split(" ", 1)[0]))
    for name, value in headers:
        if name.lower() != "content-length":
            response[name] = value
    return response
