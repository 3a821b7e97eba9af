"""CPU time spent by the server processes of a comparison, read from ``/proc`` (Linux).

On a shared machine wall-clock throughput swings with the other work; the CPU time the servers
themselves spend per request swings much less, so the HTTP figures of issues 13 and 16 show it
beside wrk's ratio as a cross-check. A gunicorn server is found by its ``--bind`` argument
(``127.0.0.1:<port>``), which its master and every forked worker share in their command line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ._http import WrkResult

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def pids_serving(bases: Sequence[str]) -> list[int]:
    """Pids of the gunicorn masters and workers bound to the ``http://host:port`` in ``bases``."""
    binds = {f"{urlsplit(b).hostname}:{urlsplit(b).port}".encode() for b in bases}
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gunicorn" in b" ".join(argv) and binds & set(argv):
            found.append(int(entry.name))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (a process gone meanwhile counts 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / _TICKS


@dataclass
class CpuMeter:
    """Wraps a wrk runner: records the servers' CPU µs per request of every run it makes."""

    bases: Sequence[str]
    run: Callable[[float], WrkResult]
    us_per_request: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> WrkResult:
        pids = pids_serving(self.bases)  # every time: gunicorn may have replaced a worker
        before = cpu_seconds(pids)
        result = self.run(seconds)
        spent = cpu_seconds(pids) - before
        self.us_per_request.append(spent / max(result.requests, 1) * 1e6)
        return result


def available() -> bool:
    return Path("/proc/self/stat").exists()
