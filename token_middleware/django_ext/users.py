"""The user of a validated token: the ``USER_LOADER``'s, or a stateless :class:`TokenUser`.

Trusted: only an :class:`~token_middleware.core.token.AccessToken` the validator accepted.

* Without ``USER_LOADER``, the user is a :class:`TokenUser`: authenticated, ``username`` = the
  token's ``sub``, no database row and no Django permissions (authorization is by scope:
  ``user.scopes`` / the scope decorators). It does not import ``django.contrib.auth``, so it
  works in projects without it.
* With ``TOKEN_MIDDLEWARE["USER_LOADER"] = "myapp.auth.load_user"``, ``load_user(token)``
  returns the application's user (a Django user model instance, say) or ``None``, which
  refuses the token with 401 ``invalid_token`` (:class:`UnknownUser`); it may also raise an
  ``InvalidToken`` subclass itself. A plain function runs in a worker thread under ASGI
  (``sync_to_async``, as Django's ORM needs); an ``async def`` loader runs on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async

from ..core.errors import UnknownUser
from ..core.token import AccessToken
from .conf import UserLoader


def load_user(loader: UserLoader | None, token: AccessToken) -> Any:
    """The user for ``token`` (sync code); raises :class:`UnknownUser` when the loader finds none."""
    if loader is None:
        return TokenUser(token)
    user = async_to_sync(loader)(token) if iscoroutinefunction(loader) else loader(token)
    if user is None:
        raise UnknownUser()
    return user


async def aload_user(loader: UserLoader | None, token: AccessToken) -> Any:
    """:func:`load_user` for async code: a sync loader runs in a thread (``sync_to_async``)."""
    if loader is None:
        return TokenUser(token)
    user = await loader(token) if iscoroutinefunction(loader) else await sync_to_async(loader)(token)
    if user is None:
        raise UnknownUser()
    return user


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
