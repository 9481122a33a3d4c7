"""The teacher's own inputs, for a teacher whose tokenizer differs from the student's.

A sequence classifier's soft targets are over classes, not tokens, so a teacher and a student with different
tokenizers need no alignment: each reads the same text through its own tokenizer. The data then carries two
tokenizations of every example, the student's in the usual columns (`input_ids`, `attention_mask`,
`token_type_ids`) and the teacher's in columns of its own with a prefix (`teacher_input_ids`,
`teacher_attention_mask`, ...). With several teachers, each tokenizer that differs from the student's gets a
prefix of its own (`teacher_` for the first teacher, `teacher2_` for the second, ...); teachers that share a
tokenizer share its columns, and a teacher with the student's tokenizer reads the student's columns.

This module holds that naming rule, the views of a dataset that one model reads, the check that a tokenizer can
encode the texts, and [`DataCollatorWithTeacherPadding`], which pads each tokenization with its own tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
from transformers import DataCollatorWithPadding

__all__ = [
    "CACHE_COLUMN",
    "TEACHER_PREFIX",
    "DataCollatorWithTeacherPadding",
    "carried_prefixes",
    "check_tokenizer_reads",
    "is_teacher_column",
    "own_columns",
    "same_tokenizer",
    "student_view",
    "teacher_column_prefixes",
    "teacher_prefix",
    "teacher_tokenizer_groups",
    "teacher_view",
]

# The cached teacher logits (nlpkd.trainer.cache): a column of the training set, never a teacher input.
CACHE_COLUMN = "teacher_logits"

# The prefix of the first teacher's own columns: `teacher_input_ids`, `teacher_attention_mask`, ...
TEACHER_PREFIX = "teacher_"

_TEACHER_COLUMN = re.compile(r"^teacher\d*_")

# Label columns that every view of a dataset keeps.
_LABEL_COLUMNS = ("label", "labels", "label_ids")

# A text every tokenizer can read: two tokenizers that agree on the vocabulary but not here (casing, accents)
# would give a teacher other ids than it was trained on.
_PROBE = "Hello World, naïve café 123 -- it's THE test."


def teacher_prefix(index: int = 0) -> str:
    """The prefix of the columns of teacher `index` (0-based): `teacher_`, then `teacher2_`, `teacher3_`, ..."""
    return TEACHER_PREFIX if index == 0 else f"teacher{index + 1}_"


def is_teacher_column(name: str) -> bool:
    """Whether a column holds a teacher's own input (`teacher_input_ids`, `teacher2_attention_mask`, ...); the
    cached `teacher_logits` are a target, not an input."""
    return bool(_TEACHER_COLUMN.match(name)) and name != CACHE_COLUMN


def own_columns(row: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of `row` (a batch or an example) that carry `prefix`, renamed without it: the inputs of the
    model that reads those columns (`teacher_input_ids` -> `input_ids`)."""
    return {
        name[len(prefix) :]: value
        for name, value in row.items()
        if name.startswith(prefix) and name != CACHE_COLUMN
    }


def same_tokenizer(first: Any, second: Any) -> bool:
    """Whether two tokenizers give the same token ids: the same vocabulary, and the same ids for a probe text
    (which catches a different casing or normalisation over one vocabulary)."""
    if first is second:
        return True
    if first.get_vocab() != second.get_vocab():
        return False
    return first(_PROBE)["input_ids"] == second(_PROBE)["input_ids"]


def teacher_column_prefixes(tokenizer: Any, teacher_tokenizers: Sequence[Any]) -> list[str | None]:
    """The prefix of the columns each teacher reads: `None` for a teacher with the student's tokenizer (or no
    tokenizer given), else the prefix of the first teacher with the same tokenizer ([`teacher_prefix`]).

    Args:
        tokenizer: the student's tokenizer.
        teacher_tokenizers (`Sequence`): one tokenizer per teacher (`None`: the student's).
    """
    prefixes: list[str | None] = []
    seen: list[tuple[Any, str]] = []
    for index, own in enumerate(teacher_tokenizers):
        if own is not None and not (callable(own) and hasattr(own, "get_vocab")):
            raise ValueError(
                f"The teacher tokenizer {index + 1} ({type(own).__name__}) is not a tokenizer: give the tokenizer "
                "the teacher was trained with (AutoTokenizer.from_pretrained(its folder))."
            )
        if own is None or same_tokenizer(tokenizer, own):
            prefixes.append(None)
            continue
        prefix = next((p for other, p in seen if same_tokenizer(other, own)), None)
        if prefix is None:
            prefix = teacher_prefix(index)
            seen.append((own, prefix))
        prefixes.append(prefix)
    return prefixes


def teacher_tokenizer_groups(tokenizer: Any, teacher_tokenizers: Any) -> dict[str, Any]:
    """`{prefix: tokenizer}` for each teacher tokenization that differs from the student's (empty when every
    teacher reads the student's columns).

    Args:
        tokenizer: the student's tokenizer.
        teacher_tokenizers: one tokenizer, or one per teacher (`None`: the student's).
    """
    tokenizers = _as_list(teacher_tokenizers)
    prefixes = teacher_column_prefixes(tokenizer, tokenizers)
    return {p: t for p, t in zip(prefixes, tokenizers, strict=True) if p is not None}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def carried_prefixes(column_names: Iterable[str]) -> set[str]:
    """The prefixes of the teacher tokenizations that a dataset's columns carry (`{"teacher_"}` for a dataset
    with `teacher_input_ids`)."""
    return {
        name[: -len("input_ids")]
        for name in column_names
        if is_teacher_column(name) and name.endswith("_input_ids")
    }


def teacher_view(dataset: datasets.Dataset, prefix: str | None) -> datasets.Dataset:
    """The dataset as one teacher reads it: its own columns renamed without `prefix`, and the labels (the
    student's view when `prefix` is `None`)."""
    if prefix is None:
        return student_view(dataset)
    own = [c for c in dataset.column_names if c.startswith(prefix) and c != CACHE_COLUMN]
    if not own:
        raise ValueError(
            f"The dataset has no {prefix}input_ids column (columns: {dataset.column_names}): tokenize it for the "
            "teacher too, with tokenize_dataset(..., teacher_tokenizer=the teacher's tokenizer)."
        )
    keep = [c for c in dataset.column_names if c in _LABEL_COLUMNS]
    view = dataset.select_columns(own + keep)
    return view.rename_columns({c: c[len(prefix) :] for c in own})


def student_view(dataset: datasets.Dataset) -> datasets.Dataset:
    """The dataset without the teachers' own columns: what the student (and a teacher with its tokenizer) reads."""
    teacher_columns = [c for c in dataset.column_names if is_teacher_column(c)]
    return dataset.remove_columns(teacher_columns) if teacher_columns else dataset


def check_tokenizer_reads(
    tokenizer: Any, texts: Sequence[Any], role: str, max_unknown: float = 0.5
) -> None:
    """Raise a `ValueError` in one line when a tokenizer cannot encode a task's texts: it fails on them, or it
    reads more than `max_unknown` of their tokens as its unknown token (a vocabulary of another language or
    script, or the wrong tokenizer).

    Args:
        tokenizer: the tokenizer to check.
        texts (`Sequence`): sample texts, or `(text, text)` pairs.
        role (`str`): names the tokenizer in the message, e.g. `"The teacher's tokenizer"`.
        max_unknown (`float`, *optional*, defaults to `0.5`): the largest share of unknown tokens accepted.
    """
    remedy = (
        "give the tokenizer the model was trained with (AutoTokenizer.from_pretrained(its folder))"
    )
    if not callable(tokenizer) or not hasattr(tokenizer, "pad"):
        raise ValueError(f"{role} ({type(tokenizer).__name__}) is not a tokenizer: {remedy}.")
    columns = list(zip(*texts, strict=True)) if texts and isinstance(texts[0], tuple) else [texts]
    try:
        # Truncated: a sample of each text is enough, and longer ones would warn about the model's maximum.
        encoded = tokenizer(
            *[list(c) for c in columns], add_special_tokens=False, truncation=True, max_length=256
        )["input_ids"]
    except Exception as err:  # noqa: BLE001 - any failure means the same thing to the user
        raise ValueError(
            f"{role} ({type(tokenizer).__name__}) cannot encode the texts ({type(err).__name__}: {err}): {remedy}."
        ) from err
    unknown_id = getattr(tokenizer, "unk_token_id", None)
    tokens = [token for ids in encoded for token in ids]
    if unknown_id is None or not tokens:
        return
    share = sum(token == unknown_id for token in tokens) / len(tokens)
    if share > max_unknown:
        raise ValueError(
            f"{role} ({type(tokenizer).__name__}) reads {share:.0%} of the tokens of these texts as its unknown "
            f"token {tokenizer.unk_token!r}, so it cannot encode them: {remedy}."
        )


@dataclass
class DataCollatorWithTeacherPadding:
    """Pads the student's columns with the student's tokenizer and each teacher's own columns
    (`teacher_input_ids`, ...) with that teacher's tokenizer: its own padding token, side and attention mask.

    Like [`~transformers.DataCollatorWithPadding`], which pads each tokenization here (`label` becomes
    `labels`, other columns such as cached `teacher_logits` are stacked). A batch that holds only the teachers'
    columns (the teacher-logit cache) or only the student's (evaluation data tokenized for the student) is
    padded too.

    Args:
        tokenizer: the student's tokenizer.
        teacher_tokenizer: the teacher's tokenizer, or one per teacher (`None`: the student's); the prefixes of
            their columns follow [`teacher_column_prefixes`], as `tokenize_dataset` wrote them.
        padding (`bool` or `str`, *optional*, defaults to `True`): as for `DataCollatorWithPadding`.
        max_length (`int`, *optional*): with `padding="max_length"`, the length of every tokenization.
        pad_to_multiple_of (`int`, *optional*): as for `DataCollatorWithPadding`.
        return_tensors (`str`, *optional*, defaults to `"pt"`): as for `DataCollatorWithPadding`.

    Example:

    ```python
    >>> data = tokenize_dataset(raw, student_tokenizer, "bbc_news", 64, teacher_tokenizer=teacher_tokenizer)
    >>> collate = DataCollatorWithTeacherPadding(student_tokenizer, teacher_tokenizer)
    >>> batch = collate([data["train"][i] for i in range(8)])   # input_ids, ..., teacher_input_ids, ...
    ```
    """

    tokenizer: Any
    teacher_tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"
    _collators: dict[str, DataCollatorWithPadding] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        groups = teacher_tokenizer_groups(self.tokenizer, self.teacher_tokenizer)
        self._collators = {
            prefix: self._collator(own) for prefix, own in {"": self.tokenizer, **groups}.items()
        }

    def _collator(self, tokenizer: Any) -> DataCollatorWithPadding:
        return DataCollatorWithPadding(
            tokenizer,
            padding=self.padding,
            max_length=self.max_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_tensors=self.return_tensors,
        )

    def __call__(self, features: list[Mapping[str, Any]]) -> dict[str, Any]:
        rows = [dict(feature) for feature in features]
        batch: dict[str, Any] = {}
        student_rows = [{k: v for k, v in row.items() if not is_teacher_column(k)} for row in rows]
        if student_rows and student_rows[0]:
            batch.update(self._collators[""](student_rows))
        for prefix, collate in self._collators.items():
            own = [own_columns(row, prefix) for row in rows] if prefix else []
            if own and own[0]:
                batch.update({prefix + name: value for name, value in collate(own).items()})
        return batch
