"""Helpers of the observability tests (a module with a name of its own: ``conftest`` is ambiguous
across test directories). Imported after tests/observability/conftest.py put this folder on the path."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any


def sample(registry: Any, name: str, **labels: str) -> float:
    """The current value of one sample (0 when the series does not exist yet)."""
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


class Capture(logging.Handler):
    """Every record, as emitted (extras included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def audit(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == "token_middleware.audit"]


def record_text(record: logging.LogRecord) -> str:
    """Everything a log handler could write of ``record``: message, args, extras, traceback."""
    formatted = logging.Formatter("%(levelname)s %(name)s %(message)s").format(record)
    return formatted + "\n" + json.dumps(record.__dict__, default=repr)


def token_material(token: str) -> list[str]:
    """What must never be logged of ``token``: the whole, each segment, each segment's prefix."""
    needles = [token]
    for segment in token.split("."):
        if len(segment) >= 12:
            needles += [segment, segment[:12]]
    return needles


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def call(app: Any, headers: dict[str, str] | None = None) -> int:
    """Drive a WSGI app once; the status code."""
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": ""}
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    seen: list[str] = []
    body = app(environ, lambda status, headers, exc_info=None: seen.append(status))
    b"".join(body)
    getattr(body, "close", lambda: None)()
    return int(seen[0].split()[0])
