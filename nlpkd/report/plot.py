"""The picture of a run: the loss components over training, teacher vs student on metric, size and latency, and
the deployed forms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import LOSS_COMPONENTS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["PLOT_NAME", "plot_report"]

PLOT_NAME = "distillation.png"


# Trainer `log_history` keys that `DistillationTrainer` logs for the training loss and its parts.
LOSS_COMPONENT_KEYS: tuple[str, ...] = ("loss", *LOSS_COMPONENTS)


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
    latency; and, when the report has deployed forms (more than two `variants`), a row with every variant's
    speed-up over the teacher (labeled with its retention) and its size on disk. Uses matplotlib's Agg canvas directly, so it works headless whatever the backend.

    Args:
        report (`Mapping[str, Any]`):
            The report, as `Report.to_dict()` lays it out.
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
    variants = report.get("variants") or []
    has_variants = len(variants) > 2
    if not has_losses and not bar_panels:
        raise ValueError(
            "plot_report found nothing to draw: the log history has no loss entries and the "
            "report has no metrics, sizes or latencies. Pass a report from nlpkd.report.build_report."
        )

    columns = max(len(bar_panels), 1)
    rows = int(has_losses) + int(bool(bar_panels)) + int(has_variants)
    heights = [3.8] * (rows - int(has_variants)) + (
        [1.2 + 0.35 * len(variants)] if has_variants else []
    )
    figure = Figure(figsize=(4.2 * max(columns, 2), sum(heights)), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(rows, columns, height_ratios=heights)
    figure.suptitle("nlpkd distillation report", fontsize=13)

    if has_losses:
        _plot_losses(figure.add_subplot(grid[0, :]), train_series, eval_steps, eval_values)
    bar_row = int(has_losses)
    for column, panel in enumerate(bar_panels):
        axes = figure.add_subplot(grid[bar_row, column])
        if panel == "metric":
            _plot_metric(axes, report, metric_splits)
        elif panel == "size":
            teacher, student = report["teacher_size_mb"], report["student_size_mb"]
            _bar_pair(axes, teacher, student, "{:.2f} MB")
            axes.set_title(f"Size on disk\nstudent = {student / teacher:.2f}x teacher")
            axes.set_xlabel("model")
            axes.set_ylabel("MB (safetensors)")
        else:
            _plot_latency(axes, report)
    if has_variants:
        inner = grid[rows - 1, :].subgridspec(1, 2)
        _plot_variants(figure.add_subplot(inner[0, 0]), figure.add_subplot(inner[0, 1]), report)

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def _plot_losses(
    axes: Axes,
    train_series: Mapping[str, tuple[list[float], list[float]]],
    eval_steps: list[float],
    eval_values: list[float],
) -> None:
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


def _plot_metric(axes: Axes, report: Mapping[str, Any], metric_splits: list[str]) -> None:
    main_metric = report["main_metric"]
    width = 0.38
    positions = range(len(metric_splits))
    for offset, role, color in (
        (-width / 2, "teacher", "#4c72b0"),
        (width / 2, "student", "#dd8452"),
    ):
        values = [report[role][split][main_metric] for split in metric_splits]
        bars = axes.bar([p + offset for p in positions], values, width, label=role, color=color)
        axes.bar_label(bars, fmt="%.3f", fontsize="small")
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


def _plot_latency(axes: Axes, report: Mapping[str, Any]) -> None:
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


def _plot_variants(speed: Axes, size: Axes, report: Mapping[str, Any]) -> None:
    """The variants of `metrics.json` side by side: speed-up over the teacher (labeled with the retention of
    the main metric) and size on disk (labeled with the fraction of the teacher's)."""
    variants = list(report["variants"])[::-1]  # the teacher on top
    names = [variant["name"] for variant in variants]
    colors = [
        "#4c72b0" if n == "teacher" else "#dd8452" if n == "student" else "#55a868" for n in names
    ]
    timed = all(variant.get("speedup") is not None for variant in variants)
    if timed:
        bars = speed.barh(names, [variant["speedup"] for variant in variants], color=colors)
        labels = [
            f"{variant['speedup']:.2f}x, "
            + ("-" if variant.get("retention") is None else f"{variant['retention']:.1%}")
            for variant in variants
        ]
        speed.bar_label(bars, labels=labels, fontsize="small", padding=2)
        speed.axvline(1.0, color="grey", lw=0.8, ls="--")
        speed.set_xlabel("speed-up over the teacher (label: speed-up, retention)")
        speed.margins(x=0.35)
    else:
        speed.text(0.5, 0.5, "latency not measured", ha="center", va="center")
        speed.set_yticks([])
    speed.set_title(f"Deployed forms: speed and {report.get('main_metric')} retained")
    bars = size.barh(names, [variant["size_mb"] for variant in variants], color=colors)
    ratios = [variant.get("size_ratio") for variant in variants]
    size.bar_label(
        bars,
        labels=[
            f"{v['size_mb']:.3g} MB" + ("" if r is None else f" ({r:.2f})")
            for v, r in zip(variants, ratios, strict=True)
        ],
        fontsize="small",
        padding=2,
    )
    size.margins(x=0.35)
    size.set_title("Size on disk (fraction of the teacher's)")
    size.set_xlabel("MB (weight files)")
