"""The teacher as the trainer takes it: loaded from a path, several of them made one ensemble, frozen."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import PreTrainedModel

from .ensemble import TeacherEnsemble
from .loading import load_teacher

if TYPE_CHECKING:
    pass

__all__ = ["freeze_teacher", "resolve_teacher"]


def resolve_teacher(
    teacher: Any, args: Any, input_prefixes: Sequence[str | None] | None = None
) -> nn.Module:
    """The teacher a trainer was given, as a module: a model, a path or Hub id loaded as a fine-tuned
    classifier, or a list of those averaged into a [`~nlpkd.models.TeacherEnsemble`] with `args`'s
    `teacher_weights`, `temperature` and `teacher_ensemble`; an ensemble's teachers read the batch columns of
    `input_prefixes` (one per teacher, see `nlpkd.data.teacher_inputs`)."""
    if isinstance(teacher, TeacherEnsemble):
        if input_prefixes is not None:
            teacher.read_columns(input_prefixes)
        return teacher
    if isinstance(teacher, list | tuple):
        return TeacherEnsemble(
            [load_teacher(t) for t in teacher],
            args.teacher_weights,
            args.temperature,
            args.teacher_ensemble,
            input_prefixes=input_prefixes,
        )
    return load_teacher(teacher)


def freeze_teacher(teacher: PreTrainedModel, dtype: str | None = None) -> PreTrainedModel:
    """Put the teacher in `eval()` with no gradients, cast to `dtype` (`"float16"`, `"bfloat16"`, `"float32"`;
    `None` or `"auto"` keeps it as given).

    Args:
        teacher ([`~transformers.PreTrainedModel`]): the fine-tuned teacher, changed in place.
        dtype (`str`, *optional*): the dtype to cast it to.
    """
    if dtype not in (None, "auto"):
        teacher = teacher.to(getattr(torch, dtype))
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher
