"""General (task-agnostic) distillation: a base encoder into a smaller one on plain text, then the task stage."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import WORDS, tiny_bert_config
from transformers import AutoModel, AutoModelForSequenceClassification, BertModel

from nlpkd.jobs import general_distill
from nlpkd.jobs.general import MIN_GENERAL_TEXTS


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(n)]


def base_teacher() -> BertModel:
    torch.manual_seed(0)
    return BertModel(tiny_bert_config(), add_pooling_layer=False).eval()


def test_general_student_moves_towards_its_teacher_and_loads_for_the_task(tmp_path, tiny_tokenizer):
    teacher = base_teacher()
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    result = general_distill(
        corpus(400),
        teacher,
        num_layers=2,
        output_dir=tmp_path / "general",
        tokenizer=tiny_tokenizer,
        max_length=16,
        num_train_epochs=3,
        learning_rate=1e-3,
        disable_tqdm=True,
        use_cpu=True,
    )
    assert result.held_out_loss["after"] < 0.8 * result.held_out_loss["before"], (
        result.held_out_loss
    )
    logged = [log for log in result.trainer.state.log_history if "relation" in log]
    assert logged and {"hidden", "relation"} <= set(logged[0]) and "kd" not in logged[0]
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[name]), name
    # The saved general student is a base encoder with the layers it came from ...
    saved = AutoModel.from_pretrained(tmp_path / "general")
    assert saved.config.num_hidden_layers == 2 and saved.config.nlpkd_teacher_layers == [0, 3]
    # ... that the task stage loads with a new head.
    task_student = AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "general", num_labels=3
    )
    torch.testing.assert_close(
        task_student.bert.encoder.layer[1].output.dense.weight,
        result.student.encoder.layer[1].output.dense.weight,
    )


def test_a_corpus_too_small_is_refused(tmp_path, tiny_tokenizer):
    with pytest.raises(ValueError, match=f"it needs at least {MIN_GENERAL_TEXTS}"):
        general_distill(corpus(10), base_teacher(), tokenizer=tiny_tokenizer, output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_the_general_distill_command_then_the_task_stage(tmp_path, tiny_tokenizer, capfd):
    import json

    from conftest import FAST_CLI
    from test_cli import write_sst2

    from nlpkd.cli import main

    teacher_dir = tmp_path / "base"
    base_teacher().save_pretrained(teacher_dir)
    tiny_tokenizer.save_pretrained(teacher_dir)
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(corpus(150)) + "\n")
    general = tmp_path / "general"
    status = main(
        [
            "general-distill", "--teacher", str(teacher_dir), "--train_file", str(corpus_file),
            "--student_layers", "2", "--output_dir", str(general), "--max_length", "16",
            "--num_train_epochs", "1", "--disable_tqdm", "true", "--use_cpu", "true",
        ]
    )  # fmt: skip
    assert status == 0, capfd.readouterr().err
    metrics = json.loads((general / "general_metrics.json").read_text())
    assert metrics["student_layers"] == [0, 3] and metrics["texts"] > 100
    assert set(metrics["held_out_loss"]) == {"before", "after"}
    # The task stage starts from the general student (a new head) and distils a fine-tuned teacher.
    from test_cli import save_teacher

    task_teacher = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=2)
    train, dev = write_sst2(tmp_path)
    out = tmp_path / "task"
    capfd.readouterr()
    import logging

    reports = []
    recorder = logging.Handler()
    recorder.emit = lambda record: reports.append(record.getMessage())
    logging.getLogger("transformers").addHandler(recorder)
    status = main(
        [
            "distill", "--task", "sst2", "--teacher", str(task_teacher), "--student", str(general),
            "--train_file", str(train), "--validation_file", str(dev), "--output_dir", str(out),
            *FAST_CLI,
        ]
    )  # fmt: skip
    printed = capfd.readouterr()
    assert status == 0, printed.err
    assert json.loads((out / "metrics.json").read_text())["student_layers"] == 2
    # Issue 19, item 7: no "MISSING ... newly initialized" report for the head that nlpkd fills from the teacher.
    logging.getLogger("transformers").removeHandler(recorder)
    assert not [r for r in reports if "MISSING" in r or "newly initialized" in r], reports
    assert "starts its classifier.bias, classifier.weight" in printed.out


def test_a_base_student_checkpoint_starts_from_the_teachers_head(tmp_path):
    from conftest import tiny_bert

    from nlpkd.data import custom_task
    from nlpkd.models import build_student

    teacher = tiny_bert(seed=1)
    base = tmp_path / "base"
    BertModel(tiny_bert_config(num_hidden_layers=2)).save_pretrained(base)
    names = ["negative", "neutral", "positive"]
    student = build_student(teacher, custom_task(("text",), 3), names, student=str(base))
    torch.testing.assert_close(student.classifier.weight, teacher.classifier.weight)
    assert not torch.equal(
        student.bert.encoder.layer[0].output.dense.weight,
        teacher.bert.encoder.layer[0].output.dense.weight,
    )  # the encoder is the checkpoint's own
