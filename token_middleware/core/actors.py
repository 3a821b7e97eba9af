"""Requiring an actor: the service that obtained the caller's token by exchange (RFC 8693 §4.1).

A token that the orders service obtained for alice by exchange carries
``act = {"sub": "orders-service"}``; :attr:`~token_middleware.core.token.AccessToken.actors` lists
the chain nearest first. A view of the customers service can then insist that it is called
*through* the orders service, as easily as it requires a scope::

    @require_scopes("customers:read")
    @require_actor("orders-service")          # Flask, Django; DRF: permission_classes
    def customer(...): ...

The requirement is on the **nearest** actor (the service that called this one): one of the
names given. A token nobody acts in (alice calling directly) does not satisfy it. Refusals are
403 ``insufficient_scope`` (RFC 6750 §3.1: the request needs more than the token grants) with a
description naming the services that would do, and no ``scope`` attribute.

Trusted: only a validated token's ``act`` claim, whose shape the validator checked. Names are
checked when the decorator is built (import time), like scopes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from .errors import BearerError, ConfigurationError, MissingToken
from .token import AccessToken

__all__ = ["ActorRequired", "actor_requirement", "check_actor"]


class ActorRequired(BearerError):
    """The token is valid, but the service acting for the subject is not one of ``allowed``."""

    reason: ClassVar[str] = "actor_required"
    status_code = 403
    error = "insufficient_scope"
    default_description = "the request must come through another service"

    def __init__(self, allowed: Iterable[str], description: str | None = None) -> None:
        self.allowed: tuple[str, ...] = tuple(allowed)
        if description is None:
            description = f"this resource must be called through {' or '.join(self.allowed)}"
        super().__init__(description)


def actor_requirement(actors: Iterable[str]) -> tuple[str, ...]:
    """The actors a decorator accepts, checked at import time (non-empty words, at least one)."""
    out = tuple(actors)
    if not out:
        raise ConfigurationError("require_actor() needs at least one actor, e.g. 'orders-service'")
    for actor in out:
        if not isinstance(actor, str) or not actor or any(c.isspace() or c in '"\\' for c in actor):
            raise ConfigurationError(
                f"invalid actor {actor!r}: actors are non-empty strings without spaces or quotes"
            )
    return out


def check_actor(token: AccessToken | None, allowed: tuple[str, ...]) -> AccessToken:
    """Return ``token`` if its nearest actor is one of ``allowed``.

    Raises :class:`~token_middleware.core.errors.MissingToken` without a token, and
    :class:`ActorRequired` otherwise.
    """
    if token is None:
        raise MissingToken()
    if token.actor not in allowed:
        raise ActorRequired(allowed)
    return token
