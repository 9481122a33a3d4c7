"""Several teachers as one: the ensemble's soft targets, its checks, and its per-layer outputs."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_bert

from nlpkd.models import TeacherEnsemble, ensemble_logits


def test_probability_average_by_hand():
    # Two teachers on one two-class row at T=1: p1 = (0.7, 0.3), p2 = (0.2, 0.8), weights 3:1.
    z1 = torch.tensor([[math.log(0.7), math.log(0.3)]])
    z2 = torch.tensor([[math.log(0.2), math.log(0.8)]])
    z = ensemble_logits([z1, z2], [3.0, 1.0], temperature=1.0)
    expected = [0.75 * 0.7 + 0.25 * 0.2, 0.75 * 0.3 + 0.25 * 0.8]  # (0.575, 0.425)
    torch.testing.assert_close(torch.softmax(z, -1), torch.tensor([expected]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_probability_average_holds_at_the_distillation_temperature(temperature):
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(5, 7, generator=g) * 3 for _ in range(3)]
    weights = [0.2, 0.5, 0.3]
    z = ensemble_logits(logits, weights, temperature)
    mean = sum(w * torch.softmax(x / temperature, -1) for w, x in zip(weights, logits, strict=True))
    torch.testing.assert_close(torch.softmax(z / temperature, -1), mean, rtol=1e-5, atol=1e-6)


def test_logit_average_and_regression_heads_average_values():
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -2.0]])
    torch.testing.assert_close(
        ensemble_logits([a, b], [1, 1], mode="logits"), torch.tensor([[2.0, 0.0]])
    )
    r1, r2 = torch.tensor([[0.5]]), torch.tensor([[1.5]])
    torch.testing.assert_close(ensemble_logits([r1, r2], [1, 3]), torch.tensor([[1.25]]))


def test_extreme_logits_stay_finite():
    a = torch.tensor([[1e4, -1e4]])
    b = torch.tensor([[-1e4, 1e4]])
    z = ensemble_logits([a, b], [1, 1], temperature=2.0)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(torch.softmax(z / 2.0, -1), torch.tensor([[0.5, 0.5]]))


@pytest.mark.parametrize(
    ("weights", "message"),
    [([1.0], "one weight per teacher"), ([-1.0, 2.0], "must be >= 0"), ([0.0, 0.0], "not all 0")],
)
def test_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        ensemble_logits([torch.zeros(1, 2), torch.zeros(1, 2)], weights)


def test_ensemble_module_answers_like_one_teacher():
    t1, t2 = tiny_bert(seed=1), tiny_bert(seed=2)
    ensemble = TeacherEnsemble([t1, t2], weights=[1, 1], temperature=2.0)
    ids = torch.tensor([[2, 7, 9, 3]])
    with torch.no_grad():
        out = ensemble(input_ids=ids, output_hidden_states=True)
        expected = ensemble_logits(
            [t1(input_ids=ids).logits, t2(input_ids=ids).logits], [1, 1], 2.0
        )
        primary = t1(input_ids=ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(out.logits, expected)
    assert len(out.hidden_states) == len(primary)
    torch.testing.assert_close(
        out.hidden_states[-1], primary[-1]
    )  # per-layer outputs: the first teacher's
    assert ensemble.config is t1.config and "weights" in ensemble.state_dict()


def test_teachers_must_share_labels_and_vocabulary():
    other_labels = tiny_bert(
        seed=2, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2}
    )
    with pytest.raises(ValueError, match="must share one label map"):
        TeacherEnsemble([tiny_bert(seed=1), other_labels])
    with pytest.raises(ValueError, match="must share one tokenizer"):
        TeacherEnsemble([tiny_bert(seed=1), tiny_bert(seed=2, vocab_size=50)])
    with pytest.raises(ValueError, match="at least two teachers"):
        TeacherEnsemble([tiny_bert(seed=1)])


def test_the_trainer_distils_an_ensemble_given_as_a_list(tmp_path):
    from conftest import random_dataset

    from nlpkd import DistillationConfig, DistillationTrainer, create_student

    t1, t2 = tiny_bert(seed=1), tiny_bert(seed=2)
    args = DistillationConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        alpha_kd=1.0,
        alpha_ce=0.0,
        alpha_hidden=1.0,
        temperature=2.0,
        teacher_weights=[2.0, 1.0],
    )
    trainer = DistillationTrainer(
        model=create_student(t1, 2), teacher=[t1, t2], args=args, train_dataset=random_dataset(8, 8)
    )
    assert isinstance(trainer.teacher_model, TeacherEnsemble)
    assert trainer.teacher_model.primary is t1 and trainer.layer_map == {0: 1, 1: 3}
    batch = {k: torch.tensor(v) for k, v in random_dataset(4, 8)[:4].items()}
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    with torch.no_grad():
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        student = trainer.student(**inputs, output_hidden_states=True)
        target = ensemble_logits([t1(**inputs).logits, t2(**inputs).logits], [2.0, 1.0], 2.0)
        hidden = t1(**inputs, output_hidden_states=True).hidden_states
    from nlpkd.losses import hidden_state_loss, logit_distillation_loss

    expected = logit_distillation_loss(student.logits, target, 2.0) + hidden_state_loss(
        [student.hidden_states[1], student.hidden_states[2]],
        [hidden[2], hidden[4]],
        batch["attention_mask"],
    )
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    trainer.train()


def test_an_ensemble_takes_the_inputs_of_its_teachers_wherever_it_is_routed():
    """Everything that routes a batch by `forward` signature (the latency timing, the evaluation) must give an
    ensemble its teachers' inputs: its own `forward(labels, **inputs)` names none of them."""
    from nlpkd.models import forward_input_names, select_forward_inputs
    from nlpkd.report import measure_latency

    ensemble = TeacherEnsemble([tiny_bert(seed=1), tiny_bert(seed=2)])
    assert forward_input_names(ensemble) == forward_input_names(tiny_bert(seed=1))
    batch = {
        "input_ids": torch.tensor([[2, 7, 9, 3]]),
        "attention_mask": torch.ones(1, 4, dtype=torch.long),
        "labels": torch.tensor([1]),
    }
    assert set(select_forward_inputs(ensemble, batch)) == {"input_ids", "attention_mask"}
    timings = measure_latency({"teacher": ensemble}, [batch], warmup=0, repeats=1, progress=False)
    assert timings["teacher"] > 0
