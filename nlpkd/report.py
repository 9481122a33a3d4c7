"""The report of a distillation run: a typed [`Report`] of every model measured side by side, and its one writer.

`Report.to_dict()` is the layout of `metrics.json`; [`write_report`] writes that file, the plot
(`distillation.png`) and the model card (`README.md`) from the same report, so they always agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "METRICS_NAME",
    "Report",
    "Variant",
    "deployment_notes",
    "format_summary",
    "load_report",
    "variants_table",
    "write_report",
]

METRICS_NAME = "metrics.json"


@dataclass
class Variant:
    """One model measured in a run: the teacher, the student, or a deployed form of the student.

    Args:
        name (`str`): `"teacher"`, `"student"`, or a deployed form such as `"student-int8"`.
        metrics (`dict[str, dict[str, float | None]]`): split -> metric -> value (`None` when not finite).
        params (`int`): scalar parameters (tied ones counted once).
        size_mb (`float`): size of its weights on disk, in MB (1e6 bytes).
        latency_ms (`float`, *optional*): median milliseconds per batch on the run's latency batches.
    """

    name: str
    metrics: dict[str, dict[str, float | None]]
    params: int
    size_mb: float
    latency_ms: float | None = None


@dataclass
class Report(Mapping):
    """What a run measured: task, settings and every [`Variant`], the teacher first and the student second.

    Read it by attribute (`report.retention`) or, as `metrics.json` lays it out, by key (`report["retention"]`).

    Args:
        main_metric (`str`): the metric teacher and student are compared on, e.g. `"accuracy"`.
        main_split (`str`): the split they are compared on, e.g. `"validation"`.
        variants (`list[Variant]`): the teacher, the student, then any deployed forms.
        task (`str`, *optional*): the task's name (`"custom"` for your own data).
        teacher_name (`str`, *optional*): Hub id or local name of the teacher.
        teacher_layers (`list[int]`, *optional*): the teacher layers the student was built from.
        student_layers (`int`, *optional*): the student's number of layers.
        distillation (`dict`, *optional*): the loss settings (`DistillationConfig.loss_settings()`).
        train_examples (`int`, *optional*): examples the student was trained on.
        label_names (`list[str]`, *optional*): the class names in id order.
        device (`str`, *optional*): where the models were measured.
        torch_threads (`int`, *optional*): CPU threads torch used while measuring.
        latency_batch_shape (`list[int]`, *optional*): `[batch, sequence]` of the latency batches.
        latency_num_batches (`int`, *optional*): how many latency batches were timed.
        pipeline_tag (`str`, *optional*, defaults to `"text-classification"`): what the student does, as the
            Hub's `pipeline()` names it (`"image-classification"`, `"text-generation"`, ...).
        extra (`dict`, *optional*): anything else a run reports (written into `metrics.json` as is).
    """

    main_metric: str
    main_split: str
    variants: list[Variant]
    task: str | None = None
    teacher_name: str | None = None
    teacher_layers: list[int] | None = None
    student_layers: int | None = None
    distillation: dict[str, Any] = field(default_factory=dict)
    train_examples: int | None = None
    label_names: list[str] | None = None
    device: str | None = None
    torch_threads: int | None = None
    latency_batch_shape: list[int] | None = None
    latency_num_batches: int | None = None
    pipeline_tag: str = "text-classification"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [variant.name for variant in self.variants]
        if names[:2] != ["teacher", "student"]:
            raise ValueError(
                f"A report's variants start with 'teacher' and 'student', got {names}."
            )
        for variant in self.variants[:2]:
            metrics = variant.metrics.get(self.main_split)
            if metrics is None:
                raise ValueError(
                    f"main_split {self.main_split!r} is not among the {variant.name}'s evaluated splits "
                    f"{sorted(variant.metrics)}: evaluate it on that split or pick one of these."
                )
            if self.main_metric not in metrics:
                raise ValueError(
                    f"main_metric {self.main_metric!r} is not among the {variant.name}'s metrics on "
                    f"{self.main_split!r} ({sorted(metrics)}). Use the bare metric name, without an "
                    "'eval_' prefix."
                )

    @property
    def teacher(self) -> Variant:
        """The teacher's measurements."""
        return self.variants[0]

    @property
    def student(self) -> Variant:
        """The distilled student's measurements (fp32 PyTorch)."""
        return self.variants[1]

    def main_value(self, variant: Variant) -> float | None:
        """A variant's main metric on the main split."""
        return variant.metrics.get(self.main_split, {}).get(self.main_metric)

    def retention(self, variant: Variant | None = None) -> float | None:
        """A variant's (default: the student's) main metric as a fraction of the teacher's."""
        teacher, value = self.main_value(self.teacher), self.main_value(variant or self.student)
        return value / teacher if teacher not in (None, 0.0) and value is not None else None

    def speedup(self, variant: Variant | None = None) -> float | None:
        """How many times faster than the teacher a variant (default: the student) ran."""
        teacher, latency = self.teacher.latency_ms, (variant or self.student).latency_ms
        return teacher / latency if teacher is not None and latency else None

    def to_dict(self) -> dict[str, Any]:
        """The `metrics.json` layout: teacher and student side by side at the top level, plus `variants`."""
        teacher, student = self.teacher, self.student
        data: dict[str, Any] = {
            "teacher": teacher.metrics,
            "student": student.metrics,
            "main_metric": self.main_metric,
            "main_split": self.main_split,
            "retention": self.retention(),
            "teacher_params": teacher.params,
            "student_params": student.params,
            "param_reduction": 1.0 - student.params / teacher.params if teacher.params else None,
            "teacher_size_mb": teacher.size_mb,
            "student_size_mb": student.size_mb,
            "size_ratio": student.size_mb / teacher.size_mb if teacher.size_mb else None,
            "device": self.device,
            "torch_threads": self.torch_threads,
            "task": self.task,
            "teacher_name": self.teacher_name,
            "teacher_layers": self.teacher_layers,
            "student_layers": self.student_layers,
            "distillation": self.distillation,
            "train_examples": self.train_examples,
            "label_names": self.label_names,
            "pipeline_tag": self.pipeline_tag,
            "variants": [self._variant_dict(v) for v in self.variants],
            **self.extra,
        }
        if teacher.latency_ms is not None and student.latency_ms is not None:
            data.update(
                teacher_latency_ms=teacher.latency_ms,
                student_latency_ms=student.latency_ms,
                speedup=self.speedup(),
                latency_batch_shape=self.latency_batch_shape,
                latency_num_batches=self.latency_num_batches,
            )
        return data

    def _variant_dict(self, variant: Variant) -> dict[str, Any]:
        data = asdict(variant)
        data["metric"] = self.main_value(variant)
        data["retention"] = self.retention(variant)
        data["speedup"] = self.speedup(variant)
        data["size_ratio"] = (
            variant.size_mb / self.teacher.size_mb if self.teacher.size_mb else None
        )
        return data

    # Read-only mapping of the `metrics.json` layout, so `report["retention"]` and `dict(report)` work.
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def save(self, output_dir: str | Path) -> Path:
        """Write `metrics.json` (strict JSON) into `output_dir`, created when missing, and return its path."""
        try:
            text = json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"The report cannot be written as strict JSON ({err}): its values must be plain numbers, "
                "strings, lists and dicts, with None for non-finite values."
            ) from err
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / METRICS_NAME
        path.write_text(text + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """A report from the `metrics.json` layout (the inverse of [`to_dict`])."""
        known = {f for f in cls.__dataclass_fields__ if f not in ("variants", "extra")}
        derived = {
            "teacher", "student", "retention", "teacher_params", "student_params", "param_reduction",
            "teacher_size_mb", "student_size_mb", "size_ratio", "teacher_latency_ms",
            "student_latency_ms", "speedup", "variants",
        }  # fmt: skip
        variants = [
            Variant(**{k: v[k] for k in ("name", "metrics", "params", "size_mb", "latency_ms")})
            for v in data["variants"]
        ]
        return cls(
            variants=variants,
            **{k: data[k] for k in known if k in data},
            extra={k: v for k, v in data.items() if k not in known and k not in derived},
        )


def load_report(output_dir: str | Path) -> Report:
    """Read `metrics.json` back from a run's folder.

    Args:
        output_dir (`str` or `Path`): the folder `nlpkd distill` or `DistillationResult.save` wrote.
    """
    path = Path(output_dir) / METRICS_NAME
    return Report.from_dict(json.loads(path.read_text(encoding="utf-8")))


def write_report(
    report: Report,
    output_dir: str | Path,
    log_history: Sequence[Mapping[str, Any]] = (),
    *,
    model_card: bool = True,
    model_name: str | None = None,
    dataset_name: str | None = None,
    command: str | None = None,
) -> None:
    """The one writer of a run's report files: `metrics.json`, the plot `distillation.png` and, with
    `model_card`, the Hub card `README.md`.

    Args:
        report ([`Report`]): what the run measured.
        output_dir (`str` or `Path`): the student's folder.
        log_history (`list[dict]`, *optional*): the trainer's `state.log_history`, for the loss curves.
        model_card (`bool`, *optional*, defaults to `True`): write `README.md` as well.
        model_name (`str`, *optional*): the name the card gives the model (e.g. the Hub repository id).
        dataset_name (`str`, *optional*): a Hub dataset id, for the card's metadata.
        command (`str`, *optional*): the command line that made the student, quoted in the card.
    """
    from .card import build_model_card, write_model_card
    from .plot import PLOT_NAME, plot_report

    output_dir = Path(output_dir)
    report.save(output_dir)
    plot_report(report.to_dict(), log_history, output_dir / PLOT_NAME)
    if model_card:
        card = build_model_card(
            report, model_name=model_name, dataset_name=dataset_name, command=command
        )
        write_model_card(card, output_dir)


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
