"""The report as text: the summary table `nlpkd distill` prints, and the deployed forms' table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .report import Report

__all__ = ["deployment_notes", "format_summary", "variants_table"]


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


def variants_table(report: Report | Mapping[str, Any]) -> list[list[str]]:
    """The variants side by side, as text cells: a header row, then one row per variant (teacher, student,
    deployed forms) with its main metric, parameters, size, latency, and speed-up, size and retention against
    the teacher. The summary and the model card both print these rows, so they show the same figures as the
    `variants` of `metrics.json`.

    Args:
        report ([`Report`] or `Mapping`): the report, or `metrics.json`'s layout of it.

    Returns:
        `list[list[str]]`: the rows; `-` where a figure was not measured.
    """
    data = report.to_dict() if isinstance(report, Report) else report

    def cell(value: float | None, text: str) -> str:
        return "-" if value is None else text.format(value)

    rows = [
        [
            "model",
            f"{data.get('main_metric')} ({data.get('main_split')})",
            "parameters",
            "size (MB)",
            "latency (ms)",
            "speed-up",
            "size / teacher",
            "retention",
        ]
    ]
    for variant in data.get("variants", []):
        rows.append(
            [
                variant["name"],
                cell(variant.get("metric"), "{:.4f}"),
                cell(variant.get("params"), "{:,}"),
                cell(variant.get("size_mb"), "{:.2f}"),
                cell(variant.get("latency_ms"), "{:.2f}"),
                cell(variant.get("speedup"), "{:.2f}x"),
                cell(variant.get("size_ratio"), "{:.3f}"),
                cell(variant.get("retention"), "{:.1%}"),
            ]
        )
    return rows


def deployment_notes(report: Report | Mapping[str, Any]) -> list[str]:
    """Sentences on how the deployed forms were made (`metrics.json`'s `deployment`): where they are and
    what vocabulary pruning kept and changed. Empty when the run deployed nothing."""
    data = report.to_dict() if isinstance(report, Report) else report
    deployment = data.get("deployment")
    if not isinstance(deployment, Mapping):
        return []
    notes = [f"The forms are in {deployment.get('folder', 'deploy')}/, one folder per name."]
    vocabulary = deployment.get("vocabulary")
    if isinstance(vocabulary, Mapping):
        texts = [str(text) for text in vocabulary["texts"]]
        sources = f"{', '.join(texts[:-1])} and {texts[-1]}" if len(texts) > 1 else texts[0]
        notes.append(
            f"Vocabulary pruning kept {vocabulary['tokens']:,} of {vocabulary['tokens_before']:,} "
            f"tokens, those of the {sources} texts; it changed {vocabulary['changed_predictions']} "
            f"of {vocabulary['examples']} {vocabulary.get('split')} predictions."
        )
        alone = vocabulary.get("train_texts_only")
        if isinstance(alone, Mapping):
            notes.append(
                f"With the training texts alone ({alone['tokens']:,} tokens) it would change "
                f"{alone['changed_predictions']} of them: expect about that rate on new texts, where "
                "a word the vocabulary lacks becomes other pieces or [UNK]."
            )
    return notes


def format_summary(report: Report | Mapping[str, Any]) -> str:
    """
    Plain-text summary of a compression report: an aligned teacher / student / ratio table, then
    the retention and speed-up lines.

    Args:
        report (`Mapping[str, Any]`):
            A report from `compression_report` (or `metrics.json` read back).

    Returns:
        `str`: the summary, several lines without a trailing newline.
    """
    if isinstance(report, Report):
        report = report.to_dict()
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

    lines = _aligned(rows)

    retention = report.get("retention")
    main = f"{report.get('main_metric')} on {report.get('main_split')}"
    if retention is None:
        lines.append(f"retention: - ({main}: teacher value is 0 or missing)")
    else:
        lines.append(f"retention: {retention:.1%} of the teacher's {main}")
    if report.get("param_reduction") is not None:
        lines.append(f"parameter reduction: {report['param_reduction']:.1%}")
    if report.get("student_width"):
        lines.append(f"student width: {describe_width(report['student_width'])}")
    if report.get("search"):
        lines.append(f"recipe search: {describe_search(report['search'])}")
    if report.get("speedup") is not None:
        shape = report.get("latency_batch_shape")
        shape_text = f"batch x seq {shape[0]} x {shape[1]}" if shape and len(shape) == 2 else ""
        if shape and len(shape) == 4:
            shape_text = f"batch of {shape[0]} images of {shape[2]} x {shape[3]}"
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
    if len(report.get("variants", [])) > 2:
        lines += [
            "",
            "deployed forms, measured in the same run:",
            *_aligned(variants_table(report)),
        ]
        lines += deployment_notes(report)
    return "\n".join(lines)


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(
            [row[0].ljust(widths[0])]
            + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        ).rstrip()
        for row in rows
    ]
    return [lines[0], "-" * len(lines[0]), *lines[1:]]


def describe_width(width: Mapping[str, Any]) -> str:
    """A narrow student's widths in words, e.g. `hidden 192, 6 heads, 768 feed-forward neurons (importance)`."""
    return (
        f"hidden {width['hidden_size']}, {width['num_attention_heads']} heads, "
        f"{width['intermediate_size']} feed-forward neurons ({width['selection']})"
    )


def describe_search(search: Mapping[str, Any]) -> str:
    """A recipe search in words: the trials, and the chosen settings."""
    trials = search.get("trials", [])
    pruned = sum(1 for trial in trials if trial.get("state") == "PRUNED")
    chosen = ", ".join(
        f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}"
        for name, value in search.get("best", {}).items()
    )
    return (
        f"best of {len(trials)} trials ({pruned} pruned) on {search.get('held_out_examples')} held-out "
        f"training examples, {search.get('seconds', 0.0):.0f} s: {chosen}"
    )
