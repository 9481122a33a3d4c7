"""Input routing: which batch keys each model's `forward` takes, and which dataset columns the Trainer keeps."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from transformers import PreTrainedModel

from ..data.teacher_inputs import CACHE_COLUMN, is_teacher_column, own_columns

__all__ = ["route_inputs", "select_forward_inputs", "signature_columns"]


# Batch keys that are targets, never model inputs.
_TARGET_KEYS = ("labels", "shift_labels", CACHE_COLUMN)


def signature_columns(
    student_keys: set[str], teacher_keys: set[str], teacher_prefix: str | None = None
) -> list[str]:
    """The dataset columns the Trainer must keep: the inputs of both models' `forward` (the teacher's under
    `teacher_prefix` when it reads columns of its own), the labels and the cached teacher logits (the Trainer
    alone would keep only the student's)."""
    own = {f"{teacher_prefix}{key}" for key in teacher_keys} if teacher_prefix else set()
    return sorted(
        student_keys | teacher_keys | own | {"label", "label_ids", "labels", CACHE_COLUMN}
    )


def route_inputs(
    keys: set[str] | None, inputs: Mapping[str, Any], prefix: str | None = None
) -> dict[str, Any]:
    """The entries of a batch that a model's `forward` takes (`keys`, from
    [`~nlpkd.models.forward_input_names`]); with `keys=None` (a `**kwargs` forward), every entry but the targets
    and the teachers' own columns.

    With a `prefix`, the model reads columns of its own (a teacher with another tokenizer than the student's):
    `teacher_input_ids`, ... are given to it as `input_ids`, ..., and nothing else is.
    """
    if prefix is not None:
        own = own_columns(inputs, prefix)
        if not own:
            raise ValueError(
                f"The batch has no {prefix}input_ids, but the teacher reads its own tokenization there (its "
                "tokenizer differs from the student's): tokenize the data with tokenize_dataset(..., "
                "teacher_tokenizer=the teacher's tokenizer) and pad it with DataCollatorWithTeacherPadding."
            )
        inputs = own
    if keys is None:
        return {
            k: v for k, v in inputs.items() if k not in _TARGET_KEYS and not is_teacher_column(k)
        }
    return {k: v for k, v in inputs.items() if k in keys}


def forward_input_names(model: torch.nn.Module) -> set[str] | None:
    """The batch keys a model's `forward` takes by name, never `labels`.

    A teacher and a student of different families take different inputs: a BERT teacher takes
    `token_type_ids`, a DistilBERT student does not. Only named parameters of `forward` count; a
    catch-all `**kwargs` does not, since in transformers it carries flags and loss arguments rather
    than batch columns. Wrappers with a `module` attribute (DDP, DeepSpeed) or `_orig_mod`
    (`torch.compile`) are looked through. A module that routes inputs to models of its own (a
    [`~nlpkd.models.TeacherEnsemble`]) says what it takes through an `input_names()` method.

    Args:
        model (`torch.nn.Module`):
            The model whose `forward` signature decides.

    Returns:
        `set[str]` or `None`: the accepted names; `None` when `forward` names no parameter at all (a
        plain `**kwargs` module), which then takes every key but `labels`.
    """
    module: Any = model
    while not isinstance(module, PreTrainedModel):
        inner = getattr(module, "module", None)
        if inner is None:
            inner = getattr(module, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            break
        module = inner
    own_names = getattr(module, "input_names", None)
    if callable(own_names):
        return own_names()
    accepted = {
        name
        for name, parameter in inspect.signature(module.forward).parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }
    if not accepted:
        return None
    accepted.discard("labels")
    return accepted


def select_forward_inputs(model: torch.nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
    """Keeps the entries of a batch that a model's `forward` takes by name, never `labels`.

    See [`forward_input_names`] for the rule.

    Args:
        model (`torch.nn.Module`):
            The model whose `forward` signature decides.
        batch (`Mapping[str, Any]`):
            The collated batch, e.g. `input_ids`, `attention_mask`, `token_type_ids`, `labels`.

    Returns:
        `dict[str, Any]`: A new dict with the accepted entries, in the batch's order; the values
        are the batch's own objects.
    """
    accepted = forward_input_names(model)
    return {
        key: value
        for key, value in batch.items()
        if (
            key in accepted
            if accepted is not None
            else key != "labels" and not is_teacher_column(key)
        )
    }
