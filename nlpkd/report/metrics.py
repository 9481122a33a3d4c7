"""Task metrics computed locally with scikit-learn and SciPy.

The metric keys match those of Hugging Face's GLUE metric (`accuracy`, `f1`,
`matthews_correlation`, `pearson`, `spearmanr`) so numbers compare directly with published
results, but nothing is downloaded: `evaluate.load` would fetch the metric script from the Hub.

"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import EvalPrediction

from ..data.tasks import TaskSpec, get_task

__all__ = ["compute_task_metrics", "make_compute_metrics"]


def _predicted_values(task: TaskSpec, predictions: np.ndarray) -> np.ndarray:
    if task.is_regression:
        if predictions.ndim == 2 and predictions.shape[1] == 1:
            predictions = predictions[:, 0]
        if predictions.ndim != 1:
            raise ValueError(
                f"Task {task.name!r} is a regression task: predictions must have shape (batch,) "
                f"or (batch, 1), got {predictions.shape}."
            )
        return predictions.astype(np.float64)
    if predictions.ndim != 2 or predictions.shape[1] != task.num_labels:
        raise ValueError(
            f"Task {task.name!r} has {task.num_labels} classes: predictions must be logits of "
            f"shape (batch, {task.num_labels}), got {predictions.shape}. Pass the model's raw "
            "logits, not the predicted ids."
        )
    return predictions.argmax(axis=-1)


def compute_task_metrics(
    task: TaskSpec | str, predictions: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """Compute a task's metrics from model outputs.

    Classification: the predicted class is the argmax of the logits; `accuracy`, `f1` (binary,
    positive class 1) and `matthews_correlation` compare it with the labels. Regression: `pearson`
    and `spearmanr` correlate the predictions with the labels (NaN when either is constant, as
    the correlation is undefined).

    Args:
        task ([`~nlpkd.data.TaskSpec`] or `str`):
            The task or its name; its `metric_names` decide which metrics are returned.
        predictions (`np.ndarray`):
            Raw logits of shape `(batch, num_labels)` for classification, or predictions of shape
            `(batch,)` or `(batch, 1)` for regression.
        labels (`np.ndarray`):
            Gold labels of shape `(batch,)`: class ids, or real values for regression.

    Returns:
        `dict[str, float]`: one plain Python float per metric name of the task.

    Raises:
        `ValueError`: if the shapes do not fit the task or each other, or the batch is empty.
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (batch,), got {labels.shape}.")
    if len(labels) == 0:
        raise ValueError("Cannot compute metrics on an empty batch: labels has no element.")
    predicted = _predicted_values(spec, predictions)
    if len(predicted) != len(labels):
        raise ValueError(
            f"predictions hold {len(predicted)} examples but labels hold {len(labels)}; they "
            "must describe the same batch."
        )

    results: dict[str, float] = {}
    for name in spec.metric_names:
        if name == "accuracy":
            value = accuracy_score(labels, predicted)
        elif name == "f1":
            value = f1_score(labels, predicted, average="binary", pos_label=1, zero_division=0.0)
        elif name == "matthews_correlation":
            value = matthews_corrcoef(labels, predicted)
        elif name == "pearson":
            value = pearsonr(predicted, labels.astype(np.float64))[0]
        elif name == "spearmanr":
            value = spearmanr(predicted, labels.astype(np.float64))[0]
        else:
            raise ValueError(f"Task {spec.name!r} asks for the unknown metric {name!r}.")
        results[name] = float(value)
    return results


def make_compute_metrics(
    task: TaskSpec | str,
) -> Callable[[EvalPrediction], dict[str, float]]:
    """Build the `compute_metrics` callable that `transformers.Trainer` expects for a task.

    Args:
        task ([`~nlpkd.data.TaskSpec`] or `str`):
            The task or its name.

    Returns:
        `Callable[[EvalPrediction], dict[str, float]]`: computes [`compute_task_metrics`] on an
        `EvalPrediction`. When the model returned several outputs, the first one is taken as the
        logits.

    Raises:
        `ValueError`: if the task name is unknown (raised now, not at the first evaluation).
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
        # The Trainer hands over a tuple when the model returns more than the logits.
        if isinstance(predictions, tuple | list):
            predictions = predictions[0]
        if isinstance(labels, tuple | list):
            labels = labels[0]
        return compute_task_metrics(spec, predictions, labels)

    return compute_metrics
