"""Shared pieces: result rows, run options, interleaved timing, and the keys and tokens of a run.

Timing rule: candidates of one figure are timed in alternation (round ``r`` runs them in an order
rotated by ``r``), each round long enough to dwarf timer resolution, with the garbage collector
paused as :mod:`timeit` does. A figure's result is the median over rounds of the per-round ratio
to its baseline; median absolute times are shown beside it for context.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from token_middleware.core.issuer import SigningKey, TokenIssuer, jwks_document
from token_middleware.core.settings import Settings

ISSUER = "http://127.0.0.1/bench-issuer"
AUDIENCE = "orders-service"
SUBJECT = "alice"
SCOPES = ("orders:read", "orders:write", "customers:read")


@dataclass(frozen=True)
class Options:
    """Command-line options shared by every figure."""

    quick: bool = False
    rounds: int | None = None
    duration: float | None = None

    def rounds_or(self, default: int, quick: int) -> int:
        return self.rounds if self.rounds is not None else (quick if self.quick else default)

    def duration_or(self, default: float, quick: float) -> float:
        return self.duration if self.duration is not None else (quick if self.quick else default)


@dataclass(frozen=True)
class Row:
    """One printed line: a figure's measurement, its target and the verdict.

    ``met`` is ``None`` for context rows (no target) and for skipped measurements.
    """

    figure: str
    name: str
    value: str
    target: str = ""
    met: bool | None = None
    note: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "skipped" if self.value == "skipped" else ""
        return "met" if self.met else "MISSED"


def ratio_text(value: float) -> str:
    return f"{value:.2f}×"


def us_text(value: float) -> str:
    return f"{value:.1f} µs" if value >= 10 else f"{value:.2f} µs"


# -- interleaved micro-timing -------------------------------------------------------------------


def _batch(fn: Callable[[], object], n: int) -> float:
    """Seconds for ``n`` calls of ``fn``."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - start


def calibrate(fn: Callable[[], object], batch_seconds: float) -> int:
    """How many calls of ``fn`` take about ``batch_seconds`` (at least 10)."""
    n = 1
    while True:
        elapsed = _batch(fn, n)
        if elapsed >= 0.02:
            return max(10, int(n * batch_seconds / elapsed))
        n *= 2


def interleave(
    candidates: Mapping[str, Callable[[], object]], *, rounds: int, batch_seconds: float
) -> dict[str, list[float]]:
    """Microseconds per call of each candidate, one value per round, candidates alternating."""
    names = list(candidates)
    sizes = {name: calibrate(candidates[name], batch_seconds) for name in names}
    out: dict[str, list[float]] = {name: [] for name in names}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                n = sizes[name]
                out[name].append(_batch(candidates[name], n) / n * 1e6)
    finally:
        if enabled:
            gc.enable()
    return out


def median_ratio(samples: Mapping[str, Sequence[float]], name: str, baseline: str) -> float:
    """Median over rounds of ``samples[name][r] / samples[baseline][r]``."""
    return statistics.median(a / b for a, b in zip(samples[name], samples[baseline]))


# -- keys and tokens ----------------------------------------------------------------------------


@dataclass
class Fixture:
    """Fresh keys, their public JWKS in a file, settings that trust them, and tokens.

    ``rs_token`` and ``es_token`` look like what the gateway mints (RFC 9068, two audiences,
    three scopes) and live an hour.
    """

    directory: Path
    rs_key: SigningKey
    es_key: SigningKey
    jwks_path: Path
    rs_token: str
    es_token: str

    @classmethod
    def create(cls, directory: Path) -> Fixture:
        rs_key = SigningKey.generate("RS256")
        es_key = SigningKey.generate("ES256")
        jwks_path = directory / "jwks.json"
        jwks_path.write_text(json.dumps(jwks_document([rs_key, es_key])))
        return cls(
            directory=directory,
            rs_key=rs_key,
            es_key=es_key,
            jwks_path=jwks_path,
            rs_token=mint(rs_key),
            es_token=mint(es_key),
        )

    def settings(self, **extra: Any) -> Settings:
        return Settings.from_mapping(
            {"ISSUER": ISSUER, "AUDIENCE": AUDIENCE, "PUBLIC_KEYS": str(self.jwks_path), **extra}
        )

    def jwks(self) -> dict[str, Any]:
        return jwks_document([self.rs_key, self.es_key])


def mint(key: SigningKey, *, issuer: str = ISSUER, ttl: int = 3600) -> str:
    return TokenIssuer(issuer, key, ttl=ttl).mint(
        sub=SUBJECT, audience=[AUDIENCE, "customers-service"], scopes=SCOPES, client_id="gateway"
    )


@contextmanager
def temp_dir(prefix: str = "token-middleware-bench-") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- the machine --------------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else "unknown"


def _tool_version(argv: Sequence[str], pattern: str) -> str:
    binary = shutil.which(argv[0]) or (argv[0] if os.access(argv[0], os.X_OK) else None)
    if binary is None:
        return "not installed"
    try:
        done = subprocess.run([binary, *argv[1:]], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(pattern, done.stdout + done.stderr)
    return match.group(1) if match else "unknown"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpus (nproc)": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python-jose": _version("python-jose"),
        "cryptography": _version("cryptography"),
        "flask": _version("flask"),
        "gunicorn": _version("gunicorn"),
        "wrk": _tool_version(["wrk", "--version"], r"wrk (\S+)"),
        "nginx": _tool_version(["/usr/sbin/nginx", "-v"], r"nginx/(\S+)"),
        "load average at start": load_average(),
    }


def load_average() -> str:
    """The 1-minute load average: other work on the machine makes every figure noisier."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"
