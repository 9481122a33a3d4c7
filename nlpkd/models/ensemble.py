"""Several teachers as one: their soft targets averaged, their per-layer outputs taken from one of them.

[`TeacherEnsemble`] is an `nn.Module` that answers like a single sequence classifier, so the trainer, the
teacher-logit cache and the evaluation treat it as the teacher. Its logits are chosen so that
`softmax(logits / T)` is the weighted mean of the teachers' `softmax(z_i / T)` (averaging in probability
space, the default), or they are the weighted mean of the teachers' logits (`mode="logits"`); regression
teachers are always averaged as values. Hidden states and attentions come from the first teacher (the
*primary* one), which the intermediate terms compare with. Teachers with different tokenizers each read their own
columns of the batch (`input_prefixes`: `teacher_input_ids`, `teacher2_input_ids`, ...; see
`nlpkd.data.teacher_inputs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ..losses.logits import hard_label_loss
from .checks import check_tokenizers_match
from .inputs import forward_input_names, route_inputs

__all__ = ["ENSEMBLE_MODES", "TeacherEnsemble", "check_teachers_agree", "ensemble_logits"]

ENSEMBLE_MODES = ("probs", "logits")


def ensemble_logits(
    logits: Sequence[torch.Tensor],
    weights: Sequence[float],
    temperature: float = 1.0,
    mode: Literal["probs", "logits"] = "probs",
) -> torch.Tensor:
    """The logits of a weighted ensemble of teachers, in float32.

    With `mode="probs"` the result `z` satisfies `softmax(z / T) = sum_i w_i softmax(z_i / T)` (weights
    normalised to sum to 1), i.e. `z = T * log(sum_i w_i softmax(z_i / T))`; with `mode="logits"` it is
    `sum_i w_i z_i`. One-output (regression) heads are averaged as values in both modes.

    Args:
        logits (`Sequence[torch.Tensor]`): each teacher's logits, all of one shape `(..., num_labels)`.
        weights (`Sequence[float]`): one non-negative weight per teacher, not all 0.
        temperature (`float`, *optional*, defaults to `1.0`): the distillation temperature `T`.
        mode (`str`, *optional*, defaults to `"probs"`): `"probs"` or `"logits"`.
    """
    if len(logits) != len(weights) or not logits:
        raise ValueError(
            f"got {len(logits)} teachers' logits and {len(weights)} weights: give one weight per teacher."
        )
    if mode not in ENSEMBLE_MODES:
        raise ValueError(f"mode must be one of {ENSEMBLE_MODES}, got {mode!r}.")
    w = torch.tensor([float(x) for x in weights], dtype=torch.float32, device=logits[0].device)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"teacher weights must be >= 0 and not all 0, got {list(weights)}.")
    w = w / w.sum()
    stacked = torch.stack([z.float() for z in logits])  # (teachers, ..., num_labels)
    shape = (-1,) + (1,) * (stacked.dim() - 1)
    if mode == "logits" or stacked.shape[-1] == 1:
        return (w.view(shape) * stacked).sum(0)
    log_probs = torch.log_softmax(stacked / temperature, dim=-1) + w.log().view(shape)
    return temperature * torch.logsumexp(log_probs, dim=0)


def check_teachers_agree(
    teachers: Sequence[PreTrainedModel],
    tokenizers: Sequence[Any] = (),
    input_prefixes: Sequence[str | None] | None = None,
) -> None:
    """Raise a `ValueError` when teachers cannot be averaged: other label maps or label counts (their logit `i`
    must mean the same class), or other vocabularies among teachers that read the same columns of the batch
    (`input_prefixes`, one per teacher; all the same columns by default)."""
    first = teachers[0].config
    prefixes = list(input_prefixes) if input_prefixes is not None else [None] * len(teachers)
    for index, teacher in enumerate(teachers[1:], start=2):
        config = teacher.config
        if config.num_labels != first.num_labels or dict(config.id2label) != dict(first.id2label):
            raise ValueError(
                f"Teacher {index} has the labels {dict(config.id2label)} but teacher 1 has "
                f"{dict(first.id2label)}: the teachers of an ensemble must share one label map (logit i must "
                "mean the same class). Fine-tune them on the same labels, in the same order."
            )
    for index, teacher in enumerate(teachers, start=1):
        reference = (
            prefixes.index(prefixes[index - 1]) + 1
        )  # the first teacher that reads the same columns
        vocab = getattr(teacher.config, "vocab_size", None)
        other = getattr(teachers[reference - 1].config, "vocab_size", None)
        if vocab != other:
            raise ValueError(
                f"Teacher {index} has vocab_size={vocab} but teacher {reference} has {other}: the teachers of an "
                "ensemble that read the same token ids must share one tokenizer. Use teachers fine-tuned from "
                "the same base model, or give each its own tokenization: one tokenizer per teacher in "
                "DistillationTrainer(teacher_processing_class=[...]) and tokenize_dataset(..., teacher_tokenizer=[...])."
            )
    # Tokenizers are compared when they are known for every teacher, or when all teachers claim one tokenization.
    if input_prefixes is not None and len(tokenizers) != len(teachers):
        return
    for index, tokenizer in enumerate(tokenizers[1:], start=1):
        if prefixes[index] == prefixes[0]:
            check_tokenizers_match(tokenizers[0], tokenizer)


class TeacherEnsemble(nn.Module):
    """Several fine-tuned teachers that answer as one (see the module docstring).

    Args:
        teachers (`Sequence[PreTrainedModel]`): the teachers; the first one gives the per-layer outputs.
        weights (`Sequence[float]`, *optional*): one weight per teacher; equal weights by default.
        temperature (`float`, *optional*, defaults to `1.0`): the distillation temperature (probability mode).
        mode (`str`, *optional*, defaults to `"probs"`): average probabilities or logits.
        input_prefixes (`Sequence[str | None]`, *optional*): per teacher, the prefix of the batch columns it reads
            (`"teacher_"` reads `teacher_input_ids`, ... as `input_ids`, ...; `None` reads the student's columns,
            the default for all).
    """

    def __init__(
        self,
        teachers: Sequence[PreTrainedModel],
        weights: Sequence[float] | None = None,
        temperature: float = 1.0,
        mode: Literal["probs", "logits"] = "probs",
        input_prefixes: Sequence[str | None] | None = None,
    ) -> None:
        super().__init__()
        if len(teachers) < 2:
            raise ValueError(
                "an ensemble needs at least two teachers; pass the single teacher itself."
            )
        prefixes = list(input_prefixes) if input_prefixes is not None else [None] * len(teachers)
        if len(prefixes) != len(teachers):
            raise ValueError(
                f"got {len(prefixes)} input prefixes for {len(teachers)} teachers: give one per teacher."
            )
        check_teachers_agree(teachers, input_prefixes=prefixes)
        self.input_prefixes = prefixes
        weights = list(weights) if weights is not None else [1.0] * len(teachers)
        ensemble_logits(
            [torch.zeros(1, 2)] * len(teachers), weights, temperature, mode
        )  # validates
        self.teachers = nn.ModuleList(teachers)
        self.mode = mode
        # Buffers, so the teacher-logit cache's fingerprint (the state dict) sees the weights and temperature.
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    @property
    def config(self):
        """The primary teacher's config (labels, widths, layer count)."""
        return self.teachers[0].config

    @property
    def primary(self) -> PreTrainedModel:
        """The teacher whose hidden states and attentions the intermediate terms compare with."""
        return self.teachers[0]

    def input_names(self) -> set[str] | None:
        """The batch keys any of the teachers takes, under its prefix (`None`: one of them takes every key)."""
        names = [forward_input_names(teacher) for teacher in self.teachers]
        if None in names:
            return None
        return {
            f"{prefix or ''}{name}"
            for own, prefix in zip(names, self.input_prefixes, strict=True)
            for name in own
        }

    def read_columns(self, input_prefixes: Sequence[str | None]) -> None:
        """Set the prefix of the batch columns each teacher reads (see `input_prefixes`), checked again."""
        prefixes = list(input_prefixes)
        check_teachers_agree(list(self.teachers), input_prefixes=prefixes)
        self.input_prefixes = prefixes

    def _inputs(self, index: int, batch: dict[str, Any]) -> dict[str, Any]:
        # Each teacher gets the keys its own forward takes (a DistilBERT teacher has no token_type_ids), from its
        # own columns when its tokenizer differs from the student's.
        teacher = self.teachers[index]
        return route_inputs(forward_input_names(teacher), batch, self.input_prefixes[index])

    def forward(
        self, labels: torch.Tensor | None = None, **inputs: Any
    ) -> SequenceClassifierOutput:
        flags = {k: v for k, v in inputs.items() if k.startswith("output_")}
        batch = {k: v for k, v in inputs.items() if not k.startswith("output_")}
        first = self.teachers[0](**self._inputs(0, batch), **flags)
        others = [
            teacher(**self._inputs(index, batch)).logits
            for index, teacher in enumerate(self.teachers)
            if index > 0
        ]
        logits = ensemble_logits(
            [first.logits, *others], self.weights.tolist(), float(self.temperature), self.mode
        )
        loss = None
        if labels is not None:  # evaluation with the Trainer reports the ensemble's hard-label loss
            loss = hard_label_loss(logits, labels)
        return SequenceClassifierOutput(
            loss=loss,
            logits=logits.to(first.logits.dtype),
            hidden_states=first.get("hidden_states"),
            attentions=first.get("attentions"),
        )
