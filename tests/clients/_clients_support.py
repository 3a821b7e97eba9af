"""Names shared by the client tests (imported by ``conftest.py`` and the test modules)."""

from __future__ import annotations

from collections.abc import Callable

#: Every outgoing client, by the name the tests use (see ``make_caller`` in ``conftest.py``).
CLIENTS = [
    "requests-session",
    "requests-auth",
    "httpx-client",
    "httpx-async",
    "instrumented-requests",
    "instrumented-httpx",
]

#: GET a URL; the ``Authorization`` that the server there saw.
Caller = Callable[[str], "str | None"]
