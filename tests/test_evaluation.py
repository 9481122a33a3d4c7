"""nlpkd.evaluation: parameter counts, size on disk, latency, and the report they are measured into."""

from __future__ import annotations

import copy
import json
import statistics
import tempfile

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from nlpkd.report import build_report, count_parameters, measure_latency, size_on_disk_mb
from nlpkd.report import evaluate as evaluate_module
from nlpkd.report import measure as measure_module

TEACHER_METRICS = {"validation": {"accuracy": 0.9, "f1": 0.88}, "test": {"accuracy": 0.89}}
STUDENT_METRICS = {"validation": {"accuracy": 0.87, "f1": 0.85}, "test": {"accuracy": 0.86}}


def _config(layers: int = 4) -> BertConfig:
    return BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=3,
    )


@pytest.fixture(scope="module")
def teacher() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(_config(4)).eval()


@pytest.fixture(scope="module")
def student(teacher) -> BertForSequenceClassification:
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = 2
    torch.manual_seed(1)
    return BertForSequenceClassification(config).eval()


def _batch(batch_size: int = 4, seq_len: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(0, 100, (batch_size, seq_len), generator=g),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
        "token_type_ids": torch.zeros(batch_size, seq_len, dtype=torch.long),
        "labels": torch.zeros(batch_size, dtype=torch.long),
    }


def _bert_params_by_hand(config: BertConfig) -> int:
    h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    embeddings = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * h
    embeddings += 2 * h  # LayerNorm
    per_layer = (
        3 * (h * h + h)  # query, key, value
        + (h * h + h)  # attention output
        + 2 * h  # LayerNorm
        + (h * i + i)  # intermediate
        + (i * h + h)  # output
        + 2 * h  # LayerNorm
    )
    pooler = h * h + h
    classifier = h * config.num_labels + config.num_labels
    return embeddings + n * per_layer + pooler + classifier


def test_count_parameters_matches_hand_sum(teacher, student):
    assert count_parameters(teacher) == _bert_params_by_hand(teacher.config)
    assert count_parameters(student) == _bert_params_by_hand(student.config)


def test_count_parameters_counts_tied_weights_once():
    shared = torch.nn.Linear(5, 5)
    model = torch.nn.Sequential(shared, torch.nn.ReLU(), shared)
    assert count_parameters(model) == 5 * 5 + 5


def test_size_on_disk_is_float32_bytes_and_leaves_no_temp_dir(teacher, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    size = size_on_disk_mb(teacher)
    params_mb = count_parameters(teacher) * 4 / 1e6
    # safetensors adds a JSON header (tensor names, shapes) of a few kilobytes at most.
    assert params_mb <= size <= params_mb + 0.02
    assert list(tmp_path.iterdir()) == []


def test_size_on_disk_follows_dtype(student):
    half = copy.deepcopy(student).to(torch.float16)
    params = count_parameters(student)
    assert params * 2 / 1e6 <= size_on_disk_mb(half) <= params * 2 / 1e6 + 0.02


def test_size_on_disk_rejects_plain_modules():
    with pytest.raises(ValueError, match="needs a transformers PreTrainedModel"):
        size_on_disk_mb(torch.nn.Linear(2, 2))


class _RecordingEncoder(torch.nn.Module):
    """A forward without token_type_ids, like DistilBERT's; records what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)
        self.received: list[set[str]] = []

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ):
        self.received.append(
            {"input_ids", *(["attention_mask"] if attention_mask is not None else [])}
        )
        self.received[-1] |= set(kwargs)
        return self.linear(input_ids[..., :1].float())


def test_measure_latency_routes_inputs_per_model(teacher):
    fake = _RecordingEncoder().train()
    teacher_keys: list[set[str]] = []
    handle = teacher.register_forward_pre_hook(
        lambda module, args, kwargs: teacher_keys.append(set(kwargs)), with_kwargs=True
    )
    try:
        latency = measure_latency(
            {"teacher": teacher, "student": fake},
            [_batch(seed=0), _batch(seed=1)],
            warmup=1,
            repeats=3,
            progress=False,
        )
    finally:
        handle.remove()
    assert set(latency) == {"teacher", "student"}
    assert all(isinstance(value, float) and value > 0 for value in latency.values())
    # warm-up (1 round) + 3 timed rounds, 2 batches each
    assert len(fake.received) == len(teacher_keys) == 8
    assert all(keys == {"input_ids", "attention_mask"} for keys in fake.received)
    assert all(keys == {"input_ids", "attention_mask", "token_type_ids"} for keys in teacher_keys)
    assert fake.training, "measure_latency must restore the training mode it found"


class _ClockModel(torch.nn.Module):
    """Advances a fake clock by the next duration on each forward and logs its name."""

    def __init__(self, name: str, durations_ms: list[float], clock: dict, calls: list[str]) -> None:
        super().__init__()
        self.name, self.durations, self.clock, self.calls = name, list(durations_ms), clock, calls

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.clock["now"] += self.durations.pop(0) / 1000.0
        self.calls.append(self.name)
        return input_ids


def test_measure_latency_is_the_median_of_interleaved_timed_rounds(monkeypatch):
    clock = {"now": 0.0}
    calls: list[str] = []
    monkeypatch.setattr(measure_module.time, "perf_counter", lambda: clock["now"])
    # Two warm-up calls that must not count (huge), then five timed rounds on one batch.
    slow = _ClockModel("a", [1000.0, 1000.0, 5.0, 1.0, 100.0, 3.0, 2.0], clock, calls)
    fast = _ClockModel("b", [1000.0, 1000.0, 7.0, 7.0, 7.0, 7.0, 8.0], clock, calls)
    latency = measure_latency(
        {"a": slow, "b": fast},
        [{"input_ids": torch.zeros(1, 2)}],
        warmup=2,
        repeats=5,
        progress=False,
    )
    assert latency["a"] == pytest.approx(statistics.median([5.0, 1.0, 100.0, 3.0, 2.0]))
    assert latency["b"] == pytest.approx(7.0)
    timed = calls[4:]
    assert len(timed) == 10
    # Interleaved: every round runs each model once, so no model ever runs twice in a row
    # within a round, and both models are measured in every round.
    for round_index in range(5):
        assert sorted(timed[2 * round_index : 2 * round_index + 2]) == ["a", "b"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"models": {}}, "at least one model"),
        ({"batches": []}, "at least one input batch"),
        ({"repeats": 0}, "repeats must be >= 1"),
        ({"warmup": -1}, "warmup must be >= 0"),
    ],
)
def test_measure_latency_rejects_bad_arguments(kwargs, message):
    arguments = {
        "models": {"m": torch.nn.Linear(2, 2)},
        "batches": [{"input": torch.zeros(1, 2)}],
        "progress": False,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        measure_latency(**arguments)


def test_build_report_arithmetic(teacher, student, monkeypatch):
    monkeypatch.setattr(
        evaluate_module,
        "measure_latency",
        lambda *args, **kwargs: {"teacher": 10.0, "student": 4.0},
    )
    report = build_report(
        teacher,
        student,
        TEACHER_METRICS,
        STUDENT_METRICS,
        main_metric="accuracy",
        main_split="validation",
        latency_batches=[_batch(batch_size=3, seq_len=7)],
    )
    expected_keys = {
        "teacher",
        "student",
        "main_metric",
        "main_split",
        "retention",
        "teacher_params",
        "student_params",
        "param_reduction",
        "teacher_size_mb",
        "student_size_mb",
        "teacher_latency_ms",
        "student_latency_ms",
        "speedup",
        "latency_batch_shape",
        "device",
    }
    assert expected_keys <= set(report)
    assert report["teacher"] == TEACHER_METRICS and report["student"] == STUDENT_METRICS
    assert report["retention"] == pytest.approx(0.87 / 0.9)
    assert report["teacher_params"] == _bert_params_by_hand(teacher.config)
    assert report["student_params"] == _bert_params_by_hand(student.config)
    assert report["param_reduction"] == pytest.approx(
        1 - report["student_params"] / report["teacher_params"]
    )
    assert report["student_size_mb"] < report["teacher_size_mb"]
    assert report["speedup"] == pytest.approx(2.5)
    assert report["latency_batch_shape"] == [3, 7]
    assert report["device"] == "cpu"
    assert report["torch_threads"] == torch.get_num_threads()
    data = report.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert [v["name"] for v in data["variants"]] == ["teacher", "student"]
    assert data["variants"][1]["speedup"] == pytest.approx(2.5)


def test_build_report_measures_latency_for_real(teacher, student):
    report = build_report(
        teacher,
        student,
        TEACHER_METRICS,
        STUDENT_METRICS,
        main_metric="f1",
        main_split="validation",
        latency_batches=[_batch()],
        warmup=1,
        repeats=2,
        progress=False,
    )
    assert report["teacher_latency_ms"] > 0 and report["student_latency_ms"] > 0
    assert report["speedup"] == pytest.approx(
        report["teacher_latency_ms"] / report["student_latency_ms"]
    )
    assert report["retention"] == pytest.approx(0.85 / 0.88)


def test_build_report_without_latency_and_edge_values(teacher, student):
    report = build_report(
        teacher,
        student,
        {"validation": {"accuracy": 0.0, "pearson": float("nan")}},
        {"validation": {"accuracy": 0.5, "pearson": 0.2}},
        main_metric="accuracy",
        main_split="validation",
    )
    assert report["retention"] is None
    assert report["teacher"]["validation"]["pearson"] is None
    assert not {"teacher_latency_ms", "student_latency_ms", "speedup"} & set(report)
    json.dumps(report.to_dict(), allow_nan=False)


def test_build_report_names_missing_metric(teacher, student):
    with pytest.raises(
        ValueError, match=r"main_metric 'eval_accuracy' is not among the teacher's metrics"
    ):
        build_report(
            teacher,
            student,
            TEACHER_METRICS,
            STUDENT_METRICS,
            main_metric="eval_accuracy",
            main_split="validation",
        )
    with pytest.raises(
        ValueError, match=r"main_split 'dev' is not among the teacher's evaluated splits"
    ):
        build_report(
            teacher,
            student,
            TEACHER_METRICS,
            STUDENT_METRICS,
            main_metric="accuracy",
            main_split="dev",
        )
