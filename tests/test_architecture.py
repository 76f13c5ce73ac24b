"""The package's structure (docs/design.md section 8): layers, no cycle, no private reach-ins, small units."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "pimprune"
CORE = {"mapping", "pruning", "hardware", "training"}
ABOVE_CORE = {"workflows", "reporting", "cli"}
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str) -> list[tuple[str, str]]:
    """``(module, imported name)`` of every pimprune import in ``path`` (function-level ones included)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            if base.startswith("pimprune"):
                out.extend((base, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            out.extend((alias.name, "") for alias in node.names if alias.name.startswith("pimprune"))
    return out


def _targets(name: str) -> set[str]:
    found = set()
    for base, item in _imports(MODULES[name], name):
        full = f"{base}.{item}" if item else base
        found.add(full if full in MODULES else base)
    return found & set(MODULES)


def test_core_packages_do_not_import_workflows_reporting_or_cli():
    bad = []
    for name in MODULES:
        parts = name.split(".")
        if len(parts) < 2 or parts[1] not in CORE:
            continue
        for target in _targets(name):
            layer = target.split(".")[1] if "." in target else ""
            if layer in ABOVE_CORE or (parts[1] == "mapping" and layer in {"pruning", "training", "hardware"}):
                bad.append(f"{name} -> {target}")
    assert not bad


def test_no_import_cycle():
    graph = {name: _targets(name) - {name} for name in MODULES}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("folder", ["src", "tests", "benchmarks", "scripts"])
def test_no_private_name_is_imported_from_another_module(folder):
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        name = _module_name(path) if folder == "src" else str(path.relative_to(ROOT))
        for base, item in _imports(path, name):
            if item.startswith("_") and not item.startswith("__") and base != name:
                bad.append(f"{path.relative_to(ROOT)}: {base}.{item}")
    assert not bad


def test_modules_and_functions_stay_small():
    big = [f"{n}: {len(p.read_text().splitlines())} lines" for n, p in MODULES.items()
           if len(p.read_text().splitlines()) > MAX_MODULE_LINES]
    long = [f"{n}.{node.name}: {node.end_lineno - node.lineno + 1} lines" for n, p in MODULES.items()
            for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not big and not long
