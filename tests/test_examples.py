"""Run the scripts in examples/ as a user would, with small settings, and check what they write and print.

The default paths fine-tune the packaged all-MiniLM-L6-v2 for a few steps, so those tests are slow; the
`--teacher PATH` and `--model_dir DIR` paths run on tiny models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ID2LABEL, WORDS, tiny_bert

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
BBC_TOPICS = ["business", "entertainment", "politics", "sports", "tech"]
STUDENT_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "metrics.json",
    "distillation.png",
    "README.md",
)


def run_example(name: str, *args: str, cwd: Path) -> str:
    """Run `examples/<name>` in a fresh interpreter; return its stdout, failing with its stderr."""
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
    )
    # The scripts import nlpkd from this checkout even when it is not pip-installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, (
        f"{name} exited with {completed.returncode}\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    )
    return completed.stdout


def label_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("labels:"))


@pytest.fixture(scope="module")
def demo_student(tmp_path_factory) -> tuple[Path, str]:
    """custom_csv.py with no --csv and no --teacher: demo CSV, fine-tuned MiniLM, 3-layer student."""
    folder = tmp_path_factory.mktemp("demo")
    stdout = run_example(
        "custom_csv.py",
        "--output_dir",
        str(folder / "student"),
        "--max_examples",
        "30",
        "--teacher_epochs",
        "1",
        "--max_steps",
        "2",
        "--max_length",
        "32",
        "--no_latency",
        cwd=folder,
    )
    return folder / "student", stdout


@pytest.mark.slow
def test_custom_csv_demo_writes_a_student_with_the_csv_labels(demo_student):
    folder, stdout = demo_student
    assert "No --csv given: wrote a demo CSV" in stdout
    for name in STUDENT_FILES:
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["student_layers"] == 3 and metrics["teacher_layers"] == [0, 3, 5]
    assert metrics["label_names"] == BBC_TOPICS
    assert "accuracy (validation)" in stdout and "retention:" in stdout
    assert label_line(stdout) == f"labels: {BBC_TOPICS}"
    config = json.loads((folder / "config.json").read_text())
    assert list(config["id2label"].values()) == BBC_TOPICS


def test_custom_csv_with_own_columns_and_teacher(tmp_path, tiny_tokenizer):
    teacher = tmp_path / "teacher"
    tiny_bert().save_pretrained(teacher)
    tiny_tokenizer.save_pretrained(teacher)
    names = list(ID2LABEL.values())
    rows = [
        {"review": " ".join(WORDS[i : i + 5]), "sentiment": names[i % 3], "stars": i}
        for i in range(20)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "reviews.csv", index=False)
    stdout = run_example(
        "custom_csv.py",
        "--csv",
        str(tmp_path / "reviews.csv"),
        "--text_column",
        "review",
        "--label_column",
        "sentiment",
        "--teacher",
        str(teacher),
        "--student_layers",
        "2",
        "--max_steps",
        "2",
        "--max_length",
        "16",
        "--output_dir",
        "out",
        cwd=tmp_path,
    )
    assert "demo CSV" not in stdout and "fine-tuning" not in stdout
    assert label_line(stdout) == f"labels: {names}"
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # 20 rows, 20% held out; 16 x 16 latency batch; two of the teacher's four layers.
    assert metrics["train_examples"] == 16 and metrics["latency_batch_shape"] == [4, 16]
    assert metrics["student_layers"] == 2 and metrics["teacher_name"] == str(teacher)
    assert "speed-up:" in stdout


@pytest.mark.slow
def test_sentence_pairs_trains_a_pair_student(tmp_path):
    stdout = run_example(
        "sentence_pairs.py",
        "--output_dir",
        "pairs",
        "--num_headlines",
        "12",
        "--teacher_epochs",
        "1",
        "--max_steps",
        "2",
        "--max_length",
        "24",
        "--no_latency",
        cwd=tmp_path,
    )
    folder = tmp_path / "pairs"
    for name in STUDENT_FILES:
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["not_paraphrase", "paraphrase"]
    metrics = json.loads((folder / "metrics.json").read_text())
    # 12 headlines -> 24 pairs -> 19 to train, 5 to evaluate.
    assert metrics["train_examples"] == 19 and metrics["main_split"] == "validation"
    predictions = [line for line in stdout.splitlines() if line.strip().startswith("student:")]
    assert len(predictions) == 3
    assert all("gold: paraphrase" in line or "gold: not_paraphrase" in line for line in predictions)
    assert all(line.split()[1] in ("paraphrase", "not_paraphrase") for line in predictions)


@pytest.mark.slow
def test_use_in_pipeline_with_a_saved_student_prints_its_labels(demo_student, tmp_path):
    folder, _ = demo_student
    stdout = run_example(
        "use_in_pipeline.py",
        "--model_dir",
        str(folder),
        "Stocks fell.",
        "A new phone.",
        cwd=tmp_path,
    )
    assert f"labels: {', '.join(BBC_TOPICS)}" in stdout
    lines = [
        line for line in stdout.splitlines() if line.endswith(("Stocks fell.", "A new phone."))
    ]
    assert len(lines) == 2
    assert all(line.split()[0] in BBC_TOPICS for line in lines)


def test_use_in_pipeline_with_a_tiny_student(tmp_path, tiny_tokenizer):
    student = tmp_path / "student"
    tiny_bert().save_pretrained(student)
    tiny_tokenizer.save_pretrained(student)
    stdout = run_example("use_in_pipeline.py", "--model_dir", str(student), cwd=tmp_path)
    assert "labels: negative, neutral, positive" in stdout
    # The four default texts, each with a label of the student and a score.
    predictions = [line.split() for line in stdout.splitlines()[2:] if line.strip()]
    assert len(predictions) == 4
    assert all(
        words[0] in ID2LABEL.values() and words[1].startswith("(0.") for words in predictions
    )


@pytest.mark.slow
def test_use_in_pipeline_distils_a_student_first_without_a_model_dir(tmp_path):
    stdout = run_example(
        "use_in_pipeline.py", "--num_examples", "10", "--max_steps", "1", "The match.", cwd=tmp_path
    )
    assert "No --model_dir given: distilling a small student first" in stdout
    assert f"labels: {', '.join(BBC_TOPICS)}" in stdout
    assert stdout.strip().splitlines()[-1].split()[0] in BBC_TOPICS
