"""The Hub model card of a distilled student, rendered from its [`Report`] with the template
`nlpkd/templates/model_card.md` (`huggingface_hub.ModelCard.from_template`).

The YAML metadata (base model, tags, model-index) is built with `ModelCardData` and `EvalResult`, so the Hub
reads it like any transformers model card.

"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..config import LOSS_SETTINGS
from .report import Report
from .text import deployment_notes, describe_search, describe_width, variants_table

__all__ = ["build_model_card", "write_model_card"]

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"


_FORMULA = (
    "loss = alpha_kd * T^2 * KL(softmax(z_teacher / T) || softmax(z_student / T))\n"
    "     + alpha_ce * CE(z_student, labels)\n"
    "     + alpha_hidden * hidden-state loss over mapped layers\n"
    "     + alpha_attn * attention-map loss over mapped layers"
)


def _loading_snippet(folder: str, names: list[str]) -> str:
    """How to load each deployed form of the card, with the loader its kind needs."""
    lines = [
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
    ]
    lines.append("from nlpkd.deploy import load_onnx, load_quantized")
    lines.append("")
    for name in names:
        path = f"{folder}/{name}"
        if "onnx" in name:
            lines.append(f'session = load_onnx("{path}")  # ONNX Runtime: session(batch) -> logits')
        elif name.endswith("-int8"):
            lines.append(f'model = load_quantized("{path}")  # PyTorch int8, CPU')
        else:
            lines.append(f'model = AutoModelForSequenceClassification.from_pretrained("{path}")')
    lines.append(
        f'tokenizer = AutoTokenizer.from_pretrained("{folder}/{names[0]}")  # each form has its own'
    )
    return "\n".join([*lines, "```"])


# What the card says the student is, and how to call it, per Hub pipeline tag (`Report.pipeline_tag`).
_KINDS = {
    "text-classification": (
        "a text classifier",
        'classifier("Replace this with the text to classify.")',
    ),
    "image-classification": ("an image classifier", 'classifier("path/to/image.png")'),
    "text-generation": (
        "a causal language model",
        'classifier("Once upon a time", max_new_tokens=40)',
    ),
}


def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return f"`{value}`"


def _metric_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _ratio_cell(teacher: float | None, student: float | None, suffix: str = "x") -> str:
    if teacher is None or student is None or teacher == 0:
        return "-"
    return f"{student / teacher:.2f}{suffix}"


def _results_table(report: Mapping[str, Any]) -> str:
    teacher_metrics = report.get("teacher", {})
    student_metrics = report.get("student", {})
    lines = ["| | teacher | student | student / teacher |", "| --- | ---: | ---: | ---: |"]
    for split in dict.fromkeys([*teacher_metrics, *student_metrics]):
        names = dict.fromkeys([*teacher_metrics.get(split, {}), *student_metrics.get(split, {})])
        for name in names:
            teacher = teacher_metrics.get(split, {}).get(name)
            student = student_metrics.get(split, {}).get(name)
            lines.append(
                f"| {name} ({split}) | {_metric_cell(teacher)} | {_metric_cell(student)} "
                f"| {_ratio_cell(teacher, student, '')} |"
            )
    for label, key, fmt in (
        ("parameters", "params", ","),
        ("size on disk (MB)", "size_mb", ".2f"),
        ("latency (ms per batch)", "latency_ms", ".2f"),
    ):
        teacher, student = report.get(f"teacher_{key}"), report.get(f"student_{key}")
        if teacher is not None and student is not None:
            lines.append(
                f"| {label} | {teacher:{fmt}} | {student:{fmt}} | {_ratio_cell(teacher, student)} |"
            )
    if report.get("speedup") is not None:
        lines.append(f"| speed-up (teacher / student latency) | | | {report['speedup']:.2f}x |")
    if report.get("retention") is not None:
        lines.append(
            f"| retention ({report.get('main_metric')}, {report.get('main_split')}) | | "
            f"| {report['retention']:.1%} |"
        )
    return "\n".join(lines)


def _summary_lines(report: Mapping[str, Any]) -> list[str]:
    lines = []
    main = f"{report.get('main_metric')} on the {report.get('main_split')} split"
    if report.get("retention") is not None:
        lines.append(f"- **Retention:** {report['retention']:.1%} of the teacher's {main}.")
    if report.get("param_reduction") is not None:
        lines.append(f"- **Parameters:** {report['param_reduction']:.1%} fewer than the teacher.")
    if report.get("speedup") is not None:
        shape = report.get("latency_batch_shape")
        context = []
        if shape and len(shape) == 2:
            context.append(f"batches of {shape[0]} x {shape[1]} tokens")
        elif shape and len(shape) == 4:
            context.append(f"batches of {shape[0]} images of {shape[2]} x {shape[3]} pixels")
        if report.get("device"):
            context.append(f"on {report['device']}")
        if report.get("torch_threads"):
            context.append(f"{report['torch_threads']} torch threads")
        lines.append(
            f"- **Speed-up:** {report['speedup']:.2f}x faster than the teacher "
            f"(median latency, {', '.join(context)})."
        )
    return lines


def _is_hub_id(name: str) -> bool:
    path = Path(name).expanduser()
    return not (
        path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or path.exists()
    )


def write_model_card(card: ModelCard, output_dir: str | Path) -> Path:
    """
    Write a model card as `README.md` in `output_dir`, where the Hub looks for it.

    Args:
        card (`huggingface_hub.ModelCard`):
            The card, e.g. from `build_model_card`.
        output_dir (`str` or `pathlib.Path`):
            The student's output directory; created when missing.

    Returns:
        `pathlib.Path`: the path of `README.md`.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "README.md"
    card.save(path)
    return path


def _settings_table(settings: Mapping[str, Any]) -> str:
    keys = [key for key in LOSS_SETTINGS if key in settings]
    keys += sorted(key for key in settings if key not in LOSS_SETTINGS)
    rows = ["| setting | value |", "| --- | --- |"]
    return "\n".join(rows + [f"| `{key}` | {_format_value(settings[key])} |" for key in keys])


def _variants_table(report: Report) -> str:
    """One row per measured form (the table of the summary and of `metrics.json`), where they are and what
    pruning changed; empty when the run deployed nothing."""
    if len(report.variants) <= 2:
        return ""
    rows = variants_table(report)
    lines = [
        "| " + " | ".join(rows[0]) + " |",
        "| --- |" + " ---: |" * (len(rows[0]) - 1),
        *("| " + " | ".join(row) + " |" for row in rows[1:]),
    ]
    notes = deployment_notes(report)
    if notes:
        folder = str(report.extra.get("deployment", {}).get("folder", "deploy"))
        names = [variant.name for variant in report.variants[2:]]
        lines += ["", " ".join(notes), "", _loading_snippet(folder, names)]
    return "\n".join(lines)


def _card_data(
    report: Report, model_name: str, dataset_name: str | None, license: str | None
) -> ModelCardData:
    task_name = None if report.task in (None, "custom") else report.task
    dataset_id = dataset_name or task_name or "custom"
    dataset_pretty = " ".join(part for part in (dataset_name, task_name) if part) or "custom"
    eval_results = [
        EvalResult(
            task_type=report.pipeline_tag,
            task_name=report.pipeline_tag.replace("-", " ").title(),
            dataset_type=dataset_id,
            dataset_name=dataset_pretty,
            dataset_config=task_name if dataset_name and task_name else None,
            dataset_split=report.main_split,
            metric_type=metric,
            metric_name=metric,
            metric_value=value,
        )
        for metric, value in report.student.metrics[report.main_split].items()
        if value is not None
    ]
    teacher_name = report.teacher_name or "teacher"
    return ModelCardData(
        # The Hub validates base_model as a repository id: a local folder is named in the text only.
        base_model=teacher_name if _is_hub_id(teacher_name) else None,
        datasets=[dataset_name] if dataset_name else None,
        license=license,
        library_name="transformers",
        pipeline_tag=report.pipeline_tag,
        tags=["distillation", "nlpkd", report.pipeline_tag, *([task_name] if task_name else [])],
        model_name=model_name,
        eval_results=eval_results or None,
    )


def build_model_card(
    report: Report,
    *,
    model_name: str | None = None,
    dataset_name: str | None = None,
    license: str | None = None,
    command: str | None = None,
) -> ModelCard:
    """
    Build the Hub model card of a distilled student from its report.

    The YAML metadata sets `base_model` to the teacher (when it is a Hub id), `library_name: transformers`,
    the report's `pipeline_tag` (`text-classification` unless the report says `image-classification` or
    `text-generation`), the tags `distillation`, `nlpkd`, the pipeline tag and the task,
    `datasets` and `license` when known, and a `model-index` with one result per student metric on the report's
    main split. The body says how the student was made (teacher, teacher layers, loss settings), compares
    teacher and student (metrics on every split, parameters, size, latency, speed-up, retention), lists the
    deployed forms side by side when the run made any, and shows how to use it with `pipeline`. A report whose
    `extra["origin"]` is set (a ResNet student, a continually trained model) states the student's origin with it.

    Args:
        report ([`~nlpkd.report.Report`]): what the run measured; it names the teacher, the layers and the loss.
        model_name (`str`, *optional*): name of the student, ideally its Hub repo id (`"user/bert-sst2-6L"`);
            used as the title, the model-index name and in the usage snippet. Defaults to
            `"<teacher>-nlpkd-<student_layers>L"`.
        dataset_name (`str`, *optional*): Hub id of the dataset, e.g. `"nyu-mll/glue"`.
        license (`str`, *optional*): license identifier for the metadata, e.g. `"apache-2.0"`.
        command (`str`, *optional*): the command line that produced the student, shown under "How it was made".

    Returns:
        `huggingface_hub.ModelCard`: the card; save it with [`write_model_card`].
    """
    if not isinstance(report, Report):
        report = Report.from_dict(report)
    teacher_name = report.teacher_name or "teacher"
    layers, teacher_layers = report.student_layers, report.teacher_layers
    if teacher_layers is not None and layers is not None and len(teacher_layers) != layers:
        raise ValueError(
            f"The report's teacher_layers lists {len(teacher_layers)} layers ({list(teacher_layers)}) but "
            f"the student has {layers}; pass one teacher layer index per student layer."
        )
    model_name = model_name or f"{teacher_name.rstrip('/').split('/')[-1]}-nlpkd-{layers}L"
    card_data = _card_data(report, model_name, dataset_name, license)
    depth = f"a {layers}-layer student" if layers else "a student"
    if report.student_width:
        depth += f" narrowed to {describe_width(report.student_width)}"
    if teacher_layers is None:
        origin = (
            f"{depth} that was not initialised from teacher layers, distilled from `{teacher_name}`"
        )
    else:
        origin = (
            f"{depth} initialised from teacher layers {list(teacher_layers)} of `{teacher_name}`"
        )
    # A run whose student is not "fewer layers of the teacher" (ResNet blocks, a grown head) says what it is.
    origin = report.extra.get("origin") or origin
    task_name = None if report.task in (None, "custom") else report.task
    dataset_pretty = " ".join(part for part in (dataset_name, task_name) if part)
    made_with = (
        "It was trained with nlpkd's `DistillationTrainer`, a `transformers.Trainer` subclass, "
        "on the loss below."
    )
    kind, usage = _KINDS.get(report.pipeline_tag, ("a model", "classifier(...)"))
    if report.extra.get("search"):
        made_with += (
            f" Its recipe was chosen by a search: {describe_search(report.extra['search'])}."
        )
    if command:
        made_with = f"It was produced by this command:\n\n```bash\n{command}\n```\n\n" + made_with
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        origin=origin,
        model_kind=kind,
        pipeline_tag=report.pipeline_tag,
        usage=usage,
        task_text=f" on {dataset_pretty}" if dataset_pretty else "",
        summary="\n".join(_summary_lines(report.to_dict())),
        results_table=_results_table(report.to_dict()),
        variants_table=_variants_table(report),
        made_with=made_with,
        formula=_FORMULA,
        settings_table=_settings_table(report.distillation),
    )
    # Parse back now, offline, so a malformed model-index fails here rather than on the Hub.
    if card.data.to_dict() != card_data.to_dict():
        raise ValueError(
            "The model card metadata did not survive a YAML round trip; please report it."
        )
    return card
