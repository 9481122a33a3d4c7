"""Anything table-like (a `Dataset`, a pandas `DataFrame`, a dict of columns, a list of texts or pairs) as a
`datasets.Dataset` with the text columns and a `label` column: the Python API's inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets

__all__ = ["as_dataset", "as_list", "pair_aware_columns", "parse_text_columns"]


def parse_text_columns(text_column: str | Sequence[str]) -> tuple[str, ...]:
    columns = (text_column,) if isinstance(text_column, str) else tuple(text_column)
    if len(columns) not in (1, 2) or not all(isinstance(c, str) and c for c in columns):
        raise ValueError(
            f"text_column must name one column, or two for sentence pairs, e.g. "
            f"text_column=('question', 'answer'); got {text_column!r}."
        )
    return columns


def as_list(data: Any) -> Any:
    # A pandas Series or a NumPy array of texts (df["text"]) is a list of texts too.
    if type(data).__name__ in ("Series", "ndarray") and hasattr(data, "tolist"):
        return data.tolist()
    return data


def _is_text_list(data: Any) -> bool:
    return isinstance(data, Sequence) and not isinstance(data, str | bytes | Mapping)


def _is_pair_list(data: Any) -> bool:
    return (
        _is_text_list(data)
        and len(data) > 0
        and isinstance(data[0], Sequence)
        and not isinstance(data[0], str)
    )


def pair_aware_columns(data: Any, columns: tuple[str, ...]) -> tuple[str, ...]:
    # A list of (text, text) pairs with the single default column gets a second column name, so
    # `distill(teacher, pairs, labels=...)` works without naming columns.
    if _is_pair_list(data) and len(columns) == 1:
        return (columns[0], f"{columns[0]}_pair")
    return columns


def as_dataset(
    data: Any,
    labels: Sequence[Any] | None,
    text_columns: tuple[str, ...],
    label_column: str,
    role: str,
) -> datasets.Dataset:
    """Any accepted input kind -> a `Dataset` with exactly the text columns and a `label` column."""
    labels_name = "labels" if role == "train_data" else "eval_labels"
    data = as_list(data)
    labels = as_list(labels)
    if isinstance(data, datasets.DatasetDict):
        raise ValueError(
            f"{role} is a DatasetDict with splits {list(data)}; pass one split, e.g. "
            f"{role}=data['train']."
        )
    if labels is not None and not _is_text_list(data):
        raise ValueError(
            f"{labels_name}= is for a list of texts; {role} is a {type(data).__name__}, whose "
            f"labels are read from its column {label_column!r}. Leave {labels_name} out."
        )
    if isinstance(data, datasets.Dataset):
        dataset = data
    elif type(data).__module__.startswith("pandas") and type(data).__name__ == "DataFrame":
        dataset = datasets.Dataset.from_pandas(data, preserve_index=False)
    elif isinstance(data, Mapping):
        dataset = datasets.Dataset.from_dict({key: list(value) for key, value in data.items()})
    elif _is_text_list(data):
        if labels is None:
            raise ValueError(
                f"{role} is a list of texts: pass their labels too ({labels_name}=[...], names "
                "or ids), or pass a Dataset / DataFrame with a label column."
            )
        if len(labels) != len(data):
            raise ValueError(
                f"{role} holds {len(data)} texts but {labels_name} holds {len(labels)} labels; "
                "give one label per text."
            )
        if not data:
            raise ValueError(f"{role} is empty; give at least one example.")
        rows = [[item] if isinstance(item, str) else list(item) for item in data]
        widths = {len(row) for row in rows}
        if widths != {len(text_columns)}:
            kind = "texts" if len(text_columns) == 1 else "pairs of texts"
            raise ValueError(
                f"{role} must hold {kind} for text_column={text_columns!r}, but its items have "
                f"{sorted(widths)} text(s) each. Give strings for one column, (first, second) "
                "tuples for a pair."
            )
        labels = list(labels)
        if len({isinstance(label, str) for label in labels}) > 1:
            raise ValueError(
                f"{labels_name} mixes label names and numbers; use one kind throughout, e.g. "
                "all names ('positive') or all ids (2)."
            )
        columns = {name: [row[i] for row in rows] for i, name in enumerate(text_columns)}
        columns[label_column] = labels
        dataset = datasets.Dataset.from_dict(columns)
    else:
        raise TypeError(
            f"{role} must be a datasets.Dataset, a pandas DataFrame, a dict of columns or a list "
            f"of texts, got {type(data).__name__}."
        )
    missing = [c for c in (*text_columns, label_column) if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{role} has no column(s) {missing}; its columns are {dataset.column_names}. Name "
            "the text column(s) with text_column=... and the labels with label_column=...."
        )
    if len(dataset) == 0:
        raise ValueError(f"{role} is empty; give at least one example.")
    dataset = dataset.select_columns([*text_columns, label_column])
    if label_column != "label":
        dataset = dataset.rename_column(label_column, "label")
    return dataset
