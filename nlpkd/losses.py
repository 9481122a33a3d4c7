"""Distillation loss terms.

Every function here is pure: tensors in, a scalar float32 tensor out, with padding given by an
explicit mask. The teacher side is always detached, so no gradient can reach the teacher through a
loss, and all arithmetic runs in float32 whatever the input dtype, so fp16/bf16 models give finite
losses. The trainer combines the terms as
``alpha_kd * kd + alpha_ce * ce + alpha_hidden * hidden + alpha_attn * attn``.

Logit terms: `logit_distillation_loss` (forward KL, reverse KL, generalised Jensen-Shannon, logit
MSE; optional token mask and a normaliser for causal-LM batches), with `soft_kl_loss` its forward-KL
form. Intermediate terms: `hidden_state_loss`, `attention_loss`, `pkd_loss` (Patient KD, [CLS]
vectors) and `relation_loss` (MiniLM / MiniLMv2 self-attention relations).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "attention_loss",
    "hard_label_loss",
    "hidden_state_loss",
    "logit_distillation_loss",
    "masked_mean",
    "pkd_loss",
    "relation_loss",
    "soft_kl_loss",
]

_LOGIT_LOSS_TYPES = ("forward_kl", "reverse_kl", "jsd", "mse")
_ATTENTION_LOSS_TYPES = ("kl", "mse", "mse_probs")

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
    loss_type: Literal["forward_kl", "reverse_kl", "jsd", "mse"] = "forward_kl",
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
            `"forward_kl"`, `"reverse_kl"`, `"jsd"` or `"mse"`.
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
    if loss_type not in _LOGIT_LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {_LOGIT_LOSS_TYPES}, got {loss_type!r}.")
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


def _check_projections(
    projections: Sequence[Callable[[Tensor], Tensor] | None] | None, num_pairs: int
) -> None:
    if projections is not None and len(projections) != num_pairs:
        raise ValueError(
            f"got {len(projections)} projections for {num_pairs} hidden-state pairs; "
            "give one entry per pair (None where no projection is needed)."
        )


def _check_hidden_pair(i: int, student: Tensor, teacher: Tensor) -> None:
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


def _project_pair(
    i: int, student: Tensor, teacher: Tensor, projection: Callable[[Tensor], Tensor] | None
) -> tuple[Tensor, Tensor]:
    """Float32 student (projected when a projection is given) and detached float32 teacher."""
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
    return student, teacher


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
    _check_projections(projections, len(student_hidden))
    pair_losses = []
    for i, (student, teacher) in enumerate(zip(student_hidden, teacher_hidden, strict=True)):
        _check_hidden_pair(i, student, teacher)
        projection = projections[i] if projections is not None else None
        student, teacher = _project_pair(i, student, teacher, projection)
        if loss_type == "mse":
            per_token = ((student - teacher) ** 2).mean(dim=-1)
        else:
            per_token = 1.0 - F.cosine_similarity(student, teacher, dim=-1)
        mask = _token_mask(attention_mask, student.shape[0], student.shape[1], student.device)
        pair_losses.append(masked_mean(per_token, mask))
    return torch.stack(pair_losses).mean()


def pkd_loss(
    student_hidden: Sequence[Tensor],
    teacher_hidden: Sequence[Tensor],
    projections: Sequence[Callable[[Tensor], Tensor] | None] | None = None,
) -> Tensor:
    """Patient Knowledge Distillation loss on the [CLS] vectors of paired layers.

    Patient KD (Sun et al., 2019) makes the student follow the teacher's intermediate layers on the
    first token only. For each pair, the vector at sequence position 0 of every example is
    L2-normalised on both sides, and the squared L2 distance between the normalised student and
    teacher vectors (`2 - 2 * cosine`, between 0 and 4) is averaged over the batch; the pairs are
    then averaged (the paper sums over layers; the mean keeps the scale independent of how many
    layers are mapped, as in [`hidden_state_loss`]). Position 0 must be a real token ([CLS] / `<s>`), as it is for encoder inputs
    padded on the right, so no attention mask is needed. A zero vector stays zero when normalised.

    Args:
        student_hidden (`Sequence[torch.Tensor]`):
            Student hidden states, each of shape `(batch, seq, student_width)`.
        teacher_hidden (`Sequence[torch.Tensor]`):
            Teacher hidden states, each of shape `(batch, seq, teacher_width)`; the i-th is compared
            with the i-th student state. Detached: no gradient reaches the teacher.
        projections (`Sequence[Callable | None]`, *optional*, defaults to `None`):
            One entry per pair; a callable (e.g. `nn.Linear(student_width, teacher_width)`) applied
            to the student's position-0 vector before normalising, or `None` where the widths
            already match.

    Returns:
        `torch.Tensor`: A float32 scalar.

    Raises:
        `ValueError`: If the sequences are empty or of different lengths, shapes do not fit, or the
            widths differ without a projection (or the projection outputs the wrong width).
    """
    _check_pairs(student_hidden, teacher_hidden, "hidden states")
    _check_projections(projections, len(student_hidden))
    pair_losses = []
    for i, (student, teacher) in enumerate(zip(student_hidden, teacher_hidden, strict=True)):
        _check_hidden_pair(i, student, teacher)
        if student.shape[1] == 0:
            raise ValueError(
                f"hidden-state pair {i}: the sequences are empty (seq = 0), so there is no "
                "position-0 ([CLS]) vector to compare; pass the states of a non-empty batch."
            )
        projection = projections[i] if projections is not None else None
        student_cls, teacher_cls = _project_pair(i, student[:, 0], teacher[:, 0], projection)
        student_cls = F.normalize(student_cls, dim=-1)
        teacher_cls = F.normalize(teacher_cls, dim=-1)
        pair_losses.append(masked_mean(((student_cls - teacher_cls) ** 2).sum(dim=-1)))
    return torch.stack(pair_losses).mean()


def attention_loss(
    student_attentions: Sequence[Tensor],
    teacher_attentions: Sequence[Tensor],
    attention_mask: Tensor | None = None,
    loss_type: Literal["kl", "mse", "mse_probs"] = "kl",
) -> Tensor:
    """Loss between paired student and teacher attention maps.

    The maps are attention probabilities (after softmax), as returned with
    `output_attentions=True` by eager attention. When the student and teacher of a pair have
    different head counts, each map is first averaged over its heads and the head-averaged maps are
    compared.

    - `"kl"` (MiniLM-style) computes `KL(teacher || student)` over the key axis for every
      (example, head, query), using only real keys; student (and teacher) probabilities are floored
      at `1e-12` inside the logarithm so exact zeros stay finite, and teacher zeros contribute 0.
      It is averaged over real query positions and heads.
    - `"mse"` (TinyBERT-style) is the mean squared difference between the log-probabilities
      (floored at `1e-12`) over real (query, key) pairs and heads. TinyBERT compares the
      pre-softmax scores, which these maps no longer hold; their logarithm, the log-softmax of the
      scores, equals the scores up to a constant per (example, head, query). The MSE is not
      invariant to that constant, so the value is not TinyBERT's, but it is 0 exactly when the
      distributions agree and, like TinyBERT's loss, it weighs the small probabilities that a
      probability MSE hardly sees. Floored zeros (padded keys are excluded, but attention dropout
      in train mode writes exact zeros) count as `log(1e-12) ~ -27.6`, so use it on maps taken
      without dropout.
    - `"mse_probs"` is the mean squared difference between the probabilities themselves over real
      (query, key) pairs and heads.

    The pairs are then averaged.

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
            `"kl"`, `"mse"` (log-probabilities) or `"mse_probs"` (probabilities).

    Returns:
        `torch.Tensor`: A float32 scalar.

    Raises:
        `ValueError`: If the sequences are empty or of different lengths, shapes do not fit, or
            `loss_type` is unknown.
    """
    if loss_type not in _ATTENTION_LOSS_TYPES:
        raise ValueError(
            f"loss_type must be one of {_ATTENTION_LOSS_TYPES}, got {loss_type!r}; 'mse' compares "
            "log-probabilities, 'mse_probs' the probabilities."
        )
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
            if loss_type == "mse":
                student = student.clamp_min(_PROB_EPS).log()
                teacher = teacher.clamp_min(_PROB_EPS).log()
            squared = (student - teacher) ** 2
            pair_losses.append(masked_mean(squared, (query_mask * key_mask).expand_as(squared)))
    return torch.stack(pair_losses).mean()


def _relation_log_probs(states: Tensor, num_heads: int, key_mask: Tensor) -> Tensor:
    """Log of the scaled dot-product relation of `states` with itself, per relation head."""
    batch, seq, width = states.shape
    head_size = width // num_heads
    heads = states.reshape(batch, seq, num_heads, head_size).transpose(1, 2)
    scores = heads @ heads.transpose(-1, -2) / math.sqrt(head_size)
    # The most negative finite float rather than -inf: a padded key then gets probability exactly
    # 0 and a finite log, and an example without any real key stays finite (its queries are
    # masked out later) instead of turning into NaN.
    scores = scores.masked_fill(key_mask == 0, torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, dim=-1)


def relation_loss(
    student_states: Sequence[Tensor],
    teacher_states: Sequence[Tensor],
    attention_mask: Tensor | None = None,
    num_relation_heads: int = 12,
) -> Tensor:
    """Self-attention relation distillation of MiniLM and MiniLMv2 (Wang et al., 2020, 2021).

    Each state is split along its width into `num_relation_heads` heads of size `d` (the student
    and the teacher each with their own `d`), and every head gives a relation between the positions
    of a sequence, `R = softmax(X_h @ X_h.T / sqrt(d))` over the key axis, with padded keys
    excluded. The loss of a pair is `KL(R_teacher || R_student)` over keys for every (example,
    head, query), averaged over real queries and heads. Because the relations are `seq x seq`
    whatever the widths, student and teacher need no projection.

    The result is the SUM over the pairs, not their mean: MiniLMv2 adds its query-query, key-key
    and value-value terms, and MiniLM its attention and value-relation terms. Passing the query,
    key and value projections of one student layer and of one teacher layer (before the split into
    attention heads) gives MiniLMv2's loss; passing the value projections alone gives MiniLM's
    value-relation term.

    Args:
        student_states (`Sequence[torch.Tensor]`):
            Student tensors to relate, each of shape `(batch, seq, student_width)`.
        teacher_states (`Sequence[torch.Tensor]`):
            Teacher tensors, each of shape `(batch, seq, teacher_width)`, paired one to one with the
            student ones. Detached: no gradient reaches the teacher.
        attention_mask (`torch.Tensor`, *optional*, defaults to `None`):
            `(batch, seq)` mask, 1 for real tokens and 0 for padding; masks both queries and keys.
            `None` treats every token as real. A batch with no real token gives `0`.
        num_relation_heads (`int`, *optional*, defaults to `12`):
            Number of relation heads; every width must be divisible by it. MiniLMv2 uses more
            relation heads than the teacher has attention heads for large teachers (e.g. 48 for
            a 24-layer teacher); any common divisor of the widths works.

    Returns:
        `torch.Tensor`: A float32 scalar; exactly `0` when each student tensor equals its teacher.

    Raises:
        `ValueError`: If the sequences are empty or of different lengths, a tensor is not
            `(batch, seq, width)`, batch or sequence lengths differ, a width is not divisible by
            `num_relation_heads`, or `num_relation_heads < 1`.
    """
    if (
        isinstance(num_relation_heads, bool)
        or not isinstance(num_relation_heads, int)
        or num_relation_heads < 1
    ):
        raise ValueError(
            f"num_relation_heads must be a positive integer, got {num_relation_heads!r}; "
            "MiniLMv2 uses the teacher's attention head count (e.g. 12), or more for large teachers."
        )
    _check_pairs(student_states, teacher_states, "relation states")
    for i, (student, teacher) in enumerate(zip(student_states, teacher_states, strict=True)):
        if student.dim() != 3 or teacher.dim() != 3:
            raise ValueError(
                f"relation pair {i}: expected (batch, seq, width) tensors, got student "
                f"{tuple(student.shape)} and teacher {tuple(teacher.shape)}; pass the query, key or "
                "value projections before they are split into attention heads."
            )
        if student.shape[:2] != teacher.shape[:2]:
            raise ValueError(
                f"relation pair {i}: student {tuple(student.shape)} and teacher "
                f"{tuple(teacher.shape)} differ in (batch, seq); both models must see the same "
                "tokenized batch."
            )
        for side, width in (("student", student.shape[-1]), ("teacher", teacher.shape[-1])):
            if width % num_relation_heads != 0:
                raise ValueError(
                    f"relation pair {i}: the {side} width {width} is not divisible by "
                    f"num_relation_heads={num_relation_heads}; choose a head count that divides "
                    "every student and teacher width (e.g. a common divisor of them)."
                )
    batch, seq = student_states[0].shape[:2]
    for i, student in enumerate(student_states):
        if student.shape[:2] != (batch, seq):
            raise ValueError(
                f"relation pair {i}: (batch, seq) = {tuple(student.shape[:2])} differs from "
                f"{(batch, seq)} of pair 0; every pair must come from the same batch."
            )
    token_mask = _token_mask(attention_mask, batch, seq, student_states[0].device)
    pair_losses = []
    for student, teacher in zip(student_states, teacher_states, strict=True):
        key_mask = token_mask[:, None, None, :]
        student_log_rel = _relation_log_probs(student.float(), num_relation_heads, key_mask)
        teacher_log_rel = _relation_log_probs(
            teacher.detach().float(), num_relation_heads, key_mask
        )
        # A padded key has teacher probability exactly 0 and a finite log-ratio, so it adds 0;
        # the key mask states that rule outright instead of relying on the underflow.
        per_query = (teacher_log_rel.exp() * (teacher_log_rel - student_log_rel) * key_mask).sum(
            dim=-1
        )
        query_mask = token_mask[:, None, :].expand(-1, num_relation_heads, -1)
        pair_losses.append(masked_mean(per_query, query_mask))
    return torch.stack(pair_losses).sum()
