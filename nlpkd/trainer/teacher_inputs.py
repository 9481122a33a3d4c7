"""Which columns of a batch the teacher reads: the student's, or its own tokenization when its tokenizer differs
from the student's (`teacher_input_ids`, ...; see `nlpkd.data.teacher_inputs`).

[`plan_teacher_inputs`] decides it once, in the trainer's `__init__`, from the two tokenizers and the columns
the data carries, and refuses what cannot work with two tokenizations before any training.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import DataCollatorWithPadding

from ..config import DistillationConfig
from ..data.teacher_inputs import (
    DataCollatorWithTeacherPadding,
    carried_prefixes,
    teacher_column_prefixes,
)
from ..models.causal import OTHER_VOCABULARY_REFUSAL, is_causal_lm
from ..models.checks import check_tokenizers_match
from .preparation import check_pair

__all__ = ["check_terms_for_own_inputs", "plan_teacher_inputs"]


def _columns(dataset: Any) -> set[str]:
    # A datasets.Dataset names its columns; another map-style dataset shows them in its first example.
    names = getattr(dataset, "column_names", None)
    if names is not None:
        return set(names)
    try:
        first = dataset[0]
    except (TypeError, IndexError, KeyError, NotImplementedError):
        return set()
    return set(first) if isinstance(first, dict) else set()


def _teacher_count(teacher: Any) -> int:
    if isinstance(teacher, list | tuple):
        return len(teacher)
    return len(getattr(teacher, "teachers", None) or [teacher])


def _teacher_tokenizers(teacher_processing_class: Any, count: int) -> list[Any]:
    if not isinstance(teacher_processing_class, list | tuple):
        return [teacher_processing_class] * count
    if len(teacher_processing_class) != count:
        raise ValueError(
            f"teacher_processing_class holds {len(teacher_processing_class)} tokenizers for {count} teachers: give "
            "one per teacher (None for a teacher with the student's tokenizer), or one for all."
        )
    return list(teacher_processing_class)


def column_prefixes(
    tokenizer: Any, teacher_processing_class: Any, count: int, carried: set[str]
) -> list[str | None]:
    """The prefix of the columns each of `count` teachers reads (`None`: the student's columns).

    Args:
        tokenizer: the student's tokenizer (`processing_class`).
        teacher_processing_class: the teacher's tokenizer, or one per teacher.
        count (`int`): the number of teachers.
        carried (`set[str]`): the prefixes of the teacher tokenizations the data carries.
    """
    if teacher_processing_class is None or tokenizer is None:
        if carried:
            side = (
                "teacher_processing_class"
                if teacher_processing_class is None
                else "processing_class"
            )
            whose = "teacher's" if teacher_processing_class is None else "student's"
            raise ValueError(
                f"The data carries a teacher's own tokenization ({sorted(carried)[0]}input_ids) but no {side} was "
                f"given: pass {side}=the {whose} tokenizer, so that each side is padded and routed with its own."
            )
        return [None] * count
    teachers = _teacher_tokenizers(teacher_processing_class, count)
    if not carried:
        # The data carries one tokenization: every teacher must read it as it was trained to.
        for own in teachers:
            check_tokenizers_match(tokenizer, own)
        return [None] * count
    prefixes = teacher_column_prefixes(tokenizer, teachers)
    missing = sorted({p for p in prefixes if p is not None} - carried)
    if missing:
        raise ValueError(
            f"The teachers' tokenizers need the columns {missing[0]}input_ids, ..., which the data lacks (it "
            f"carries {sorted(carried)}): tokenize it with tokenize_dataset(..., teacher_tokenizer=[one tokenizer "
            "per teacher]), the same tokenizers as teacher_processing_class."
        )
    return prefixes


def check_terms_for_own_inputs(
    student: nn.Module, teacher: nn.Module, args: DistillationConfig, primary_reads_own: bool = True
) -> None:
    """Raise a `ValueError` for what cannot work when a teacher reads its own tokenization: causal language
    models, and (when the primary teacher, whose layers the intermediate terms use, reads its own) the terms that
    compare the two models token by token."""
    primary = getattr(teacher, "primary", teacher)
    if is_causal_lm(student) or is_causal_lm(primary):
        raise ValueError(f"Teacher and student tokenizers differ: {OTHER_VOCABULARY_REFUSAL}")
    if not primary_reads_own:
        return
    terms = []
    if args.alpha_hidden > 0 and args.hidden_loss != "pkd":
        terms.append(f"alpha_hidden (hidden_loss={args.hidden_loss!r})")
    if args.alpha_attn > 0:
        terms.append("alpha_attn")
    if args.alpha_relation > 0:
        terms.append("alpha_relation")
    if terms:
        raise ValueError(
            f"{', '.join(terms)} compare the student and the teacher token by token, but the teacher reads its "
            "own tokenization of the text (its tokenizer differs from the student's), so their tokens do not "
            f"line up: set {' and '.join(t.split(' ')[0] for t in terms)} to 0. What remains with two tokenizers: "
            "alpha_kd (every kd_loss), alpha_ce, and alpha_hidden with hidden_loss='pkd' (the first token's "
            "vector of each mapped layer, through the learned projection)."
        )


def _check_student_columns_teachers(student: nn.Module, teacher: nn.Module) -> None:
    # A teacher of an ensemble that reads the student's columns must read the student's token ids.
    prefixes = getattr(teacher, "input_prefixes", None) or []
    vocab = getattr(student.config, "vocab_size", None)
    for index, (member, prefix) in enumerate(zip(teacher.teachers, prefixes, strict=True), start=1):
        if prefix is None and getattr(member.config, "vocab_size", None) != vocab:
            raise ValueError(
                f"Teacher {index} reads the student's tokenization but has vocab_size="
                f"{member.config.vocab_size}, the student {vocab}: give its own tokenizer in "
                "teacher_processing_class=[...] and tokenize for it with tokenize_dataset(..., teacher_tokenizer=[...])."
            )


def _collator(kwargs: dict[str, Any], tokenizer: Any, teachers: Any) -> None:
    collator = kwargs.get("data_collator")
    if collator is None:
        kwargs["data_collator"] = DataCollatorWithTeacherPadding(tokenizer, teachers)
    elif type(collator) is DataCollatorWithPadding:
        raise ValueError(
            "data_collator=DataCollatorWithPadding pads every column with one tokenizer, but the data carries the "
            "teacher's own tokenization: use nlpkd.data.DataCollatorWithTeacherPadding(student_tokenizer, "
            "teacher_tokenizer), or leave data_collator out."
        )


def plan_teacher_inputs(
    student: nn.Module,
    teacher: Any,
    args: DistillationConfig,
    teacher_processing_class: Any,
    trainer_kwargs: dict[str, Any],
) -> tuple[nn.Module, str | None]:
    """Decide which columns the teacher reads, check the pair, and return the teacher (loaded, several made one
    ensemble that routes each teacher's columns) with the prefix of the single teacher's own columns (`None`
    when it reads the student's, and for an ensemble, which routes its teachers itself).

    A teacher reads its own columns when its tokenizer (`teacher_processing_class`, one or one per teacher)
    differs from the student's (`processing_class`) and the data carries that tokenization (from
    `tokenize_dataset(..., teacher_tokenizer=...)`). Then the default collator becomes a
    [`~nlpkd.data.DataCollatorWithTeacherPadding`] (set in `trainer_kwargs`), and the terms that compare
    tokens are refused. Tokenizers that differ over data with one tokenization fail as before
    ([`~nlpkd.models.check_tokenizers_match`]), with a pointer to this mode.

    Args:
        student (`nn.Module`): the student.
        teacher: the teacher as the trainer was given it (model, path, list, ensemble).
        args ([`DistillationConfig`]): the settings.
        teacher_processing_class: the teacher's tokenizer, or one per teacher.
        trainer_kwargs (`dict`): the other keywords of the trainer (`processing_class`, `train_dataset`,
            `eval_dataset`, `data_collator`); `data_collator` is set here when it was not given.
    """
    tokenizer = trainer_kwargs.get("processing_class")
    data = [trainer_kwargs.get("train_dataset"), trainer_kwargs.get("eval_dataset")]
    carried = set().union(*(carried_prefixes(_columns(d)) for d in data if d is not None))
    count = _teacher_count(teacher)
    prefixes = column_prefixes(tokenizer, teacher_processing_class, count, carried)
    own = any(p is not None for p in prefixes)
    ensemble_prefixes = prefixes if own and count > 1 else None
    teacher = check_pair(student, teacher, args, ensemble_prefixes)
    if not own:
        return teacher, None
    check_terms_for_own_inputs(student, teacher, args, prefixes[0] is not None)
    if count > 1:
        _check_student_columns_teachers(student, teacher)
    _collator(trainer_kwargs, tokenizer, _teacher_tokenizers(teacher_processing_class, count))
    return teacher, (prefixes[0] if count == 1 else None)
