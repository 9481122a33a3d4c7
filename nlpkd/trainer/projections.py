"""Learned width projections, trained with the student as one module.

When student and teacher widths differ, the hidden-state terms compare `W h_student + b` with the teacher's
state. The projections are part of what is trained, so they live inside the module that the optimizer, DDP,
gradient clipping and checkpoints see: [`StudentWithProjections`] wraps the student, applies the projections
inside its `forward` (so DDP's unused-parameter search sees them), and `DistillationTrainer.save_model` writes
the student alone.

"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

__all__ = ["PROJECTED_KEY", "StudentWithProjections", "save_student", "with_projections"]

# The output key under which the projected hidden states are returned, in the order of `hidden_indices`.
PROJECTED_KEY = "projected_hidden_states"


@dataclass
class ProjectedOutput(ModelOutput):
    """A classifier's output plus the projected hidden states: a declared field, so DDP (which rebuilds
    outputs from their fields) keeps it."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    projected_hidden_states: tuple[torch.Tensor, ...] | None = None


class StudentWithProjections(nn.Module):
    """The student plus one `nn.Linear(student_width, teacher_width)` per compared hidden state.

    Args:
        student ([`~transformers.PreTrainedModel`]): the model being distilled.
        hidden_indices (`Sequence[int]`): positions in the student's `hidden_states` output (0 is the embedding
            output) whose projections the loss compares with the teacher.
        teacher_width (`int`): the teacher's hidden size.
    """

    def __init__(
        self, student: PreTrainedModel, hidden_indices: Sequence[int], teacher_width: int
    ) -> None:
        super().__init__()
        self.student = student
        self.hidden_indices = list(hidden_indices)
        width = student.config.hidden_size
        self.projections = nn.ModuleList(nn.Linear(width, teacher_width) for _ in hidden_indices)
        self.projections.to(device=student.device, dtype=student.dtype)

    @property
    def config(self):
        """The student's config (the Trainer reads `model.config`)."""
        return self.student.config

    def forward(self, **inputs: Any):
        outputs = self.student(**inputs)
        hidden = outputs.get("hidden_states")
        if hidden is None:
            return outputs
        projected = tuple(
            projection(hidden[index].to(projection.weight.dtype))
            for projection, index in zip(self.projections, self.hidden_indices, strict=True)
        )
        fields = ("loss", "logits", "hidden_states", "attentions")
        return ProjectedOutput(
            **{k: outputs.get(k) for k in fields}, projected_hidden_states=projected
        )


def with_projections(
    student: PreTrainedModel,
    teacher_width: int,
    hidden_indices: Sequence[int],
    enabled: bool = True,
) -> nn.Module:
    """The module to train: the student alone when its width is the teacher's, else the student wrapped with a
    projection per compared hidden state.

    Args:
        student ([`~transformers.PreTrainedModel`]): the model being distilled.
        teacher_width (`int`): the teacher's hidden size.
        hidden_indices (`Sequence[int]`): positions in `hidden_states` compared with the teacher (none: no
            hidden-state term, so no projection).
        enabled (`bool`, *optional*, defaults to `True`): `DistillationConfig.hidden_projection`; with `False`,
            different widths are an error.
    """
    width = student.config.hidden_size
    if not hidden_indices or width == teacher_width:
        return student
    if not enabled:
        raise ValueError(
            f"The hidden-state loss compares widths {width} (student) and {teacher_width} (teacher): set "
            "hidden_projection=True to learn a projection, or alpha_hidden=0 to turn the loss off."
        )
    return StudentWithProjections(student, hidden_indices, teacher_width)


def save_student(
    student: PreTrainedModel,
    state: Mapping[str, torch.Tensor],
    output_dir: str,
    processing_class: Any,
    args: Any,
) -> None:
    """Write the student of a [`StudentWithProjections`] state dict as `from_pretrained` loads it: its own
    weights (without the projections), its tokenizer and the training arguments."""
    prefix = "student."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    student.save_pretrained(output_dir, state_dict=weights)
    if processing_class is not None:
        processing_class.save_pretrained(output_dir)
    torch.save(args, os.path.join(output_dir, "training_args.bin"))
