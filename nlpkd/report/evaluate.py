"""Evaluating models: task metrics on evaluation splits (perplexity for causal LMs), and the [`Report`] of a
teacher and its student measured side by side.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

from ..config import plain_training_arguments
from ..data.completions import CompletionCollator, shift_labels
from ..data.tasks import TaskSpec
from ..models.causal import check_context_length, is_causal_lm
from ..models.inputs import select_forward_inputs
from .measure import batch_shape, count_parameters, describe_device, measure_latency, model_size_mb
from .metrics import make_compute_metrics
from .report import Report, Variant

__all__ = [
    "build_report",
    "changed_predictions",
    "evaluate_model",
    "evaluate_predict",
    "perplexity",
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

    The metrics are the task's (computed locally, see [`~nlpkd.report.make_compute_metrics`]) or those a
    user's `compute_metrics` returns (every number it gives). Only evaluation runs here: the run's
    evaluation, saving and Hub settings are switched off for this plain `Trainer`. A causal language model
    gets its `perplexity` and `loss` on the completion tokens instead ([`~nlpkd.report.perplexity`]).

    Args:
        model (`PreTrainedModel`): teacher or student.
        splits (`dict[str, datasets.Dataset]`): tokenized evaluation splits.
        tokenizer: pads the batches (may be `None` when `data_collator` is given, e.g. for images).
        args (`TrainingArguments`): evaluation batch size and precision.
        task ([`~nlpkd.data.TaskSpec`], *optional*): decides the metrics when `compute_metrics` is not given.
        compute_metrics (`Callable`, *optional*): a Trainer `compute_metrics` function.
        data_collator (`Callable`, *optional*): builds the batches; defaults to padding with `tokenizer` (a
            [`~nlpkd.data.completions.CompletionCollator`] for causal LMs), or stacking the columns without a tokenizer.
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


def build_report(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    teacher_metrics: Mapping[str, Mapping[str, float]],
    student_metrics: Mapping[str, Mapping[str, float]],
    *,
    main_metric: str,
    main_split: str,
    latency_batches: Sequence[Mapping[str, Tensor]] | Mapping[str, Sequence] | None = None,
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
            ([`latency_batches`]), or `{"teacher": ..., "student": ...}` when each reads its own tokenization of
            the same texts; latency is left out when not given.
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
        timed = (
            latency_batches["student"] if isinstance(latency_batches, Mapping) else latency_batches
        )
        fields.update(latency_batch_shape=batch_shape(timed[0]), latency_num_batches=len(timed))
    variants = [
        Variant(
            name=name,
            metrics=_clean_metrics(metrics, name),
            params=count_parameters(model),
            size_mb=model_size_mb(model),
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
        device=describe_device(teacher, student),
        torch_threads=torch.get_num_threads(),
        **fields,
    )


def perplexity(
    model: nn.Module,
    dataset: datasets.Dataset,
    data_collator: Callable[[list[Any]], Mapping[str, Tensor]],
    batch_size: int = 16,
) -> dict[str, float]:
    """Perplexity of a causal language model on the target tokens of a dataset (the completion: `labels` not
    `-100`, after the shift), exact over the whole dataset: `exp(sum of the token losses / number of tokens)`.

    Args:
        model (`torch.nn.Module`): the language model.
        dataset (`datasets.Dataset`): tokenized rows ([`tokenize_completions`]).
        data_collator (`Callable`): pads a list of rows ([`CompletionCollator`]).
        batch_size (`int`, *optional*, defaults to `16`): rows per forward pass.

    Returns:
        `dict[str, float]`: `perplexity` and `loss` (the mean token cross-entropy, in nats).
    """
    if len(dataset) == 0:
        raise ValueError("perplexity needs at least one row; the dataset is empty.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.inference_mode():
            for start in range(0, len(dataset), batch_size):
                batch = data_collator(
                    [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
                )
                targets = shift_labels(batch["labels"]).to(device)
                check_context_length(model, targets.shape[-1])
                inputs = {k: v.to(device) for k, v in select_forward_inputs(model, batch).items()}
                logits = model(**inputs).logits.float()
                total += float(
                    F.cross_entropy(
                        logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum"
                    )
                )
                count += int((targets != -100).sum())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError(
            "The dataset has no target token (every label is -100): nothing to measure."
        )
    loss = total / count
    return {"perplexity": math.exp(loss), "loss": loss}
