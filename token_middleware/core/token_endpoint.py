"""The token endpoint on the wire: an RFC 8693 exchange request, and reading its answer.

:mod:`token_middleware.core.exchange` decides when to exchange and caches the result; this module
only speaks the protocol, with the standard library's HTTP client as
:mod:`token_middleware.core.keys` does (the core imports no requests or httpx):

- :func:`exchange_form`: the form fields of RFC 8693 §2.1, for an access token and one audience;
- ``client_secret_basic`` is :func:`token_middleware.core.oauth_post.basic_credential`, the
  one encoder of it (RFC 6749 §2.3.1: id and secret form-encoded, joined by ``:``, base64);
- :func:`http_post_form`: the POST, through :func:`token_middleware.core.oauth_post.post_form`
  (shared with introspection): bounded by a whole-answer deadline and a size limit, error
  bodies read for their RFC 6749 code, duplicate JSON member names refused. A redirect is an
  answer, never followed: following it would carry the secret elsewhere;
- :func:`read_answer`: a 200 answer checked (RFC 8693 §2.2.1: a ``Bearer`` token made of token
  characters, an access-token ``issued_token_type``, a positive ``expires_in``), or an RFC 6749
  §5.2 error code.

Trusted: nothing the endpoint sends. What is read from an answer is checked and what is logged
from it is quoted and shortened (:func:`token_middleware.core.keys._shown`). The secret and the
tokens are never put in a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .keys import _shown
from .oauth_post import post_form

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


def http_post_form(url: str, form: Mapping[str, str], authorization: str, timeout: float) -> tuple[int, Any]:
    """POST ``form`` to ``url`` with ``Authorization``: ``(status, JSON body or None)``, the
    default :data:`Poster` (:func:`.oauth_post.post_form`: one whole-answer deadline, a size
    limit, strict JSON, redirects answered and never followed; proxies are the environment's).
    Raises :class:`~token_middleware.core.keys.FetchError` (naming the cause and the URL) when
    no answer came.
    """
    answer = post_form(url, form, authorization, timeout)
    return answer.status, answer.body
