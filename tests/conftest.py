"""Suite-wide settings.

Property tests (hypothesis) explore new random inputs on every local run. In CI (``CI`` set) they
run a fixed, derandomized set of examples so that a landing never depends on the dice; the
exploration that found real bugs here keeps happening on developers' machines.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
