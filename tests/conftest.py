"""Suite-wide settings.

Property tests (hypothesis) explore new random inputs on every local run. In CI (``CI`` set) they
run a fixed, derandomized set of examples so that a landing never depends on the dice; the
exploration that found real bugs here keeps happening on developers' machines.

Every test starts with no current token: a test that drives an app in process and never closes
its response (a WSGI server always does) would otherwise leave its token bound for the tests
that run after it on the same thread. The tests of the adapters' own resetting close their
responses and assert it explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from token_middleware.core.context import bind_token, reset_token

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _no_token_left_bound() -> Iterator[None]:
    handle = bind_token(None)
    yield
    reset_token(handle)
