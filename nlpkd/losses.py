"""Distillation loss terms.

Every function here is pure: tensors in, a scalar float32 tensor out, with padding given by an
explicit mask. The teacher side is always detached, so no gradient can reach the teacher through a
loss, and all arithmetic runs in float32 whatever the input dtype, so fp16/bf16 models give finite
losses. The trainer combines the terms as
``alpha_kd * kd + alpha_ce * ce + alpha_hidden * hidden + alpha_attn * attn``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "attention_loss",
    "hard_label_loss",
    "hidden_state_loss",
    "masked_mean",
    "soft_kl_loss",
]

# Floor for probabilities inside a logarithm: small enough not to change any realistic term, large
# enough that log() of an exact zero (padded or dropped-out attention) stays finite.
_PROB_EPS = 1e-12


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


def soft_kl_loss(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0
) -> Tensor:
    """Distillation term between student and teacher outputs.

    For classification (last dimension > 1) this is
    `T**2 * KL(softmax(teacher / T) || softmax(student / T))`, summed over classes and averaged over
    rows (all leading dimensions are flattened into rows). The `T**2` factor keeps the gradient scale
    of this term comparable across temperatures (Hinton et al., 2015). For regression (last
    dimension == 1) it is the mean squared error between the student and teacher predictions, and
    the temperature is not used.

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
    if temperature <= 0:
        raise ValueError(
            f"temperature must be positive, got {temperature}; use 1.0 for plain softmax or a "
            "larger value (typically 2 to 8) to soften the teacher distribution."
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
    student = student_logits.float()
    teacher = teacher_logits.detach().float()
    if student.shape[-1] == 1:
        return masked_mean((student - teacher) ** 2)
    num_labels = student.shape[-1]
    student_log_probs = F.log_softmax(student.reshape(-1, num_labels) / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher.reshape(-1, num_labels) / temperature, dim=-1)
    # Written with log-probabilities on both sides so that logits of +-1e4 stay finite: exp() of a
    # very negative log-probability is an exact 0 that multiplies a finite difference.
    per_row = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(dim=-1)
    return temperature**2 * masked_mean(per_row)


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


def _apply_projection(hidden: Tensor, projection: Callable[[Tensor], Tensor]) -> Tensor:
    # A projection module may be kept in float32 while the student runs in half precision (or the
    # other way round); feed it its own dtype so the matmul does not fail, then compare in float32.
    if isinstance(projection, nn.Module):
        param = next(projection.parameters(), None)
        if param is not None and param.is_floating_point():
            hidden = hidden.to(param.dtype)
    return projection(hidden).float()


def _check_pairs(student: Sequence[Tensor], teacher: Sequence[Tensor], what: str) -> None:
    if len(student) != len(teacher):
        raise ValueError(
            f"got {len(student)} student {what} and {len(teacher)} teacher {what}; the two "
            "sequences must be paired one to one (map student layers to teacher layers first)."
        )
    if len(student) == 0:
        raise ValueError(
            f"no {what} to compare; pass at least one student/teacher pair or turn this loss off."
        )


def _token_mask(
    attention_mask: Tensor | None, batch: int, seq: int, device: torch.device
) -> Tensor:
    if attention_mask is None:
        return torch.ones(batch, seq, device=device)
    if attention_mask.shape != (batch, seq):
        raise ValueError(
            f"attention_mask of shape {tuple(attention_mask.shape)} does not match "
            f"(batch, seq) = {(batch, seq)}; pass the mask that was fed to the models."
        )
    return (attention_mask != 0).to(device=device, dtype=torch.float32)


def hidden_state_loss(
    student_hidden: Sequence[Tensor],
    teacher_hidden: Sequence[Tensor],
    attention_mask: Tensor | None = None,
    loss_type: Literal["mse", "cosine"] = "mse",
    projections: Sequence[Callable[[Tensor], Tensor] | None] | None = None,
) -> Tensor:
    """Loss between paired student and teacher hidden states.

    For each pair, a per-token loss is computed over the width: `"mse"` is the mean over the width
    of squared differences, `"cosine"` is `1 - cosine_similarity` (a zero vector has similarity 0
    with anything). The per-token losses are averaged over the real tokens of the whole batch (each
    token weighs the same, whatever its sequence), then the pairs are averaged.

    Args:
        student_hidden (`Sequence[torch.Tensor]`):
            Student hidden states, each of shape `(batch, seq, student_width)`.
        teacher_hidden (`Sequence[torch.Tensor]`):
            Teacher hidden states, each of shape `(batch, seq, teacher_width)`; the i-th is compared
            with the i-th student state. Detached: no gradient reaches the teacher.
        attention_mask (`torch.Tensor`, *optional*, defaults to `None`):
            `(batch, seq)` mask, 1 for real tokens and 0 for padding. `None` treats every token as
            real. A batch with no real token gives `0`.
        loss_type (`str`, *optional*, defaults to `"mse"`):
            `"mse"` or `"cosine"`.
        projections (`Sequence[Callable | None]`, *optional*, defaults to `None`):
            One entry per pair; a callable (e.g. `nn.Linear(student_width, teacher_width)`) applied
            to the student state before comparison, or `None` where the widths already match.

    Returns:
        `torch.Tensor`: A float32 scalar.

    Raises:
        `ValueError`: If the sequences are empty or of different lengths, shapes do not fit, the
            widths differ without a projection, or `loss_type` is unknown.
    """
    if loss_type not in ("mse", "cosine"):
        raise ValueError(f"loss_type must be 'mse' or 'cosine', got {loss_type!r}.")
    _check_pairs(student_hidden, teacher_hidden, "hidden states")
    if projections is not None and len(projections) != len(student_hidden):
        raise ValueError(
            f"got {len(projections)} projections for {len(student_hidden)} hidden-state pairs; "
            "give one entry per pair (None where no projection is needed)."
        )
    pair_losses = []
    for i, (student, teacher) in enumerate(zip(student_hidden, teacher_hidden, strict=True)):
        if student.dim() != 3 or teacher.dim() != 3:
            raise ValueError(
                f"hidden-state pair {i}: expected (batch, seq, width) tensors, got student "
                f"{tuple(student.shape)} and teacher {tuple(teacher.shape)}."
            )
        if student.shape[:2] != teacher.shape[:2]:
            raise ValueError(
                f"hidden-state pair {i}: student {tuple(student.shape)} and teacher "
                f"{tuple(teacher.shape)} differ in (batch, seq); both models must see the same "
                "tokenized batch."
            )
        projection = projections[i] if projections is not None else None
        if projection is not None:
            student = _apply_projection(student, projection)
        else:
            student = student.float()
        teacher = teacher.detach().float()
        if student.shape[-1] != teacher.shape[-1]:
            if projection is None:
                raise ValueError(
                    f"hidden-state pair {i}: student width {student.shape[-1]} differs from "
                    f"teacher width {teacher.shape[-1]}; enable a projection "
                    "(hidden_projection=True in DistillationConfig, or pass e.g. "
                    f"nn.Linear({student.shape[-1]}, {teacher.shape[-1]}) as projections[{i}])."
                )
            raise ValueError(
                f"hidden-state pair {i}: the projection maps the student state to width "
                f"{student.shape[-1]}, but the teacher width is {teacher.shape[-1]}; the projection "
                "must output the teacher width."
            )
        if loss_type == "mse":
            per_token = ((student - teacher) ** 2).mean(dim=-1)
        else:
            per_token = 1.0 - F.cosine_similarity(student, teacher, dim=-1)
        mask = _token_mask(attention_mask, student.shape[0], student.shape[1], student.device)
        pair_losses.append(masked_mean(per_token, mask))
    return torch.stack(pair_losses).mean()


def attention_loss(
    student_attentions: Sequence[Tensor],
    teacher_attentions: Sequence[Tensor],
    attention_mask: Tensor | None = None,
    loss_type: Literal["kl", "mse"] = "kl",
) -> Tensor:
    """Loss between paired student and teacher attention maps.

    The maps are attention probabilities (after softmax), as returned with
    `output_attentions=True` by eager attention. When the student and teacher of a pair have
    different head counts, each map is first averaged over its heads and the head-averaged maps are
    compared.

    `"kl"` computes `KL(teacher || student)` over the key axis for every (example, head, query),
    using only real keys; student (and teacher) probabilities are floored at `1e-12` inside the
    logarithm so exact zeros stay finite, and teacher zeros contribute 0. It is averaged over real
    query positions and heads. `"mse"` is the mean squared difference over real (query, key) pairs
    and heads. The pairs are then averaged.

    Args:
        student_attentions (`Sequence[torch.Tensor]`):
            Student attention probabilities, each of shape `(batch, heads, query, key)`.
        teacher_attentions (`Sequence[torch.Tensor]`):
            Teacher attention probabilities, paired with the student ones. Detached: no gradient
            reaches the teacher.
        attention_mask (`torch.Tensor`, *optional*, defaults to `None`):
            `(batch, seq)` mask, 1 for real tokens and 0 for padding; masks both queries and keys,
            so it needs `query == key == seq`. `None` treats every token as real. A batch with no
            real token gives `0`.
        loss_type (`str`, *optional*, defaults to `"kl"`):
            `"kl"` or `"mse"`.

    Returns:
        `torch.Tensor`: A float32 scalar.

    Raises:
        `ValueError`: If the sequences are empty or of different lengths, shapes do not fit, or
            `loss_type` is unknown.
    """
    if loss_type not in ("kl", "mse"):
        raise ValueError(f"loss_type must be 'kl' or 'mse', got {loss_type!r}.")
    _check_pairs(student_attentions, teacher_attentions, "attention maps")
    pair_losses = []
    for i, (student, teacher) in enumerate(
        zip(student_attentions, teacher_attentions, strict=True)
    ):
        if student.dim() != 4 or teacher.dim() != 4:
            raise ValueError(
                f"attention pair {i}: expected (batch, heads, query, key) tensors, got student "
                f"{tuple(student.shape)} and teacher {tuple(teacher.shape)}; pass attention "
                "probabilities from output_attentions=True with eager attention."
            )
        s_batch, _, s_query, s_key = student.shape
        if (s_batch, s_query, s_key) != (teacher.shape[0], teacher.shape[2], teacher.shape[3]):
            raise ValueError(
                f"attention pair {i}: student {tuple(student.shape)} and teacher "
                f"{tuple(teacher.shape)} differ in (batch, query, key); both models must see the "
                "same tokenized batch."
            )
        student = student.float()
        teacher = teacher.detach().float()
        if student.shape[1] != teacher.shape[1]:
            student = student.mean(dim=1, keepdim=True)
            teacher = teacher.mean(dim=1, keepdim=True)
        heads = student.shape[1]
        if attention_mask is None:
            query_mask = torch.ones(s_batch, s_query, device=student.device)
            key_mask = torch.ones(s_batch, s_key, device=student.device)
        else:
            if s_query != s_key:
                raise ValueError(
                    f"attention pair {i}: query length {s_query} differs from key length {s_key}, "
                    "so one (batch, seq) attention_mask cannot mask both; pass attention_mask=None."
                )
            query_mask = _token_mask(attention_mask, s_batch, s_query, student.device)
            key_mask = query_mask
        # (batch, 1, query, 1) and (batch, 1, 1, key): broadcast over heads and the other axis.
        query_mask = query_mask[:, None, :, None]
        key_mask = key_mask[:, None, None, :]
        if loss_type == "kl":
            # Flooring both sides keeps identical maps at exactly 0; a teacher zero contributes 0
            # because it multiplies a finite log-ratio.
            log_ratio = teacher.clamp_min(_PROB_EPS).log() - student.clamp_min(_PROB_EPS).log()
            per_query = (teacher * log_ratio * key_mask).sum(dim=-1, keepdim=True)
            pair_losses.append(masked_mean(per_query, query_mask.expand(-1, heads, -1, -1)))
        else:
            squared = (student - teacher) ** 2
            pair_losses.append(masked_mean(squared, (query_mask * key_mask).expand_as(squared)))
    return torch.stack(pair_losses).mean()
