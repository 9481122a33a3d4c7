"""The short path: distil a teacher on your own data in one call, with the Trainer still in reach.

```python
from nlpkd.quick import distill

result = distill(teacher, texts, labels=labels, eval_data=eval_texts, eval_labels=eval_labels,
                 student_layers=3, num_train_epochs=3)
result.save("my-student")   # then: pipeline("text-classification", model="my-student")
```

[`distill`] takes a fine-tuned classifier and data as a `datasets.Dataset`, a pandas `DataFrame`,
a dict of columns or a plain list of texts, and does what the `nlpkd distill` command does:
tokenize, build a student with fewer layers, train it with a [`DistillationTrainer`], evaluate
teacher and student, and measure the compression. Everything it builds is returned in a
[`DistillationResult`] (the trainer included), so any step can be inspected or redone by hand.
[`finetune`] turns a base encoder into such a teacher on the same kinds of data.
"""

from __future__ import annotations

import numbers
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
)

from . import api
from .config import DistillationConfig
from .metrics import make_compute_metrics
from .report import compression_report
from .student import create_student, num_encoder_layers
from .tasks import custom_task, is_missing_value, tokenize_dataset
from .trainer import DistillationTrainer

__all__ = ["DEFAULT_CONFIG", "DistillationResult", "distill", "finetune"]

# The plot's file name in the `nlpkd distill` command, so that both write the same folder layout.
PLOT_NAME = "distillation.png"

# Defaults of `distill` that differ from TrainingArguments' own (keyword arguments win): the
# `nlpkd distill` values, with smaller batches because custom data sets are often small.
DEFAULT_CONFIG: dict[str, Any] = {
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 64,
    "learning_rate": 1e-4,
    "num_train_epochs": 3.0,
    "warmup_steps": 0.1,
    "logging_steps": 10,
    "eval_strategy": "no",
    "save_strategy": "no",
    "report_to": "none",
    "temperature": 2.0,
    "alpha_kd": 0.5,
    "alpha_ce": 0.5,
}

# Fixed latency shape of the report: the `nlpkd distill` batch size, fewer batches (a quick check).
LATENCY_BATCH_SIZE = 32
LATENCY_NUM_BATCHES = 2

# Keys of `Trainer.evaluate` that are bookkeeping, not metrics.
_EVAL_BOOKKEEPING = (
    "loss",
    "runtime",
    "samples_per_second",
    "steps_per_second",
    "model_preparation_time",
    "epoch",
)


@dataclass
class DistillationResult:
    """Everything [`distill`] built, so that nothing is hidden behind the one call.

    Args:
        trainer ([`DistillationTrainer`]):
            The trainer that distilled the student: `trainer.state.log_history` holds the loss
            components, and `trainer.train_dataset` / `trainer.eval_dataset` the tokenized data.
            Call `trainer.train()` again, `trainer.evaluate()` or `trainer.predict()` as usual.
        student ([`~transformers.PreTrainedModel`]):
            The distilled student, in eval mode, named with the teacher's labels.
        teacher ([`~transformers.PreTrainedModel`]):
            The teacher, with unchanged weights (the trainer froze it and put it in eval mode).
        report (`dict`):
            The [`~nlpkd.report.compression_report`]: metrics of both models per split,
            `main_metric`, `main_split`, `retention`, parameters, size on disk and, when
            measured, latency and `speedup`; plus `teacher_name`, `teacher_layers`,
            `student_layers`, `label_names`, `distillation` (loss settings) and `train_examples`.
        tokenizer (tokenizer, *optional*):
            The tokenizer the data was tokenized with (teacher and student share it).
    """

    trainer: DistillationTrainer
    student: PreTrainedModel
    teacher: PreTrainedModel
    report: dict[str, Any]
    tokenizer: Any = None

    def save(
        self, output_dir: str | Path, *, model_card: bool = True, model_name: str | None = None
    ) -> Path:
        """Write the student where `from_pretrained` and `pipeline` can load it.

        The folder gets the student (`config.json`, `model.safetensors`), the tokenizer, the
        report as `metrics.json`, the loss and compression plot `distillation.png`, and, with
        `model_card`, a Hub model card `README.md`: the files of `nlpkd distill` but its YAML
        config, ready for [`nlpkd.hub.push_to_hub`]. Existing files of the same names are
        replaced.

        Args:
            output_dir (`str` or `Path`):
                The folder; created when missing.
            model_card (`bool`, *optional*, defaults to `True`):
                Write `README.md` as well.
            model_name (`str`, *optional*):
                The name the card gives the model (and uses in its `pipeline` snippet), e.g. the
                Hub repository id; defaults to the folder's name.

        Returns:
            `Path`: the folder.
        """
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        self.student.save_pretrained(output_dir)
        tokenizer = self.tokenizer if self.tokenizer is not None else self.trainer.processing_class
        if tokenizer is not None:
            tokenizer.save_pretrained(output_dir)
        api.write_report_files(
            output_dir,
            self.report,
            self.trainer.state.log_history,
            model_card=model_card,
            model_name=model_name or output_dir.resolve().name,
        )
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
            repo_id (`str`):
                The repository, e.g. `"your-name/bbc-minilm-l3"`; created when missing.
            output_dir (`str` or `Path`, *optional*):
                Where the files are written first; a temporary folder when not given.
            token (`str`, *optional*):
                A Hub token; by default the one saved by `hf auth login` or `HF_TOKEN`.
            private (`bool`, *optional*):
                Create the repository as private.

        Returns:
            `str`: the URL of the upload's commit.
        """
        from .hub import push_to_hub

        if output_dir is None:
            output_dir = tempfile.mkdtemp(prefix="nlpkd-push-")
        folder = self.save(output_dir, model_name=repo_id)
        return push_to_hub(folder, repo_id, token=token, private=private)


# --------------------------------------------------------------------------------------------
# Data: anything table-like -> a Dataset with the text columns and an encoded `label` column
# --------------------------------------------------------------------------------------------


def _text_columns(text_column: str | Sequence[str]) -> tuple[str, ...]:
    columns = (text_column,) if isinstance(text_column, str) else tuple(text_column)
    if len(columns) not in (1, 2) or not all(isinstance(c, str) and c for c in columns):
        raise ValueError(
            f"text_column must name one column, or two for sentence pairs, e.g. "
            f"text_column=('question', 'answer'); got {text_column!r}."
        )
    return columns


def _as_list(data: Any) -> Any:
    # A pandas Series or a NumPy array of texts (df["text"]) is a list of texts too.
    if type(data).__name__ in ("Series", "ndarray") and hasattr(data, "tolist"):
        return data.tolist()
    return data


def _is_text_list(data: Any) -> bool:
    return isinstance(data, Sequence) and not isinstance(data, str | bytes | Mapping)


def _is_pair_list(data: Any) -> bool:
    return (
        _is_text_list(data)
        and len(data) > 0
        and isinstance(data[0], Sequence)
        and not isinstance(data[0], str)
    )


def _pair_aware_columns(data: Any, columns: tuple[str, ...]) -> tuple[str, ...]:
    # A list of (text, text) pairs with the single default column gets a second column name, so
    # `distill(teacher, pairs, labels=...)` works without naming columns.
    if _is_pair_list(data) and len(columns) == 1:
        return (columns[0], f"{columns[0]}_pair")
    return columns


def _as_dataset(
    data: Any,
    labels: Sequence[Any] | None,
    text_columns: tuple[str, ...],
    label_column: str,
    role: str,
) -> datasets.Dataset:
    """Any accepted input kind -> a `Dataset` with exactly the text columns and a `label` column."""
    labels_name = "labels" if role == "train_data" else "eval_labels"
    data = _as_list(data)
    labels = _as_list(labels)
    if isinstance(data, datasets.DatasetDict):
        raise ValueError(
            f"{role} is a DatasetDict with splits {list(data)}; pass one split, e.g. "
            f"{role}=data['train']."
        )
    if labels is not None and not _is_text_list(data):
        raise ValueError(
            f"{labels_name}= is for a list of texts; {role} is a {type(data).__name__}, whose "
            f"labels are read from its column {label_column!r}. Leave {labels_name} out."
        )
    if isinstance(data, datasets.Dataset):
        dataset = data
    elif type(data).__module__.startswith("pandas") and type(data).__name__ == "DataFrame":
        dataset = datasets.Dataset.from_pandas(data, preserve_index=False)
    elif isinstance(data, Mapping):
        dataset = datasets.Dataset.from_dict({key: list(value) for key, value in data.items()})
    elif _is_text_list(data):
        if labels is None:
            raise ValueError(
                f"{role} is a list of texts: pass their labels too ({labels_name}=[...], names "
                "or ids), or pass a Dataset / DataFrame with a label column."
            )
        if len(labels) != len(data):
            raise ValueError(
                f"{role} holds {len(data)} texts but {labels_name} holds {len(labels)} labels; "
                "give one label per text."
            )
        if not data:
            raise ValueError(f"{role} is empty; give at least one example.")
        rows = [[item] if isinstance(item, str) else list(item) for item in data]
        widths = {len(row) for row in rows}
        if widths != {len(text_columns)}:
            kind = "texts" if len(text_columns) == 1 else "pairs of texts"
            raise ValueError(
                f"{role} must hold {kind} for text_column={text_columns!r}, but its items have "
                f"{sorted(widths)} text(s) each. Give strings for one column, (first, second) "
                "tuples for a pair."
            )
        labels = list(labels)
        if len({isinstance(label, str) for label in labels}) > 1:
            raise ValueError(
                f"{labels_name} mixes label names and numbers; use one kind throughout, e.g. "
                "all names ('positive') or all ids (2)."
            )
        columns = {name: [row[i] for row in rows] for i, name in enumerate(text_columns)}
        columns[label_column] = labels
        dataset = datasets.Dataset.from_dict(columns)
    else:
        raise TypeError(
            f"{role} must be a datasets.Dataset, a pandas DataFrame, a dict of columns or a list "
            f"of texts, got {type(data).__name__}."
        )
    missing = [c for c in (*text_columns, label_column) if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{role} has no column(s) {missing}; its columns are {dataset.column_names}. Name "
            "the text column(s) with text_column=... and the labels with label_column=...."
        )
    if len(dataset) == 0:
        raise ValueError(f"{role} is empty; give at least one example.")
    dataset = dataset.select_columns([*text_columns, label_column])
    if label_column != "label":
        dataset = dataset.rename_column(label_column, "label")
    return dataset


def _raw_labels(dataset: datasets.Dataset) -> list[Any]:
    # Class ids of a ClassLabel are only meaningful with its names: read them as names.
    feature = dataset.features["label"]
    values = dataset["label"]
    if isinstance(feature, datasets.ClassLabel):
        return [feature.int2str(v) if v is not None and v >= 0 else None for v in values]
    return list(values)


def _is_generic(names: Sequence[str]) -> bool:
    return all(name == f"LABEL_{i}" for i, name in enumerate(names))


def _encode_labels(
    dataset: datasets.Dataset,
    names: list[str] | None,
    role: str,
    owner: str,
    remedy: str = "or a teacher fine-tuned on your labels (nlpkd.quick.finetune)",
) -> datasets.Dataset:
    """Replace `label` by class ids in the order of `names` (or float32 values when `names` is None).

    Label names map through `names`; integer ids are kept when in range. With generic names
    (`LABEL_0`, ...), integer-like strings count as ids too.
    """
    raw = _raw_labels(dataset)
    missing = [row for row, value in enumerate(raw) if is_missing_value(value)]
    if missing:
        raise ValueError(
            f"{role}: {len(missing)} example(s) have no label (first: row {missing[0]}). Every "
            "training and evaluation example needs a label; drop the unlabelled rows."
        )
    if names is None:
        try:
            values = [float(value) for value in raw if not isinstance(value, bool)]
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{role}: the teacher is a regression model (one output) but the labels are not "
                f"all numbers ({err}). Give numeric labels, or use a classification teacher."
            ) from err
        if len(values) != len(raw):
            raise ValueError(f"{role}: regression labels must be numbers, not booleans.")
        return dataset.remove_columns("label").add_column(
            "label", values, feature=datasets.Value("float32")
        )

    label2id = {name: i for i, name in enumerate(names)}
    generic = _is_generic(names)
    ids: list[int] = []
    unknown: list[Any] = []
    for value in raw:
        index: int | None = None
        if isinstance(value, str):
            index = label2id.get(value.strip())
            if index is None and generic and value.strip().lstrip("+-").isdigit():
                index = int(value)
        elif isinstance(value, bool | np.bool_):
            index = int(value)
        elif isinstance(value, numbers.Integral):
            index = int(value)
        elif isinstance(value, numbers.Real) and float(value).is_integer():
            # pandas turns an int column with a gap into floats (1.0, 2.0).
            index = int(value)
        if index is None or not 0 <= index < len(names):
            if value not in unknown:
                unknown.append(value)
            continue
        ids.append(index)
    if unknown:
        shown = ", ".join(repr(v) for v in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise ValueError(
            f"{role} has labels that {owner} does not know: {shown}. Its labels are "
            f"{dict(enumerate(names))}: use these names or ids 0..{len(names) - 1}, {remedy}."
        )
    return dataset.remove_columns("label").add_column(
        "label", ids, feature=datasets.ClassLabel(names=list(names))
    )


def _data_label_names(dataset: datasets.Dataset) -> list[str] | None:
    feature = dataset.features["label"]
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def _load_teacher(teacher: PreTrainedModel | str) -> PreTrainedModel:
    if isinstance(teacher, PreTrainedModel):
        return teacher
    if not isinstance(teacher, str | Path):
        raise TypeError(
            f"teacher must be a transformers PreTrainedModel or a path / Hub id, got "
            f"{type(teacher).__name__}."
        )
    api.check_checkpoint(teacher, "teacher")
    architectures = getattr(AutoConfig.from_pretrained(str(teacher)), "architectures", None) or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise ValueError(
            f"{teacher} is not a fine-tuned sequence classifier (architectures: {architectures}); "
            "a teacher must already be trained on the task. Fine-tune it first with "
            "nlpkd.quick.finetune(...) or `nlpkd finetune`."
        )
    return AutoModelForSequenceClassification.from_pretrained(str(teacher))


def _model_name(model: PreTrainedModel) -> str:
    return str(getattr(model.config, "_name_or_path", "") or getattr(model, "name_or_path", ""))


def _load_tokenizer(source: str, what: str) -> Any:
    if not source:
        raise ValueError(
            f"{what} was not loaded from a folder or the Hub, so its tokenizer cannot be found: "
            "pass tokenizer=... (the tokenizer the teacher was trained with)."
        )
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"No tokenizer could be loaded from {source!r} ({type(err).__name__}): pass "
            "tokenizer=... (the tokenizer the teacher was trained with)."
        ) from err


def _teacher_label_names(teacher: PreTrainedModel) -> list[str] | None:
    config = teacher.config
    if config.num_labels == 1 or getattr(config, "problem_type", None) == "regression":
        return None
    id2label = {int(k): str(v) for k, v in config.id2label.items()}
    return [id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels)]


def _build_student(
    teacher: PreTrainedModel,
    student: PreTrainedModel | str | None,
    student_layers: int | Sequence[int] | None,
    names: list[str] | None,
) -> PreTrainedModel:
    if student is not None and student_layers is not None:
        raise ValueError(
            "Pass either student (a model or path to train) or student_layers (to build one "
            "from the teacher), not both."
        )
    if isinstance(student, PreTrainedModel):
        return student
    if student is not None:
        api.check_checkpoint(student, "student")
        num_labels = teacher.config.num_labels
        maps: dict[str, Any] = {"num_labels": num_labels}
        if names is not None:
            maps.update(
                id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
            )
        return AutoModelForSequenceClassification.from_pretrained(str(student), **maps)
    if student_layers is None or isinstance(student_layers, numbers.Integral):
        built = create_student(teacher, num_layers=student_layers)
    else:
        built = create_student(teacher, layers=list(student_layers))
    if names is not None and names != _teacher_label_names(teacher):
        # Only reached with a teacher whose labels are generic (LABEL_i): the data names them.
        built.config.id2label = dict(enumerate(names))
        built.config.label2id = {name: i for i, name in enumerate(names)}
    return built


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _evaluate_custom(
    model: PreTrainedModel,
    splits: Mapping[str, datasets.Dataset],
    compute_metrics: Callable[..., dict[str, float]],
    tokenizer: Any,
    args: TrainingArguments,
) -> dict[str, dict[str, float]]:
    """`api.evaluate_model` for a user's own `compute_metrics`, whose metric names are not known."""
    trainer = Trainer(
        model=model,
        args=api.plain_training_args(args, push_to_hub=False, report_to=[]),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )
    results = {}
    for split, dataset in splits.items():
        metrics = trainer.evaluate(eval_dataset=dataset, metric_key_prefix=split)
        prefix = f"{split}_"
        results[split] = {
            key[len(prefix) :]: float(value)
            for key, value in metrics.items()
            if key.startswith(prefix)
            and key[len(prefix) :] not in _EVAL_BOOKKEEPING
            and isinstance(value, numbers.Real)
        }
    return results


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
    # Pinned memory only helps copies to a GPU; without one, torch warns about it on every data loader.
    values = {"dataloader_pin_memory": torch.cuda.is_available(), **DEFAULT_CONFIG, **config_kwargs}
    # Nothing is written there unless checkpoints are asked for; `result.save` writes the student.
    values.setdefault("output_dir", tempfile.mkdtemp(prefix="nlpkd-"))
    try:
        return DistillationConfig(**values)
    except TypeError as err:
        raise ValueError(
            f"{err}. Keyword arguments of distill() that it does not name itself go to "
            "DistillationConfig (TrainingArguments plus temperature, alpha_kd, ...)."
        ) from err


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


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
    student_layers: int | Sequence[int] | None = None,
    args: DistillationConfig | None = None,
    max_length: int = 128,
    compute_metrics: Callable[..., dict[str, float]] | None = None,
    measure_latency: bool = True,
    **config_kwargs: Any,
) -> DistillationResult:
    """Distil a fine-tuned classifier into a student with fewer layers, on your own data.

    The steps are those of `nlpkd distill`, each done by the function nlpkd exposes for it: the
    data is converted to `datasets.Dataset` and tokenized ([`~nlpkd.tasks.tokenize_dataset`]),
    labels are mapped to the teacher's classes, a student is built ([`create_student`]) and
    trained by a [`DistillationTrainer`], teacher and student are evaluated
    ([`nlpkd.api.evaluate_model`]) and compared ([`~nlpkd.report.compression_report`]).

    Labels: the teacher's `config.id2label` decides what logit `i` means. Labels given as names
    are mapped through it (so a `DataFrame` whose labels are `"sports"`, `"tech"`, ... works in
    any row order), integer ids are taken as they are, and a `ClassLabel` column is mapped by its
    names. A label the teacher does not know raises a `ValueError` that lists both. A teacher
    whose labels are unnamed (`LABEL_0`, ...) takes ids, and its student is named after the
    data's `ClassLabel` names when there are any. A one-output teacher is a regression model:
    labels are numbers and the metrics are `pearson` and `spearmanr` (else `accuracy`).

    Args:
        teacher ([`~transformers.PreTrainedModel`] or `str`):
            The fine-tuned sequence classifier, or the path / Hub id of one.
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
            A student to train instead of building one from the teacher (same tokenizer).
        student_layers (`int` or `Sequence[int]`, *optional*):
            The student's depth (teacher layers taken at equal strides), or the teacher layers
            to copy, e.g. `[0, 2, 4]`. Defaults to half the teacher's layers.
        args ([`DistillationConfig`], *optional*):
            All training and distillation settings. Defaults to [`DEFAULT_CONFIG`] updated with
            `config_kwargs`, in a temporary `output_dir` unless one is given.
        max_length (`int`, *optional*, defaults to `128`):
            Tokens per example (longer texts are truncated); also the sequence length of the
            latency measurement.
        compute_metrics (`Callable`, *optional*):
            A Trainer `compute_metrics` function (`EvalPrediction -> dict`). Defaults to accuracy,
            or Pearson and Spearman correlations for regression, computed locally. With your own,
            the report's main metric is the first one it returns.
        measure_latency (`bool`, *optional*, defaults to `True`):
            Time both models on fixed-shape batches (32 x `max_length`) of the evaluation data.
        **config_kwargs:
            [`DistillationConfig`] fields when `args` is not given: `output_dir`,
            `num_train_epochs`, `max_steps`, `learning_rate`, `temperature`, `alpha_kd`, ...

    Returns:
        [`DistillationResult`]: the trainer, the student, the teacher and the report; call
        `result.save(folder)` to write the student.

    Raises:
        `ValueError`: for unusable data (missing columns, missing or unknown labels, a list
            without labels), conflicting arguments, or a path that is not a fine-tuned classifier.
        `TypeError`: for a data or model argument of an unsupported type.
    """
    teacher_model = _load_teacher(teacher)
    if tokenizer is None:
        source = str(teacher) if isinstance(teacher, str | Path) else _model_name(teacher_model)
        tokenizer = _load_tokenizer(source, "The teacher")
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < max_length:
        # Longer inputs have no position embeddings; tokenization and the latency batches agree.
        max_length = model_max
    columns = _pair_aware_columns(_as_list(train_data), _text_columns(text_column))
    train = _as_dataset(train_data, labels, columns, label_column, "train_data")
    evaluation = (
        None
        if eval_data is None
        else _as_dataset(eval_data, eval_labels, columns, label_column, "eval_data")
    )
    if eval_data is None and eval_labels is not None:
        raise ValueError("eval_labels= was given without eval_data; pass the texts as eval_data.")

    names = _teacher_label_names(teacher_model)
    if names is not None and _is_generic(names):
        data_names = _data_label_names(train)
        if data_names is not None and len(data_names) == len(names):
            names = data_names
    owner = "the teacher" if names == _teacher_label_names(teacher_model) else "the data"
    train = _encode_labels(train, names, "train_data", owner)
    if evaluation is not None:
        evaluation = _encode_labels(evaluation, names, "eval_data", owner)

    config = _make_config(args, config_kwargs)
    task = custom_task(columns, teacher_model.config.num_labels)
    main_split = "validation" if evaluation is not None else "train"
    raw = datasets.DatasetDict({"train": train})
    if evaluation is not None:
        raw["validation"] = evaluation
    data = tokenize_dataset(raw, tokenizer, task, max_length=max_length)
    eval_splits = {main_split: data[main_split]}

    student_model = _build_student(teacher_model, student, student_layers, names)
    trainer = DistillationTrainer(
        model=student_model,
        teacher=teacher_model,
        args=config,
        train_dataset=data["train"],
        eval_dataset=data["validation"] if evaluation is not None else None,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics or make_compute_metrics(task),
    )
    trainer.train()
    student_model = trainer.model.eval()

    if compute_metrics is None:
        teacher_metrics = api.evaluate_model(teacher_model, eval_splits, task, tokenizer, config)
        student_metrics = api.evaluate_model(student_model, eval_splits, task, tokenizer, config)
        main_metric = task.main_metric
    else:
        teacher_metrics = _evaluate_custom(
            teacher_model, eval_splits, compute_metrics, tokenizer, config
        )
        student_metrics = _evaluate_custom(
            student_model, eval_splits, compute_metrics, tokenizer, config
        )
        if not student_metrics[main_split]:
            raise ValueError(
                "compute_metrics returned no numeric metric; it must return a dict such as "
                "{'accuracy': 0.9}."
            )
        main_metric = next(iter(student_metrics[main_split]))

    batches = None
    if measure_latency:
        batches = api.latency_batches(
            data[main_split], tokenizer, LATENCY_BATCH_SIZE, LATENCY_NUM_BATCHES, max_length
        )
    report = compression_report(
        teacher=teacher_model,
        student=student_model,
        teacher_metrics=teacher_metrics,
        student_metrics=student_metrics,
        main_metric=main_metric,
        main_split=main_split,
        latency_batches=batches,
        progress=not config.disable_tqdm,
    )
    teacher_name = (
        api.hub_name(
            str(teacher) if isinstance(teacher, str | Path) else _model_name(teacher_model)
        )
        or type(teacher_model).__name__
    )
    report.update(
        task="custom",
        teacher_name=teacher_name,
        teacher_layers=getattr(student_model.config, "nlpkd_teacher_layers", None),
        student_layers=num_encoder_layers(student_model),
        label_names=names,
        distillation=api.distillation_args_summary(config),
        train_examples=len(data["train"]),
    )
    return DistillationResult(
        trainer=trainer,
        student=student_model,
        teacher=teacher_model,
        report=report,
        tokenizer=tokenizer,
    )


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
    [`nlpkd.api.finetune_teacher`]); the model is saved to `output_dir` with its tokenizer and
    returned in eval mode.

    Args:
        base (`str`):
            Path or Hub id of the encoder, e.g. the packaged all-MiniLM-L6-v2
            ([`nlpkd.api.packaged_minilm_path`]).
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
        tokenizer = _load_tokenizer(str(base), f"The base model {base!r}")
    columns = _pair_aware_columns(_as_list(train_data), _text_columns(text_column))
    train = _as_dataset(train_data, labels, columns, label_column, "train_data")
    if regression:
        names = None
    elif label_names is not None:
        names = [str(name) for name in label_names]
    else:
        names = _data_label_names(train)
        if names is None:
            values = _raw_labels(train)
            if all(isinstance(v, str) for v in values):
                names = sorted({v.strip() for v in values})
            else:
                ids = [
                    int(v)
                    for v in values
                    if isinstance(v, numbers.Real) and not is_missing_value(v)
                ]
                names = [str(i) for i in range(max(ids, default=0) + 1)]
    if names is not None and len(names) < 2:
        raise ValueError(
            f"The data has a single class {names}: a classifier needs at least two. Check the "
            "label column, or pass label_names=[...] with every class."
        )
    train = _encode_labels(
        train, names, "train_data", "label_names", remedy="or add the missing names to label_names"
    )
    task = custom_task(columns, 1 if names is None else len(names))
    data = tokenize_dataset(datasets.DatasetDict({"train": train}), tokenizer, task, max_length)
    output_dir = (
        Path(output_dir)
        if output_dir is not None
        else Path(tempfile.mkdtemp(prefix="nlpkd-teacher-"))
    )
    values = {
        "per_device_train_batch_size": 16,
        "logging_steps": 10,
        "report_to": "none",
        "save_strategy": "no",
        **training_kwargs,
        "output_dir": str(output_dir),
    }
    return api.finetune_teacher(
        str(base),
        data,
        task,
        names,
        tokenizer,
        TrainingArguments(**values),
        output_dir=output_dir,
        num_train_epochs=num_train_epochs,
        learning_rate=learning_rate,
    )
