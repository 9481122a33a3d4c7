"""The GLUE recipes: every YAML parses through the `nlpkd` parser and runs end to end on a tiny teacher;
`recipes/run_glue.sh` runs, passes flags and stops on failure; `recipes/results_table.py` prints exact tables.

The real recipes download BERT-base teachers and GLUE from the Hub, which tests never reach: the end-to-end
runs swap in a tiny 12-layer teacher and local files through command-line overrides.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from enum import Enum
from pathlib import Path

import pytest
import yaml
from conftest import tiny_bert

from nlpkd.cli import main, parse_arguments
from nlpkd.data import GLUE_TASKS, get_task

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
GLUE_DIR = RECIPES / "glue"
RUN_GLUE = RECIPES / "run_glue.sh"
# The order of the GLUE paper and leaderboard, which run_glue.sh and the table follow.
GLUE_ORDER = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")


def load_results_table():
    # recipes/ is not a package: load the script the way `python recipes/results_table.py` runs it.
    spec = importlib.util.spec_from_file_location("results_table", RECIPES / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results_table_module = load_results_table()


def recipe(task: str) -> Path:
    return GLUE_DIR / f"{task}.yaml"


def parse(task: str, *extra: str):
    return parse_arguments("distill", ["--config", str(recipe(task)), "--output_dir", "x", *extra])


def parsed_value(parsed, key: str):
    for obj in parsed:
        if hasattr(obj, key):
            value = getattr(obj, key)
            return value.value if isinstance(value, Enum) else value
    raise AssertionError(f"{key} is on none of the parsed argument objects")


# ------------------------------------------------------------------------------------------------
# The YAML files
# ------------------------------------------------------------------------------------------------


def test_there_is_one_recipe_per_glue_task():
    assert sorted(path.stem for path in GLUE_DIR.glob("*.yaml")) == sorted(GLUE_TASKS)
    assert sorted(GLUE_ORDER) == sorted(GLUE_TASKS)
    assert results_table_module.GLUE_ORDER == GLUE_ORDER


@pytest.mark.parametrize("task", GLUE_TASKS)
def test_recipe_parses_into_the_values_it_states(task):
    raw = yaml.safe_load(recipe(task).read_text())
    parsed = parse(task)
    model_args, data_args, job_args, args = parsed

    # Every key reached a field with its value and type (an unknown key or a bad type would raise).
    for key, value in raw.items():
        got = parsed_value(parsed, key)
        if key == "teacher":  # one in YAML; the field is a list (--teacher A B: an ensemble)
            value = [value]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert isinstance(got, (int, float)) and not isinstance(got, bool), key
            assert got == pytest.approx(value), key
        else:
            assert got == value, key
            assert type(got) is type(value), key

    assert data_args.task == task
    # The teacher is the public checkpoint fine-tuned on this very task (a copy-paste guard).
    assert model_args.teacher == [f"JeremiahZ/bert-base-uncased-{task}"]  # one --teacher
    assert job_args.finetune_teacher == "auto"
    # DistilBERT's layer choice: six of the teacher's twelve, first and last kept.
    assert job_args.student_layers == "0,2,4,7,9,11"
    assert args.alpha_kd + args.alpha_ce == pytest.approx(1.0)
    assert args.alpha_hidden == 0.0 and args.alpha_attn == 0.0
    assert 0.0 < args.warmup_steps < 1.0  # a ratio of the total steps, not a step count
    assert 2e-5 <= args.learning_rate <= 1e-4
    assert args.per_device_train_batch_size in (16, 32)
    assert job_args.max_length in (64, 128)
    # Mixed precision is the user's choice on the command line, not the recipe's.
    assert "fp16" not in raw and "bf16" not in raw
    assert args.fp16 is False and args.bf16 is False
    # Checkpoints, where kept, are bounded.
    if raw["save_strategy"] == "epoch":
        assert raw["save_total_limit"] == 1


@pytest.mark.parametrize("task", GLUE_TASKS)
def test_every_value_says_why_in_a_comment(task):
    lines = recipe(task).read_text().splitlines()
    keys = 0
    for number, line in enumerate(lines):
        if re.match(r"^[a-z_0-9]+:", line):
            keys += 1
            above = lines[number - 1] if number else ""
            assert above.startswith("# ") or " # " in line, f"{task}.yaml line {number + 1}: {line}"
    assert keys == len(yaml.safe_load(recipe(task).read_text()))
    # The sources that the comments cite are listed in the file.
    text = recipe(task).read_text()
    for tag in ("[BERT]", "[DistilBERT]", "[PKD]", "[TinyBERT]", "[TextBrewer]"):
        assert tag in text


def test_stsb_is_the_only_regression_recipe():
    regression = [
        t
        for t in GLUE_TASKS
        if get_task(yaml.safe_load(recipe(t).read_text())["task"]).is_regression
    ]
    assert regression == ["stsb"]
    # Temperature does not apply to a regression head; the recipe says so by not scaling anything.
    assert parse("stsb")[-1].temperature == 1.0


def test_small_sets_train_longer_and_lean_on_the_teacher():
    def value(task, key):
        return yaml.safe_load(recipe(task).read_text())[key]

    for task in ("sst2", "qqp", "mnli", "qnli"):
        assert value(task, "num_train_epochs") == 3 and value(task, "alpha_kd") == 0.5
    for task in ("cola", "mrpc", "stsb", "rte"):
        assert value(task, "num_train_epochs") > 3 and value(task, "alpha_kd") == 0.7
    assert value("rte", "num_train_epochs") == 10


def test_command_line_flags_override_the_recipe():
    _, _, job_args, args = parse(
        "mrpc", "--learning_rate", "1e-4", "--student_layers", "3", "--max_length", "96"
    )
    assert args.learning_rate == 1e-4
    assert job_args.student_layers == "3"
    assert job_args.max_length == 96
    # What was not overridden keeps the recipe's value.
    assert args.num_train_epochs == 5 and args.alpha_kd == 0.7
    # Flags written before --config win too: the file is expanded first.
    *_, args = parse_arguments(
        "distill", ["--seed", "7", "--config", str(recipe("rte")), "--output_dir", "x"]
    )
    assert args.seed == 7


# ------------------------------------------------------------------------------------------------
# The recipes end to end, on a tiny 12-layer teacher and local files
# ------------------------------------------------------------------------------------------------

WORDS = ["the movie was very good", "the plot was boring and bad", "great music and a great actor"]
WORDS += ["awful film not fun", "love the song", "hate the boring plot", "the star is great"]
WORDS += ["the film was not good but the music was fun"]


def write_task_files(folder: Path, task: str) -> Path:
    spec = get_task(task)
    path = folder / f"{task}.jsonl"
    with path.open("w") as handle:
        for i, sentence in enumerate(WORDS):
            row = {spec.text_columns[0]: sentence}
            if len(spec.text_columns) == 2:
                row[spec.text_columns[1]] = WORDS[-i - 1]
            row["label"] = i * 0.6 if spec.is_regression else i % spec.num_labels
            handle.write(json.dumps(row) + "\n")
    return path


def save_tiny_teacher(folder: Path, tokenizer, task: str) -> Path:
    spec = get_task(task)
    names = {0: "LABEL_0"} if spec.is_regression else dict(enumerate(spec.label_names))
    model = tiny_bert(
        seed=3,
        num_hidden_layers=12,
        num_labels=spec.num_labels,
        id2label=names,
        label2id={v: k for k, v in names.items()},
        **({"problem_type": "regression"} if spec.is_regression else {}),
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sst2", "mnli", "stsb"])
def test_recipe_runs_end_to_end_with_a_local_teacher(task, tmp_path, tiny_tokenizer):
    """sst2: single sentences, no checkpoints; mnli: 3 classes, per-epoch checkpoints; stsb: regression."""
    teacher = save_tiny_teacher(tmp_path / "teacher", tiny_tokenizer, task)
    data = write_task_files(tmp_path, task)
    out = tmp_path / "run"
    status = main(
        [
            "distill",
            "--config",
            str(recipe(task)),
            "--teacher",
            str(teacher),
            "--train_file",
            str(data),
            "--validation_file",
            str(data),
            "--output_dir",
            str(out),
            # One epoch of two steps keeps it fast; per-epoch evaluation and saving still happen.
            "--num_train_epochs",
            "1",
            "--per_device_train_batch_size",
            "4",
            "--per_device_eval_batch_size",
            "4",
            "--max_length",
            "16",
            "--latency_batches",
            "1",
            "--latency_batch_size",
            "2",
            "--latency_repeats",
            "1",
            "--disable_tqdm",
            "true",
            "--use_cpu",
            "true",
        ]
    )
    assert status == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["task"] == task
    assert report["student_layers"] == 6
    assert report["teacher_layers"] == [0, 2, 4, 7, 9, 11]
    assert (
        report["distillation"]["alpha_kd"] == yaml.safe_load(recipe(task).read_text())["alpha_kd"]
    )
    expected_metrics = set(get_task(task).metric_names)
    assert set(report["student"][get_task(task).validation_splits[0]]) == expected_metrics
    checkpoints = sorted(out.glob("checkpoint-*"))
    if task == "mnli":
        # save_strategy epoch + save_total_limit 1: exactly one checkpoint, of the student only.
        assert [c.name for c in checkpoints] == ["checkpoint-2"]
        saved = json.loads((checkpoints[0] / "config.json").read_text())
        assert saved["num_hidden_layers"] == 6
    else:
        assert checkpoints == []
    # The table script reads the run.
    table = results_table_module.results_table([out])
    assert f"| {task}" in table.splitlines()[2]


# ------------------------------------------------------------------------------------------------
# recipes/results_table.py
# ------------------------------------------------------------------------------------------------


def write_report(folder: Path, report: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.json"
    path.write_text(json.dumps(report))
    return path


MRPC = {
    "task": "mrpc",
    "teacher": {"validation": {"f1": 0.9024, "accuracy": 0.8578}},
    "student": {"validation": {"f1": 0.8811, "accuracy": 0.8333}},
    "main_metric": "f1",
    "main_split": "validation",
    "retention": 0.8811 / 0.9024,
    "speedup": 1.9847,
    "teacher_params": 109_483_778,
    "student_params": 66_956_546,
}
MNLI = {
    "task": "mnli",
    "teacher": {
        "validation_matched": {"accuracy": 0.8446},
        "validation_mismatched": {"accuracy": 0.8501},
    },
    "student": {
        "validation_matched": {"accuracy": 0.8212},
        "validation_mismatched": {"accuracy": 0.8290},
    },
    "main_metric": "accuracy",
    "main_split": "validation_matched",
    "retention": 0.8212 / 0.8446,
    "speedup": 2.0049,
    "teacher_params": 109_484_547,
    "student_params": 66_957_315,
}
# A student with constant predictions: correlations are undefined (null), so is retention; the
# run skipped the latency measurement, so there is no speed-up.
STSB = {
    "task": "stsb",
    "teacher": {"validation": {"pearson": 0.8876, "spearmanr": 0.8843}},
    "student": {"validation": {"pearson": None, "spearmanr": None}},
    "main_metric": "pearson",
    "main_split": "validation",
    "retention": None,
    "teacher_params": 109_483_009,
    "student_params": 66_955_777,
}
BBC = {
    "task": "bbc_news",
    "teacher": {"validation": {"accuracy": 0.9708}},
    "student": {"validation": {"accuracy": 0.9843}},
    "main_metric": "accuracy",
    "main_split": "validation",
    "retention": 0.9843 / 0.9708,
    "speedup": 2.0137,
    "teacher_params": 22_715_141,
    "student_params": 17_391_749,
}

EXPECTED_TABLE = """\
| task     | run     | metric                     |     teacher |     student | retention | speed-up | parameters (teacher → student) |
| -------- | ------- | -------------------------- | ----------: | ----------: | --------: | -------: | -----------------------------: |
| mrpc     | mrpc-6L | F1 / acc                   | 90.2 / 85.8 | 88.1 / 83.3 |     97.6% |    1.98x |                 109.5M → 67.0M |
| stsb     | stsb    | Pearson / Spearman         | 88.8 / 88.4 |       - / - |         - |        - |                 109.5M → 67.0M |
| mnli     | mnli    | acc (matched / mismatched) | 84.5 / 85.0 | 82.1 / 82.9 |     97.2% |    2.00x |                 109.5M → 67.0M |
| bbc_news | bbc     | acc                        |        97.1 |        98.4 |    101.4% |    2.01x |                  22.7M → 17.4M |"""


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    write_report(root / "bbc", BBC)
    write_report(root / "glue" / "mnli", MNLI)
    write_report(root / "glue" / "mrpc-6L", MRPC)
    write_report(root / "glue" / "stsb", STSB)
    # The teacher step's own report (no student): skipped while searching.
    write_report(root / "glue" / "mrpc-6L" / "teacher", {"teacher": MRPC["teacher"]})
    return root


def test_table_of_a_folder_of_runs_is_exact(runs):
    assert results_table_module.results_table([runs]) == EXPECTED_TABLE


def test_table_accepts_run_folders_and_files_without_duplicates(runs):
    table = results_table_module.results_table(
        [runs / "glue" / "stsb", runs / "glue" / "mnli" / "metrics.json", runs / "glue" / "mnli"]
    )
    lines = table.splitlines()
    assert len(lines) == 4  # header, rule, stsb, mnli: the same report named twice is one row
    assert lines[2].startswith("| stsb ") and lines[3].startswith("| mnli ")


def test_table_rows_and_rule_line_up(runs):
    lines = results_table_module.results_table([runs]).splitlines()
    assert len({len(line) for line in lines}) == 1
    assert [line.count("|") for line in lines] == [9] * len(lines)


def test_missing_optional_values_show_as_dash(tmp_path):
    bare = {"task": "rte", "teacher": {"validation": {"accuracy": 0.69}}, "student": {}}
    row = results_table_module.format_row(bare, "rte")
    assert row == ["rte", "rte", "acc", "69.0", "-", "-", "-", "-"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "nowhere", "does not exist"),
        (lambda root: write_report(root / "t", {"teacher": {}}), "no 'student' results"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "no metrics.json"),
    ],
)
def test_table_errors_say_what_to_pass(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        results_table_module.results_table([make(tmp_path)])


def test_invalid_json_is_reported_with_its_path(tmp_path):
    bad = tmp_path / "run" / "metrics.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"run/metrics.json is not valid JSON"):
        results_table_module.results_table([tmp_path / "run"])


def test_script_prints_the_table_and_fails_cleanly(runs, tmp_path):
    script = str(RECIPES / "results_table.py")
    done = subprocess.run(
        [sys.executable, script, str(runs)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == EXPECTED_TABLE + "\n"
    done = subprocess.run(
        [sys.executable, script, str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("results_table.py: error: ")
    assert "does not exist" in done.stderr


# ------------------------------------------------------------------------------------------------
# recipes/run_glue.sh, with a stand-in for the nlpkd command
# ------------------------------------------------------------------------------------------------

FAKE_NLPKD = """\
import json, os, sys
from pathlib import Path

argv = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(argv) + "\\n")
task = Path(argv[argv.index("--config") + 1]).stem
if task == os.environ.get("FAKE_FAIL"):
    print("fake nlpkd: simulated failure", file=sys.stderr)
    sys.exit(3)
out = Path(argv[argv.index("--output_dir") + 1])
out.mkdir(parents=True, exist_ok=True)
report = {
    "task": task,
    "teacher": {"validation": {"accuracy": 0.9}},
    "student": {"validation": {"accuracy": 0.81}},
    "main_metric": "accuracy",
    "main_split": "validation",
    "retention": 0.9,
    "speedup": 2.0,
}
(out / "metrics.json").write_text(json.dumps(report))
"""


def run_glue(tmp_path: Path, *args: str, fail: str | None = None):
    fake = tmp_path / "fake_nlpkd.py"
    fake.write_text(FAKE_NLPKD)
    log = tmp_path / "calls.jsonl"
    env = dict(
        os.environ,
        NLPKD=f"{sys.executable} {fake}",
        PYTHON=sys.executable,
        FAKE_LOG=str(log),
        FAKE_FAIL=fail or "",
    )
    env.pop("RUNS_DIR", None)
    done = subprocess.run(
        ["bash", str(RUN_GLUE), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls


def test_run_glue_runs_every_task_in_order_and_prints_the_table(tmp_path):
    done, calls = run_glue(tmp_path, "--fp16")
    assert done.returncode == 0, done.stderr
    assert calls == [
        [
            "distill",
            "--config",
            str(recipe(task)),
            "--output_dir",
            f"runs/glue/{task}",
            "--fp16",
        ]
        for task in GLUE_ORDER
    ]
    # The table of the nine runs closes the output.
    table = done.stdout[done.stdout.index("| task") :].splitlines()
    assert len(table) == 2 + len(GLUE_ORDER)
    for task, line in zip(GLUE_ORDER, table[2:], strict=True):
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        assert cells == [task, task, "acc", "90.0", "81.0", "90.0%", "2.00x", "-"]


def test_run_glue_runs_the_named_tasks_with_extra_flags(tmp_path):
    done, calls = run_glue(tmp_path, "rte", "sst2", "--max_train_samples", "8", "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert [call[2] for call in calls] == [str(recipe("rte")), str(recipe("sst2"))]
    assert all(call[5:] == ["--max_train_samples", "8", "--seed", "1"] for call in calls)
    assert (tmp_path / "runs" / "glue" / "rte" / "metrics.json").is_file()


def test_run_glue_stops_at_the_first_failure(tmp_path):
    done, calls = run_glue(tmp_path, "sst2", "mrpc", "rte", "wnli", fail="mrpc")
    assert done.returncode == 3
    assert [Path(call[2]).stem for call in calls] == ["sst2", "mrpc"]
    assert "mrpc failed with exit status 3" in done.stderr
    assert "Not run: rte wnli" in done.stderr
    assert "| task" not in done.stdout


def test_run_glue_skips_finished_runs_unless_told_to_overwrite(tmp_path):
    run_glue(tmp_path, "sst2", "rte", fail="rte")
    done, calls = run_glue(tmp_path, "sst2", "rte")
    assert done.returncode == 0, done.stderr
    assert [Path(call[2]).stem for call in calls] == ["sst2", "rte", "rte"]
    assert "sst2: runs/glue/sst2 already holds a finished run; skipped" in done.stdout
    (tmp_path / "calls.jsonl").unlink()
    done, calls = run_glue(tmp_path, "sst2", "--overwrite_output_dir")
    assert done.returncode == 0, done.stderr
    assert calls == [
        [
            "distill",
            "--config",
            str(recipe("sst2")),
            "--output_dir",
            "runs/glue/sst2",
            "--overwrite_output_dir",
        ]
    ]


def test_run_glue_rejects_an_unknown_task_before_running_anything(tmp_path):
    done, calls = run_glue(tmp_path, "sst2", "glue")
    assert done.returncode == 2
    assert calls == []
    assert "unknown task 'glue'" in done.stderr
    assert "cola sst2 mrpc stsb qqp mnli qnli rte wnli" in done.stderr
