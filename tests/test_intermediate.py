"""Intermediate-layer distillation in the trainer: maps compared before dropout, the end-of-block layer map,
the embedding term, PKD, MiniLM relations, logit objectives, clipped projections, a teacher-free evaluation."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import random_dataset, tiny_bert, tiny_distilbert_student
from transformers import DataCollatorWithPadding, TrainerCallback

from nlpkd import DistillationConfig, DistillationTrainer, create_student
from nlpkd.losses import hidden_state_loss, logit_distillation_loss, pkd_loss, relation_loss


def make_config(tmp_path, **overrides) -> DistillationConfig:
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-3,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return DistillationConfig(**kwargs)


def batch_of(tokenizer, n=4, seed=0):
    data = random_dataset(n, 8, vary_length=True, seed=seed)
    return dict(DataCollatorWithPadding(tokenizer)([data[i] for i in range(n)]))


def only(component: str, **extra) -> dict:
    """Loss weights that isolate one component (the others 0), so the loss is that component."""
    weights = {"alpha_kd": 0.0, "alpha_ce": 0.0, "alpha_hidden": 0.0, "alpha_attn": 0.0}
    weights[f"alpha_{component}"] = 1.0
    return {**weights, **extra}


# ---- defect 1: attention maps are compared before dropout --------------------------------------


@pytest.mark.parametrize("attn_loss", ["kl", "mse", "mse_probs"])
def test_a_student_equal_to_its_teacher_has_zero_attention_loss_under_dropout(
    tmp_path, tiny_tokenizer, attn_loss
):
    teacher = tiny_bert(seed=1, attention_probs_dropout_prob=0.5)
    student = copy.deepcopy(teacher).train()
    args = make_config(tmp_path, **only("attn", attn_loss=attn_loss), layer_map={0: 0, 1: 1})
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args)
    torch.manual_seed(0)
    loss = trainer.compute_loss(trainer.model, batch_of(tiny_tokenizer))
    # Dropped-out maps against undropped ones cost about 2.7 nats per row at 10% dropout, far more at 50%.
    assert loss.item() == pytest.approx(0.0, abs=1e-5)


def test_only_the_attention_probability_dropout_is_off_and_only_in_the_students_forward(
    tmp_path, tiny_tokenizer
):
    """The maps are compared before dropout, but the student keeps the dropout of its config outside its
    forward passes: after training it is the model its config describes (issue 19, item 10)."""
    teacher = tiny_bert(seed=1, attention_probs_dropout_prob=0.3, hidden_dropout_prob=0.2)
    student = create_student(teacher, num_layers=2)
    layer = student.bert.encoder.layer[0]
    seen = []

    def record(module, inputs, output):
        if module.training:  # the training forwards, not the probe of the models at the start
            seen.append((module.self.dropout.p, layer.output.dropout.p))

    layer.attention.register_forward_hook(record)
    args = make_config(tmp_path, alpha_attn=1.0, max_steps=2)
    trainer = DistillationTrainer(
        model=student, teacher=teacher, args=args, train_dataset=random_dataset(8, 8)
    )
    trainer.train()
    # Every training forward: maps undropped, the other dropouts as configured.
    assert seen and all(entry == (0.0, 0.2) for entry in seen)
    assert layer.attention.self.dropout.p == 0.3 == student.config.attention_probs_dropout_prob
    assert layer.output.dropout.p == 0.2 and student.bert.embeddings.dropout.p == 0.2
    # Without the attention term nothing changes, even inside the forward.
    other = create_student(teacher, num_layers=2)
    seen.clear()

    def record_other(module, inputs, output):
        if module.training:
            seen.append(module.self.dropout.p)

    other.bert.encoder.layer[0].attention.register_forward_hook(record_other)
    args = make_config(tmp_path, alpha_hidden=1.0, max_steps=1)
    DistillationTrainer(
        model=other, teacher=teacher, args=args, train_dataset=random_dataset(4, 8)
    ).train()
    assert seen and set(seen) == {0.3}


# ---- defect 2 and 7: end-of-block map, embedding term -------------------------------------------


def test_hidden_term_with_the_embedding_layer_and_the_end_of_block_map(tmp_path, tiny_tokenizer):
    teacher = tiny_bert(seed=1)
    student = create_student(teacher, num_layers=2).train()
    args = make_config(tmp_path, **only("hidden", hidden_embeddings=True))
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args)
    assert trainer.layer_map == {
        0: 1,
        1: 3,
    }  # 4 -> 2: the end of each block, the last layer included
    batch = batch_of(tiny_tokenizer)
    loss = trainer.compute_loss(student, batch)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        s = student(**inputs, output_hidden_states=True).hidden_states
        t = teacher(**inputs, output_hidden_states=True).hidden_states
    expected = hidden_state_loss([s[0], s[1], s[2]], [t[0], t[2], t[4]], batch["attention_mask"])
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)


def test_pkd_compares_normalised_cls_vectors(tmp_path, tiny_tokenizer):
    teacher = tiny_bert(seed=1)
    student = create_student(teacher, num_layers=2).train()
    args = make_config(tmp_path, **only("hidden", hidden_loss="pkd"))
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args)
    batch = batch_of(tiny_tokenizer)
    loss = trainer.compute_loss(student, batch)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        s = student(**inputs, output_hidden_states=True).hidden_states
        t = teacher(**inputs, output_hidden_states=True).hidden_states
    torch.testing.assert_close(
        loss.detach(), pkd_loss([s[1], s[2]], [t[2], t[4]]), rtol=1e-5, atol=1e-6
    )
    assert loss.item() > 0


# ---- objectives: logit variants and MiniLM relations ---------------------------------------------


@pytest.mark.parametrize("kd_loss", ["forward_kl", "reverse_kl", "jsd", "mse"])
def test_each_soft_target_objective_is_the_one_configured(tmp_path, tiny_tokenizer, kd_loss):
    teacher = tiny_bert(seed=1)
    student = create_student(teacher, num_layers=2).train()
    args = make_config(tmp_path, **only("kd", kd_loss=kd_loss, jsd_beta=0.3, temperature=3.0))
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args)
    batch = batch_of(tiny_tokenizer)
    loss = trainer.compute_loss(student, batch)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        expected = logit_distillation_loss(
            student(**inputs).logits, teacher(**inputs).logits, 3.0, kd_loss, beta=0.3
        )
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-7)


def _qkv(model, layer, hidden_in):
    attention = layer.attention.self if hasattr(layer.attention, "self") else layer.attention
    names = (
        ("query", "key", "value") if hasattr(attention, "query") else ("q_lin", "k_lin", "v_lin")
    )
    return [getattr(attention, name)(hidden_in) for name in names]


def test_relation_term_matches_a_reference_across_widths(tmp_path, tiny_tokenizer):
    teacher = tiny_bert(seed=1)  # BERT, width 32, 4 layers
    student = tiny_distilbert_student(dim=16)  # DistilBERT, width 16: no projection is needed
    args = make_config(tmp_path, **only("relation", num_relation_heads=4))
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args)
    assert trainer.projections is not None and len(trainer.projections) == 0
    batch = batch_of(tiny_tokenizer)
    student.train()
    loss = trainer.compute_loss(student, batch)
    with torch.no_grad():
        s_hidden = student(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=True,
        ).hidden_states
        t_hidden = teacher(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            output_hidden_states=True,
        ).hidden_states
        # The last layer of each: its input is the previous layer's output.
        s_qkv = _qkv(student, student.distilbert.transformer.layer[-1], s_hidden[-2])
        t_qkv = _qkv(teacher, teacher.bert.encoder.layer[-1], t_hidden[-2])
    expected = relation_loss(s_qkv, t_qkv, batch["attention_mask"], num_relation_heads=4)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    assert loss.item() > 0


def test_relation_heads_must_divide_both_widths(tmp_path):
    args = make_config(tmp_path, **only("relation", num_relation_heads=3))
    with pytest.raises(ValueError, match="width 32 into 3 relation heads"):
        DistillationTrainer(
            model=create_student(tiny_bert(seed=1), 2), teacher=tiny_bert(seed=1), args=args
        )


def test_relation_term_trains_the_student(tmp_path):
    teacher = tiny_bert(seed=1)
    student = tiny_distilbert_student(dim=16)
    args = make_config(tmp_path, **only("relation"), max_steps=8, learning_rate=1e-2)
    trainer = DistillationTrainer(
        model=student, teacher=teacher, args=args, train_dataset=random_dataset(8, 8)
    )
    trainer.train()
    logged = [log["relation"] for log in trainer.state.log_history if "relation" in log]
    assert len(logged) == 8 and logged[-1] < logged[0]


# ---- defect 6: projections are clipped and counted with the student -----------------------------


class _Grads(TrainerCallback):
    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.norm = torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None])
        ).item()
        self.projection_norm = torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in model.projections.parameters()])
        ).item()


def test_projections_are_inside_gradient_clipping_and_grad_norm(tmp_path):
    grads = _Grads()
    args = make_config(
        tmp_path, alpha_hidden=10.0, max_steps=1, max_grad_norm=1e-3, optim="sgd", learning_rate=1.0
    )
    trainer = DistillationTrainer(
        model=tiny_distilbert_student(),
        teacher=tiny_bert(seed=1),
        args=args,
        train_dataset=random_dataset(4, 8),
        callbacks=[grads],
    )
    trainer.train()
    # Clipped together: the whole gradient, projections included, has the norm max_grad_norm.
    assert grads.norm == pytest.approx(1e-3, rel=1e-3)
    assert 0 < grads.projection_norm <= grads.norm
    logged = next(log["grad_norm"] for log in trainer.state.log_history if "grad_norm" in log)
    assert logged > 1e-2  # the norm before clipping, projections included, as the Trainer logs it


# ---- defect 5: evaluation runs the student alone ------------------------------------------------


def test_evaluation_runs_the_student_alone_unless_asked(tmp_path):
    teacher = tiny_bert(seed=1)
    calls = []
    teacher.register_forward_hook(lambda *args: calls.append(1))
    eval_data = random_dataset(8, 8, seed=4)
    args = make_config(tmp_path, alpha_hidden=1.0)
    trainer = DistillationTrainer(
        model=create_student(teacher, 2), teacher=teacher, args=args, eval_dataset=eval_data
    )
    calls.clear()  # the set-up probes the teacher's per-layer outputs once
    metrics = trainer.evaluate()
    assert calls == []
    assert "eval_ce" in metrics and "eval_kd" not in metrics
    assert metrics["eval_loss"] == pytest.approx(metrics["eval_ce"], rel=1e-5)
    args = make_config(tmp_path, alpha_hidden=1.0, eval_distillation_loss=True)
    trainer = DistillationTrainer(
        model=create_student(teacher, 2), teacher=teacher, args=args, eval_dataset=eval_data
    )
    calls.clear()
    metrics = trainer.evaluate()
    assert len(calls) == 2 and {"eval_kd", "eval_hidden"} <= set(metrics)
