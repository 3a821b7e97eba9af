"""``TokenValidator.explain``: every check with its verdict, in words for the operator.

Meant for ``token-middleware inspect`` and the operator's terminal, never for HTTP clients:
the details name the expected and the actual values (and, for missing keys, the operator's
cause). It walks the validator's own ``header_steps`` and ``claim_steps``, the very steps
``validate()`` runs, so the two cannot disagree about what is checked; the ``describe_*``
functions here give those steps their words.

Trusted: the validator and its settings. Not trusted: the token; its unverified claims are
shown, and marked as unverified, when the signature did not verify.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import b64url
from .errors import BearerError, InvalidIssuer, KeysUnavailable, MalformedToken
from .hooks import hook_name
from .introspection import is_compact_jws
from .settings import Settings
from .strict_json import is_number, json_object

if TYPE_CHECKING:
    from .validator import TokenValidator


@dataclass(frozen=True)
class Check:
    """One line of :func:`explain`."""

    name: str
    passed: bool | None  # None: not run, because an earlier check failed
    detail: str
    reason: str | None = None  # the refusal's reason code (errors.py) when the check failed


def _operator_words(exc: BearerError, context: str) -> str:
    """What explain says of a refusal: for missing keys the operator's cause ("connection
    refused by …"), not the client's "retry shortly"."""
    if isinstance(exc, KeysUnavailable) and exc.cause:
        return f"the token signing keys are unavailable ({exc.cause})"
    return exc.description + (f" ({context})" if context else "")


def explain(v: TokenValidator, raw: str) -> list[Check]:
        """Every check with its verdict, in plain words (for ``token-middleware inspect``).

        Meant for the operator's terminal, not for HTTP clients: the details name the
        expected and the actual values.
        """
        checks: list[Check] = []
        s = v.settings

        def run(name: str, fn: Callable[[], Any], ok: str, context: str = "") -> Any:
            try:
                result = fn()
            except BearerError as exc:
                checks.append(Check(name, False, _operator_words(exc, context), exc.reason))
                return None
            checks.append(Check(name, True, ok))
            return result if result is not None else True

        raw = raw.strip()
        if not run("size", lambda: v._check_size(raw), f"{len(raw)} bytes (limit {s.max_token_bytes})",
                   f"{len(raw)} bytes, limit {s.max_token_bytes}"):
            return checks
        if v.introspector is not None and not is_compact_jws(raw):
            return checks + [Check("form", None, "not a compact JWS: an opaque token, introspected at "
                                   f"{v.introspector.url} (RFC 7662); not asked from here")]
        parsed = run("form", lambda: v.parse(raw), "a compact JWS: three base64url segments")
        if parsed is None:
            return checks + [Check("signature", None, "not checked: the token could not be parsed")]
        header = parsed.header
        for step in v.header_steps:
            ok, context = step.describe(header)
            run(step.name, lambda step=step: step.check(header), ok, context)  # type: ignore[misc]
        ignored = sorted(h for h in ("jku", "x5u", "jwk", "x5c") if h in header)
        if ignored:
            checks.append(Check("embedded keys", None, f"ignored, keys come only from configuration: {', '.join(ignored)}"))
        header_ok = all(c.passed is not False for c in checks)
        verified = None
        if not header_ok:
            checks.append(Check("signature", None, "not checked: the header was refused"))
        else:
            try:
                verified = v._verify(parsed)
            except InvalidIssuer:
                checks.append(Check("signature", None, "not checked: the iss is not a trusted issuer (below)"))
            except BearerError as exc:
                context = f"kid={header.get('kid')!r}, alg={header.get('alg')}"
                checks.append(Check("signature", False, _operator_words(exc, context), exc.reason))
            else:
                checks.append(Check("signature", True, f"verified with the configured key kid={header.get('kid')!r}"))
        if verified:
            claims = verified[0]
        else:
            try:
                claims = json_object(b64url.decode(parsed.payload_segment), "payload")
            except (ValueError, MalformedToken):
                checks.append(Check("claims", None, "the payload is not a JSON object"))
                return checks
            checks.append(Check("claims", None, "the signature was not verified; the claims below are unverified"))
        now = v._clock()
        for step in v.claim_steps:
            ok, context = step.describe(claims, now)
            run(step.name, lambda step=step: step.check(claims, now), ok, context)  # type: ignore[misc]
        if v._is_revoked is not None:
            if verified:
                token = v._build(raw, claims, header)
                run("revocation", lambda: v._hooks.check_revoked(token),
                    f"{hook_name(v._is_revoked)} says it is not revoked")
            else:
                checks.append(Check("revocation", None, "not checked: the signature was not verified"))
        return checks


def describe_alg(settings: Settings, header: Mapping[str, Any]) -> tuple[str, str]:
    alg, allowed = header.get("alg"), ", ".join(settings.algorithms)
    return f"{alg} is allowed ({allowed})", f"alg {alg!r}; allowed: {allowed}"


def describe_typ(settings: Settings, header: Mapping[str, Any]) -> tuple[str, str]:
    typ = header.get("typ")
    return f"typ {typ!r} is accepted", f"typ {typ!r}; accepted: {', '.join(settings.accepted_types)}"


def describe_required(settings: Settings, claims: Mapping[str, Any]) -> tuple[str, str]:
    required = settings.required_claims
    missing = [c for c in required if c not in claims]
    return f"present: {', '.join(required)}", f"missing: {', '.join(missing)}"


def describe_issuer(settings: Settings, claims: Mapping[str, Any]) -> tuple[str, str]:
    iss = claims.get("iss")
    return f"iss {iss!r} is trusted", f"iss {iss!r}; trusted: {', '.join(settings.issuers)}"


def describe_audience(settings: Settings, claims: Mapping[str, Any]) -> tuple[str, str]:
    aud, audience = claims.get("aud"), settings.audience
    return f"aud {aud!r} contains {audience!r}", f"aud {aud!r}; this service is {audience!r}"


def describe_time(settings: Settings, key: str, claims: Mapping[str, Any], now: float) -> tuple[str, str]:
    value = claims.get(key)
    if not is_number(value):
        said = f"{key} {value!r}"
    else:
        seconds = float(value)  # type: ignore[arg-type]
        try:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
        except (OverflowError, OSError, ValueError):
            stamp = repr(value)
        delta = int(seconds - now)
        rel = f"in {delta} s" if delta >= 0 else f"{-delta} s ago"
        said = f"{key} {stamp} ({rel}, leeway {settings.leeway} s)"
    return (said if key in claims else f"no {key} claim"), said
