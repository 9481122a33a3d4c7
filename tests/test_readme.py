"""The README's promises: its Python example runs, and its two commands are the ones CI and make run."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import tiny_bert

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_python_example_runs(tmp_path, monkeypatch, tiny_tokenizer):
    (code,) = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    teacher_dir = tmp_path / "teacher"
    teacher = tiny_bert(
        seed=1,
        num_labels=5,
        max_position_embeddings=128,
        id2label={i: f"topic{i}" for i in range(5)},
        label2id={f"topic{i}": i for i in range(5)},
    )
    teacher.save_pretrained(teacher_dir)
    tiny_tokenizer.save_pretrained(teacher_dir)
    # Same code, with a tiny teacher in place of the one `make demo` writes, and one step instead of two epochs.
    assert '"runs/bbc-minilm-l3/teacher"' in code and "num_train_epochs=2" in code
    code = code.replace('"runs/bbc-minilm-l3/teacher"', repr(str(teacher_dir)))
    code = code.replace("num_train_epochs=2", "max_steps=1, use_cpu=True, report_to=[]")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    saved = tmp_path / "runs" / "my-student"
    assert (saved / "model.safetensors").is_file() and (saved / "config.json").is_file()


def test_quickstart_commands_match_ci_and_makefile():
    quickstart = README.split("## Quickstart", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quickstart, flags=re.M)
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(
        r"^demo: install\n\t\$\(BIN\)/nlpkd distill --output_dir", makefile, flags=re.M
    )
    assert re.search(r"^test: install\n\t\$\(BIN\)/python -m pytest", makefile, flags=re.M)
