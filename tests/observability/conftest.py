"""Fixtures for the observability tests (metrics, audit log, hooks, spans).

Real everything: prometheus_client registries, the OpenTelemetry SDK with its in-memory
exporter, the demo apps (Flask orders, Django customers) and a DRF view, tokens from the test
kit's issuer (``token_issuer``). Django is configured as tests/django configures it, so both
directories run in one process in either order.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HAVE_DJANGO = importlib.util.find_spec("django") is not None
DJANGO_DIR = Path(__file__).parent.parent / "django"
sys.path.insert(0, str(Path(__file__).parent))  # obs_support, obs_drf_urls: names of their own

from obs_support import Capture  # noqa: E402

if HAVE_DJANGO:
    sys.path.insert(0, str(DJANGO_DIR))  # tm_django_settings, shared with tests/django

    import django
    from django.conf import settings

    if not settings.configured:
        import tm_django_settings

        settings.configure(**{k: v for k, v in vars(tm_django_settings).items() if k.isupper()})
        django.setup()


@pytest.fixture
def token_audience() -> str:
    return "orders-service"


@pytest.fixture
def registry() -> Any:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


@pytest.fixture
def logs() -> Iterator[Capture]:
    """Every logger at DEBUG into one capture, for the duration of the test."""
    capture = Capture()
    root = logging.getLogger()
    library = logging.getLogger("token_middleware")
    saved = root.level, library.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    library.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(saved[0])
        library.setLevel(saved[1])


@pytest.fixture
def tracing() -> Iterator[tuple[Any, Any]]:
    """``(OpenTelemetryTracing, InMemorySpanExporter)`` on a private SDK provider."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from token_middleware.tracing import OpenTelemetryTracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield OpenTelemetryTracing(tracer_provider=provider), exporter
    provider.shutdown()
