"""The benchmark suite runs: ``python -m benchmarks --quick`` completes and prints its rows.

No timing is asserted (a verdict of MISSED is a finding of the suite, not a failure here); only
that each selected figure ran to the end, printed its expected rows, and did not crash.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.__main__ import format_table, selected
from benchmarks._common import Row
from benchmarks._http import parse_wrk

ROOT = Path(__file__).resolve().parent.parent

MICRO_ROWS = (
    "cold RS256 validation / raw verify",
    "cold ES256 validation / raw verify",
    "RS256 python-jose jwt.decode, JWKS dict / raw",
    "cache hit, validate(token)",
)
JWKS_ROWS = ("JWKS fetches in steady state", "JWKS fetches, flood of unknown kids")


def run_suite(tmp_path: Path, *args: str) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--rounds", "2", "--json", str(out), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(out.read_text())


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        pytest.param("micro", MICRO_ROWS, id="micro"),
        pytest.param("jwks", JWKS_ROWS, id="jwks"),
    ],
)
def test_suite_completes_and_prints_rows(tmp_path: Path, only: str, expected: tuple[str, ...]) -> None:
    stdout, report = run_suite(tmp_path, "--only", only, "--duration", "1")
    names = [row["name"] for row in report["rows"]]
    for name in expected:
        assert name in names
        assert name in stdout
    assert "crashed" not in stdout
    assert all(row["verdict"] in ("met", "MISSED", "") for row in report["rows"])
    assert "cpus (nproc)" in report["machine"]


def test_token_never_printed(tmp_path: Path) -> None:
    stdout, _ = run_suite(tmp_path, "--only", "cache")
    assert "eyJ" not in stdout  # every JWS header starts with base64url '{"'


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        pytest.param(["micro"], ["cold", "cache"], id="group"),
        pytest.param(["jwks,cold", "cold"], ["jwks", "cold"], id="comma-and-repeat"),
        pytest.param([], ["cold", "cache", "http", "gateway", "jwks", "metrics", "exchange", "peers", "django"], id="default-all"),
    ],
)
def test_selection(only: list[str], expected: list[str]) -> None:
    assert selected(only) == expected


def test_unknown_figure_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown figure 'nope'"):
        selected(["nope"])


WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:1/orders/whoami
  1 threads and 16 connections
  7266 requests in 2.00s, 1.5MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 12
Requests/sec:   3633.00
Transfer/sec:    770.00KB
"""


def test_parse_wrk_counts_failures() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert (result.requests_per_second, result.requests, result.non_2xx, result.socket_errors) == (3633.0, 7266, 12, 5)


def test_markdown_table_escapes_pipes() -> None:
    table = format_table([Row("a", "x | y", "1.00×", target="≤ 1.6×", met=True)], markdown=True)
    assert "x \\| y" in table and "| met |" in table
