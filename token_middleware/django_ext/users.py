"""A stateless user built from a validated access token (no database row, no user table).

Trusted: only an :class:`~token_middleware.core.token.AccessToken` the validator accepted. The user
is authenticated and its ``username`` is the token's ``sub``; it has no Django permissions
(authorization is by scope: ``user.scopes`` / the scope decorators). It does not import
``django.contrib.auth``, so it works in projects without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..core.token import AccessToken


class TokenUser:
    """The caller as the token describes it, in the shape of a Django user."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, token: AccessToken) -> None:
        self.token = token

    @property
    def username(self) -> str:
        return self.token.subject

    @property
    def pk(self) -> str:
        return self.token.subject

    id = pk

    @property
    def scopes(self) -> frozenset[str]:
        return self.token.scopes

    @property
    def claims(self) -> Mapping[str, Any]:
        return self.token.claims

    def get_username(self) -> str:
        return self.token.subject

    def has_scopes(self, *scopes: str) -> bool:
        return self.token.has_scopes(*scopes)

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False

    def has_perms(self, perm_list: Iterable[str], obj: object = None) -> bool:
        return False

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def get_all_permissions(self, obj: object = None) -> set[str]:
        return set()

    def get_user_permissions(self, obj: object = None) -> set[str]:
        return set()

    def get_group_permissions(self, obj: object = None) -> set[str]:
        return set()

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("TokenUser comes from an access token and has no database row")

    def delete(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("TokenUser comes from an access token and has no database row")

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TokenUser)
            and other.token.issuer == self.token.issuer
            and other.username == self.username
        )

    def __hash__(self) -> int:
        return hash((self.token.issuer, self.username))

    def __str__(self) -> str:
        return self.username

    def __repr__(self) -> str:
        return f"TokenUser({self.username!r})"
