"""The audit log: one INFO line per refused request, on the ``token_middleware.audit`` logger.

Every adapter (the WSGI middleware, Flask, Django, DRF) calls :func:`report_refusal` once for
each refusal it answers, so the log line, the ``token_middleware_refusals_total`` counter and
the frameworks' ``token_refused`` signals always agree. The line's structured ``extra`` fields:

=============== ===============================================================================
field           value
=============== ===============================================================================
``reason``      the stable reason code (:mod:`token_middleware.core.errors`): ``expired``, …
``status``      the HTTP status answered (400, 401, 403 or 503)
``kid``         the token header's ``kid``, ``None`` without one
``iss``         the token's ``iss``, ``None`` without one
``request_id``  the request's ``X-Request-ID`` when well-formed, else ``None`` (never generated)
``adapter``     ``wsgi``, ``flask``, ``django`` or ``drf``
``sub``/``jti`` only for a token that passed validation (a missing scope, an unknown user)
``description`` the short description the client got (never the token)
=============== ===============================================================================

Trusted: nothing from the request. ``kid`` and ``iss`` of a refused token are read from its
header and payload *without* verification (that is what tells an operator which issuer or key
is at fault), so they are shortened to 128 printable characters; a token longer than
``MAX_TOKEN_BYTES`` is not opened at all. No token byte is ever logged: not the token, not a
segment, not a prefix. An ``X-Request-ID`` that appears in the ``Authorization`` header is
dropped, so a client cannot make the log carry its own token either.

    {"message": "token refused: reason=expired status=401 kid='k1' iss='https://gw' ...",
     "reason": "expired", "status": 401, "kid": "k1", "iss": "https://gw",
     "request_id": "7f1c9e", "adapter": "flask", "sub": null, "jti": null, ...}
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from . import b64url
from .bearer import extract_token
from .errors import BearerError, InvalidToken, KeysUnavailable, TokenTooLarge
from .observe import Refusal, bounded, reason_of, request_id

if TYPE_CHECKING:
    from .token import AccessToken
    from .validator import TokenValidator

audit_log = logging.getLogger("token_middleware.audit")

#: The environ key of ``X-Request-ID``: where every adapter reads the request id.
REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"


def peek(raw: str, max_bytes: int) -> tuple[str | None, str | None]:
    """``(kid, iss)`` of an unverified compact JWS, bounded for a log field; ``(None, None)`` if unreadable."""
    if len(raw) > max_bytes or raw.count(".") not in (2, 4):
        return None, None
    header_segment, payload_segment = raw.split(".", 2)[:2]
    kid = iss = None
    header = _json(header_segment)
    if header is not None:
        kid = bounded(header.get("kid"))
    if raw.count(".") == 2:
        payload = _json(payload_segment)
        if payload is not None:
            iss = bounded(payload.get("iss"))
    return kid, iss


def _json(segment: str) -> dict[str, Any] | None:
    try:
        value = json.loads(b64url.decode(segment))
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def report_refusal(
    validator: TokenValidator,
    error: BearerError,
    *,
    adapter: str,
    authorization: str | None = None,
    query: str | None = None,
    request_id_header: str | None = None,
    token: AccessToken | None = None,
) -> Refusal:
    """Log and tell the validator's observers that a request was refused with ``error``.

    ``authorization`` and ``query`` are the request's own (to read ``kid``/``iss`` of the token
    it carried); ``token`` is the validated token when the refusal came after validation.
    Returns the :class:`~token_middleware.core.observe.Refusal`, for the framework's signal.
    """
    kid = iss = None
    if token is not None:
        kid, iss = bounded(token.key_id), bounded(token.issuer)
    elif isinstance(error, (InvalidToken, KeysUnavailable)) and not isinstance(error, TokenTooLarge):
        settings = validator.settings
        try:
            raw = extract_token(authorization, query, allow_query=settings.allow_query_token)
        except BearerError:
            raw = None
        if raw is not None:
            kid, iss = peek(raw, settings.max_token_bytes)
    refusal = Refusal(
        error=error,
        reason=reason_of(error),
        status=error.status_code,
        adapter=adapter,
        request_id=request_id(request_id_header, authorization),
        kid=kid,
        issuer=iss,
        token=token,
    )
    if audit_log.isEnabledFor(logging.INFO):
        log_refusal(refusal)
    watch = validator.watch
    if watch is not None:
        watch.emit(refusal)
    return refusal


def log_refusal(refusal: Refusal) -> None:
    """Write the audit line of ``refusal`` (see the module docstring for its fields)."""
    token = refusal.token
    sub = bounded(token.subject) if token is not None else None
    jti = bounded(token.jti) if token is not None else None
    audit_log.info(
        "token refused: reason=%s status=%d kid=%r iss=%r request_id=%r adapter=%s",
        refusal.reason, refusal.status, refusal.kid, refusal.issuer, refusal.request_id, refusal.adapter,
        extra={
            "reason": refusal.reason,
            "status": refusal.status,
            "kid": refusal.kid,
            "iss": refusal.issuer,
            "request_id": refusal.request_id,
            "adapter": refusal.adapter,
            "sub": sub,
            "jti": jti,
            "description": bounded(refusal.error.description, 200),
        },
    )
