"""The `nlpkd` command end to end on tiny models and GLUE-format files that the tests write."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import FAST_CLI, SENTENCES, tiny_bert
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertModel

from nlpkd.cli import main

FAST = FAST_CLI


def save_teacher(folder, tokenizer, num_labels: int, **overrides):
    generic = {i: f"LABEL_{i}" for i in range(num_labels)}
    model = tiny_bert(
        seed=1,
        num_labels=num_labels,
        id2label=generic,
        label2id={v: k for k, v in generic.items()},
        **overrides,
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_sst2(folder):
    train = folder / "train.tsv"
    dev = folder / "dev.tsv"
    rows = [f"{s}\t{i % 2}" for i, s in enumerate(SENTENCES)]
    train.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    dev.write_text("sentence\tlabel\n" + "\n".join(rows[:5]) + "\n")
    return train, dev


def write_mrpc(folder):
    path = folder / "mrpc.csv"
    lines = ["sentence1,sentence2,label"]
    for i in range(6):
        lines.append(f"{SENTENCES[i]},{SENTENCES[(i + 1) % 6]},{i % 2}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_stsb(folder):
    path = folder / "stsb.jsonl"
    with path.open("w") as handle:
        for i in range(6):
            record = {
                "sentence1": SENTENCES[i],
                "sentence2": SENTENCES[-i - 1],
                "label": float(i) * 0.8,
            }
            handle.write(json.dumps(record) + "\n")
    return path


def teacher_predictions(teacher_dir, texts, pairs=None):
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    enc = tokenizer(texts, pairs, truncation=True, max_length=16, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits.numpy()


def run(argv, capsys=None):
    status = main(argv)
    return status


def test_single_sentence_task_end_to_end(tmp_path, tiny_tokenizer):
    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=2)
    train, dev = write_sst2(tmp_path)
    out = tmp_path / "out"
    status = run(
        [
            "distill",
            "--task",
            "sst2",
            "--teacher",
            str(teacher_dir),
            "--train_file",
            str(train),
            "--validation_file",
            str(dev),
            "--output_dir",
            str(out),
            "--student_layers",
            "2",
            *FAST,
        ]
    )
    assert status == 0
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "metrics.json",
        "distillation.png",
        "nlpkd_config.yaml",
        "README.md",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "teacher",
        "student",
        "retention",
        "teacher_params",
        "student_params",
        "teacher_latency_ms",
        "student_latency_ms",
        "speedup",
        "teacher_size_mb",
        "student_size_mb",
    ):
        assert key in metrics, key

    # The teacher's accuracy, computed here by hand from its logits on the five validation sentences.
    logits = teacher_predictions(teacher_dir, SENTENCES[:5])
    expected = float(np.mean(logits.argmax(-1) == np.array([0, 1, 0, 1, 0])))
    assert metrics["teacher"]["validation"]["accuracy"] == pytest.approx(expected)
    assert metrics["retention"] == pytest.approx(
        metrics["student"]["validation"]["accuracy"] / expected if expected else None
    )
    assert metrics["speedup"] == pytest.approx(
        metrics["teacher_latency_ms"] / metrics["student_latency_ms"]
    )
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.num_hidden_layers == 2
    assert student.config.nlpkd_teacher_layers == [0, 3]
    assert student.config.id2label == {0: "negative", 1: "positive"}


def test_sentence_pair_task(tmp_path, tiny_tokenizer):
    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=2)
    data = write_mrpc(tmp_path)
    out = tmp_path / "out"
    status = run(
        [
            "distill",
            "--task",
            "mrpc",
            "--teacher",
            str(teacher_dir),
            "--train_file",
            str(data),
            "--validation_file",
            str(data),
            "--output_dir",
            str(out),
            "--student_layers",
            "0,3",
            *FAST,
        ]
    )
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["teacher"]["validation"]) == {"f1", "accuracy"}
    assert metrics["teacher_layers"] == [0, 3]
    logits = teacher_predictions(
        teacher_dir, SENTENCES[:6], [SENTENCES[(i + 1) % 6] for i in range(6)]
    )
    predictions, labels = logits.argmax(-1), np.array([i % 2 for i in range(6)])
    tp = int(((predictions == 1) & (labels == 1)).sum())
    fp = int(((predictions == 1) & (labels == 0)).sum())
    fn = int(((predictions == 0) & (labels == 1)).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    assert metrics["teacher"]["validation"]["f1"] == pytest.approx(f1)


def test_regression_task_uses_mse_distillation(tmp_path, tiny_tokenizer):
    teacher_dir = save_teacher(
        tmp_path / "teacher", tiny_tokenizer, num_labels=1, problem_type="regression"
    )
    data = write_stsb(tmp_path)
    out = tmp_path / "out"
    status = run(
        [
            "distill",
            "--task",
            "stsb",
            "--teacher",
            str(teacher_dir),
            "--train_file",
            str(data),
            "--validation_file",
            str(data),
            "--output_dir",
            str(out),
            *FAST,
        ]
    )
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["student"]["validation"]) == {"pearson", "spearmanr"}
    logits = teacher_predictions(teacher_dir, SENTENCES[:6], [SENTENCES[-i - 1] for i in range(6)])
    labels = np.array([i * 0.8 for i in range(6)])
    pearson = float(np.corrcoef(logits[:, 0], labels)[0, 1])
    # Padding differs between the batched evaluation and this single batch: float noise only.
    assert metrics["teacher"]["validation"]["pearson"] == pytest.approx(pearson, abs=1e-4)
    history = json.loads((out / "metrics.json").read_text())
    assert history["student_layers"] == 2


def test_yaml_config_with_command_line_override(tmp_path, tiny_tokenizer):
    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=2)
    train, dev = write_sst2(tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "sst2",
                "teacher": str(teacher_dir),
                "train_file": str(train),
                "validation_file": str(dev),
                "temperature": 3.0,
                "alpha_kd": 0.7,
                "alpha_ce": 0.3,
                "student_layers": "1",
            }
        )
    )
    out = tmp_path / "out"
    status = run(
        ["distill", "--config", str(config), "--temperature", "4", "--output_dir", str(out), *FAST]
    )
    assert status == 0
    saved = yaml.safe_load((out / "nlpkd_config.yaml").read_text())
    assert saved["temperature"] == 4.0  # the command line wins over the file
    assert saved["alpha_kd"] == 0.7 and saved["alpha_ce"] == 0.3  # the file wins over the defaults
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["distillation"]["temperature"] == 4.0
    assert metrics["student_layers"] == 1
    # The saved config runs again as it is.
    again = tmp_path / "again"
    assert (
        run(
            [
                "distill",
                "--config",
                str(out / "nlpkd_config.yaml"),
                "--output_dir",
                str(again),
                *FAST,
            ]
        )
        == 0
    )
    assert json.loads((again / "metrics.json").read_text())["distillation"]["temperature"] == 4.0


def test_offline_glue_without_files_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    status = run(["distill", "--task", "sst2", "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("nlpkd: error: ")
    assert "--train_file" in err and "--validation_file" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"temprature": 2.0}, "unknown key(s): temprature"),
        ({"temperature": "hot"}, "invalid float value: 'hot'"),
        ("- just\n- a list\n", "must hold a mapping"),
    ],
)
def test_bad_yaml_configs(tmp_path, capsys, config, message):
    path = tmp_path / "bad.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    status = run(["distill", "--config", str(path), "--output_dir", str(tmp_path / "o")])
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("nlpkd: error: ")


def test_refuses_an_output_dir_that_holds_another_run(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    status = run(["distill", "--output_dir", str(out)])
    assert status == 2
    assert "--overwrite_output_dir" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == "{}"


def test_output_dir_is_required(capsys):
    assert run(["distill"]) == 2
    assert "--output_dir is required" in capsys.readouterr().err


def test_finetune_command_trains_a_head_on_a_base_encoder(tmp_path, tiny_tokenizer):
    base = tmp_path / "base"
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=tiny_tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
        )
    ).save_pretrained(base)
    tiny_tokenizer.save_pretrained(base)
    train, dev = write_sst2(tmp_path)
    out = tmp_path / "teacher"
    status = run(
        [
            "finetune",
            "--task",
            "sst2",
            "--teacher",
            str(base),
            "--train_file",
            str(train),
            "--validation_file",
            str(dev),
            "--output_dir",
            str(out),
            "--teacher_num_train_epochs",
            "1",
            *FAST,
        ]
    )
    assert status == 0
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.architectures == ["BertForSequenceClassification"]
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert "accuracy" in json.loads((out / "metrics.json").read_text())["teacher"]["validation"]


def test_teacher_label_order_mismatch_is_refused(tmp_path, tiny_tokenizer, capsys):
    teacher = tiny_bert(
        seed=1,
        num_labels=2,
        id2label={0: "positive", 1: "negative"},
        label2id={"positive": 0, "negative": 1},
    )
    teacher.save_pretrained(tmp_path / "teacher")
    tiny_tokenizer.save_pretrained(tmp_path / "teacher")
    train, dev = write_sst2(tmp_path)
    status = run(
        [
            "distill",
            "--task",
            "sst2",
            "--teacher",
            str(tmp_path / "teacher"),
            "--train_file",
            str(train),
            "--validation_file",
            str(dev),
            "--output_dir",
            str(tmp_path / "o"),
            *FAST,
        ]
    )
    assert status == 2
    assert "do not match the data's labels" in capsys.readouterr().err


def test_help_texts():
    top = subprocess.run(
        [sys.executable, "-m", "nlpkd", "--help"], capture_output=True, text=True, check=True
    )
    assert "distill" in top.stdout and "finetune" in top.stdout
    sub = subprocess.run(
        [sys.executable, "-m", "nlpkd", "distill", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (
        "nlpkd: models" in sub.stdout
        and "--student_layers" in sub.stdout
        and "--temperature" in sub.stdout
    )


def test_push_to_hub_uploads_student_card_and_report_without_the_token(
    tmp_path, tiny_tokenizer, monkeypatch
):
    from huggingface_hub import HfApi

    calls = {}
    monkeypatch.setattr(
        HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("repo", repo_id)
    )

    def fake_upload(self, *, folder_path, repo_id, allow_patterns=None, **kw):
        from huggingface_hub.utils import filter_repo_objects

        files = sorted(
            p.name for p in __import__("pathlib").Path(folder_path).iterdir() if p.is_file()
        )
        calls["files"] = sorted(filter_repo_objects(files, allow_patterns=allow_patterns))
        calls["upload_repo"] = repo_id
        return type("Commit", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()

    monkeypatch.setattr(HfApi, "upload_folder", fake_upload)
    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=2)
    train, dev = write_sst2(tmp_path)
    out = tmp_path / "out"
    token = "hf_SECRETtoken1234567890"
    status = run(
        [
            "distill",
            "--task",
            "sst2",
            "--teacher",
            str(teacher_dir),
            "--train_file",
            str(train),
            "--validation_file",
            str(dev),
            "--output_dir",
            str(out),
            "--push_to_hub",
            "true",
            "--hub_model_id",
            "someone/tiny-student",
            "--hub_token",
            token,
            *FAST,
        ]
    )
    assert status == 0
    assert calls["repo"] == calls["upload_repo"] == "someone/tiny-student"
    assert calls["files"] == sorted(
        [
            "README.md",
            "config.json",
            "distillation.png",
            "metrics.json",
            "model.safetensors",
            "nlpkd_config.yaml",
            "tokenizer.json",
            "tokenizer_config.json",
        ]
    )
    for path in out.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_your_own_csv_with_your_own_label_names(tmp_path, tiny_tokenizer):
    from transformers import pipeline

    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=3)
    names = ["praise", "complaint", "question"]
    rows = [f'"{s}",{names[i % 3]}' for i, s in enumerate(SENTENCES * 2)]
    (tmp_path / "train.csv").write_text("review,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "val.csv").write_text("review,label\n" + "\n".join(rows[:6]) + "\n")
    out = tmp_path / "out"
    status = run(
        [
            "distill",
            "--teacher",
            str(teacher_dir),
            "--train_file",
            str(tmp_path / "train.csv"),
            "--validation_file",
            str(tmp_path / "val.csv"),
            "--text_columns",
            "review",
            "--output_dir",
            str(out),
            *FAST,
        ]
    )
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "custom" and set(metrics["student"]["validation"]) == {"accuracy"}
    # Names are numbered in sorted order and reach the student and its pipeline.
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.id2label == {0: "complaint", 1: "praise", 2: "question"}
    assert pipeline("text-classification", model=str(out))("good movie")[0]["label"] in names
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    assert card.data.datasets is None  # no Hub dataset to name
    assert card.data.base_model is None  # the teacher is a local folder, named in the text only
    assert str(teacher_dir) in card.text


def test_validation_labels_must_appear_in_training(tmp_path, tiny_tokenizer, capsys):
    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=3)
    (tmp_path / "train.csv").write_text("text,label\ngood movie,praise\nbad plot,complaint\n")
    (tmp_path / "val.csv").write_text("text,label\ngood movie,praise\nthe star,spam\n")
    status = run(
        [
            "distill",
            "--teacher",
            str(teacher_dir),
            "--train_file",
            str(tmp_path / "train.csv"),
            "--validation_file",
            str(tmp_path / "val.csv"),
            "--output_dir",
            str(tmp_path / "o"),
            *FAST,
        ]
    )
    assert status == 2
    assert "never shows: ['spam']" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_student_layers_out_of_range_fails_before_any_training(tmp_path, tiny_tokenizer, capsys):
    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=2)
    train, dev = write_sst2(tmp_path)
    status = run(
        [
            "distill",
            "--task",
            "sst2",
            "--teacher",
            str(teacher_dir),
            "--train_file",
            str(train),
            "--validation_file",
            str(dev),
            "--output_dir",
            str(tmp_path / "o"),
            "--student_layers",
            "0,2,9",
            *FAST,
        ]
    )
    assert status == 2
    assert "student_layers 0,2,9: the teacher has 4 layers" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_training_seed_does_not_move_the_validation_split():
    """--seed is the training seed; the split the command holds out follows --split_seed alone, so a seed sweep
    (or a teacher saved by an earlier run) is evaluated on the same articles, never on its training data."""
    from nlpkd.cli import build_job, parse_arguments

    def validation_texts(*flags: str) -> list[str]:
        job = build_job(*parse_arguments("distill", ["--output_dir", "unused", *flags]))
        return list(job.data["validation"]["text"])

    default = validation_texts()
    assert validation_texts("--seed", "0") == default
    other = validation_texts("--split_seed", "0")
    assert len(other) == len(default) and other != default


def test_every_job_option_is_a_flag_and_a_keyword_of_distill_with_the_same_default():
    """One declaration (nlpkd.jobs.JobOptions) makes both front ends: the "nlpkd: job" group of `nlpkd distill`
    and the keywords of `nlpkd.distill` hold exactly its fields, with the same defaults."""
    import dataclasses
    import inspect

    import nlpkd
    from nlpkd.cli import JobArguments, build_job, parse_arguments
    from nlpkd.jobs import JobOptions, option_names

    options = set(option_names())
    assert {"student_layers", "max_length", "deploy", "unlabeled_data", "split_seed"} <= options
    assert {f.name for f in dataclasses.fields(JobArguments)} == options
    # The keywords of nlpkd.distill, but those that name data, models and labels.
    aside = {
        "teacher",
        "train_data",
        "eval_data",
        "tokenizer",
        "labels",
        "eval_labels",
        "text_column",
    }
    aside |= {"label_column", "student", "student_tokenizer", "args", "compute_metrics"}
    aside |= {"config_kwargs"}
    keywords = inspect.signature(nlpkd.distill).parameters
    assert set(keywords) - aside == options
    defaults = JobOptions()
    for name in options:
        assert keywords[name].default == getattr(defaults, name), name
    # The command line's defaults, once parsed, are the job's defaults.
    job = build_job(*parse_arguments("distill", ["--output_dir", "unused"]))
    assert job.options() == defaults.options()
    # And a flag reaches the job as the same value the keyword gives.
    flags = [
        "--student_layers",
        "0,2",
        "--deploy",
        "onnx-int8,int8",
        "--augment_methods",
        "mask,shuffle",
    ]
    job = build_job(*parse_arguments("distill", ["--output_dir", "unused", *flags]))
    keyword = JobOptions(
        student_layers=[0, 2], deploy=["int8", "onnx-int8"], augment_methods=["mask", "shuffle"]
    )
    assert (
        (job.student_layers, job.deploy, job.augment_methods)
        == (
            keyword.student_layers,
            keyword.deploy,
            keyword.augment_methods,
        )
        == ([0, 2], ("int8", "onnx-int8"), ["mask", "shuffle"])
    )


def test_help_lists_nlpkd_groups_before_the_training_arguments():
    from nlpkd.cli import _parser

    text = _parser("distill").format_help()
    positions = [text.index(title) for title in ("nlpkd: models", "nlpkd: data", "nlpkd: job")]
    assert positions == sorted(positions)
    training = text.index("distillation and training (DistillationConfig")
    assert positions[-1] < training < text.index("--temperature", training)
    assert training < text.index("--per_device_train_batch_size", training)


def test_the_old_unlabeled_file_flag_still_works_and_warns():
    from nlpkd.cli import parse_arguments

    with pytest.warns(FutureWarning, match="--unlabeled_file is renamed --unlabeled_data"):
        parsed = parse_arguments("distill", ["--output_dir", "x", "--unlabeled_file", "more.txt"])
    assert parsed[2].unlabeled_data == "more.txt"


def test_the_saved_config_records_every_option_and_the_versions(tmp_path):
    """nlpkd_config.yaml pins every nlpkd option and distillation setting, defaults included, so that it still
    reproduces the run once a default changes; reading it back gives the same values."""
    import dataclasses

    import transformers

    import nlpkd
    from nlpkd.cli import parse_arguments, save_config
    from nlpkd.jobs import option_names

    argv = ["--output_dir", str(tmp_path / "run"), "--temperature", "3", "--deploy", "int8"]
    parsed = parse_arguments("distill", argv)
    path = tmp_path / "nlpkd_config.yaml"
    save_config(path, parsed)
    text = path.read_text()
    assert text.startswith(f"# nlpkd {nlpkd.__version__}, transformers {transformers.__version__}")
    saved = yaml.safe_load(text)
    for name in (
        *option_names(),
        "teacher",
        "task",
        "alpha_kd",
        "alpha_attn",
        "kd_loss",
    ):
        assert name in saved, name
    # A default nlpkd chose (not transformers') is written even though it was not changed.
    assert saved["learning_rate"] == 3e-4 and saved["num_train_epochs"] == 2.0
    assert saved["max_length"] == 128 and saved["alpha_kd"] == 0.5
    assert "hub_token" not in saved and "output_dir" not in saved
    again = parse_arguments(
        "distill", ["--config", str(path), "--output_dir", str(tmp_path / "run")]
    )
    for before, after in zip(parsed, again, strict=True):
        for f in dataclasses.fields(before):
            if f.init:
                assert getattr(after, f.name) == getattr(before, f.name), f.name


@pytest.mark.parametrize("selection", ["importance", "first"])
def test_a_narrower_student_from_the_command_line(tmp_path, tiny_tokenizer, selection):
    """--student_hidden_size / --student_intermediate_size build a narrower student (issue 20): its weights are
    the teacher's slices, its width is in config.json, metrics.json, the summary and the card."""
    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=2)
    train, dev = write_sst2(tmp_path)
    out = tmp_path / "out"
    argv = ["distill", "--task", "sst2", "--teacher", str(teacher_dir), "--train_file", str(train)]
    argv += ["--validation_file", str(dev), "--output_dir", str(out), "--student_layers", "2"]
    argv += ["--student_hidden_size", "16", "--student_intermediate_size", "20"]
    argv += ["--width_selection", selection, "--alpha_attn", "1", "--alpha_hidden", "1", *FAST_CLI]
    assert run(argv) == 0
    student = AutoModelForSequenceClassification.from_pretrained(out)
    config = student.config
    assert (config.hidden_size, config.num_attention_heads, config.intermediate_size) == (16, 2, 20)
    assert config.num_hidden_layers == 2 and config.nlpkd_width_selection == selection
    assert len(config.nlpkd_kept_hidden) == 16 and all(len(h) == 2 for h in config.nlpkd_kept_heads)
    if selection == "first":
        assert config.nlpkd_kept_hidden == list(range(16))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["student_width"] == {
        "hidden_size": 16,
        "num_attention_heads": 2,
        "intermediate_size": 20,
        "selection": selection,
    }
    assert (
        "narrowed to hidden 16, 2 heads, 20 feed-forward neurons" in (out / "README.md").read_text()
    )
    saved = yaml.safe_load((out / "nlpkd_config.yaml").read_text())
    assert saved["student_hidden_size"] == 16 and saved["width_selection"] == selection


def test_a_width_that_the_heads_cannot_make_fails_before_any_training(
    tmp_path, tiny_tokenizer, capsys
):
    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=2)
    train, dev = write_sst2(tmp_path)
    argv = ["distill", "--task", "sst2", "--teacher", str(teacher_dir), "--train_file", str(train)]
    argv += ["--validation_file", str(dev), "--output_dir", str(tmp_path / "out")]
    argv += ["--student_hidden_size", "12", *FAST_CLI]
    assert run(argv) == 2
    error = capsys.readouterr().err
    assert "8 x 8 = 64" not in error and "1 x 8 = 8, 2 x 8 = 16" in error
    assert not (tmp_path / "out").exists()


def write_csv(path, labels):
    rows = [
        "text,label",
        *(f"{SENTENCES[i % len(SENTENCES)]},{label}" for i, label in enumerate(labels)),
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def named_teacher(folder, tokenizer, names):
    """A fine-tuned classifier whose labels have names."""
    model = tiny_bert(
        seed=1,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_classifier_with_another_label_count_gets_a_new_head(tmp_path, tiny_tokenizer):
    """Issue 19, item 1: a 2-label classifier and 3 classes in the CSV (was: RuntimeError about
    ignore_mismatched_sizes). --finetune_teacher auto fine-tunes it with a new 3-class head."""
    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=2)
    classes = ["sport", "tech", "politics"] * 4
    train = write_csv(tmp_path / "train.csv", classes)
    val = write_csv(tmp_path / "val.csv", classes[:6])
    out = tmp_path / "out"
    argv = ["distill", "--teacher", str(teacher_dir), "--train_file", str(train)]
    argv += ["--validation_file", str(val), "--output_dir", str(out), *FAST_CLI]
    assert run(argv) == 0
    fine_tuned = AutoModelForSequenceClassification.from_pretrained(out / "teacher")
    assert fine_tuned.config.num_labels == 3
    assert sorted(fine_tuned.config.id2label.values()) == ["politics", "sport", "tech"]
    # The teacher step alone, from the command line and from Python, re-heads it the same way.
    again = tmp_path / "teacher-only"
    argv = ["finetune", "--teacher", str(teacher_dir), "--train_file", str(train)]
    assert run([*argv, "--validation_file", str(val), "--output_dir", str(again), *FAST_CLI]) == 0
    assert AutoModelForSequenceClassification.from_pretrained(again).config.num_labels == 3
    import nlpkd

    model = nlpkd.finetune(
        str(teacher_dir), [SENTENCES[i % 8] for i in range(12)], labels=classes, max_steps=1,
        output_dir=str(tmp_path / "python"), use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    assert model.config.num_labels == 3


def test_never_fine_tuning_a_classifier_of_another_label_count_says_so(
    tmp_path, tiny_tokenizer, capsys
):
    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=2)
    train = write_csv(tmp_path / "train.csv", ["a", "b", "c"] * 4)
    argv = ["distill", "--teacher", str(teacher_dir), "--train_file", str(train)]
    argv += ["--finetune_teacher", "never", "--output_dir", str(tmp_path / "out"), *FAST_CLI]
    assert run(argv) == 2
    error = capsys.readouterr().err
    assert "is a sequence classifier with 2 labels, but custom has 3" in error
    assert "no trained classification head" not in error


@pytest.mark.parametrize(
    "labels",
    [["sport", "tech"] * 6, [0, 2] * 6],
    ids=["two of its three named classes", "integer ids of its classes"],
)
def test_a_named_teacher_teaches_data_in_its_classes_without_a_new_head(
    tmp_path, tiny_tokenizer, labels
):
    """Issue 19, items 1 and 8: a 3-class teacher with named labels and a CSV that holds 2 of its classes by
    name, or integer ids that index its classes: the data takes the teacher's classes, nothing is re-headed."""
    names = ["sport", "politics", "tech"]
    teacher_dir = named_teacher(tmp_path / "teacher", tiny_tokenizer, names)
    train = write_csv(tmp_path / "train.csv", labels)
    val = write_csv(tmp_path / "val.csv", labels[:4])
    out = tmp_path / "out"
    argv = ["distill", "--teacher", str(teacher_dir), "--train_file", str(train)]
    argv += ["--validation_file", str(val), "--output_dir", str(out), "--finetune_teacher", "never"]
    assert run([*argv, *FAST_CLI]) == 0
    assert not (out / "teacher").exists()  # not fine-tuned
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.id2label == dict(enumerate(names))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["label_names"] == names
