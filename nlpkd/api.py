"""The short path: distil a teacher on your own data in one call, with the Trainer still in reach.

```python
from nlpkd import distill

result = distill(teacher, texts, labels=labels, eval_data=eval_texts, eval_labels=eval_labels,
                 student_layers=3, num_train_epochs=3)
result.save("my-student")   # then: pipeline("text-classification", model="my-student")
```

[`distill`] takes a fine-tuned classifier and data as a `datasets.Dataset`, a pandas `DataFrame`,
a dict of columns or a plain list of texts, builds a [`~nlpkd.jobs.DistillationJob`] and runs the
job of `nlpkd distill` on it. Everything it builds is returned in a [`DistillationResult`] (the trainer
included), so any step can be inspected or redone by hand. [`finetune`] turns a base encoder into such a
teacher on the same kinds of data.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import numbers
import tempfile
import typing
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedModel

from .config import DistillationConfig
from .data.convert import as_dataset, as_list, pair_aware_columns, parse_text_columns
from .data.labels import (
    data_label_names,
    encode_labels,
    is_generic_label_names,
    is_missing_value,
    model_label_names,
    raw_labels,
)
from .data.tasks import custom_task
from .data.tokenize import tokenize_dataset
from .jobs.job import DistillationJob
from .jobs.options import JobOptions, option_names, training_defaults
from .jobs.result import DistillationResult
from .jobs.steps import run
from .jobs.teacher import finetune_teacher
from .models.loading import load_teacher, load_tokenizer, model_name

__all__ = ["distill", "finetune"]


def _make_config(
    args: DistillationConfig | None, config_kwargs: dict[str, Any]
) -> DistillationConfig:
    if args is not None:
        if config_kwargs:
            raise ValueError(
                f"Got both args=DistillationConfig(...) and the settings {sorted(config_kwargs)}: "
                "put them into the DistillationConfig, or leave args out."
            )
        if not isinstance(args, DistillationConfig):
            raise ValueError(
                f"args must be a nlpkd.DistillationConfig, got {type(args).__name__}; or leave it "
                "out and pass settings as keyword arguments (num_train_epochs=3, ...)."
            )
        return args
    values = {**training_defaults(), **config_kwargs}
    # Nothing is written there unless checkpoints are asked for; `result.save` writes the student.
    values.setdefault("output_dir", tempfile.mkdtemp(prefix="nlpkd-"))
    try:
        return DistillationConfig(**values)
    except TypeError as err:
        raise ValueError(
            f"{err}. Keyword arguments of distill() that it does not name itself go to "
            "DistillationConfig (TrainingArguments plus temperature, alpha_kd, ...)."
        ) from err


def _label_data(
    teacher: PreTrainedModel,
    train: datasets.Dataset,
    evaluation: datasets.Dataset | None,
) -> tuple[list[str] | None, datasets.DatasetDict]:
    """The class names logit i means, and the data with its labels encoded in that order."""
    teacher_names = model_label_names(teacher)
    names = teacher_names
    if names is not None and is_generic_label_names(names):
        data_names = data_label_names(train)
        if data_names is not None and len(data_names) == len(names):
            names = data_names
    owner = "the teacher" if names == teacher_names else "the data"
    raw = datasets.DatasetDict({"train": encode_labels(train, names, "train_data", owner)})
    if evaluation is not None:
        raw["validation"] = encode_labels(evaluation, names, "eval_data", owner)
    return names, raw


def _split_options(config_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the job options out of `config_kwargs` (what is left are `DistillationConfig` fields)."""
    options = {name: config_kwargs.pop(name) for name in option_names() if name in config_kwargs}
    if "measure_latency" in config_kwargs:
        warnings.warn(
            "distill(measure_latency=False) is now distill(latency_batches=0), the option of "
            "`nlpkd distill`; measure_latency will be removed in nlpkd 0.4.",
            FutureWarning,
            stacklevel=3,
        )
        if not config_kwargs.pop("measure_latency"):
            options["latency_batches"] = 0
    known = {f.name for f in dataclasses.fields(DistillationConfig)}
    unknown = sorted(set(config_kwargs) - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], [*option_names(), *known], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"distill() got unknown keyword argument(s) {unknown}.{hint} Its keywords are the job options of "
            "`nlpkd distill` (nlpkd.jobs.JobOptions: student_layers, max_length, deploy, ...); the others go to "
            "DistillationConfig (TrainingArguments plus temperature, alpha_kd, ...)."
        )
    return options


def distill(
    teacher: PreTrainedModel | str,
    train_data: Any,
    eval_data: Any = None,
    *,
    tokenizer: Any = None,
    labels: Sequence[Any] | None = None,
    eval_labels: Sequence[Any] | None = None,
    text_column: str | Sequence[str] = "text",
    label_column: str = "label",
    student: PreTrainedModel | str | None = None,
    student_tokenizer: Any = None,
    args: DistillationConfig | None = None,
    compute_metrics: Callable[..., dict[str, float]] | None = None,
    **config_kwargs: Any,
) -> DistillationResult:
    """Distil a fine-tuned classifier into a smaller student, on your own data.

    This is the job of `nlpkd distill` ([`nlpkd.jobs.steps.run`]) on Python data: the data is
    converted to a `datasets.Dataset` with labels mapped to the teacher's classes, tokenized, a
    student is built ([`create_student`]) and trained by a [`DistillationTrainer`], and teacher and
    student are evaluated and measured side by side into a [`~nlpkd.report.Report`].

    Every option of `nlpkd distill` is a keyword with the same name, default and meaning: the fields of
    [`~nlpkd.jobs.JobOptions`] (`student_layers`, `max_length`, `max_train_samples`, `latency_batches`,
    `deploy`, `prune_vocabulary`, `unlabeled_data`, `augment`, ...). Every other keyword is a
    [`DistillationConfig`] field (`num_train_epochs`, `learning_rate`, `temperature`, `alpha_kd`, ...).

    Labels: the teacher's `config.id2label` decides what logit `i` means. Labels given as names
    are mapped through it (so a `DataFrame` whose labels are `"sports"`, `"tech"`, ... works in
    any row order), integer ids are taken as they are, and a `ClassLabel` column is mapped by its
    names. A label the teacher does not know raises a `ValueError` that lists both. A teacher
    whose labels are unnamed (`LABEL_0`, ...) takes ids, and its student is named after the
    data's `ClassLabel` names when there are any. A one-output teacher is a regression model:
    labels are numbers and the metrics are `pearson` and `spearmanr` (else `accuracy`).

    Args:
        teacher ([`~transformers.PreTrainedModel`], `str`, or a list of them):
            The fine-tuned sequence classifier, or the path / Hub id of one. Several fine-tuned teachers
            (same tokenizer and labels) are distilled as one ensemble; `teacher_weights=` and
            `teacher_ensemble=` set how their soft targets are averaged.
        train_data (`datasets.Dataset`, `pandas.DataFrame`, `dict` or `list`):
            Training examples: a table with the text column(s) and a label column, or a list of
            texts (or of `(text, text)` pairs) with `labels=`.
        eval_data (same kinds, *optional*):
            Evaluation examples (a list needs `eval_labels=`). Without them, the report is
            measured on the training data (split `"train"`), which overstates accuracy.
        tokenizer (tokenizer, *optional*):
            The teacher's tokenizer. Defaults to `AutoTokenizer.from_pretrained` of the teacher's
            path or Hub id.
        labels (`Sequence`, *optional*):
            Labels of a list `train_data`: names (`"positive"`) or ids.
        eval_labels (`Sequence`, *optional*):
            Labels of a list `eval_data`.
        text_column (`str` or `Sequence[str]`, *optional*, defaults to `"text"`):
            The text column, or two columns for sentence pairs (tokenized as pairs).
        label_column (`str`, *optional*, defaults to `"label"`):
            The label column of a table.
        student ([`~transformers.PreTrainedModel`] or `str`, *optional*):
            A student to train instead of building one from the teacher, of any family: with a tokenizer of its
            own (`student_tokenizer`, or the tokenizer files of its folder) that differs from the teacher's, the
            data is tokenized for both from the same text and each model reads its own tokenization
            (docs/cross-tokenizer.md).
        student_tokenizer (tokenizer, *optional*):
            The student's tokenizer. Defaults to the one saved with `student` (its folder, or its
            `name_or_path`), else the teacher's. The saved student gets this tokenizer.
        args ([`DistillationConfig`], *optional*):
            All training and distillation settings. Defaults to [`~nlpkd.jobs.TRAINING_DEFAULTS`] (those of
            `nlpkd distill`) updated with the `DistillationConfig` keywords, in a temporary `output_dir` unless
            one is given.
        compute_metrics (`Callable`, *optional*):
            A Trainer `compute_metrics` function (`EvalPrediction -> dict`). Defaults to accuracy,
            or Pearson and Spearman correlations for regression, computed locally. With your own,
            the report's main metric is the first one it returns.
        **config_kwargs:
            The job options ([`~nlpkd.jobs.JobOptions`]) and, when `args` is not given, [`DistillationConfig`]
            fields: `output_dir`, `num_train_epochs`, `max_steps`, `learning_rate`, `temperature`, ...

    Returns:
        [`DistillationResult`]: the trainer, the student, the teacher and the report; call
        `result.save(folder)` to write the student. The deployed forms (`deploy=`) are in
        `output_dir/deploy/`, copied by `result.save(folder)`; `result.report.variants` holds their figures.

    Raises:
        `ValueError`: for unusable data (missing columns, missing or unknown labels, a list
            without labels), conflicting or unknown arguments, or a path that is not a fine-tuned classifier.
        `TypeError`: for a data or model argument of an unsupported type.
    """
    options = _split_options(config_kwargs)
    trust = options.get("trust_remote_code", False)
    teachers = (
        [load_teacher(t, trust) for t in teacher] if isinstance(teacher, list | tuple) else None
    )
    teacher_model = teachers[0] if teachers else load_teacher(teacher, trust)
    if teachers:
        teacher = teacher[0]
    if tokenizer is None:
        source = str(teacher) if isinstance(teacher, str | Path) else model_name(teacher_model)
        tokenizer = load_tokenizer(source, "The teacher")
    columns = pair_aware_columns(as_list(train_data), parse_text_columns(text_column))
    train = as_dataset(train_data, labels, columns, label_column, "train_data")
    if eval_data is None and eval_labels is not None:
        raise ValueError("eval_labels= was given without eval_data; pass the texts as eval_data.")
    evaluation = (
        None
        if eval_data is None
        else as_dataset(eval_data, eval_labels, columns, label_column, "eval_data")
    )
    names, raw = _label_data(teacher_model, train, evaluation)
    job = DistillationJob(
        data=raw,
        task=custom_task(columns, teacher_model.config.num_labels),
        args=_make_config(args, config_kwargs),
        teacher=teachers or teacher_model,
        tokenizer=tokenizer,
        student=student,
        student_tokenizer=student_tokenizer,
        label_names=names,
        compute_metrics=compute_metrics,
        **options,
    )
    return run(job)


def _advertised_signature(function: Callable[..., Any]) -> inspect.Signature:
    """`function`'s signature with every job option spelled out as a keyword (its default and type), so that
    `help()`, IDEs and `inspect.signature` show what `**config_kwargs` takes."""
    signature = inspect.signature(function)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    hints = typing.get_type_hints(JobOptions)
    options = [
        inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name]
        )
        for f in dataclasses.fields(JobOptions)
    ]
    rest = inspect.Parameter("config_kwargs", inspect.Parameter.VAR_KEYWORD, annotation=Any)
    return signature.replace(parameters=[*own, *options, rest])


distill.__signature__ = _advertised_signature(distill)


def _finetune_names(train: datasets.Dataset, label_names: Sequence[str] | None) -> list[str]:
    if label_names is not None:
        return [str(name) for name in label_names]
    names = data_label_names(train)
    if names is not None:
        return names
    values = raw_labels(train)
    if all(isinstance(v, str) for v in values):
        return sorted({v.strip() for v in values})
    ids = [int(v) for v in values if isinstance(v, numbers.Real) and not is_missing_value(v)]
    return [str(i) for i in range(max(ids, default=0) + 1)]


def finetune(
    base: str,
    train_data: Any,
    *,
    tokenizer: Any = None,
    labels: Sequence[Any] | None = None,
    label_names: Sequence[str] | None = None,
    text_column: str | Sequence[str] = "text",
    label_column: str = "label",
    regression: bool = False,
    max_length: int = 128,
    output_dir: str | Path | None = None,
    num_train_epochs: float = 1.0,
    learning_rate: float = 1e-4,
    **training_kwargs: Any,
) -> PreTrainedModel:
    """Fine-tune a base encoder into a teacher for [`distill`], on the same kinds of data.

    A new classification head named with your labels is trained with a plain `Trainer` (via
    [`nlpkd.jobs.finetune_teacher`]); the model is saved to `output_dir` with its tokenizer and
    returned in eval mode.

    Args:
        base (`str`):
            Path or Hub id of the encoder, e.g. the packaged all-MiniLM-L6-v2
            ([`nlpkd.models.packaged_minilm_path`]).
        train_data (`datasets.Dataset`, `pandas.DataFrame`, `dict` or `list`):
            Training examples, as for [`distill`].
        tokenizer (tokenizer, *optional*):
            Defaults to `AutoTokenizer.from_pretrained(base)`.
        labels (`Sequence`, *optional*):
            Labels of a list `train_data`.
        label_names (`Sequence[str]`, *optional*):
            The class names in id order. Defaults to the data's `ClassLabel` names, else its
            label names sorted, else `"0"`, `"1"`, ... for integer ids.
        text_column (`str` or `Sequence[str]`, *optional*, defaults to `"text"`):
            The text column, or two for sentence pairs.
        label_column (`str`, *optional*, defaults to `"label"`):
            The label column of a table.
        regression (`bool`, *optional*, defaults to `False`):
            Train a one-output regression head on numeric labels instead of a classifier.
        max_length (`int`, *optional*, defaults to `128`):
            Tokens per example.
        output_dir (`str` or `Path`, *optional*):
            Where the teacher is saved; a temporary folder by default.
        num_train_epochs (`float`, *optional*, defaults to `1.0`):
            Epochs of fine-tuning.
        learning_rate (`float`, *optional*, defaults to `1e-4`):
            Peak learning rate.
        **training_kwargs:
            Other `TrainingArguments` fields (`per_device_train_batch_size`, `seed`, ...).

    Returns:
        [`~transformers.PreTrainedModel`]: the fine-tuned classifier, with `id2label` set.
    """
    if tokenizer is None:
        tokenizer = load_tokenizer(str(base), f"The base model {base!r}")
    columns = pair_aware_columns(as_list(train_data), parse_text_columns(text_column))
    train = as_dataset(train_data, labels, columns, label_column, "train_data")
    names = None if regression else _finetune_names(train, label_names)
    if names is not None and len(names) < 2:
        raise ValueError(
            f"The data has a single class {names}: a classifier needs at least two. Check the "
            "label column, or pass label_names=[...] with every class."
        )
    train = encode_labels(
        train, names, "train_data", "label_names", remedy="or add the missing names to label_names"
    )
    task = custom_task(columns, 1 if names is None else len(names))
    data = tokenize_dataset(datasets.DatasetDict({"train": train}), tokenizer, task, max_length)
    output_dir = (
        Path(output_dir)
        if output_dir is not None
        else Path(tempfile.mkdtemp(prefix="nlpkd-teacher-"))
    )
    args = _make_config(None, {**training_kwargs, "output_dir": str(output_dir)})
    return finetune_teacher(
        str(base),
        data,
        task,
        names,
        tokenizer,
        args,
        output_dir=output_dir,
        num_train_epochs=num_train_epochs,
        learning_rate=learning_rate,
    )
