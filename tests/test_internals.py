"""Other libraries' private names that nlpkd still relies on, each where no public API does the job
(docs/architecture.md lists them and why). Each test fails loudly when the library changes the internal."""

from __future__ import annotations

import importlib.util

import datasets
import torch
from conftest import tiny_bert
from transformers import Trainer, TrainingArguments

from nlpkd.data.fingerprint import dataset_fingerprint


def test_the_trainer_keeps_the_columns_named_in_signature_columns(tmp_path):
    # DistillationTrainer sets Trainer._signature_columns so that the teacher's inputs and the cached logits
    # survive remove_unused_columns; the Trainer must still read it when it builds its data loader.
    data = datasets.Dataset.from_dict(
        {
            "input_ids": [[1, 2, 3]] * 4,
            "label": [0, 1, 0, 1],
            "teacher_only": [[7]] * 4,
            "text": ["a"] * 4,
        }
    )
    args = TrainingArguments(str(tmp_path), per_device_train_batch_size=2, report_to="none")
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=data)
    trainer._signature_columns = ["input_ids", "label", "labels", "teacher_only"]
    batch = next(iter(trainer.get_train_dataloader()))
    assert set(batch) == {"input_ids", "labels", "teacher_only"}


def test_the_trainer_prepares_inputs_in_prediction_step():
    # DistillationTrainer.prediction_step calls _prepare_inputs, as Trainer.prediction_step itself does.
    assert "self._prepare_inputs(inputs)" in importlib.util.find_spec(
        "transformers.trainer"
    ).loader.get_source("transformers.trainer")
    assert callable(Trainer._prepare_inputs)


def test_the_config_records_the_attention_implementation():
    # The attention term switches models to eager attention only when config._attn_implementation says
    # otherwise, and its error message quotes it.
    model = tiny_bert()
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == "sdpa"


def test_the_dataset_fingerprint_changes_with_the_content():
    # The teacher-logit cache and augmentation key their files on it.
    data = datasets.Dataset.from_dict({"x": [1, 2, 3]})
    before = dataset_fingerprint(data)
    after = dataset_fingerprint(data.map(lambda row: {"x": row["x"] + 1}))
    assert before and after and before != after
    assert dataset_fingerprint(datasets.Dataset.from_dict({"x": [1, 2, 3]})) == before


def test_the_onnx_exporter_logger_still_exists():
    # export_onnx quiets this logger of torch's exporter (its registration warnings have no public switch).
    assert importlib.util.find_spec("torch.onnx._internal.exporter._registration") is not None
    assert torch.__version__
