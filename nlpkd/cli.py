"""The `nlpkd` command: `nlpkd distill` (the whole job) and `nlpkd finetune` (the teacher step alone).

Arguments are dataclasses parsed by `HfArgumentParser`: which models and data ([`ModelArguments`],
[`DataArguments`]), the job options (derived from [`~nlpkd.jobs.JobOptions`], the one declaration that
`nlpkd.distill` reads too) and [`~nlpkd.DistillationConfig`]. `--config file.yaml` supplies the same fields, and
flags given on the command line win over it. The command parses, builds a [`~nlpkd.jobs.DistillationJob`], runs
it with [`nlpkd.jobs.steps.run`], saves, prints and pushes.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import shlex
import sys
import typing
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments

from .config import DistillationConfig
from .jobs.job import DistillationJob
from .jobs.options import JobOptions, option_names, training_defaults
from .report.plot import PLOT_NAME
from .report.report import METRICS_NAME

USAGE = """usage: nlpkd {distill,finetune,general-distill} [--config FILE.yaml] [--FIELD VALUE ...]

Knowledge distillation for Hugging Face text classifiers.

commands:
  distill          fine-tune the teacher if needed, build a student with fewer layers, distil, evaluate
                   both, measure speed, and save the student, metrics.json, a plot and a model card
  finetune         fine-tune a base encoder on the task and save it (the teacher step alone)
  general-distill  distil a base encoder into a smaller one on plain text, without a task (the first
                   stage of two-stage distillation; then `nlpkd distill --student THAT_FOLDER`)

With no task arguments, `nlpkd distill --output_dir DIR` runs fully offline: the packaged
all-MiniLM-L6-v2 teacher on the packaged BBC News corpus, distilled into 3 layers.

`nlpkd COMMAND --help` lists every option (nlpkd's own first, then transformers' TrainingArguments).
"""


CONFIG_NAME = "nlpkd_config.yaml"
# Never written into saved configs, metrics or model cards.
SECRET_FIELDS = ("hub_token",)


@dataclass
class ModelArguments:
    """Which teacher, which student."""

    _argument_group_name = "nlpkd: models"

    teacher: list[str] | None = field(
        default=None,
        metadata={
            "help": "Teacher checkpoint (path or Hub id): a fine-tuned classifier, or a base encoder that is "
            "fine-tuned on the task first. Several fine-tuned teachers (--teacher A B) are distilled as an "
            "ensemble (--teacher_weights, --teacher_ensemble). Default: the packaged all-MiniLM-L6-v2 encoder."
        },
    )
    student: str | None = field(
        default=None,
        metadata={
            "help": "A separate student checkpoint to train instead of building one from the teacher. When its "
            "folder holds a tokenizer that differs from the teacher's, the data is tokenized for both and each "
            "model reads its own (docs/cross-tokenizer.md)."
        },
    )


@dataclass
class DataArguments:
    """Which data, and where the run is written."""

    _argument_group_name = "nlpkd: data"

    task: str | None = field(
        default=None,
        metadata={
            "help": "GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli), 'custom' (your own "
            "files, labels taken from them), 'bbc_news' (the packaged offline corpus) or 'bbc_pairs' (headline and "
            "paragraph pairs built from it: same article, same topic or other topic). Default: "
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
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Allow writing into an output directory that holds another run."},
    )


def _job_arguments() -> type:
    """[`JobOptions`] as the dataclass the parser reads: each field with its help and default, typed as the
    command line gives it (a comma list arrives as one string, which `JobOptions` parses)."""
    hints = typing.get_type_hints(JobOptions)
    specs = []
    for option in dataclasses.fields(JobOptions):
        metadata = dict(option.metadata)
        cli_type = metadata.pop("cli_type", None)
        default = option.default
        if cli_type is not None:
            default = ",".join(map(str, default)) if isinstance(default, tuple) else default
            default = default if default not in ("", ()) else None
        kind = hints[option.name] if cli_type is None else cli_type | None
        specs.append((option.name, kind, field(default=default, metadata=metadata)))
    return dataclasses.make_dataclass(
        "JobArguments", specs, namespace={"_argument_group_name": "nlpkd: job"}
    )


# The job options as the command line parses them: one flag per field of JobOptions.
JobArguments = _job_arguments()


@dataclass
class GeneralArguments:
    """The general (task-agnostic) stage: which base encoder, which text, which student."""

    _argument_group_name = "nlpkd: general distillation"

    teacher: str | None = field(
        default=None,
        metadata={
            "help": "The base encoder to distil (path or Hub id). Default: the packaged all-MiniLM-L6-v2."
        },
    )
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Plain text: .txt (one text per line), or TSV/CSV/JSON Lines with a 'text' column. "
            "Default: the texts of the packaged BBC News training split."
        },
    )
    student_layers: str | None = field(
        default=None,
        metadata={"help": "Student depth N, or the teacher layers to copy as a comma list."},
    )
    split_seed: int = field(
        default=42,
        metadata={
            "help": "Seed of the packaged BBC News split whose training texts are the default corpus (the same "
            "as `nlpkd distill --split_seed`, so the general stage never reads the task stage's validation texts)."
        },
    )
    max_length: int = field(default=128, metadata={"help": "Tokens per text."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Allow writing into an output directory that holds another run."},
    )


class UsageError(ValueError):
    """A mistake in the command line or config file; reported in one line, without a traceback."""


DATACLASSES = (ModelArguments, DataArguments, JobArguments, DistillationConfig)


def _field_types() -> dict[str, Any]:
    types: dict[str, Any] = {}
    for dataclass_type in DATACLASSES:
        hints = typing.get_type_hints(dataclass_type)
        types.update({f.name: hints[f.name] for f in dataclasses.fields(dataclass_type) if f.init})
    return types


def _takes_several_values(field_type: Any) -> bool:
    # HfArgumentParser gives a field typed list[...] (alone or in a union) nargs="+".
    options = typing.get_args(field_type) if typing.get_origin(field_type) else ()
    return typing.get_origin(field_type) is list or any(
        typing.get_origin(option) is list for option in options
    )


def _parser(command: str):
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        # argparse prints usage and exits on a bad value; we report one line like every other user error.
        def error(self, message: str):
            raise UsageError(message)

    general = command == "general-distill"
    parser = Parser(
        (GeneralArguments, DistillationConfig) if general else DATACLASSES,
        # An abbreviated flag would silently mean whichever option it happens to prefix.
        allow_abbrev=False,
        prog=f"nlpkd {command}",
        description={
            "distill": "Distil a teacher into a student with fewer layers and report the compression.",
            "finetune": "Fine-tune a base encoder on the task and save it as a teacher.",
            "general-distill": "Distil a base encoder into a smaller one on plain text, without a task.",
        }[command],
    )
    parser.set_defaults(**training_defaults())
    if general:
        from .jobs.general import GENERAL_DEFAULTS

        parser.set_defaults(**GENERAL_DEFAULTS)
    return parser


def _yaml_to_argv(path: str) -> list[str]:
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
    types = _field_types()
    unknown = sorted(set(data) - set(types))
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
        elif isinstance(value, list) and _takes_several_values(types[key]):
            argv += [f"--{key}", *(str(v) for v in value)]
        elif isinstance(value, list | dict):
            # One token, so argparse (or the field's own parser, e.g. layer_map) judges the whole value.
            argv += [f"--{key}", json.dumps(value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def parse_arguments(command: str, argv: list[str]):
    """Parse `argv` (after the command name) into `(ModelArguments, DataArguments, JobArguments,
    DistillationConfig)`, or `(GeneralArguments, DistillationConfig)` for `general-distill`.

    A `--config FILE.yaml` is expanded first, and flags given on the command line come after it, so they win.
    """
    parser = _parser(command)
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise UsageError("--config needs a path to a YAML file.")
        argv = _yaml_to_argv(argv[at + 1]) + argv[:at] + argv[at + 2 :]
    _warn_deprecated_flags(argv)
    try:
        *parsed, unknown = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True)
    except ValueError as err:
        raise UsageError(str(err)) from err
    args = parsed[-1]
    if unknown:
        options = [f"--{name}" for name in _field_types()]
        flag = next((u for u in unknown if u.startswith("--")), unknown[0])
        close = difflib.get_close_matches(flag.split("=")[0], options, n=1)
        hint = f" Did you mean {close[0]}?" if close else " See `nlpkd distill --help`."
        raise UsageError(f"unknown option(s): {' '.join(unknown)}.{hint}")
    if not args.output_dir or args.output_dir == "trainer_output":
        raise UsageError(
            "--output_dir is required: the folder where the student and its report are written."
        )
    return tuple(parsed)


# Old flag names that still work for one release: old name -> the option's name now.
DEPRECATED_FLAGS = {"--unlabeled_file": "--unlabeled_data"}


def _warn_deprecated_flags(argv: list[str]) -> None:
    for token in argv:
        new = DEPRECATED_FLAGS.get(token.split("=")[0])
        if new is not None:
            warnings.warn(
                f"{token.split('=')[0]} is renamed {new}; the old name will be removed in nlpkd 0.4.",
                FutureWarning,
                stacklevel=3,
            )


def _check_output_dir(output_dir: Path, overwrite: bool) -> None:
    markers = [
        name for name in (METRICS_NAME, "config.json", CONFIG_NAME) if (output_dir / name).exists()
    ]
    if markers and not overwrite:
        raise UsageError(
            f"{output_dir} already holds a run ({', '.join(markers)}): choose another --output_dir, or pass "
            "--overwrite_output_dir to replace it."
        )


def _yaml_value(value: Any) -> Any:
    if hasattr(value, "value"):  # enums such as IntervalStrategy
        value = value.value
    if isinstance(value, (list, tuple, dict)):
        return json.loads(json.dumps(value))
    return value if isinstance(value, (str, int, float, bool)) or value is None else None


def save_config(path: Path, parsed: Sequence[Any]) -> None:
    """Write every option this run resolved, as YAML that `--config` reads back, headed by the versions.

    Every field of nlpkd's own groups and every distillation field is written, defaults included, so that the
    file still reproduces the run after a default changes; of the Trainer's own fields, those that differ from
    `TrainingArguments`' defaults (the job's defaults among them). Secrets (the Hub token) are never written.

    Args:
        path (`Path`): the file, `OUTPUT_DIR/nlpkd_config.yaml`.
        parsed (`Sequence`): what [`parse_arguments`] returned for `nlpkd distill`.
    """
    import transformers

    from . import __version__

    *groups, args = parsed
    plain = DistillationConfig(output_dir=args.output_dir)
    trainer_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    values: dict[str, Any] = {}
    for obj in (*groups, args):
        for f in dataclasses.fields(obj):
            if not f.init or f.name in SECRET_FIELDS or f.name == "output_dir":
                continue
            value = getattr(obj, f.name)
            if obj is args and f.name in trainer_fields and value == getattr(plain, f.name):
                continue
            value = _yaml_value(value)
            if value is not None or obj is not args:
                values[f.name] = value
    header = (
        f"# nlpkd {__version__}, transformers {transformers.__version__}: every option of this run "
        "(nlpkd distill --config THIS_FILE repeats it)\n"
    )
    path.write_text(header + yaml.safe_dump(values, sort_keys=True), encoding="utf-8")


def _teachers(values: list[str] | None) -> str | list[str] | None:
    # One --teacher is the common case; several are an ensemble.
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def build_job(
    model_args: ModelArguments, data_args: DataArguments, job_args: Any, args: DistillationConfig
) -> DistillationJob:
    """The job a command line describes: its data read (task, files or the packaged corpus), its options."""
    from .data.readers import load_custom_data, load_task_data
    from .data.tasks import DEFAULT_TASK, get_task

    task_name = data_args.task or (
        "custom" if data_args.train_file or data_args.validation_file else DEFAULT_TASK
    )
    if task_name == "custom":
        if not data_args.train_file:
            raise UsageError(
                "--task custom needs --train_file (and, optionally, --validation_file)."
            )
        columns = tuple(c.strip() for c in data_args.text_columns.split(",") if c.strip())
        data, task = load_custom_data(
            data_args.train_file,
            data_args.validation_file,
            text_columns=columns,
            seed=job_args.split_seed,
        )
    else:
        task = get_task(task_name)
        data = load_task_data(
            task, data_args.train_file, data_args.validation_file, seed=job_args.split_seed
        )
    options = {name: getattr(job_args, name) for name in option_names()}
    return DistillationJob(
        data=data,
        task=task,
        args=args,
        teacher=_teachers(model_args.teacher),
        student=model_args.student,
        **options,
    )


def run_distill(
    model_args: ModelArguments,
    data_args: DataArguments,
    job_args: Any,
    args: DistillationConfig,
    *,
    finetune_only: bool = False,
) -> dict:
    """The `nlpkd distill` command (or, with `finetune_only`, `nlpkd finetune`): build the job, run it, save,
    print and push. Returns the report as `metrics.json` lays it out."""
    from transformers import set_seed

    from .jobs.steps import run, run_finetune
    from .report.text import format_summary

    output_dir = Path(args.output_dir)
    _check_output_dir(output_dir, data_args.overwrite_output_dir)
    set_seed(args.seed)
    job = build_job(model_args, data_args, job_args, args)
    if finetune_only:
        metrics = run_finetune(job)
        (output_dir / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n")
        print(json.dumps(metrics, indent=2))
        return metrics
    result = run(job)
    if result.stopped_by_signal:
        print(
            f"[nlpkd] stopped by {result.stopped_by_signal} at step {result.trainer.state.global_step}; "
            f"checkpoint {result.checkpoint}. Resume with the same command and --resume_from_checkpoint last.",
            flush=True,
        )
        return {"stopped_by_signal": result.stopped_by_signal, "checkpoint": result.checkpoint}
    command = "nlpkd " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    # Every process takes part in saving (FSDP and DeepSpeed gather the weights); one writes.
    result.save(output_dir, model_name=args.hub_model_id or output_dir.name, command=command)
    if result.report is None:  # not the main process
        return {}
    if result.search is not None:
        # The file repeats the run: the chosen recipe, without searching again.
        args = dataclasses.replace(args, **result.search.best)
        job_args = dataclasses.replace(job_args, search_trials=0)
    save_config(output_dir / CONFIG_NAME, (model_args, data_args, job_args, args))
    print(format_summary(result.report.to_dict()), flush=True)
    deployed = (
        f"; deployed forms in {output_dir / 'deploy'}" if result.deploy_dir is not None else ""
    )
    print(
        f"[nlpkd] student, tokenizer, {METRICS_NAME}, {PLOT_NAME}, {CONFIG_NAME} and README.md in "
        f"{output_dir}{deployed}"
    )
    if args.push_to_hub:
        _push(output_dir, args)
    return result.report.to_dict()


def _push(output_dir: Path, args) -> None:
    from .hub import push_to_hub

    if not args.hub_model_id:
        raise UsageError("--push_to_hub needs --hub_model_id NAME (e.g. your-name/bbc-minilm-l3).")
    url = push_to_hub(
        output_dir, args.hub_model_id, token=args.hub_token, private=args.hub_private_repo
    )
    print(f"[nlpkd] pushed to {url}")


def _show_progress_messages() -> None:
    """Print the library's INFO messages (fine-tuning, distilling, evaluating ...) as `[nlpkd] ...` lines."""
    logger = logging.getLogger("nlpkd")
    if not any(isinstance(handler, _StdoutHandler) for handler in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("[nlpkd] %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is at the time (it may be replaced after the handler is made)."""

    def emit(self, record: logging.LogRecord) -> None:
        # Not setStream(): it would flush the old stream, which may be closed by now.
        self.stream = sys.stdout
        super().emit(record)


def run_general(general_args: GeneralArguments, args) -> dict:
    """The `nlpkd general-distill` command: the general student, its tokenizer and `general_metrics.json` (the
    stage's loss on held-out text before and after) in `--output_dir`."""
    from .jobs.general import general_distill

    output_dir = Path(args.output_dir)
    _check_output_dir(output_dir, general_args.overwrite_output_dir)
    texts: Any = general_args.train_file
    if texts is None:
        from .data.readers import load_bbc_news

        texts = list(load_bbc_news(seed=general_args.split_seed)["train"]["text"])
    layers = JobOptions(student_layers=general_args.student_layers).student_layers
    result = general_distill(
        texts,
        general_args.teacher,
        num_layers=layers if isinstance(layers, int) else None,
        layers=layers if isinstance(layers, list) else None,
        max_length=general_args.max_length,
        args=args,
    )
    metrics = {
        "held_out_loss": result.held_out_loss,
        "student_layers": result.student.config.nlpkd_teacher_layers,
        "texts": len(result.trainer.train_dataset),
    }
    (output_dir / "general_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    before, after = result.held_out_loss["before"], result.held_out_loss["after"]
    print(
        f"[nlpkd] general student in {output_dir}: held-out loss {before:.4f} -> {after:.4f}; "
        f"next: nlpkd distill --student {output_dir} ..."
    )
    return metrics


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
    _show_progress_messages()
    if command not in ("distill", "finetune", "general-distill"):
        print(
            f"nlpkd: error: unknown command {command!r}; use 'distill', 'finetune' or "
            f"'general-distill'.\n\n{USAGE}",
            file=sys.stderr,
        )
        return 2
    try:
        parsed = parse_arguments(command, rest)
        if command == "general-distill":
            run_general(*parsed)
            return 0
        report = run_distill(*parsed, finetune_only=command == "finetune")
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
