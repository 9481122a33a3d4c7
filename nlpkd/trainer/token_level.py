"""Token-level distillation of causal language models: the next-token targets and the normalisation of the
terms over the completion tokens of the whole accumulated batch.

[`DistillationTrainer`][nlpkd.trainer.DistillationTrainer] switches to token level by itself when the student and
the teacher are causal language models (`*ForCausalLM`, `GPT2LMHeadModel`): the logit term compares the two
next-token distributions at every position whose target is a completion token (`labels != -100` after the
shift), and the hard-label term is next-token cross-entropy on the same tokens. Both are normalised over the
completion tokens of the whole accumulated batch, as `transformers` does for its own language-model loss: see
[`token_loss_scale`].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..config import LOSS_COMPONENTS
from ..data.completions import shift_labels
from ..models.causal import check_context_length

__all__ = ["next_token_targets", "term_scales", "token_loss_scale"]


def token_loss_scale(
    num_items_in_batch: Tensor | int | None,
    local_count: Tensor | int,
    *,
    accumulation_steps: int = 1,
    num_processes: int = 1,
    average_tokens_across_devices: bool = True,
    n_gpu: int = 1,
) -> Tensor | float:
    """The factor that turns one micro-batch's token mean into its share of the accumulated batch's token mean.

    Summed over the micro-batches of an optimizer step (and, after DDP averages the gradients, over processes),
    `mean_i * token_loss_scale(...)` is `(sum of the per-token losses) / (number of tokens)` of the whole step,
    so every completion token weighs the same however the tokens fall into micro-batches. The Trainer passes
    `num_items_in_batch`: the targets of all micro-batches of the step (`shift_labels != -100`), gathered over
    processes when `average_tokens_across_devices` and more than one process run. Then the factor is
    `local_count / num_items_in_batch`, times the number of processes because DDP averages their gradients
    (the same rule as `Trainer.compute_loss`). Without `num_items_in_batch` (evaluation, or a batch the Trainer
    could not count) each micro-batch keeps its own mean, divided by `accumulation_steps`.

    Args:
        num_items_in_batch (`torch.Tensor` or `int`, *optional*): the Trainer's count of the step's targets.
        local_count (`torch.Tensor` or `int`): the targets in this micro-batch.
        accumulation_steps (`int`, *optional*, defaults to `1`): micro-batches in this step (training only).
        num_processes (`int`, *optional*, defaults to `1`): data-parallel processes.
        average_tokens_across_devices (`bool`, *optional*, defaults to `True`): the `TrainingArguments` flag.
        n_gpu (`int`, *optional*, defaults to `1`): GPUs of one process (`torch.nn.DataParallel`).
    """
    if num_items_in_batch is None:
        return 1.0 / max(accumulation_steps, 1)
    # On the device of the loss it scales (the count may come on another one).
    device = local_count.device if isinstance(local_count, Tensor) else None
    total = torch.as_tensor(num_items_in_batch, dtype=torch.float32, device=device)
    if total.dim() > 0:
        # DataParallel hands every replica the same count.
        total = total.reshape(-1)[0]
    scale = 1.0
    if average_tokens_across_devices and num_processes > 1:
        scale = float(num_processes)
    elif not average_tokens_across_devices and n_gpu > 1:
        # The Trainer divided the count by the GPUs; our loss is computed once on the gathered outputs.
        total = total * n_gpu
    local = torch.as_tensor(local_count, dtype=torch.float32, device=device)
    return local * scale / total.clamp_min(1.0)


def next_token_targets(inputs: Mapping[str, Any], *models: nn.Module) -> Tensor | None:
    """A batch's next-token targets aligned with the logits (its `shift_labels`, else [`shift_labels`] of its
    `labels`; `None` without labels), after checking that the batch fits every model's context.

    Args:
        inputs (`Mapping[str, Any]`): the collated batch.
        *models (`torch.nn.Module`): the models that will read it (the student and the teacher).
    """
    labels = inputs.get("labels")
    if labels is None:
        return None
    for role, model in zip(("student", "teacher"), models, strict=False):
        check_context_length(model, labels.shape[-1], role)
    shifted = inputs.get("shift_labels")
    return shifted if shifted is not None else shift_labels(labels)


def term_scales(
    targets: Tensor | None,
    num_items_in_batch: Tensor | int | None,
    accumulation_steps: int,
    num_processes: int,
    *,
    args: Any,
    training: bool = True,
) -> dict[str, Tensor | float]:
    """Per loss component, the factor that makes the micro-batch losses of a causal LM's optimizer step add up to
    the accumulated batch's loss: the token terms (`kd`, `ce`) by [`token_loss_scale`], the per-batch terms
    (`hidden`, `attn`, `relation`) by `1 / accumulation_steps`. Outside training every factor is 1 (means of the
    batch).

    Args:
        targets (`torch.Tensor`, *optional*): the micro-batch's next-token targets (`-100` where none).
        num_items_in_batch (`torch.Tensor` or `int`, *optional*): the Trainer's count of the step's targets.
        accumulation_steps (`int`): micro-batches in this optimizer step.
        num_processes (`int`): data-parallel processes.
        args (`TrainingArguments`): reads `average_tokens_across_devices` and `n_gpu`.
        training (`bool`, *optional*, defaults to `True`): whether this is a training step.
    """
    if not training:
        num_items_in_batch, accumulation_steps = None, 1
    scales: dict[str, Tensor | float] = {
        name: 1.0 / max(accumulation_steps, 1) for name in LOSS_COMPONENTS
    }
    if targets is not None:
        token_scale = token_loss_scale(
            num_items_in_batch,
            (targets != -100).sum(),
            accumulation_steps=accumulation_steps,
            num_processes=num_processes,
            average_tokens_across_devices=args.average_tokens_across_devices,
            n_gpu=args.n_gpu,
        )
        scales.update(kd=token_scale, ce=token_scale)
    return scales
