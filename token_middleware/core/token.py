"""AccessToken: the verified identity of the caller, as the validator accepted it.

An ``AccessToken`` exists only after every check in :mod:`token_middleware.core.validator` passed,
so code that holds one may trust its fields. The raw token is kept for propagation to allowed
downstream hosts; it is hidden from ``repr``/``str`` so that logging the object never leaks it.

The actor chain (RFC 8693 §4.1) is read from the nested ``act`` claim: ``{"sub": "orders-service",
"act": {"sub": "gateway"}}`` says that ``orders-service`` acts for the subject, on behalf of
``gateway`` before it. :attr:`AccessToken.actors` lists the actor subjects nearest first;
:func:`parse_actors` is the one reader of the claim's shape (the validator refuses a token whose
``act`` it cannot read) and :func:`act_claim` the one writer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

#: The deepest actor chain accepted: far more hops than any real call chain has.
MAX_ACTORS = 16


def parse_actors(act: Any) -> tuple[str, ...] | None:
    """The actor subjects of an ``act`` claim value, nearest first; ``None`` if it is malformed.

    ``parse_actors(None)`` (no claim) is ``()``; the validator refuses a claim present as null.

    Each level must be a JSON object whose ``sub`` is a non-empty string; it may nest the
    previous actor under ``act`` (RFC 8693 §4.1), at most :data:`MAX_ACTORS` deep. Other members
    (an actor's ``iss``, say) are allowed and ignored.
    """
    chain: list[str] = []
    while act is not None:
        if not isinstance(act, Mapping) or len(chain) >= MAX_ACTORS:
            return None
        sub = act.get("sub")
        if type(sub) is not str or not sub:
            return None
        chain.append(sub)
        if "act" in act and act["act"] is None:
            return None  # a present-but-null act is a wrong type, not "no earlier actor"
        act = act.get("act")
    return tuple(chain)


def act_claim(actors: Sequence[str]) -> dict[str, Any] | None:
    """The ``act`` claim for ``actors`` (nearest first); ``None`` for no actors."""
    claim: dict[str, Any] | None = None
    for sub in reversed(tuple(actors)):
        claim = {"sub": sub} if claim is None else {"sub": sub, "act": claim}
    return claim


@dataclass(frozen=True, eq=False)
class AccessToken:
    """A validated access token (RFC 9068)."""

    claims: Mapping[str, Any]
    subject: str
    scopes: frozenset[str]
    client_id: str | None
    issuer: str
    audience: tuple[str, ...]
    expires_at: float | None
    jti: str | None
    key_id: str | None = None
    raw: str = field(default="", repr=False)

    @property
    def expires(self) -> datetime | None:
        """``exp`` as an aware UTC datetime."""
        if self.expires_at is None:
            return None
        return datetime.fromtimestamp(self.expires_at, tz=timezone.utc)

    @property
    def actors(self) -> tuple[str, ...]:
        """The subjects of the ``act`` chain, nearest actor first; ``()`` when nobody acts.

        For a token the orders service obtained by exchange, ``("orders-service",)``; the
        caller that handed it the token it exchanged comes next, if that one acted too.
        """
        return parse_actors(self.claims.get("act")) or ()

    @property
    def actor(self) -> str | None:
        """The nearest actor: the service that obtained this token for the subject, or ``None``."""
        actors = self.actors
        return actors[0] if actors else None

    @cached_property
    def fingerprint(self) -> bytes:
        """SHA-256 of what the issuer signed (header and payload), the same for every spelling.

        ECDSA signatures are malleable (``s`` and ``n - s`` both verify), so one token can be
        written with two signatures; the signing input cannot change without the issuer's key.
        Key caches on this, never on :attr:`raw`. The validator's base64url decoder accepts only
        the canonical encoding, so the encoded signing input names exactly one header and
        payload. A token that is not a compact JWS (an opaque token) is hashed whole.
        """
        raw = self.raw
        cut = raw.rfind(".") if raw.count(".") == 2 else -1
        return hashlib.sha256((raw[:cut] if cut > 0 else raw).encode("utf-8", "surrogatepass")).digest()

    def has_scopes(self, *scopes: str) -> bool:
        """True when the token carries every one of ``scopes``."""
        return self.scopes.issuperset(scopes)

    def has_any_scope(self, *scopes: str) -> bool:
        """True when the token carries at least one of ``scopes``."""
        return not self.scopes.isdisjoint(scopes)

    def __repr__(self) -> str:
        return (
            f"AccessToken(subject={self.subject!r}, client_id={self.client_id!r}, "
            f"scopes={sorted(self.scopes)!r}, issuer={self.issuer!r}, jti={self.jti!r})"
        )

    __str__ = __repr__
