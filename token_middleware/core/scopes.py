"""Scopes: reading them from claims and enforcing them.

Scopes come only from a validated token's claims named in ``SCOPE_CLAIMS``: a space-delimited
string (RFC 8693 ``scope``) or a list of strings (``scp``). Anything else in those claims is
ignored rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast, overload

from .errors import ConfigurationError, InsufficientScope, MissingToken
from .token import AccessToken


def parse_scopes(claims: Mapping[str, Any], scope_claims: Iterable[str]) -> frozenset[str]:
    """The union of the scopes found in ``scope_claims``."""
    found: set[str] = set()
    for name in scope_claims:
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, str):
                    found.update(item.split())
    return frozenset(found)


def normalise_required(scopes: Iterable[str]) -> tuple[str, ...]:
    """Validate the scopes a decorator requires (at import time, not per request)."""
    out = []
    for scope in scopes:
        if not isinstance(scope, str) or not scope or any(c.isspace() or c == '"' or c == "\\" for c in scope):
            raise ConfigurationError(
                f"invalid required scope {scope!r}: scopes are non-empty strings without spaces or quotes"
            )
        out.append(scope)
    return tuple(out)


def check_scopes(
    token: AccessToken | None, required: Iterable[str], *, any_of: bool = False
) -> AccessToken:
    """Return ``token`` if it grants ``required`` (all of them, or one with ``any_of``).

    Raises :class:`MissingToken` without a token and :class:`InsufficientScope` otherwise.
    """
    if token is None:
        raise MissingToken()
    wanted = tuple(required)
    if not wanted:
        return token
    ok = token.has_any_scope(*wanted) if any_of else token.has_scopes(*wanted)
    if not ok:
        raise InsufficientScope(wanted, any_of=any_of)
    return token


_View = TypeVar("_View", bound=Callable[..., Any])
Guard = Callable[[tuple[str, ...], bool], Callable[[Any], Any]]


class ScopeDecorators:
    """The one authorization vocabulary, shared by the framework adapters.

    An adapter supplies ``guard(required, any_of)``, which returns a decorator that enforces
    ``required`` (all of them, or one of them with ``any_of``; none: just a valid token) in its
    framework's way; this class derives ``require_scopes``, ``require_any_scope`` and
    ``require_token`` from it, with the same meaning everywhere.
    """

    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    def require_scopes(self, *scopes: str) -> Callable[[_View], _View]:
        """Require a valid token carrying every one of ``scopes``."""
        return cast("Callable[[_View], _View]", self._guard(normalise_required(scopes), False))

    def require_any_scope(self, *scopes: str) -> Callable[[_View], _View]:
        """Require a valid token carrying at least one of ``scopes``."""
        if not scopes:
            raise TypeError("require_any_scope() needs at least one scope")
        return cast("Callable[[_View], _View]", self._guard(normalise_required(scopes), True))

    @overload
    def require_token(self, view: None = None) -> Callable[[_View], _View]: ...
    @overload
    def require_token(self, view: _View) -> _View: ...
    def require_token(self, view: _View | None = None) -> _View | Callable[[_View], _View]:
        """Require a valid token, whatever its scopes: ``@require_token()`` or ``@require_token``."""
        decorator = cast("Callable[[_View], _View]", self._guard((), False))
        return decorator if view is None else decorator(view)
