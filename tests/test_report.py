"""nlpkd.report and nlpkd.plot: the typed report, its metrics.json layout, the summary and the plot."""

from __future__ import annotations

import json
import math

import pytest

from nlpkd.report import Report, Variant, format_summary, load_report, plot_report
from nlpkd.report import plot as plot_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TEACHER_METRICS = {"validation": {"accuracy": 0.9, "f1": 0.88}, "test": {"accuracy": 0.89}}
STUDENT_METRICS = {"validation": {"accuracy": 0.87, "f1": 0.85}, "test": {"accuracy": 0.86}}


def _fixed_report() -> dict:
    return {
        "teacher": TEACHER_METRICS,
        "student": STUDENT_METRICS,
        "main_metric": "accuracy",
        "main_split": "validation",
        "retention": 0.87 / 0.9,
        "teacher_params": 109_482_240,
        "student_params": 66_362_880,
        "param_reduction": 1 - 66_362_880 / 109_482_240,
        "teacher_size_mb": 437.97,
        "student_size_mb": 265.49,
        "teacher_latency_ms": 120.5,
        "student_latency_ms": 48.2,
        "speedup": 120.5 / 48.2,
        "latency_batch_shape": [32, 128],
        "device": "cpu",
        "torch_threads": 2,
    }


def test_format_summary_shows_the_numbers_in_aligned_columns():
    text = format_summary(_fixed_report())
    lines = text.splitlines()
    assert lines[0].split() == ["teacher", "student", "student/teacher"]
    table = [
        line for line in lines if not line.startswith(("retention", "parameter reduction", "speed"))
    ]
    assert len({len(line) for line in table}) == 1, "table rows must be aligned to one width"
    row = {line.split("  ")[0].strip(): line.split()[-3:] for line in table[2:]}
    assert row["accuracy (validation)"] == ["0.9000", "0.8700", f"{0.87 / 0.9:.3f}"]
    assert row["f1 (validation)"] == ["0.8800", "0.8500", f"{0.85 / 0.88:.3f}"]
    assert row["accuracy (test)"] == ["0.8900", "0.8600", f"{0.86 / 0.89:.3f}"]
    assert row["parameters"] == ["109,482,240", "66,362,880", f"{66_362_880 / 109_482_240:.3f}"]
    assert row["size on disk (MB)"] == ["437.97", "265.49", f"{265.49 / 437.97:.3f}"]
    assert row["latency (ms/batch)"] == ["120.50", "48.20", f"{48.2 / 120.5:.3f}"]
    assert "retention: 96.7% of the teacher's accuracy on validation" in lines
    assert "speed-up: 2.50x (batch x seq 32 x 128, cpu, 2 threads)" in lines


def test_format_summary_without_latency_or_retention():
    report = _fixed_report()
    for key in ("teacher_latency_ms", "student_latency_ms", "speedup"):
        del report[key]
    report["retention"] = None
    text = format_summary(report)
    assert "latency" not in text and "speed-up" not in text
    assert "retention: - (accuracy on validation: teacher value is 0 or missing)" in text


def _log_history(with_components: bool) -> list[dict]:
    history = []
    for step in range(10, 110, 10):
        entry = {
            "loss": 2.0 * math.exp(-step / 50),
            "learning_rate": 1e-4,
            "epoch": step / 50,
            "step": step,
        }
        if with_components:
            entry |= {
                "kd": math.exp(-step / 40),
                "ce": 0.5 * math.exp(-step / 60),
                "hidden": 30.0 / step,
            }
        history.append(entry)
        if step % 50 == 0:
            history.append(
                {"eval_loss": 0.4, "eval_accuracy": 0.8, "epoch": step / 50, "step": step}
            )
    history.append({"train_loss": 1.0, "train_runtime": 2.0, "epoch": 2.0, "step": 100})
    return history


@pytest.mark.parametrize("with_components", [True, False])
def test_plot_report_writes_a_png(tmp_path, with_components):
    path = plot_report(
        _fixed_report(), _log_history(with_components), tmp_path / "plots" / "report.png"
    )
    assert path == tmp_path / "plots" / "report.png"
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_plot_report_without_history_or_latency(tmp_path):
    report = _fixed_report()
    del report["teacher_latency_ms"], report["student_latency_ms"], report["speedup"]
    path = plot_report(report, [], tmp_path / "report.png")
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_loss_series_keeps_train_components_and_eval_loss_only():
    train, (eval_steps, eval_values) = plot_module._loss_series(_log_history(True))
    assert set(train) == {"loss", "kd", "ce", "hidden"}
    assert train["kd"][0] == [float(step) for step in range(10, 110, 10)]
    assert train["kd"][1][0] == pytest.approx(math.exp(-10 / 40))
    assert (eval_steps, eval_values) == ([50.0, 100.0], [0.4, 0.4])


def test_plot_report_rejects_other_formats(tmp_path):
    with pytest.raises(ValueError, match="ending in .png"):
        plot_report(_fixed_report(), [], tmp_path / "report.pdf")


def _report() -> Report:
    return Report(
        main_metric="accuracy",
        main_split="validation",
        variants=[
            Variant("teacher", TEACHER_METRICS, 109_482_240, 437.97, 120.5),
            Variant("student", STUDENT_METRICS, 66_362_880, 265.49, 48.2),
            Variant("student-int8", {"validation": {"accuracy": 0.86}}, 66_362_880, 70.1, 30.0),
        ],
        task="sst2",
        teacher_name="textattack/bert-base-uncased-SST-2",
        teacher_layers=[0, 2, 4, 7, 9, 11],
        student_layers=6,
        distillation={"temperature": 2.0},
        device="cpu",
        torch_threads=2,
        latency_batch_shape=[32, 128],
        latency_num_batches=4,
    )


def test_report_dict_is_the_metrics_json_layout():
    data = _report().to_dict()
    fixed = _fixed_report()
    for key, value in fixed.items():
        assert data[key] == pytest.approx(value) if isinstance(value, float) else data[key] == value
    int8 = data["variants"][2]
    assert int8["name"] == "student-int8" and int8["metric"] == 0.86
    assert int8["speedup"] == pytest.approx(120.5 / 30.0)
    assert int8["retention"] == pytest.approx(0.86 / 0.9)
    assert int8["size_ratio"] == pytest.approx(70.1 / 437.97)
    assert _report()["retention"] == data["retention"]  # read by key, as metrics.json lays it out


def test_report_needs_teacher_and_student_first_and_the_main_metric():
    teacher = Variant("teacher", TEACHER_METRICS, 1, 1.0)
    student = Variant("student", STUDENT_METRICS, 1, 1.0)
    with pytest.raises(ValueError, match="start with 'teacher' and 'student'"):
        Report("accuracy", "validation", [student, teacher])
    with pytest.raises(ValueError, match="main_metric 'eval_accuracy' is not among"):
        Report("eval_accuracy", "validation", [teacher, student])


def test_report_save_round_trip(tmp_path):
    report = _report()
    path = report.save(tmp_path / "out")
    assert path == tmp_path / "out" / "metrics.json"
    text = path.read_text()
    assert json.loads(text) == report.to_dict()
    assert text.startswith('{\n  "device"'), "metrics.json is indented with sorted keys"
    assert load_report(tmp_path / "out") == report


def test_report_save_refuses_non_json_values(tmp_path):
    report = _report()
    report.extra["odd"] = float("nan")
    with pytest.raises(ValueError, match="cannot be written as strict JSON"):
        report.save(tmp_path)
    assert not (tmp_path / "metrics.json").exists()


DEPLOYMENT = {
    "folder": "deploy",
    "forms": ["student-int8"],
    "vocabulary": {
        "texts": ["train", "validation"],
        "tokens": 900,
        "tokens_before": 30_522,
        "split": "validation",
        "examples": 872,
        "changed_predictions": 0,
        "train_texts_only": {"tokens": 850, "changed_predictions": 3},
    },
}


def test_summary_lists_every_variant_as_metrics_json_does():
    report = _report()
    report.extra["deployment"] = DEPLOYMENT
    lines = format_summary(report).splitlines()
    start = lines.index("deployed forms, measured in the same run:")
    table = lines[start + 1 : start + 6]
    assert table[0].split()[:3] == ["model", "accuracy", "(validation)"]
    assert set(table[1]) == {"-"} and len({len(line) for line in table}) == 1  # aligned
    rows = {line.split()[0]: line.split()[1:] for line in table[2:]}
    assert list(rows) == ["teacher", "student", "student-int8"]
    # By hand: 0.86 / 0.9 retained, 120.5 / 30 faster, 70.1 / 437.97 of the size.
    assert rows["student-int8"] == [
        "0.8600", "66,362,880", "70.10", "30.00", "4.02x", f"{70.1 / 437.97:.3f}", "95.6%",
    ]  # fmt: skip
    assert rows["teacher"][-3:] == ["1.00x", "1.000", "100.0%"]
    notes = " ".join(lines[start + 5 :])
    assert "Vocabulary pruning kept 900 of 30,522 tokens" in notes
    assert "it changed 0 of 872 validation predictions" in notes
    assert "alone (850 tokens) it would change 3 of them" in notes


def test_summary_of_two_variants_has_no_deployed_table():
    assert "deployed forms" not in format_summary(_fixed_report())
    data = _report().to_dict()
    data["variants"] = data["variants"][:2]
    assert "deployed forms" not in format_summary(data)


def test_plot_draws_a_panel_of_the_variants(tmp_path, monkeypatch):
    drawn = []
    original = plot_module._plot_variants
    monkeypatch.setattr(
        plot_module,
        "_plot_variants",
        lambda speed, size, report: (
            drawn.append(report["variants"]) or original(speed, size, report)
        ),
    )
    data = _report().to_dict()
    path = plot_report(data, [{"step": 1, "loss": 1.0}], tmp_path / "plot.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert [v["name"] for v in drawn[0]] == ["teacher", "student", "student-int8"]
    # Forms measured without latency still get their size panel.
    for variant in data["variants"]:
        variant["latency_ms"] = variant["speedup"] = None
    plot_report(data, [], tmp_path / "untimed.png")
    assert len(drawn) == 2
    plot_report(_fixed_report(), [], tmp_path / "pair.png")
    assert len(drawn) == 2  # teacher and student alone: no panel of variants
