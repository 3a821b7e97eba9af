"""The core imports no web framework or HTTP client, and python-jose is touched in one module."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import token_middleware

PACKAGE = Path(token_middleware.__file__).parent
# Every module of the core package, found on disk so that a new module cannot be forgotten, plus
# the top-level package (the public re-exports) and the plain WSGI adapter, which need no framework.
CORE = sorted(f"core.{p.stem}" for p in (PACKAGE / "core").glob("*.py") if p.stem != "__init__")
MODULES = ["core", *CORE, "wsgi"]
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


def _run(extra: str = "") -> subprocess.CompletedProcess[str]:
    script = SCRIPT.format(blocked=BLOCKED, modules=MODULES) + extra
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=PACKAGE.parent)


def test_core_has_the_modules_the_design_names() -> None:
    names = {m.removeprefix("core.") for m in CORE}
    assert {"settings", "errors", "token", "scopes", "bearer", "context", "keys", "_jose",
            "validator", "issuer", "forwarding", "b64url", "runtime"} <= names


def test_core_imports_with_frameworks_and_clients_blocked() -> None:
    result = _run()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok {len(MODULES)}"


def test_the_blocker_really_blocks() -> None:
    # The check above could pass vacuously if the finder never fired: prove it does.
    result = _run("\nimport requests\n")
    assert result.returncode != 0 and "blocked by the isolation test: requests" in result.stderr


def _modules_matching(pattern: re.Pattern[str]) -> list[str]:
    return sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text()))


def test_python_jose_is_imported_only_in_jose_module() -> None:
    assert _modules_matching(re.compile(r"^\s*(from\s+jose(\.|\s)|import\s+jose\b)", re.M)) == ["core/_jose.py"]


def test_python_jose_key_attributes_are_read_only_in_jose_module() -> None:
    # python-jose's key objects keep the cryptography key in ``prepared_key``; reading it (or the
    # backends' private names) anywhere else would put python-jose behind more than one module.
    assert _modules_matching(re.compile(r"prepared_key|jose\.backends")) == ["core/_jose.py"]
