"""Forward hooks that record what a `forward` does not return: the query, key and value projections of the
relation layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from torch import Tensor

from ..config import DistillationConfig
from ..models.families import attention_projections
from .preparation import absolute_layer_index, undropped_attention

__all__ = ["capture_attention_projections", "capture_relations", "student_forward"]


@contextlib.contextmanager
def capture_attention_projections(model: Any, layer_index: int) -> Iterator[list[Tensor | None]]:
    """Record the query, key and value projections of one layer during the forward passes inside the block.

    Args:
        model ([`~transformers.PreTrainedModel`]): a text encoder of a family with separate projections.
        layer_index (`int`): the 0-based layer (negative counts from the end).

    Yields:
        `list`: `[query, key, value]`, each `(batch, seq, width)`, filled by the forward pass.
    """
    layer_index = absolute_layer_index(model, layer_index)
    captured: list[Tensor | None] = [None, None, None]

    def hook(index: int) -> Callable[..., None]:
        def record(module: Any, inputs: Any, output: Tensor) -> None:
            captured[index] = output

        return record

    handles = [
        module.register_forward_hook(hook(i))
        for i, module in enumerate(attention_projections(model, layer_index))
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def capture_relations(
    args: DistillationConfig, heads: int | None, student: Any, teacher: Any
) -> Iterator[tuple[list, list] | None]:
    """The query/key/value projections of the relation layers of both models, recorded during the block
    (`None` when the relation term is off, `heads is None`).

    Args:
        args ([`DistillationConfig`]): `relation_teacher_layer` names the teacher's layer.
        heads (`int`, *optional*): the relation heads, `None` when the term is off.
        student ([`~transformers.PreTrainedModel`]): the student (its last layer is compared).
        teacher ([`~transformers.PreTrainedModel`]): the teacher, unwrapped.
    """
    if heads is None:
        yield None
        return
    with (
        capture_attention_projections(student, -1) as student_qkv,
        capture_attention_projections(teacher, args.relation_teacher_layer) as teacher_qkv,
    ):
        yield student_qkv, teacher_qkv


@contextlib.contextmanager
def student_forward(
    args: DistillationConfig, heads: int | None, student: Any, teacher: Any
) -> Iterator[tuple[list, list] | None]:
    """What the loss needs around the forward passes of a step: the relation layers' projections recorded
    ([`capture_relations`]) and the student's attention maps taken before dropout
    ([`~nlpkd.trainer.preparation.undropped_attention`]).

    Args:
        args ([`DistillationConfig`]): the loss settings.
        heads (`int`, *optional*): the relation heads, `None` when the relation term is off.
        student ([`~transformers.PreTrainedModel`]): the student, unwrapped.
        teacher ([`~transformers.PreTrainedModel`]): the teacher, unwrapped.

    Yields:
        The relations' `[query, key, value]` of both models, or `None` when the relation term is off.
    """
    with (
        capture_relations(args, heads, student, teacher) as relations,
        undropped_attention(student, args),
    ):
        yield relations
