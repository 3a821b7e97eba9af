"""Views of the customers service.

- ``GET /customers/whoami`` (any valid token): the identity as this service saw it;
- ``GET /customers/<id>`` (``customers:read``): a customer record. There is no database: any id
  gets a deterministic record, so the demo needs no fixtures;
- ``GET /metrics``: the Prometheus text format (no token needed; the gateway never forwards that
  path); 404 when prometheus_client is not installed or ``OBSERVERS`` counts nothing.

What is trusted: only ``request.access_token``, set by the token middleware after validation.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse

from token_middleware import metrics as token_metrics
from token_middleware.django_ext.decorators import require_scopes, require_token

KNOWN_NAMES = {"alice": "Alice Liddell", "bob": "Bob Marley"}
TIERS = ("bronze", "silver", "gold")
SAFE_METHODS = ("GET", "HEAD")


@require_token
def whoami(request: HttpRequest) -> HttpResponse:
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(list(SAFE_METHODS))
    token = request.access_token
    return JsonResponse(
        {
            "service": "customers",
            "sub": token.subject,
            "client_id": token.client_id,
            "scopes": sorted(token.scopes),
            "aud": list(token.audience),
            "act": list(token.actors),  # nearest actor first: who exchanged the token
            "exp": token.expires_at,  # for the /app page's "time left"
        }
    )


def customer_record(customer_id: str) -> dict[str, str]:
    """The same record for the same id, in every process."""
    digest = hashlib.sha256(customer_id.encode()).digest()
    return {
        "id": customer_id,
        "name": KNOWN_NAMES.get(customer_id, customer_id.replace("-", " ").title()),
        "email": f"{customer_id}@example.test",
        "tier": TIERS[digest[0] % len(TIERS)],
    }


@require_scopes("customers:read")
def customer(request: HttpRequest, customer_id: str) -> HttpResponse:
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(list(SAFE_METHODS))
    return JsonResponse(customer_record(customer_id))


def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    if request.method not in SAFE_METHODS:
        return HttpResponseNotAllowed(list(SAFE_METHODS))
    if not token_metrics.available() or not settings.TOKEN_MIDDLEWARE.get("OBSERVERS"):
        raise Http404("metrics are off")
    body, content_type = token_metrics.exposition(accept=request.headers.get("Accept"))
    return HttpResponse(body, content_type=content_type)
