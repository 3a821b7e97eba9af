"""With the ``metrics`` and ``otel`` extras missing, everything still imports and runs, metrics off.

A fresh interpreter blocks ``prometheus_client`` and ``opentelemetry`` at import (the way
tests/core/test_core_isolation.py blocks frameworks), then builds the demo orders service and
serves a request through it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import token_middleware

ROOT = Path(token_middleware.__file__).parent.parent

SCRIPT = r"""
import importlib.abc, sys
BLOCKED = {"prometheus_client", "opentelemetry"}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked by the test: " + name)
        return None

sys.meta_path.insert(0, Block())
from token_middleware import metrics, tracing
from token_middleware.core.errors import ConfigurationError
assert not metrics.available() and not tracing.available()
for make in (metrics.PrometheusMetrics, tracing.OpenTelemetryTracing):
    try:
        make()
    except ConfigurationError as exc:
        assert "pip install 'token-middleware[" in str(exc), exc
    else:
        raise AssertionError(f"{make} built without its library")
import token_middleware.flask_ext, token_middleware.django_ext.signals, token_middleware.drf  # noqa: F401
from demo_flask.app import create_app
from token_middleware.testing import bearer, create_issuer
import tempfile
issuer = create_issuer(tempfile.mkdtemp(), audience="orders-service")
client = create_app(issuer.flask_config()).test_client()
assert client.get("/orders/whoami", headers=bearer(issuer.mint())).status_code == 200
assert client.get("/orders/whoami", headers=bearer(issuer.mint(expired=True))).status_code == 401
assert client.get("/metrics").status_code == 404
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
print("ok")
"""


def test_everything_runs_with_the_extras_blocked() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


def test_the_blocker_really_blocks() -> None:
    pytest.importorskip("prometheus_client")
    script = SCRIPT.split("from token_middleware import")[0] + "import prometheus_client\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0 and "blocked by the test" in result.stderr
