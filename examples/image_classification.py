"""Distil an image classifier: a ResNet trained on scikit-learn's handwritten digits, into a smaller ResNet.

    python examples/image_classification.py --output_dir digits-student

The 1,797 8x8 digit images ship with scikit-learn, so this runs offline. They are scaled to 32x32 so that
the ResNet stem (a stride-2 convolution and a max-pool) keeps a few pixels for the stages. The teacher is a
ResNet built from a config (widths 16/32/64, 3 blocks per stage) and trained with the plain
`transformers.Trainer`; the student keeps every stage with one block each (`create_student(teacher,
num_layers=1)`, weights copied) and learns from the teacher's logits (and, with `--alpha_hidden`, from its
stage outputs) with `DistillationTrainer`. The report compares accuracy, parameters, size and latency, and the
student folder gets `metrics.json`, the plot and a model card. About a minute on a laptop CPU.
"""

from __future__ import annotations

import argparse

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from transformers import ResNetConfig, ResNetForImageClassification, Trainer, TrainingArguments

from nlpkd import DistillationConfig, DistillationTrainer, create_student
from nlpkd.report import build_report, evaluate_model, format_summary, latency_batches, write_report


def digits_splits(image_size: int = 32, seed: int = 0) -> datasets.DatasetDict:
    """The digits as `pixel_values` (1 x size x size, in [0, 1]) and `label`, split 80/20 by class."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(
        images, size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    train_idx, test_idx = train_test_split(
        np.arange(len(digits.target)), test_size=0.2, random_state=seed, stratify=digits.target
    )
    names = [str(d) for d in range(10)]
    features = datasets.Features(
        {
            "pixel_values": datasets.Array3D((1, image_size, image_size), "float32"),
            "label": datasets.ClassLabel(names=names),
        }
    )

    def split(index: np.ndarray) -> datasets.Dataset:
        data = {"pixel_values": images[index].numpy(), "label": digits.target[index].tolist()}
        return datasets.Dataset.from_dict(data, features=features).with_format("torch")

    return datasets.DatasetDict(train=split(train_idx), test=split(test_idx))


def resnet_teacher(seed: int) -> ResNetForImageClassification:
    torch.manual_seed(seed)
    config = ResNetConfig(
        num_channels=1,
        embedding_size=16,
        hidden_sizes=[16, 32, 64],
        depths=[3, 3, 3],
        layer_type="basic",
        downsample_in_first_stage=False,
        num_labels=10,
        id2label={i: str(i) for i in range(10)},
        label2id={str(i): i for i in range(10)},
    )
    return ResNetForImageClassification(config)


def accuracy(prediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def training_arguments(options, output_dir: str, cls=TrainingArguments, **extra):
    return cls(
        output_dir=output_dir,
        num_train_epochs=options.epochs,
        per_device_train_batch_size=64,
        per_device_eval_batch_size=128,
        learning_rate=options.learning_rate,
        warmup_steps=10,
        lr_scheduler_type="cosine",
        save_strategy="no",
        report_to=[],
        logging_steps=10,
        seed=options.seed,
        use_cpu=True,
        disable_tqdm=True,
        **extra,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="digits-student")
    parser.add_argument("--epochs", type=float, default=12.0, help="of the teacher and the student")
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--blocks", type=int, default=1, help="student blocks per stage (of 3)")
    parser.add_argument("--alpha_hidden", type=float, default=0.0, help="stage-output term weight")
    parser.add_argument("--alpha_kd", type=float, default=0.9, help="0: labels only, no teacher")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()

    splits = digits_splits(seed=options.seed)
    teacher = resnet_teacher(options.seed)
    print(
        f"Training the teacher ResNet ({sum(p.numel() for p in teacher.parameters()):,} parameters) ..."
    )
    teacher_args = training_arguments(options, f"{options.output_dir}/teacher")
    teacher_trainer = Trainer(model=teacher, args=teacher_args, train_dataset=splits["train"])
    teacher_trainer.train()
    teacher_trainer.save_model()

    student = create_student(teacher, num_layers=options.blocks)
    print(f"Distilling into a student with blocks {student.config.nlpkd_teacher_blocks} ...")
    args = training_arguments(
        options,
        options.output_dir,
        DistillationConfig,
        temperature=4.0,
        alpha_kd=options.alpha_kd,
        alpha_ce=1.0 - options.alpha_kd,
        alpha_hidden=options.alpha_hidden,
    )
    trainer = DistillationTrainer(
        model=student, teacher=teacher, args=args, train_dataset=splits["train"]
    )
    trainer.train()
    trainer.save_model()

    evaluation = {"test": splits["test"]}
    report = build_report(
        teacher,
        student,
        evaluate_model(teacher, evaluation, None, args, compute_metrics=accuracy),
        evaluate_model(student, evaluation, None, args, compute_metrics=accuracy),
        main_metric="accuracy",
        main_split="test",
        latency_batches=latency_batches(splits["test"], None, 64, 4, 0),
        progress=False,
        task="digits",
        teacher_name=teacher_args.output_dir,
        student_layers=sum(student.config.depths),
        distillation=args.loss_settings(),
        train_examples=len(splits["train"]),
        label_names=[str(d) for d in range(10)],
        pipeline_tag="image-classification",
        extra={
            "teacher_blocks": student.config.nlpkd_teacher_blocks,
            "origin": f"a ResNet with {options.blocks} block(s) per stage, initialised from teacher blocks "
            f"{student.config.nlpkd_teacher_blocks} of `{teacher_args.output_dir}`",
        },
    )
    write_report(
        report, options.output_dir, trainer.state.log_history, model_name="resnet-digits-student"
    )
    print(format_summary(report))
    print(f"parameter ratio: {report.student.params / report.teacher.params:.3f}")
    print(f"Student, metrics.json, plot and model card written to {options.output_dir}")


if __name__ == "__main__":
    main()
