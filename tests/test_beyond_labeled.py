"""Distilling beyond the labeled set, through the job: unlabeled text, augmentation, several teachers."""

from __future__ import annotations

import json

import pytest
from conftest import FAST_CLI, SENTENCES, tiny_bert
from test_cli import save_teacher, write_sst2

from nlpkd import distill
from nlpkd.cli import main
from nlpkd.data.unlabeled import UNLABELED as UNLABELED

EXTRA_TEXTS = ["the song was fun", "a boring match", "love the actor", "the phone chip is great"]


def cli(argv, capsys) -> tuple[int, str]:
    status = main(argv)
    return status, capsys.readouterr().err


def test_unlabeled_text_and_augmentation_join_the_training_set(tmp_path, tiny_tokenizer, capsys):
    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=2)
    train, dev = write_sst2(tmp_path)
    more = tmp_path / "more.txt"
    more.write_text("\n".join(EXTRA_TEXTS) + "\n")
    out = tmp_path / "out"
    argv = [
        "distill", "--task", "sst2", "--teacher", str(teacher_dir), "--train_file", str(train),
        "--validation_file", str(dev), "--output_dir", str(out), "--student_layers", "2",
        "--unlabeled_file", str(more), "--augment", "2", *FAST_CLI,
    ]  # fmt: skip
    status, err = cli(argv, capsys)
    assert status == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    # 8 labeled sentences, 2 variants of each, and the 4 unlabeled texts.
    assert metrics["train_examples"] == len(SENTENCES) * 3 + len(EXTRA_TEXTS)


def test_rows_without_labels_learn_from_the_teacher_only(tiny_tokenizer):
    teacher = tiny_bert()
    labeled = ["the movie was very good", "the plot was boring and bad", "great music"]
    result = distill(
        teacher,
        labeled,
        labels=["positive", "negative", "positive"],
        tokenizer=tiny_tokenizer,
        unlabeled_data=EXTRA_TEXTS,
        max_steps=2,
        per_device_train_batch_size=4,
        latency_batches=0,
        max_length=16,
        disable_tqdm=True,
    )
    labels = result.trainer.train_dataset["label"]
    assert labels[:3] == [2, 0, 2] and labels[3:] == [UNLABELED] * len(EXTRA_TEXTS)
    # A batch of unlabeled rows only has no hard-label term: `ce` is averaged over the batches with labels.
    trainer = result.trainer
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3, 7)])
    trainer.model.train()
    trainer._loss_logs["train"].reset()
    trainer.compute_loss(trainer.model, dict(batch))
    assert set(trainer._loss_logs["train"].sums) == {"kd"}


def test_two_teachers_are_distilled_as_one_and_each_is_scored(tiny_tokenizer):
    texts = ["the movie was very good", "the plot was boring and bad", "great music", "awful film"]
    labels = ["positive", "negative", "positive", "negative"]
    result = distill(
        [tiny_bert(seed=1), tiny_bert(seed=2)],
        texts,
        texts,
        labels=labels,
        eval_labels=labels,
        tokenizer=tiny_tokenizer,
        teacher_weights=[3.0, 1.0],
        max_steps=1,
        latency_batches=0,
        max_length=16,
        disable_tqdm=True,
    )
    report = result.report
    assert report.teacher_name.startswith("ensemble of 2 teachers")
    assert [t["name"] for t in report["teachers"]] == ["teacher 1", "teacher 2"]
    one_teacher = sum(p.numel() for p in tiny_bert().parameters())
    assert report.teacher.params == 2 * one_teacher  # the ensemble weighs both teachers
    single = report["teachers"][0]["metrics"]["validation"]["accuracy"]
    assert 0.0 <= single <= 1.0 and "accuracy" in report["teacher"]["validation"]


def test_teachers_with_other_label_maps_are_refused(tiny_tokenizer):
    other = tiny_bert(seed=2, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    with pytest.raises(ValueError, match="must share one label map"):
        distill(
            [tiny_bert(seed=1), other],
            ["good movie"],
            labels=["positive"],
            tokenizer=tiny_tokenizer,
            max_steps=1,
            latency_batches=0,
        )


def test_an_unlabeled_file_with_labels_is_one_clear_line(tmp_path, tiny_tokenizer, capsys):
    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=2)
    train, dev = write_sst2(tmp_path)
    labeled = tmp_path / "labeled.csv"
    labeled.write_text("text,label\ngood,1\n")
    out = tmp_path / "out"
    argv = [
        "distill", "--task", "sst2", "--teacher", str(teacher_dir), "--train_file", str(train),
        "--validation_file", str(dev), "--output_dir", str(out), "--unlabeled_file", str(labeled),
        *FAST_CLI,
    ]  # fmt: skip
    status, err = cli(argv, capsys)
    assert status == 2
    lines = [line for line in err.splitlines() if line.startswith("nlpkd: error:")]
    assert (
        len(lines) == 1 and "has a 'label' column, but unlabeled text carries no labels" in lines[0]
    )
    assert not (out / "model.safetensors").exists() and not (out / "teacher").exists()


def test_regression_tasks_refuse_unlabeled_text(tmp_path, tiny_tokenizer):
    teacher = tiny_bert(num_labels=1, id2label={0: "LABEL_0"}, label2id={"LABEL_0": 0})
    with pytest.raises(ValueError, match="need a classification task"):
        distill(
            teacher,
            ["good", "bad"],
            labels=[0.5, 1.5],
            tokenizer=tiny_tokenizer,
            unlabeled_data=["more"],
            max_steps=1,
            latency_batches=0,
        )
