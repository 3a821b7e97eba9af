"""The current request's access token, and the settings that validated it, in a ``ContextVar``.

Adapters bind the validated :class:`~token_middleware.core.token.AccessToken` (with the
:class:`~token_middleware.core.settings.Settings` of the validator that accepted it) when a
request starts, and reset it when the response is closed, so streamed bodies and any code
running on the request's thread or task see it. Application code reads the token through
:func:`get_current_token`. Outgoing clients read :func:`get_current_settings` to find the
``FORWARD_TO`` allowlist that goes with the token, wherever it was configured (environment,
Flask ``app.config`` or Django settings). Work sent to a thread pool sees both only when the
pool copies the context (:mod:`token_middleware.core.concurrency`).

Trusted: what the adapters bind (a token the validator accepted, and its validator's settings).
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, NamedTuple

from .settings import Settings
from .token import AccessToken

if TYPE_CHECKING:
    from .observe import Watch


class Current(NamedTuple):
    """What is bound for one request: the token (or ``None``), the settings that validated it,
    and the observers of that validator (for exchanges counted far from it)."""

    token: AccessToken | None
    settings: Settings | None
    watch: Watch | None = None


_NOTHING = Current(None, None)
_current: ContextVar[Current] = ContextVar("token_middleware.access_token", default=_NOTHING)


def get_current_token() -> AccessToken | None:
    """The access token of the request being handled, or ``None``."""
    return _current.get().token


def get_current_settings() -> Settings | None:
    """The settings of the validator that handled the current request, or ``None`` outside one."""
    return _current.get().settings


def get_current_watch() -> Watch | None:
    """The observers of the validator that handled the current request (:mod:`.observe`), or ``None``."""
    return _current.get().watch


def bind_token(
    token: AccessToken | None, settings: Settings | None = None, watch: Watch | None = None
) -> Token[Current]:
    """Make ``token`` (validated under ``settings``) current; pass the result to :func:`reset_token`."""
    if token is None and settings is None and watch is None:
        return _current.set(_NOTHING)
    return _current.set(Current(token, settings, watch))


def reset_token(handle: Token[Current]) -> None:
    """Restore the value that was current before :func:`bind_token`."""
    try:
        _current.reset(handle)
    except ValueError:
        # Reset from another context (e.g. a response closed on a different thread): clear
        # this context's value rather than leave a stale identity behind.
        _current.set(_NOTHING)
