"""The validator's extension points: an ``is_revoked`` hook and extra ``claim_checks``.

Trusted: the hooks themselves, which are the deployer's own code. They only ever see a token
that passed every built-in check (signature, issuer, audience, times, types), and they can only
*refuse* it: nothing a hook returns or raises can make the validator accept a token it would
otherwise refuse, and nothing it raises becomes a 500.

``is_revoked(token) -> bool``
    A denylist, keyed on ``token.jti`` and ``token.issuer`` (never on the raw string). Asked on
    every acceptance, verified-cache hits included, so a revoked token never slips through the
    cache: keep it fast (an in-memory set, a local cache in front of Redis). ``True`` refuses
    with :class:`~token_middleware.core.errors.RevokedToken` (401 ``invalid_token``). If it
    raises, or returns ``None`` (a missing ``return``), the request gets
    :class:`~token_middleware.core.errors.RevocationUnavailable`: 503 with ``Retry-After``, like
    unreachable keys. A denylist that cannot be read is an outage on our side, not a bad token,
    so it is neither a 401 nor an acceptance; the cause is logged at WARNING.

``claim_checks``: callables ``check(claims)``
    Run once per token string, after the built-in claim checks, on the verified claims (a
    read-only mapping). Return ``None`` to accept; raise
    :class:`~token_middleware.core.errors.InvalidClaim` (or any ``BearerError``) to refuse with
    that answer. Returning ``False`` refuses too (a predicate written by mistake must not accept
    everything). Any other exception refuses the token with ``InvalidClaim`` and is logged at
    WARNING with the check's name, the exception type and where it was raised, never its message
    or a claim value. (A check is a function of the claims alone: one that cannot cope with them,
    a ``KeyError`` on a missing claim say, does not accept them. That is about the token, not an
    outage, so it is a 401 rather than a 503 or a 500.) Their verdict is cached with the token:
    put anything that changes over time in ``is_revoked``. :meth:`~token_middleware.core.validator.TokenValidator.explain` lists each
    one as ``claim check: <qualname>``.

Warnings are throttled: at most one per hook per minute, with the count of those left out.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from .errors import BearerError, ConfigurationError, InvalidClaim, RevocationUnavailable, RevokedToken
from .token import AccessToken

log = logging.getLogger("token_middleware.hooks")

#: ``is_revoked(token)``: True when the token must be refused.
RevocationCheck = Callable[[AccessToken], bool]
#: ``check(claims)``: returns None to accept, raises ``InvalidClaim`` to refuse.
ClaimCheck = Callable[[Mapping[str, Any]], object]

WARNING_INTERVAL = 60.0


def hook_name(hook: Callable[..., object]) -> str:
    """The name a hook is known by in logs and in ``explain``: its ``__qualname__``."""
    name = getattr(hook, "__qualname__", None)
    return name if isinstance(name, str) else type(hook).__qualname__


class _Throttle:
    """At most one warning per key and interval; counts the ones left out."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> int | None:
        """``None``: stay quiet; else the number of warnings left out since the last one."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._left_out[key] = self._left_out.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._left_out.pop(key, 0)


class Hooks:
    """The hooks one validator was built with, checked at start-up. See the module docstring."""

    def __init__(
        self,
        is_revoked: RevocationCheck | None = None,
        claim_checks: Iterable[ClaimCheck] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if is_revoked is not None and not callable(is_revoked):
            raise ConfigurationError(
                f"is_revoked must be a function taking an AccessToken and returning True when the "
                f"token is revoked (or None for no hook), not {type(is_revoked).__name__}"
            )
        if callable(claim_checks) or isinstance(claim_checks, (str, bytes, Mapping)):
            raise ConfigurationError(
                "claim_checks takes a list of functions: claim_checks=[check_tenant], not "
                f"claim_checks=check_tenant ({type(claim_checks).__name__})"
            )
        checks = tuple(claim_checks)
        for check in checks:
            if not callable(check):
                raise ConfigurationError(
                    f"claim_checks must hold functions taking the claims, not {type(check).__name__} "
                    f"{check!r}"[:200]
                )
        self.is_revoked = is_revoked
        self.claim_checks: tuple[ClaimCheck, ...] = checks
        self._throttle = _Throttle(WARNING_INTERVAL, clock)

    # -- is_revoked -------------------------------------------------------------------------

    def check_revoked(self, token: AccessToken) -> None:
        """Raise :class:`RevokedToken` or :class:`RevocationUnavailable`; return when not revoked."""
        hook = self.is_revoked
        if hook is None:
            return
        try:
            revoked = hook(token)
        except BearerError:
            raise  # the hook chose its own refusal
        except Exception as exc:  # noqa: BLE001 - an outage of the denylist: 503, never 500
            self._warn(hook, "is_revoked hook %s raised %s (%s): answering 503; jti=%r iss=%r",
                       hook_name(hook), type(exc).__name__, exc, token.jti, token.issuer, exc=exc)
            raise RevocationUnavailable() from None
        if revoked is None:
            self._warn(hook, "is_revoked hook %s returned None; it must return True or False: "
                       "answering 503 until it does", hook_name(hook))
            raise RevocationUnavailable()
        if revoked:
            raise RevokedToken()

    # -- claim checks -----------------------------------------------------------------------

    def claim_step(self, check: ClaimCheck) -> Callable[[dict[str, Any], float], None]:
        """``check`` as a validator claim step: ``step(claims, now)``, the claims read-only."""
        name = hook_name(check)

        def step(claims: dict[str, Any], now: float) -> None:
            try:
                result = check(MappingProxyType(claims))
            except BearerError:
                raise
            except Exception as exc:  # noqa: BLE001 - a check that cannot cope with the claims refuses them
                where = "".join(traceback.format_tb(exc.__traceback__)[-3:]).rstrip()
                jti = claims.get("jti")
                self._warn(check, "claim check %s raised %s: the token is refused (invalid_token); "
                           "jti=%r\n%s", name, type(exc).__name__, jti if isinstance(jti, str) else None,
                           where)
                raise InvalidClaim() from None
            if result is False:
                raise InvalidClaim()

        step.__qualname__ = step.__name__ = f"claim check: {name}"
        return step

    # -- logging ----------------------------------------------------------------------------

    def _warn(self, hook: Callable[..., object], message: str, *args: object,
              exc: BaseException | None = None) -> None:
        left_out = self._throttle.allow(f"{id(hook)}")
        if left_out is None:
            return
        if left_out:
            message += f" ({left_out} more like this in the last {int(WARNING_INTERVAL)} s)"
        log.warning(message, *args, exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None)
