"""Watching the validator: events, observers and spans, framework-free and off by default.

Trusted: the observers themselves, which are the deployer's own code (or this package's
:mod:`token_middleware.metrics` and :mod:`token_middleware.tracing`). They only *watch*: nothing
an observer returns or raises changes a verdict. An observer that raises is logged at WARNING
on ``token_middleware.observe`` (at most once a minute per observer) and the request goes on.

An observer is a plain callable ``observer(event)``, given to the validator::

    def watch(event):
        if isinstance(event, Validation) and event.outcome == "refused":
            print("refused:", event.reason)

    validator = TokenValidator(settings, observers=[watch, PrometheusMetrics()])

Events (named tuples: immutable and cheap to build, holding no token material beyond the verified ``AccessToken``, whose
``repr`` hides the raw token):

==================== ==========================================================================
event                when
==================== ==========================================================================
:class:`Validation`  every verdict of the validator on a token: ``accepted`` or ``refused``,
                     with the reason code and the time it took (verified-cache hits included)
:class:`Refusal`     every refusal an adapter answered (validation, scopes, a missing token, an
                     unknown user): the same fields as the ``token_middleware.audit`` line
:class:`KeyFetch`    every attempt to fetch the key set (discovery included): ``ok``/``error``
:class:`Exchange`    every token exchange made for the current request: ``ok``/``error``
==================== ==========================================================================

An observer that also has ``start_span(name, attributes)`` (a :class:`Tracer`) brackets the work
in a span: validations, key fetches and exchanges each open one before the work and finish it
with the event, so spans nest as the work does (a key fetch inside the validation that needed
it). With no observers the validator holds ``watch = None`` and pays one comparison.

Token exchanges happen in outgoing clients, far from the validator: :func:`exchange` and
:func:`exchanging` find the watch of the app that validated the current request in the context
(:mod:`token_middleware.core.context`), and do nothing outside a request or without observers.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, NamedTuple, Protocol, Union, runtime_checkable

from .errors import BearerError, ConfigurationError
from .hooks import WARNING_INTERVAL, _Throttle, hook_name

if TYPE_CHECKING:
    from .token import AccessToken

log = logging.getLogger("token_middleware.observe")

_CODE = re.compile(r"[a-z_]{1,32}")
#: Attribute values of a span: what OpenTelemetry accepts, kept to plain strings and ints.
AttributeValue = Union[str, int, float, bool]


class Validation(NamedTuple):
    """One verdict of the validator: ``token`` when accepted, ``error`` when refused.

    ``seconds`` is the time the checks took; ``cached`` marks an acceptance straight from the
    verified-token cache, which runs no check (``seconds`` is then 0).
    """

    token: AccessToken | None
    error: BearerError | None
    seconds: float
    cached: bool = False

    @property
    def outcome(self) -> str:
        """``accepted`` or ``refused``."""
        return "refused" if self.error is not None else "accepted"

    @property
    def reason(self) -> str | None:
        """The refusal's reason code (``expired``, ``signature``, …), ``None`` when accepted."""
        return None if self.error is None else reason_of(self.error)


class Refusal(NamedTuple):
    """One refused request, as an adapter answered it.

    ``kid`` and ``issuer`` come from the token's header and payload even when the token was not
    verified (that is what an operator needs to see why); they are shortened and stripped of
    control characters. ``token`` is set only for a token that passed validation (a missing
    scope, an unknown user). ``request_id`` is the request's well-formed ``X-Request-ID``.
    """

    error: BearerError
    reason: str
    status: int
    adapter: str
    request_id: str | None = None
    kid: str | None = None
    issuer: str | None = None
    token: AccessToken | None = None


class KeyFetch(NamedTuple):
    """One attempt to fetch a key set: ``ok`` (usable keys obtained) or ``error``.

    ``url`` is the document last requested (credentials removed); ``status`` its HTTP status
    when the server answered; ``cause`` the operator's words for a failure (never sent to
    clients, never token material).
    """

    result: str
    url: str | None
    seconds: float
    status: int | None = None
    cause: str | None = None
    document: str = "jwks"


class Exchange(NamedTuple):
    """One token exchange for an outgoing call: ``ok`` or ``error`` (``error_type`` says which)."""

    result: str
    audience: str | None = None
    seconds: float | None = None
    error_type: str | None = None


Event = Union[Validation, Refusal, KeyFetch, Exchange]
#: ``observer(event)``: must be fast and should not raise (a raise is logged, never propagated).
Observer = Callable[[Event], None]


class OpenSpan(Protocol):
    """A span in progress, opened by :meth:`Tracer.start_span`."""

    def finish(self, event: Event | None, error: BaseException | None = None) -> None:
        """End the span with what happened (``event``), or with an unexpected ``error``."""


@runtime_checkable
class Tracer(Protocol):
    """An observer that opens spans (see :mod:`token_middleware.tracing`)."""

    def start_span(self, name: str, attributes: Mapping[str, AttributeValue]) -> OpenSpan:
        """Open a span named ``name`` and make it current until :meth:`OpenSpan.finish`."""


def reason_of(error: BaseException) -> str:
    """The reason code of ``error``: its class's ``reason`` when well-formed, else ``other``.

    A code is a class constant, never request data; the check only guards metric labels against
    a subclass somebody wrote with a free-form ``reason``.
    """
    reason = getattr(error, "reason", None)
    return reason if isinstance(reason, str) and _CODE.fullmatch(reason) else "other"


class Watch:
    """The observers of one validator, and the one place the core calls them from."""

    __slots__ = ("observers", "callbacks", "tracers", "_throttle")

    def __init__(self, observers: Iterable[Observer | Tracer]) -> None:
        if callable(observers) and not isinstance(observers, (list, tuple)):
            raise ConfigurationError(
                "observers takes a list: observers=[PrometheusMetrics()], not observers=PrometheusMetrics()"
            )
        found = tuple(observers)
        for observer in found:
            if not callable(observer) and not isinstance(observer, Tracer):
                raise ConfigurationError(
                    f"an observer is a function of the event (or a Tracer), not {type(observer).__name__}"
                )
        self.observers = found
        self.callbacks: tuple[Observer, ...] = tuple(o for o in found if callable(o))
        self.tracers: tuple[Tracer, ...] = tuple(o for o in found if isinstance(o, Tracer))
        self._throttle = _Throttle(WARNING_INTERVAL, time.monotonic)

    def __bool__(self) -> bool:
        return bool(self.observers)

    # -- events -----------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Give ``event`` to every observer; one that raises is logged and skipped."""
        for callback in self.callbacks:
            try:
                callback(event)
            except Exception as exc:  # noqa: BLE001 - watching must never change a verdict
                self._warn(callback, exc)

    def _warn(self, observer: object, exc: BaseException) -> None:
        left_out = self._throttle.allow(str(id(observer)))
        if left_out is None:
            return
        more = f" ({left_out} more in the last {int(WARNING_INTERVAL)} s)" if left_out else ""
        name = hook_name(observer) if callable(observer) else type(observer).__qualname__
        log.warning("observer %s raised %s; ignored%s", name, type(exc).__name__, more,
                    exc_info=(type(exc), exc, exc.__traceback__))

    # -- spans ------------------------------------------------------------------------------

    def start(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> tuple[OpenSpan, ...]:
        """Open a span on every tracer (``()`` without tracers)."""
        if not self.tracers:
            return ()
        spans = []
        for tracer in self.tracers:
            try:
                spans.append(tracer.start_span(name, attributes or {}))
            except Exception as exc:  # noqa: BLE001
                self._warn(tracer, exc)
        return tuple(spans)

    def finish(self, spans: tuple[OpenSpan, ...], event: Event | None, error: BaseException | None = None) -> None:
        """Finish ``spans`` (innermost last opened: finished in reverse) with ``event``."""
        for span in reversed(spans):
            try:
                span.finish(event, error)
            except Exception as exc:  # noqa: BLE001
                self._warn(span, exc)

    # -- what the core brackets -------------------------------------------------------------

    def validate(self, validate: Callable[[str | bytes], AccessToken], raw: str | bytes) -> AccessToken:
        """Run ``validate(raw)`` timed and in a span; emit its :class:`Validation`."""
        spans = self.start("token_middleware.validate") if self.tracers else ()
        start = time.perf_counter()
        try:
            token = validate(raw)
        except BearerError as err:
            event = Validation(None, err, time.perf_counter() - start)
            self.finish(spans, event)
            self.emit(event)
            raise
        except BaseException as exc:
            self.finish(spans, None, exc)
            raise
        event = Validation(token, None, time.perf_counter() - start)
        if spans:
            self.finish(spans, event)
        self.emit(event)
        return token

    def accepted_from_cache(self, token: AccessToken) -> None:
        """A verified-cache hit: an acceptance that needed no parsing (no span: too cheap)."""
        self.emit(Validation(token, None, 0.0, cached=True))


# -- exchanges: called by the outgoing clients ----------------------------------------------


def current_watch() -> Watch | None:
    """The watch of the app that validated the current request, or ``None``."""
    from .context import get_current_watch

    return get_current_watch()


def exchange(result: str, *, audience: str | None = None, seconds: float | None = None,
             error_type: str | None = None, watch: Watch | None = None) -> None:
    """Count one token exchange (``result``: ``ok`` or ``error``) for the current request's app.

    ``watch`` defaults to :func:`current_watch`; without one this does nothing. Count real
    exchanges only (a request to the token endpoint), never a cache hit.
    """
    if result not in ("ok", "error"):
        raise ValueError(f"an exchange result is 'ok' or 'error', not {result!r}")
    target = watch if watch is not None else current_watch()
    if target is not None:
        target.emit(Exchange(result, audience, seconds, error_type))


@contextmanager
def exchanging(audience: str | None = None, *, watch: Watch | None = None) -> Iterator[None]:
    """Time, trace and count the token exchange made in the ``with`` block.

    ``ok`` when the block ends normally; ``error`` when it raises (the exception goes on, and
    ``error_type`` is its ``reason`` code when it has one, else its class name)::

        with observe.exchanging("customers-service"):
            token = post_to_token_endpoint(...)
    """
    target = watch if watch is not None else current_watch()
    if target is None:
        yield
        return
    spans = target.start("token_middleware.exchange", {"token_middleware.audience": audience} if audience else {})
    start = time.perf_counter()
    try:
        yield
    except BaseException as exc:
        code = getattr(exc, "reason", None)
        error_type = code if isinstance(code, str) and _CODE.fullmatch(code) else type(exc).__qualname__
        event = Exchange("error", audience, time.perf_counter() - start, error_type)
        target.finish(spans, event)
        target.emit(event)
        raise
    event = Exchange("ok", audience, time.perf_counter() - start)
    target.finish(spans, event)
    target.emit(event)


# -- request ids ----------------------------------------------------------------------------

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def request_id(value: str | None, authorization: str | None = None) -> str | None:
    """A request's ``X-Request-ID`` when well-formed (1–128 of ``A-Za-z0-9._:@/+=-``), else ``None``.

    Never generated: an id nobody else logged correlates nothing. A value that appears in the
    ``Authorization`` header is dropped, so a client cannot make the audit log carry its token.
    """
    if not value or not _REQUEST_ID.fullmatch(value):
        return None
    if authorization and value in authorization:
        return None
    return value


def bounded(value: object, limit: int = 128) -> str | None:
    """A string from an unverified token, safe for a log field: printable, at most ``limit``."""
    if not isinstance(value, str):
        return None
    text = "".join(ch for ch in value[: 4 * limit] if ch.isprintable())
    return text if len(text) <= limit and len(value) <= 4 * limit else text[: limit - 1] + "…"
