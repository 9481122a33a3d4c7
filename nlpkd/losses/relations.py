"""MiniLM / MiniLMv2 self-attention relations: query-query, key-key and value-value relations compared per
relation head, which needs no projection between widths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .intermediate import check_pairs, real_token_mask
from .logits import masked_mean

__all__ = ["relation_loss"]


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
    check_pairs(student_states, teacher_states, "relation states")
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
    token_mask = real_token_mask(attention_mask, batch, seq, student_states[0].device)
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
