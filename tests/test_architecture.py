"""The package's shape (docs/architecture.md): one folder per concern, imports flowing one way between them, no
import cycle (imports inside functions included), a small trainer, short functions and files."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nlpkd"

# The concerns, lowest first: a module may import from its own concern or from a lower row, never from a higher
# one, nor from another concern of its own row.
LEVELS: list[set[str]] = [
    {"config", "hub"},
    {"losses"},
    {"data"},
    {"models"},
    {"trainer"},
    {"report", "deploy"},
    {"jobs"},
    {"api"},
    {"__init__"},
    {"cli"},
    {"__main__"},
]
CONCERNS = set().union(*LEVELS)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["nlpkd", *parts])


def _concern(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _level(module: str) -> int:
    concern = _concern(module)
    for index, level in enumerate(LEVELS):
        if concern in level:
            return index
    raise AssertionError(
        f"{module} is in no concern of tests/test_architecture.py: add it to LEVELS"
    )


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import of a file at any depth (lazy imports in functions too), but type-only ones."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if _is_type_checking_block(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            stack.append(child)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(module: str) -> set[str]:
    """The nlpkd modules `module` imports (a name of a package resolves to its submodule when there is one)."""
    path = MODULES[module]
    found = set()
    for node in _import_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "nlpkd"}
            continue
        target = _resolve(module, path.name == "__init__.py", node)
        if target.split(".")[0] != "nlpkd":
            continue
        for alias in node.names:
            submodule = f"{target}.{alias.name}"
            found.add(submodule if submodule in MODULES else target)
    return {m for m in found if m != module}


GRAPH = {module: _imports(module) for module in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_flow_from_front_ends_down_to_the_leaves(module):
    for imported in GRAPH[module]:
        assert imported in MODULES, f"{module} imports {imported}, which does not exist"
        same_concern = _concern(imported) == _concern(module)
        assert same_concern or _level(imported) < _level(module), (
            f"{module} imports {imported}: {_concern(imported)}/ is not below {_concern(module)}/ "
            "(docs/architecture.md)"
        )


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for imported in sorted(GRAPH[module]):
            if state.get(imported) == 1:
                return [*stack[stack.index(imported) :], imported]
            if imported not in state and (found := visit(imported)):
                return found
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle_and_ignores_type_only_imports(monkeypatch):
    # The check itself must be able to fail: a lazy import inside a function closes a cycle, a type-only one
    # does not.
    lazy = ast.parse("def f():\n    from nlpkd.jobs import run\n")
    typed = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nlpkd.jobs import run\n"
    )
    assert [n.module for n in _import_nodes(lazy)] == ["nlpkd.jobs"]
    assert [n.module for n in _import_nodes(typed)] == ["typing"]
    monkeypatch.setitem(GRAPH, "nlpkd.config", {*GRAPH["nlpkd.config"], "nlpkd.jobs.steps"})
    assert _cycle() is not None


def test_the_trainer_imports_no_job_front_end_or_report_module():
    trainer_modules = [m for m in MODULES if _concern(m) == "trainer"]
    for module in trainer_modules:
        higher = {
            m
            for m in GRAPH[module]
            if _concern(m) in {"jobs", "report", "deploy", "api", "cli", "hub"}
        }
        assert not higher, f"{module} imports {higher}"


def test_the_trainer_stays_small():
    assert len((PACKAGE / "trainer" / "trainer.py").read_text().splitlines()) <= 300


def test_at_most_eight_top_level_modules_and_no_file_over_600_lines():
    top = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(top) <= 8, top
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


def _function_lengths(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            # The docstring is documentation, not code: it does not count.
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            start = body[0].lineno if body else node.lineno
            yield node.name, node.end_lineno - start + 1


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_function_is_longer_than_80_lines_of_code(module):
    long = {name: n for name, n in _function_lengths(MODULES[module]) if n > 80}
    assert not long, f"{module}: {long}"


def test_every_folder_is_a_known_concern():
    for module in MODULES:
        assert _concern(module) in CONCERNS, module
