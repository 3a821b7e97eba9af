"""The core imports no web framework or HTTP client, and python-jose is called from one module."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import token_middleware

PACKAGE = Path(token_middleware.__file__).parent
CORE = ["settings", "errors", "token", "scopes", "bearer", "context", "keys", "_jose", "validator",
        "responses", "issuer", "wsgi"]
if (PACKAGE / "forwarding.py").exists():
    CORE.append("forwarding")
BLOCKED = ["flask", "django", "requests", "httpx", "werkzeug", "rest_framework", "gevent"]

SCRIPT = """
import importlib, importlib.abc, sys
BLOCKED = {blocked!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked by the isolation test: " + name)
        return None

sys.meta_path.insert(0, Block())
for name in BLOCKED:
    assert name not in sys.modules, name
import token_middleware
for module in {modules!r}:
    importlib.import_module("token_middleware." + module)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
print("ok", len({modules!r}))
"""


def test_core_imports_with_frameworks_and_clients_blocked() -> None:
    script = SCRIPT.format(blocked=BLOCKED, modules=CORE)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok {len(CORE)}"


def test_the_blocker_really_blocks() -> None:
    # The check above could pass vacuously if the finder never fired: prove it does.
    script = SCRIPT.format(blocked=BLOCKED, modules=CORE) + "\nimport requests\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=PACKAGE.parent)
    assert result.returncode != 0 and "blocked by the isolation test: requests" in result.stderr


def test_python_jose_is_imported_only_in_jose_module() -> None:
    pattern = re.compile(r"^\s*(from\s+jose(\.|\s)|import\s+jose\b)", re.M)
    importers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text()))
    assert importers == ["_jose.py"]
