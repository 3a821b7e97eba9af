"""The package's shape: no import circles anywhere, and one helper for each shared job."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import token_middleware

PACKAGE = Path(token_middleware.__file__).parent
ROOT = PACKAGE.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every package module that ``path`` imports, at module level or inside a function.

    Imports under ``if TYPE_CHECKING:`` never run, so they cannot form a circle at run time.
    """
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                # ``from pkg import sub`` names a module; ``from pkg import name`` names pkg.
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return cycles


def test_the_import_graph_sees_relative_and_function_level_imports() -> None:
    graph = _graph()
    assert "token_middleware.core.errors" in graph["token_middleware.core.validator"]
    assert "token_middleware.core._jose" in graph["token_middleware.core.keys"]  # from . import _jose
    # the circle finder finds a circle when there is one
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_circles_in_the_package() -> None:
    assert _cycles(_graph()) == []


def _definitions(pattern: str) -> list[str]:
    regex = re.compile(pattern, re.M)
    return sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if regex.search(p.read_text()))


def test_one_base64url_codec() -> None:
    assert _definitions(r"urlsafe_b64(en|de)code|altchars=|binascii\.(a2b|b2a)_base64") == ["core/b64url.py"]


def test_one_route_lookup() -> None:
    assert _definitions(r"len\(route\.prefix\) > len\(best\.prefix\)") == ["gateway/config.py"]


def test_one_adapter_state_type() -> None:
    assert _definitions(r"^class \w+:\n(?:.*\n){0,6}?    validator: TokenValidator$") == [
        "core/runtime.py"
    ]
