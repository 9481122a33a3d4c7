"""The job's teacher step: the teacher given, loaded, fine-tuned from a base encoder, or several teachers as
one ensemble.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
)

from ..config import plain_training_arguments
from ..data.labels import (
    align_label_names,
    is_generic_label_names,
    label_maps,
    label_names,
    model_label_names,
)
from ..data.tasks import TaskSpec, custom_task
from ..models.ensemble import TeacherEnsemble, check_teachers_agree
from ..models.loading import (
    check_checkpoint,
    has_trained_head,
    is_classifier_checkpoint,
    load_teacher,
    load_tokenizer,
    packaged_minilm_path,
    quiet_transformers,
)
from .job import DistillationJob

__all__ = ["finetune_teacher"]

logger = logging.getLogger("nlpkd")


def finetune_teacher(
    base: str,
    data: datasets.DatasetDict,
    task: TaskSpec,
    names: Sequence[str] | None,
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
        task ([`~nlpkd.data.TaskSpec`]): the task (number of labels, regression or not).
        names (`list[str]`, *optional*): the data's class names, stored in the model config.
        tokenizer: the encoder's tokenizer, saved with the model.
        args (`TrainingArguments`): batch sizes, precision, seed, ... (epochs and learning rate below win).
        output_dir (`str` or `Path`): where the fine-tuned teacher is saved.
        num_train_epochs (`float`, *optional*, defaults to `1.0`): epochs of fine-tuning.
        learning_rate (`float`, *optional*, defaults to `1e-4`): peak learning rate.
        trust_remote_code (`bool`, *optional*, defaults to `False`): passed to `from_pretrained`.
    """
    # The "newly initialised classifier" report is expected here: this step trains that head (a new one
    # replaces a checkpoint's head of another label count).
    with quiet_transformers():
        # A classifier checkpoint with another number of labels gets a new head: only the head's shape differs.
        teacher = AutoModelForSequenceClassification.from_pretrained(
            base,
            trust_remote_code=trust_remote_code,
            ignore_mismatched_sizes=True,
            **label_maps(names, task),
        )
    teacher_args = plain_training_arguments(
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


def _teacher_sources(job: DistillationJob) -> list[PreTrainedModel | str]:
    teachers = job.teacher if isinstance(job.teacher, list | tuple) else [job.teacher]
    if not teachers:
        raise ValueError("teacher is an empty list: give one teacher, or several fine-tuned ones.")
    return [
        t if isinstance(t, PreTrainedModel) else str(t if t is not None else packaged_minilm_path())
        for t in teachers
    ]


def teacher_source(job: DistillationJob) -> PreTrainedModel | str:
    """The (first) teacher: its tokenizer, labels and layers define the job."""
    return _teacher_sources(job)[0]


def _ensemble(
    job: DistillationJob, names: list[str] | None, prefixes: Sequence[str | None] | None = None
) -> TeacherEnsemble:
    """Several fine-tuned teachers as one (they are never fine-tuned here); teacher `i` reads the columns of
    `prefixes[i]` (its own tokenization, see `nlpkd.data.teacher_inputs`; the student's by default)."""
    teachers, tokenizers = [], []
    for source in _teacher_sources(job):
        if not isinstance(source, PreTrainedModel):
            check_checkpoint(source, "teacher")
            tokenizers.append(load_tokenizer(source, f"The teacher {source}"))
            source = load_teacher(source, trust_remote_code=job.trust_remote_code)
        teachers.append(source)
    # The teachers loaded from folders must read the same token ids (their own tokenizers are there).
    check_teachers_agree(teachers, tokenizers, prefixes)
    for teacher in teachers:
        if not job.task.is_regression and names:
            align_label_names(teacher, names)
    args = job.args
    return TeacherEnsemble(
        teachers, args.teacher_weights, args.temperature, args.teacher_ensemble, prefixes
    )


def _wants_finetuning(job: DistillationJob, source: str, finetune_only: bool) -> bool:
    trained = has_trained_head(source, job.task, job.trust_remote_code)
    if job.finetune_teacher == "never" and not trained:
        config = AutoConfig.from_pretrained(source, trust_remote_code=job.trust_remote_code)
        head = (
            f"is a sequence classifier with {config.num_labels} labels, but {job.task.name} has "
            f"{job.task.num_labels}"
            if is_classifier_checkpoint(source, job.trust_remote_code)
            else f"has no trained classification head for {job.task.name}"
        )
        raise ValueError(
            f"--finetune_teacher never, but {source} {head}: pass a teacher fine-tuned on these "
            f"{job.task.num_labels} classes, or let nlpkd fine-tune this one with a new head "
            "(--finetune_teacher auto)."
        )
    finetune = job.finetune_teacher == "always" or (job.finetune_teacher == "auto" and not trained)
    if finetune_only and not finetune:
        raise ValueError(
            f"{source} already has a trained head for {job.task.name}; use --finetune_teacher always."
        )
    return finetune


def prepare_teacher(
    job: DistillationJob,
    data: datasets.DatasetDict,
    tokenizer: Any,
    names: list[str] | None,
    finetune_only: bool = False,
    input_prefixes: Sequence[str | None] | None = None,
) -> PreTrainedModel:
    """The job's fine-tuned teacher: given, loaded, or fine-tuned here from a base encoder (and saved) on `data`
    as the teacher reads it; several fine-tuned teachers become one [`~nlpkd.models.TeacherEnsemble`] whose
    teachers read the columns of `input_prefixes`."""
    if len(_teacher_sources(job)) > 1:
        return _ensemble(job, names, input_prefixes)
    source = teacher_source(job)
    if isinstance(source, PreTrainedModel):
        # A model object is the caller's: its labels are checked against the data, never renamed.
        if (
            not job.task.is_regression
            and names
            and not is_generic_label_names(model_label_names(source) or [])
        ):
            align_label_names(source, names)
        return source
    if _wants_finetuning(job, source, finetune_only):
        output_dir = job.teacher_output_dir or str(Path(job.args.output_dir) / "teacher")
        logger.info("fine-tuning the teacher %s on %s ...", source, job.task.name)
        return finetune_teacher(
            source,
            data,
            job.task,
            names,
            tokenizer,
            job.args,
            output_dir=output_dir,
            num_train_epochs=job.teacher_num_train_epochs,
            learning_rate=job.teacher_learning_rate,
            trust_remote_code=job.trust_remote_code,
        )
    teacher = load_teacher(source, trust_remote_code=job.trust_remote_code)
    if not job.task.is_regression:
        align_label_names(teacher, names)
    return teacher


def _label_map_to(teacher_names: list[str], data_names: list[str]) -> dict[int, int] | None:
    """Data label id -> teacher label id when the teacher knows every data class: by name (the data may hold
    a subset of the teacher's classes), or when the data's classes are integer ids that index the teacher's."""
    position = {name: i for i, name in enumerate(teacher_names)}
    if all(name in position for name in data_names):
        return {i: position[name] for i, name in enumerate(data_names)}
    if all(name.isdigit() and int(name) < len(teacher_names) for name in data_names):
        return {i: int(name) for i, name in enumerate(data_names)}
    return None


def adopt_teacher_labels(job: DistillationJob) -> DistillationJob:
    """Your own data in the classes of a fine-tuned teacher that knows them.

    A teacher fine-tuned on 3 named classes can teach a CSV that holds 2 of them, or integer ids that index its
    classes: the data's labels become the teacher's ids, the task the teacher's classes, and nothing is
    re-headed or fine-tuned. Applies to custom data (GLUE tasks have fixed classes), to one teacher given as a
    path or Hub id with named labels, unless `finetune_teacher="always"` asks for a new head.

    Args:
        job ([`DistillationJob`]): the job.

    Returns:
        [`DistillationJob`]: the job itself, or a copy whose `data`, `task` and `label_names` are the
        teacher's.
    """
    source = teacher_source(job)
    if job.task.name != "custom" or job.task.is_regression or job.finetune_teacher == "always":
        return job
    if len(_teacher_sources(job)) > 1 or not isinstance(source, str):
        return job
    if not is_classifier_checkpoint(source, job.trust_remote_code):
        return job
    config = AutoConfig.from_pretrained(source, trust_remote_code=job.trust_remote_code)
    teacher_names = [str(config.id2label[i]) for i in range(config.num_labels)]
    data_names = label_names(job.data, job.task)
    if config.num_labels < 2 or is_generic_label_names(teacher_names) or not data_names:
        return job
    mapping = _label_map_to(teacher_names, data_names)
    if mapping is None or (teacher_names == data_names):
        return job
    features = next(iter(job.data.values())).features.copy()
    features["label"] = datasets.ClassLabel(names=teacher_names)
    data = job.data.map(
        lambda row: {"label": mapping[row["label"]]},
        features=features,
        desc="labels as the teacher's classes",
    )
    logger.info("the data's labels %s are the teacher's classes %s", data_names, teacher_names)
    task = custom_task(job.task.text_columns, config.num_labels)
    return dataclasses.replace(job, data=data, task=task, label_names=teacher_names)
