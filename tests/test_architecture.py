"""The package's shape (docs/architecture.md): imports flow one way, the trainer stays small, functions short."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nlpkd"

# Lower layers never import from higher ones; a module may import from its own layer or below.
LAYERS: list[set[str]] = [
    {"config", "losses", "student"},
    {
        "data",
        "data.tasks",
        "data.labels",
        "data.readers",
        "data.tokenize",
        "data.convert",
        "data.augment",
        "data.unlabelled",
        "ensemble",
        "cache",
        "causal",
        "checkpoints",
        "loss_log",
        "objectives",
        "projections",
        "teacher",
        "models",
        "metrics",
    },
    {"trainer"},
    {"report", "evaluation", "plot", "card", "deploy", "hub"},
    {"pipeline", "general", "deploy_step", "continual"},
    {"quick", "cli", "__init__", "__main__"},
]
LEAVES = LAYERS[0]


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def _layer(name: str) -> int:
    for index, layer in enumerate(LAYERS):
        if name in layer:
            return index
    raise AssertionError(f"nlpkd.{name} is in no layer of tests/test_architecture.py: add it there")


def _nlpkd_imports(path: Path) -> set[str]:
    """The nlpkd modules a file imports, at any depth in the file (lazy imports count too)."""
    name = _module_name(path)
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                modules = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
                modules = [m.lstrip(".") for m in modules]
            elif node.module and node.module.startswith("nlpkd"):
                modules = [node.module[len("nlpkd.") :] or "__init__"]
            else:
                continue
            found |= {m for m in modules if m}
        elif isinstance(node, ast.Import):
            found |= {a.name[len("nlpkd.") :] for a in node.names if a.name.startswith("nlpkd.")}
    known = set().union(*LAYERS)
    # `from . import __version__` imports a name of the package's __init__, not a module.
    resolved = {m if m in known else m.split(".")[0] for m in found}
    return {m if m in known else "__init__" for m in resolved} - {name}


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_flow_from_front_ends_down_to_the_leaves(path):
    name = _module_name(path)
    for imported in _nlpkd_imports(path):
        assert _layer(imported) <= _layer(name), f"nlpkd.{name} imports the higher nlpkd.{imported}"
    if name in LEAVES:
        assert _nlpkd_imports(path) <= LEAVES, f"the leaf nlpkd.{name} imports outside the leaves"


def test_the_trainer_imports_no_job_front_end_or_report_module():
    imported = _nlpkd_imports(PACKAGE / "trainer.py")
    forbidden = {"pipeline", "quick", "cli", "hub", "report", "card", "plot", "evaluation"}
    assert not imported & forbidden


def test_the_trainer_stays_small():
    assert len((PACKAGE / "trainer.py").read_text().splitlines()) <= 300


def _function_lengths(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            # The docstring is documentation, not code: it does not count.
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            start = body[0].lineno if body else node.lineno
            yield node.name, node.end_lineno - start + 1


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_no_function_is_longer_than_80_lines_of_code(path):
    long = {name: n for name, n in _function_lengths(path) if n > 80}
    assert not long, f"{_module_name(path)}: {long}"


def test_the_layer_table_knows_every_module():
    for path in MODULES:
        _layer(_module_name(path))
