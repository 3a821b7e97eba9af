"""The token endpoint on the wire: an RFC 8693 exchange request, and reading its answer.

:mod:`token_middleware.core.exchange` decides when to exchange and caches the result; this module
only speaks the protocol, with the standard library's HTTP client as
:mod:`token_middleware.core.keys` does (the core imports no requests or httpx):

- :func:`exchange_form`: the form fields of RFC 8693 §2.1, for an access token and one audience;
- ``client_secret_basic`` is :func:`token_middleware.core.introspection.basic_credential`, the
  one encoder of it (RFC 6749 §2.3.1: id and secret form-encoded, joined by ``:``, base64);
- :func:`http_post_form`: the POST, bounded by a whole-response deadline and a size limit. A
  redirect is an answer, never followed: following it would carry the secret elsewhere;
- :func:`read_answer`: a 200 answer checked (RFC 8693 §2.2.1: a ``Bearer`` token made of token
  characters, an access-token ``issued_token_type``, a positive ``expires_in``), or an RFC 6749
  §5.2 error code.

Trusted: nothing the endpoint sends. What is read from an answer is checked and what is logged
from it is quoted and shortened (:func:`token_middleware.core.keys._shown`). The secret and the
tokens are never put in a message.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlencode

from .keys import FetchError, _network_cause, _shown

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "GRANT_TYPE",
    "Issued",
    "Poster",
    "Refused",
    "exchange_form",
    "http_post_form",
    "read_answer",
]

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
_ISSUED_TYPES = frozenset({ACCESS_TOKEN_TYPE, "urn:ietf:params:oauth:token-type:jwt"})
MAX_RESPONSE_BYTES = 64 * 1024
#: RFC 6750 §2.1 b64token: what may follow ``Bearer`` in a header.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: RFC 6749 §5.2: error codes are %x20-21 / %x23-5B / %x5D-7E; real ones are short words.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")

#: ``post(url, form, authorization, timeout) -> (status, JSON body or None)``; raises FetchError.
Poster = Callable[[str, Mapping[str, str], str, float], "tuple[int, Any]"]


class Issued(NamedTuple):
    """A 200 answer: the issued token and its ``expires_in`` (``None`` when not given)."""

    access_token: str
    expires_in: float | None


class Refused(NamedTuple):
    """An RFC 6749 §5.2 error answer: the code, and the endpoint's words quoted for a log."""

    error: str
    said: str | None


def exchange_form(subject_token: str, audience: str) -> dict[str, str]:
    """The RFC 8693 §2.1 request for ``subject_token`` (an access token) and one ``audience``."""
    return {
        "grant_type": GRANT_TYPE,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": audience,
    }


def read_answer(status: int, body: Any) -> Issued | Refused:
    """What the endpoint answered. Raises ``ValueError`` (operator words) for anything else."""
    if status != 200:
        error = body.get("error") if isinstance(body, Mapping) else None
        if status in (400, 401) and isinstance(error, str) and _ERROR_CODE.fullmatch(error):
            said = body.get("error_description")
            return Refused(error, _shown(said) if said is not None else None)
        raise ValueError(f"answered HTTP {status} without an RFC 6749 error")
    if not isinstance(body, Mapping):
        raise ValueError("answered 200 with no JSON object")
    raw = body.get("access_token")
    if not isinstance(raw, str) or not _B64TOKEN.fullmatch(raw):
        raise ValueError("answered 200 with no usable access_token")
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise ValueError(f"answered token_type {_shown(token_type)}, not Bearer")
    issued_type = body.get("issued_token_type")
    if issued_type not in _ISSUED_TYPES:
        raise ValueError(f"answered issued_token_type {_shown(issued_type)}, not an access token")
    expires_in = body.get("expires_in")
    if expires_in is None:
        return Issued(raw, None)
    if type(expires_in) not in (int, float) or not 0 < expires_in < 2**31:
        raise ValueError(f"answered expires_in {_shown(expires_in)}, not a positive number of seconds")
    return Issued(raw, float(expires_in))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status: an answer like any other


def _read(response: Any, url: str, timeout: float, deadline: float) -> Any:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise FetchError(f"timed out after {timeout:g} s posting to {url}")
        chunk = response.read(16384)
        if not chunk:
            break
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise FetchError(f"the answer of {url} is larger than {MAX_RESPONSE_BYTES // 1024} KiB")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError):
        return None


def http_post_form(url: str, form: Mapping[str, str], authorization: str, timeout: float) -> tuple[int, Any]:
    """POST ``form`` to ``url`` with ``Authorization``: ``(status, JSON body or None)``.

    Within ``timeout`` seconds overall; redirects are not followed; proxies are the
    environment's, as the standard library reads them. Raises
    :class:`~token_middleware.core.keys.FetchError` (naming the cause and the URL) when no
    answer came.
    """
    deadline = time.monotonic() + timeout
    headers = {
        "Authorization": authorization,
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
        "User-Agent": "token-middleware",
    }
    data = urlencode(form).encode("ascii")
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.build_opener(_NoRedirects).open(request, timeout=timeout) as response:
            return int(response.status), _read(response, url, timeout, deadline)
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, _read(exc, url, timeout, deadline)
        finally:
            exc.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
        raise FetchError(_network_cause(exc, url, timeout).replace("fetching", "posting to")) from None

