#!/usr/bin/env python
"""Print a Markdown table of distillation results from the `metrics.json` files of `nlpkd distill`.

Usage:

    python recipes/results_table.py runs/glue                  # every run under a folder
    python recipes/results_table.py runs/glue/sst2 runs/glue/mrpc/metrics.json

Each argument is a `metrics.json` file, the `--output_dir` of one run, or a folder that is searched
for `metrics.json` files at any depth. Files without a `student` entry (such as the report of
`nlpkd finetune`, which trains a teacher only) are skipped while searching. Rows come in GLUE order
(cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli), then other tasks by name.

Columns: the task and run folder; the metric(s) shown; teacher and student scores (x100, the
GLUE convention): the main metric on the main split, then a second metric of that split where the
task has one (MRPC and QQP: F1 / accuracy; STS-B: Pearson / Spearman), or else the main metric on
a second split (MNLI: matched / mismatched); the student's share of the teacher's main score; the
speed-up of the student's forward pass over the teacher's; and the parameter counts. A value that
a run did not record (say, latency with `--latency_batches 0`) shows as `-`.

The script needs only the standard library, so a table can be made wherever the files are copied.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["find_reports", "format_row", "main", "results_table"]

# The file name `nlpkd distill` writes (nlpkd.cli.METRICS_NAME); repeated here so that the script
# runs without nlpkd installed.
METRICS_NAME = "metrics.json"
GLUE_ORDER = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
METRIC_LABELS = {
    "accuracy": "acc",
    "f1": "F1",
    "matthews_correlation": "MCC",
    "pearson": "Pearson",
    "spearmanr": "Spearman",
}
HEADER = (
    "task",
    "run",
    "metric",
    "teacher",
    "student",
    "retention",
    "speed-up",
    "parameters (teacher → student)",
)
# Text columns are left-aligned, numbers right-aligned.
RIGHT_ALIGNED = (False, False, False, True, True, True, True, True)
MISSING = "-"


def _number(value: Any) -> float | None:
    # metrics.json writes non-finite values as null; anything that is not a finite number is missing.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _split_label(split: str) -> str:
    return split.removeprefix("validation_")


def _metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _score(value: Any) -> str:
    number = _number(value)
    return MISSING if number is None else f"{100 * number:.1f}"


def _millions(value: Any) -> str:
    number = _number(value)
    return MISSING if number is None else f"{number / 1e6:.1f}M"


def _shown_metrics(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (split, metric) pairs a row shows: the main one first, then at most one more."""
    teacher = report.get("teacher")
    if not isinstance(teacher, Mapping):
        teacher = {}
    student = report.get("student")
    if not isinstance(student, Mapping):
        student = {}
    splits = list(dict.fromkeys([*teacher, *student]))
    main_split = report.get("main_split") or (splits[0] if splits else None)
    if main_split is None:
        return []

    def metrics_of(split: str) -> list[str]:
        names = [*teacher.get(split, {}), *student.get(split, {})]
        return list(dict.fromkeys(names))

    names = metrics_of(main_split)
    main_metric = report.get("main_metric") or (names[0] if names else None)
    if main_metric is None:
        return []
    shown = [(main_split, main_metric)]
    others = [name for name in names if name != main_metric]
    if others:
        shown.append((main_split, others[0]))
    else:
        for split in splits:
            if split != main_split and main_metric in metrics_of(split):
                shown.append((split, main_metric))
                break
    return shown


def _metric_cell(shown: Sequence[tuple[str, str]]) -> str:
    if not shown:
        return MISSING
    main_split, main_metric = shown[0]
    if len(shown) == 2 and shown[1][0] != main_split:
        # One metric on two splits, e.g. MNLI: "acc (matched / mismatched)".
        return (
            f"{_metric_label(main_metric)} "
            f"({_split_label(main_split)} / {_split_label(shown[1][0])})"
        )
    label = " / ".join(_metric_label(metric) for _, metric in shown)
    return label if main_split == "validation" else f"{label} ({main_split})"


def _scores_cell(scores: Any, shown: Sequence[tuple[str, str]]) -> str:
    if not shown:
        return MISSING
    if not isinstance(scores, Mapping):
        scores = {}
    values = []
    for split, metric in shown:
        split_scores = scores.get(split)
        values.append(
            _score(split_scores.get(metric) if isinstance(split_scores, Mapping) else None)
        )
    return " / ".join(values)


def format_row(report: Mapping[str, Any], run: str) -> list[str]:
    """
    The table cells of one run, in the order of the header.

    Args:
        report (`Mapping[str, Any]`):
            The content of a `metrics.json` written by `nlpkd distill`.
        run (`str`):
            The name shown in the `run` column (the run's folder).

    Returns:
        `list[str]`: task, run, metric, teacher, student, retention, speed-up and parameters.
    """
    shown = _shown_metrics(report)
    retention = _number(report.get("retention"))
    speedup = _number(report.get("speedup"))
    teacher_params = _millions(report.get("teacher_params"))
    student_params = _millions(report.get("student_params"))
    params = (
        MISSING
        if teacher_params == MISSING and student_params == MISSING
        else f"{teacher_params} → {student_params}"
    )
    return [
        str(report.get("task") or MISSING),
        run,
        _metric_cell(shown),
        _scores_cell(report.get("teacher"), shown),
        _scores_cell(report.get("student"), shown),
        MISSING if retention is None else f"{100 * retention:.1f}%",
        MISSING if speedup is None else f"{speedup:.2f}x",
        params,
    ]


def _read_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}); rerun `nlpkd distill` for that run or remove the file."
        ) from err
    if not isinstance(report, dict):
        raise ValueError(
            f"{path} holds a JSON {type(report).__name__}, not the report object that "
            "`nlpkd distill` writes."
        )
    return report


def _is_distillation_report(report: Mapping[str, Any]) -> bool:
    return isinstance(report.get("student"), Mapping)


def find_reports(paths: Sequence[str | Path]) -> list[tuple[Path, dict[str, Any]]]:
    """
    Find and read the distillation reports that the arguments point to.

    Args:
        paths (`Sequence[str | Path]`):
            `metrics.json` files, run folders holding one, or folders searched for them at any depth.

    Returns:
        `list[tuple[Path, dict]]`: each report's path and content, without duplicates, in the
        order found.

    Raises:
        `ValueError`: if a path does not exist, a named file is not a distillation report, a file is
            not valid JSON, or nothing is found at all; the message says what to pass instead.
    """
    if not paths:
        raise ValueError(
            "give at least one run folder, metrics.json file, or folder of runs (e.g. runs/glue)."
        )
    found: dict[Path, dict[str, Any]] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            report = _read_report(path)
            if not _is_distillation_report(report):
                raise ValueError(
                    f"{path} has no 'student' results: it is not the report of an `nlpkd distill` "
                    "run (the report of `nlpkd finetune` holds the teacher only)."
                )
            found.setdefault(path.resolve(), report)
        elif path.is_dir():
            direct = path / METRICS_NAME
            candidates = [direct] if direct.is_file() else sorted(path.rglob(METRICS_NAME))
            reports = [(file, _read_report(file)) for file in candidates]
            reports = [
                (file, report) for file, report in reports if _is_distillation_report(report)
            ]
            if not reports:
                raise ValueError(
                    f"no {METRICS_NAME} of an `nlpkd distill` run under {path}: pass the "
                    "--output_dir of a finished run, or a folder holding such runs."
                )
            for file, report in reports:
                found.setdefault(file.resolve(), report)
        else:
            raise ValueError(
                f"{path} does not exist: pass a run's --output_dir, its {METRICS_NAME}, or a folder "
                "of runs."
            )
    return list(found.items())


def _sort_key(item: tuple[Path, Mapping[str, Any]]) -> tuple[int, str, str]:
    path, report = item
    task = str(report.get("task") or "")
    rank = GLUE_ORDER.index(task) if task in GLUE_ORDER else len(GLUE_ORDER)
    return rank, task, str(path)


def _markdown(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, RIGHT_ALIGNED, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        "-" * (width - 1) + ":" if right else "-" * width
        for width, right in zip(widths, RIGHT_ALIGNED, strict=True)
    ]
    return "\n".join([line(HEADER), line(rule), *(line(row) for row in rows)])


def results_table(paths: Sequence[str | Path]) -> str:
    """
    A Markdown table with one row per `nlpkd distill` run.

    Args:
        paths (`Sequence[str | Path]`):
            `metrics.json` files, run folders, or folders of runs (searched at any depth).

    Returns:
        `str`: the table, without a trailing newline. Rows are in GLUE task order, then other tasks
        by name, then by path.

    Raises:
        `ValueError`: see [`find_reports`].
    """
    reports = sorted(find_reports(paths), key=_sort_key)
    rows = [format_row(report, path.parent.name) for path, report in reports]
    return _markdown(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the table and returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="results_table.py",
        description="Markdown table of `nlpkd distill` results (teacher vs. student, retention, "
        "speed-up, parameters) from metrics.json files.",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="RUN_DIR",
        help="a run's --output_dir, its metrics.json, or a folder of runs such as runs/glue",
    )
    args = parser.parse_args(argv)
    try:
        print(results_table(args.paths))
    except ValueError as err:
        print(f"results_table.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
