"""Deployed variants side by side: one predict function per form, and their latency measured in the same
interleaved rounds.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..models.inputs import forward_input_names
from .folders import weights_size_mb
from .int8 import is_int8_model
from .onnx import load_onnx

__all__ = ["DeployedVariant", "onnx_variant", "predict_batches", "time_variants", "torch_variant"]


@dataclass
class DeployedVariant:
    """
    One deployed form of a model, measured like every other.

    Args:
        name (`str`): e.g. `"student-onnx-int8"`.
        predict (`Callable[[Mapping[str, Tensor]], Tensor]`): a tokenized batch in, float logits
            out (on the CPU); labels and inputs the form does not take are ignored.
        params (`int`): parameters of the float model it was made from (quantization keeps the
            count; pruning lowers it).
        size_mb (`float`): size of its weight files on disk ([`weights_size_mb`]).
        path (`Path`, *optional*): the folder it loads from.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): the tokenizer its batches must come
            from. A pruned form has its own: tokenize the same texts with it, at the same shape.
    """

    name: str
    predict: Callable[[Mapping[str, Tensor]], Tensor]
    params: int
    size_mb: float
    path: Path | None = None
    tokenizer: Any | None = None


def _torch_predict(model: nn.Module) -> Callable[[Mapping[str, Tensor]], Tensor]:
    accepted = forward_input_names(model)
    device = next(model.parameters(), torch.empty(0)).device
    model.eval()

    def predict(batch: Mapping[str, Tensor]) -> Tensor:
        inputs = {
            key: value.to(device)
            for key, value in batch.items()
            if key != "labels" and (accepted is None or key in accepted)
        }
        with torch.inference_mode():
            return model(**inputs).logits.float().cpu()

    return predict


def torch_variant(
    name: str,
    model: nn.Module,
    folder: str | os.PathLike[str] | None = None,
    params: int | None = None,
    tokenizer: Any | None = None,
    size_mb: float | None = None,
) -> DeployedVariant:
    """
    A [`DeployedVariant`] for a PyTorch model (float or from [`load_quantized`]).

    Args:
        name (`str`): the variant's name.
        model (`torch.nn.Module`): the model; put in eval mode.
        folder (`str` or `os.PathLike`, *optional*): where it is saved; its weight files give
            `size_mb`.
        params (`int`, *optional*): parameter count; defaults to the model's own, which is right
            for a float model (pass the float model's count for a quantized one).
        tokenizer (`PreTrainedTokenizerBase`, *optional*): its tokenizer.
        size_mb (`float`, *optional*): its size on disk, for a model that is not in a folder
            (e.g. measured by `nlpkd.report.size_on_disk_mb`); one of `folder` and `size_mb`
            is needed.
    """
    if params is None:
        if is_int8_model(model):
            raise ValueError(f"{name}: pass params= (the float model's count) for an int8 model.")
        params = sum(p.numel() for p in model.parameters())
    if folder is None and size_mb is None:
        raise ValueError(f"{name}: pass the folder the model is saved in, or its size_mb.")
    size = weights_size_mb(folder) if folder is not None else float(size_mb)
    path = Path(folder) if folder is not None else None
    return DeployedVariant(name, _torch_predict(model), params, size, path, tokenizer)


def onnx_variant(
    name: str,
    folder: str | os.PathLike[str],
    params: int,
    threads: int | None = None,
    tokenizer: Any | None = None,
) -> DeployedVariant:
    """
    A [`DeployedVariant`] for a folder from [`export_onnx`], run by ONNX Runtime.

    Args:
        name (`str`): the variant's name.
        folder (`str` or `os.PathLike`): the export folder.
        params (`int`): the parameter count of the float model that was exported.
        threads (`int`, *optional*): intra-op threads; defaults to `torch.get_num_threads()`.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): its tokenizer.
    """
    classifier = load_onnx(folder, threads=threads)
    size = weights_size_mb(folder)
    return DeployedVariant(name, classifier, params, size, Path(folder), tokenizer)


def predict_batches(variant: DeployedVariant, batches: Iterable[Mapping[str, Tensor]]) -> Tensor:
    """
    Logits of a variant over several batches, concatenated: `[examples, labels]`.

    Args:
        variant ([`DeployedVariant`]): the form to run.
        batches (`Iterable[Mapping[str, Tensor]]`): tokenized batches, e.g. from
            `nlpkd.report.latency_batches`.
    """
    return torch.cat([variant.predict(batch) for batch in batches])


def time_variants(
    variants: Sequence[DeployedVariant],
    batches: Sequence[Mapping[str, Tensor]] | Mapping[str, Sequence[Mapping[str, Tensor]]],
    *,
    warmup: int = 2,
    repeats: int = 5,
) -> dict[str, float]:
    """
    Median latency of each variant on the same batches, in milliseconds per batch.

    The rule of [`nlpkd.report.measure_latency`], for forms that are not torch modules: `warmup`
    untimed passes over all batches, then `repeats` rounds in which every variant runs every
    batch in turn (the order reversed each round) so that machine noise hits all alike. Threads
    are left as they are (`torch.get_num_threads()`; ONNX sessions from [`load_onnx`] use as many).

    Args:
        variants (`Sequence[DeployedVariant]`): the forms to time; names must differ.
        batches (`Sequence[Mapping[str, Tensor]]` or `Mapping[str, Sequence[...]]`): tokenized
            batches that every variant gets, or per variant name its own tokenization of the same
            texts at the same shape (a pruned vocabulary numbers tokens differently).
        warmup (`int`, *optional*, defaults to `2`): untimed passes first.
        repeats (`int`, *optional*, defaults to `5`): timed rounds.

    Returns:
        `dict[str, float]`: the median over rounds and batches of one call's wall-clock time.
    """
    names = [variant.name for variant in variants]
    if not variants:
        raise ValueError("time_variants needs at least one variant.")
    if len(set(names)) != len(names):
        raise ValueError(f"Variant names must differ: {names}.")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"Need warmup >= 0 and repeats >= 1, got {warmup} and {repeats}.")
    if isinstance(batches, Mapping):
        missing = [name for name in names if name not in batches]
        if missing:
            raise ValueError(f"No batches for the variants {missing}.")
        own = {name: list(batches[name]) for name in names}
    else:
        own = {name: list(batches) for name in names}
    counts = {len(value) for value in own.values()}
    if counts != {next(iter(counts))} or 0 in counts:
        raise ValueError(f"Every variant needs the same, non-zero number of batches: {counts}.")
    count = counts.pop()
    for _ in range(warmup):
        for index in range(count):
            for variant in variants:
                variant.predict(own[variant.name][index])
    timings: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for index in range(count):
            for variant in order:
                batch = own[variant.name][index]
                start = time.perf_counter()
                variant.predict(batch)
                timings[variant.name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(values) for name, values in timings.items()}
