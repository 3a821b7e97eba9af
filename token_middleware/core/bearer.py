"""RFC 6750 §2: finding the bearer token in a request.

Trusted: nothing. The header is parsed strictly: the scheme is case-insensitive, exactly one
``b64token`` must follow, and any other scheme (``Basic …``) counts as no bearer credentials so
that other authentication can try. The query parameter ``access_token`` is read only when the
deployer opted in (``ALLOW_QUERY_TOKEN``); a request may not use both methods (RFC 6750 §2).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from .errors import InvalidRequest

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_MAX_HEADER = 64 * 1024


def parse_authorization(header: str | None) -> str | None:
    """The bearer token in an ``Authorization`` value; ``None`` for no header or another scheme.

    Raises :class:`InvalidRequest` for a malformed bearer credential.
    """
    if header is None:
        return None
    if len(header) > _MAX_HEADER:
        raise InvalidRequest("the Authorization header is too large")
    value = header.strip(" \t")
    if not value:
        raise InvalidRequest("the Authorization header is empty")
    scheme, sep, rest = value.partition(" ")
    if scheme.lower() != "bearer":
        if "\t" in scheme and scheme.split("\t", 1)[0].lower() == "bearer":
            raise InvalidRequest("use a single space after 'Bearer'")
        return None
    credentials = rest.strip(" ")
    if not sep or not credentials:
        raise InvalidRequest("the bearer token is missing")
    if " " in credentials or "\t" in credentials or "," in credentials:
        raise InvalidRequest("exactly one bearer token is allowed")
    if not _B64TOKEN.fullmatch(credentials):
        raise InvalidRequest("the bearer token contains invalid characters")
    return credentials


def token_from_query(query_string: str | None) -> str | None:
    """The ``access_token`` query parameter (RFC 6750 §2.3), if present exactly once."""
    if not query_string or "access_token" not in query_string:
        return None
    values = parse_qs(query_string, keep_blank_values=True).get("access_token")
    if not values:
        return None
    if len(values) != 1:
        raise InvalidRequest("exactly one access_token parameter is allowed")
    token = values[0]
    if not token or not _B64TOKEN.fullmatch(token):
        raise InvalidRequest("the access_token parameter is malformed")
    return token


def extract_token(
    authorization: str | None, query_string: str | None = None, *, allow_query: bool = False
) -> str | None:
    """The request's bearer token from the header, or the query when allowed; never both."""
    from_header = parse_authorization(authorization)
    if not allow_query:
        return from_header
    from_query = token_from_query(query_string)
    if from_header is not None and from_query is not None:
        raise InvalidRequest("send the access token in one place only")
    return from_header if from_header is not None else from_query
