"""AccessToken: the verified identity of the caller, as the validator accepted it.

An ``AccessToken`` exists only after every check in :mod:`token_middleware.core.validator` passed,
so code that holds one may trust its fields. The raw token is kept for propagation to allowed
downstream hosts; it is hidden from ``repr``/``str`` so that logging the object never leaks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


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
