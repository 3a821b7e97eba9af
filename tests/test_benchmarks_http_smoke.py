"""The HTTP figures of issues 13 and 16 run: ``python -m benchmarks --quick --only django,exchange``.

No timing is asserted (a MISSED verdict is a finding of the suite, not a failure here): only that
both figures ran to the end with real servers, printed their new rows and did not crash. Skipped
when wrk or gunicorn is missing (the figures themselves would only say "skipped").
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

DJANGO_ROWS = (
    "/customers/whoami with middleware / bare Django",
    "non-2xx responses (+ socket errors) with middleware (Django)",
    "server CPU per request, bare / with middleware (Django)",
    "JWKS fetches under load (Django)",
)
EXCHANGE_HTTP_ROWS = (
    "/orders/chain over HTTP, exchange mode / forwarding mode",
    "non-2xx responses (+ socket errors), /orders/chain over HTTP",
    "servers' CPU per chain request, forwarding / exchange",
    "exchanges at the gateway, HTTP (in all / during the timed rounds)",
)

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None or importlib.util.find_spec("gunicorn") is None,
    reason="the HTTP figures need wrk and gunicorn",
)


def test_http_figures_complete_and_print_rows(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--rounds", "1", "--duration", "1",
         "--only", "django,exchange", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=150, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "crashed" not in done.stdout and "skipped" not in done.stdout, done.stdout
    assert "eyJ" not in done.stdout + done.stderr  # no token printed
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    for names, figure in ((DJANGO_ROWS, "i"), (EXCHANGE_HTTP_ROWS, "g")):
        for name in names:
            assert rows[name]["figure"] == figure
            assert rows[name]["verdict"] in ("met", "MISSED", "")  # "": the CPU cross-checks
    assert rows[DJANGO_ROWS[0]]["data"]["ratio"] > 0
    assert rows[EXCHANGE_HTTP_ROWS[0]]["data"]["ratio"] > 0
