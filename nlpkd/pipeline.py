"""The one distillation job: fine-tune or load the teacher, build the student, distil, evaluate, report.

Both front ends build a [`DistillationJob`] and call [`run`]: `nlpkd distill` from the command line
(`nlpkd.cli`) and `nlpkd.distill` from Python (`nlpkd.quick`). Everything the job built comes back in a
[`DistillationResult`], whose `save` writes the student and its report files.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import torch
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers import logging as hf_logging

from .checkpoints import last_complete_checkpoint
from .config import DistillationConfig, plain_training_arguments
from .data.labels import (
    align_label_names,
    is_generic_label_names,
    label_maps,
    label_names,
    model_label_names,
)
from .data.readers import subsample
from .data.tasks import TaskSpec
from .data.tokenize import tokenize_dataset
from .data.unlabelled import extra_training_text, with_unlabelled
from .deploy_step import DEPLOY_DIR, check_deploy_plan, copy_folder, deploy_student
from .ensemble import TeacherEnsemble, check_teachers_agree
from .evaluation import (
    build_report,
    evaluate_model,
    latency_batches,
)
from .metrics import make_compute_metrics
from .models import (
    build_student,
    check_checkpoint,
    has_trained_head,
    hub_name,
    load_teacher,
    load_tokenizer,
    model_name,
    packaged_minilm_path,
)
from .report import Report, write_report
from .student import check_family, num_encoder_layers
from .trainer import DistillationTrainer

__all__ = [
    "DEPLOY_DIR",
    "TRAINING_DEFAULTS",
    "DistillationJob",
    "DistillationResult",
    "deploy_student",
    "finetune_teacher",
    "job_default",
    "run",
    "run_finetune",
    "training_defaults",
]

logger = logging.getLogger("nlpkd")

# The folder of the deployed forms inside the output directory, one subfolder per form.

# The job's training defaults where they differ from TrainingArguments' own, for both front ends: chosen for
# the embedded BBC News job on a 2-core CPU (docs/performance.md); the GLUE recipes set their own.
TRAINING_DEFAULTS: dict[str, Any] = {
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "learning_rate": 1e-4,
    "num_train_epochs": 2.0,
    "warmup_steps": 0.1,
    "logging_steps": 10,
    "eval_strategy": "no",
    "save_strategy": "no",
    "report_to": "none",
    "seed": 42,
    "temperature": 2.0,
    "alpha_kd": 0.5,
    "alpha_ce": 0.5,
}


def training_defaults() -> dict[str, Any]:
    """[`TRAINING_DEFAULTS`] plus what depends on the machine: pinned memory only helps copies to a GPU, and
    without one torch warns about it on every data loader."""
    return {**TRAINING_DEFAULTS, "dataloader_pin_memory": torch.cuda.is_available()}


@dataclass
class DistillationJob:
    """Everything one distillation run needs; the defaults are those of `nlpkd distill`.

    Args:
        data (`datasets.DatasetDict`): the raw data: the task's text columns and a `label` column, split
            `train` and the task's evaluation splits.
        task ([`~nlpkd.data.TaskSpec`]): columns, labels and metrics of the data.
        args ([`DistillationConfig`]): training and distillation settings.
        teacher (model, `str`, `Path` or a list of them, *optional*): a fine-tuned classifier, or a base encoder
            to fine-tune first. Defaults to the packaged all-MiniLM-L6-v2 encoder. Several fine-tuned teachers
            are distilled as one ensemble (`args.teacher_weights`, `args.teacher_ensemble`); the report scores
            each of them and the ensemble.
        tokenizer (*optional*): the teacher's tokenizer; loaded from the teacher's folder when not given.
        student (model, `str` or `Path`, *optional*): a student to train instead of building one.
        student_layers (`int` or `Sequence[int]`, *optional*): the depth of a built student, or the teacher
            layers to copy. Defaults to half the teacher's layers.
        label_names (`list[str]`, *optional*): the class names in id order; read from the data by default.
        finetune_teacher (`str`, *optional*, defaults to `"auto"`): `"auto"` fine-tunes a teacher that has no
            trained head for the task, `"always"`, or `"never"`.
        teacher_num_train_epochs (`float`, *optional*, defaults to `1.0`): epochs of teacher fine-tuning.
        teacher_learning_rate (`float`, *optional*, defaults to `1e-4`): its learning rate.
        teacher_output_dir (`str`, *optional*): where a fine-tuned teacher is saved (default
            `OUTPUT_DIR/teacher`).
        trust_remote_code (`bool`, *optional*, defaults to `False`): passed to `from_pretrained`.
        max_length (`int`, *optional*, defaults to `128`): tokens per example; clamped to the tokenizer's
            maximum. Also the sequence length of the latency batches.
        max_train_samples (`int`, *optional*): use at most this many training examples (a seeded subset).
        max_eval_samples (`int`, *optional*): use at most this many examples of each evaluation split.
        compute_metrics (`Callable`, *optional*): a Trainer `compute_metrics`; the report's main metric is then
            the first one it returns. Defaults to the task's metrics, computed locally.
        latency_batch_size (`int`, *optional*, defaults to `32`): batch size of the latency measurement.
        latency_batches (`int`, *optional*, defaults to `4`): batches per latency round (0 = no latency).
        latency_repeats (`int`, *optional*, defaults to `5`): timed rounds of the latency measurement.
        resume_from_checkpoint (`str` or `bool`, *optional*): resume the distillation from a checkpoint
            (`True` or `"last"`: the newest complete one in `args.output_dir`).
        deploy (`str` or `Sequence[str]`, *optional*): deployed forms of the student to build into
            `args.output_dir/deploy/` and measure with the others: `"int8"` (PyTorch dynamic int8), `"onnx"`,
            `"onnx-int8"` (ONNX Runtime; the `export` extra), as a comma list or a sequence.
        prune_vocabulary (`bool`, *optional*, defaults to `False`): also build `student-pruned` (the vocabulary
            cut to the tokens of the training and evaluation texts and `vocabulary_file`) and its forms.
        vocabulary_file (`str` or `Path`, *optional*): a UTF-8 text file, one text per line, whose tokens the
            pruned vocabulary keeps as well (texts of the deployment domain).
        unlabeled_data (*optional*): unlabelled text (a file: `.txt`, one text per line, or TSV/CSV/JSON Lines
            with the text columns; a `Dataset`; a list of texts): trained on the soft and intermediate terms only.
        augment (`int`, *optional*, defaults to `0`): seeded variants of each labelled example
            (`nlpkd.data.augment`), supervised by the teacher's soft targets only.
        augment_methods (`str` or `list`, *optional*): the augmentation methods (`mask`, `ngram`, `shuffle`,
            `mlm`); by default `mlm` when `augment_mlm` is given, else `mask,ngram`.
        augment_pair_side (`str`, *optional*, defaults to `"random"`): which text of a pair is changed: `first`,
            `second`, `both`, or one of these at random per variant.
        augment_mlm (`str`, *optional*): a masked-language model (path or Hub id) for TinyBERT's word replacement.
    """

    data: datasets.DatasetDict
    task: TaskSpec
    args: DistillationConfig
    teacher: PreTrainedModel | str | Path | None = None
    tokenizer: Any = None
    student: PreTrainedModel | str | Path | None = None
    student_layers: int | Sequence[int] | None = None
    label_names: list[str] | None = None
    finetune_teacher: Literal["auto", "always", "never"] = "auto"
    teacher_num_train_epochs: float = 1.0
    teacher_learning_rate: float = 1e-4
    teacher_output_dir: str | None = None
    trust_remote_code: bool = False
    max_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    compute_metrics: Callable[..., dict[str, float]] | None = None
    latency_batch_size: int = 32
    latency_batches: int = 4
    latency_repeats: int = 5
    resume_from_checkpoint: str | bool | None = None
    deploy: str | Sequence[str] | None = None
    prune_vocabulary: bool = False
    vocabulary_file: str | Path | None = None
    unlabeled_data: Any = None
    augment: int = 0
    augment_methods: str | Sequence[str] | None = None
    augment_pair_side: str = "random"
    augment_mlm: str | None = None


def job_default(name: str) -> Any:
    """The default of a [`DistillationJob`] field, so front ends spell each default once."""
    return DistillationJob.__dataclass_fields__[name].default


@dataclass
class DistillationResult:
    """Everything a job built, so that nothing is hidden behind the one call.

    Args:
        trainer ([`DistillationTrainer`]): the trainer that distilled the student (`trainer.state.log_history`
            holds the loss components; `trainer.train_dataset` / `trainer.eval_dataset` the tokenized data).
        student ([`~transformers.PreTrainedModel`]): the distilled student, in eval mode.
        teacher ([`~transformers.PreTrainedModel`]): the teacher, with unchanged weights.
        report ([`~nlpkd.report.Report`], *optional*): what the run measured (on the main process; `None` on the
            others and when training stopped on a signal). `report["retention"]` reads `metrics.json`'s layout.
        tokenizer (*optional*): the tokenizer the data was tokenized with (teacher and student share it).
        stopped_by_signal (`str`, *optional*): the signal that stopped training early, if any.
        checkpoint (`str`, *optional*): the last complete checkpoint when training stopped early.
        deploy_dir (`Path`, *optional*): the folder of the deployed forms (`args.output_dir/deploy`), one
            subfolder per form, when the job built any.
    """

    trainer: DistillationTrainer
    student: PreTrainedModel
    teacher: PreTrainedModel
    report: Report | None = None
    tokenizer: Any = None
    stopped_by_signal: str | None = None
    checkpoint: str | None = None
    deploy_dir: Path | None = None
    dataset_name: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # `trainer.push_to_hub()` writes nlpkd's card from this report (DistillationTrainer.create_model_card).
        if self.report is not None:
            self.trainer.model_card_writer = lambda folder: write_report(
                self.report, folder, self.trainer.state.log_history, dataset_name=self.dataset_name
            )

    def save(
        self,
        output_dir: str | Path,
        *,
        model_card: bool = True,
        model_name: str | None = None,
        command: str | None = None,
    ) -> Path:
        """Write the student where `from_pretrained` and `pipeline` can load it.

        The folder gets the student (`config.json`, `model.safetensors`), its tokenizer, the report as
        `metrics.json`, the plot `distillation.png` and, with `model_card`, a Hub model card `README.md`: the
        files of `nlpkd distill` but its YAML config. The deployed forms, when the job built any, are copied
        into its `deploy/` folder (unless they are there already). Existing files of the same names are
        replaced. Under several processes every process must call it (sharded weights are gathered); one
        writes.

        Args:
            output_dir (`str` or `Path`): the folder; created when missing.
            model_card (`bool`, *optional*, defaults to `True`): write `README.md` as well.
            model_name (`str`, *optional*): the name the card gives the model (and uses in its `pipeline`
                snippet), e.g. the Hub repository id; defaults to the folder's name.
            command (`str`, *optional*): the command line that made the student, quoted in the card.

        Returns:
            `Path`: the folder.
        """
        output_dir = Path(output_dir)
        self.trainer.save_model(str(output_dir))
        if self.tokenizer is not None and self.trainer.is_world_process_zero():
            self.tokenizer.save_pretrained(output_dir)
        if self.report is not None and self.trainer.is_world_process_zero():
            write_report(
                self.report,
                output_dir,
                self.trainer.state.log_history,
                model_card=model_card,
                model_name=model_name or output_dir.resolve().name,
                dataset_name=self.dataset_name,
                command=command,
            )
        if self.deploy_dir is not None and self.trainer.is_world_process_zero():
            copy_folder(self.deploy_dir, output_dir / DEPLOY_DIR)
        return output_dir

    def push_to_hub(
        self,
        repo_id: str,
        output_dir: str | Path | None = None,
        *,
        token: str | None = None,
        private: bool | None = None,
    ) -> str:
        """Save the student with its card and report, then upload them to a Hub model repository.

        Args:
            repo_id (`str`): the repository, e.g. `"your-name/bbc-minilm-l3"`; created when missing.
            output_dir (`str` or `Path`, *optional*): where the files are written first; a temporary folder
                when not given.
            token (`str`, *optional*): a Hub token; by default the one saved by `hf auth login` or `HF_TOKEN`.
            private (`bool`, *optional*): create the repository as private.

        Returns:
            `str`: the URL of the upload's commit.
        """
        import tempfile

        from .hub import push_to_hub

        if output_dir is None:
            output_dir = tempfile.mkdtemp(prefix="nlpkd-push-")
        folder = self.save(output_dir, model_name=repo_id)
        return push_to_hub(folder, repo_id, token=token, private=private)


# ---- the steps --------------------------------------------------------------------------------------


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
    # The "newly initialised classifier" report is expected here: this step trains that head.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        teacher = AutoModelForSequenceClassification.from_pretrained(
            base, trust_remote_code=trust_remote_code, **label_maps(names, task)
        )
    finally:
        hf_logging.set_verbosity(verbosity)
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


def _teacher_source(job: DistillationJob) -> PreTrainedModel | str:
    """The (first) teacher: its tokenizer, labels and layers define the job."""
    return _teacher_sources(job)[0]


def _ensemble(job: DistillationJob, names: list[str] | None) -> TeacherEnsemble:
    """Several fine-tuned teachers as one (they are never fine-tuned here)."""
    teachers, tokenizers = [], []
    for source in _teacher_sources(job):
        if not isinstance(source, PreTrainedModel):
            check_checkpoint(source, "teacher")
            tokenizers.append(load_tokenizer(source, f"The teacher {source}"))
            source = load_teacher(source, trust_remote_code=job.trust_remote_code)
        teachers.append(source)
    # The teachers loaded from folders must read the same token ids (their own tokenizers are there).
    check_teachers_agree(teachers, tokenizers)
    for teacher in teachers:
        if not job.task.is_regression and names:
            align_label_names(teacher, names)
    args = job.args
    return TeacherEnsemble(teachers, args.teacher_weights, args.temperature, args.teacher_ensemble)


def _check_student_plan(job: DistillationJob, source: PreTrainedModel | str) -> None:
    """Fail before any fine-tuning when no student can be built from this teacher."""
    if job.student is not None:
        if not isinstance(job.student, PreTrainedModel):
            check_checkpoint(job.student, "student")
        return
    config = (
        source.config
        if isinstance(source, PreTrainedModel)
        else AutoConfig.from_pretrained(source, trust_remote_code=job.trust_remote_code)
    )
    check_family(config)
    depth = num_encoder_layers(config)
    layers = job.student_layers
    bad = (
        not 1 <= layers < depth
        if isinstance(layers, int)
        else any(not 0 <= i < depth for i in layers or [])
    )
    if bad:
        shown = layers if isinstance(layers, int) else ",".join(map(str, layers))
        raise ValueError(
            f"student_layers {shown}: the teacher has {depth} layers, so give a number from 1 to "
            f"{depth - 1} or layer indices from 0 to {depth - 1}."
        )


def _wants_finetuning(job: DistillationJob, source: str, finetune_only: bool) -> bool:
    trained = has_trained_head(source, job.task, job.trust_remote_code)
    if job.finetune_teacher == "never" and not trained:
        raise ValueError(
            f"--finetune_teacher never, but {source} has no trained classification head for "
            f"{job.task.name} ({job.task.num_labels} labels): pass a fine-tuned teacher, or let nlpkd "
            "fine-tune this one (--finetune_teacher auto)."
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
) -> PreTrainedModel:
    """The job's fine-tuned teacher: given, loaded, or fine-tuned here from a base encoder (and saved); several
    fine-tuned teachers become one [`~nlpkd.ensemble.TeacherEnsemble`]."""
    if len(_teacher_sources(job)) > 1:
        return _ensemble(job, names)
    source = _teacher_source(job)
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


def prepare_data(
    job: DistillationJob, tokenizer: Any
) -> tuple[datasets.DatasetDict, dict[str, datasets.Dataset], int]:
    """Tokenize the job's data (at `max_length`, clamped once to the tokenizer's maximum) and take the seeded
    subsets; returns the tokenized data, the evaluation splits and the `max_length` used."""
    max_length = job.max_length
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < max_length:
        logger.warning(
            "max_length %d is more than the teacher's maximum of %d tokens; using %d.",
            max_length,
            model_max,
            model_max,
        )
        max_length = model_max
    data = tokenize_dataset(job.data, tokenizer, job.task, max_length=max_length)
    if "train" not in data:
        raise ValueError("No training split: pass --train_file (and --validation_file).")
    seed = job.args.seed
    data["train"] = subsample(data["train"], job.max_train_samples, seed)
    # Without evaluation data the report is measured on the training data (which overstates the metric).
    splits = (
        [s for s in job.task.validation_splits if s in data]
        or [s for s in data if s != "train"]
        or ["train"]
    )
    eval_splits = {s: subsample(data[s], job.max_eval_samples, seed) for s in splits}
    return data, eval_splits, max_length


def extra_rows(job: DistillationJob, tokenizer: Any, max_length: int) -> datasets.Dataset | None:
    """The tokenized rows that only the teacher supervises: augmented variants of the labelled examples and the
    unlabelled text (`None` when the job has neither); checked before any training."""
    if job.unlabeled_data is None and not job.augment:
        return None
    if job.task.is_regression:
        raise ValueError(
            "Unlabelled text and augmentation need a classification task: a regression teacher's soft "
            "targets are single values, so its labels would be needed anyway. Drop --unlabeled_file/--augment."
        )
    options: dict[str, Any] = {"seed": job.args.seed, "pair_side": job.augment_pair_side}
    options["tokenizer"] = tokenizer
    if job.augment_methods:
        methods = job.augment_methods
        options["methods"] = methods.split(",") if isinstance(methods, str) else list(methods)
    if job.augment_mlm:
        options["mlm_model"] = AutoModelForMaskedLM.from_pretrained(job.augment_mlm)
        options["mlm_tokenizer"] = AutoTokenizer.from_pretrained(job.augment_mlm)
    if job.augment and len(job.task.text_columns) == 2:
        logger.info("augmenting sentence pairs: pair_side=%s", job.augment_pair_side)
    labelled = subsample(job.data["train"], job.max_train_samples, job.args.seed)
    text = extra_training_text(
        labelled,
        job.task.text_columns,
        unlabelled=job.unlabeled_data,
        augment=job.augment,
        augment_options=options,
    )
    raw = datasets.DatasetDict({"extra": text})
    return tokenize_dataset(raw, tokenizer, job.task, max_length=max_length)["extra"]


def _distil(
    job: DistillationJob,
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    train: datasets.Dataset,
    eval_splits: Mapping[str, datasets.Dataset],
    tokenizer: Any,
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
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=job.compute_metrics or make_compute_metrics(job.task),
    )
    logger.info("distilling into %d layers ...", num_encoder_layers(student))
    trainer.train(resume_from_checkpoint=job.resume_from_checkpoint)
    return trainer


def _measure(
    job: DistillationJob,
    trainer: DistillationTrainer,
    teacher: PreTrainedModel,
    eval_splits: Mapping[str, datasets.Dataset],
    tokenizer: Any,
    max_length: int,
    names: list[str] | None,
    timed: bool = True,
) -> Report | None:
    """Evaluate teacher and student (every process takes part) and measure them (the main process); without
    `timed` their latency is left to the deploy step, which times them with the deployed forms."""
    student = trainer.student.eval()
    logger.info("evaluating teacher and student ...")
    metrics = {
        role: evaluate_model(model, eval_splits, tokenizer, job.args, job.task, job.compute_metrics)
        for role, model in (("teacher", teacher), ("student", student))
    }
    # An ensemble's report lists each of its teachers too; its "teacher" row is the ensemble itself.
    members = [
        {
            "name": hub_name(model_name(member)) or f"teacher {index}",
            "metrics": evaluate_model(
                member, eval_splits, tokenizer, job.args, job.task, job.compute_metrics
            ),
        }
        for index, member in enumerate(getattr(teacher, "teachers", []), start=1)
    ]
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
        batches = latency_batches(
            eval_splits[main_split],
            tokenizer,
            job.latency_batch_size,
            job.latency_batches,
            max_length,
        )
    source = _teacher_source(job)
    teacher_name = hub_name(source if isinstance(source, str) else model_name(source))
    if members:
        teacher_name = f"ensemble of {len(members)} teachers: " + ", ".join(
            m["name"] for m in members
        )
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
        distillation=job.args.loss_settings(),
        train_examples=len(trainer.train_dataset),
        label_names=names,
        extra={"teachers": members} if members else {},
    )


# ---- deployment -------------------------------------------------------------------------------------


def _tokenizer(job: DistillationJob) -> Any:
    if job.tokenizer is not None:
        return job.tokenizer
    source = _teacher_source(job)
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
    source = _teacher_source(job)
    if isinstance(source, str):
        check_checkpoint(source, "teacher")
    _check_student_plan(job, source)
    tokenizer = _tokenizer(job)
    deploying = bool(check_deploy_plan(job, source, tokenizer)) or job.prune_vocabulary
    names = job.label_names or label_names(job.data, job.task)
    data, eval_splits, max_length = prepare_data(job, tokenizer)
    extra = extra_rows(job, tokenizer, max_length)
    teacher = prepare_teacher(job, data, tokenizer, names)
    primary = getattr(teacher, "primary", teacher)
    student = build_student(
        primary, job.task, names, job.student, job.student_layers, job.trust_remote_code
    )
    train = data["train"] if extra is None else with_unlabelled(data["train"], extra)
    trainer = _distil(job, teacher, student, train, eval_splits, tokenizer)
    if trainer.stopped_by_signal:
        return DistillationResult(
            trainer=trainer,
            student=trainer.student,
            teacher=teacher,
            tokenizer=tokenizer,
            stopped_by_signal=trainer.stopped_by_signal,
            checkpoint=last_complete_checkpoint(job.args.output_dir),
        )
    report = _measure(
        job, trainer, teacher, eval_splits, tokenizer, max_length, names, timed=not deploying
    )
    deploy_dir = None
    if deploying and report is not None:
        deploy_dir = deploy_student(
            job, report, teacher, trainer.student, tokenizer, eval_splits, max_length
        )
    return DistillationResult(
        trainer=trainer,
        student=trainer.student.eval(),
        teacher=teacher,
        report=report,
        tokenizer=tokenizer,
        deploy_dir=deploy_dir,
        dataset_name=job.task.hub_dataset[0] if job.task.hub_dataset else None,
    )


def run_finetune(job: DistillationJob) -> dict[str, Any]:
    """The teacher step alone (`nlpkd finetune`): fine-tune the job's base encoder, save it with its tokenizer
    into `args.output_dir`, and return its metrics `{"teacher": {split: {metric: value}}}`."""
    set_seed(job.args.seed)
    source = _teacher_source(job)
    if isinstance(source, str):
        check_checkpoint(source, "teacher")
    tokenizer = _tokenizer(job)
    names = job.label_names or label_names(job.data, job.task)
    data, eval_splits, _ = prepare_data(job, tokenizer)
    job = dataclasses.replace(job, teacher_output_dir=job.args.output_dir)
    teacher = prepare_teacher(job, data, tokenizer, names, finetune_only=True)
    tokenizer.save_pretrained(job.args.output_dir)
    metrics = evaluate_model(teacher, eval_splits, tokenizer, job.args, job.task)
    return {"teacher": metrics}
