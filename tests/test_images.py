"""Image classifiers: the trainer, the losses, the report and the card on `pixel_values`, with tiny ResNets;
and the digits example on real images (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from test_trainer import make_config
from transformers import ResNetConfig, ResNetForImageClassification

from nlpkd import DistillationTrainer, create_student
from nlpkd.losses import hard_label_loss, soft_kl_loss
from nlpkd.report import build_report, evaluate_model, latency_batches, load_report, write_report

REPO = Path(__file__).resolve().parents[1]


def tiny_resnet(seed: int = 0, depths=(2, 2)):
    torch.manual_seed(seed)
    config = ResNetConfig(
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=list(depths),
        layer_type="basic", downsample_in_first_stage=False, num_labels=3,
        id2label={0: "zero", 1: "one", 2: "two"}, label2id={"zero": 0, "one": 1, "two": 2},
    )  # fmt: skip
    return ResNetForImageClassification(config).eval()


def random_images(n: int = 8, size: int = 16, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    data = {
        "pixel_values": torch.rand(n, 1, size, size, generator=g).numpy(),
        "label": [i % 3 for i in range(n)],
    }
    return Dataset.from_dict(data).with_format("torch")


def accuracy(prediction):
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def test_loss_on_images_matches_a_reference_with_stage_outputs(tmp_path):
    teacher = tiny_resnet(seed=1)
    student = create_student(teacher, num_layers=1)
    args = make_config(tmp_path, alpha_kd=1.0, alpha_ce=0.5, alpha_hidden=0.3, temperature=3.0)
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args)
    assert trainer.layer_map == {0: 0, 1: 1}
    data = random_images(4)
    batch = trainer.data_collator([data[i] for i in range(4)])
    student.train()
    loss = trainer.compute_loss(student, batch)
    with torch.no_grad():
        s = student(pixel_values=batch["pixel_values"], output_hidden_states=True)
        t = teacher(pixel_values=batch["pixel_values"], output_hidden_states=True)
    # Stage j's output sits at hidden_states[j + 1]; every pixel of every channel counts alike.
    hidden = sum(((s.hidden_states[j] - t.hidden_states[j]) ** 2).mean() for j in (1, 2)) / 2
    expected = (
        soft_kl_loss(s.logits, t.logits, 3.0)
        + 0.5 * hard_label_loss(s.logits, batch["labels"])
        + 0.3 * hidden
    )
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)


def test_intermediate_terms_a_resnet_lacks_say_what_to_do(tmp_path):
    teacher = tiny_resnet(seed=1)
    for weight in ("alpha_attn", "alpha_relation"):
        # The advice names the term that cannot work, and not alpha_hidden, which does work on a ResNet.
        with pytest.raises(
            ValueError, match=f"groups its blocks in stages.*set {weight}=0"
        ) as error:
            DistillationTrainer(
                model=create_student(teacher, num_layers=1),
                teacher=teacher,
                args=make_config(tmp_path, **{weight: 1.0}),
            )
        assert "alpha_hidden=0" not in str(error.value)
    with pytest.raises(ValueError, match="Teacher has num_labels=3 but student has num_labels=4"):
        wrong = ResNetForImageClassification(ResNetConfig(num_channels=1, num_labels=4))
        DistillationTrainer(model=wrong, teacher=teacher, args=make_config(tmp_path))


def test_train_evaluate_report_and_card_for_images(tmp_path):
    teacher = tiny_resnet(seed=1)
    student = create_student(teacher, num_layers=1)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    args = make_config(tmp_path, max_steps=2, alpha_hidden=0.5)
    train = random_images(8)
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=train)
    trainer.train()
    changed = [k for k, v in before.items() if not torch.equal(v, student.state_dict()[k])]
    assert any("convolution" in k for k in changed)
    assert "hidden" in trainer.state.log_history[0]

    test = random_images(6, seed=1)
    teacher_metrics = evaluate_model(teacher, {"test": test}, None, args, compute_metrics=accuracy)
    with torch.no_grad():
        predicted = teacher(pixel_values=test[:]["pixel_values"]).logits.argmax(-1)
    expected = float((predicted == test[:]["label"]).float().mean())
    assert teacher_metrics["test"]["accuracy"] == pytest.approx(expected)
    batches = latency_batches(test, None, 4, 2, 0)
    assert [tuple(b["pixel_values"].shape) for b in batches] == [(4, 1, 16, 16), (2, 1, 16, 16)]
    assert all("labels" not in b for b in batches)
    report = build_report(
        teacher,
        student,
        teacher_metrics,
        evaluate_model(student, {"test": test}, None, args, compute_metrics=accuracy),
        main_metric="accuracy",
        main_split="test",
        latency_batches=batches,
        repeats=1,
        warmup=0,
        progress=False,
        teacher_name="tiny-resnet",
        pipeline_tag="image-classification",
        extra={"origin": "a ResNet with the teacher blocks [[0], [0]]"},
    )
    write_report(report, tmp_path / "report")
    data = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert data["pipeline_tag"] == "image-classification"
    assert data["latency_batch_shape"] == [4, 1, 16, 16]
    assert load_report(tmp_path / "report").pipeline_tag == "image-classification"
    card = (tmp_path / "report" / "README.md").read_text()
    assert "pipeline_tag: image-classification" in card and "type: image-classification" in card
    assert "This model is a ResNet with the teacher blocks [[0], [0]], an image classifier" in card
    assert 'pipeline("image-classification"' in card


@pytest.mark.slow
def test_digits_example_keeps_98_percent_with_a_third_of_the_parameters(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out = tmp_path / "digits"
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "image_classification.py"),
            "--output_dir",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["teacher"]["test"]["accuracy"] > 0.9
    assert metrics["retention"] >= 0.98
    assert metrics["student_params"] <= metrics["teacher_params"] / 3
    assert "speed-up:" in completed.stdout and (out / "README.md").is_file()
