"""The report of a distillation run: a typed [`Report`] of every model measured side by side.

`Report.to_dict()` is the layout of `metrics.json`; [`nlpkd.report.write_report`] writes that file, the plot and
the model card from the same report, so they always agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["METRICS_NAME", "Report", "Variant", "load_report"]

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
        student_width (`dict`, *optional*): a narrower student's `hidden_size`, `num_attention_heads`,
            `intermediate_size` and how its units were chosen (`selection`); `None` at the teacher's width.
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
    student_width: dict[str, Any] | None = None
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
            "student_width": self.student_width,
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
