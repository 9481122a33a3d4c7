"""Compression report for a distilled student: parameters, size on disk, latency, retention, plots.

Everything here measures the two models as they are; nothing trains. The report is a plain,
JSON-serialisable dict so that it can be written next to the student (`metrics.json`), printed
(`format_summary`), drawn (`plot_report`) and turned into a model card (`nlpkd.hub`).
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.utils import logging as hf_logging

from .student import select_forward_inputs

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "compression_report",
    "count_parameters",
    "format_summary",
    "measure_latency",
    "plot_report",
    "save_metrics",
    "size_on_disk_mb",
]

# Trainer `log_history` keys that `DistillationTrainer` logs for the training loss and its parts.
LOSS_COMPONENT_KEYS: tuple[str, ...] = ("loss", "kd", "ce", "hidden", "attn")


def count_parameters(model: torch.nn.Module) -> int:
    """
    Count the parameters of a model.

    Tied parameters (e.g. input embeddings shared with an output layer) are counted once, which is
    what `torch.nn.Module.parameters` yields.

    Args:
        model (`torch.nn.Module`):
            The model to count.

    Returns:
        `int`: the number of scalar parameters, trainable or not.
    """
    return sum(parameter.numel() for parameter in model.parameters())


def size_on_disk_mb(model: PreTrainedModel) -> float:
    """
    Size of a model's weights once saved with `save_pretrained`, in megabytes (1 MB = 1e6 bytes).

    The model is saved as safetensors (the only format transformers 5.x writes) to a temporary
    directory that is removed afterwards; only the weight files are counted, not `config.json`.

    Args:
        model (`transformers.PreTrainedModel`):
            The model to measure.

    Returns:
        `float`: the total size of the `*.safetensors` files in MB.
    """
    if not isinstance(model, PreTrainedModel):
        raise ValueError(
            f"size_on_disk_mb needs a transformers PreTrainedModel (it calls save_pretrained), "
            f"got {type(model).__name__}. Pass the Hugging Face model itself, not a wrapper."
        )
    # A progress bar per measurement would clutter the report output; restore the user's choice.
    bars_were_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory(prefix="nlpkd-size-") as tmp:
            model.save_pretrained(tmp)
            weight_files = list(Path(tmp).glob("*.safetensors"))
            if not weight_files:
                raise ValueError(
                    f"save_pretrained wrote no *.safetensors file for {type(model).__name__}; "
                    "cannot measure its size on disk."
                )
            return sum(path.stat().st_size for path in weight_files) / 1e6
    finally:
        if bars_were_enabled:
            hf_logging.enable_progress_bar()


def _model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _synchronize(device: torch.device) -> None:
    # CUDA kernels run asynchronously: without a sync the timer would stop before the work ends.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    models: Mapping[str, torch.nn.Module],
    batches: Sequence[Mapping[str, Tensor]],
    warmup: int = 2,
    repeats: int = 5,
    progress: bool = True,
) -> dict[str, float]:
    """
    Median forward latency of several models on the same batches, in milliseconds per batch.

    Every model runs in eval mode under `torch.inference_mode()`. Each batch is routed per model:
    only the keys that the model's `forward` names are passed (so a DistilBERT student does not get
    the teacher's `token_type_ids`), and `labels` are dropped because serving does not compute a
    loss. After `warmup` untimed passes, each of the `repeats` rounds times every model on every
    batch, interleaved (teacher, student, teacher, student, ...) so that machine noise hits all
    models alike. Training mode is restored afterwards.

    Args:
        models (`Mapping[str, torch.nn.Module]`):
            Models to time, by the name used in the result (e.g. `{"teacher": t, "student": s}`).
        batches (`Sequence[Mapping[str, torch.Tensor]]`):
            Tokenized input batches; each is moved to each model's device before timing.
        warmup (`int`, *optional*, defaults to `2`):
            Untimed passes over all batches first, so lazy initialisation and caches do not count.
        repeats (`int`, *optional*, defaults to `5`):
            Timed rounds over all batches.
        progress (`bool`, *optional*, defaults to `True`):
            Show a progress bar over the timed rounds.

    Returns:
        `dict[str, float]`: for each model name, the median over all rounds and batches of the
        wall-clock milliseconds one forward pass took (`time.perf_counter`).
    """
    if not models:
        raise ValueError("measure_latency needs at least one model, e.g. {'student': model}.")
    if not batches:
        raise ValueError("measure_latency needs at least one input batch; got an empty sequence.")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}.")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1 to time anything, got {repeats}.")

    devices = {name: _model_device(model) for name, model in models.items()}
    # Route and move the inputs once, so that copying is not part of the timed forward.
    routed = {
        name: [
            {
                key: value.to(devices[name]) if isinstance(value, Tensor) else value
                for key, value in select_forward_inputs(model, batch).items()
                if key != "labels"
            }
            for batch in batches
        ]
        for name, model in models.items()
    }
    was_training = {name: model.training for name, model in models.items()}
    timings: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    try:
        for model in models.values():
            model.eval()
        with torch.inference_mode():
            for _ in range(warmup):
                for index in range(len(batches)):
                    for name in names:
                        models[name](**routed[name][index])
                        _synchronize(devices[name])
            for round_index in tqdm(range(repeats), desc="Measuring latency", disable=not progress):
                # Alternate the order each round so no model always runs right after the other.
                order = names if round_index % 2 == 0 else names[::-1]
                for index in range(len(batches)):
                    for name in order:
                        _synchronize(devices[name])
                        start = time.perf_counter()
                        models[name](**routed[name][index])
                        _synchronize(devices[name])
                        timings[name].append((time.perf_counter() - start) * 1000.0)
    finally:
        for name, model in models.items():
            model.train(was_training[name])
    return {name: statistics.median(values) for name, values in timings.items()}


def _clean_metrics(
    metrics: Mapping[str, Mapping[str, float]], which: str
) -> dict[str, dict[str, float | None]]:
    if not isinstance(metrics, Mapping):
        raise ValueError(
            f"{which}_metrics must map split name -> {{metric name -> value}}, "
            f"got {type(metrics).__name__}."
        )
    cleaned: dict[str, dict[str, float | None]] = {}
    for split, values in metrics.items():
        if not isinstance(values, Mapping):
            raise ValueError(
                f"{which}_metrics[{split!r}] must map metric name -> value, e.g. "
                f"{{'accuracy': 0.91}}, got {type(values).__name__}."
            )
        cleaned[str(split)] = {}
        for name, value in values.items():
            number = float(value)
            # NaN/inf are not valid JSON; None says "not measurable" to every reader.
            cleaned[str(split)][str(name)] = number if math.isfinite(number) else None
    return cleaned


def _batch_shape(batch: Mapping[str, Any]) -> list[int] | None:
    tensor = batch.get("input_ids")
    if not isinstance(tensor, Tensor):
        tensor = next((value for value in batch.values() if isinstance(value, Tensor)), None)
    return list(tensor.shape[:2]) if tensor is not None else None


def _describe_device(*models: torch.nn.Module) -> str:
    devices = []
    for model in models:
        device = _model_device(model)
        text = str(device)
        if device.type == "cuda":
            text = f"{device} ({torch.cuda.get_device_name(device)})"
        if text not in devices:
            devices.append(text)
    return ", ".join(devices)


def compression_report(
    *,
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    teacher_metrics: Mapping[str, Mapping[str, float]],
    student_metrics: Mapping[str, Mapping[str, float]],
    main_metric: str,
    main_split: str,
    latency_batches: Sequence[Mapping[str, Tensor]] | None = None,
    warmup: int = 2,
    repeats: int = 5,
    progress: bool = True,
) -> dict[str, Any]:
    """
    Compare a student with its teacher: task metrics, parameters, size on disk and latency.

    Args:
        teacher (`transformers.PreTrainedModel`):
            The fine-tuned teacher.
        student (`transformers.PreTrainedModel`):
            The distilled student.
        teacher_metrics (`Mapping[str, Mapping[str, float]]`):
            Teacher metrics by split, e.g. `{"validation": {"accuracy": 0.93, "f1": 0.92}}`.
        student_metrics (`Mapping[str, Mapping[str, float]]`):
            Student metrics in the same layout.
        main_metric (`str`):
            Metric used for `retention`, e.g. `"accuracy"`; must exist for both models on
            `main_split`.
        main_split (`str`):
            Split used for `retention`, e.g. `"validation"`.
        latency_batches (`Sequence[Mapping[str, torch.Tensor]]`, *optional*):
            Tokenized batches to time both models on with `measure_latency`; latency is left out
            of the report when not given.
        warmup (`int`, *optional*, defaults to `2`):
            Untimed passes before timing, see `measure_latency`.
        repeats (`int`, *optional*, defaults to `5`):
            Timed rounds, see `measure_latency`.
        progress (`bool`, *optional*, defaults to `True`):
            Show a progress bar while timing.

    Returns:
        `dict[str, Any]`: a JSON-serialisable report with `teacher` and `student` (split -> metric
        -> value; non-finite values become `None`), `main_metric`, `main_split`, `retention`
        (student / teacher main metric, `None` when the teacher's is 0), `teacher_params`,
        `student_params`, `param_reduction` (1 - student / teacher), `teacher_size_mb`,
        `student_size_mb`, `size_ratio` (student / teacher), `device`, `torch_threads` and, when
        `latency_batches` are given, `teacher_latency_ms`, `student_latency_ms`, `speedup`
        (teacher / student), `latency_batch_shape` (`[batch, sequence]` of the first batch) and
        `latency_num_batches`.
    """
    teacher_clean = _clean_metrics(teacher_metrics, "teacher")
    student_clean = _clean_metrics(student_metrics, "student")
    for which, metrics in (("teacher", teacher_clean), ("student", student_clean)):
        if main_split not in metrics:
            raise ValueError(
                f"main_split {main_split!r} is not in {which}_metrics (splits: "
                f"{sorted(metrics)}). Evaluate the {which} on that split or pick one of these."
            )
        if main_metric not in metrics[main_split]:
            raise ValueError(
                f"main_metric {main_metric!r} is not in {which}_metrics[{main_split!r}] "
                f"(metrics: {sorted(metrics[main_split])}). Use the bare metric name, "
                "without an 'eval_' prefix."
            )

    teacher_main = teacher_clean[main_split][main_metric]
    student_main = student_clean[main_split][main_metric]
    retention = None
    if teacher_main not in (None, 0.0) and student_main is not None:
        retention = student_main / teacher_main

    teacher_params = count_parameters(teacher)
    student_params = count_parameters(student)
    teacher_size = size_on_disk_mb(teacher)
    student_size = size_on_disk_mb(student)
    report: dict[str, Any] = {
        "teacher": teacher_clean,
        "student": student_clean,
        "main_metric": main_metric,
        "main_split": main_split,
        "retention": retention,
        "teacher_params": teacher_params,
        "student_params": student_params,
        "param_reduction": 1.0 - student_params / teacher_params if teacher_params else None,
        "teacher_size_mb": teacher_size,
        "student_size_mb": student_size,
        "size_ratio": student_size / teacher_size if teacher_size else None,
        "device": _describe_device(teacher, student),
        "torch_threads": torch.get_num_threads(),
    }
    if latency_batches is not None:
        latency = measure_latency(
            {"teacher": teacher, "student": student},
            latency_batches,
            warmup=warmup,
            repeats=repeats,
            progress=progress,
        )
        report["teacher_latency_ms"] = latency["teacher"]
        report["student_latency_ms"] = latency["student"]
        report["speedup"] = latency["teacher"] / latency["student"] if latency["student"] else None
        report["latency_batch_shape"] = _batch_shape(latency_batches[0])
        report["latency_num_batches"] = len(latency_batches)
    return report


def _format_number(value: float | int | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "metric":
        return f"{value:.4f}"
    return f"{value:.2f}"


def _ratio(teacher: float | None, student: float | None) -> str:
    if teacher is None or student is None or teacher == 0:
        return "-"
    return f"{student / teacher:.3f}"


def _metric_rows(report: Mapping[str, Any]) -> list[tuple[str, float | None, float | None]]:
    teacher = report.get("teacher", {})
    student = report.get("student", {})
    rows = []
    for split in dict.fromkeys([*teacher, *student]):
        names = dict.fromkeys([*teacher.get(split, {}), *student.get(split, {})])
        for name in names:
            rows.append(
                (
                    f"{name} ({split})",
                    teacher.get(split, {}).get(name),
                    student.get(split, {}).get(name),
                )
            )
    return rows


def format_summary(report: Mapping[str, Any]) -> str:
    """
    Plain-text summary of a compression report: an aligned teacher / student / ratio table, then
    the retention and speed-up lines.

    Args:
        report (`Mapping[str, Any]`):
            A report from `compression_report` (or `metrics.json` read back).

    Returns:
        `str`: the summary, several lines without a trailing newline.
    """
    rows: list[tuple[str, str, str, str]] = [("", "teacher", "student", "student/teacher")]
    for label, teacher, student in _metric_rows(report):
        rows.append(
            (
                label,
                _format_number(teacher, "metric"),
                _format_number(student, "metric"),
                _ratio(teacher, student),
            )
        )
    for label, key, kind in (
        ("parameters", "params", "count"),
        ("size on disk (MB)", "size_mb", "float"),
        ("latency (ms/batch)", "latency_ms", "float"),
    ):
        teacher, student = report.get(f"teacher_{key}"), report.get(f"student_{key}")
        if teacher is None and student is None:
            continue
        rows.append(
            (
                label,
                _format_number(teacher, kind),
                _format_number(student, kind),
                _ratio(teacher, student),
            )
        )

    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = [
        "  ".join(
            [row[0].ljust(widths[0])]
            + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))

    retention = report.get("retention")
    main = f"{report.get('main_metric')} on {report.get('main_split')}"
    if retention is None:
        lines.append(f"retention: - ({main}: teacher value is 0 or missing)")
    else:
        lines.append(f"retention: {retention:.1%} of the teacher's {main}")
    if report.get("param_reduction") is not None:
        lines.append(f"parameter reduction: {report['param_reduction']:.1%}")
    if report.get("speedup") is not None:
        shape = report.get("latency_batch_shape")
        shape_text = f"batch x seq {shape[0]} x {shape[1]}" if shape and len(shape) == 2 else ""
        context = ", ".join(
            part
            for part in (
                shape_text,
                str(report.get("device", "")),
                f"{report['torch_threads']} threads" if report.get("torch_threads") else "",
            )
            if part
        )
        lines.append(f"speed-up: {report['speedup']:.2f}x ({context})")
    return "\n".join(lines)


def _loss_series(
    log_history: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, tuple[list[float], list[float]]], tuple[list[float], list[float]]]:
    train: dict[str, tuple[list[float], list[float]]] = {}
    eval_steps: list[float] = []
    eval_values: list[float] = []
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        if "eval_loss" in entry:
            eval_steps.append(float(step))
            eval_values.append(float(entry["eval_loss"]))
            continue
        if any(key.startswith("eval_") for key in entry):
            continue
        for key in LOSS_COMPONENT_KEYS:
            if key in entry and entry[key] is not None:
                steps, values = train.setdefault(key, ([], []))
                steps.append(float(step))
                values.append(float(entry[key]))
    return train, (eval_steps, eval_values)


def _bar_pair(axes: Axes, teacher: float, student: float, unit_format: str) -> None:
    bars = axes.bar(["teacher", "student"], [teacher, student], color=["#4c72b0", "#dd8452"])
    axes.bar_label(bars, labels=[unit_format.format(teacher), unit_format.format(student)])
    axes.margins(y=0.15)


def plot_report(
    report: Mapping[str, Any], log_history: Sequence[Mapping[str, Any]], path: str | Path
) -> Path:
    """
    Draw a compression report and the training losses into one PNG.

    Panels, each left out when its data is missing: (1) the loss components over training steps
    from the Trainer's `log_history` (`loss`, `kd`, `ce`, `hidden`, `attn` from training logs, and
    `eval_loss`), (2) teacher vs student on the main metric per split, (3) size on disk and (4)
    latency. Uses matplotlib's Agg canvas directly, so it works headless whatever the backend.

    Args:
        report (`Mapping[str, Any]`):
            A report from `compression_report`.
        log_history (`Sequence[Mapping[str, Any]]`):
            `trainer.state.log_history`; may be empty.
        path (`str` or `pathlib.Path`):
            Where to write the PNG; parent directories are created.

    Returns:
        `pathlib.Path`: the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(
            f"plot_report writes a PNG; give a path ending in .png, got {str(path)!r}."
        )

    main_metric = report.get("main_metric")
    train_series, (eval_steps, eval_values) = _loss_series(log_history)
    has_losses = bool(train_series or eval_steps)

    metric_splits = [
        split
        for split in dict.fromkeys([*report.get("teacher", {}), *report.get("student", {})])
        if report.get("teacher", {}).get(split, {}).get(main_metric) is not None
        and report.get("student", {}).get(split, {}).get(main_metric) is not None
    ]
    bar_panels = []
    if metric_splits:
        bar_panels.append("metric")
    if report.get("teacher_size_mb") is not None and report.get("student_size_mb") is not None:
        bar_panels.append("size")
    if (
        report.get("teacher_latency_ms") is not None
        and report.get("student_latency_ms") is not None
    ):
        bar_panels.append("latency")
    if not has_losses and not bar_panels:
        raise ValueError(
            "plot_report found nothing to draw: the log history has no loss entries and the "
            "report has no metrics, sizes or latencies. Pass the output of compression_report."
        )

    columns = max(len(bar_panels), 1)
    rows = int(has_losses) + int(bool(bar_panels))
    figure = Figure(figsize=(4.2 * max(columns, 2), 3.8 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(rows, columns)
    figure.suptitle("nlpkd distillation report", fontsize=13)

    if has_losses:
        axes = figure.add_subplot(grid[0, :])
        all_values: list[float] = []
        for key, (steps, values) in train_series.items():
            label = "total loss" if key == "loss" else key
            axes.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3, label=label)
            all_values += values
        if eval_steps:
            axes.plot(eval_steps, eval_values, "k--", marker="s", ms=4, label="eval loss")
            all_values += eval_values
        finite = [value for value in all_values if math.isfinite(value)]
        positive = bool(finite) and min(finite) > 0
        # Hidden-state MSE can be orders of magnitude above the KD term; a log axis keeps both legible.
        if positive and max(finite) / min(finite) > 50:
            axes.set_yscale("log")
            axes.set_title("Training losses (log scale)")
        else:
            axes.set_title("Training losses")
        axes.set_xlabel("training step")
        axes.set_ylabel("loss")
        axes.grid(alpha=0.3)
        axes.legend(loc="upper right", fontsize="small")

    bar_row = int(has_losses)
    for column, panel in enumerate(bar_panels):
        axes = figure.add_subplot(grid[bar_row, column])
        if panel == "metric":
            width = 0.38
            positions = range(len(metric_splits))
            teacher_values = [report["teacher"][split][main_metric] for split in metric_splits]
            student_values = [report["student"][split][main_metric] for split in metric_splits]
            teacher_bars = axes.bar(
                [p - width / 2 for p in positions],
                teacher_values,
                width,
                label="teacher",
                color="#4c72b0",
            )
            student_bars = axes.bar(
                [p + width / 2 for p in positions],
                student_values,
                width,
                label="student",
                color="#dd8452",
            )
            axes.bar_label(teacher_bars, fmt="%.3f", fontsize="small")
            axes.bar_label(student_bars, fmt="%.3f", fontsize="small")
            axes.set_xticks(list(positions), metric_splits)
            # Headroom above the bars keeps the legend off the value labels.
            axes.margins(y=0.3)
            title = main_metric
            if report.get("retention") is not None:
                title += f"\n{report['retention']:.1%} retained on {report.get('main_split')}"
            axes.set_title(title)
            axes.set_xlabel("split")
            axes.set_ylabel(main_metric)
            axes.legend(loc="upper center", ncols=2, fontsize="small")
        elif panel == "size":
            teacher, student = report["teacher_size_mb"], report["student_size_mb"]
            _bar_pair(axes, teacher, student, "{:.2f} MB")
            axes.set_title(f"Size on disk\nstudent = {student / teacher:.2f}x teacher")
            axes.set_xlabel("model")
            axes.set_ylabel("MB (safetensors)")
        else:
            teacher, student = report["teacher_latency_ms"], report["student_latency_ms"]
            _bar_pair(axes, teacher, student, "{:.2f} ms")
            title = "Latency per batch"
            if report.get("speedup") is not None:
                title += f"\n{report['speedup']:.2f}x faster"
            axes.set_title(title)
            shape = report.get("latency_batch_shape")
            context = f"batch {shape[0]} x seq {shape[1]}, " if shape and len(shape) == 2 else ""
            axes.set_xlabel(f"{context}{report.get('device', '')}")
            axes.set_ylabel("median ms per batch")

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def save_metrics(report: Mapping[str, Any], output_dir: str | Path) -> Path:
    """
    Write a compression report to `metrics.json` in `output_dir`.

    Args:
        report (`Mapping[str, Any]`):
            A report from `compression_report`.
        output_dir (`str` or `pathlib.Path`):
            Directory to write into; created when missing.

    Returns:
        `pathlib.Path`: the path of `metrics.json`.
    """
    output_dir = Path(output_dir)
    try:
        text = json.dumps(report, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"The report cannot be written as strict JSON ({err}). Build it with "
            "compression_report, which stores plain numbers and None for non-finite values."
        ) from err
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "metrics.json"
    path.write_text(text + "\n", encoding="utf-8")
    return path
