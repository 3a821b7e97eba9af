"""RFC 7662 token introspection: opaque access tokens, judged by the authorization server.

When ``INTROSPECTION_URL`` is set, a bearer token that is not a compact JWS (not three
dot-separated segments: a random string, a JWE) is sent to that endpoint; compact JWS tokens
are still validated with keys, as before (:mod:`token_middleware.core.validator`).

Trusted: the endpoint at ``INTROSPECTION_URL`` and nothing else. It is reached over TLS (plain
http only to a loopback address, checked at start-up), with this service's own credential
(``CLIENT_ID``, ``CLIENT_SECRET``) as HTTP Basic (``client_secret_basic``, RFC 6749 §2.3.1).
Redirects are never followed (a 3xx is an outage whose cause names the ``Location``), so
neither the token nor the secret can be sent anywhere else. Every call is bounded by
``HTTP_TIMEOUT`` (a whole-answer deadline) and by a size limit: the transport is
:func:`token_middleware.core.oauth_post.post_form`, shared with the token exchange.

Not trusted: the token, and the answer's shape. The token is sent only when it is a well-formed
``b64token`` within ``MAX_TOKEN_BYTES``. The answer must be a JSON object without duplicate
member names whose ``active`` is a boolean; ``active`` must be exactly ``true``, and then the
answer's members get the very claim checks of a JWT (the validator's ``claim_steps``, with
``INTROSPECTION_REQUIRED_CLAIMS`` as the required claims): ``iss`` in ``ISSUER``, the
audience, ``exp``/``nbf``/``iat`` with ``LEEWAY``, the types of ``sub``, ``client_id``, ``jti``
and the scope claims, the deployer's ``claim_checks``. A member that is absent and not
required is not checked (DESIGN.md).

Caching (by the validator, in the same bounded cache as verified JWTs, keyed by the exact token
string like them, since :attr:`AccessToken.raw` keeps it for propagation anyway): a positive
answer is kept until its ``exp`` and at most ``INTROSPECTION_CACHE_SECONDS`` after the call was
sent. Negative answers are not cached. Concurrent requests for the same token share one call.

Outages: an endpoint that cannot be reached, times out, answers anything but 200 with an RFC
7662 answer, or refuses our credential gives :class:`IntrospectionUnavailable`, a 503 with
``Retry-After`` (a :class:`KeysUnavailable`, so every adapter answers it alike). For
``Retry-After`` seconds after a failure, new tokens fail at once instead of each waiting for a
timeout; cached answers go on being used until they expire. The cause is logged on the
``token_middleware.introspection`` logger (a WARNING at the first failure, then at most every
30 s for the same cause, an INFO line when it recovers). Neither the token nor the secret is
ever logged, nor put in a cause.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from .errors import InvalidToken, KeysUnavailable, MalformedToken, TokenTooLarge
from .keys import FetchError, _shown
from .oauth_post import MAX_ANSWER_BYTES, NoRedirects, basic_credential, post_form
from .settings import Settings
from .token import AccessToken

__all__ = [
    "MAX_ANSWER_BYTES",
    "InactiveToken",
    "IntrospectionUnavailable",
    "Introspector",
    "basic_credential",
    "http_post_form",
    "is_compact_jws",
]

log = logging.getLogger("token_middleware.introspection")

WARNING_INTERVAL = 30.0

# RFC 6750 §2.1 b64token: the only strings ever sent to the endpoint.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class InactiveToken(InvalidToken):
    """The introspection endpoint answered ``active: false``: 401 ``invalid_token``.

    RFC 7662 §2.2: the server need not say why (expired, revoked, unknown, not for this
    client), so neither do we.
    """

    reason: ClassVar[str] = "inactive"
    default_description = "the access token is not active"


class IntrospectionUnavailable(KeysUnavailable):
    """The introspection endpoint cannot answer: 503 with ``Retry-After``, never a 401.

    ``cause`` says why in operator terms ("connection refused by 127.0.0.1:9 posting to …",
    "HTTP 401 from …: check CLIENT_ID and CLIENT_SECRET"); it never reaches clients.
    """

    reason: ClassVar[str] = "introspection_unavailable"
    default_description = "the access token cannot be checked right now, retry shortly"


def is_compact_jws(raw: str) -> bool:
    """Whether ``raw`` has the shape of a compact JWS (three segments), to be checked with keys."""
    return raw.count(".") == 2


def http_post_form(
    opener: urllib.request.OpenerDirector | None,
    url: str,
    form: Mapping[str, str],
    authorization: str,
    timeout: float,
) -> Any:
    """POST ``form`` to ``url`` (:func:`.oauth_post.post_form`) and give its 200 answer's JSON.

    Raises :class:`~token_middleware.core.keys.FetchError` naming the cause and the URL (never
    the form's values, nor the credential): no answer, a status other than 200 (a redirect is
    never followed), or a body that is not strict JSON (duplicate member names refused).
    """
    answer = post_form(url, form, authorization, timeout, opener=opener)
    if answer.status != 200:
        raise FetchError(_status_cause(answer.status, url, answer.location), status=answer.status)
    if answer.body is None:
        raise FetchError(f"the answer from {url} is not JSON")
    return answer.body


def _status_cause(status: int, url: str, location: str | None) -> str:
    if 300 <= status < 400:
        where = f" to {_shown(location)}" if location else ""
        return (f"HTTP {status} from {url}: the redirect{where} is not followed; "
                "set INTROSPECTION_URL to the endpoint itself")
    if status in (401, 403):
        return f"HTTP {status} from {url}: the endpoint refused this service's credential; check CLIENT_ID and CLIENT_SECRET"
    return f"HTTP {status} from {url}"


#: ``post(url, form, authorization, timeout) -> answer``: the transport, replaceable in tests.
Poster = Callable[[str, Mapping[str, str], str, float], Any]
ClaimCheck = Callable[[dict[str, Any], float], None]


class _Flight:
    """One call in progress; the requests that wait for it share its outcome."""

    __slots__ = ("done", "answer", "cause", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.waiters = 0  # requests sharing this call (changed under the introspector's lock)
        self.answer: dict[str, Any] | None = None
        self.cause = "the introspection call was interrupted"


class Introspector:
    """Asks ``INTROSPECTION_URL`` about opaque tokens, and judges the answer.

    Built by :class:`~token_middleware.core.validator.TokenValidator`, which hands it its own
    ``claim_checks`` (the JWT claim steps, with ``INTROSPECTION_REQUIRED_CLAIMS`` as required
    claims) and ``build`` (claims → :class:`AccessToken`), and caches what :meth:`validate`
    returns. ``post`` replaces the HTTP transport (tests); ``clock`` is the validator's.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        claim_checks: Sequence[ClaimCheck],
        build: Callable[[str, dict[str, Any]], AccessToken],
        post: Poster | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not settings.introspection_url or settings.client_id is None or settings.client_secret is None:
            raise ValueError("introspection needs INTROSPECTION_URL, CLIENT_ID and CLIENT_SECRET")
        self.url: str = settings.introspection_url
        self.timeout = settings.http_timeout
        self.cache_seconds = settings.introspection_cache_seconds
        self.max_token_bytes = settings.max_token_bytes
        #: ``Retry-After`` of a 503, and how long new tokens fail at once after a failure.
        self.retry_after = max(1, min(5, settings.jwks_min_refresh_seconds))
        self._claim_checks = tuple(claim_checks)
        self._build = build
        self._clock = clock
        self._authorization = basic_credential(settings.client_id, settings.client_secret)
        if post is None:
            opener = urllib.request.build_opener(NoRedirects)
            post = lambda url, form, auth, timeout: http_post_form(opener, url, form, auth, timeout)  # noqa: E731
        self._post = post
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._failed_at: float | None = None
        self._warned: dict[str, float] = {}
        #: Why the last call failed, in operator terms; ``None`` once a call succeeds.
        self.last_error: str | None = None
        #: HTTP calls made (successful or not): for tests and benchmarks.
        self.call_count = 0

    def __repr__(self) -> str:
        return f"Introspector(url={self.url!r})"  # never the credential

    # -- the judgement ----------------------------------------------------------------------

    def validate(self, raw: str, now: float) -> tuple[AccessToken, float]:
        """The :class:`AccessToken` of an opaque ``raw`` token, and until when it may be cached.

        Raises :class:`InactiveToken`, another :class:`InvalidToken` (a claim check), or
        :class:`IntrospectionUnavailable`. ``now`` is taken before the call, so the cache time
        counts from when the question was sent.
        """
        if len(raw) > self.max_token_bytes:
            raise TokenTooLarge()
        if not _B64TOKEN.fullmatch(raw):
            raise MalformedToken("the access token is not a well-formed bearer token")
        answer = self.introspect(raw)
        # RFC 7662 §2.2: "active" is REQUIRED; anything but exactly true is refused.
        if answer["active"] is not True:
            raise InactiveToken()
        claims = dict(answer)  # each request gets its own copy of a shared answer
        for check in self._claim_checks:
            check(claims, now)
        token = self._build(raw, claims)
        until = now + self.cache_seconds
        exp = claims.get("exp")
        if exp is not None:
            until = min(until, float(exp))  # the claim steps checked it is a finite number
        return token, until

    # -- the call ---------------------------------------------------------------------------

    def introspect(self, raw: str) -> dict[str, Any]:
        """The endpoint's answer about ``raw`` (``active`` a boolean), one call per token at a time.

        Concurrent callers for the same token wait for the first one's call and share its
        answer. Raises :class:`IntrospectionUnavailable`.
        """
        with self._lock:
            flight = self._flights.get(raw)
            leader = flight is None
            if flight is None:
                failed_at, now = self._failed_at, self._clock()
                if failed_at is not None and 0 <= now - failed_at < self.retry_after:
                    raise self._unavailable(self.last_error)
                flight = self._flights[raw] = _Flight()
            else:
                flight.waiters += 1
        if not leader:
            if not flight.done.wait(self.timeout + 1):
                raise self._unavailable("timed out waiting for a shared introspection call")
            return self._outcome(flight)
        try:
            flight.answer = self._call(raw)
        except FetchError as exc:
            flight.cause = str(exc)
            self._failure(flight.cause)
        finally:
            with self._lock:
                self._flights.pop(raw, None)
            flight.done.set()
        return self._outcome(flight)

    def _call(self, raw: str) -> dict[str, Any]:
        self.call_count += 1
        # RFC 7662 §2.1: POST, form-encoded "token", with the optional hint.
        answer = self._post(self.url, {"token": raw, "token_type_hint": "access_token"},
                            self._authorization, self.timeout)
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise FetchError(f"the answer from {self.url} is not an RFC 7662 answer "
                             "(a JSON object with a boolean 'active')")
        if self.last_error is not None:
            log.info("the introspection endpoint %s answers again", self.url)
        self.last_error, self._failed_at = None, None
        self._warned.clear()
        return answer

    def _outcome(self, flight: _Flight) -> dict[str, Any]:
        if flight.answer is None:
            raise self._unavailable(flight.cause)
        return flight.answer

    def _unavailable(self, cause: str | None) -> IntrospectionUnavailable:
        return IntrospectionUnavailable(retry_after=self.retry_after, cause=cause)

    def _failure(self, cause: str) -> None:
        now = self._clock()
        self.last_error, self._failed_at = cause, now
        last = self._warned.get(cause)
        if last is not None and 0 <= now - last < WARNING_INTERVAL:
            log.debug("introspection failed again: %s", cause)
            return
        if len(self._warned) >= 16:
            self._warned.clear()
        self._warned[cause] = now
        log.warning("cannot introspect opaque tokens, requests with one get 503: %s", cause)
