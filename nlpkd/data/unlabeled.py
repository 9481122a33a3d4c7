"""Unlabeled text for distillation: read it, check it, and mark its rows so that only the teacher supervises them.

A teacher that labels text is the cheapest data source there is: rows without a label are trained on the
soft (and intermediate) terms only, labeled rows on every term, in one run. In the tokenized training set an
unlabeled row carries the label `-100`, which the hard-label term ignores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from .files import read_records, text_value
from .labels import is_missing_value

__all__ = ["UNLABELED", "extra_training_text", "load_unlabeled", "with_unlabeled"]

# The label of a row that only the teacher supervises (ignored by the hard-label loss).
UNLABELED = -100


def _from_text_file(path: Path, columns: Sequence[str]) -> dict[str, list[str]]:
    if len(columns) != 1:
        raise ValueError(
            f"{path} is plain text (one text per line) but the task reads sentence pairs {tuple(columns)}: "
            "give a TSV, CSV or JSON Lines file with those columns."
        )
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return {columns[0]: [line for line in lines if line]}


def _from_file(
    path_like: str | Path, columns: Sequence[str], label_column: str
) -> dict[str, list[str]]:
    path = Path(path_like)
    if path.suffix.lower() == ".txt" and path.is_file():
        return _from_text_file(path, columns)
    header, records = read_records(path)
    if label_column in header:
        raise ValueError(
            f"{path} has a {label_column!r} column, but unlabeled text carries no labels (they would be "
            f"ignored): drop the column, or pass labeled examples as training data (--train_file)."
        )
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(
            f"{path} lacks the text column(s) {missing} of the task (it has {header}): name them "
            f"{list(columns)}."
        )
    return {c: [text_value(r.get(c)) for r in records] for c in columns}


def _from_python(data: Any, columns: Sequence[str], label_column: str) -> dict[str, list[str]]:
    if isinstance(data, datasets.Dataset):
        if label_column in data.column_names:
            raise ValueError(
                f"unlabeled_data has a {label_column!r} column, but unlabeled text carries no labels: "
                f"remove it (dataset.remove_columns({label_column!r})) or pass it as training data."
            )
        missing = [c for c in columns if c not in data.column_names]
        if missing:
            raise ValueError(
                f"unlabeled_data lacks the text column(s) {missing}; its columns are {data.column_names}."
            )
        return {c: [text_value(v) for v in data[c]] for c in columns}
    if isinstance(data, str) or not isinstance(data, Sequence):
        raise TypeError(
            f"unlabeled_data must be a path, a datasets.Dataset or a list of texts, got {type(data).__name__}."
        )
    rows = [[item] if isinstance(item, str) else list(item) for item in data]
    if any(len(row) != len(columns) for row in rows):
        raise ValueError(
            f"unlabeled_data must hold {'texts' if len(columns) == 1 else 'pairs of texts'} for the text "
            f"column(s) {tuple(columns)}."
        )
    return {c: [row[i] for row in rows] for i, c in enumerate(columns)}


def load_unlabeled(
    source: str | Path | datasets.Dataset | Sequence[Any],
    text_columns: Sequence[str] = ("text",),
    label_column: str = "label",
) -> datasets.Dataset:
    """Unlabeled examples as a `datasets.Dataset` with the task's text columns (and nothing else).

    Args:
        source (`str`, `Path`, `datasets.Dataset` or `list`): a file (`.txt` with one text per line for
            single-text tasks; TSV, CSV or JSON Lines with the text columns), a `Dataset`, or a list of texts
            (or of `(text, text)` pairs).
        text_columns (`Sequence[str]`, *optional*, defaults to `("text",)`): the task's text column(s).
        label_column (`str`, *optional*, defaults to `"label"`): a column of this name is refused.

    Raises:
        `ValueError`: for a file or dataset with a label column, without the text columns, or without any
            non-empty text.
    """
    if isinstance(source, str | Path):
        columns = _from_file(source, text_columns, label_column)
        where = str(source)
    else:
        columns = _from_python(source, text_columns, label_column)
        where = "unlabeled_data"
    keep = [
        i
        for i in range(len(columns[text_columns[0]]))
        if not all(is_missing_value(columns[c][i]) for c in text_columns)
    ]
    if not keep:
        raise ValueError(f"{where} holds no text: give at least one non-empty example.")
    return datasets.Dataset.from_dict({c: [columns[c][i] for i in keep] for c in text_columns})


def with_unlabeled(
    labeled: datasets.Dataset, unlabeled: datasets.Dataset, column: str = "label"
) -> datasets.Dataset:
    """One tokenized training set: the labeled rows, then the unlabeled ones with the label `-100`.

    Args:
        labeled (`datasets.Dataset`): tokenized labeled rows (integer or `ClassLabel` labels).
        unlabeled (`datasets.Dataset`): tokenized rows without a label column (or with missing labels).
        column (`str`, *optional*, defaults to `"label"`): the label column.
    """
    feature = datasets.Value("int64")
    labeled = labeled.cast_column(column, feature)
    if column in unlabeled.column_names:
        unlabeled = unlabeled.remove_columns(column)
    unlabeled = unlabeled.add_column(column, [UNLABELED] * len(unlabeled), feature=feature)
    shared = [c for c in labeled.column_names if c in unlabeled.column_names]
    return datasets.concatenate_datasets(
        [labeled.select_columns(shared), unlabeled.select_columns(shared)]
    )


def extra_training_text(
    labeled: datasets.Dataset,
    text_columns: Sequence[str],
    *,
    unlabeled: Any = None,
    augment: int = 0,
    augment_options: dict[str, Any] | None = None,
) -> datasets.Dataset | None:
    """The text that only the teacher supervises, beside the labeled rows: `augment` seeded variants of each
    labeled example (their original label is dropped: the teacher's soft targets supervise them), then the
    unlabeled text; `None` when there is neither.

    Args:
        labeled (`datasets.Dataset`): the raw labeled training rows (text columns and `label`).
        text_columns (`Sequence[str]`): the task's text column(s).
        unlabeled (*optional*): unlabeled text, anything [`load_unlabeled`] reads.
        augment (`int`, *optional*, defaults to `0`): variants per labeled example (0: none).
        augment_options (`dict`, *optional*): keyword arguments of
            [`~nlpkd.data.augment.augment_dataset`] (`methods`, `seed`, `pair_side`, `tokenizer`, `mlm_model`,
            ...).
    """
    from .augment import augment_dataset

    parts = []
    if augment < 0:
        raise ValueError(f"augment must be >= 0 variants per example, got {augment}.")
    if augment:
        variants = augment_dataset(
            labeled, augment, text_columns=tuple(text_columns), **(augment_options or {})
        )
        parts.append(variants.select_columns(list(text_columns)))
    if unlabeled is not None:
        parts.append(load_unlabeled(unlabeled, text_columns))
    if not parts:
        return None
    features = datasets.Features({c: datasets.Value("string") for c in text_columns})
    return datasets.concatenate_datasets([part.cast(features) for part in parts])
