"""Continual distillation (Learning without Forgetting): the grown head, the loss on each task's columns, training
and per-task evaluation with tiny models; the BBC example (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import random_dataset, tiny_bert
from test_trainer import make_config
from transformers import DataCollatorWithPadding

from nlpkd import DistillationTrainer
from nlpkd.jobs import evaluate_tasks, grow_classifier, learn_without_forgetting, task_columns
from nlpkd.losses import LogitColumns, hard_label_loss, soft_kl_loss

REPO = Path(__file__).resolve().parents[1]


def test_grow_classifier_keeps_the_old_outputs():
    model = tiny_bert(seed=1)
    model.requires_grad_(False)
    grown = grow_classifier(model, ["sports", "tech"])
    assert grown.config.num_labels == 5
    assert grown.config.id2label == {
        0: "negative", 1: "neutral", 2: "positive", 3: "sports", 4: "tech"
    }  # fmt: skip
    assert grown.config.label2id["tech"] == 4
    assert all(p.requires_grad for p in grown.parameters())
    assert model.config.num_labels == 3 and model.classifier.out_features == 3
    batch = {"input_ids": torch.tensor([[2, 7, 9, 3], [2, 11, 3, 0]])}
    with torch.no_grad():
        old, new = model(**batch).logits, grown(**batch).logits
    assert new.shape == (2, 5)
    torch.testing.assert_close(new[:, :3], old)
    assert not torch.equal(grown.classifier.weight[3], grown.classifier.weight[4])
    assert torch.equal(grown.classifier.bias[3:], torch.zeros(2))


def test_grow_classifier_errors():
    model = tiny_bert()
    with pytest.raises(ValueError, match="none of the model's own"):
        grow_classifier(model, ["neutral", "tech"])
    with pytest.raises(ValueError, match="each once"):
        grow_classifier(model, ["tech", "tech"])
    with pytest.raises(ValueError, match="at least one label"):
        grow_classifier(model, [])
    from transformers import BertModel

    with pytest.raises(ValueError, match="no torch.nn.Linear layer with 3 outputs"):
        grow_classifier(BertModel(tiny_bert().config), ["x"])


def test_each_term_reads_its_own_columns(tmp_path, tiny_tokenizer):
    teacher = tiny_bert(seed=1)
    student = grow_classifier(teacher, ["x", "y"])
    with torch.no_grad():
        student.classifier.weight.add_(0.1 * torch.randn_like(student.classifier.weight))
    args = make_config(tmp_path, alpha_kd=0.7, alpha_ce=0.4, temperature=2.0)
    trainer = DistillationTrainer(
        model=student, teacher=teacher, args=args, logit_columns=task_columns(3, 2)
    )
    data = random_dataset(4, 8, num_labels=2)
    batch = dict(DataCollatorWithPadding(tiny_tokenizer)([data[i] for i in range(4)]))
    student.train()
    loss = trainer.compute_loss(student, batch)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        s, t = student(**inputs).logits, teacher(**inputs).logits
    expected = 0.7 * soft_kl_loss(s[:, :3], t, 2.0) + 0.4 * hard_label_loss(
        s[:, 3:], batch["labels"]
    )
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    # Evaluation predicts the new task from its own columns.
    predictions = trainer.predict(data).predictions
    assert predictions.shape == (4, 2)


def test_teacher_columns_must_match_the_teacher(tmp_path):
    teacher = tiny_bert(seed=1)
    student = grow_classifier(teacher, ["x", "y"])
    with pytest.raises(ValueError, match="teacher columns \\[0, 1\\] hold 2"):
        DistillationTrainer(
            model=student,
            teacher=teacher,
            args=make_config(tmp_path),
            logit_columns=LogitColumns(teacher=slice(0, 2), labels=slice(2, 5)),
        )
    with pytest.raises(ValueError, match="label maps disagree"):
        shifted = LogitColumns(teacher=slice(1, 4), labels=slice(0, 1))
        DistillationTrainer(
            model=student, teacher=teacher, args=make_config(tmp_path), logit_columns=shifted
        )


def test_learn_without_forgetting_trains_the_copy_and_evaluates_each_task(tmp_path, tiny_tokenizer):
    model = tiny_bert(seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = make_config(tmp_path, alpha_kd=1.0, alpha_ce=1.0, max_steps=2)
    trainer = learn_without_forgetting(
        model, random_dataset(8, 8, num_labels=2), ["x", "y"], args, processing_class=tiny_tokenizer
    )
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    grown = trainer.student
    assert grown.config.num_labels == 5 and grown is not model
    assert {"kd", "ce"} <= set(trainer.state.log_history[0])

    task_a, task_b = random_dataset(6, 8, seed=3), random_dataset(6, 8, num_labels=2, seed=4)
    tasks = {"task_a": (task_a, slice(0, 3)), "task_b": (task_b, slice(3, 5))}
    metrics = evaluate_tasks(grown, tasks, tiny_tokenizer, args)
    for name, (data, columns) in tasks.items():
        with torch.no_grad():
            logits = grown(
                input_ids=torch.tensor(data["input_ids"]),
                token_type_ids=torch.tensor(data["token_type_ids"]),
            ).logits[:, columns]
        expected = float((logits.argmax(-1) == torch.tensor(data["label"])).float().mean())
        assert metrics[name]["accuracy"] == pytest.approx(expected)


@pytest.mark.slow
def test_bbc_example_forgets_less_than_a_third_of_plain_fine_tuning(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out = tmp_path / "lwf"
    completed = subprocess.run(
        [sys.executable, str(REPO / "examples" / "continual_learning.py"), "--output_dir", str(out),
         *FAST_LWF],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    drops = metrics["task_a_drop"]
    assert drops["plain"] > 0.05, "plain fine-tuning should forget task A in this setting"
    assert drops["lwf"] < drops["plain"] / 3
    assert metrics["student"]["task_b"]["accuracy"] > 0.9
    assert (out / "README.md").is_file()


# Two MiniLM layers, 40 articles per topic, a high learning rate on task B: ~40 s of CPU, and plain
# fine-tuning forgets a third of task A (measured in docs/systems.md).
FAST_LWF = [
    "--base_layers", "2", "--learning_rate", "5e-4", "--per_topic", "40", "--epochs_a", "3",
    "--epochs_b", "6", "--max_eval", "40", "--max_length", "48",
]  # fmt: skip
