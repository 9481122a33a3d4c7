"""General (task-agnostic) distillation: a base encoder into a smaller one on plain text, then the task stage."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import WORDS, tiny_bert_config
from transformers import AutoModel, AutoModelForSequenceClassification, BertModel

from nlpkd.general import MIN_GENERAL_TEXTS, general_distill


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
    assert result.held_out_loss["after"] < 0.8 * result.held_out_loss["before"], result.held_out_loss
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
