"""OpenTelemetry spans for validations, key fetches and token exchanges (the ``otel`` extra).

:class:`OpenTelemetryTracing` is a :class:`~token_middleware.core.observe.Tracer`: give it to
the validator like any observer, and it opens a span around each piece of work, current while
the work runs, so spans nest as the work does (and other instrumentation's spans nest inside)::

    from token_middleware.tracing import OpenTelemetryTracing
    validator = TokenValidator(settings, observers=[OpenTelemetryTracing()])  # global provider

=============================== ======== =========================================================
span                            kind     attributes
=============================== ======== =========================================================
``token_middleware.validate``   INTERNAL ``token_middleware.outcome`` (``accepted``/``refused``);
                                         on a refusal ``error.type`` = the reason code
``token_middleware.fetch_keys`` INTERNAL one attempt to get the key set: ``token_middleware.result``,
                                         ``url.full``, ``http.response.status_code``, ``error.type``
``GET``                         CLIENT   each HTTP GET of that attempt (discovery, JWKS), by the
                                         HTTP semantic conventions: ``http.request.method``,
                                         ``url.full``, ``server.address``, ``server.port``,
                                         ``http.response.status_code``, ``error.type``
``token_middleware.exchange``   INTERNAL ``token_middleware.result``, ``token_middleware.audience``,
                                         ``error.type``
=============================== ======== =========================================================

``error.type`` follows the semantic conventions for errors: a low-cardinality identifier (the
reason code, an HTTP status such as ``"503"``, or ``fetch_error`` when the key server gave no
status) and the span status is ERROR. Trusted: nothing. Spans hold no token material, no
subject, no claims: URLs are the configured key locations, without credentials; the status
description of a failed fetch is the operator's cause (which names the URL, never a token).
Without opentelemetry-api installed this module still imports; :func:`available` is ``False``
and :class:`OpenTelemetryTracing` raises :class:`~token_middleware.core.errors.ConfigurationError`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .core.errors import ConfigurationError
from .core.observe import AttributeValue, Event, Exchange, KeyFetch, Validation

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
except ImportError:  # the extra is not installed: tracing is off
    trace = None  # type: ignore[assignment]
    otel_context = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

INSTALL_HINT = "pip install 'token-middleware[otel]'"


def available() -> bool:
    """True when opentelemetry-api is installed."""
    return trace is not None


def _server(url: str) -> dict[str, AttributeValue]:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return {}
    return {"server.address": parts.hostname, "server.port": port} if parts.hostname else {}


class _OpenSpan:
    __slots__ = ("span", "handle")

    def __init__(self, span: Any, handle: Any) -> None:
        self.span = span
        self.handle = handle

    def finish(self, event: Event | None, error: BaseException | None = None) -> None:
        span = self.span
        try:
            if event is None:
                kind = type(error).__qualname__ if error is not None else "_OTHER"
                span.set_attribute("error.type", kind)
                span.set_status(trace.StatusCode.ERROR)
            elif type(event) is Validation:
                span.set_attribute("token_middleware.outcome", event.outcome)
                if event.error is not None:
                    self._error(event.reason or "_OTHER")
            elif type(event) is KeyFetch:
                span.set_attribute("token_middleware.result", event.result)
                if event.url:
                    span.set_attribute("url.full", event.url)
                if event.status is not None:
                    span.set_attribute("http.response.status_code", event.status)
                if event.result != "ok":
                    failed = event.status is not None and event.status >= 400
                    self._error(str(event.status) if failed else "fetch_error", event.cause)
            elif type(event) is Exchange:
                span.set_attribute("token_middleware.result", event.result)
                if event.audience:
                    span.set_attribute("token_middleware.audience", event.audience)
                if event.result != "ok":
                    self._error(event.error_type or "_OTHER")
        finally:
            otel_context.detach(self.handle)
            span.end()

    def _error(self, kind: str, description: str | None = None) -> None:
        self.span.set_attribute("error.type", kind)
        self.span.set_status(trace.Status(trace.StatusCode.ERROR, description))


class OpenTelemetryTracing:
    """The spans of the module docstring; ``tracer_provider`` defaults to the global one."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        if trace is None:
            raise ConfigurationError(f"tracing needs opentelemetry-api: {INSTALL_HINT}")
        from . import __version__

        self._tracer = trace.get_tracer("token_middleware", __version__, tracer_provider=tracer_provider)

    def start_span(self, name: str, attributes: Mapping[str, AttributeValue]) -> _OpenSpan:
        attrs = dict(attributes)
        kind = trace.SpanKind.INTERNAL
        if name == "GET":  # an HTTP client span (semantic conventions: named after the method)
            kind = trace.SpanKind.CLIENT
            url = attrs.get("url.full")
            if isinstance(url, str):
                attrs.update(_server(url))
        span = self._tracer.start_span(name, kind=kind, attributes=attrs, record_exception=False)
        handle = otel_context.attach(trace.set_span_in_context(span))
        return _OpenSpan(span, handle)

    def __repr__(self) -> str:
        return "OpenTelemetryTracing()"
