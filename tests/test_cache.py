"""Teacher-output cache: same student as the live teacher, reused only while teacher and data are unchanged."""

from __future__ import annotations

import pytest
import torch
from conftest import random_dataset, tiny_bert
from transformers import DataCollatorWithPadding

from nlpkd import DistillationConfig, DistillationTrainer, create_student
from nlpkd.data.fingerprint import teacher_fingerprint
from nlpkd.models import CACHE_COLUMN
from nlpkd.trainer import add_teacher_logits


def config(tmp_path, name, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path / name),
        per_device_train_batch_size=4,
        max_steps=6,
        # Plain SGD: Adam divides each gradient by its own size, so float noise in a gradient that is
        # zero in exact arithmetic (the cached logits come from other padded batches) would become a
        # full-size step; with SGD a difference in the logits moves the weights in proportion.
        optim="sgd",
        learning_rate=0.5,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
        teacher_cache_dir=str(tmp_path / "cache"),
    )
    kwargs.update(overrides)
    return DistillationConfig(**kwargs)


class ForwardCounter:
    def __init__(self, model):
        self.calls = 0
        model.register_forward_hook(self)

    def __call__(self, *args):
        self.calls += 1


def train(tmp_path, name, tokenizer, teacher_cache, data=None):
    teacher = tiny_bert(seed=1)
    counter = ForwardCounter(teacher)
    student = create_student(teacher, num_layers=2)
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=config(tmp_path, name, teacher_cache=teacher_cache),
        train_dataset=data if data is not None else random_dataset(12, 8, vary_length=True),
        processing_class=tokenizer,
    )
    calls_before_training = counter.calls
    trainer.train()
    return trainer, calls_before_training, counter.calls - calls_before_training


def test_cached_run_reaches_the_same_student_without_teacher_forwards(tmp_path, tiny_tokenizer):
    live, _, live_calls = train(tmp_path, "live", tiny_tokenizer, teacher_cache=False)
    cached, precompute_calls, cached_calls = train(
        tmp_path, "cached", tiny_tokenizer, teacher_cache=True
    )
    assert live_calls == 6  # one teacher forward per step
    assert cached_calls == 0  # the cache replaced every one of them
    assert precompute_calls >= 1
    start = create_student(tiny_bert(seed=1), num_layers=2).state_dict()
    moved = max((live.model.state_dict()[n] - w).abs().max().item() for n, w in start.items())
    assert moved > 1e-3  # training moved the weights far more than the tolerance below
    for (name, a), b in zip(
        live.model.state_dict().items(), cached.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    kd_live = [log["kd"] for log in live.state.log_history if "kd" in log]
    kd_cached = [log["kd"] for log in cached.state.log_history if "kd" in log]
    assert kd_cached == pytest.approx(kd_live, rel=1e-5)


def test_cached_logits_equal_live_logits_per_example(tmp_path, tiny_tokenizer):
    teacher = tiny_bert(seed=1)
    data = random_dataset(10, 8, vary_length=True)
    out = add_teacher_logits(
        data,
        teacher,
        DataCollatorWithPadding(tiny_tokenizer),
        ["input_ids", "attention_mask", "token_type_ids"],
        batch_size=4,
        cache_dir=str(tmp_path),
    )
    shuffled = out.shuffle(seed=3)  # each row carries its own logits, whatever the order
    for row in shuffled.select(range(4)):
        with torch.no_grad():
            expected = teacher(
                input_ids=torch.tensor([row["input_ids"]]),
                token_type_ids=torch.tensor([row["token_type_ids"]]),
            ).logits[0]
        torch.testing.assert_close(torch.tensor(row[CACHE_COLUMN]), expected, rtol=1e-5, atol=1e-6)


def test_cache_is_reused_only_for_the_same_teacher_and_data(tmp_path, tiny_tokenizer):
    collate = DataCollatorWithPadding(tiny_tokenizer)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    data = random_dataset(8, 8)

    def run(teacher, dataset):
        counter = ForwardCounter(teacher)
        add_teacher_logits(dataset, teacher, collate, names, batch_size=4, cache_dir=str(tmp_path))
        return counter.calls

    assert run(tiny_bert(seed=1), data) == 2
    assert run(tiny_bert(seed=1), data) == 0  # same weights, same data: read from disk
    changed = tiny_bert(seed=1)
    with torch.no_grad():
        changed.classifier.bias[0] += 1e-3
    assert teacher_fingerprint(changed) != teacher_fingerprint(tiny_bert(seed=1))
    assert run(changed, data) == 2  # another teacher: recomputed
    assert run(tiny_bert(seed=1), random_dataset(8, 8, seed=9)) == 2  # other data: recomputed
    assert len(list(tmp_path.glob("teacher-logits-*.arrow"))) == 3


def test_cache_with_intermediate_losses_is_refused(tmp_path):
    with pytest.raises(ValueError, match="teacher_cache stores the teacher's logits only"):
        DistillationConfig(output_dir=str(tmp_path), teacher_cache=True, alpha_hidden=1.0)


def test_a_second_run_in_another_output_dir_reuses_the_cache(tmp_path, tiny_tokenizer, monkeypatch):
    """Issue 19, item 6: without teacher_cache_dir the cache lives in the Hugging Face datasets cache, keyed by
    the teacher's and the data's fingerprints, so a run in another output directory computes no logits."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    calls = []
    for name in ("first", "second"):
        teacher = tiny_bert(seed=1)
        counter = ForwardCounter(teacher)
        args = config(tmp_path, name, teacher_cache=True, teacher_cache_dir=None)
        DistillationTrainer(
            model=create_student(teacher, num_layers=2),
            teacher=teacher,
            args=args,
            train_dataset=random_dataset(12, 8, vary_length=True),
            processing_class=tiny_tokenizer,
        )
        calls.append(counter.calls)  # the teacher forwards that filled the cache
    assert calls[0] > 0 and calls[1] == 0
    cached = list(
        (tmp_path / "hf-datasets" / "nlpkd_teacher_logits").glob("teacher-logits-*.arrow")
    )
    assert len(cached) == 1
    assert not (tmp_path / "first" / "teacher_cache").exists()
