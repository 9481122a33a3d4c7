"""Measuring models: task metrics on evaluation splits, parameters, size on disk and latency, into a [`Report`].

Everything here measures models as they are; nothing trains.
"""

from __future__ import annotations

import math
import numbers
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import (
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
    default_data_collator,
)
from transformers.utils import logging as hf_logging

from .causal import CompletionCollator, is_causal_lm, perplexity
from .config import plain_training_arguments
from .data.tasks import TaskSpec
from .metrics import make_compute_metrics
from .report import Report, Variant
from .student import select_forward_inputs

__all__ = [
    "build_report",
    "changed_predictions",
    "count_parameters",
    "evaluate_model",
    "evaluate_predict",
    "latency_batches",
    "measure_latency",
    "size_on_disk_mb",
]

# Keys of `Trainer.evaluate` that are bookkeeping, not metrics.
_EVAL_BOOKKEEPING = (
    "loss",
    "runtime",
    "samples_per_second",
    "steps_per_second",
    "model_preparation_time",
    "epoch",
)


def count_parameters(model: torch.nn.Module) -> int:
    """
    Count the parameters of a model.

    Tied parameters (e.g. input embeddings shared with an output layer) are counted once, which is
    what `torch.nn.Module.parameters` yields.

    Args:
        model (`torch.nn.Module`):
            The model to count.

    Returns:
        `int`: the number of scalar parameters, trainable or not.
    """
    return sum(parameter.numel() for parameter in model.parameters())


def size_on_disk_mb(model: PreTrainedModel) -> float:
    """
    Size of a model's weights once saved with `save_pretrained`, in megabytes (1 MB = 1e6 bytes).

    The model is saved as safetensors (the only format transformers 5.x writes) to a temporary
    directory that is removed afterwards; only the weight files are counted, not `config.json`.

    Args:
        model (`transformers.PreTrainedModel`):
            The model to measure.

    Returns:
        `float`: the total size of the `*.safetensors` files in MB.
    """
    if not isinstance(model, PreTrainedModel):
        raise ValueError(
            f"size_on_disk_mb needs a transformers PreTrainedModel (it calls save_pretrained), "
            f"got {type(model).__name__}. Pass the Hugging Face model itself, not a wrapper."
        )
    # A progress bar per measurement would clutter the report output; restore the user's choice.
    bars_were_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory(prefix="nlpkd-size-") as tmp:
            model.save_pretrained(tmp)
            weight_files = list(Path(tmp).glob("*.safetensors"))
            if not weight_files:
                raise ValueError(
                    f"save_pretrained wrote no *.safetensors file for {type(model).__name__}; "
                    "cannot measure its size on disk."
                )
            return sum(path.stat().st_size for path in weight_files) / 1e6
    finally:
        if bars_were_enabled:
            hf_logging.enable_progress_bar()


def _model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _synchronize(device: torch.device) -> None:
    # CUDA kernels run asynchronously: without a sync the timer would stop before the work ends.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    models: Mapping[str, torch.nn.Module],
    batches: Sequence[Mapping[str, Tensor]],
    warmup: int = 2,
    repeats: int = 5,
    progress: bool = True,
) -> dict[str, float]:
    """
    Median forward latency of several models on the same batches, in milliseconds per batch.

    Every model runs in eval mode under `torch.inference_mode()`. Each batch is routed per model:
    only the keys that the model's `forward` names are passed (so a DistilBERT student does not get
    the teacher's `token_type_ids`), and `labels` are dropped because serving does not compute a
    loss. After `warmup` untimed passes, each of the `repeats` rounds times every model on every
    batch, interleaved (teacher, student, teacher, student, ...) so that machine noise hits all
    models alike. Training mode is restored afterwards.

    Args:
        models (`Mapping[str, torch.nn.Module]`):
            Models to time, by the name used in the result (e.g. `{"teacher": t, "student": s}`).
        batches (`Sequence[Mapping[str, torch.Tensor]]`):
            Tokenized input batches; each is moved to each model's device before timing.
        warmup (`int`, *optional*, defaults to `2`):
            Untimed passes over all batches first, so lazy initialisation and caches do not count.
        repeats (`int`, *optional*, defaults to `5`):
            Timed rounds over all batches.
        progress (`bool`, *optional*, defaults to `True`):
            Show a progress bar over the timed rounds.

    Returns:
        `dict[str, float]`: for each model name, the median over all rounds and batches of the
        wall-clock milliseconds one forward pass took (`time.perf_counter`).
    """
    if not models:
        raise ValueError("measure_latency needs at least one model, e.g. {'student': model}.")
    if not batches:
        raise ValueError("measure_latency needs at least one input batch; got an empty sequence.")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}.")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1 to time anything, got {repeats}.")

    devices = {name: _model_device(model) for name, model in models.items()}
    # Route and move the inputs once, so that copying is not part of the timed forward.
    routed = {
        name: [
            {
                key: value.to(devices[name]) if isinstance(value, Tensor) else value
                for key, value in select_forward_inputs(model, batch).items()
                if key != "labels"
            }
            for batch in batches
        ]
        for name, model in models.items()
    }
    was_training = {name: model.training for name, model in models.items()}
    timings: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    try:
        for model in models.values():
            model.eval()
        with torch.inference_mode():
            for _ in range(warmup):
                for index in range(len(batches)):
                    for name in names:
                        models[name](**routed[name][index])
                        _synchronize(devices[name])
            for round_index in tqdm(range(repeats), desc="Measuring latency", disable=not progress):
                # Alternate the order each round so no model always runs right after the other.
                order = names if round_index % 2 == 0 else names[::-1]
                for index in range(len(batches)):
                    for name in order:
                        _synchronize(devices[name])
                        start = time.perf_counter()
                        models[name](**routed[name][index])
                        _synchronize(devices[name])
                        timings[name].append((time.perf_counter() - start) * 1000.0)
    finally:
        for name, model in models.items():
            model.train(was_training[name])
    return {name: statistics.median(values) for name, values in timings.items()}


def _clean_metrics(
    metrics: Mapping[str, Mapping[str, float]], which: str
) -> dict[str, dict[str, float | None]]:
    if not isinstance(metrics, Mapping):
        raise ValueError(
            f"{which}_metrics must map split name -> {{metric name -> value}}, "
            f"got {type(metrics).__name__}."
        )
    cleaned: dict[str, dict[str, float | None]] = {}
    for split, values in metrics.items():
        if not isinstance(values, Mapping):
            raise ValueError(
                f"{which}_metrics[{split!r}] must map metric name -> value, e.g. "
                f"{{'accuracy': 0.91}}, got {type(values).__name__}."
            )
        cleaned[str(split)] = {}
        for name, value in values.items():
            number = float(value)
            # NaN/inf are not valid JSON; None says "not measurable" to every reader.
            cleaned[str(split)][str(name)] = number if math.isfinite(number) else None
    return cleaned


def _batch_shape(batch: Mapping[str, Any]) -> list[int] | None:
    tensor = batch.get("input_ids")
    if not isinstance(tensor, Tensor) and isinstance(batch.get("pixel_values"), Tensor):
        # [batch, channels, height, width]: the whole shape says what was timed.
        return list(batch["pixel_values"].shape)
    if not isinstance(tensor, Tensor):
        tensor = next((value for value in batch.values() if isinstance(value, Tensor)), None)
    return list(tensor.shape[:2]) if tensor is not None else None


def _describe_device(*models: torch.nn.Module) -> str:
    devices = []
    for model in models:
        device = _model_device(model)
        text = str(device)
        if device.type == "cuda":
            text = f"{device} ({torch.cuda.get_device_name(device)})"
        if text not in devices:
            devices.append(text)
    return ", ".join(devices)


def latency_batches(
    dataset: datasets.Dataset,
    tokenizer: Any,
    batch_size: int,
    num_batches: int,
    max_length: int,
    data_collator: Callable[[list[Any]], Mapping[str, Tensor]] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Fixed-shape batches `[batch_size, max_length]` from real examples, for a fair latency comparison.

    Padding to `max_length` gives every model the same shape whatever the texts' lengths, so the figure
    is reproducible and reads as "latency at sequence length `max_length`". Without a tokenizer (images), or
    with a `data_collator`, the batches are the collated examples without their labels (`max_length` unused).
    """
    count = min(len(dataset), batch_size * num_batches)
    if count == 0:
        raise ValueError("No examples to measure latency on: the evaluation split is empty.")
    if tokenizer is None or data_collator is not None:
        collate = data_collator or default_data_collator
        labels = [c for c in ("label", "labels", "label_ids") if c in dataset.column_names]
        rows = dataset.select(range(count)).remove_columns(labels)
        return [
            dict(collate([rows[i] for i in range(start, min(start + batch_size, count))]))
            for start in range(0, count, batch_size)
        ]
    columns = [c for c in dataset.column_names if c in tokenizer.model_input_names]
    rows = dataset.select(range(count)).select_columns(columns)
    batches = []
    for start in range(0, count, batch_size):
        features = [rows[i] for i in range(start, min(start + batch_size, count))]
        batches.append(
            dict(
                tokenizer.pad(
                    features, padding="max_length", max_length=max_length, return_tensors="pt"
                )
            )
        )
    return batches


def evaluate_model(
    model: PreTrainedModel,
    splits: Mapping[str, datasets.Dataset],
    tokenizer: Any,
    args: TrainingArguments,
    task: TaskSpec | None = None,
    compute_metrics: Callable[..., dict[str, float]] | None = None,
    data_collator: Callable[[list[Any]], Mapping[str, Tensor]] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of `model` on each evaluation split: `{split: {metric: value}}`.

    The metrics are the task's (computed locally, see [`~nlpkd.metrics.make_compute_metrics`]) or those a
    user's `compute_metrics` returns (every number it gives). Only evaluation runs here: the run's
    evaluation, saving and Hub settings are switched off for this plain `Trainer`. A causal language model
    gets its `perplexity` and `loss` on the completion tokens instead ([`~nlpkd.causal.perplexity`]).

    Args:
        model (`PreTrainedModel`): teacher or student.
        splits (`dict[str, datasets.Dataset]`): tokenized evaluation splits.
        tokenizer: pads the batches (may be `None` when `data_collator` is given, e.g. for images).
        args (`TrainingArguments`): evaluation batch size and precision.
        task ([`~nlpkd.data.TaskSpec`], *optional*): decides the metrics when `compute_metrics` is not given.
        compute_metrics (`Callable`, *optional*): a Trainer `compute_metrics` function.
        data_collator (`Callable`, *optional*): builds the batches; defaults to padding with `tokenizer` (a
            [`~nlpkd.causal.CompletionCollator`] for causal LMs), or stacking the columns without a tokenizer.
    """
    if is_causal_lm(model):
        collate = data_collator or CompletionCollator(tokenizer)
        batch_size = args.per_device_eval_batch_size
        return {
            split: perplexity(model, data, collate, batch_size) for split, data in splits.items()
        }
    if compute_metrics is None and task is None:
        raise ValueError("evaluate_model needs a task or a compute_metrics function.")
    eval_args = plain_training_arguments(
        args,
        push_to_hub=False,
        report_to=[],
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        metric_for_best_model=None,
        # A model whose forward names no input (an ensemble of teachers) would lose every column; the
        # splits here are tokenized, so there is nothing to drop.
        remove_unused_columns=isinstance(model, PreTrainedModel),
    )
    trainer = Trainer(
        model=model,
        args=eval_args,
        processing_class=tokenizer,
        data_collator=data_collator
        or (DataCollatorWithPadding(tokenizer) if tokenizer is not None else default_data_collator),
        compute_metrics=compute_metrics or make_compute_metrics(task),
    )
    results = {}
    for split, dataset in splits.items():
        metrics = trainer.evaluate(eval_dataset=dataset, metric_key_prefix=split)
        prefix = f"{split}_"
        results[split] = {
            key[len(prefix) :]: float(value)
            for key, value in metrics.items()
            if key.startswith(prefix)
            and key[len(prefix) :] not in _EVAL_BOOKKEEPING
            and isinstance(value, numbers.Real)
        }
        if compute_metrics is not None and not results[split]:
            raise ValueError(
                "compute_metrics returned no numeric metric; it must return a dict such as "
                "{'accuracy': 0.9}."
            )
    return results


def evaluate_predict(
    predict: Callable[[Mapping[str, Tensor]], Tensor],
    dataset: datasets.Dataset,
    tokenizer: Any,
    batch_size: int,
    task: TaskSpec | None = None,
    compute_metrics: Callable[..., dict[str, float]] | None = None,
) -> tuple[dict[str, float], Tensor]:
    """Metrics of any `batch -> logits` function (a deployed form) on one tokenized split, and its logits.

    The batches are padded per batch like [`evaluate_model`]'s, and the metrics come from the same function
    (the task's, or `compute_metrics` on an `EvalPrediction`), so a form's figures compare with the teacher's
    and the student's.

    Args:
        predict (`Callable`): a tokenized batch in, float logits out (`nlpkd.deploy.DeployedVariant.predict`).
        dataset (`datasets.Dataset`): the split, tokenized by the form's own tokenizer, with `label`.
        tokenizer: that tokenizer (it pads).
        batch_size (`int`): examples per batch.
        task ([`~nlpkd.data.TaskSpec`], *optional*): decides the metrics when `compute_metrics` is not given.
        compute_metrics (`Callable`, *optional*): a Trainer `compute_metrics` function.

    Returns:
        `tuple[dict[str, float], Tensor]`: `{metric: value}` and the logits `[examples, labels]`.
    """
    if compute_metrics is None and task is None:
        raise ValueError("evaluate_predict needs a task or a compute_metrics function.")
    columns = [c for c in dataset.column_names if c in tokenizer.model_input_names]
    inputs = dataset.select_columns(columns)
    logits = []
    for start in range(0, len(dataset), batch_size):
        rows = inputs[start : start + batch_size]
        logits.append(predict(tokenizer.pad(rows, padding=True, return_tensors="pt")).float())
    stacked = torch.cat(logits)
    prediction = EvalPrediction(predictions=stacked.numpy(), label_ids=np.asarray(dataset["label"]))
    metrics = (compute_metrics or make_compute_metrics(task))(prediction)
    return {k: float(v) for k, v in metrics.items() if isinstance(v, numbers.Real)}, stacked


def changed_predictions(reference: Tensor, other: Tensor) -> int:
    """How many examples two models predict differently: another class, or (one output, regression) a value
    apart by more than float32 rounding of differently padded batches (1e-4, relative and absolute)."""
    if reference.shape != other.shape:
        raise ValueError(
            f"Logits of different shapes: {tuple(reference.shape)} and {tuple(other.shape)}."
        )
    if reference.shape[-1] == 1:
        return int((~torch.isclose(reference, other, rtol=1e-4, atol=1e-4)).sum())
    return int((reference.argmax(-1) != other.argmax(-1)).sum())


def _size_mb(model: torch.nn.Module) -> float:
    # An ensemble of teachers weighs what its teachers weigh together.
    teachers = getattr(model, "teachers", None)
    if teachers is not None and not isinstance(model, PreTrainedModel):
        return sum(size_on_disk_mb(teacher) for teacher in teachers)
    return size_on_disk_mb(model)


def build_report(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    teacher_metrics: Mapping[str, Mapping[str, float]],
    student_metrics: Mapping[str, Mapping[str, float]],
    *,
    main_metric: str,
    main_split: str,
    latency_batches: Sequence[Mapping[str, Tensor]] | None = None,
    warmup: int = 2,
    repeats: int = 5,
    progress: bool = True,
    **fields: Any,
) -> Report:
    """Measure teacher and student side by side (parameters, size on disk, latency on the same batches) into a
    [`Report`] with their metrics.

    Args:
        teacher (`PreTrainedModel`): the fine-tuned teacher.
        student (`PreTrainedModel`): the distilled student.
        teacher_metrics (`Mapping`): split -> metric -> value, e.g. from [`evaluate_model`].
        student_metrics (`Mapping`): the student's, in the same layout.
        main_metric (`str`): the metric of `retention`, e.g. `"accuracy"`.
        main_split (`str`): the split of `retention`, e.g. `"validation"`.
        latency_batches (`Sequence[Mapping[str, Tensor]]`, *optional*): batches to time both models on
            ([`latency_batches`]); latency is left out when not given.
        warmup (`int`, *optional*, defaults to `2`): untimed passes first, see [`measure_latency`].
        repeats (`int`, *optional*, defaults to `5`): timed rounds, see [`measure_latency`].
        progress (`bool`, *optional*, defaults to `True`): show a progress bar while timing.
        **fields: the other [`Report`] fields (`task`, `teacher_name`, `distillation`, ...).
    """
    latency: dict[str, float | None] = {"teacher": None, "student": None}
    if latency_batches is not None:
        latency.update(
            measure_latency(
                {"teacher": teacher, "student": student},
                latency_batches,
                warmup=warmup,
                repeats=repeats,
                progress=progress,
            )
        )
        fields.update(
            latency_batch_shape=_batch_shape(latency_batches[0]),
            latency_num_batches=len(latency_batches),
        )
    variants = [
        Variant(
            name=name,
            metrics=_clean_metrics(metrics, name),
            params=count_parameters(model),
            size_mb=_size_mb(model),
            latency_ms=latency[name],
        )
        for name, model, metrics in (
            ("teacher", teacher, teacher_metrics),
            ("student", student, student_metrics),
        )
    ]
    return Report(
        main_metric=main_metric,
        main_split=main_split,
        variants=variants,
        device=_describe_device(teacher, student),
        torch_threads=torch.get_num_threads(),
        **fields,
    )
