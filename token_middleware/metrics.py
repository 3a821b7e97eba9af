"""Prometheus metrics, through prometheus_client (the ``metrics`` extra: ``pip install 'token-middleware[metrics]'``).

:class:`PrometheusMetrics` is an observer (:mod:`token_middleware.core.observe`): give it to the
validator, and it counts what the validator and the adapters tell it::

    from token_middleware.metrics import PrometheusMetrics
    validator = TokenValidator(settings, observers=[PrometheusMetrics()])     # default registry
    TokenAuth(app, observers=[PrometheusMetrics(registry=my_registry)])       # Flask
    TOKEN_MIDDLEWARE = {..., "OBSERVERS": ["token_middleware.metrics.PrometheusMetrics"]}  # Django

========================================================== ==========================================
metric                                                     labels
========================================================== ==========================================
``token_middleware_validations_total``                     ``outcome``: ``accepted``, ``refused``
``token_middleware_refusals_total``                        ``reason``: a reason code of the error tree
``token_middleware_jwks_fetches_total``                    ``result``: ``ok``, ``error``
``token_middleware_token_exchanges_total``                 ``result``: ``ok``, ``error``
``token_middleware_validation_duration_seconds``           none (a histogram)
========================================================== ==========================================

- ``validations_total`` counts the validator's verdicts on tokens (verified-cache hits included);
  ``refusals_total`` counts the refusals the adapters answered, whatever decided them: a token
  refused by the validator, a missing scope, a missing token on a view that needs one, an unknown
  user, a malformed ``Authorization`` header (``invalid_request``, which is no validation).
- ``validation_duration_seconds`` times each validation that ran the checks; verified-cache hits,
  which run none, are counted in ``validations_total`` only.
- Label values are bounded: the two outcomes, the two results, and reason codes that are class
  constants (:mod:`token_middleware.core.errors`). Never a subject, a token, a ``kid`` or an
  issuer. The core codes are created at zero, so ``rate()`` has a series from the start.

Trusted: nothing from requests reaches a label. One set of metric families exists per registry,
however many validators (apps, tests, Django setting reloads) count into it. Without
prometheus_client installed this module still imports; :func:`available` is ``False`` and
:class:`PrometheusMetrics` raises :class:`~token_middleware.core.errors.ConfigurationError`.
:func:`exposition` renders the text format for a ``/metrics`` view; with
``PROMETHEUS_MULTIPROC_DIR`` set (several gunicorn workers) it collects every worker's values.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .core import errors
from .core.errors import ConfigurationError
from .core.observe import Event, Exchange, KeyFetch, Refusal, Validation

try:
    import prometheus_client
except ImportError:  # the extra is not installed: metrics are off
    prometheus_client = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: Seconds. Validation is tens of microseconds; a key fetch inside one takes up to HTTP_TIMEOUT.
DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)
#: At most this many distinct reason labels (a subclass defined elsewhere brings its own).
MAX_REASONS = 64
INSTALL_HINT = "pip install 'token-middleware[metrics]'"


def available() -> bool:
    """True when prometheus_client is installed."""
    return prometheus_client is not None


def _core_reasons() -> list[str]:
    found = {cls.reason for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.BearerError)}
    return sorted(found)


class _Families:
    """The metric families of one registry, with their label children made once."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = prometheus_client
        assert p is not None
        self.validations = p.Counter("token_middleware_validations", "Verdicts of the token validator.",
                                     ["outcome"], registry=registry)
        self.refusals = p.Counter("token_middleware_refusals", "Requests refused, by reason code.",
                                  ["reason"], registry=registry)
        self.fetches = p.Counter("token_middleware_jwks_fetches", "Attempts to fetch the key set.",
                                 ["result"], registry=registry)
        self.exchanges = p.Counter("token_middleware_token_exchanges", "Token exchanges (RFC 8693).",
                                   ["result"], registry=registry)
        self.duration = p.Histogram("token_middleware_validation_duration_seconds",
                                    "Time to validate a token that was not in the verified cache.",
                                    registry=registry, buckets=DURATION_BUCKETS)
        self.accepted = self.validations.labels("accepted")
        self.refused = self.validations.labels("refused")
        self.fetch_ok, self.fetch_error = self.fetches.labels("ok"), self.fetches.labels("error")
        self.exchange_ok, self.exchange_error = self.exchanges.labels("ok"), self.exchanges.labels("error")
        self.reasons: dict[str, Any] = {reason: self.refusals.labels(reason) for reason in _core_reasons()}
        self.other = self.refusals.labels("other")
        self.lock = threading.Lock()

    def reason(self, code: str) -> Any:
        child = self.reasons.get(code)
        if child is not None:
            return child
        with self.lock:
            if code not in self.reasons and len(self.reasons) < MAX_REASONS:
                self.reasons[code] = self.refusals.labels(code)
            return self.reasons.get(code, self.other)


_by_registry: weakref.WeakKeyDictionary[Any, dict[Callable[[Any], Any], Any]] = weakref.WeakKeyDictionary()
_by_registry_lock = threading.Lock()
_F = TypeVar("_F")


def families_for(registry: CollectorRegistry, build: Callable[[CollectorRegistry], _F]) -> _F:
    """The metric families ``build(registry)`` registers, built once per registry.

    prometheus_client's registries are process-wide by design (the default one is a module
    global there): a family can be registered once per registry, so each kind of family set
    (the services' here, the gateway's in :mod:`token_middleware.gateway.metrics`) is shared.
    """
    with _by_registry_lock:
        kinds = _by_registry.setdefault(registry, {})
        found = kinds.get(build)
        if found is None:
            found = kinds[build] = build(registry)
        return cast("_F", found)


def _families(registry: CollectorRegistry) -> _Families:
    return families_for(registry, _Families)


class PrometheusMetrics:
    """An observer counting validations, refusals, key fetches and exchanges (see the module docstring).

    ``registry`` defaults to prometheus_client's default registry.
    """

    __slots__ = ("registry", "_f")

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if prometheus_client is None:
            raise ConfigurationError(f"metrics need prometheus_client: {INSTALL_HINT}")
        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        self._f = _families(self.registry)

    def __call__(self, event: Event) -> None:
        f = self._f
        if type(event) is Validation:
            if event.error is None:
                f.accepted.inc()
            else:
                f.refused.inc()
            if not event.cached:
                f.duration.observe(event.seconds)
        elif type(event) is Refusal:
            f.reason(event.reason).inc()
        elif type(event) is KeyFetch:
            (f.fetch_ok if event.result == "ok" else f.fetch_error).inc()
        elif type(event) is Exchange:
            (f.exchange_ok if event.result == "ok" else f.exchange_error).inc()

    def __repr__(self) -> str:
        return f"PrometheusMetrics(registry={self.registry!r})"


def exposition(registry: CollectorRegistry | None = None, accept: str | None = None) -> tuple[bytes, str]:
    """``(body, content_type)`` of a ``/metrics`` answer for ``registry`` (default: the default one).

    With ``PROMETHEUS_MULTIPROC_DIR`` set and no ``registry``, the values of every worker process
    (prometheus_client's multiprocess mode). ``accept`` picks the format (OpenMetrics when asked).
    """
    if prometheus_client is None:
        raise ConfigurationError(f"metrics need prometheus_client: {INSTALL_HINT}")
    from prometheus_client.exposition import choose_encoder

    if registry is None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = prometheus_client.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = prometheus_client.REGISTRY
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
