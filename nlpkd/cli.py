"""The `nlpkd` command: `nlpkd distill` (the whole job) and `nlpkd finetune` (the teacher step alone).

Arguments are dataclasses parsed by `HfArgumentParser`; `--config file.yaml` supplies the same fields, and flags
given on the command line win over it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

USAGE = """usage: nlpkd {distill,finetune} [--config FILE.yaml] [--FIELD VALUE ...]

Knowledge distillation for Hugging Face text classifiers.

commands:
  distill    fine-tune the teacher if needed, build a student with fewer layers, distil, evaluate
             both, measure speed, and save the student, metrics.json, a plot and a model card
  finetune   fine-tune a base encoder on the task and save it (the teacher step alone)

With no task arguments, `nlpkd distill --output_dir DIR` runs fully offline: the packaged
all-MiniLM-L6-v2 teacher on the packaged BBC News corpus, distilled into 3 layers.

`nlpkd COMMAND --help` lists every option (nlpkd's own first, then transformers' TrainingArguments).
"""

CONFIG_NAME = "nlpkd_config.yaml"
METRICS_NAME = "metrics.json"
PLOT_NAME = "distillation.png"
# Never written into saved configs, metrics or model cards.
SECRET_FIELDS = ("hub_token",)

# Defaults of the command that differ from TrainingArguments' own: chosen for the embedded BBC News job on
# a 2-core CPU (see docs/performance.md); the GLUE recipes in recipes/ set their own.
CLI_DEFAULTS: dict[str, Any] = {
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


@dataclass
class ModelArguments:
    """Which teacher, which student."""

    _argument_group_name = "nlpkd: models"

    teacher: str | None = field(
        default=None,
        metadata={
            "help": "Teacher checkpoint (path or Hub id): a fine-tuned classifier, or a base encoder that is "
            "fine-tuned on the task first. Default: the packaged all-MiniLM-L6-v2 encoder."
        },
    )
    student: str | None = field(
        default=None,
        metadata={
            "help": "A separate student checkpoint to train instead of building one from the teacher."
        },
    )
    student_layers: str | None = field(
        default=None,
        metadata={
            "help": "Student depth N (teacher layers taken alternately), or the teacher layers to copy as a "
            "comma list, e.g. '0,2,4'. Default: half the teacher's layers."
        },
    )
    finetune_teacher: str = field(
        default="auto",
        metadata={
            "help": "'auto': fine-tune when the teacher has no trained head for the task; 'always'; 'never'.",
            "choices": ["auto", "always", "never"],
        },
    )
    teacher_num_train_epochs: float = field(
        default=1.0, metadata={"help": "Epochs of teacher fine-tuning (when it is fine-tuned)."}
    )
    teacher_learning_rate: float = field(
        default=1e-4,
        metadata={"help": "Learning rate of teacher fine-tuning (when it is fine-tuned)."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Allow custom model code from the checkpoint (off: only enable for code you trust)."
        },
    )


@dataclass
class DataArguments:
    """Which data, and how the job is measured."""

    _argument_group_name = "nlpkd: data and report"

    task: str | None = field(
        default=None,
        metadata={
            "help": "GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli), 'custom' (your own "
            "files, labels taken from them) or 'bbc_news' (the packaged offline corpus). Default: "
            "'custom' when --train_file is given, else 'bbc_news'."
        },
    )
    text_columns: str = field(
        default="text",
        metadata={
            "help": "Text column(s) of custom data: one, or two comma-separated for sentence pairs "
            "(e.g. 'question,answer'). The label column is 'label'."
        },
    )
    train_file: str | None = field(
        default=None, metadata={"help": "Local training data: GLUE-format TSV, CSV or JSON Lines."}
    )
    validation_file: str | None = field(
        default=None,
        metadata={"help": "Local validation data: GLUE-format TSV, CSV or JSON Lines."},
    )
    max_length: int = field(
        default=128, metadata={"help": "Maximum tokens per example (longer are truncated)."}
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "Use at most this many training examples (a seeded random subset)."},
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use at most this many examples of each evaluation split."}
    )
    latency_batch_size: int = field(
        default=32, metadata={"help": "Batch size of the latency measurement."}
    )
    latency_batches: int = field(
        default=4, metadata={"help": "Batches per latency round (0 = skip latency)."}
    )
    latency_repeats: int = field(
        default=5, metadata={"help": "Timed rounds of the latency measurement."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Allow writing into an output directory that holds another run."},
    )


class UsageError(ValueError):
    """A mistake in the command line or config file; reported in one line, without a traceback."""


def _parser(command: str):
    import torch
    from transformers import HfArgumentParser

    from .config import DistillationConfig

    class Parser(HfArgumentParser):
        # argparse prints usage and exits on a bad value; we report one line like every other user error.
        def error(self, message: str):
            raise UsageError(message)

    parser = Parser(
        (ModelArguments, DataArguments, DistillationConfig),
        # An abbreviated flag would silently mean whichever option it happens to prefix.
        allow_abbrev=False,
        prog=f"nlpkd {command}",
        description=(
            "Distil a teacher into a student with fewer layers and report the compression."
            if command == "distill"
            else "Fine-tune a base encoder on the task and save it as a teacher."
        ),
    )
    parser.set_defaults(**CLI_DEFAULTS)
    # Pinned memory only helps copies to a GPU; without one, torch warns about it on every data loader.
    parser.set_defaults(dataloader_pin_memory=torch.cuda.is_available())
    return parser


def _yaml_to_argv(path: str, parser) -> list[str]:
    """Turn a YAML config into command-line tokens, so argparse checks its types like any flag."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError as err:
        raise UsageError(f"config file {path} does not exist.") from err
    except OSError as err:
        raise UsageError(
            f"config file {path} cannot be read ({err.strerror}): give the path of a YAML file."
        ) from err
    except yaml.YAMLError as err:
        raise UsageError(f"config file {path} is not valid YAML: {err}".splitlines()[0]) from err
    if not isinstance(data, dict):
        raise UsageError(
            f"config file {path} must hold a mapping of option: value, got {type(data).__name__}."
        )
    actions = {action.dest: action for action in parser._actions}
    unknown = sorted(set(data) - set(actions))
    if unknown:
        raise UsageError(
            f"config file {path} has unknown key(s): {', '.join(unknown)}. See `nlpkd distill --help` for "
            "the options."
        )
    argv = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, bool):
            argv += [f"--{key}", str(value).lower()]
        elif isinstance(value, list) and actions[key].nargs in ("+", "*"):
            argv += [f"--{key}", *(str(v) for v in value)]
        elif isinstance(value, list):
            # One token, so argparse (or the field's own parser, e.g. layer_map) judges the whole list.
            argv += [f"--{key}", json.dumps(value)]
        elif isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def parse_arguments(command: str, argv: list[str]):
    """Parse `argv` (after the command name) into `(ModelArguments, DataArguments, DistillationConfig)`.

    A `--config FILE.yaml` is expanded first, and flags given on the command line come after it, so they win.
    """
    parser = _parser(command)
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise UsageError("--config needs a path to a YAML file.")
        argv = _yaml_to_argv(argv[at + 1], parser) + argv[:at] + argv[at + 2 :]
    try:
        model_args, data_args, args, unknown = parser.parse_args_into_dataclasses(
            argv, return_remaining_strings=True
        )
    except ValueError as err:
        raise UsageError(str(err)) from err
    if unknown:
        options = [o for action in parser._actions for o in action.option_strings]
        flag = next((u for u in unknown if u.startswith("--")), unknown[0])
        close = difflib.get_close_matches(flag.split("=")[0], options, n=1)
        hint = f" Did you mean {close[0]}?" if close else " See `nlpkd distill --help`."
        raise UsageError(f"unknown option(s): {' '.join(unknown)}.{hint}")
    if not args.output_dir or args.output_dir == "trainer_output":
        raise UsageError(
            "--output_dir is required: the folder where the student and its report are written."
        )
    return model_args, data_args, args


def _check_output_dir(output_dir: Path, overwrite: bool) -> None:
    markers = [
        name for name in (METRICS_NAME, "config.json", CONFIG_NAME) if (output_dir / name).exists()
    ]
    if markers and not overwrite:
        raise UsageError(
            f"{output_dir} already holds a run ({', '.join(markers)}): choose another --output_dir, or pass "
            "--overwrite_output_dir to replace it."
        )


def _parse_student_layers(value: str | None) -> tuple[int | None, list[int] | None]:
    if value is None or value == "":
        return None, None
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError as err:
        raise UsageError(
            f"--student_layers {value!r}: give a number (3) or a comma list ('0,2,4')."
        ) from err
    if "," in value:
        return None, numbers
    return numbers[0], None


def save_config(path: Path, command: str, model_args, data_args, args) -> None:
    """Write the options this run used that differ from the command's defaults, as YAML that `--config` reads.

    Values are compared after `__post_init__` on both sides, so normalised fields (`report_to`, `debug`, enums)
    are only written when the user changed them. Secrets (the Hub token) are never written.
    """
    defaults = _parser(command).parse_args_into_dataclasses(["--output_dir", str(args.output_dir)])
    values: dict[str, Any] = {}
    for obj, default_obj in zip((model_args, data_args, args), defaults, strict=True):
        for f in dataclasses.fields(obj):
            if not f.init or f.name in SECRET_FIELDS or f.name == "output_dir":
                continue
            value = getattr(obj, f.name)
            if value == getattr(default_obj, f.name):
                continue
            if hasattr(value, "value"):  # enums such as IntervalStrategy
                value = value.value
            if isinstance(value, (list, tuple, dict)):
                value = json.loads(json.dumps(value))
            elif not (isinstance(value, (str, int, float, bool)) or value is None):
                continue
            values[f.name] = value
    path.write_text(yaml.safe_dump(values, sort_keys=True), encoding="utf-8")


def _subsample(dataset, limit: int | None, seed: int):
    if limit is None or limit >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(limit))


def run_distill(
    model_args: ModelArguments, data_args: DataArguments, args, *, finetune_only: bool = False
) -> dict:
    """The `nlpkd distill` job (or, with `finetune_only`, the `nlpkd finetune` job). Returns the report."""
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        set_seed,
    )

    from . import api
    from .hub import push_to_hub
    from .metrics import make_compute_metrics
    from .report import compression_report, format_summary, save_metrics
    from .student import check_family, create_student, num_encoder_layers
    from .tasks import (
        DEFAULT_TASK,
        get_task,
        label_names,
        load_custom_data,
        load_task_data,
        tokenize_dataset,
    )
    from .trainer import DistillationTrainer

    output_dir = Path(args.output_dir)
    _check_output_dir(output_dir, data_args.overwrite_output_dir)
    set_seed(args.seed)
    task_name = data_args.task or (
        "custom" if data_args.train_file or data_args.validation_file else DEFAULT_TASK
    )
    teacher_path = model_args.teacher or api.packaged_minilm_path()

    if task_name == "custom":
        if not data_args.train_file:
            raise UsageError(
                "--task custom needs --train_file (and, optionally, --validation_file)."
            )
        columns = tuple(c.strip() for c in data_args.text_columns.split(",") if c.strip())
        raw, task = load_custom_data(
            data_args.train_file, data_args.validation_file, text_columns=columns, seed=args.seed
        )
    else:
        task = get_task(task_name)
        raw = load_task_data(task, data_args.train_file, data_args.validation_file, seed=args.seed)
    names = label_names(raw, task)
    api.check_checkpoint(teacher_path, "teacher")
    if model_args.student:
        api.check_checkpoint(model_args.student, "student")
    else:
        # Fail before any fine-tuning when no student can be built from this teacher.
        teacher_config = AutoConfig.from_pretrained(
            teacher_path, trust_remote_code=model_args.trust_remote_code
        )
        check_family(teacher_config)
        num_layers, layers = _parse_student_layers(model_args.student_layers)
        depth = num_encoder_layers(teacher_config)
        bad = [i for i in layers or [] if not 0 <= i < depth]
        if bad or (num_layers is not None and not 1 <= num_layers < depth):
            raise UsageError(
                f"--student_layers {model_args.student_layers}: the teacher has {depth} layers, so give "
                f"a number from 1 to {depth - 1} or layer indices from 0 to {depth - 1}."
            )
    tokenizer = AutoTokenizer.from_pretrained(
        teacher_path, trust_remote_code=model_args.trust_remote_code
    )
    if data_args.max_length > tokenizer.model_max_length:
        print(
            f"[nlpkd] --max_length {data_args.max_length} is more than the teacher's maximum of "
            f"{tokenizer.model_max_length} tokens; using {tokenizer.model_max_length}.",
            flush=True,
        )
        data_args.max_length = tokenizer.model_max_length
    data = tokenize_dataset(raw, tokenizer, task, max_length=data_args.max_length)
    if "train" not in data:
        raise UsageError("No training split: pass --train_file (and --validation_file).")
    data["train"] = _subsample(data["train"], data_args.max_train_samples, args.seed)
    eval_splits = {
        split: _subsample(data[split], data_args.max_eval_samples, args.seed)
        for split in task.validation_splits
        if split in data
    }

    trained = api.has_trained_head(teacher_path, task, model_args.trust_remote_code)
    if model_args.finetune_teacher == "never" and not trained:
        raise UsageError(
            f"--finetune_teacher never, but {teacher_path} has no trained classification head for "
            f"{task.name} ({task.num_labels} labels): pass a fine-tuned teacher, or let nlpkd "
            "fine-tune this one (--finetune_teacher auto)."
        )
    finetune = model_args.finetune_teacher == "always" or (
        model_args.finetune_teacher == "auto" and not trained
    )
    if finetune_only and not finetune:
        raise UsageError(
            f"{teacher_path} already has a trained head for {task.name}; use --finetune_teacher always."
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    if finetune:
        print(f"[nlpkd] fine-tuning the teacher {teacher_path} on {task.name} ...", flush=True)
        teacher = api.finetune_teacher(
            teacher_path,
            data,
            task,
            names,
            tokenizer,
            args,
            output_dir=output_dir / "teacher" if not finetune_only else output_dir,
            num_train_epochs=model_args.teacher_num_train_epochs,
            learning_rate=model_args.teacher_learning_rate,
            trust_remote_code=model_args.trust_remote_code,
        )
        teacher_name = api.hub_name(teacher_path)
    else:
        teacher = AutoModelForSequenceClassification.from_pretrained(
            teacher_path, trust_remote_code=model_args.trust_remote_code
        )
        api.align_label_names(teacher, names)
        teacher_name = api.hub_name(teacher_path)
    if finetune_only:
        tokenizer.save_pretrained(output_dir)
        metrics = api.evaluate_model(teacher, eval_splits, task, tokenizer, args)
        save_metrics({"teacher": metrics}, output_dir)
        print(json.dumps({"teacher": metrics}, indent=2))
        return {"teacher": metrics}

    num_layers, layers = _parse_student_layers(model_args.student_layers)
    if model_args.student:
        student_config = AutoConfig.from_pretrained(
            model_args.student, trust_remote_code=model_args.trust_remote_code
        )
        architectures = getattr(student_config, "architectures", None) or []
        if any(name.endswith("ForSequenceClassification") for name in architectures):
            # A trained head keeps its own classes: they are checked, never silently renamed.
            student = AutoModelForSequenceClassification.from_pretrained(
                model_args.student, trust_remote_code=model_args.trust_remote_code
            )
            api.align_label_names(student, names, role="student")
        else:
            student = AutoModelForSequenceClassification.from_pretrained(
                model_args.student,
                trust_remote_code=model_args.trust_remote_code,
                **api.label_maps(names, task),
            )
    else:
        student = create_student(teacher, num_layers=num_layers, layers=layers)
    # The command pushes once at the end, with the model card: the Trainer must not push checkpoints itself,
    # and never holds the token (it pickles its arguments into training_args.bin).
    trainer_args = dataclasses.replace(args, push_to_hub=False, hub_token=None)
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=trainer_args,
        train_dataset=data["train"],
        eval_dataset=eval_splits.get(task.validation_splits[0]),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=make_compute_metrics(task),
    )
    print(
        f"[nlpkd] distilling {teacher_name} into {num_encoder_layers(student)} layers ...",
        flush=True,
    )
    resume = args.resume_from_checkpoint
    trainer.train(
        resume_from_checkpoint=True if str(resume).lower() in ("true", "last") else resume
    )
    if trainer.stopped_by_signal:
        from .checkpoints import last_complete_checkpoint

        checkpoint = last_complete_checkpoint(output_dir)
        print(
            f"[nlpkd] stopped by {trainer.stopped_by_signal} at step {trainer.state.global_step}; checkpoint "
            f"{checkpoint}. Resume with the same command and --resume_from_checkpoint last.",
            flush=True,
        )
        return {"stopped_by_signal": trainer.stopped_by_signal, "checkpoint": checkpoint}
    student = trainer.model.eval()
    # Every process takes part in saving (FSDP and DeepSpeed gather the weights), and in evaluation.
    trainer.save_model(str(output_dir))

    print("[nlpkd] evaluating teacher and student ...", flush=True)
    teacher_metrics = api.evaluate_model(teacher, eval_splits, task, tokenizer, args)
    student_metrics = api.evaluate_model(student, eval_splits, task, tokenizer, args)
    trainer.accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        # One process measures and writes: latency measured by several processes at once on one machine
        # would be meaningless, and the files and the push happen once.
        return {"teacher": teacher_metrics, "student": student_metrics}
    batches = None
    if data_args.latency_batches > 0:
        batches = api.latency_batches(
            eval_splits[task.validation_splits[0]],
            tokenizer,
            data_args.latency_batch_size,
            data_args.latency_batches,
            data_args.max_length,
        )
    report = compression_report(
        teacher=teacher,
        student=student,
        teacher_metrics=teacher_metrics,
        student_metrics=student_metrics,
        main_metric=task.main_metric,
        main_split=task.validation_splits[0],
        latency_batches=batches,
        repeats=data_args.latency_repeats,
    )
    report.update(
        task=task.name,
        teacher_name=teacher_name,
        teacher_layers=getattr(student.config, "nlpkd_teacher_layers", None),
        student_layers=num_encoder_layers(student),
        distillation=api.distillation_args_summary(args),
        train_examples=len(data["train"]),
    )

    save_config(output_dir / CONFIG_NAME, "distill", model_args, data_args, args)
    api.write_report_files(
        output_dir,
        report,
        trainer.state.log_history,
        model_name=args.hub_model_id or output_dir.name,
        task_name=None if task.name == "custom" else task.name,
        # Only a Hub dataset id belongs in the card's `datasets`; the packaged corpus is named by its task.
        dataset_name=task.hub_dataset[0] if task.hub_dataset else None,
        command="nlpkd " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None,
    )
    print(format_summary(report), flush=True)
    print(
        f"[nlpkd] student, tokenizer, {METRICS_NAME}, {PLOT_NAME}, {CONFIG_NAME} and README.md in {output_dir}"
    )
    if args.push_to_hub:
        if not args.hub_model_id:
            raise UsageError(
                "--push_to_hub needs --hub_model_id NAME (e.g. your-name/bbc-minilm-l3)."
            )
        url = push_to_hub(
            output_dir, args.hub_model_id, token=args.hub_token, private=args.hub_private_repo
        )
        print(f"[nlpkd] pushed to {url}")
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nlpkd` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"nlpkd {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in ("distill", "finetune"):
        print(
            f"nlpkd: error: unknown command {command!r}; use 'distill' or 'finetune'.\n\n{USAGE}",
            file=sys.stderr,
        )
        return 2
    try:
        model_args, data_args, args = parse_arguments(command, rest)
        report = run_distill(model_args, data_args, args, finetune_only=command == "finetune")
        if "stopped_by_signal" in report:
            return 130
    except (ValueError, OSError) as err:
        # User errors get one line; NLPKD_DEBUG=1 shows the traceback for bug reports.
        if os.environ.get("NLPKD_DEBUG"):
            raise
        message = " ".join(str(err).split())
        # On a terminal a progress bar may own the current line: start the message on a fresh one.
        prefix = "\n" if sys.stderr.isatty() else ""
        print(f"{prefix}nlpkd: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nlpkd: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
