"""The one distillation job: fine-tune or load the teacher, build the student, distil, evaluate, report.

Both front ends build a [`DistillationJob`] and call [`run`]: `nlpkd distill` from the command line
(`nlpkd.cli`) and `nlpkd.distill` from Python (`nlpkd.api`). Everything the job built comes back in a
[`DistillationResult`], whose `save` writes the student and its report files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import datasets
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedModel,
    set_seed,
)

from ..data.labels import (
    label_names,
)
from ..data.readers import subsample
from ..data.unlabeled import extra_training_text, with_unlabeled
from ..models.families import check_family, num_encoder_layers
from ..models.loading import (
    build_student,
    check_checkpoint,
    hub_name,
    load_tokenizer,
    model_name,
)
from ..models.student import logger
from ..models.width import check_width_request, width_summary
from ..report.evaluate import build_report, evaluate_model
from ..report.metrics import make_compute_metrics
from ..report.report import Report
from ..trainer.checkpoints import last_complete_checkpoint
from ..trainer.trainer import DistillationTrainer
from .deploy_step import check_deploy_plan, deploy_student
from .job import DistillationJob
from .result import DistillationResult
from .search import search_recipe
from .teacher import adopt_teacher_labels, prepare_teacher, teacher_source
from .tokenizers import (
    JobTokenizers,
    evaluation_inputs,
    job_tokenizers,
    latency_inputs,
)

__all__ = ["calibration_batches", "prepare_data", "run", "run_finetune", "sampled_data"]


# The job options that ask for a narrower student (create_student's names).
_WIDTH_SIZES = ("hidden_size", "intermediate_size", "num_attention_heads")


def _check_student_plan(job: DistillationJob, source: PreTrainedModel | str) -> None:
    """Fail before any fine-tuning when no student can be built from this teacher."""
    narrower = any(job.width()[size] is not None for size in _WIDTH_SIZES)
    if job.student is not None:
        if narrower:
            raise ValueError(
                "--student_hidden_size, --student_intermediate_size and --student_heads build a narrower "
                "student from the teacher; with --student (a student of your own) leave them out."
            )
        if not isinstance(job.student, PreTrainedModel):
            check_checkpoint(job.student, "student")
        return
    config = (
        source.config
        if isinstance(source, PreTrainedModel)
        else AutoConfig.from_pretrained(source, trust_remote_code=job.trust_remote_code)
    )
    check_family(config)
    # The sizes and the family, now; the calibration batches come once the data is tokenized.
    check_width_request(config, **{**job.width(), "width_selection": "first"})
    depth = num_encoder_layers(config)
    most = depth if narrower else depth - 1
    layers = job.student_layers
    bad = (
        not 1 <= layers <= most
        if isinstance(layers, int)
        else any(not 0 <= i < depth for i in layers or [])
    )
    if bad:
        shown = layers if isinstance(layers, int) else ",".join(map(str, layers))
        raise ValueError(
            f"student_layers {shown}: the teacher has {depth} layers, so give a number from 1 to "
            f"{most} or layer indices from 0 to {depth - 1}."
        )


def calibration_batches(
    job: DistillationJob, train: datasets.Dataset, tokenizer: Any
) -> list[dict[str, Any]] | None:
    """Padded batches of `width_calibration_samples` training examples (a subset seeded by the training `seed`)
    that a narrower student's importance scores are measured on; `None` when the job needs none."""
    narrower = any(job.width()[size] is not None for size in _WIDTH_SIZES)
    if not narrower or job.width_selection != "importance":
        return None
    rows = subsample(train, job.width_calibration_samples, job.args.seed)
    rows = rows.select_columns([c for c in rows.column_names if c in tokenizer.model_input_names])
    collate = DataCollatorWithPadding(tokenizer)
    size = job.args.per_device_eval_batch_size
    return [
        collate([rows[i] for i in range(s, min(s + size, len(rows)))])
        for s in range(0, len(rows), size)
    ]


def sampled_data(job: DistillationJob) -> datasets.DatasetDict:
    """The job's raw data as the run uses it: at most `max_train_samples` training rows (a subset seeded by the
    training `seed`) and at most `max_eval_samples` rows of every other split (seeded by `split_seed`, so that a
    seed sweep is evaluated on the same examples). Every step reads its rows from here."""
    return datasets.DatasetDict(
        {
            name: subsample(split, job.max_train_samples, job.args.seed)
            if name == "train"
            else subsample(split, job.max_eval_samples, job.split_seed)
            for name, split in job.data.items()
        }
    )


def _max_length(job: DistillationJob, tokenizers: JobTokenizers) -> int:
    maxima = [
        getattr(t, "model_max_length", None) for t in (tokenizers.student, *tokenizers.teachers)
    ]
    model_max = min((m for m in maxima if isinstance(m, int) and m > 0), default=job.max_length)
    if model_max < job.max_length:
        logger.warning(
            "max_length %d is more than the models' maximum of %d tokens; using %d.",
            job.max_length,
            model_max,
            model_max,
        )
        return model_max
    return job.max_length


def prepare_data(
    job: DistillationJob, raw: datasets.DatasetDict, tokenizer: Any
) -> tuple[datasets.DatasetDict, dict[str, datasets.Dataset], int]:
    """Tokenize the job's sampled data (at `max_length`, clamped once to the tokenizers' maximum) with one
    tokenizer, or for every model of the job from the same text ([`JobTokenizers`]); returns the tokenized data,
    the evaluation splits and the `max_length` used."""
    if not isinstance(tokenizer, JobTokenizers):
        tokenizer = JobTokenizers(tokenizer, (tokenizer,), (None,))
    max_length = _max_length(job, tokenizer)
    data = tokenizer.tokenize(raw, job.task, max_length)
    if "train" not in data:
        raise ValueError("No training split: pass --train_file (and --validation_file).")
    # Without evaluation data the report is measured on the training data (which overstates the metric).
    splits = (
        [s for s in job.task.validation_splits if s in data]
        or [s for s in data if s != "train"]
        or ["train"]
    )
    return data, {s: data[s] for s in splits}, max_length


def extra_rows(
    job: DistillationJob, labeled: datasets.Dataset, tokenizers: JobTokenizers, max_length: int
) -> datasets.Dataset | None:
    """The tokenized rows that only the teacher supervises: augmented variants of the labeled examples and the
    unlabeled text (`None` when the job has neither), tokenized for every model; checked before any training.
    The `mask` method writes the teacher's mask token, which each tokenizer reads as its own."""
    if job.unlabeled_data is None and not job.augment:
        return None
    if job.task.is_regression:
        raise ValueError(
            "Unlabeled text and augmentation need a classification task: a regression teacher's soft "
            "targets are single values, so its labels would be needed anyway. Drop --unlabeled_file/--augment."
        )
    options: dict[str, Any] = {"seed": job.args.seed, "pair_side": job.augment_pair_side}
    options["tokenizer"] = tokenizers.teacher
    if job.augment_methods:
        options["methods"] = list(job.augment_methods)
    if job.augment_mlm:
        options["mlm_model"] = AutoModelForMaskedLM.from_pretrained(job.augment_mlm)
        options["mlm_tokenizer"] = AutoTokenizer.from_pretrained(job.augment_mlm)
    if job.augment and len(job.task.text_columns) == 2:
        logger.info("augmenting sentence pairs: pair_side=%s", job.augment_pair_side)
    text = extra_training_text(
        labeled,
        job.task.text_columns,
        unlabeled=job.unlabeled_data,
        augment=job.augment,
        augment_options=options,
    )
    raw = datasets.DatasetDict({"extra": text})
    mask_token = getattr(tokenizers.teacher, "mask_token", None) if job.augment else None
    return tokenizers.tokenize(raw, job.task, max_length, mask_token)["extra"]


def _distil(
    job: DistillationJob,
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    train: datasets.Dataset,
    eval_splits: Mapping[str, datasets.Dataset],
    tokenizers: JobTokenizers,
) -> DistillationTrainer:
    # A job pushes once at the end, with its card: the Trainer must not push checkpoints itself, and never
    # holds the token (it pickles its arguments into training_args.bin).
    args = job.args
    if args.push_to_hub or args.hub_token:
        args = dataclasses.replace(args, push_to_hub=False, hub_token=None)
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=train,
        eval_dataset=next((d for s, d in eval_splits.items() if s != "train"), None),
        processing_class=tokenizers.student,
        teacher_processing_class=tokenizers.teacher_argument(),
        data_collator=tokenizers.collator(),
        compute_metrics=job.compute_metrics or make_compute_metrics(job.task),
    )
    logger.info("distilling into %d layers ...", num_encoder_layers(student))
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    return trainer


def _evaluate_pair(
    job: DistillationJob,
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    eval_splits: Mapping[str, datasets.Dataset],
    tokenizers: JobTokenizers,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The metrics of teacher and student, each on its own tokenization of the evaluation texts, and of each
    teacher of an ensemble (the report's `teachers`)."""
    ensemble = hasattr(teacher, "teachers")
    splits, tokenizer, collator = evaluation_inputs(tokenizers, eval_splits, ensemble)
    evaluate = {"args": job.args, "task": job.task, "compute_metrics": job.compute_metrics}
    metrics = {
        "teacher": evaluate_model(teacher, splits, tokenizer, data_collator=collator, **evaluate),
        "student": evaluate_model(student, eval_splits, tokenizers.student, **evaluate),
    }
    # An ensemble's report lists each of its teachers too; its "teacher" row is the ensemble itself.
    members = [
        {
            "name": hub_name(model_name(member)) or f"teacher {index}",
            "metrics": evaluate_model(
                member,
                tokenizers.view(eval_splits, index - 1),
                tokenizers.teachers[index - 1],
                **evaluate,
            ),
        }
        for index, member in enumerate(getattr(teacher, "teachers", []), start=1)
    ]
    return metrics, members


def _measure(
    job: DistillationJob,
    trainer: DistillationTrainer,
    teacher: PreTrainedModel,
    eval_splits: Mapping[str, datasets.Dataset],
    tokenizers: JobTokenizers,
    max_length: int,
    names: list[str] | None,
    timed: bool = True,
) -> Report | None:
    """Evaluate teacher and student (every process takes part) and measure them (the main process); without
    `timed` their latency is left to the deploy step, which times them with the deployed forms."""
    student = trainer.student.eval()
    logger.info("evaluating teacher and student ...")
    metrics, members = _evaluate_pair(job, teacher, student, eval_splits, tokenizers)
    trainer.accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        # Latency measured by several processes at once on one machine would be meaningless.
        return None
    main_split = next(iter(eval_splits))
    main_metric = (
        next(iter(metrics["student"][main_split]))
        if job.compute_metrics is not None
        else job.task.main_metric
    )
    batches = None
    if timed and job.latency_batches > 0:
        sizes = (job.latency_batch_size, job.latency_batches, max_length)
        ensemble = hasattr(teacher, "teachers")
        batches = latency_inputs(tokenizers, eval_splits[main_split], ensemble, sizes)
    source = teacher_source(job)
    teacher_name = hub_name(source if isinstance(source, str) else model_name(source))
    if members:
        teacher_name = f"ensemble of {len(members)} teachers: " + ", ".join(
            m["name"] for m in members
        )
    extra = {"teachers": members} if members else {}
    if tokenizers.own_inputs:
        extra["tokenizers"] = tokenizers.summary()
    return build_report(
        teacher,
        student,
        metrics["teacher"],
        metrics["student"],
        main_metric=main_metric,
        main_split=main_split,
        latency_batches=batches,
        repeats=job.latency_repeats,
        progress=not job.args.disable_tqdm,
        task=job.task.name,
        teacher_name=teacher_name or type(teacher).__name__,
        teacher_layers=getattr(student.config, "nlpkd_teacher_layers", None),
        student_layers=num_encoder_layers(student),
        student_width=width_summary(student.config),
        distillation=job.args.loss_settings(),
        train_examples=len(trainer.train_dataset),
        label_names=names,
        extra=extra,
    )


def _tokenizer(job: DistillationJob) -> Any:
    if job.tokenizer is not None:
        return job.tokenizer
    source = teacher_source(job)
    name = source if isinstance(source, str) else model_name(source)
    return load_tokenizer(name, "The teacher")


def run(job: DistillationJob) -> DistillationResult:
    """Run a distillation job from the data to the measured student.

    Args:
        job ([`DistillationJob`]): what to distil, on what, how.

    Returns:
        [`DistillationResult`]: the trainer, the student, the teacher and the report; `result.save(folder)`
        writes the student and its report files.
    """
    set_seed(job.args.seed)
    source = teacher_source(job)
    if isinstance(source, str):
        check_checkpoint(source, "teacher")
    _check_student_plan(job, source)
    job = adopt_teacher_labels(job)
    tokenizer = _tokenizer(job)
    tokenizers = job_tokenizers(job, tokenizer)
    deploying = check_deploy_plan(job, source, tokenizers.student)
    if deploying and tokenizers.own_inputs and len(tokenizers.teachers) > 1:
        raise ValueError(
            "--deploy and --prune_vocabulary time the teacher on one tokenization, but these teachers read their "
            "own: leave them out, or distil from one teacher."
        )
    names = job.label_names or label_names(job.data, job.task)
    raw = sampled_data(job)
    data, eval_splits, max_length = prepare_data(job, raw, tokenizers)
    extra = extra_rows(job, raw["train"], tokenizers, max_length)
    prefixes = tokenizers.prefixes if tokenizers.own_inputs else None
    teacher = prepare_teacher(job, tokenizers.view(data), tokenizer, names, input_prefixes=prefixes)
    primary = getattr(teacher, "primary", teacher)
    student = build_student(
        primary,
        job.task,
        names,
        job.student,
        job.student_layers,
        job.trust_remote_code,
        **job.width(),
        calibration_data=calibration_batches(job, data["train"], tokenizers.student),
    )
    search = None
    if job.search_trials > 0:
        search = search_recipe(job, teacher, student, data["train"], extra, tokenizers)
        job = dataclasses.replace(job, args=dataclasses.replace(job.args, **search.best))
    train = data["train"] if extra is None else with_unlabeled(data["train"], extra)
    trainer = _distil(job, teacher, student, train, eval_splits, tokenizers)
    if trainer.stopped_by_signal:
        return DistillationResult(
            trainer=trainer,
            student=trainer.student,
            teacher=teacher,
            tokenizer=tokenizers.student,
            stopped_by_signal=trainer.stopped_by_signal,
            checkpoint=last_complete_checkpoint(job.args.output_dir),
        )
    report = _measure(
        job, trainer, teacher, eval_splits, tokenizers, max_length, names, timed=not deploying
    )
    if search is not None and report is not None:
        report.extra["search"] = search.to_dict()
    deployment = None
    if deploying and report is not None:
        models = (teacher, trainer.student)
        deployment = deploy_student(
            job,
            raw,
            report,
            models,
            tokenizers.student,
            eval_splits,
            max_length,
            tokenizers.teacher,
        )
        deployment.add_to(report)
    return DistillationResult(
        trainer=trainer,
        student=trainer.student.eval(),
        teacher=teacher,
        report=report,
        tokenizer=tokenizers.student,
        deploy_dir=deployment.folder if deployment is not None else None,
        search=search,
        dataset_name=job.task.hub_dataset[0] if job.task.hub_dataset else None,
    )


def run_finetune(job: DistillationJob) -> dict[str, Any]:
    """The teacher step alone (`nlpkd finetune`): fine-tune the job's base encoder, save it with its tokenizer
    into `args.output_dir`, and return its metrics `{"teacher": {split: {metric: value}}}`."""
    set_seed(job.args.seed)
    source = teacher_source(job)
    if isinstance(source, str):
        check_checkpoint(source, "teacher")
    tokenizer = _tokenizer(job)
    names = job.label_names or label_names(job.data, job.task)
    data, eval_splits, _ = prepare_data(job, sampled_data(job), tokenizer)
    job = dataclasses.replace(job, teacher_output_dir=job.args.output_dir)
    teacher = prepare_teacher(job, data, tokenizer, names, finetune_only=True)
    tokenizer.save_pretrained(job.args.output_dir)
    metrics = evaluate_model(teacher, eval_splits, tokenizer, job.args, job.task)
    return {"teacher": metrics}
