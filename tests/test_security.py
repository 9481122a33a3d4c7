"""Loading untrusted checkpoints and configs: the safe paths are the only ones in the code."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import tiny_bert

from nlpkd import create_student
from nlpkd.cli import JobArguments
from nlpkd.jobs import JobOptions

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "nlpkd").rglob("*.py"))


def calls(name: str):
    """(file, call node) for every call whose dotted name ends with `name` in the package sources."""
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                dotted = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if dotted == name:
                    yield path.name, node


def keyword(node: ast.Call, name: str):
    return next((k.value for k in node.keywords if k.arg == name), None)


def test_every_torch_load_is_weights_only():
    found = list(calls("load"))
    torch_loads = [
        (f, n)
        for f, n in found
        if isinstance(n.func, ast.Attribute) and getattr(n.func.value, "id", "") == "torch"
    ]
    # The scan sees calls: nlpkd loads checkpoints through the Trainer (safetensors), and the teacher
    # cache through datasets, so it has no torch.load of its own today; any new one must be safe.
    assert list(calls("save_pretrained")), "the AST scan must see nlpkd's calls"
    for file, node in torch_loads:
        value = keyword(node, "weights_only")
        assert isinstance(value, ast.Constant) and value.value is True, f"{file}:{node.lineno}"


def test_yaml_is_read_with_the_safe_loader_only():
    assert list(calls("safe_load"))
    assert not [
        f
        for f, n in calls("load")
        if isinstance(n.func, ast.Attribute) and getattr(n.func.value, "id", "") == "yaml"
    ]
    assert not list(calls("unsafe_load")) and not list(calls("full_load"))


def test_trust_remote_code_is_never_switched_on_by_nlpkd():
    for name in ("from_pretrained",):
        for file, node in calls(name):
            value = keyword(node, "trust_remote_code")
            assert not (isinstance(value, ast.Constant) and value.value is True), (
                f"{file}:{node.lineno}"
            )
    assert JobOptions().trust_remote_code is False and JobArguments().trust_remote_code is False


def test_students_are_saved_as_safetensors(tmp_path):
    student = create_student(tiny_bert(seed=1), num_layers=2)
    student.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
