"""Local task data: TSV (GLUE layout), CSV and JSON Lines files, read with their labels as a `ClassLabel`
(classification) or `float32` (regression) column.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from .labels import is_missing_value
from .tasks import TaskSpec

__all__ = ["text_value"]

_TSV_EXTENSIONS = (".tsv",)


_CSV_EXTENSIONS = (".csv",)


_JSON_EXTENSIONS = (".jsonl", ".json")


_ACCEPTED_FORMATS = "GLUE-format TSV (.tsv), CSV (.csv) or JSON Lines (.jsonl, .json)"


TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


_INT_PATTERN = re.compile(r"[+-]?\d+")


def _read_delimited(path: Path, delimiter: str, quoting: int) -> tuple[list[str], list[dict]]:
    rows: list[dict[str, Any]] = []
    # newline="" lets the csv module handle quoted fields that span lines.
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
        header = next(reader, None)
        if header is None:
            raise ValueError(
                f"{path} is empty: it needs a header row with the column names and at least one "
                "example row."
            )
        header = [column.strip() for column in header]
        for record in reader:
            if not record:
                # A trailing blank line is common and carries no example.
                continue
            if len(record) != len(header):
                raise ValueError(
                    f"Could not parse {path}: line {reader.line_num} has {len(record)} fields "
                    f"but the header has {len(header)} ({header}). Expected {_ACCEPTED_FORMATS} "
                    "with one example per line."
                )
            rows.append(dict(zip(header, record, strict=True)))
    return header, rows


def _read_json(path: Path) -> tuple[list[str], list[dict]]:
    text = path.read_text(encoding="utf-8")
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"{path} is empty: it needs at least one JSON object per line.")
    if stripped.startswith("["):
        # `.json` files written as one array of records are accepted too.
        records = json.loads(stripped)
        line_numbers: list[int | None] = [None] * len(records)
    else:
        records, line_numbers = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                # json counts lines within the one line it was given: say where it is in the file.
                raise ValueError(
                    f"Could not parse {path}: line {number} is not valid JSON ({error.msg} at "
                    f"column {error.colno}). Expected one JSON object per line."
                ) from error
            line_numbers.append(number)
    columns: list[str] = []
    for record, number in zip(records, line_numbers, strict=True):
        if not isinstance(record, dict):
            where = f"line {number}" if number is not None else "the array"
            raise ValueError(
                f"Could not parse {path}: {where} holds {type(record).__name__}, not a JSON "
                f"object. Expected {_ACCEPTED_FORMATS} with one object per example."
            )
        columns.extend(key for key in record if key not in columns)
    return columns, records


def read_records(path_like: str | os.PathLike[str]) -> tuple[list[str], list[dict]]:
    """Reads a local file into its column names and one dict per example."""
    path = Path(path_like)
    suffix = path.suffix.lower()
    if suffix not in _TSV_EXTENSIONS + _CSV_EXTENSIONS + _JSON_EXTENSIONS:
        raise ValueError(
            f"Cannot read {path}: unknown extension {suffix or '(none)'!r}. Accepted formats: "
            f"{_ACCEPTED_FORMATS}."
        )
    if path.is_dir():
        raise ValueError(
            f"Cannot read {path}: it is a directory. Give the path of a data file "
            f"({_ACCEPTED_FORMATS})."
        )
    if not path.is_file():
        raise ValueError(f"Cannot read {path}: no such file. Give the path of an existing file.")
    try:
        if suffix in _TSV_EXTENSIONS:
            # GLUE TSVs contain unbalanced quotes inside sentences, so quotes are plain text.
            return _read_delimited(path, "\t", csv.QUOTE_NONE)
        if suffix in _CSV_EXTENSIONS:
            return _read_delimited(path, ",", csv.QUOTE_MINIMAL)
        return _read_json(path)
    except (csv.Error, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"Could not parse {path} ({type(error).__name__}: {error}). Expected "
            f"{_ACCEPTED_FORMATS}, UTF-8 encoded, with a header row (TSV/CSV) or one JSON object "
            "per line."
        ) from error


def _check_columns(columns: list[str], path: str, task: TaskSpec) -> None:
    required = (*task.text_columns, task.label_column)
    missing = [column for column in required if column not in columns]
    if missing:
        raise ValueError(
            f"{path} is missing the column(s) {missing} needed by task {task.name!r} (it needs "
            f"{list(required)}); columns found: {columns}. Rename the columns or pick the right "
            "task."
        )


def text_value(value: Any) -> str:
    # Missing texts become empty strings: the tokenizer then emits only special tokens.
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)


def _class_value(value: Any, path: str, row: int) -> int | str:
    """Turns one raw classification label into an integer id or a label name."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ValueError(
            f"{path}: row {row} has label {value!r}, which is not a class id. Classification "
            "labels must be integer ids or label names."
        )
    text = str(value).strip()
    return int(text) if _INT_PATTERN.fullmatch(text) else text


def _regression_value(value: Any, path: str, row: int) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or np.isnan(number):
        raise ValueError(
            f"{path}: row {row} has label {value!r}, but this regression task needs a number."
        )
    return number


def _label_feature(
    split_labels: dict[str, list[Any]], paths: dict[str, str], task: TaskSpec
) -> tuple[datasets.Features | None, dict[str, list[Any]]]:
    """Converts raw labels to ids and builds the label feature (shared by all splits)."""
    converted: dict[str, list[Any]] = {}
    if task.is_regression:
        for split, raw in split_labels.items():
            converted[split] = [
                _regression_value(value, paths[split], row) for row, value in enumerate(raw, 1)
            ]
        return datasets.Value("float32"), converted

    for split, raw in split_labels.items():
        converted[split] = [
            _class_value(value, paths[split], row) for row, value in enumerate(raw, 1)
        ]
    kinds = {type(value) for values in converted.values() for value in values}
    if kinds == {int, str}:
        raise ValueError(
            f"The label column of task {task.name!r} mixes integer ids and label names in "
            f"{sorted(set(paths.values()))}; use one or the other throughout."
        )

    if kinds == {str}:
        seen = {value for values in converted.values() for value in values}
        # Names that are all official names keep the official order so ids match models trained
        # on the Hub version of the task; anything else is numbered in sorted order.
        if task.label_names is not None and seen <= set(task.label_names):
            names = list(task.label_names)
        else:
            names = sorted(seen)
        if len(names) > task.num_labels:
            raise ValueError(
                f"Task {task.name!r} has {task.num_labels} classes but the data holds "
                f"{len(names)} label names: {names}. Check the label column or the task."
            )
        index = {name: position for position, name in enumerate(names)}
        converted = {split: [index[v] for v in values] for split, values in converted.items()}
        return datasets.ClassLabel(names=names), converted

    for split, values in converted.items():
        bad = [v for v in values if not 0 <= v < task.num_labels]
        if bad:
            raise ValueError(
                f"{paths[split]}: label ids must lie in [0, {task.num_labels}) for task "
                f"{task.name!r}, found {sorted(set(bad))[:5]}. Unlabeled rows (e.g. -1 in GLUE "
                "test files) cannot be used for training or evaluation."
            )
    names = (
        list(task.label_names)
        if task.label_names is not None
        else [str(i) for i in range(task.num_labels)]
    )
    return datasets.ClassLabel(names=names), converted


def load_files(files: dict[str, str], task: TaskSpec) -> datasets.DatasetDict:
    split_records: dict[str, list[dict[str, Any]]] = {}
    for split, path in files.items():
        columns, records = read_records(path)
        _check_columns(columns, path, task)
        if not records:
            raise ValueError(
                f"{path} (split {split!r}) holds no examples; give a file with at least one row."
            )
        unlabeled = [
            row for row, r in enumerate(records, 1) if is_missing_value(r.get(task.label_column))
        ]
        if unlabeled:
            raise ValueError(
                f"{path}: {len(unlabeled)} row(s) have no value in the label column "
                f"{task.label_column!r} (first: data row {unlabeled[0]}). Every training and "
                "evaluation example needs a label."
            )
        split_records[split] = records

    label_feature, labels = _label_feature(
        {
            split: [r[task.label_column] for r in records]
            for split, records in split_records.items()
        },
        files,
        task,
    )
    features = datasets.Features(
        {column: datasets.Value("string") for column in task.text_columns}
        | {"label": label_feature}
    )
    splits = {}
    for split, records in split_records.items():
        table = {c: [text_value(r.get(c)) for r in records] for c in task.text_columns}
        table["label"] = labels[split]
        splits[split] = datasets.Dataset.from_dict(table, features=features)
    return datasets.DatasetDict(splits)


def split_off_validation(
    train: datasets.Dataset, task: TaskSpec, seed: int, validation_fraction: float
) -> tuple[datasets.Dataset, datasets.Dataset]:
    from sklearn.model_selection import train_test_split

    if len(train) < 2:
        raise ValueError(
            f"Cannot split a validation set off a training file with {len(train)} example(s); "
            "give --validation_file as well."
        )
    indices = np.arange(len(train))
    stratify = None
    if not task.is_regression:
        labels = np.asarray(train["label"])
        counts = np.bincount(labels)
        counts = counts[counts > 0]
        n_validation = int(np.ceil(validation_fraction * len(train)))
        # Stratification needs two examples per class and room for every class on both sides;
        # tiny files fall back to a plain seeded shuffle.
        if (
            counts.min() >= 2
            and len(counts) <= n_validation
            and len(counts) <= len(train) - n_validation
        ):
            stratify = labels
    train_idx, validation_idx = train_test_split(
        indices, test_size=validation_fraction, random_state=seed, stratify=stratify
    )
    return train.select(train_idx), train.select(validation_idx)


def check_fraction(validation_fraction: float) -> None:
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction must be strictly between 0 and 1, got {validation_fraction}."
        )


# --------------------------------------------------------------------------------------------
def label_kind(value: Any) -> str:
    if isinstance(value, bool) or isinstance(value, int):
        return "int"
    if isinstance(value, str) and _INT_PATTERN.fullmatch(value.strip()):
        return "int"
    try:
        float(value)
    except (TypeError, ValueError):
        return "name"
    return "float"
