"""DistillationTrainer: the loss it trains on, the teacher's handling, logging, accumulation and errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import random_dataset, tiny_bert, tiny_distilbert_student
from safetensors.torch import load_file
from transformers import DataCollatorWithPadding, TrainerCallback
from transformers.trainer_pt_utils import LabelSmoother

from nlpkd import DistillationConfig, DistillationTrainer, create_student
from nlpkd.losses import attention_loss, hard_label_loss, hidden_state_loss, soft_kl_loss
from nlpkd.trainer import NonFiniteLossError


def make_config(tmp_path, **overrides) -> DistillationConfig:
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-3,
        max_steps=3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return DistillationConfig(**kwargs)


def all_losses(**overrides) -> dict:
    return dict(alpha_kd=1.0, alpha_ce=0.5, alpha_hidden=0.3, alpha_attn=0.2, **overrides)


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_compute_loss_matches_reference_combination(tmp_path, tiny_tokenizer):
    teacher = tiny_bert(seed=1)
    student = create_student(teacher, num_layers=2)
    args = make_config(tmp_path, **all_losses(temperature=3.0))
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args)
    data = random_dataset(4, 8, vary_length=True)
    batch = DataCollatorWithPadding(tiny_tokenizer)([data[i] for i in range(4)])
    student.train()
    loss = trainer.compute_loss(student, dict(batch))

    # Reference written out by hand from the definitions, with TinyBERT's end-of-block map (4 -> 2 layers).
    layer_map = {0: 1, 1: 3}
    assert trainer.layer_map == layer_map
    mask = batch["attention_mask"]
    with torch.no_grad():
        s = student(
            input_ids=batch["input_ids"],
            attention_mask=mask,
            token_type_ids=batch["token_type_ids"],
            output_hidden_states=True,
            output_attentions=True,
        )
        t = teacher(
            input_ids=batch["input_ids"],
            attention_mask=mask,
            token_type_ids=batch["token_type_ids"],
            output_hidden_states=True,
            output_attentions=True,
        )
    expected = (
        1.0 * soft_kl_loss(s.logits, t.logits, 3.0)
        + 0.5 * hard_label_loss(s.logits, batch["labels"])
        + 0.3
        * hidden_state_loss(
            [s.hidden_states[1], s.hidden_states[2]], [t.hidden_states[2], t.hidden_states[4]], mask
        )
        + 0.2
        * attention_loss(
            [s.attentions[0], s.attentions[1]], [t.attentions[1], t.attentions[3]], mask
        )
    )
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    assert loss.requires_grad


def test_training_changes_student_not_teacher_and_teacher_stays_out(tmp_path):
    teacher = tiny_bert(seed=1)
    student = create_student(teacher, num_layers=2)
    teacher_before, student_before = params(teacher), params(student)
    args = make_config(tmp_path, **all_losses(), save_strategy="steps", save_steps=3)
    trainer = DistillationTrainer(
        model=student, teacher=teacher, args=args, train_dataset=random_dataset(12, 8)
    )
    trainer.train()

    for name, value in params(teacher).items():
        torch.testing.assert_close(value, teacher_before[name], rtol=0, atol=0)
    changed = [n for n, v in params(student).items() if not torch.equal(v, student_before[n])]
    assert len(changed) > len(student_before) // 2
    assert not trainer.teacher.training
    assert all(not p.requires_grad for p in trainer.teacher.parameters())
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in trainer.teacher.parameters()}

    saved = load_file(os.path.join(args.output_dir, "checkpoint-3", "model.safetensors"))
    assert set(saved) == set(student.state_dict())
    assert student.config.num_hidden_layers == 2


def test_each_loss_component_is_logged_for_train_and_eval(tmp_path):
    teacher = tiny_bert(seed=1)
    student = create_student(teacher, num_layers=2)
    args = make_config(
        tmp_path, **all_losses(), eval_strategy="steps", eval_steps=3, eval_distillation_loss=True
    )
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=random_dataset(12, 8),
        eval_dataset=random_dataset(8, 8, seed=5),
    )
    trainer.train()
    train_logs = [log for log in trainer.state.log_history if "loss" in log]
    eval_logs = [log for log in trainer.state.log_history if "eval_loss" in log]
    assert len(train_logs) == 3 and len(eval_logs) == 1
    for log in train_logs:
        assert {"kd", "ce", "hidden", "attn"} <= set(log)
        weighted = log["kd"] + 0.5 * log["ce"] + 0.3 * log["hidden"] + 0.2 * log["attn"]
        assert log["loss"] == pytest.approx(weighted, rel=1e-4)
    ev = eval_logs[0]
    assert {"eval_kd", "eval_ce", "eval_hidden", "eval_attn"} <= set(ev)
    weighted = ev["eval_kd"] + 0.5 * ev["eval_ce"] + 0.3 * ev["eval_hidden"] + 0.2 * ev["eval_attn"]
    assert ev["eval_loss"] == pytest.approx(weighted, rel=1e-4)
    # evaluate() returns the components too
    metrics = trainer.evaluate()
    assert metrics["eval_kd"] > 0


class _GradientRecorder(TrainerCallback):
    """Copies the gradients the optimizer is about to apply (after accumulation, before the step)."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads = {
            n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None
        }


def accumulated_gradient(tmp_path, name, batch_size, accumulation) -> dict[str, torch.Tensor]:
    """The gradient of the first optimizer step over the same 4 examples, in one batch or accumulated."""
    teacher = tiny_bert(seed=1)
    student = create_student(teacher, num_layers=2)
    # Move the student away from the teacher layers it copied: at the copy the KD and hidden-state
    # gradients sit near zero, where summation order alone decides their sign.
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in student.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    args = make_config(
        tmp_path / name,
        **all_losses(),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        max_grad_norm=0.0,  # no clipping: the recorded gradient is the raw accumulated one
    )
    recorder = _GradientRecorder()
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=random_dataset(4, 8),
        callbacks=[recorder],
    )
    trainer.train()
    assert recorder.grads, "no gradient was recorded before the optimizer step"
    return recorder.grads


def _float32_tolerance(reference: dict[str, torch.Tensor]) -> float:
    # Two summation orders of a float32 sum differ by about n * eps * sum|terms|. A gradient that is
    # zero in exact arithmetic (BERT's key biases) is pure noise of the size of the other terms, so the
    # scale is the largest gradient of the whole model, with room for a few hundred terms per entry.
    eps = torch.finfo(torch.float32).eps
    return 1000 * eps * max(float(g.abs().max()) for g in reference.values())


def test_gradient_accumulation_gives_the_same_gradient(tmp_path):
    full = accumulated_gradient(tmp_path, "full", 4, 1)
    accumulated = accumulated_gradient(tmp_path, "ga", 2, 2)
    assert set(accumulated) == set(full)
    atol = _float32_tolerance(full)
    for name in full:
        torch.testing.assert_close(accumulated[name], full[name], rtol=1e-4, atol=atol)


def test_gradient_accumulation_check_would_catch_unscaled_loss(tmp_path, monkeypatch):
    # Claiming the loss is already scaled for accumulation sums two batch means instead of averaging
    # them: the accumulated gradient is then twice the large-batch gradient, which the check rejects.
    full = accumulated_gradient(tmp_path, "full", 4, 1)
    monkeypatch.setattr(DistillationTrainer, "loss_is_scaled_for_ga", True)
    accumulated = accumulated_gradient(tmp_path, "ga", 2, 2)
    atol = _float32_tolerance(full)
    for name in full:
        torch.testing.assert_close(accumulated[name], 2 * full[name], rtol=1e-4, atol=2 * atol)
    with pytest.raises(AssertionError):
        name = max(full, key=lambda n: float(full[n].abs().max()))
        torch.testing.assert_close(accumulated[name], full[name], rtol=1e-4, atol=atol)


def test_label_smoothing_is_used_in_the_hard_label_term(tmp_path, tiny_tokenizer):
    teacher = tiny_bert(seed=1)
    student = create_student(teacher, num_layers=2)
    args = make_config(tmp_path, alpha_kd=0.0, alpha_ce=1.0, label_smoothing_factor=0.2)
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args)
    batch = DataCollatorWithPadding(tiny_tokenizer)([random_dataset(4, 8)[i] for i in range(4)])
    loss = trainer.compute_loss(student, dict(batch))
    with torch.no_grad():
        logits = student(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        ).logits
    smoothed = LabelSmoother(epsilon=0.2)({"logits": logits}, batch["labels"])
    plain = hard_label_loss(logits, batch["labels"])
    torch.testing.assert_close(loss.detach(), smoothed, rtol=1e-5, atol=1e-6)
    assert not torch.isclose(loss.detach(), plain)


def test_eval_gives_compute_metrics_student_logits_only(tmp_path):
    teacher = tiny_bert(seed=1)
    student = create_student(teacher, num_layers=2)
    seen = {}

    def compute_metrics(pred):
        seen["shape"] = np.asarray(pred.predictions).shape
        seen["labels"] = np.asarray(pred.label_ids)
        return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    args = make_config(tmp_path, **all_losses(), eval_distillation_loss=True)
    eval_data = random_dataset(6, 8, seed=3)
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=args,
        eval_dataset=eval_data,
        compute_metrics=compute_metrics,
    )
    metrics = trainer.evaluate()
    assert seen["shape"] == (6, 3)
    assert seen["labels"].tolist() == eval_data["label"]
    predictions = trainer.predict(eval_data).predictions
    with torch.no_grad():
        expected = student(
            input_ids=torch.tensor(eval_data["input_ids"]),
            token_type_ids=torch.tensor(eval_data["token_type_ids"]),
        ).logits
    np.testing.assert_allclose(predictions, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert "eval_accuracy" in metrics and "eval_kd" in metrics


def test_bert_teacher_keeps_token_type_ids_behind_distilbert_student(tmp_path):
    teacher = tiny_bert(seed=1)
    student = tiny_distilbert_student()
    seen = []
    teacher.register_forward_pre_hook(lambda m, a, kw: seen.append(set(kw)), with_kwargs=True)
    args = make_config(tmp_path, **all_losses(), max_steps=2)
    trainer = DistillationTrainer(
        model=student, teacher=teacher, args=args, train_dataset=random_dataset(8, 8)
    )
    proj_before = [p.detach().clone() for p in trainer.projections.parameters()]
    trainer.train()
    assert seen and all("token_type_ids" in keys for keys in seen[-2:])
    # Widths 16 -> 32: one learned projection per mapped layer, optimised with the student...
    assert len(trainer.projections) == 2
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in trainer.projections.parameters()} <= optimised
    assert any(
        not torch.equal(a, b)
        for a, b in zip(proj_before, trainer.projections.parameters(), strict=True)
    )
    # ...and never written into the saved student.
    trainer.save_model(str(tmp_path / "saved"))
    saved = load_file(str(tmp_path / "saved" / "model.safetensors"))
    assert set(saved) == set(student.state_dict())
    assert not any("proj" in k for k in saved)


def test_attention_loss_switches_both_models_to_eager(tmp_path):
    teacher = tiny_bert(seed=1, attn_implementation="sdpa")
    student = create_student(teacher, num_layers=2)
    assert student.config._attn_implementation == "sdpa"
    args = make_config(tmp_path, alpha_attn=1.0)
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args)
    assert trainer.model.config._attn_implementation == "eager"
    assert teacher.config._attn_implementation == "eager"


def test_without_attention_loss_attention_is_left_alone(tmp_path):
    teacher = tiny_bert(seed=1, attn_implementation="sdpa")
    student = create_student(teacher, num_layers=2)
    DistillationTrainer(
        model=student, teacher=teacher, args=make_config(tmp_path, alpha_hidden=1.0)
    )
    assert student.config._attn_implementation == "sdpa"


@pytest.mark.parametrize(
    ("student_overrides", "config_overrides", "message"),
    [
        ({"vocab_size": 50}, {}, "vocabularies differ"),
        (
            {"num_labels": 2, "id2label": {0: "a", 1: "b"}, "label2id": {"a": 0, "b": 1}},
            {},
            "num_labels=2",
        ),
        (
            {
                "id2label": {0: "positive", 1: "neutral", 2: "negative"},
                "label2id": {"positive": 0, "neutral": 1, "negative": 2},
            },
            {},
            "label maps disagree",
        ),
        ({}, {"alpha_hidden": 1.0, "layer_map": "0:1,1:7"}, "out of range"),
        (
            {"hidden_size": 16, "num_attention_heads": 4},
            {"alpha_hidden": 1.0, "hidden_projection": False},
            "hidden_projection=True",
        ),
    ],
)
def test_bad_pairs_fail_before_training(tmp_path, student_overrides, config_overrides, message):
    teacher = tiny_bert(seed=1)
    student = tiny_bert(seed=2, num_hidden_layers=2, **student_overrides)
    with pytest.raises(ValueError, match=message):
        DistillationTrainer(
            model=student, teacher=teacher, args=make_config(tmp_path, **config_overrides)
        )


def test_tokenizer_mismatch_is_an_error(tmp_path, tiny_tokenizer):
    from transformers import BertTokenizerFast

    other_vocab = tmp_path / "vocab.txt"
    other_vocab.write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "zebra", "apple"])
    )
    other = BertTokenizerFast.from_pretrained(str(tmp_path))
    teacher = tiny_bert(seed=1)
    with pytest.raises(ValueError, match="tokenizers differ"):
        DistillationTrainer(
            model=create_student(teacher, 2),
            teacher=teacher,
            args=make_config(tmp_path),
            processing_class=tiny_tokenizer,
            teacher_processing_class=other,
        )


def test_model_without_attentions_is_refused(tmp_path, monkeypatch):
    teacher = tiny_bert(seed=1, attn_implementation="sdpa")
    student = create_student(teacher, num_layers=2)
    # Stand in for a family that cannot switch to eager attention.
    monkeypatch.setattr(type(teacher), "set_attn_implementation", lambda self, impl: None)
    monkeypatch.setattr(
        type(teacher),
        "forward",
        lambda self, *a, output_attentions=None, output_hidden_states=None, **kw: type(
            "Out", (), {"logits": torch.zeros(1, 3), "attentions": None, "hidden_states": None}
        )(),
    )
    with pytest.raises(ValueError, match="returns no per-layer attentions"):
        DistillationTrainer(
            model=student, teacher=teacher, args=make_config(tmp_path, alpha_attn=1.0)
        )


def test_args_must_be_a_distillation_config(tmp_path):
    from transformers import TrainingArguments

    teacher = tiny_bert(seed=1)
    with pytest.raises(ValueError, match="DistillationConfig"):
        DistillationTrainer(
            model=create_student(teacher, 2),
            teacher=teacher,
            args=TrainingArguments(output_dir=str(tmp_path)),
        )


def test_non_finite_loss_is_reported_with_step_and_component(tmp_path, tiny_tokenizer):
    teacher = tiny_bert(seed=1)
    student = create_student(teacher, num_layers=2)
    with torch.no_grad():
        teacher.classifier.bias.fill_(float("nan"))
    trainer = DistillationTrainer(model=student, teacher=teacher, args=make_config(tmp_path))
    batch = DataCollatorWithPadding(tiny_tokenizer)([random_dataset(4, 8)[i] for i in range(4)])
    with pytest.raises(NonFiniteLossError, match=r"teacher's logits are NaN or infinite at step 0"):
        trainer.compute_loss(student, dict(batch))


def test_non_finite_student_loss_names_the_component(tmp_path, tiny_tokenizer):
    teacher = tiny_bert(seed=1)
    student = create_student(teacher, num_layers=2)
    with torch.no_grad():
        student.classifier.bias.fill_(float("inf"))
    trainer = DistillationTrainer(model=student, teacher=teacher, args=make_config(tmp_path))
    batch = DataCollatorWithPadding(tiny_tokenizer)([random_dataset(4, 8)[i] for i in range(4)])
    with pytest.raises(
        NonFiniteLossError, match=r"Non-finite distillation loss at step 0: component\(s\) kd, ce"
    ):
        trainer.compute_loss(student, dict(batch))


def test_config_serialises_layer_map(tmp_path):
    args = make_config(tmp_path, **all_losses(layer_map="0:1,1:3"))
    assert json.loads(args.to_json_string())["layer_map"] == {"0": 1, "1": 3}


@pytest.mark.parametrize(("flag", "dtype"), [("bf16", "bfloat16"), ("fp16", "float16")])
def test_mixed_precision_with_half_precision_teacher(tmp_path, flag, dtype):
    teacher = tiny_bert(seed=1)
    student = create_student(teacher, num_layers=2)
    args = make_config(tmp_path, **all_losses(), **{flag: True}, teacher_dtype=dtype, max_steps=2)
    trainer = DistillationTrainer(
        model=student, teacher=teacher, args=args, train_dataset=random_dataset(8, 8)
    )
    trainer.train()
    assert next(trainer.teacher.parameters()).dtype == getattr(torch, dtype)
    # autocast: the student's master weights stay in float32
    assert next(trainer.model.parameters()).dtype == torch.float32
    logs = [log for log in trainer.state.log_history if "kd" in log]
    assert len(logs) == 2 and all(
        np.isfinite([log[k] for k in ("kd", "ce", "hidden", "attn")]).all() for log in logs
    )


class _KwargsOnlyStudent(torch.nn.Module):
    """A student whose forward names no input: it takes whatever the batch holds."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.seen: list[set[str]] = []

    def forward(self, **inputs):
        self.seen.append(set(inputs))
        return self.inner(**inputs)


def test_a_student_that_takes_every_input_gets_the_whole_batch(tmp_path):
    teacher = tiny_bert(seed=1)
    student = _KwargsOnlyStudent(create_student(teacher, num_layers=2))
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=make_config(tmp_path, max_steps=1),
        train_dataset=random_dataset(4, 8),
    )
    trainer.train()
    # "Takes every input" used to become "takes nothing": an empty batch reached the student.
    assert student.seen and {"input_ids", "attention_mask", "token_type_ids"} <= student.seen[0]
    assert "labels" not in student.seen[0]


def test_a_component_is_averaged_over_the_batches_that_had_it():
    from accelerate import Accelerator

    from nlpkd.trainer import LossLog

    log = LossLog(["kd", "ce"])
    log.add({"kd": torch.tensor(1.0), "ce": torch.tensor(0.5)})
    log.add({"kd": torch.tensor(3.0)})  # a batch without labels has no ce
    assert log.drain(Accelerator(cpu=True)) == {
        "kd": 2.0,
        "ce": 0.5,
    }  # ce was 0.25 by the old count


def test_projections_are_saved_inside_the_checkpoint_weights(tmp_path):
    teacher = tiny_bert(seed=1)
    args = make_config(tmp_path, alpha_hidden=1.0, save_strategy="steps", save_steps=3)
    trainer = DistillationTrainer(
        model=tiny_distilbert_student(),
        teacher=teacher,
        args=args,
        train_dataset=random_dataset(12, 8),
    )
    trainer.train()
    checkpoint = tmp_path / "out" / "checkpoint-3"
    # One weights file, written before trainer_state.json marks the checkpoint complete: a kill between
    # the two can no longer leave a "complete" checkpoint without its projections.
    weights = load_file(str(checkpoint / "model.safetensors"))
    projected = {k for k in weights if k.startswith("projections.")}
    assert projected == {f"projections.{i}.{p}" for i in range(2) for p in ("weight", "bias")}
    assert not (checkpoint / "nlpkd_projections.pt").exists()
    for name, value in trainer.projections.state_dict().items():
        torch.testing.assert_close(weights[f"projections.{name}"], value, rtol=0, atol=0)
