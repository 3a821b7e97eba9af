"""The current request's access token, in a ``ContextVar``.

Adapters bind the validated :class:`~token_middleware.core.token.AccessToken` when a request starts
and reset it when the response is closed, so streamed bodies and any code running on the
request's thread or task see it. Application code reads it through :func:`get_current_token`.
Work sent to a thread pool sees it only when the pool copies the context
(:mod:`token_middleware.core.concurrency`).
"""

from __future__ import annotations

from contextvars import ContextVar, Token

from .token import AccessToken

_current: ContextVar[AccessToken | None] = ContextVar("token_middleware.access_token", default=None)


def get_current_token() -> AccessToken | None:
    """The access token of the request being handled, or ``None``."""
    return _current.get()


def bind_token(token: AccessToken | None) -> Token[AccessToken | None]:
    """Make ``token`` current; pass the result to :func:`reset_token` when the request ends."""
    return _current.set(token)


def reset_token(handle: Token[AccessToken | None]) -> None:
    """Restore the value that was current before :func:`bind_token`."""
    try:
        _current.reset(handle)
    except ValueError:
        # Reset from another context (e.g. a response closed on a different thread): clear
        # this context's value rather than leave a stale identity behind.
        _current.set(None)
