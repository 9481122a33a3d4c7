"""Intermediate terms: hidden states (MSE, cosine, PKD's [CLS] vectors) and attention maps, compared layer pair
by layer pair with padding masked out.

Pure functions: tensors in, a float32 scalar out; the teacher side is detached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .logits import masked_mean

__all__ = ["attention_loss", "hidden_state_loss", "pkd_loss"]

_ATTENTION_LOSS_TYPES = ("kl", "mse", "mse_probs")


# Floor for probabilities inside a logarithm: small enough not to change any realistic term, large
# enough that log() of an exact zero (padded or dropped-out attention) stays finite.
_PROB_EPS = 1e-12


def _apply_projection(hidden: Tensor, projection: Callable[[Tensor], Tensor]) -> Tensor:
    # A projection module may be kept in float32 while the student runs in half precision (or the
    # other way round); feed it its own dtype so the matmul does not fail, then compare in float32.
    if isinstance(projection, nn.Module):
        param = next(projection.parameters(), None)
        if param is not None and param.is_floating_point():
            hidden = hidden.to(param.dtype)
    return projection(hidden).float()


def check_pairs(student: Sequence[Tensor], teacher: Sequence[Tensor], what: str) -> None:
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


def real_token_mask(
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
    check_pairs(student_hidden, teacher_hidden, "hidden states")
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
        mask = real_token_mask(attention_mask, student.shape[0], student.shape[1], student.device)
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
    check_pairs(student_hidden, teacher_hidden, "hidden states")
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


def _heads_fit(heads: Sequence[int] | None, student: Tensor, teacher: Tensor) -> bool:
    return (
        heads is not None
        and len(heads) == student.shape[1]
        and all(0 <= h < teacher.shape[1] for h in heads)
    )


def attention_loss(
    student_attentions: Sequence[Tensor],
    teacher_attentions: Sequence[Tensor],
    attention_mask: Tensor | None = None,
    loss_type: Literal["kl", "mse", "mse_probs"] = "kl",
    teacher_heads: Sequence[Sequence[int] | None] | None = None,
) -> Tensor:
    """Loss between paired student and teacher attention maps.

    The maps are attention probabilities (after softmax), as returned with
    `output_attentions=True` by eager attention. When the student and teacher of a pair have
    different head counts, student head `j` is compared with teacher head `teacher_heads[i][j]`
    when the pair names its teacher heads (a narrow student's heads are slices of those teacher
    heads); otherwise each map is first averaged over its heads and the head-averaged maps are
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
        teacher_heads (`Sequence[Sequence[int] | None]`, *optional*, defaults to `None`):
            Per pair, the teacher head of each student head (`config.nlpkd_kept_heads` of a student
            from `create_student`); used only where the head counts differ, ignored for a pair
            whose entry is `None` or does not fit both maps.

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
    check_pairs(student_attentions, teacher_attentions, "attention maps")
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
        heads = teacher_heads[i] if teacher_heads is not None else None
        if student.shape[1] != teacher.shape[1] and _heads_fit(heads, student, teacher):
            teacher = teacher[:, list(heads)]
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
            query_mask = real_token_mask(attention_mask, s_batch, s_query, student.device)
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
