"""The documentation site: it builds without a warning, and the pages that restate the code cannot go stale.

The build runs `mkdocs build --strict`, so a broken link or anchor, a page missing from the nav, a nav entry
without its page, or a docstring that griffe cannot read (a documented parameter the signature lacks, a
parameter with neither type nor annotation) fails here. The other tests hold docs/cli.md to the option
dataclasses, docs/faq.md to the error messages in the code, and the code samples of the pages to the API.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"
# The pages written from the code by this test's owner; the others are checked by the build alone.
CHECKED_PAGES = ("index.md", "quickstart.md", "concepts.md", "cli.md", "faq.md", "api.md")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(page: str, language: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return [body for lang, body in FENCE.findall(text) if lang == language]


def _nav_files(nav: Any) -> list[str]:
    """The page files of a MkDocs nav, however deeply nested."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [f for value in nav.values() for f in _nav_files(value)]
    if isinstance(nav, list):
        return [f for item in nav for f in _nav_files(item)]
    return []


def _mkdocs_config() -> dict[str, Any]:
    # mkdocs.yml may hold `!!python/name:` tags; a loader that ignores unknown tags reads the rest.
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    return yaml.load(MKDOCS_YML.read_text(encoding="utf-8"), Loader=Loader)


# ---- the build ------------------------------------------------------------------------------


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    nav = _nav_files(_mkdocs_config()["nav"])
    assert len(nav) == len(set(nav)), f"pages listed twice in the nav of mkdocs.yml: {nav}"
    missing = [page for page in nav if not (DOCS / page).is_file()]
    assert not missing, (
        f"mkdocs.yml lists {missing} in its nav but docs/ has no such file: write the page or "
        "remove it from the nav."
    )
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    orphans = [page for page in pages if page not in nav]
    assert not orphans, f"docs/ pages missing from the nav of mkdocs.yml: {orphans}"


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    if (
        importlib.util.find_spec("mkdocs") is None
        or importlib.util.find_spec("mkdocstrings") is None
    ):
        pytest.fail("Building the docs needs the docs extra: pip install -e '.[docs]'.")
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(MKDOCS_YML),
            "-d",
            str(site),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        "mkdocs build --strict failed (every warning is an error):\n"
        + result.stdout
        + result.stderr
    )
    return site


def test_site_builds_without_warnings(built_site):
    for page in ("index.html", "quickstart/index.html", "cli/index.html", "api/index.html"):
        assert (built_site / page).is_file(), f"the build wrote no {page}"


def test_api_reference_documents_every_public_name(built_site):
    import nlpkd

    html = (built_site / "api" / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="(nlpkd\.[\w.]+)"', html))
    undocumented = [
        name
        for name in nlpkd.__all__
        if name != "__version__"
        and not any(a == f"nlpkd.{name}" or a.endswith(f".{name}") for a in anchors)
    ]
    assert not undocumented, f"nlpkd.__all__ names without an entry in docs/api.md: {undocumented}"
    # The generated entries carry the docstrings' text, not just headings.
    assert "Softmax temperature" in html  # DistillationConfig.temperature
    assert "Builds a student with fewer encoder layers" in html  # create_student


def test_api_reference_covers_every_module():
    api_page = (DOCS / "api.md").read_text(encoding="utf-8")
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in (ROOT / "nlpkd").rglob("*.py")
        if not p.stem.startswith("_") and p.stem != "cli"
    )
    assert "nlpkd.api" in modules and "nlpkd.losses.logits" in modules
    # `::: nlpkd.config.parse_layer_map` documents a module through one of its members.
    missing = [
        m for m in modules if not re.search(rf"^::: {re.escape(m)}\b", api_page, re.MULTILINE)
    ]
    assert not missing, f"modules of nlpkd/ without a `::: MODULE` block in docs/api.md: {missing}"


# ---- docs/cli.md against the option dataclasses ---------------------------------------------


def _cli_rows() -> dict[str, list[list[str]]]:
    """`--option` -> the cells of every table row of docs/cli.md that starts with it."""
    rows: dict[str, list[list[str]]] = {}
    for line in (DOCS / "cli.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `--([\w-]+)` \|(.*)\|\s*$", line)
        if match:
            cells = [cell.strip() for cell in match.group(2).split(" | ")]
            rows.setdefault(match.group(1), []).append(cells)
    return rows


def _first_code(cell: str) -> str | None:
    match = re.search(r"`([^`]*)`", cell)
    return match.group(1) if match else None


def _same_value(documented: str | None, value: Any) -> bool:
    if documented is None:
        return False
    value = getattr(value, "value", value)  # enums such as IntervalStrategy
    if value is None:
        return documented == "None"
    if isinstance(value, bool):
        return documented == str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return float(documented) == float(value)
        except ValueError:
            return False
    return documented == str(value)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _nlpkd_option_fields() -> list[dataclasses.Field]:
    from transformers import TrainingArguments

    from nlpkd.cli import DataArguments, JobArguments, ModelArguments
    from nlpkd.config import DistillationConfig

    training = {f.name for f in dataclasses.fields(TrainingArguments)}
    return [
        *dataclasses.fields(ModelArguments),
        *dataclasses.fields(DataArguments),
        *dataclasses.fields(JobArguments),
        *(f for f in dataclasses.fields(DistillationConfig) if f.name not in training and f.init),
    ]


def test_cli_page_lists_every_nlpkd_option_with_its_default():
    from nlpkd.jobs import TRAINING_DEFAULTS as CLI_DEFAULTS

    rows = _cli_rows()
    fields = _nlpkd_option_fields()
    assert {"teacher", "task", "temperature", "layer_map"} <= {f.name for f in fields}
    problems = []
    for f in fields:
        if f.name not in rows:
            problems.append(f"--{f.name} has no row")
            continue
        default = CLI_DEFAULTS.get(f.name, _default(f))
        documented = _first_code(rows[f.name][0][0])
        if not _same_value(documented, default):
            problems.append(f"--{f.name}: the page says {documented!r}, the code {default!r}")
    assert not problems, (
        "docs/cli.md is out of date with nlpkd/cli.py and nlpkd/config.py:\n" + "\n".join(problems)
    )


def test_cli_page_lists_every_changed_training_default():
    from transformers import TrainingArguments

    from nlpkd.jobs import TRAINING_DEFAULTS as CLI_DEFAULTS

    rows = _cli_rows()
    training = {f.name: f for f in dataclasses.fields(TrainingArguments)}
    problems = []
    for name, value in CLI_DEFAULTS.items():
        cells = next((c for c in rows.get(name, []) if len(c) == 2), None)
        if cells is None:
            problems.append(f"--{name} is missing from the table of changed training defaults")
            continue
        if not _same_value(_first_code(cells[0]), value):
            problems.append(
                f"--{name}: the page says {_first_code(cells[0])!r}, CLI_DEFAULTS {value!r}"
            )
        if name in training and not _same_value(_first_code(cells[1]), _default(training[name])):
            problems.append(
                f"--{name}: the page gives TrainingArguments' default as {_first_code(cells[1])!r}, "
                f"transformers has {_default(training[name])!r}"
            )
    assert not problems, "docs/cli.md is out of date:\n" + "\n".join(problems)


def test_cli_page_names_only_existing_options():
    from transformers import TrainingArguments

    from nlpkd.cli import DEPRECATED_FLAGS

    known = {f.name for f in _nlpkd_option_fields()} | {
        f.name for f in dataclasses.fields(TrainingArguments)
    }
    known |= {flag.lstrip("-") for flag in DEPRECATED_FLAGS}
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    named = {
        name.replace("-", "_") for name in re.findall(r"`--(?:no[_-])?([a-z][a-z0-9_-]+)", text)
    } - {"config"}
    assert len(named) > 30
    unknown = sorted(named - known)
    assert not unknown, f"docs/cli.md names options that `nlpkd distill` does not have: {unknown}"


def test_cli_page_yaml_example_parses_and_the_command_line_wins(tmp_path):
    from nlpkd.cli import parse_arguments

    (example,) = _blocks("cli.md", "yaml")
    config = tmp_path / "sst2.yaml"
    config.write_text(example, encoding="utf-8")
    model_args, data_args, job_args, args = parse_arguments(
        "distill",
        ["--config", str(config), "--output_dir", str(tmp_path / "out"), "--temperature", "2"],
    )
    # The page's own example: temperature 4.0 in the file, 2 on the command line.
    assert yaml.safe_load(example)["temperature"] == 4.0
    assert args.temperature == 2.0
    assert args.alpha_kd == 0.9 and args.alpha_hidden == 1.0
    assert args.layer_map == {0: 1, 1: 3, 2: 5, 3: 7, 4: 9, 5: 11}
    assert data_args.task == "sst2" and job_args.student_layers == "6"


def test_command_lines_in_the_pages_parse(tmp_path):
    from nlpkd.cli import parse_arguments

    parsed = 0
    for page in CHECKED_PAGES:
        for block in _blocks(page, "bash"):
            for command in block.replace("\\\n", " ").splitlines():
                words = shlex.split(command, comments=True)
                if len(words) < 2 or words[0] != "nlpkd" or words[1] not in ("distill", "finetune"):
                    continue
                argv = words[2:]
                if "--config" in argv:
                    path = ROOT / argv[argv.index("--config") + 1]
                    if not path.is_file():
                        # Files the page tells the reader to write, or that a run writes.
                        continue
                    argv[argv.index("--config") + 1] = str(path)
                argv = [str(tmp_path / "out") if a.startswith("runs/") else a for a in argv]
                parse_arguments(words[1], argv)
                parsed += 1
    assert parsed >= 4


# ---- docs/faq.md against the error messages in the code -------------------------------------


def _code_messages() -> list[str]:
    """Every string literal of nlpkd/, with each f-string field written as `{...}`."""
    texts = []
    for path in (ROOT / "nlpkd").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                texts.append(
                    "".join(
                        v.value if isinstance(v, ast.Constant) else "{...}" for v in node.values
                    )
                )
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts.append(node.value)
    return texts


def test_faq_quotes_error_messages_that_the_code_raises():
    quoted = [
        match.group(1)
        for block in _blocks("faq.md", "text")
        for line in block.splitlines()
        if (match := re.match(r"^(?:\w+Error|nlpkd: error): (.+)$", line))
    ]
    assert len(quoted) >= 15
    messages = _code_messages()
    stale = [q for q in quoted if not any(q in m for m in messages)]
    assert not stale, (
        "docs/faq.md quotes error messages that nlpkd/ no longer raises (copy the current text, with "
        "{...} for each f-string field):\n" + "\n".join(stale)
    )


def test_faq_check_would_catch_a_changed_message():
    messages = _code_messages()
    assert any(
        "alpha_kd, alpha_ce, alpha_hidden, alpha_attn and alpha_relation are all 0" in m
        for m in messages
    )
    assert not any(
        "alpha_kd, alpha_ce, alpha_hidden and alpha_attn are all zero" in m for m in messages
    )
    assert any(
        "layer_map entries {...} are out of range: student layers are 0..{...}" in m
        for m in messages
    )


# ---- code samples --------------------------------------------------------------------------


@pytest.mark.parametrize("page", CHECKED_PAGES)
def test_python_samples_compile_and_import_existing_names(page):
    for block in _blocks(page, "python"):
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.split(".")[0] == "nlpkd"
            ):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), (
                        f"docs/{page} imports {alias.name} from {node.module}, which has no such name"
                    )


def test_every_public_function_and_class_has_a_docstring():
    import importlib
    import inspect
    import pkgutil

    import nlpkd

    missing = []
    for info in pkgutil.iter_modules(nlpkd.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"nlpkd.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                if not (obj.__doc__ or "").strip():
                    missing.append(f"nlpkd.{info.name}.{name}")
                if inspect.isclass(obj):
                    for attr, member in vars(obj).items():
                        if attr.startswith("_") or not inspect.isfunction(member):
                            continue
                        if not (member.__doc__ or "").strip() and not any(
                            attr in vars(base) for base in obj.__mro__[1:]
                        ):
                            missing.append(f"nlpkd.{info.name}.{name}.{attr}")
    assert not missing, f"public API without a docstring: {missing}"
