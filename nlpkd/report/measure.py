"""Measuring models as they are: parameters, size on disk and latency on fixed-shape batches."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import (
    PreTrainedModel,
    default_data_collator,
)
from transformers.utils import logging as hf_logging

from ..models.inputs import select_forward_inputs

__all__ = ["count_parameters", "latency_batches", "measure_latency", "size_on_disk_mb"]


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
    batches: Sequence[Mapping[str, Tensor]] | Mapping[str, Sequence[Mapping[str, Tensor]]],
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
        batches (`Sequence[Mapping[str, torch.Tensor]]` or `Mapping[str, Sequence]`):
            Tokenized input batches; each is moved to each model's device before timing. Models with
            different tokenizers take a mapping from each model's name to its own batches (the same
            texts through its own tokenizer, as many batches for every model).
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
    own = batches if isinstance(batches, Mapping) else dict.fromkeys(models, batches)
    if set(own) != set(models) or len({len(b) for b in own.values()}) != 1:
        raise ValueError(
            f"batches per model must name every model ({sorted(models)}, got {sorted(own)}) with as many "
            "batches each, so that every round times each model on the same texts."
        )
    count = len(next(iter(own.values())))
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
            for batch in own[name]
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
                for index in range(count):
                    for name in names:
                        models[name](**routed[name][index])
                        _synchronize(devices[name])
            for round_index in tqdm(range(repeats), desc="Measuring latency", disable=not progress):
                # Alternate the order each round so no model always runs right after the other.
                order = names if round_index % 2 == 0 else names[::-1]
                for index in range(count):
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


def batch_shape(batch: Mapping[str, Any]) -> list[int] | None:
    tensor = batch.get("input_ids")
    if not isinstance(tensor, Tensor) and isinstance(batch.get("pixel_values"), Tensor):
        # [batch, channels, height, width]: the whole shape says what was timed.
        return list(batch["pixel_values"].shape)
    if not isinstance(tensor, Tensor):
        tensor = next((value for value in batch.values() if isinstance(value, Tensor)), None)
    return list(tensor.shape[:2]) if tensor is not None else None


def describe_device(*models: torch.nn.Module) -> str:
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


def model_size_mb(model: torch.nn.Module) -> float:
    # An ensemble of teachers weighs what its teachers weigh together.
    teachers = getattr(model, "teachers", None)
    if teachers is not None and not isinstance(model, PreTrainedModel):
        return sum(size_on_disk_mb(teacher) for teacher in teachers)
    return size_on_disk_mb(model)
