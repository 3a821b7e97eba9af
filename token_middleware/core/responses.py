"""Serialising a :class:`~token_middleware.core.errors.BearerError` into an HTTP response.

Framework-free: returns a status line, headers and body bytes that every adapter can send. The
body is JSON (``{"error": …, "error_description": …}``) unless the client prefers HTML. It
carries only the error's safe description: never the token, never a stack trace.
"""

from __future__ import annotations

import html
import json
from http import HTTPStatus

from .errors import BearerError, KeysUnavailable


def status_line(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def prefers_html(accept: str | None) -> bool:
    """True when ``Accept`` asks for HTML ahead of JSON (a browser navigating)."""
    if not accept:
        return False
    accept = accept.lower()
    if "text/html" not in accept:
        return False
    return "application/json" not in accept or accept.index("text/html") < accept.index("application/json")


def error_response(err: BearerError, realm: str, accept: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
    """``(status_line, headers, body)`` for ``err``."""
    headers = err.headers(realm)
    if prefers_html(accept):
        title = html.escape(HTTPStatus(err.status_code).phrase)
        text = html.escape(err.description)
        body = f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{text}</p>\n".encode()
        content_type = "text/html; charset=utf-8"
    else:
        body = json.dumps(err.to_dict()).encode()
        content_type = "application/json"
    headers += [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    if not isinstance(err, KeysUnavailable):
        headers.append(("Vary", "Authorization"))
    return status_line(err.status_code), headers, body
