"""The gateway's own Prometheus counters (the ``metrics`` extra: prometheus_client).

=================================================== ===============================================
metric                                              labels
=================================================== ===============================================
``token_middleware_gateway_tokens_minted_total``    none
``token_middleware_gateway_token_exchanges_total``  ``result``: ``ok`` or an RFC 6749 / RFC 8693
                                                    error code (:data:`EXCHANGE_RESULTS`), else
                                                    ``other``
``token_middleware_gateway_logins_total``           ``result``: ``ok``, ``failed``, ``limited``
=================================================== ===============================================

- ``tokens_minted_total`` counts the access tokens the gateway signs for forwarding (a request
  or an nginx ``/_auth``), where the minter signs them; a reused cached token is not counted.
  An exchanged token is counted as ``token_exchanges_total{result="ok"}``.
- ``logins_total`` counts verdicts on the login form: ``ok`` (the password matched), ``failed``
  (it did not, or the form was unusable), ``limited`` (the login limiter refused before any
  password check).
- The service side's ``token_middleware_token_exchanges_total`` (:mod:`token_middleware.metrics`)
  is another family: the ``gateway_`` prefix keeps both in one registry.

Trusted: nothing. Every label value is taken from a fixed set here; anything else becomes
``other``, so a caller passing request data cannot grow the series count. All children are
created at zero, so ``rate()`` has a series from the start. Without prometheus_client,
:func:`gateway_metrics` answers ``None`` and the gateway runs without counters (``/metrics`` is 404).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigurationError
from ..metrics import INSTALL_HINT, available, families_for

try:
    import prometheus_client
except ImportError:  # the extra is not installed: metrics are off
    prometheus_client = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: ``result`` values of ``token_middleware_gateway_token_exchanges_total``: ``ok``, the RFC 6749
#: section 5.2 codes, RFC 8693's ``invalid_target``, the two server-side codes, and ``other``.
EXCHANGE_RESULTS = ("ok", "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                    "unsupported_grant_type", "invalid_scope", "invalid_target", "server_error",
                    "temporarily_unavailable", "other")
#: ``result`` values of ``token_middleware_gateway_logins_total``.
LOGIN_RESULTS = ("ok", "failed", "limited")

MINTED_NAME = "token_middleware_gateway_tokens_minted"
EXCHANGES_NAME = "token_middleware_gateway_token_exchanges"
LOGINS_NAME = "token_middleware_gateway_logins"


class _Families:
    """The gateway's families in one registry, with every label child made once."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = prometheus_client
        assert p is not None
        self.minted = p.Counter(MINTED_NAME, "Access tokens minted by the gateway.", registry=registry)
        exchanges = p.Counter(EXCHANGES_NAME, "Token exchange requests (RFC 8693) answered by the gateway.",
                              ["result"], registry=registry)
        logins = p.Counter(LOGINS_NAME, "Login form submissions judged by the gateway.", ["result"],
                           registry=registry)
        self.exchanges: dict[str, Any] = {r: exchanges.labels(r) for r in EXCHANGE_RESULTS}
        self.logins: dict[str, Any] = {r: logins.labels(r) for r in LOGIN_RESULTS}


class GatewayMetrics:
    """The gateway's counters (see the module docstring); ``registry`` defaults to the default one."""

    __slots__ = ("registry", "default_registry", "_f")

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if prometheus_client is None:
            raise ConfigurationError(f"gateway metrics need prometheus_client: {INSTALL_HINT}")
        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        #: True when counting into prometheus_client's default registry (``/metrics`` then
        #: honours ``PROMETHEUS_MULTIPROC_DIR``: :func:`token_middleware.metrics.exposition`).
        self.default_registry = self.registry is prometheus_client.REGISTRY
        self._f = families_for(self.registry, _Families)

    def minted(self) -> None:
        """One access token was signed for forwarding."""
        self._f.minted.inc()

    def exchange(self, result: str) -> None:
        """One exchange request was answered: ``"ok"`` or its RFC 6749 error code."""
        f = self._f.exchanges
        (f.get(result) or f["other"]).inc()

    def login(self, result: str) -> None:
        """One login form was judged: ``"ok"``, ``"failed"`` or ``"limited"`` (anything else: ``failed``)."""
        f = self._f.logins
        (f.get(result) or f["failed"]).inc()

    def __repr__(self) -> str:
        return f"GatewayMetrics(registry={self.registry!r})"


def gateway_metrics(registry: CollectorRegistry | None = None) -> GatewayMetrics | None:
    """A :class:`GatewayMetrics`, or ``None`` when prometheus_client is not installed."""
    if not available():
        return None
    return GatewayMetrics(registry)
