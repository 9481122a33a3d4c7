"""Tests of the local task metrics against references written from the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from transformers import EvalPrediction

from nlpkd.data import TASKS, TaskSpec
from nlpkd.report import compute_task_metrics, make_compute_metrics

# --------------------------------------------------------------------------------------------
# Naive references
# --------------------------------------------------------------------------------------------


def confusion(predicted: list[int], labels: list[int]) -> tuple[int, int, int, int]:
    """(TP, TN, FP, FN) with class 1 as the positive class."""
    tp = sum(p == 1 and y == 1 for p, y in zip(predicted, labels, strict=True))
    tn = sum(p == 0 and y == 0 for p, y in zip(predicted, labels, strict=True))
    fp = sum(p == 1 and y == 0 for p, y in zip(predicted, labels, strict=True))
    fn = sum(p == 0 and y == 1 for p, y in zip(predicted, labels, strict=True))
    return tp, tn, fp, fn


def naive_pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sx = math.sqrt(sum((a - mx) ** 2 for a in x))
    sy = math.sqrt(sum((b - my) ** 2 for b in y))
    return cov / (sx * sy)


def naive_ranks(values: list[float]) -> list[float]:
    """1-based ranks; tied values share the average of the ranks they span."""
    return [
        sum(1 for w in values if w < v) + (sum(1 for w in values if w == v) + 1) / 2 for v in values
    ]


def logits_for(predicted: list[int], num_labels: int) -> np.ndarray:
    """Logits whose argmax is `predicted`, with distracting non-zero values elsewhere."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(predicted), num_labels))
    for row, label in enumerate(predicted):
        logits[row, label] = np.abs(logits[row]).max() + 1.0
    return logits.astype(np.float32)


# Chosen so that TP=3, TN=2, FP=1, FN=2: precision 3/4 and recall 3/5 differ.
PREDICTED = [1, 1, 1, 1, 0, 0, 0, 0]
LABELS = [1, 1, 1, 0, 1, 1, 0, 0]

# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


def test_reference_counts_are_what_the_cases_say() -> None:
    assert confusion(PREDICTED, LABELS) == (3, 2, 1, 2)


def test_accuracy_sst2() -> None:
    result = compute_task_metrics("sst2", logits_for(PREDICTED, 2), np.array(LABELS))
    assert result == {"accuracy": pytest.approx(5 / 8)}


def test_f1_and_accuracy_mrpc_qqp() -> None:
    tp, tn, fp, fn = confusion(PREDICTED, LABELS)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    expected_f1 = 2 * precision * recall / (precision + recall)
    assert expected_f1 == pytest.approx(2 / 3)
    for task in ("mrpc", "qqp"):
        result = compute_task_metrics(task, logits_for(PREDICTED, 2), np.array(LABELS))
        assert set(result) == {"f1", "accuracy"}
        assert result["f1"] == pytest.approx(expected_f1)
        assert result["accuracy"] == pytest.approx((tp + tn) / 8)


def test_f1_positive_class_is_one() -> None:
    # Swapping the classes changes F1: it is not symmetric, so the positive class matters.
    flipped_predicted = [1 - p for p in PREDICTED]
    flipped_labels = [1 - y for y in LABELS]
    tp, _, fp, fn = confusion(flipped_predicted, flipped_labels)
    expected = 2 * tp / (2 * tp + fp + fn)
    assert expected == pytest.approx(4 / 7)
    result = compute_task_metrics("mrpc", logits_for(flipped_predicted, 2), flipped_labels)
    assert result["f1"] == pytest.approx(expected)


def test_matthews_correlation_cola() -> None:
    tp, tn, fp, fn = confusion(PREDICTED, LABELS)
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert expected == pytest.approx(4 / math.sqrt(240))
    result = compute_task_metrics("cola", logits_for(PREDICTED, 2), np.array(LABELS))
    assert result == {"matthews_correlation": pytest.approx(expected)}


def test_matthews_correlation_constant_prediction_is_zero() -> None:
    # Undefined by the formula (zero denominator); 0 by convention, as in the GLUE metric.
    result = compute_task_metrics("cola", logits_for([1, 1, 1, 1], 2), np.array([1, 0, 1, 0]))
    assert result["matthews_correlation"] == 0.0


def test_multiclass_accuracy_mnli_and_bbc_news() -> None:
    predicted = [0, 1, 2, 2, 1, 0]
    labels = [0, 1, 1, 2, 0, 2]
    result = compute_task_metrics("mnli", logits_for(predicted, 3), np.array(labels))
    assert result == {"accuracy": pytest.approx(3 / 6)}
    predicted = [4, 3, 2, 1, 0, 4, 4]
    labels = [4, 3, 2, 0, 0, 1, 4]
    result = compute_task_metrics("bbc_news", logits_for(predicted, 5), np.array(labels))
    assert result == {"accuracy": pytest.approx(5 / 7)}


@pytest.mark.parametrize("task", ["sst2", "qnli", "rte", "wnli"])
def test_accuracy_tasks(task: str) -> None:
    result = compute_task_metrics(task, logits_for([0, 1, 1], 2), np.array([0, 1, 0]))
    assert result == {"accuracy": pytest.approx(2 / 3)}


# --------------------------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------------------------

PRED_REG = [0.5, 2.0, 1.0, 4.5, 3.0, 3.0]
LABELS_REG = [1.0, 1.5, 0.0, 5.0, 4.0, 2.0]


@pytest.mark.parametrize("shape", ["flat", "column"])
def test_pearson_and_spearman_stsb(shape: str) -> None:
    predictions = np.array(PRED_REG, dtype=np.float32)
    if shape == "column":
        predictions = predictions[:, None]
    result = compute_task_metrics("stsb", predictions, np.array(LABELS_REG, dtype=np.float32))
    assert set(result) == {"pearson", "spearmanr"}
    assert result["pearson"] == pytest.approx(naive_pearson(PRED_REG, LABELS_REG), abs=1e-6)
    # PRED_REG has a tie (3.0, 3.0): average ranks 4.5 and 4.5.
    assert naive_ranks(PRED_REG) == [1, 3, 2, 6, 4.5, 4.5]
    expected_spearman = naive_pearson(naive_ranks(PRED_REG), naive_ranks(LABELS_REG))
    assert result["spearmanr"] == pytest.approx(expected_spearman, abs=1e-6)
    assert result["pearson"] != pytest.approx(result["spearmanr"])


def test_spearman_is_one_for_a_monotone_relation() -> None:
    x = [0.1, 0.2, 0.3, 0.4]
    y = [1.0, 8.0, 27.0, 64.0]
    result = compute_task_metrics("stsb", np.array(x), np.array(y))
    assert result["spearmanr"] == pytest.approx(1.0)
    assert result["pearson"] == pytest.approx(naive_pearson(x, y))
    assert result["pearson"] < 0.99


# --------------------------------------------------------------------------------------------
# Types, keys, errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TASKS))
def test_keys_match_task_and_values_are_plain_floats(name: str) -> None:
    spec = TASKS[name]
    if spec.is_regression:
        predictions, labels = np.array([0.1, 0.7, 0.3]), np.array([0.0, 1.0, 0.5])
    else:
        predictions, labels = logits_for([0, 1, 0], spec.num_labels), np.array([0, 1, 1])
    result = compute_task_metrics(spec, predictions, labels)
    assert list(result) == list(spec.metric_names)
    assert spec.main_metric in result
    assert all(type(value) is float for value in result.values())


def test_classification_rejects_predicted_ids() -> None:
    with pytest.raises(ValueError) as error:
        compute_task_metrics("sst2", np.array([0, 1, 1]), np.array([0, 1, 1]))
    assert str(error.value) == (
        "Task 'sst2' has 2 classes: predictions must be logits of shape (batch, 2), got (3,). "
        "Pass the model's raw logits, not the predicted ids."
    )


def test_wrong_number_of_classes() -> None:
    with pytest.raises(ValueError, match=r"shape \(batch, 3\), got \(2, 2\)"):
        compute_task_metrics("mnli", np.zeros((2, 2)), np.array([0, 1]))


def test_regression_rejects_matrix() -> None:
    with pytest.raises(ValueError, match=r"shape \(batch,\) or \(batch, 1\), got \(3, 2\)"):
        compute_task_metrics("stsb", np.zeros((3, 2)), np.zeros(3))


def test_length_mismatch_and_empty_batch() -> None:
    with pytest.raises(ValueError, match="predictions hold 3 examples but labels hold 2"):
        compute_task_metrics("sst2", np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="empty batch"):
        compute_task_metrics("sst2", np.zeros((0, 2)), np.array([], dtype=np.int64))


def test_custom_task_spec() -> None:
    spec = TaskSpec("mine", ("text",), 2, ("matthews_correlation", "f1"), "f1")
    result = compute_task_metrics(spec, logits_for(PREDICTED, 2), np.array(LABELS))
    assert list(result) == ["matthews_correlation", "f1"]
    assert result["f1"] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------------------------
# Trainer hook
# --------------------------------------------------------------------------------------------


def test_make_compute_metrics_on_eval_prediction() -> None:
    compute = make_compute_metrics("cola")
    prediction = EvalPrediction(predictions=logits_for(PREDICTED, 2), label_ids=np.array(LABELS))
    expected = compute_task_metrics("cola", logits_for(PREDICTED, 2), np.array(LABELS))
    assert compute(prediction) == expected


def test_make_compute_metrics_takes_first_of_several_outputs() -> None:
    compute = make_compute_metrics(TASKS["mrpc"])
    logits = logits_for(PREDICTED, 2)
    hidden = np.ones((8, 4, 3), dtype=np.float32)
    prediction = EvalPrediction(predictions=(logits, hidden), label_ids=np.array(LABELS))
    assert compute(prediction)["f1"] == pytest.approx(2 / 3)


def test_make_compute_metrics_unknown_task_fails_early() -> None:
    with pytest.raises(ValueError, match="Unknown task 'glue'"):
        make_compute_metrics("glue")
