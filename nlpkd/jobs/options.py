"""The options of a distillation job, declared once.

Every field of [`JobOptions`] is a flag of `nlpkd distill` (the "nlpkd: job" group of `--help`, parsed by
`HfArgumentParser` from the field's metadata) and a keyword of `nlpkd.distill` with the same name, default and
meaning; a new option is one new field here. The training settings are [`DistillationConfig`]'s own fields, with
the job's defaults in [`TRAINING_DEFAULTS`].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ..deploy.forms import DeployForm, parse_forms

__all__ = ["TRAINING_DEFAULTS", "JobOptions", "job_default", "option_names", "training_defaults"]

# The job's training defaults where they differ from DistillationConfig's own, for both front ends: sized for
# the embedded BBC News job on a 2-core CPU (docs/performance.md); the learning rate chosen on the hard pairs
# benchmark and both BBC settings (docs/quality.md, "What decided each default"); the GLUE recipes set their own.
TRAINING_DEFAULTS: dict[str, Any] = {
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "learning_rate": 3e-4,
    "num_train_epochs": 2.0,
    "warmup_steps": 0.1,
    "logging_steps": 10,
    "eval_strategy": "no",
    "save_strategy": "no",
    "report_to": "none",
    "seed": 42,
}


def training_defaults() -> dict[str, Any]:
    """[`TRAINING_DEFAULTS`] plus what depends on the machine: pinned memory only helps copies to a GPU, and
    without one torch warns about it on every data loader."""
    return {**TRAINING_DEFAULTS, "dataloader_pin_memory": torch.cuda.is_available()}


def _option(default: Any, help: str, **cli: Any) -> Any:
    # `cli_type` is the type the command line parses (a comma list arrives as one string); `aliases` are older
    # flag names that still work.
    return field(default=default, metadata={"help": help, **cli})


def _parse_layers(value: Any) -> int | list[int] | None:
    if value is None or value == "" or isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            numbers = [int(part) for part in value.split(",") if part.strip()]
        except ValueError as err:
            raise ValueError(
                f"student_layers {value!r}: give a number (3) or a comma list of teacher layers ('0,2,4')."
            ) from err
        return numbers if "," in value else numbers[0]
    return [int(layer) for layer in value]


def _parse_methods(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None or isinstance(value, list):
        return value
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()] or None
    return list(value)


@dataclass
class JobOptions:
    """The options of a distillation job: each is a flag of `nlpkd distill` and a keyword of `nlpkd.distill`.

    Args:
        student_layers (`int` or `list[int]`, *optional*):
            The depth of the student built from the teacher, or the teacher layers it copies (0-based; on the
            command line a comma list, `0,2,4`). Defaults to half the teacher's layers.
        student_hidden_size (`int`, *optional*):
            The hidden size of a narrower student built from the teacher ([`~nlpkd.create_student`]): its weights
            are slices of the teacher's and the head size is kept, so this sets the number of heads too. Defaults
            to the teacher's.
        student_intermediate_size (`int`, *optional*):
            Feed-forward neurons per layer of a narrower student; the teacher's by default.
        student_heads (`int`, *optional*):
            Attention heads per layer of a narrower student (hidden size = heads x the teacher's head size);
            follows `student_hidden_size` by default.
        width_selection (`str`, *optional*, defaults to `"importance"`):
            Which heads, neurons and hidden channels a narrower student keeps: `"importance"`, those with the
            teacher's largest mean activations on `width_calibration_samples` training examples (Minitron), or
            `"first"`.
        width_calibration_samples (`int`, *optional*, defaults to `256`):
            Training examples (a seeded subset) the importance scores are measured on.
        search_trials (`int`, *optional*, defaults to `0`):
            Trials of a recipe search before the run ([`nlpkd.jobs.search`]): the temperature, the loss weights
            (kd/ce, attention, hidden states), the learning rate and the epochs, drawn by Optuna's TPE sampler
            (seeded by `seed`) and scored on 20% of the labeled training data held out (never the split the
            report is measured on), with median pruning; the run then trains the best recipe. `0` searches
            nothing. Needs the `search` extra.
        finetune_teacher (`str`, *optional*, defaults to `"auto"`):
            `"auto"` fine-tunes a teacher that has no trained head for the task, `"always"` fine-tunes it
            anyway, `"never"` refuses a teacher without one.
        teacher_num_train_epochs (`float`, *optional*, defaults to `1.0`):
            Epochs of teacher fine-tuning, when the teacher is fine-tuned.
        teacher_learning_rate (`float`, *optional*, defaults to `1e-4`):
            Learning rate of teacher fine-tuning.
        teacher_output_dir (`str`, *optional*):
            Where a fine-tuned teacher is saved (default `OUTPUT_DIR/teacher`).
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            Passed to `from_pretrained`: allows custom model code from the checkpoint.
        max_length (`int`, *optional*, defaults to `128`):
            Tokens per example (longer texts are truncated), clamped to the tokenizer's maximum; also the
            sequence length of the latency batches.
        max_train_samples (`int`, *optional*):
            Use at most this many training examples (a seeded subset).
        max_eval_samples (`int`, *optional*):
            Use at most this many examples of each evaluation split, a subset seeded by `split_seed`.
        split_seed (`int`, *optional*, defaults to `42`):
            Seed of the validation split held out from training data without one (the packaged BBC News, a
            training file alone) and of the `max_eval_samples` subset. Separate from the training `seed`, so
            that a seed sweep keeps its evaluation set.
        unlabeled_data (`str`, `Path`, `datasets.Dataset` or `list[str]`, *optional*):
            Unlabeled text, trained on the teacher's soft (and intermediate) terms only: a file (`.txt` with one
            text per line, or TSV/CSV/JSON Lines with the text columns), a `Dataset` or a list of texts.
        augment (`int`, *optional*, defaults to `0`):
            Seeded variants of each labeled example (`nlpkd.data.augment`), supervised by the teacher only.
        augment_methods (`list[str]`, *optional*):
            The augmentation methods (`mask`, `ngram`, `shuffle`, `mlm`; a comma list on the command line); by
            default `mlm` when `augment_mlm` is given, else `mask,ngram`.
        augment_pair_side (`str`, *optional*, defaults to `"random"`):
            Which text of a sentence pair a variant changes: `first`, `second`, `both`, or one of them at random.
        augment_mlm (`str`, *optional*):
            A masked-language model (path or Hub id) for TinyBERT's word replacement (`mlm`).
        latency_batch_size (`int`, *optional*, defaults to `32`):
            Batch size of the latency measurement.
        latency_batches (`int`, *optional*, defaults to `4`):
            Batches per latency round; `0` skips the latency measurement.
        latency_repeats (`int`, *optional*, defaults to `5`):
            Timed rounds of the latency measurement.
        deploy (`tuple[str, ...]`, *optional*, defaults to `()`):
            Deployed forms of the student to build into `OUTPUT_DIR/deploy/` and measure with teacher and
            student: `int8` (PyTorch dynamic int8), `onnx`, `onnx-int8` (ONNX Runtime; the `export` extra). A
            comma list or a sequence; checked and ordered once, when the job is made.
        prune_vocabulary (`bool`, *optional*, defaults to `False`):
            Also build `student-pruned`, whose vocabulary keeps only the tokens of the training and evaluation
            texts (and `vocabulary_file`), and the `deploy` forms of it.
        vocabulary_file (`str`, *optional*):
            A UTF-8 text file, one text per line, whose tokens the pruned vocabulary keeps too (texts of the
            domain the model will serve).
    """

    student_layers: int | list[int] | None = _option(
        None,
        "Student depth N, or the teacher layers to copy as a comma list, e.g. '0,2,4'. Default: half the "
        "teacher's layers.",
        cli_type=str,
    )
    student_hidden_size: int | None = _option(
        None,
        "Hidden size of a narrower student built from the teacher: its weights are slices of the teacher's, "
        "and the head size is kept (so this sets the heads too). Default: the teacher's.",
    )
    student_intermediate_size: int | None = _option(
        None, "Feed-forward neurons per layer of a narrower student. Default: the teacher's."
    )
    student_heads: int | None = _option(
        None,
        "Attention heads per layer of a narrower student (the head size is kept: hidden size = heads x head "
        "size). Default: follows --student_hidden_size.",
    )
    width_selection: Literal["importance", "first"] = _option(
        "importance",
        "Which heads, neurons and hidden channels a narrower student keeps: 'importance' (the teacher's largest "
        "mean activations on --width_calibration_samples training examples) or 'first'.",
    )
    width_calibration_samples: int = _option(
        256, "Training examples the importance of heads, neurons and channels is measured on."
    )
    search_trials: int = _option(
        0,
        "Trials of a recipe search before the run (temperature, loss weights, learning rate, epochs; Optuna, "
        "pip install 'nlpkd[search]'), scored on a part of the training data held out (0 = no search).",
    )
    finetune_teacher: Literal["auto", "always", "never"] = _option(
        "auto",
        "'auto': fine-tune when the teacher has no trained head for the task; 'always'; 'never'.",
    )
    teacher_num_train_epochs: float = _option(
        1.0, "Epochs of teacher fine-tuning (when it is fine-tuned)."
    )
    teacher_learning_rate: float = _option(
        1e-4, "Learning rate of teacher fine-tuning (when it is fine-tuned)."
    )
    teacher_output_dir: str | None = _option(
        None, "Where a fine-tuned teacher is saved (default: OUTPUT_DIR/teacher)."
    )
    trust_remote_code: bool = _option(
        False, "Allow custom model code from the checkpoint (off: only enable for code you trust)."
    )
    max_length: int = _option(128, "Maximum tokens per example (longer are truncated).")
    max_train_samples: int | None = _option(
        None, "Use at most this many training examples (a seeded random subset)."
    )
    max_eval_samples: int | None = _option(
        None,
        "Use at most this many examples of each evaluation split (a random subset seeded by --split_seed, so "
        "that runs with other --seed values are evaluated on the same examples).",
    )
    split_seed: int = _option(
        42,
        "Seed of the validation split the command holds out (the packaged BBC News; --train_file without "
        "--validation_file) and of the --max_eval_samples subset. Separate from --seed, so that another "
        "training seed keeps the evaluation set and a teacher saved by an earlier run never meets its own "
        "training data as validation.",
    )
    unlabeled_data: Any = _option(
        None,
        "Unlabeled text (.txt, one per line; or TSV/CSV/JSON Lines with the text columns and no label "
        "column), trained on the teacher's soft targets only.",
        cli_type=str,
        aliases=["--unlabeled_file"],
    )
    augment: int = _option(
        0, "Seeded variants per training example, supervised by the teacher only (0 = off)."
    )
    augment_methods: list[str] | None = _option(
        None,
        "Augmentation methods, comma-separated: mask, ngram, shuffle, mlm (default: mlm with --augment_mlm, "
        "else mask,ngram).",
        cli_type=str,
    )
    augment_pair_side: Literal["random", "first", "second", "both"] = _option(
        "random",
        "Which text of a sentence pair augmentation changes: first, second, both or random.",
    )
    augment_mlm: str | None = _option(
        None, "A masked-language model (path or Hub id) for TinyBERT's word replacement."
    )
    latency_batch_size: int = _option(32, "Batch size of the latency measurement.")
    latency_batches: int = _option(4, "Batches per latency round (0 = skip latency).")
    latency_repeats: int = _option(5, "Timed rounds of the latency measurement.")
    deploy: tuple[DeployForm, ...] = _option(
        (),
        "Deployed forms of the student to build into OUTPUT_DIR/deploy/ and measure with teacher and student: "
        "a comma list of int8 (PyTorch dynamic int8), onnx, onnx-int8 (ONNX Runtime; pip install "
        "'nlpkd[export]'). Default: none.",
        cli_type=str,
    )
    prune_vocabulary: bool = _option(
        False,
        "Also build student-pruned, whose vocabulary keeps only the tokens of the training and evaluation "
        "texts (and --vocabulary_file), and the --deploy forms of it (student-pruned-int8, ...).",
    )
    vocabulary_file: str | None = _option(
        None,
        "A UTF-8 text file, one text per line, whose tokens the pruned vocabulary keeps too (texts of the "
        "domain the model will serve).",
    )

    def __post_init__(self) -> None:
        # The command line gives these as one string each; Python callers may pass either form.
        self.student_layers = _parse_layers(self.student_layers)
        self.augment_methods = _parse_methods(self.augment_methods)
        self.deploy = parse_forms(self.deploy)
        if isinstance(self.vocabulary_file, Path):
            self.vocabulary_file = str(self.vocabulary_file)

    def width(self) -> dict[str, Any]:
        """`create_student`'s width arguments of these options (without the calibration data)."""
        return {
            "hidden_size": self.student_hidden_size,
            "intermediate_size": self.student_intermediate_size,
            "num_attention_heads": self.student_heads,
            "width_selection": self.width_selection,
        }

    def options(self) -> dict[str, Any]:
        """The job options alone, by name (what `nlpkd_config.yaml` records besides the training settings)."""
        return {name: getattr(self, name) for name in option_names()}


def option_names() -> tuple[str, ...]:
    """The names of the job options, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(JobOptions))


def job_default(name: str) -> Any:
    """The default of a job option, so that front ends spell each default once."""
    return JobOptions.__dataclass_fields__[name].default
