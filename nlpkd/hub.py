"""Model card and Hub upload for a distilled student.

The card is a `huggingface_hub.ModelCard` whose YAML metadata (base model, tags, model-index) is
built with `ModelCardData` and `EvalResult`, so the Hub reads it like any transformers model card.
`push_to_hub` uploads only the files that make up the model (see `files_to_upload`); training
checkpoints and logs stay local.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

__all__ = [
    "HubPushError",
    "build_model_card",
    "files_to_upload",
    "push_to_hub",
    "write_model_card",
]

logger = logging.getLogger(__name__)

# Top-level file names that belong to a published student. Everything else in the output
# directory (checkpoint-*/, runs/, training_args.bin, trainer_state.json, optimizer states,
# *.bin weights) is training state or duplicates the safetensors weights.
UPLOAD_FILE_NAMES: frozenset[str] = frozenset(
    {
        "config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "README.md",
        "metrics.json",
    }
)
UPLOAD_SUFFIXES: tuple[str, ...] = (".safetensors", ".model", ".yaml", ".yml", ".png")

# Order in which loss settings are shown in the card; unknown keys follow, sorted.
_LOSS_KEYS: tuple[str, ...] = (
    "temperature",
    "alpha_kd",
    "alpha_ce",
    "alpha_hidden",
    "alpha_attn",
    "hidden_loss",
    "attn_loss",
)


class HubPushError(RuntimeError):
    """Raised when creating the Hub repository or uploading to it fails; nothing local changed."""


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
    teacher_params, student_params = report.get("teacher_params"), report.get("student_params")
    if teacher_params is not None and student_params is not None:
        lines.append(
            f"| parameters | {teacher_params:,} | {student_params:,} "
            f"| {_ratio_cell(teacher_params, student_params)} |"
        )
    teacher_size, student_size = report.get("teacher_size_mb"), report.get("student_size_mb")
    if teacher_size is not None and student_size is not None:
        lines.append(
            f"| size on disk (MB) | {teacher_size:.2f} | {student_size:.2f} "
            f"| {_ratio_cell(teacher_size, student_size)} |"
        )
    teacher_ms, student_ms = report.get("teacher_latency_ms"), report.get("student_latency_ms")
    if teacher_ms is not None and student_ms is not None:
        lines.append(
            f"| latency (ms per batch) | {teacher_ms:.2f} | {student_ms:.2f} "
            f"| {_ratio_cell(teacher_ms, student_ms)} |"
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
        if report.get("device"):
            context.append(f"on {report['device']}")
        if report.get("torch_threads"):
            context.append(f"{report['torch_threads']} torch threads")
        lines.append(
            f"- **Speed-up:** {report['speedup']:.2f}x faster than the teacher "
            f"(median latency, {', '.join(context)})."
        )
    return lines


def _loss_section(loss_config: Mapping[str, Any]) -> str:
    keys = [key for key in _LOSS_KEYS if key in loss_config]
    keys += sorted(key for key in loss_config if key not in _LOSS_KEYS)
    rows = ["| setting | value |", "| --- | --- |"]
    rows += [f"| `{key}` | {_format_value(loss_config[key])} |" for key in keys]
    formula = (
        "loss = alpha_kd * T^2 * KL(softmax(z_teacher / T) || softmax(z_student / T))\n"
        "     + alpha_ce * CE(z_student, labels)\n"
        "     + alpha_hidden * hidden-state loss over mapped layers\n"
        "     + alpha_attn * attention-map loss over mapped layers"
    )
    return f"The training loss, with T the temperature:\n\n```text\n{formula}\n```\n\n" + "\n".join(
        rows
    )


def _is_hub_id(name: str) -> bool:
    path = Path(name).expanduser()
    return not (
        path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or path.exists()
    )


def build_model_card(
    report: Mapping[str, Any],
    *,
    teacher_name: str,
    teacher_layers: Sequence[int] | None,
    student_layers: int,
    loss_config: Mapping[str, Any],
    task_name: str | None = None,
    dataset_name: str | None = None,
    license: str | None = None,
    model_name: str | None = None,
    command: str | None = None,
) -> ModelCard:
    """
    Build the Hub model card of a distilled student from its compression report.

    The YAML metadata sets `base_model` to the teacher, `library_name: transformers`,
    `pipeline_tag: text-classification`, the tags `distillation`, `nlpkd` and
    `text-classification`, `datasets` and `license` when known, and a `model-index` with one
    result per student metric on the report's main split. The Markdown body says how the student
    was made (teacher, teacher layers, loss weights and temperature), compares teacher and student
    in a table (metrics on every split, parameters, size, latency, speed-up, retention) and shows
    how to use it with `pipeline`.

    Args:
        report (`Mapping[str, Any]`):
            A report from `nlpkd.report.compression_report`.
        teacher_name (`str`):
            Hub id or local name of the teacher, e.g. `"textattack/bert-base-uncased-SST-2"`.
        teacher_layers (`Sequence[int]`, *optional*):
            Teacher layer indices the student layers were copied from, e.g. `[0, 2, 4, 7, 9, 11]`;
            `None` when the student was not initialised from teacher layers.
        student_layers (`int`):
            Number of transformer layers in the student.
        loss_config (`Mapping[str, Any]`):
            Loss settings, e.g. `temperature`, `alpha_kd`, `alpha_ce`, `alpha_hidden`,
            `alpha_attn`, `hidden_loss`, `attn_loss`; all entries are listed in the card.
        task_name (`str`, *optional*):
            Task or dataset configuration, e.g. `"sst2"`.
        dataset_name (`str`, *optional*):
            Hub id of the dataset, e.g. `"nyu-mll/glue"`; goes into the `datasets` metadata.
        license (`str`, *optional*):
            License identifier for the metadata, e.g. `"apache-2.0"`.
        model_name (`str`, *optional*):
            Name of the student, ideally its Hub repo id (`"user/bert-sst2-6L"`); used as the card
            title, the model-index name and in the usage snippet. Defaults to
            `"<teacher>-nlpkd-<student_layers>L"`.
        command (`str`, *optional*):
            The command line that produced the student, shown under "How it was made".

    Returns:
        `huggingface_hub.ModelCard`: the card; save it with `write_model_card`.
    """
    if not teacher_name:
        raise ValueError("teacher_name is empty; pass the teacher's Hub id or local name.")
    if (
        isinstance(student_layers, bool)
        or not isinstance(student_layers, int)
        or student_layers < 1
    ):
        raise ValueError(f"student_layers must be a positive int, got {student_layers!r}.")
    if teacher_layers is not None and len(teacher_layers) != student_layers:
        raise ValueError(
            f"teacher_layers lists {len(teacher_layers)} layers ({list(teacher_layers)}) but the "
            f"student has {student_layers}; pass one teacher layer index per student layer."
        )
    for key in ("main_metric", "main_split", "student"):
        if key not in report:
            raise ValueError(
                f"The report has no {key!r} entry; build it with nlpkd.report.compression_report."
            )
    main_split = report["main_split"]
    student_main = report["student"].get(main_split)
    if not student_main:
        raise ValueError(
            f"The report has no student metrics on its main split {main_split!r}; "
            "evaluate the student on that split before building the card."
        )

    teacher_short = teacher_name.rstrip("/").split("/")[-1]
    model_name = model_name or f"{teacher_short}-nlpkd-{student_layers}L"
    dataset_id = dataset_name or task_name or "custom"
    dataset_pretty = " ".join(part for part in (dataset_name, task_name) if part) or "custom"
    eval_results = [
        EvalResult(
            task_type="text-classification",
            task_name="Text Classification",
            dataset_type=dataset_id,
            dataset_name=dataset_pretty,
            dataset_config=task_name if dataset_name and task_name else None,
            dataset_split=main_split,
            metric_type=metric,
            metric_name=metric,
            metric_value=value,
        )
        for metric, value in student_main.items()
        if value is not None
    ]
    tags = ["distillation", "nlpkd", "text-classification"]
    if task_name:
        tags.append(task_name)
    card_data = ModelCardData(
        # The Hub validates base_model as a repository id: a local folder is named in the text only.
        base_model=teacher_name if _is_hub_id(teacher_name) else None,
        datasets=[dataset_name] if dataset_name else None,
        license=license,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=tags,
        model_name=model_name,
        eval_results=eval_results or None,
    )

    if teacher_layers is None:
        origin = (
            f"a {student_layers}-layer student that was not initialised from teacher layers, "
            f"distilled from `{teacher_name}`"
        )
    else:
        origin = (
            f"a {student_layers}-layer student initialised from teacher layers "
            f"{list(teacher_layers)} of "
            f"`{teacher_name}`"
        )
    task_text = f" on {dataset_pretty}" if dataset_pretty != "custom" else ""
    made_with = (
        "It was trained with nlpkd's `DistillationTrainer`, a `transformers.Trainer` subclass, "
        "on the loss below."
    )
    if command:
        made_with = f"It was produced by this command:\n\n```bash\n{command}\n```\n\n" + made_with
    body = [
        f"# {model_name}",
        "",
        f"This model is {origin}, a text classifier{task_text}, compressed by knowledge "
        "distillation with nlpkd.",
        "",
        *_summary_lines(report),
        "",
        "## Results",
        "",
        _results_table(report),
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'classifier = pipeline("text-classification", model="{model_name}")',
        'print(classifier("Replace this with the text to classify."))',
        "```",
        "",
        "## How it was made",
        "",
        made_with,
        "",
        _loss_section(loss_config),
        "",
    ]
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(body)
    card = ModelCard(content)
    # Parse back now, offline, so a malformed model-index fails here rather than on the Hub.
    if card.data.to_dict() != card_data.to_dict():
        raise ValueError(
            "The model card metadata did not survive a YAML round trip; please report it."
        )
    return card


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


def files_to_upload(output_dir: str | Path) -> list[str]:
    """
    The files of an output directory that `push_to_hub` uploads, relative to it, sorted.

    Only top-level files are considered, so `checkpoint-*/`, `runs/` and any other folder stay
    local. A file is uploaded when it is model weights in safetensors (`*.safetensors`,
    `model.safetensors.index.json`), `config.json` or `generation_config.json`, a tokenizer file
    (`tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`, `added_tokens.json`,
    `vocab.txt`, `vocab.json`, `merges.txt`, `*.model`), the model card `README.md`,
    `metrics.json`, a YAML config (`*.yaml`, `*.yml`) or a plot (`*.png`). Training state
    (`training_args.bin`, `trainer_state.json`, optimizer and scheduler files) and pickled
    `*.bin` weights are never uploaded.

    Args:
        output_dir (`str` or `pathlib.Path`):
            The student's output directory.

    Returns:
        `list[str]`: file names relative to `output_dir`.
    """
    output_dir = Path(output_dir)
    return sorted(
        path.name
        for path in output_dir.iterdir()
        if path.is_file() and (path.name in UPLOAD_FILE_NAMES or path.suffix in UPLOAD_SUFFIXES)
    )


def _escape_pattern(name: str) -> str:
    # upload_folder matches patterns with fnmatch; bracket the wildcard characters so that each
    # pattern matches exactly one file name.
    return "".join(f"[{char}]" if char in "*?[" else char for char in name)


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def push_to_hub(
    output_dir: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload distilled student (nlpkd)",
) -> str:
    """
    Upload a distilled student's output directory to a Hub model repository.

    The repository is created if needed (`HfApi.create_repo(exist_ok=True)`), then the files
    chosen by `files_to_upload` are uploaded in one commit with `HfApi.upload_folder`. The token
    is passed to the API only; it is never logged or written. The local directory is only read.

    Args:
        output_dir (`str` or `pathlib.Path`):
            Directory holding the student (`save_pretrained`), tokenizer, `README.md`, ...
        repo_id (`str`):
            Target repository, `"user/name"` or `"org/name"`.
        token (`str`, *optional*):
            Hub token with write access; defaults to the one from `hf auth login` /
            `huggingface-cli login` or the `HF_TOKEN` environment variable.
        private (`bool`, *optional*):
            Create the repository private; `None` uses the Hub's default. Ignored when the
            repository exists.
        commit_message (`str`, *optional*, defaults to `"Upload distilled student (nlpkd)"`):
            Message of the upload commit.

    Returns:
        `str`: the URL of the commit.

    Raises:
        `ValueError`: when the directory or repo id is unusable (nothing is sent).
        `HubPushError`: when creating the repository or uploading fails.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise ValueError(
            f"output_dir {str(output_dir)!r} is not a directory; pass the folder the student "
            "was saved to."
        )
    if not repo_id or repo_id.count("/") > 1 or repo_id.startswith("/") or repo_id.endswith("/"):
        raise ValueError(
            f"repo_id {repo_id!r} is not a Hub repo id; use 'user/name' or 'org/name'."
        )
    files = files_to_upload(output_dir)
    if "config.json" not in files or not any(name.endswith(".safetensors") for name in files):
        raise ValueError(
            f"{output_dir} has no config.json and *.safetensors weights to upload (found "
            f"{files}). Save the student there with model.save_pretrained(output_dir) first."
        )
    if "README.md" not in files:
        logger.warning("%s has no README.md; the repository will have no model card.", output_dir)

    api = HfApi()
    step = "creating the repository"
    try:
        api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
        step = "uploading the files"
        logger.info("Uploading %d files from %s to %s: %s", len(files), output_dir, repo_id, files)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=output_dir,
            repo_type="model",
            token=token,
            commit_message=commit_message,
            allow_patterns=[_escape_pattern(name) for name in files],
        )
    except Exception as err:
        raise HubPushError(
            f"Pushing to the Hub repository {repo_id!r} failed while {step}: "
            f"{type(err).__name__}: {_redact(str(err), token).rstrip('.')}. Nothing local was changed; the "
            f"output directory is intact at {output_dir.resolve()}. Check the repo id, that your "
            "token has write access (hf auth login or HF_TOKEN) and the network, then push again."
        ) from err
    url = str(getattr(commit, "commit_url", "") or commit)
    logger.info("Pushed %s to %s", output_dir, url)
    return url
