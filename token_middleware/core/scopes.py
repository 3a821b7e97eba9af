"""Scopes: reading them from claims and enforcing them.

Scopes come only from a validated token's claims named in ``SCOPE_CLAIMS``: a space-delimited
string (RFC 8693 ``scope``) or a list of strings (``scp``, Keycloak's roles, Entra's ``roles``).
Each list item is one scope, whole: a role named ``"orders admin"`` is never read as the two
scopes ``orders`` and ``admin``; it is ignored, since no requirement can name it (required scopes
have no spaces). Anything else in those claims is ignored rather than guessed at.

A ``SCOPE_CLAIMS`` entry may be a dotted path into nested objects
(``realm_access.roles``, ``resource_access.orders-service.roles``), resolved by
:func:`claim_value`: a top-level claim named exactly like the entry is read first, so namespaced
claims such as ``https://example.com/roles`` work as they are; then the path is walked, and at
each level the longest member name that matches the next dot-separated part wins, so a member
with dots in its name (a client id such as ``orders.example.com``) is found too. The trust is
the token's: these claims were signed by (or introspected from) a trusted issuer, and nothing
here is read before the token passed every check.

A requirement is "any of all of": a tuple of alternatives, each a tuple of scopes that must all
be present. ``require_scopes("a", "b")`` is ``(("a", "b"),)``; ``require_any_scope("a", "b")`` is
``(("a",), ("b",))``; ``require_scopes([["orders:read", "orders:write"], ["admin"]])`` is
"both orders scopes, or admin". The empty requirement ``()`` asks for a valid token only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, Union, cast, overload

from .errors import ConfigurationError, InsufficientScope, MissingToken
from .token import AccessToken


#: Deepest nesting a dotted ``SCOPE_CLAIMS`` path may reach.
MAX_PATH_DEPTH = 8


def claim_value(claims: Mapping[str, Any], name: str) -> Any:
    """The value ``name`` designates in ``claims``, or ``None`` when there is none.

    ``name`` is a top-level claim when ``claims`` has a member of exactly that name; otherwise
    it is a dotted path, walked through nested JSON objects. At each level the longest member
    name made of the next dot-separated parts wins (no backtracking), so for
    ``resource_access.orders.example.com.roles`` the member ``orders.example.com`` is found.
    A path through something that is not an object, or deeper than :data:`MAX_PATH_DEPTH`,
    designates nothing.
    """
    value = claims.get(name)
    if value is not None or "." not in name or name in claims:
        return value
    parts = name.split(".")
    if "" in parts:
        return None
    node: Any = claims
    start = depth = 0
    while start < len(parts):
        if not isinstance(node, Mapping) or depth >= MAX_PATH_DEPTH:
            return None
        for end in range(len(parts), start, -1):
            key = ".".join(parts[start:end])
            if key in node:
                node, start, depth = node[key], end, depth + 1
                break
        else:
            return None
    return node


def scope_value_is_valid(value: Any) -> bool:
    """Whether a scope claim's value has an accepted type: absent, a string or a list of strings."""
    return value is None or isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    )


def parse_scopes(claims: Mapping[str, Any], scope_claims: Iterable[str]) -> frozenset[str]:
    """The union of the scopes found in ``scope_claims`` (names or dotted paths).

    A string is split on whitespace (RFC 6749 §3.3); each string of a list is one scope, whole,
    and a list item with whitespace in it is ignored.
    """
    found: set[str] = set()
    for name in scope_claims:
        value = claim_value(claims, name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(item for item in value if isinstance(item, str) and item and not _has_space(item))
    return frozenset(found)


def _has_space(item: str) -> bool:
    return not item.isprintable() or any(c.isspace() for c in item)


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


#: Alternatives, each a tuple of scopes that must all be present ("any of all of").
Requirement = tuple[tuple[str, ...], ...]

#: What users may write: scopes (``"a", "b"``), or one list of lists (``[["a", "b"], ["admin"]]``).
ScopeSpec = Union[str, Iterable[str]]


def requirement(scopes: Iterable[ScopeSpec], *, any_of: bool = False) -> Requirement:
    """Turn what a decorator or permission was given into a validated :data:`Requirement`.

    ``scopes`` holds plain scopes (all of them required, or one of them with ``any_of``) or
    lists of scopes (each list one alternative). Checked at import time, not per request.
    """
    items = list(scopes)
    if any(not isinstance(item, str) for item in items):
        if any_of:
            raise ConfigurationError("require_any_scope() takes plain scopes; write alternatives as lists")
        alternatives = []
        for item in items:
            group = [item] if isinstance(item, str) else list(item)
            if not group:
                raise ConfigurationError("an empty list of scopes in a requirement would allow every token")
            alternatives.append(normalise_required(group))
        return tuple(alternatives)
    plain = normalise_required(cast("list[str]", items))
    if not plain:
        return ()
    return tuple((scope,) for scope in plain) if any_of else (plain,)


def satisfies(token: AccessToken, required: Requirement) -> bool:
    """True when ``token`` holds every scope of at least one alternative (or ``required`` is empty)."""
    return not required or any(token.scopes.issuperset(group) for group in required)


def check_requirement(token: AccessToken | None, required: Requirement) -> AccessToken:
    """Return ``token`` if it satisfies ``required``.

    Raises :class:`MissingToken` without a token and :class:`InsufficientScope` otherwise.
    """
    if token is None:
        raise MissingToken()
    if not satisfies(token, required):
        raise InsufficientScope.for_requirement(required)
    return token


def check_scopes(
    token: AccessToken | None, required: Iterable[ScopeSpec], *, any_of: bool = False
) -> AccessToken:
    """Return ``token`` if it grants ``required`` (all of them, or one with ``any_of``).

    ``required`` may also be a list of alternatives: ``[["a", "b"], ["admin"]]``. Raises
    :class:`MissingToken` without a token and :class:`InsufficientScope` otherwise.
    """
    return check_requirement(token, requirement(required, any_of=any_of))


_View = TypeVar("_View", bound=Callable[..., Any])
Guard = Callable[[Requirement], Callable[[Any], Any]]


class ScopeDecorators:
    """The one authorization vocabulary, shared by the framework adapters.

    An adapter supplies ``guard(requirement)``, which returns a decorator that enforces a
    :data:`Requirement` (empty: just a valid token) in its framework's way; this class derives
    ``require_scopes``, ``require_any_scope`` and ``require_token`` from it, with the same
    meaning everywhere.
    """

    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    def require_scopes(self, *scopes: ScopeSpec) -> Callable[[_View], _View]:
        """Require a valid token carrying every one of ``scopes``.

        Alternatives are lists: ``require_scopes(["a", "b"], ["admin"])`` means "a and b, or admin".
        """
        return cast("Callable[[_View], _View]", self._guard(requirement(scopes)))

    def require_any_scope(self, *scopes: str) -> Callable[[_View], _View]:
        """Require a valid token carrying at least one of ``scopes``."""
        if not scopes:
            raise TypeError("require_any_scope() needs at least one scope")
        return cast("Callable[[_View], _View]", self._guard(requirement(scopes, any_of=True)))

    @overload
    def require_token(self, view: None = None) -> Callable[[_View], _View]: ...
    @overload
    def require_token(self, view: _View) -> _View: ...
    def require_token(self, view: _View | None = None) -> _View | Callable[[_View], _View]:
        """Require a valid token, whatever its scopes: ``@require_token()`` or ``@require_token``."""
        decorator = cast("Callable[[_View], _View]", self._guard(()))
        return decorator if view is None else decorator(view)
