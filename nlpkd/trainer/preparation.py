"""Making a teacher and a student ready for the configured terms: the argument checks, eager attention and
attention dropout, the layer map, learned projections, and the teacher's outputs on a batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ..config import DistillationConfig
from ..losses.terms import LogitColumns, hidden_pairs
from ..models.checks import check_compatible, check_layer_outputs
from ..models.families import attention_probs_dropouts, attention_projections, num_encoder_layers
from ..models.inputs import CACHE_COLUMN, route_inputs
from ..models.layer_map import resolve_layer_map
from ..models.teacher import resolve_teacher
from .projections import with_projections

__all__ = [
    "check_pair",
    "prepare_models",
    "relation_heads",
    "teacher_outputs",
    "trainable_student",
    "undropped_attention",
]


def check_pair(
    student: Any, teacher: Any, args: Any, input_prefixes: Sequence[str | None] | None = None
) -> Any:
    """The teacher, loaded when given as a path, after checking the arguments of a
    [`~nlpkd.trainer.DistillationTrainer`]: `args` is a [`DistillationConfig`], and the student is a separate
    model. Several teachers read the batch columns of `input_prefixes` (one per teacher)."""
    if not isinstance(args, DistillationConfig):
        raise ValueError(
            f"args must be a nlpkd.DistillationConfig, got {type(args).__name__}: it carries the "
            "temperature and loss weights. Build one with DistillationConfig(output_dir=..., ...)."
        )
    if student is None:
        raise ValueError("DistillationTrainer needs the student as `model`.")
    # A path is loaded; several teachers become one ensemble (teacher_weights, teacher_ensemble).
    teacher = resolve_teacher(teacher, args, input_prefixes)
    if teacher is student:
        raise ValueError(
            "The teacher and the student are the same object: pass a separate student."
        )
    return teacher


def teacher_outputs(
    teacher: nn.Module,
    keys: set[str] | None,
    inputs: Mapping[str, Any],
    requests: Mapping[str, bool],
    relations: Any,
    prefix: str | None = None,
) -> Any:
    """The teacher's outputs on a batch, without gradients: its cached logits when the batch carries them and
    only the logits are needed, else a forward pass on the inputs it takes (`keys`; from its own columns under
    `prefix` when its tokenizer differs from the student's) with the per-layer outputs the terms ask for
    (`requests`)."""
    cached = inputs.get(CACHE_COLUMN)
    if cached is not None and not requests and relations is None:
        return SequenceClassifierOutput(logits=cached)
    with torch.no_grad():
        return teacher(**route_inputs(keys, inputs, prefix), **requests)


def prepare_models(
    student: Any,
    teacher: Any,
    args: DistillationConfig,
    logit_columns: LogitColumns | None = None,
    teacher_prefix: str | None = None,
) -> dict[int, int]:
    """Make a frozen teacher and its student ready for the configured terms, and return the layer map.

    Checks that the pair can be distilled (vocabulary, labels), switches both models to eager attention when
    the attention term needs the maps (SDPA never materialises them) and the student's attention-probability
    dropout off (the maps are compared before dropout: in train mode eager attention returns dropped-out
    maps), probes the per-layer outputs once, and checks that the relation heads divide both widths.

    Args:
        student ([`~transformers.PreTrainedModel`]): the model being distilled (changed in place).
        teacher ([`~transformers.PreTrainedModel`]): the frozen teacher (changed in place).
        args ([`DistillationConfig`]): the loss settings.
        logit_columns ([`LogitColumns`], *optional*): the student's columns that the teacher's logits stand for.
        teacher_prefix (`str`, *optional*): the prefix of the teacher's own columns when it reads its own
            tokenization (an ensemble says it per teacher); its vocabulary may then differ from the student's.

    Returns:
        `dict[int, int]`: student layer -> teacher layer of the hidden-state and attention terms (empty when
        neither is on; stages for ResNet).
    """
    # An ensemble of teachers answers for its first teacher's layers.
    primary = getattr(teacher, "primary", teacher)
    own_tokens = (
        teacher_prefix is not None or getattr(teacher, "input_prefixes", [None])[0] is not None
    )
    columns = (logit_columns or LogitColumns()).teacher
    check_compatible(student, primary, columns, shared_vocabulary=not own_tokens)
    if args.alpha_attn > 0:
        for model in (student, *getattr(teacher, "teachers", [teacher])):
            # `_attn_implementation` is transformers' own record of the implementation in use (no public
            # getter exists); tests/test_internals.py pins it.
            if model.config._attn_implementation != "eager":
                model.set_attn_implementation("eager")
        # Fails now for a family whose layers have no attention-probability dropout (a ResNet's stages).
        attention_probs_dropouts(student)
    intermediate = args.alpha_hidden > 0 or args.alpha_attn > 0
    layer_map = resolve_layer_map(student, primary, args.layer_map) if intermediate else {}
    for role, model in (("student", student), ("teacher", primary)):
        check_layer_outputs(model, role, args.alpha_hidden > 0, args.alpha_attn > 0)
    if args.alpha_relation > 0:
        # Fails now for a family without separate query/key/value projections, or an index out of range.
        attention_projections(student, num_encoder_layers(student) - 1)
        attention_projections(primary, absolute_layer_index(primary, args.relation_teacher_layer))
        heads = relation_heads(args, primary)
        for role, model in (("student", student), ("teacher", primary)):
            width = model.config.hidden_size
            if width % heads:
                raise ValueError(
                    f"The relation term splits the {role}'s width {width} into {heads} relation heads, which "
                    f"does not divide it: set num_relation_heads to a common divisor of both widths."
                )
    return layer_map


def trainable_student(
    student: Any, teacher: Any, args: DistillationConfig, layer_map: Mapping[int, int]
) -> nn.Module:
    """The module the Trainer trains: the student, wrapped with learned width projections when the hidden-state
    term compares layers of different widths ([`~nlpkd.trainer.with_projections`]).

    Models without one `hidden_size` (ResNet, whose stages have their own widths) are returned as they are: a
    student from [`~nlpkd.create_student`] keeps every stage's width, and the hidden-state term says which pair
    differs otherwise.
    """
    teacher_width = getattr(teacher.config, "hidden_size", None)
    if teacher_width is None or getattr(student.config, "hidden_size", None) is None:
        return student
    hidden = [s for s, _ in hidden_pairs(args, layer_map)]
    return with_projections(student, teacher_width, hidden, args.hidden_projection)


def relation_heads(args: DistillationConfig, teacher: Any) -> int:
    """`num_relation_heads`, or the teacher's number of attention heads when it is not set."""
    return args.num_relation_heads or teacher.config.num_attention_heads


def absolute_layer_index(model: Any, index: int) -> int:
    return index + num_encoder_layers(model) if index < 0 else index


@contextlib.contextmanager
def undropped_attention(student: Any, args: DistillationConfig) -> Iterator[None]:
    """The student's attention-probability dropout off for one forward pass, restored after it.

    The attention term compares the maps eager attention returns, which in train mode are the dropped-out ones:
    compared before dropout, a student equal to its teacher scores 0. Only this forward is affected; the
    model's settings stay those of its config, before, during the backward pass and after training. Nothing
    changes when the attention term is off.

    Args:
        student ([`~transformers.PreTrainedModel`]): the student, unwrapped.
        args ([`DistillationConfig`]): `alpha_attn` says whether the attention term is on.
    """
    dropouts = attention_probs_dropouts(student) if args.alpha_attn > 0 else []
    saved = [dropout.p for dropout in dropouts]
    for dropout in dropouts:
        dropout.p = 0.0
    try:
        yield
    finally:
        for dropout, p in zip(dropouts, saved, strict=True):
            dropout.p = p
