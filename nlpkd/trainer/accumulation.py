"""Gradient accumulation that equals the large batch, for every loss term.

Each term is a mean over its own units: the soft-target term over examples, the hard-label term over labeled
examples, the hidden-state, attention (KL) and relation terms over real tokens, the attention MSE terms over
real (query, key) pairs. With micro-batches of different sizes (padded text, unlabeled rows), the mean of the
micro-batch means is not the mean over the accumulated batch. So the trainer counts every unit over all
micro-batches of an optimizer step (and over processes), once, when it fetches them ([`step_counts`]), and
scales each micro-batch's term by its share of those units ([`accumulation_scales`]): summed over the step,
the terms are then the accumulated batch's means, exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .token_level import term_scales, token_loss_scale

__all__ = ["accumulation_scales", "count_units", "loss_scales", "step_counts", "term_units"]


def term_units(args: Any) -> dict[str, str]:
    """The unit each loss component averages over, as the functions of `nlpkd.losses` compute it.

    Args:
        args ([`DistillationConfig`]): the term variants (`hidden_loss`, `attn_loss`).
    """
    return {
        "kd": "examples",
        "ce": "labeled",
        # PKD compares one [CLS] vector per example; the others every real token.
        "hidden": "examples" if args.hidden_loss == "pkd" else "tokens",
        # KL is a mean over real queries; the MSE terms over real (query, key) pairs.
        "attn": "tokens" if args.attn_loss == "kl" else "pairs",
        "relation": "tokens",
    }


def count_units(batch: Mapping[str, Any]) -> dict[str, Tensor]:
    """The units of one micro-batch: examples, labeled examples, real tokens and real (query, key) pairs.

    Args:
        batch (`Mapping`): a collated batch (`attention_mask` and `labels` are read when present).
    """
    tensors = [v for v in batch.values() if isinstance(v, Tensor) and v.dim() > 0]
    if not tensors:
        return {}
    counts = {"examples": torch.tensor(tensors[0].shape[0])}
    labels = batch.get("labels")
    if isinstance(labels, Tensor) and labels.dim() == 1:
        labeled = labels.ne(-100) if not labels.is_floating_point() else torch.ones_like(labels)
        counts["labeled"] = labeled.sum()
    mask = batch.get("attention_mask")
    if isinstance(mask, Tensor) and mask.dim() == 2:
        lengths = mask.ne(0).sum(dim=-1)
        counts.update(tokens=lengths.sum(), pairs=(lengths * lengths).sum())
    return counts


def step_counts(
    batches: Sequence[Mapping[str, Any]], accelerator: Any, gather: bool
) -> dict[str, Tensor] | None:
    """Every unit counted over the micro-batches of one optimizer step, summed over processes when `gather`.

    Args:
        batches (`Sequence[Mapping]`): the micro-batches the Trainer fetched for the step.
        accelerator (`accelerate.Accelerator`): the trainer's, to gather the counts.
        gather (`bool`): sum over processes (`average_tokens_across_devices` with several processes).

    Returns:
        `dict[str, Tensor]` or `None` when the batches are not dicts of tensors.
    """
    per_batch = [count_units(batch) for batch in batches if isinstance(batch, Mapping)]
    if not per_batch or not per_batch[0]:
        return None
    units = set.intersection(*(set(counts) for counts in per_batch))
    totals = torch.stack(
        [torch.stack([counts[unit] for counts in per_batch]).sum() for unit in sorted(units)]
    ).to(accelerator.device)
    if gather and accelerator.num_processes > 1:
        totals = accelerator.gather(totals[None]).sum(dim=0)
    return dict(zip(sorted(units), totals, strict=True))


def accumulation_scales(
    args: Any,
    batch: Mapping[str, Any],
    totals: Mapping[str, Tensor] | None,
    *,
    accumulation_steps: int,
    num_processes: int,
    loss_divided_by_steps: bool,
    skip: Sequence[str] = (),
) -> dict[str, Tensor]:
    """Per loss component, the factor that turns this micro-batch's mean into its share of the step's mean.

    Args:
        args ([`DistillationConfig`]): the term variants and `average_tokens_across_devices`.
        batch (`Mapping`): this micro-batch.
        totals (`dict`, *optional*): [`step_counts`] of the step; without them every term keeps its own mean.
        accumulation_steps (`int`): micro-batches in the step.
        num_processes (`int`): data-parallel processes (their gradients are averaged).
        loss_divided_by_steps (`bool`): whether the Trainer divides the loss by `accumulation_steps` after
            `compute_loss` (it does unless the loss is declared already scaled for accumulation).
        skip (`Sequence[str]`): components scaled elsewhere (the token-level terms of causal LMs).
    """
    if not totals:
        return {}
    local = count_units(batch)
    factor = accumulation_steps if loss_divided_by_steps else 1
    scales = {}
    for name, unit in term_units(args).items():
        if name in skip or unit not in local or unit not in totals:
            continue
        share = token_loss_scale(
            totals[unit],
            local[unit].to(totals[unit].device),
            num_processes=num_processes,
            average_tokens_across_devices=args.average_tokens_across_devices,
            # The counts are ours, never divided by DataParallel's GPUs as the Trainer's are.
            n_gpu=1,
        )
        scales[name] = share * factor
    return scales


def loss_scales(
    trainer: Any,
    inputs: Mapping[str, Any],
    targets: Tensor | None,
    num_items_in_batch: Tensor | int | None,
    *,
    training: bool,
) -> dict[str, Tensor | float]:
    """The factor of each loss component in a training step of a [`DistillationTrainer`] (none in evaluation,
    where every term is the batch's mean): causal LMs' token terms by the Trainer's `num_items_in_batch`
    ([`term_scales`]), every other term by its share of the step's units ([`accumulation_scales`]).

    Args:
        trainer ([`DistillationTrainer`]): reads its `args`, `token_level`, the step's counts and the
            accumulation steps and processes.
        inputs (`Mapping`): this micro-batch.
        targets (`Tensor`, *optional*): causal LMs' next-token targets.
        num_items_in_batch (`Tensor` or `int`, *optional*): the Trainer's count of the step's targets.
        training (`bool`): whether this is a training step.
    """
    if not training:
        return {}
    args, token_level = trainer.args, trainer.token_level
    steps = getattr(trainer, "current_gradient_accumulation_steps", 1)
    processes = trainer.accelerator.num_processes
    scales: dict[str, Tensor | float] = {}
    if token_level:
        scales = term_scales(targets, num_items_in_batch, steps, processes, args=args)
    shares = accumulation_scales(
        args,
        inputs,
        trainer.step_unit_counts,
        accumulation_steps=steps,
        num_processes=processes,
        loss_divided_by_steps=not token_level,
        skip=("kd", "ce") if token_level else (),
    )
    return {**scales, **shares}
