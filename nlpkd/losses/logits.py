"""Logit terms: the soft-target term between student and teacher logits (forward KL, reverse KL, symmetric KL,
generalised Jensen-Shannon, logit MSE) and the hard-label term, with the masked mean they share.

Every function here is pure: tensors in, a float32 scalar out; the teacher side is detached.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import KD_LOSSES

__all__ = ["hard_label_loss", "logit_distillation_loss", "masked_mean", "soft_kl_loss"]


def masked_mean(values: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of `values` over the positions where `mask` is non-zero.

    Args:
        values (`torch.Tensor`):
            Values to average, of any shape. Cast to float32.
        mask (`torch.Tensor`, *optional*, defaults to `None`):
            0/1 (or boolean) mask broadcastable to `values` with the usual right-aligned torch
            rules; 1 marks a position that counts. `None` counts every position.

    Returns:
        `torch.Tensor`: A float32 scalar. When the mask selects nothing the result is `0`, not NaN,
        because the denominator is clamped to at least one.
    """
    values = values.float()
    if mask is None:
        if values.numel() == 0:
            return values.new_zeros(())
        return values.mean()
    mask = mask.to(device=values.device, dtype=torch.float32)
    try:
        mask = mask.expand_as(values)
    except RuntimeError as err:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} cannot be broadcast to values of shape "
            f"{tuple(values.shape)}; unsqueeze the mask so its dimensions line up from the right."
        ) from err
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def _normalizer_value(normalizer: int | float | Tensor, device: torch.device) -> Tensor:
    if isinstance(normalizer, Tensor):
        if normalizer.dim() != 0:
            raise ValueError(
                f"normalizer must be a number or a 0-dim tensor, got a tensor of shape "
                f"{tuple(normalizer.shape)}; pass the total count of counted rows, e.g. "
                "num_items_in_batch.sum()."
            )
        if normalizer.is_complex():
            raise ValueError("normalizer must be a real count, got a complex tensor.")
        value = normalizer.detach().to(device=device, dtype=torch.float32)
    elif isinstance(normalizer, bool) or not isinstance(normalizer, numbers.Real):
        raise ValueError(
            f"normalizer must be an int, a float or a 0-dim tensor, got {type(normalizer).__name__}; "
            "pass the number of counted rows of the whole (accumulated) batch, or None."
        )
    else:
        value = torch.tensor(float(normalizer), device=device)
    # A count below one (an empty accumulated batch) must not blow the loss up.
    return value.clamp_min(1.0)


def logit_distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 2.0,
    loss_type: Literal["forward_kl", "reverse_kl", "symmetric_kl", "jsd", "mse"] = "forward_kl",
    beta: float = 0.5,
    mask: Tensor | None = None,
    normalizer: int | float | Tensor | None = None,
) -> Tensor:
    """Distillation term between student and teacher logits, one value per row.

    All leading dimensions of the logits are flattened into rows (examples, or tokens of a language
    model). With `p = softmax(z / T)`, the per-row value is:

    - `"forward_kl"`: `T**2 * KL(p_teacher || p_student)` (Hinton et al., 2015); the `T**2` factor
      keeps the gradient scale comparable across temperatures. Mass-covering: the student is pushed
      to put probability wherever the teacher does.
    - `"reverse_kl"`: `T**2 * KL(p_student || p_teacher)`. Mode-seeking: the student is pushed to
      avoid classes the teacher considers unlikely.
    - `"symmetric_kl"`: `T**2 * (KL(p_teacher || p_student) + KL(p_student || p_teacher)) / 2`, the
      mean of the two (Jeffreys' divergence halved). torchtune's `SymmetricKLLoss` (with its default
      `sym_kd_ratio=0.5`, at `T = 1`) has the same gradient; its value is larger by half the teacher's
      entropy, because its forward term is the cross-entropy `-sum p_teacher log p_student`. Here
      the term is a divergence: 0 exactly when the two distributions agree.
    - `"jsd"`: the generalised Jensen-Shannon divergence of GKD (Agarwal et al., 2024),
      `T**2 * (beta * KL(p_teacher || m) + (1 - beta) * KL(p_student || m))` with the mixture
      `m = beta * p_teacher + (1 - beta) * p_student`. Bounded, before the `T**2`, by the binary
      entropy `-beta * log(beta) - (1 - beta) * log(1 - beta) <= log(2)`, reached when the two
      distributions have disjoint supports. It behaves like `beta * KL(p_teacher || p_student)` as
      `beta -> 0` and like `(1 - beta) * KL(p_student || p_teacher)` as `beta -> 1`, so a `beta`
      near 0 or 1 also makes the term small: rescale its weight accordingly.
    - `"mse"`: `sum_c (z_student - z_teacher) ** 2`, the squared L2 distance between the raw logit
      vectors, without temperature (Kim et al., 2021, "Comparing Kullback-Leibler divergence and
      mean squared error loss in knowledge distillation").

    For a single output (last dimension == 1, regression) every `loss_type` gives the squared
    difference to the teacher's prediction, and the temperature is not used.

    The result is the mean of the per-row values over the counted rows (`mask`), or their sum
    divided by `normalizer` when one is given. All arithmetic runs in float32.

    Args:
        student_logits (`torch.Tensor`):
            Student outputs of shape `(..., num_classes)`.
        teacher_logits (`torch.Tensor`):
            Teacher outputs of the same shape. Detached: no gradient reaches the teacher.
        temperature (`float`, *optional*, defaults to `2.0`):
            Softmax temperature `T`; must be positive. Not used by `"mse"` nor for one output.
        loss_type (`str`, *optional*, defaults to `"forward_kl"`):
            `"forward_kl"`, `"reverse_kl"`, `"symmetric_kl"`, `"jsd"` or `"mse"`.
        beta (`float`, *optional*, defaults to `0.5`):
            Teacher weight of the `"jsd"` mixture, in the open interval `(0, 1)`; only checked and
            used by `"jsd"`.
        mask (`torch.Tensor`, *optional*, defaults to `None`):
            0/1 or boolean tensor of shape `student_logits.shape[:-1]`; rows with 0 do not count
            (e.g. prompt and padding tokens of a causal language model). `None` counts every row.
        normalizer (`int`, `float` or 0-dim `torch.Tensor`, *optional*, defaults to `None`):
            Divide the sum over counted rows by this number instead of by the number of counted
            rows, e.g. the `num_items_in_batch` that the Trainer passes to `compute_loss`, so that
            micro-batches of an accumulated batch add up to its token mean. Clamped to at least 1.

    Returns:
        `torch.Tensor`: A float32 scalar; `0` (not NaN) when no row is counted.

    Raises:
        `ValueError`: If the shapes differ or the logits have no class dimension, `temperature <= 0`,
            `loss_type` is unknown, `beta` is outside `(0, 1)` for `"jsd"`, the mask shape does not
            fit, or `normalizer` is not a number or 0-dim tensor.
    """
    if temperature <= 0:
        raise ValueError(
            f"temperature must be positive, got {temperature}; use 1.0 for plain softmax or a "
            "larger value (typically 2 to 8) to soften the teacher distribution."
        )
    if loss_type not in KD_LOSSES:
        raise ValueError(f"loss_type must be one of {KD_LOSSES}, got {loss_type!r}.")
    if loss_type == "jsd" and not 0.0 < beta < 1.0:
        raise ValueError(
            f"beta must lie in the open interval (0, 1) for loss_type='jsd', got {beta}; the limits "
            "beta -> 0 and beta -> 1 are (rescaled) forward and reverse KL: use "
            "loss_type='forward_kl' or loss_type='reverse_kl' for those."
        )
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits of shape {tuple(student_logits.shape)} and teacher logits of shape "
            f"{tuple(teacher_logits.shape)} differ; the student must have the same number of "
            "labels as the teacher and see the same batch."
        )
    if student_logits.dim() < 1 or student_logits.shape[-1] == 0:
        raise ValueError(
            f"logits of shape {tuple(student_logits.shape)} have no class dimension; expected "
            "(..., num_labels) with num_labels >= 1."
        )
    if mask is not None and mask.shape != student_logits.shape[:-1]:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not fit logits of shape "
            f"{tuple(student_logits.shape)}; expected one entry per row, shape "
            f"{tuple(student_logits.shape[:-1])}."
        )
    device = student_logits.device
    divisor = None if normalizer is None else _normalizer_value(normalizer, device)
    num_classes = student_logits.shape[-1]
    student = student_logits.reshape(-1, num_classes)
    teacher = teacher_logits.detach().reshape(-1, num_classes)
    if mask is not None:
        # Select the counted rows before any arithmetic: prompt tokens of a language model can be
        # most of the batch, and whatever a dropped row holds cannot leak into the result.
        keep = mask.reshape(-1).to(device) != 0
        student = student[keep]
        teacher = teacher[keep]
    student = student.float()
    teacher = teacher.float()

    if num_classes == 1 or loss_type == "mse":
        per_row = ((student - teacher) ** 2).sum(dim=-1)
    else:
        student_log_probs = F.log_softmax(student / temperature, dim=-1)
        teacher_log_probs = F.log_softmax(teacher / temperature, dim=-1)
        # Everything stays in log space so that logits of +-1e4 stay finite: exp() of a very
        # negative log-probability is an exact 0 that multiplies a finite difference.
        if loss_type == "forward_kl":
            per_row = _kl_from_log_probs(teacher_log_probs, student_log_probs)
        elif loss_type == "reverse_kl":
            per_row = _kl_from_log_probs(student_log_probs, teacher_log_probs)
        elif loss_type == "symmetric_kl":
            per_row = 0.5 * (
                _kl_from_log_probs(teacher_log_probs, student_log_probs)
                + _kl_from_log_probs(student_log_probs, teacher_log_probs)
            )
        else:
            # log(beta * p_t + (1 - beta) * p_s) without leaving log space.
            mixture_log_probs = torch.logsumexp(
                torch.stack(
                    (teacher_log_probs + math.log(beta), student_log_probs + math.log1p(-beta))
                ),
                dim=0,
            )
            kl_teacher = _kl_from_log_probs(teacher_log_probs, mixture_log_probs)
            kl_student = _kl_from_log_probs(student_log_probs, mixture_log_probs)
            per_row = beta * kl_teacher + (1.0 - beta) * kl_student
        per_row = temperature**2 * per_row

    total = per_row.sum()
    if divisor is None:
        return total / max(per_row.shape[0], 1)
    return total / divisor


def _kl_from_log_probs(log_p: Tensor, log_q: Tensor) -> Tensor:
    """`KL(p || q)` per row from log-probabilities, summed over the last dimension."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def soft_kl_loss(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0
) -> Tensor:
    """Distillation term between student and teacher outputs.

    For classification (last dimension > 1) this is
    `T**2 * KL(softmax(teacher / T) || softmax(student / T))`, summed over classes and averaged over
    rows (all leading dimensions are flattened into rows). The `T**2` factor keeps the gradient scale
    of this term comparable across temperatures (Hinton et al., 2015). For regression (last
    dimension == 1) it is the mean squared error between the student and teacher predictions, and
    the temperature is not used. It is [`logit_distillation_loss`] with `loss_type="forward_kl"`,
    no mask and no normaliser.

    Args:
        student_logits (`torch.Tensor`):
            Student outputs of shape `(..., num_labels)`.
        teacher_logits (`torch.Tensor`):
            Teacher outputs of the same shape. Detached: no gradient reaches the teacher.
        temperature (`float`, *optional*, defaults to `2.0`):
            Softmax temperature `T`; must be positive.

    Returns:
        `torch.Tensor`: A float32 scalar.

    Raises:
        `ValueError`: If the shapes differ, the logits have no class dimension, or
            `temperature <= 0`.
    """
    return logit_distillation_loss(
        student_logits, teacher_logits, temperature=temperature, loss_type="forward_kl"
    )


def hard_label_loss(student_logits: Tensor, labels: Tensor) -> Tensor:
    """Supervised term on the ground-truth labels.

    Cross-entropy for classification (integer class labels, `-100` ignored, averaged over the labels
    that are not ignored) and mean squared error for single-output regression (float labels).

    Args:
        student_logits (`torch.Tensor`):
            Student outputs of shape `(..., num_labels)`.
        labels (`torch.Tensor`):
            Class indices of shape `student_logits.shape[:-1]` for classification; float targets of
            shape `student_logits.shape[:-1]` or `student_logits.shape` for regression
            (`num_labels == 1`).

    Returns:
        `torch.Tensor`: A float32 scalar; `0` when every label is `-100`.

    Raises:
        `ValueError`: If the label shape does not fit the logits, or float labels are given with
            `num_labels > 1` (multi-label classification is not supported).
    """
    if student_logits.dim() < 1 or student_logits.shape[-1] == 0:
        raise ValueError(
            f"logits of shape {tuple(student_logits.shape)} have no class dimension; expected "
            "(..., num_labels) with num_labels >= 1."
        )
    logits = student_logits.float()
    num_labels = logits.shape[-1]
    if num_labels == 1:
        if labels.shape not in (logits.shape, logits.shape[:-1]):
            raise ValueError(
                f"regression labels of shape {tuple(labels.shape)} do not fit logits of shape "
                f"{tuple(logits.shape)}; expected {tuple(logits.shape[:-1])} or "
                f"{tuple(logits.shape)}."
            )
        return masked_mean((logits.reshape(-1) - labels.float().reshape(-1)) ** 2)
    if labels.is_floating_point():
        raise ValueError(
            f"got float labels (dtype {labels.dtype}) for {num_labels} classes; pass integer class "
            "indices (multi-label classification with float targets is not supported)."
        )
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} do not fit logits of shape "
            f"{tuple(logits.shape)}; expected class indices of shape {tuple(logits.shape[:-1])}."
        )
    labels = labels.long().reshape(-1)
    # Sum, then divide by the number of kept labels ourselves: F.cross_entropy's mean is NaN when
    # every label is ignored.
    total = F.cross_entropy(
        logits.reshape(-1, num_labels), labels, ignore_index=-100, reduction="sum"
    )
    return total / (labels != -100).sum().clamp_min(1)
