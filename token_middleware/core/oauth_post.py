"""POST a form to an OAuth endpoint with this service's client credential, over stdlib HTTP.

The one transport of the RFC 7662 introspection call (:mod:`.introspection`) and the RFC 8693
exchange request (:mod:`.token_endpoint`); the core imports no requests or httpx.

- :func:`basic_credential`: the ``Authorization`` value of ``client_secret_basic`` (RFC 6749
  §2.3.1: id and secret form-encoded, joined by ``:``, base64), the one encoder of it.
- :func:`post_form`: the POST. Every status is an answer, its body read with the same bounds
  as a 200's, so an RFC 6749 §5.2 error body stays readable. A redirect is an answer as well,
  never followed (following it would carry the secret and the token elsewhere), with its
  ``Location`` for the caller's message.

Trusted: the URL (from the configuration). Not trusted: anything the endpoint sends. The answer
is bounded by a whole-answer deadline (``timeout``) and :data:`MAX_ANSWER_BYTES`; its body is
parsed as strict JSON (duplicate member names refused, so ``{"active": false, "active": true}``
never reads as active, and no ``NaN``/``Infinity``) or given as ``None``. Messages name the URL
and the cause, never the form's values nor the credential; nothing here logs.
"""

from __future__ import annotations

import base64
import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, NamedTuple

from .keys import FetchError, _network_cause
from .strict_json import DECODER

__all__ = ["MAX_ANSWER_BYTES", "FormAnswer", "NoRedirects", "basic_credential", "parse_strict_json", "post_form"]

MAX_ANSWER_BYTES = 64 * 1024
_CHUNK = 16384


class FormAnswer(NamedTuple):
    """What the endpoint answered: the status, the JSON body (``None`` when not strict JSON),
    and a 3xx answer's ``Location`` (quoted by callers with :func:`.keys._shown`)."""

    status: int
    body: Any
    location: str | None = None


def basic_credential(client_id: str, client_secret: str) -> str:
    """The ``Authorization`` value of ``client_secret_basic``: both parts form-encoded first
    (RFC 6749 §2.3.1), so a ``:`` or a non-ASCII character in either survives."""
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


def parse_strict_json(data: bytes) -> Any:
    """``data`` as UTF-8 JSON without duplicate member names or non-finite constants, else ``None``."""
    try:
        return DECODER.decode(data.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is returned as an ``HTTPError``: the form and the credential never follow a ``Location``."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


def _read(response: Any, url: str, timeout: float, deadline: float) -> bytes:
    read = getattr(response, "read1", None) or response.read
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise FetchError(f"timed out after {timeout:g} s posting to {url}")
        chunk = read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise FetchError(f"the answer from {url} is larger than {MAX_ANSWER_BYTES // 1024} KiB")
        chunks.append(chunk)


def post_form(
    url: str,
    form: Mapping[str, str],
    authorization: str,
    timeout: float,
    *,
    opener: urllib.request.OpenerDirector | None = None,
) -> FormAnswer:
    """POST ``form`` to ``url`` with ``Authorization: authorization``, within ``timeout`` seconds
    overall; whatever the status, the answer (see the module docstring).

    ``opener`` defaults to a fresh one that follows no redirect (proxies are the environment's,
    as the standard library reads them). Raises :class:`~token_middleware.core.keys.FetchError`
    naming the cause and the URL when no whole answer came (unreachable, timed out, too large).
    """
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode("ascii"), method="POST",
                                     headers={
                                         "Authorization": authorization,
                                         "Content-Type": "application/x-www-form-urlencoded",
                                         "Accept": "application/json",
                                         "User-Agent": "token-middleware",
                                     })
    try:
        with (opener or urllib.request.build_opener(NoRedirects)).open(request, timeout=timeout) as response:
            return FormAnswer(int(response.status), parse_strict_json(_read(response, url, timeout, deadline)))
    except urllib.error.HTTPError as exc:
        try:
            location = exc.headers.get("Location") if exc.headers is not None else None
            data = _read(exc, url, timeout, deadline) if exc.fp is not None else b""
            return FormAnswer(exc.code, parse_strict_json(data), location)
        except (OSError, ValueError, http.client.HTTPException) as inner:
            raise FetchError(_network_cause(inner, url, timeout).replace("fetching", "posting to")) from None
        finally:
            exc.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
        raise FetchError(_network_cause(exc, url, timeout).replace("fetching", "posting to")) from None
