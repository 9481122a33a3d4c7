"""Labels: class names, missing values, and the encoding of raw labels into the ids a model's logits mean."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np

from .tasks import TaskSpec, resolve_task

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "align_label_names",
    "data_label_names",
    "encode_labels",
    "is_generic_label_names",
    "is_missing_value",
    "label_maps",
    "label_names",
    "model_label_names",
]


def is_missing_value(value: Any) -> bool:
    """Whether a raw label or text cell is empty: `None`, NaN or a blank string."""
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def label_names(
    data: datasets.DatasetDict | datasets.Dataset, task: TaskSpec | str
) -> list[str] | None:
    """Class names of a task's data, in id order.

    The names come from the data's own `ClassLabel` feature when it has one (never assumed from
    the task, since datasets order classes differently), else from the task's `label_names`.

    Args:
        data (`datasets.DatasetDict` or `datasets.Dataset`):
            The task's data; for a `DatasetDict` the `train` split is read (or the first split).
        task ([`TaskSpec`] or `str`):
            The task or its name.

    Returns:
        `list[str]` or `None`: the names, or `None` for regression tasks and data without names.
    """
    spec = resolve_task(task)
    if spec.is_regression:
        return None
    dataset = data
    if isinstance(data, datasets.DatasetDict):
        if not data:
            raise ValueError("The DatasetDict has no splits; load the data with load_task_data.")
        dataset = data["train"] if "train" in data else next(iter(data.values()))
    feature = dataset.features.get("label", dataset.features.get(spec.label_column))
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    return list(spec.label_names) if spec.label_names is not None else None


def raw_labels(dataset: datasets.Dataset) -> list[Any]:
    # Class ids of a ClassLabel are only meaningful with its names: read them as names.
    feature = dataset.features["label"]
    values = dataset["label"]
    if isinstance(feature, datasets.ClassLabel):
        return [feature.int2str(v) if v is not None and v >= 0 else None for v in values]
    return list(values)


def is_generic_label_names(names: Sequence[str]) -> bool:
    return all(name == f"LABEL_{i}" for i, name in enumerate(names))


def encode_labels(
    dataset: datasets.Dataset,
    names: list[str] | None,
    role: str,
    owner: str,
    remedy: str = "or a teacher fine-tuned on your labels (nlpkd.finetune)",
) -> datasets.Dataset:
    """Replace `label` by class ids in the order of `names` (or float32 values when `names` is None).

    Label names map through `names`; integer ids are kept when in range. With generic names
    (`LABEL_0`, ...), integer-like strings count as ids too.
    """
    raw = raw_labels(dataset)
    missing = [row for row, value in enumerate(raw) if is_missing_value(value)]
    if missing:
        raise ValueError(
            f"{role}: {len(missing)} example(s) have no label (first: row {missing[0]}). Every "
            "training and evaluation example needs a label; drop the unlabeled rows."
        )
    if names is None:
        try:
            values = [float(value) for value in raw if not isinstance(value, bool)]
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{role}: the teacher is a regression model (one output) but the labels are not "
                f"all numbers ({err}). Give numeric labels, or use a classification teacher."
            ) from err
        if len(values) != len(raw):
            raise ValueError(f"{role}: regression labels must be numbers, not booleans.")
        return dataset.remove_columns("label").add_column(
            "label", values, feature=datasets.Value("float32")
        )

    label2id = {name: i for i, name in enumerate(names)}
    generic = is_generic_label_names(names)
    ids: list[int] = []
    unknown: list[Any] = []
    for value in raw:
        index: int | None = None
        if isinstance(value, str):
            index = label2id.get(value.strip())
            if index is None and generic and value.strip().lstrip("+-").isdigit():
                index = int(value)
        elif isinstance(value, bool | np.bool_):
            index = int(value)
        elif isinstance(value, numbers.Integral):
            index = int(value)
        elif isinstance(value, numbers.Real) and float(value).is_integer():
            # pandas turns an int column with a gap into floats (1.0, 2.0).
            index = int(value)
        if index is None or not 0 <= index < len(names):
            if value not in unknown:
                unknown.append(value)
            continue
        ids.append(index)
    if unknown:
        shown = ", ".join(repr(v) for v in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise ValueError(
            f"{role} has labels that {owner} does not know: {shown}. Its labels are "
            f"{dict(enumerate(names))}: use these names or ids 0..{len(names) - 1}, {remedy}."
        )
    return dataset.remove_columns("label").add_column(
        "label", ids, feature=datasets.ClassLabel(names=list(names))
    )


def data_label_names(dataset: datasets.Dataset) -> list[str] | None:
    feature = dataset.features["label"]
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def model_label_names(teacher: PreTrainedModel) -> list[str] | None:
    config = teacher.config
    if config.num_labels == 1 or getattr(config, "problem_type", None) == "regression":
        return None
    id2label = {int(k): str(v) for k, v in config.id2label.items()}
    return [id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels)]


def label_maps(names: Sequence[str] | None, task: TaskSpec) -> dict[str, Any]:
    """`from_pretrained` keyword arguments that give a classifier the data's own label names."""
    if task.is_regression:
        return {"num_labels": 1, "problem_type": "regression"}
    names = list(names) if names else [str(i) for i in range(task.num_labels)]
    return {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }


def align_label_names(
    model: PreTrainedModel, names: Sequence[str] | None, role: str = "teacher"
) -> None:
    """Check a fine-tuned model's class names against the data's, and name anonymous classes after the data.

    A checkpoint fine-tuned on MNLI with another label order would otherwise be distilled and scored on shuffled
    classes without any error. A checkpoint whose classes are the generic `LABEL_i` is taken to follow the data's
    order (there is nothing to check it against), and gets the data's names so the student and its pipeline
    speak them.

    Args:
        model (`PreTrainedModel`): the teacher (its config is updated in place when its names are generic).
        names (`list[str]`, *optional*): the data's class names in label-id order.
        role (`str`, *optional*, defaults to `"teacher"`): names the model in the message (`"student"` for a
            `--student` checkpoint with its own head).
    """
    if not names:
        return
    id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
    if all(v == f"LABEL_{k}" for k, v in id2label.items()):
        if len(id2label) == len(names):
            model.config.id2label = dict(enumerate(names))
            model.config.label2id = {name: i for i, name in enumerate(names)}
        return
    if [id2label.get(i) for i in range(len(names))] != list(names):
        advice = (
            "Use a teacher fine-tuned with this label order, or fine-tune one from a base encoder "
            "(--finetune_teacher always)."
            if role == "teacher"
            else f"Use a {role} trained with this label order, or its base encoder without a head."
        )
        raise ValueError(
            f"The {role}'s labels {id2label} do not match the data's labels {dict(enumerate(names))}: "
            f"logit i must mean label i. {advice}"
        )
