"""One exception tree for everything token-middleware refuses, mapped onto RFC 6750.

Callers catch at the level they care about::

    TokenMiddlewareError
    ├── ConfigurationError              bad settings: raised at start-up, never per request
    └── BearerError                     an HTTP answer: status_code, error, description
        ├── MissingToken                401, plain ``Bearer realm="…"`` challenge, no error code
        ├── InvalidRequest              400 invalid_request (malformed Authorization header)
        ├── InvalidToken                401 invalid_token
        │   ├── TokenTooLarge, MalformedToken, UnsupportedSerialization
        │   ├── InvalidHeader, DisallowedAlgorithm, CriticalHeader, InvalidType
        │   ├── UnknownKey, InvalidSignature
        │   ├── RevokedToken            refused by the ``is_revoked`` hook
        │   └── InvalidClaim (.claim)   (also what a failing ``claim_checks`` entry raises)
        │       ├── MissingClaim, ExpiredToken, NotYetValid, IssuedInFuture
        │       └── InvalidIssuer, InvalidAudience
        ├── InsufficientScope           403 insufficient_scope, ``scope="…"`` in the challenge
        └── KeysUnavailable             503 with Retry-After: the keys cannot be had at all
            └── RevocationUnavailable   503 too: the ``is_revoked`` hook failed

Every ``description`` is short and safe to show a client: it never contains the token, a key, or
a stack trace. Errors build their own ``WWW-Authenticate`` header; adapters only serialise them.

Reason codes
------------
Every class of the tree has a stable ``reason`` class attribute: a short ``^[a-z_]+$`` code that
metrics labels (``token_middleware_refusals_total{reason}``), the audit log, the hooks and
``token-middleware inspect`` all use the same way. A code names a *meaning*, so it never changes
once released; a subclass with a meaning of its own gets a code of its own. Codes are class-level
constants, never built from request data, so they are safe as metric label values::

    error                       TokenMiddlewareError (base; never raised as such)
    configuration               ConfigurationError
    refused                     BearerError (base)
    missing_token               MissingToken
    invalid_request             InvalidRequest
    invalid_token               InvalidToken (base, or a subclass defined elsewhere without one)
    too_large                   TokenTooLarge
    malformed                   MalformedToken
    unsupported_serialization   UnsupportedSerialization
    header                      InvalidHeader
    algorithm                   DisallowedAlgorithm
    critical_header             CriticalHeader
    type                        InvalidType
    unknown_key                 UnknownKey
    signature                   InvalidSignature
    revoked                     RevokedToken
    claim                       InvalidClaim (a ``claim_checks`` entry, a claim of the wrong type)
    missing_claim               MissingClaim
    expired                     ExpiredToken
    not_yet_valid               NotYetValid
    issued_in_future            IssuedInFuture
    issuer                      InvalidIssuer
    audience                    InvalidAudience
    unknown_user                UnknownUser
    insufficient_scope          InsufficientScope
    keys_unavailable            KeysUnavailable
    revocation_unavailable      RevocationUnavailable

Exception classes defined in other modules of the package (introspection, exchange, …) set their
own ``reason`` too; ``tests/observability/test_reason_codes.py`` checks that every class in the
package has one, well-formed and unique.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar


class TokenMiddlewareError(Exception):
    """Base class of every exception raised by token-middleware."""

    reason: ClassVar[str] = "error"


class ConfigurationError(TokenMiddlewareError, ValueError):
    """Invalid settings. Raised when the app starts, with a message that names the fix.

    ``setting`` is the configuration NAME at fault (``"ISSUER"``), when there is one.
    """

    reason: ClassVar[str] = "configuration"

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


def _quote(value: str) -> str:
    # RFC 7235 quoted-string: escape backslash and double quote; drop control characters.
    cleaned = "".join(ch for ch in value if ch >= " " and ch != "\x7f")
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


class BearerError(TokenMiddlewareError):
    """A refusal that becomes an HTTP response (RFC 6750 §3)."""

    reason: ClassVar[str] = "refused"
    status_code: int = 401
    error: str | None = None
    default_description: str = ""

    def __init__(self, description: str | None = None) -> None:
        self.description = description if description is not None else self.default_description
        super().__init__(self.description)

    def www_authenticate(self, realm: str) -> str | None:
        """The ``WWW-Authenticate`` value for this error, or ``None`` when it has none."""
        params = [f"realm={_quote(realm)}"]
        if self.error:
            params.append(f"error={_quote(self.error)}")
            if self.description:
                params.append(f"error_description={_quote(self.description)}")
        params.extend(self._extra_params())
        return "Bearer " + ", ".join(params)

    def _extra_params(self) -> list[str]:
        return []

    def headers(self, realm: str) -> list[tuple[str, str]]:
        """Response headers: the challenge, and ``Retry-After`` where it applies."""
        challenge = self.www_authenticate(realm)
        return [("WWW-Authenticate", challenge)] if challenge else []

    def to_dict(self) -> dict[str, str]:
        """The JSON body: ``{"error": …, "error_description": …}``."""
        body = {"error": self.error or "unauthorized"}
        if self.description:
            body["error_description"] = self.description
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"


class MissingToken(BearerError):
    """No bearer credentials on a request that needs them (RFC 6750 §3.1: no error code)."""

    reason: ClassVar[str] = "missing_token"
    status_code = 401
    error = None
    default_description = "an access token is required"


class InvalidRequest(BearerError):
    """The request is malformed: wrong ``Authorization`` syntax, two tokens, an empty token."""

    reason: ClassVar[str] = "invalid_request"
    status_code = 400
    error = "invalid_request"
    default_description = "malformed Authorization header"


class InvalidToken(BearerError):
    """The token is expired, revoked, malformed or invalid for other reasons."""

    reason: ClassVar[str] = "invalid_token"
    status_code = 401
    error = "invalid_token"
    default_description = "the access token is invalid"


class TokenTooLarge(InvalidToken):
    reason: ClassVar[str] = "too_large"
    default_description = "the access token is too large"


class MalformedToken(InvalidToken):
    reason: ClassVar[str] = "malformed"
    default_description = "the access token is not a well-formed JWT"


class UnsupportedSerialization(MalformedToken):
    """JWE, JSON serialization or unencoded payloads (``b64: false``): compact JWS only."""

    reason: ClassVar[str] = "unsupported_serialization"
    default_description = "only compact JWS access tokens are accepted"


class InvalidHeader(InvalidToken):
    reason: ClassVar[str] = "header"
    default_description = "the token header is invalid"


class DisallowedAlgorithm(InvalidHeader):
    reason: ClassVar[str] = "algorithm"
    default_description = "the token's signing algorithm is not allowed"


class CriticalHeader(InvalidHeader):
    reason: ClassVar[str] = "critical_header"
    default_description = "the token has critical header parameters that are not supported"


class InvalidType(InvalidHeader):
    reason: ClassVar[str] = "type"
    default_description = "the token is not an access token (typ)"


class UnknownKey(InvalidToken):
    reason: ClassVar[str] = "unknown_key"
    default_description = "the token was signed with an unknown key"


class InvalidSignature(InvalidToken):
    """The signature does not verify, or its segment is not valid base64url."""

    reason: ClassVar[str] = "signature"
    default_description = "the signature is not valid"


class RevokedToken(InvalidToken):
    """The ``is_revoked`` hook of :class:`~token_middleware.core.validator.TokenValidator` said so."""

    reason: ClassVar[str] = "revoked"
    default_description = "the token has been revoked"


class InvalidClaim(InvalidToken):
    """A claim is missing, of the wrong type, or has a value we refuse. ``claim`` names it."""

    reason: ClassVar[str] = "claim"
    default_description = "a token claim is invalid"

    def __init__(self, description: str | None = None, *, claim: str | None = None) -> None:
        super().__init__(description)
        self.claim = claim


class MissingClaim(InvalidClaim):
    reason: ClassVar[str] = "missing_claim"
    default_description = "a required claim is missing"


class ExpiredToken(InvalidClaim):
    reason: ClassVar[str] = "expired"
    default_description = "the access token has expired"


class NotYetValid(InvalidClaim):
    reason: ClassVar[str] = "not_yet_valid"
    default_description = "the access token is not valid yet"


class IssuedInFuture(InvalidClaim):
    reason: ClassVar[str] = "issued_in_future"
    default_description = "the access token was issued in the future"


class InvalidIssuer(InvalidClaim):
    reason: ClassVar[str] = "issuer"
    default_description = "the issuer is not trusted"


class InvalidAudience(InvalidClaim):
    reason: ClassVar[str] = "audience"
    default_description = "the token is not meant for this service"


class UnknownUser(InvalidToken):
    """A user loader found no user of this service for a valid token (Flask and Django alike)."""

    reason: ClassVar[str] = "unknown_user"
    default_description = "the token's subject is not a user of this service"


class InsufficientScope(BearerError):
    """The token is valid but lacks the scopes the view needs (RFC 6750 §3.1)."""

    reason: ClassVar[str] = "insufficient_scope"
    status_code = 403
    error = "insufficient_scope"
    default_description = "the access token lacks the required scope"

    def __init__(
        self, required: Iterable[str], description: str | None = None, *, any_of: bool = False
    ) -> None:
        self.required: tuple[str, ...] = tuple(required)
        self.any_of = any_of
        if description is None:
            joined = " ".join(self.required)
            description = (
                f"one of these scopes is required: {joined}"
                if any_of and len(self.required) > 1
                else f"required scope: {joined}"
            )
        super().__init__(description)

    @classmethod
    def for_requirement(cls, alternatives: Iterable[Iterable[str]]) -> InsufficientScope:
        """The refusal of an "any of all of" requirement (``((a, b), (admin,))``).

        ``scope=`` lists every scope named, once each; the description says which combinations
        would do ("required scopes: a b, or admin").
        """
        groups = [tuple(group) for group in alternatives]
        if all(len(group) == 1 for group in groups):
            return cls([group[0] for group in groups], any_of=len(groups) > 1)
        if len(groups) == 1:
            return cls(groups[0])
        named = list(dict.fromkeys(scope for group in groups for scope in group))
        words = ", or ".join(" ".join(group) for group in groups)
        return cls(named, f"required scopes: {words}", any_of=True)

    def _extra_params(self) -> list[str]:
        return [f"scope={_quote(' '.join(self.required))}"] if self.required else []


class KeysUnavailable(BearerError):
    """The verification keys cannot be obtained at all: a server error (503), never a 401.

    ``cause`` says why, in operator terms ("connection refused by 127.0.0.1:9 fetching …"),
    for logs and ``token-middleware inspect``. It is never put in the response: clients get
    only ``description`` and ``Retry-After``.
    """

    reason: ClassVar[str] = "keys_unavailable"
    status_code = 503
    error = "temporarily_unavailable"
    default_description = "the token signing keys are unavailable, retry shortly"

    def __init__(
        self, description: str | None = None, *, retry_after: int = 5, cause: str | None = None
    ) -> None:
        super().__init__(description)
        self.retry_after = max(1, int(retry_after))
        self.cause = cause

    def www_authenticate(self, realm: str) -> str | None:
        return None

    def headers(self, realm: str) -> list[tuple[str, str]]:
        return [("Retry-After", str(self.retry_after))]


class RevocationUnavailable(KeysUnavailable):
    """The ``is_revoked`` hook raised: whether the token is revoked cannot be known right now.

    A denylist that cannot be read is an outage, like a key server that cannot be reached: 503
    with ``Retry-After``, never a 401 (the client did nothing wrong) and never a 500. It is a
    :class:`KeysUnavailable` so that every adapter answers it the same way.
    """

    reason: ClassVar[str] = "revocation_unavailable"
    default_description = "the token cannot be checked right now, retry shortly"
