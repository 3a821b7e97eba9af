"""TokenValidator: the whole access-token policy, in one place.

Trusted: the settings and the keys from the configured source (:mod:`token_middleware.core.keys`).
Not trusted: every byte of the token. The checks, in order (RFC 7519, RFC 8725, RFC 9068 §4):

1. size: longer than ``MAX_TOKEN_BYTES`` is refused before any parsing;
2. form: compact JWS only — three strict, canonical, unpadded base64url segments. JWE (five
   segments), JSON serialization and unencoded payloads (``b64: false``) are refused. With
   ``INTROSPECTION_URL``, a token that is not three segments is not refused here: it is
   introspected (RFC 7662, :mod:`token_middleware.core.introspection`), and the answer gets
   the claim steps of step 5 with ``INTROSPECTION_REQUIRED_CLAIMS`` as the required claims;
3. header: a JSON object without duplicate names; ``crit`` is refused; ``typ`` must be in
   ``ACCEPTED_TYPES`` (compared case-insensitively; the word ``absent`` there accepts a header
   without ``typ``); ``alg`` must be in ``ALGORITHMS`` (``none``
   never is) and is matched against the key's type; ``kid``, when present, must be a string.
   ``jku``, ``x5u``, ``jwk`` and ``x5c`` are ignored: keys come only from configuration;
4. signature: checked with the key selected by ``kid`` and ``alg``. Just before, the payload is
   decoded (strictly, not trusted yet): an ``iss`` present and not in ``ISSUER`` is refused as
   :class:`InvalidIssuer` with no key lookup, so a foreign issuer's token never costs a JWKS
   refetch. The unverified ``iss`` only ever chooses between two refusals;
5. claims: ``REQUIRED_CLAIMS`` present; ``iss`` exactly one of ``ISSUER``; ``aud`` (a string or
   an array of strings; or another of ``AUDIENCE_CLAIMS``) contains ``AUDIENCE``; ``exp``, ``nbf`` and ``iat`` are finite JSON
   numbers (not strings, not booleans) checked with ``LEEWAY``, and ``iat`` is not in the
   future; ``sub``, ``client_id`` and ``jti`` are strings; scope claims (names or dotted paths)
   are a string or a list of strings; ``act`` (RFC 8693 §4.1), when present, is an actor chain: objects with a ``sub``
   string, nested under ``act``, at most 16 deep.

The header and claim checks are named :class:`Step` objects (``header_steps``, ``claim_steps``):
:meth:`TokenValidator.validate` runs them and :meth:`TokenValidator.explain` walks the very same
list, adding words, so the two can never disagree about what is checked.

Extension points (:mod:`token_middleware.core.hooks`, the deployer's own code): ``claim_checks``
are appended to ``claim_steps`` (``claim check: <qualname>``); ``is_revoked`` is asked on every
acceptance, verified-cache hits included. Both can only refuse.

A verified token is cached (bounded, least recently verified out first; once the cache is full, a
token goes in on its second verification) by its exact string, until its ``exp`` and only while
the key that verified it is still in the key set. The strict base64url decoder rejects
non-canonical encodings, but ECDSA signatures are malleable: for ES256, (r, s) and (r, n - s)
are both valid, so one token has two spellings that verify. Never key anything
security-relevant (a denylist, an exchange cache) on the raw string: use ``jti``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from . import _jose, b64url
from .bearer import extract_token
from .explain import (
    Check,
    describe_alg,
    describe_audience,
    describe_issuer,
    describe_required,
    describe_time,
    describe_typ,
    explain,
)
from .errors import (
    ConfigurationError,
    CriticalHeader,
    DisallowedAlgorithm,
    ExpiredToken,
    InvalidAudience,
    InvalidClaim,
    InvalidHeader,
    InvalidIssuer,
    InvalidSignature,
    InvalidType,
    IssuedInFuture,
    MalformedToken,
    MissingClaim,
    NotYetValid,
    TokenTooLarge,
    UnsupportedSerialization,
)
from .hooks import ClaimCheck, Hooks, RevocationCheck, hook_name
from .introspection import Introspector, is_compact_jws
from .keys import KeySet, KeySource, RemoteKeySource, StaticKeySource, VerificationKey, load_key_file
from .observe import Observer, Tracer, Watch
from .scopes import claim_value, parse_scopes, scope_value_is_valid
from .settings import Settings
from .strict_json import MAX_TIME, is_number, json_object
from .token import MAX_ACTORS, AccessToken, parse_actors


_TIME_CLAIMS = ("exp", "nbf", "iat")
_HEADER_CACHE_SIZE = 64
_STRING_CLAIMS = ("sub", "client_id", "jti")


_ABSENT = object()
#: The word in ``ACCEPTED_TYPES`` that accepts a header without ``typ``.
ABSENT_TYPE = "absent"

class Parsed(NamedTuple):
    """A compact JWS split and decoded (signature not yet checked). Immutable, and cheap to build."""

    header: dict[str, Any]
    signing_input: bytes
    payload_segment: str
    signature: bytes


class Step(NamedTuple):
    """One named check, shared by :meth:`TokenValidator.validate` and :meth:`TokenValidator.explain`.

    ``check`` raises an :class:`~token_middleware.core.errors.InvalidToken` subclass when the
    check fails; ``describe`` gives ``explain`` its words: (detail when passed, context when
    failed). Header steps take the header, claim steps take (claims, now).
    """

    name: str
    check: Callable[..., None]
    describe: Callable[..., tuple[str, str]]


class _Entry:
    __slots__ = ("token", "key", "expires_at")

    def __init__(self, token: AccessToken, key: VerificationKey | None, expires_at: float) -> None:
        self.token = token
        self.key = key
        self.expires_at = expires_at


def build_key_source(settings: Settings, issuer: str | None = None, watch: Watch | None = None) -> KeySource:
    """The key source the settings describe (static file, JWKS URL, or discovery).

    ``watch`` (:mod:`.observe`) is told of every fetch of a remote key set."""
    if settings.public_keys:
        return StaticKeySource(load_key_file(settings.public_keys, settings.algorithms))
    return RemoteKeySource(
        algorithms=settings.algorithms,
        jwks_url=settings.jwks_url,
        issuer=issuer or settings.issuer,
        cache_seconds=settings.jwks_cache_seconds,
        min_refresh_seconds=settings.jwks_min_refresh_seconds,
        timeout=settings.http_timeout,
        watch=watch,
    )


class TokenValidator:
    """Validates access tokens against :class:`Settings`.

    ``keys`` overrides the key source built from the settings (a static file, the JWKS URL, or
    one discovered JWKS per trusted issuer). ``cache_size=0`` disables the verified-token cache.
    ``is_revoked(token) -> bool`` and ``claim_checks`` (functions of the verified claims) can
    only refuse a token; see :mod:`token_middleware.core.hooks`. Both are checked here, at
    start-up (:class:`ConfigurationError`), and fixed for the life of the validator.
    ``observers`` (plain callables of an event, see :mod:`token_middleware.core.observe`) are
    told of every verdict and every key fetch; they can never change a verdict. Without them
    :attr:`watch` is ``None`` and the hot path pays one comparison.

    .. warning:: The accepted algorithms are always ``settings.algorithms``; the token's ``alg``
       header only selects among them (RFC 8725 §2.1, §3.1).
    """

    def __init__(
        self,
        settings: Settings,
        keys: KeySource | None = None,
        *,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
        is_revoked: RevocationCheck | None = None,
        claim_checks: Sequence[ClaimCheck] = (),
        observers: Sequence[Observer | Tracer] = (),
    ) -> None:
        self.settings = settings
        #: The observers (:mod:`token_middleware.core.observe`), or ``None``: nothing to tell.
        self.watch: Watch | None = Watch(observers) if observers else None
        self.cache_size = cache_size
        self._clock = clock
        self._hooks = Hooks(is_revoked, claim_checks)
        self._is_revoked = self._hooks.is_revoked  # read on the hot path: None costs one compare
        self._sources: dict[str, KeySource]
        if keys is not None:
            self._sources = {iss: keys for iss in settings.issuers}
            if isinstance(keys, RemoteKeySource) and keys.watch is None:
                keys.watch = self.watch  # a source handed in is watched like one built here
        elif settings.public_keys or settings.jwks_url or len(settings.issuers) == 1:
            shared = build_key_source(settings, watch=self.watch)
            self._sources = {iss: shared for iss in settings.issuers}
        else:
            self._sources = {iss: build_key_source(settings, iss, self.watch) for iss in settings.issuers}
        distinct = {id(s): s for s in self._sources.values()}
        self._single_source: KeySource | None = (
            next(iter(distinct.values())) if len(distinct) == 1 else None
        )
        self._issuers = frozenset(settings.issuers)
        self._algorithms = frozenset(settings.algorithms)
        # The word "absent" in ACCEPTED_TYPES accepts a header without typ (Okta, Cognito); it
        # is never matched as a typ value itself.
        self._accepted_types = frozenset(settings.accepted_types) - {ABSENT_TYPE}
        self._typ_may_be_absent = ABSENT_TYPE in settings.accepted_types
        self._scope_claims = settings.scope_claims
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._seen: set[int] = set()  # the cache's doorkeeper (see _admit)
        # cached() may answer from a bearer header alone: no is_revoked hook to ask (it may do
        # I/O) and no query token that could make the request ambiguous.
        self._header_hits = self._is_revoked is None and not settings.allow_query_token
        # Header segments that already passed check_header(): most tokens of one issuer share
        # the same header, so it is decoded and checked once. Bounded; cleared when full.
        self._headers: dict[str, dict[str, Any]] = {}
        self.header_steps: tuple[Step, ...] = (
            Step("critical headers", self._check_crit, lambda h: ("no crit, b64 or enc header", "")),
            Step("algorithm", self._check_alg, lambda h: describe_alg(settings, h)),
            Step("type", self._check_typ, lambda h: describe_typ(settings, h)),
            Step("key id", self._check_kid, lambda h: (f"kid {h.get('kid')!r}", "")),
        )
        self.claim_steps: tuple[Step, ...] = (
            Step("required claims", self._check_required, lambda c, now: describe_required(settings, c)),
            Step("claim types", self._check_types, lambda c, now: ("ok", "")),
            Step("issuer", self._check_issuer, lambda c, now: describe_issuer(settings, c)),
            Step("audience", self._check_audience, lambda c, now: describe_audience(settings, c)),
            Step("expiry", self._check_exp, lambda c, now: describe_time(settings, "exp", c, now)),
            Step("not before", self._check_nbf, lambda c, now: describe_time(settings, "nbf", c, now)),
            Step("issued at", self._check_iat, lambda c, now: describe_time(settings, "iat", c, now)),
            *(Step(f"claim check: {hook_name(check)}", self._hooks.claim_step(check), lambda c, now: ("passed", ""))
              for check in self._hooks.claim_checks),
        )
        self._header_checks = tuple(step.check for step in self.header_steps)
        self._claim_checks = tuple(step.check for step in self.claim_steps)
        #: RFC 7662 introspection of opaque tokens (:mod:`.introspection`), or ``None``.
        self.introspector: Introspector | None = (
            self._make_introspector() if settings.introspection_url else None
        )

    @property
    def key_sources(self) -> tuple[KeySource, ...]:
        return tuple({id(s): s for s in self._sources.values()}.values())

    @property
    def is_revoked(self) -> RevocationCheck | None:
        """The revocation hook this validator asks on every acceptance, or ``None``."""
        return self._is_revoked

    @property
    def claim_checks(self) -> tuple[ClaimCheck, ...]:
        """The extra claim checks, run after the built-in ones (the last ``claim_steps``)."""
        return self._hooks.claim_checks

    # -- public API -------------------------------------------------------------------------

    def cached(self, authorization: str | None) -> AccessToken | None:
        """The token of an ``Authorization`` header when it is verified, cached and still fresh.

        No parsing and no I/O (an async adapter may call it on the event loop); ``None`` means
        "ask :meth:`authenticate`", never "refused". With an ``is_revoked`` hook it is always
        ``None``: the hook may do I/O, so it is asked in :meth:`authenticate`, on every hit.
        """
        key = self._cache_key(authorization)
        return None if key is None else self._hit(key)

    def authenticate(self, authorization: str | None, query_string: str | None = None) -> AccessToken | None:
        """The validated token of a request, or ``None`` when it carries no bearer credential."""
        key = self._cache_key(authorization)
        if key is not None:
            token = self._hit(key)
            if token is not None:
                return token
        raw = extract_token(authorization, query_string, allow_query=self.settings.allow_query_token)
        if raw is None:
            return None
        if raw == key:
            # Just looked up (and dropped if stale): one cache lookup per request, not two.
            return self._validate_with(self._miss, raw)
        return self.validate(raw)

    def _cache_key(self, authorization: str | None) -> str | None:
        # The string a bearer header's verified token is cached under, when the cache may answer
        # from the header alone (no is_revoked hook, no query token).
        if self._header_hits and authorization is not None and authorization[:7] == "Bearer ":
            return authorization[7:]
        return None

    def _hit(self, raw: str) -> AccessToken | None:
        # A string that is in the verified cache is a well-formed b64token.
        entry = self._cache.get(raw)
        if entry is None:
            return None
        if self._fresh(entry, self._clock()):
            if self.watch is not None:
                self.watch.accepted_from_cache(entry.token)
            return entry.token
        self._evict(raw)
        return None

    def validate(self, raw: str | bytes) -> AccessToken:
        """Validate ``raw`` and return the :class:`AccessToken`.

        Raises an :class:`~token_middleware.core.errors.InvalidToken` subclass, or
        :class:`~token_middleware.core.errors.KeysUnavailable` when no keys can be had (or
        its subclass ``RevocationUnavailable`` when the ``is_revoked`` hook fails). With
        observers, the verdict is timed, traced and told to them (:mod:`.observe`).
        """
        return self._validate_with(self._validate, raw)

    def _validate_with(self, validate: Callable[[str | bytes], AccessToken], raw: str | bytes) -> AccessToken:
        if self.watch is None:
            return validate(raw)
        return self.watch.validate(validate, raw)

    def _validate(self, raw: str | bytes) -> AccessToken:
        if isinstance(raw, bytes):
            if len(raw) > self.settings.max_token_bytes:
                raise TokenTooLarge()
            try:
                raw = raw.decode("ascii")
            except UnicodeDecodeError:
                raise MalformedToken() from None
        elif not isinstance(raw, str):
            raise MalformedToken()
        entry = self._cache.get(raw) if self.cache_size and len(raw) <= self.settings.max_token_bytes else None
        if entry is not None:
            if self._fresh(entry, self._clock()):
                with self._cache_lock:
                    if raw in self._cache:
                        self._cache.move_to_end(raw)
                if self._is_revoked is not None:
                    self._hooks.check_revoked(entry.token)
                return entry.token
            self._evict(raw)
        return self._miss(raw)

    def _miss(self, raw: str | bytes) -> AccessToken:
        """Validate a token string that is not (or no longer) fresh in the verified cache."""
        assert isinstance(raw, str)
        if len(raw) > self.settings.max_token_bytes:
            raise TokenTooLarge()
        now = self._clock()
        if self.introspector is not None and not is_compact_jws(raw):
            return self._introspect(raw, now)

        parsed = self.parse(raw, self._headers)
        claims, key = self._verify(parsed)
        for check in self._claim_checks:
            check(claims, now)
        token = self._build(raw, claims, parsed.header)
        if self.cache_size:
            # Cached even if revoked: a replayed revoked token then costs a hit, not a verify.
            self._remember(raw, token, key, claims)
        if self._is_revoked is not None:
            self._hooks.check_revoked(token)
        return token

    def prefetch(self, background: bool = True) -> None:
        """Obtain the keys now (in a daemon thread by default). Never raises."""
        for source in self.key_sources:
            if background:
                threading.Thread(target=source.prefetch, name="token-middleware-prefetch", daemon=True).start()
            else:
                source.prefetch()

    def explain(self, raw: str) -> list[Check]:
        """Every check with its verdict, in plain words (for ``token-middleware inspect``).

        Meant for the operator's terminal, not for HTTP clients: the details name the expected
        and the actual values. It walks ``header_steps`` and ``claim_steps``, the very steps
        :meth:`validate` runs (:func:`token_middleware.core.explain.explain`).
        """
        return explain(self, raw)

    # -- steps ------------------------------------------------------------------------------

    def _check_size(self, raw: str) -> None:
        if len(raw) > self.settings.max_token_bytes:
            raise TokenTooLarge()

    def parse(self, raw: str, checked_headers: dict[str, dict[str, Any]] | None = None) -> Parsed:
        """Split and decode a compact JWS (header decoded, payload left encoded).

        With ``checked_headers``, the header is also checked (:meth:`check_header`), and headers
        that passed are remembered there.
        """
        if raw.count(".") != 2:
            if raw.startswith("{"):
                raise UnsupportedSerialization("JSON serialization is not accepted")
            if raw.count(".") == 4:
                raise UnsupportedSerialization("encrypted tokens (JWE) are not accepted")
            raise MalformedToken()
        header_segment, payload_segment, signature_segment = raw.split(".")
        if not header_segment or not payload_segment or not raw.isascii():
            raise MalformedToken()
        if not signature_segment:
            raise InvalidSignature("the token is not signed")
        header = checked_headers.get(header_segment) if checked_headers is not None else None
        if header is None:
            try:
                header_bytes = b64url.decode(header_segment)
            except ValueError:
                raise MalformedToken("the token header is not valid base64url") from None
            header = json_object(header_bytes, "header")
            if checked_headers is not None:
                self.check_header(header)
                if len(checked_headers) >= _HEADER_CACHE_SIZE:
                    checked_headers.clear()
                checked_headers[header_segment] = header
        try:
            signature = b64url.decode(signature_segment)
        except ValueError:
            # A tampered last character often leaves non-canonical trailing bits: to the client
            # that is a signature that does not verify, whatever the strict decoder's reason.
            raise InvalidSignature() from None
        return Parsed(header, raw[: raw.rindex(".")].encode("ascii"), payload_segment, signature)

    def check_header(self, header: Mapping[str, Any]) -> None:
        for check in self._header_checks:
            check(header)

    @staticmethod
    def _check_crit(header: Mapping[str, Any]) -> None:
        if "crit" in header:
            raise CriticalHeader()
        if "b64" in header:
            raise UnsupportedSerialization("unencoded payloads (b64) are not accepted")
        if "enc" in header or "zip" in header:
            raise UnsupportedSerialization("encrypted tokens (JWE) are not accepted")

    def _check_alg(self, header: Mapping[str, Any]) -> None:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise DisallowedAlgorithm()

    def _check_typ(self, header: Mapping[str, Any]) -> None:
        typ = header.get("typ")
        if typ is None and "typ" not in header and self._typ_may_be_absent:
            return
        if not isinstance(typ, str) or typ.lower() not in self._accepted_types:
            raise InvalidType()

    @staticmethod
    def _check_kid(header: Mapping[str, Any]) -> None:
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise InvalidHeader("the key id (kid) is invalid")

    def _source_for(self, issuer: str) -> KeySource:
        if self._single_source is not None:
            return self._single_source
        return self._sources[issuer]

    def _verify(self, parsed: Parsed) -> tuple[dict[str, Any], VerificationKey]:
        header = parsed.header
        alg: str = header["alg"]
        # Not trusted yet: the unverified iss may only turn one refusal into another. A foreign
        # issuer is refused before any key lookup (no refetch for its unknown kid); an absent or
        # null iss is left to the claim steps. Several issuers: it also picks the key source.
        claims = self._decode_payload(parsed)
        iss = claims.get("iss")
        source = self._single_source
        if source is None:
            if not isinstance(iss, str) or iss not in self._issuers:
                raise InvalidIssuer(claim="iss")
            source = self._sources[iss]
        elif iss is not None and (not isinstance(iss, str) or iss not in self._issuers):
            raise InvalidIssuer(claim="iss")
        for key in source.find(header.get("kid"), alg):
            if _jose.verify(key.key, parsed.signing_input, parsed.signature):
                return claims, key
        raise InvalidSignature()

    @staticmethod
    def _decode_payload(parsed: Parsed) -> dict[str, Any]:
        try:
            payload = b64url.decode(parsed.payload_segment)
        except ValueError:
            raise MalformedToken("the token payload is not valid base64url") from None
        return json_object(payload, "payload")

    def _check_required(self, claims: dict[str, Any], now: float) -> None:
        for name in self.settings.required_claims:
            if name not in claims:
                raise MissingClaim(f"the {name} claim is required", claim=name)

    def _check_types(self, claims: dict[str, Any], now: float) -> None:
        for name in _TIME_CLAIMS:
            # A present-but-null claim is a wrong type too (never "does not expire").
            value = claims.get(name, _ABSENT)
            if value is not _ABSENT and not (type(value) is int and -MAX_TIME <= value <= MAX_TIME) \
                    and not is_number(value):
                raise InvalidClaim(f"the {name} claim must be a number", claim=name)
        for name in _STRING_CLAIMS:
            if name in claims and type(claims[name]) is not str:
                raise InvalidClaim(f"the {name} claim must be a string", claim=name)
        for name in self.settings.scope_claims:
            # Nested values too: "realm_access.roles" is checked like a top-level "scp".
            if not scope_value_is_valid(claim_value(claims, name)):
                raise InvalidClaim(f"the {name} claim must be a string or a list of strings", claim=name)
        # RFC 8693 §4.1: act is an object naming the actor (sub), nesting the earlier ones.
        if "act" in claims and (claims["act"] is None or parse_actors(claims["act"]) is None):
            raise InvalidClaim(
                f"the act claim must be an object with a sub string, nesting at most {MAX_ACTORS} actors",
                claim="act",
            )

    def _check_issuer(self, claims: dict[str, Any], now: float) -> None:
        iss = claims.get("iss")
        if iss is None and "iss" not in self.settings.required_claims:
            return
        if not isinstance(iss, str) or iss not in self._issuers:
            raise InvalidIssuer(claim="iss")

    def _check_audience(self, claims: dict[str, Any], now: float) -> None:
        # AUDIENCE must be in one of AUDIENCE_CLAIMS (default: aud; Cognito: client_id). A claim
        # that is absent and not required is skipped; one that is present must be well-typed.
        required = self.settings.required_claims
        names = self.settings.audience_claims
        checked = ok = False
        for name in names:
            aud = claims.get(name)
            if aud is None and name not in required:
                continue
            checked = True
            if isinstance(aud, str):
                ok = ok or aud == self.settings.audience
            elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
                ok = ok or self.settings.audience in aud
            else:
                raise InvalidAudience(f"the {name} claim must be a string or a list of strings", claim=name)
        if checked and not ok:
            raise InvalidAudience(claim=names[0])

    def _check_exp(self, claims: dict[str, Any], now: float) -> None:
        exp = claims.get("exp")
        if exp is not None and now > exp + self.settings.leeway:
            raise ExpiredToken(claim="exp")

    def _check_nbf(self, claims: dict[str, Any], now: float) -> None:
        nbf = claims.get("nbf")
        if nbf is not None and now + self.settings.leeway < nbf:
            raise NotYetValid(claim="nbf")

    def _check_iat(self, claims: dict[str, Any], now: float) -> None:
        iat = claims.get("iat")
        if iat is not None and now + self.settings.leeway < iat:
            raise IssuedInFuture(claim="iat")

    def fields(self, raw: str, claims: dict[str, Any], header: Mapping[str, Any]) -> dict[str, Any]:
        """The :class:`AccessToken` fields of a verified token: ``AccessToken(**fields)``."""
        aud = claims.get("aud")
        sub = claims.get("sub")
        exp = claims.get("exp")
        return {
            "claims": claims,
            "subject": sub if isinstance(sub, str) else "",
            "scopes": parse_scopes(claims, self._scope_claims),
            "client_id": claims.get("client_id"),
            "issuer": claims.get("iss", ""),
            "audience": (aud,) if isinstance(aud, str) else tuple(aud or ()),
            "expires_at": float(exp) if exp is not None else None,
            "jti": claims.get("jti"),
            "key_id": header.get("kid"),
            "raw": raw,
        }

    def _build(self, raw: str, claims: dict[str, Any], header: Mapping[str, Any]) -> AccessToken:
        # Equivalent to AccessToken(**fields) (a test holds them equal, field for field), minus
        # the frozen dataclass's ten object.__setattr__ calls. Kept because it buys more than 3%
        # of a cold validation: `python -m benchmarks --only cold` times both side by side (row
        # "AccessToken constructor / __dict__ fill"): 1.04x, 1.04x and 1.05x in three runs on
        # 2026-12-02, i.e. cold RS256 at 1.78x raw verify with the constructor, 1.70x without.
        # On 2026-12-03 (a VM with ~50 % CPU steal) the timed row was at the edge (0.98x-1.05x), so
        # it was also counted (callgrind, fixed key): 463.0k vs 478.5k instructions per cold
        # validation, 3.3 % fewer with the fill.
        token: AccessToken = object.__new__(AccessToken)
        token.__dict__.update(self.fields(raw, claims, header))
        return token

    # -- verified-token cache ---------------------------------------------------------------

    def _remember(self, raw: str, token: AccessToken, key: VerificationKey, claims: dict[str, Any]) -> None:
        exp = claims.get("exp")
        if exp is None:
            return  # never cache a token that does not expire
        self._admit(raw, _Entry(token, key, float(exp) + self.settings.leeway))

    def _admit(self, raw: str, entry: _Entry, *, doorkeeper: bool = True) -> None:
        # While the cache has room, every verified token goes in. Once it is full, a token goes
        # in only the second time it is verified (a "doorkeeper", as in TinyLFU): a stream of
        # one-off tokens then costs no insert and no eviction, and cannot push out the tokens
        # that come back. The doorkeeper holds only hash(raw) (ints, cleared when it reaches
        # cache_size): a collision can only admit a token early, it never accepts one.
        # Measured (`python -m benchmarks --only cache`, row "one-off tokens, cache full"):
        # see docs/benchmarks.md. An introspection answer skips it (doorkeeper=False): its miss
        # is a call to the authorization server, not a local verify, so it is kept at once.
        with self._cache_lock:
            cache = self._cache
            if doorkeeper and len(cache) >= self.cache_size and raw not in cache:
                seen = self._seen
                digest = hash(raw)
                if digest not in seen:
                    if len(seen) >= self.cache_size:
                        seen.clear()
                    seen.add(digest)
                    return
                seen.discard(digest)
            cache[raw] = entry
            cache.move_to_end(raw)
            while len(cache) > self.cache_size:
                cache.popitem(last=False)

    def _fresh(self, entry: _Entry, now: float) -> bool:
        # An introspected token has no key: its entry expires by time alone.
        key = entry.key
        return now <= entry.expires_at and (key is None or self._source_for(entry.token.issuer).contains(key))

    # -- opaque tokens (RFC 7662, core/introspection.py) ------------------------------------

    def _make_introspector(self) -> Introspector:
        # The answer gets the JWT claim steps, with INTROSPECTION_REQUIRED_CLAIMS as the required
        # claims: a second validator over the same settings, holding no keys, runs them.
        policy = TokenValidator(
            replace(self.settings, required_claims=self.settings.introspection_required_claims,
                    introspection_url=None),
            keys=StaticKeySource(KeySet(())), cache_size=0, clock=self._clock,
            claim_checks=self._hooks.claim_checks,
        )
        return Introspector(self.settings, claim_checks=[step.check for step in policy.claim_steps],
                            build=lambda raw, claims: self._build(raw, claims, {}), clock=self._clock)

    def _introspect(self, raw: str, now: float) -> AccessToken:
        assert self.introspector is not None
        token, until = self.introspector.validate(raw, now)
        if self.cache_size and until > now:
            self._admit(raw, _Entry(token, None, until), doorkeeper=False)
        if self._is_revoked is not None:
            self._hooks.check_revoked(token)
        return token

    def _evict(self, raw: str) -> None:
        with self._cache_lock:
            self._cache.pop(raw, None)

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()
            self._seen.clear()


def validator_from(settings: Settings | None = None, validator: TokenValidator | None = None) -> TokenValidator:
    """The adapters' common constructor: an explicit validator, settings, or the environment."""
    if validator is not None:
        if settings is not None and settings is not validator.settings:
            raise ConfigurationError("pass either settings or validator, not both")
        return validator
    return TokenValidator(settings if settings is not None else Settings.from_env())
