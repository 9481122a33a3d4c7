"""The task table: the nine GLUE tasks and the embedded BBC News default.

A task is described by a frozen [`TaskSpec`]: its text columns, number of labels, metrics and
validation splits. Adding a task is adding a row to `TASKS`.

"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_TASK",
    "GLUE_TASKS",
    "TASKS",
    "TaskSpec",
    "custom_task",
    "get_task",
    "resolve_task",
]

# Metric names follow the keys of Hugging Face's GLUE metric so results compare directly.
_KNOWN_METRICS = ("accuracy", "f1", "matthews_correlation", "pearson", "spearmanr")


@dataclass(frozen=True)
class TaskSpec:
    """Description of a sequence-classification (or regression) task.

    Args:
        name (`str`):
            Short task name, e.g. `"sst2"`.
        text_columns (`tuple[str, ...]`):
            One column for single-sentence tasks (`("sentence",)`) or two for sentence pairs
            (`("sentence1", "sentence2")`), in the order they are given to the tokenizer.
        num_labels (`int`):
            Number of classes; `1` means regression (e.g. STS-B).
        metric_names (`tuple[str, ...]`):
            Metrics reported for the task, among `accuracy`, `f1`, `matthews_correlation`,
            `pearson` and `spearmanr`.
        main_metric (`str`):
            The metric used to compare teacher and student (retention); one of `metric_names`.
        validation_splits (`tuple[str, ...]`, *optional*, defaults to `("validation",)`):
            Evaluation splits; the first one is the main one (MNLI: matched, then mismatched).
        hub_dataset (`tuple[str, str]`, *optional*):
            `(path, config)` passed to `datasets.load_dataset` when no local file is given, e.g.
            `("nyu-mll/glue", "cola")`. `None` for tasks that are not on the Hub.
        label_column (`str`, *optional*, defaults to `"label"`):
            Name of the label column in the data.
        label_names (`tuple[str, ...]`, *optional*):
            Class names in id order, used for local files whose labels are integer ids (data
            with a `ClassLabel` feature always uses the feature's own names). `None` for
            regression tasks and tasks without official names.
    """

    name: str
    text_columns: tuple[str, ...]
    num_labels: int
    metric_names: tuple[str, ...]
    main_metric: str
    validation_splits: tuple[str, ...] = ("validation",)
    hub_dataset: tuple[str, str] | None = None
    label_column: str = "label"
    label_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.text_columns) not in (1, 2):
            raise ValueError(
                f"Task {self.name!r}: text_columns must hold one column (single sentence) or two "
                f"(sentence pair), got {self.text_columns!r}."
            )
        if self.num_labels < 1:
            raise ValueError(
                f"Task {self.name!r}: num_labels must be >= 1 (1 means regression), got "
                f"{self.num_labels}."
            )
        unknown = [m for m in self.metric_names if m not in _KNOWN_METRICS]
        if unknown or not self.metric_names:
            raise ValueError(
                f"Task {self.name!r}: metric_names {self.metric_names!r} must be a non-empty "
                f"subset of {_KNOWN_METRICS}."
            )
        if self.main_metric not in self.metric_names:
            raise ValueError(
                f"Task {self.name!r}: main_metric {self.main_metric!r} must be one of "
                f"metric_names {self.metric_names!r}."
            )
        if not self.validation_splits:
            raise ValueError(f"Task {self.name!r}: validation_splits must name at least one split.")
        if self.label_names is not None:
            if self.num_labels == 1:
                raise ValueError(
                    f"Task {self.name!r} is a regression task (num_labels=1) and cannot have "
                    "label_names; set label_names=None."
                )
            if len(self.label_names) != self.num_labels:
                raise ValueError(
                    f"Task {self.name!r}: label_names has {len(self.label_names)} names but "
                    f"num_labels is {self.num_labels}; give one name per class."
                )

    @property
    def is_regression(self) -> bool:
        """Whether the task predicts one real value (`num_labels == 1`) instead of a class."""
        return self.num_labels == 1


def _glue(
    name: str,
    text_columns: tuple[str, ...],
    num_labels: int,
    metric_names: tuple[str, ...],
    main_metric: str,
    label_names: tuple[str, ...] | None,
    validation_splits: tuple[str, ...] = ("validation",),
) -> TaskSpec:
    return TaskSpec(
        name=name,
        text_columns=text_columns,
        num_labels=num_labels,
        metric_names=metric_names,
        main_metric=main_metric,
        validation_splits=validation_splits,
        hub_dataset=("nyu-mll/glue", name),
        label_names=label_names,
    )


_ENTAILMENT = ("entailment", "not_entailment")


TASKS: dict[str, TaskSpec] = {
    "cola": _glue(
        "cola",
        ("sentence",),
        2,
        ("matthews_correlation",),
        "matthews_correlation",
        ("unacceptable", "acceptable"),
    ),
    "sst2": _glue("sst2", ("sentence",), 2, ("accuracy",), "accuracy", ("negative", "positive")),
    "mrpc": _glue(
        "mrpc",
        ("sentence1", "sentence2"),
        2,
        ("f1", "accuracy"),
        "f1",
        ("not_equivalent", "equivalent"),
    ),
    "qqp": _glue(
        "qqp",
        ("question1", "question2"),
        2,
        ("f1", "accuracy"),
        "f1",
        ("not_duplicate", "duplicate"),
    ),
    "stsb": _glue("stsb", ("sentence1", "sentence2"), 1, ("pearson", "spearmanr"), "pearson", None),
    "mnli": _glue(
        "mnli",
        ("premise", "hypothesis"),
        3,
        ("accuracy",),
        "accuracy",
        ("entailment", "neutral", "contradiction"),
        validation_splits=("validation_matched", "validation_mismatched"),
    ),
    "qnli": _glue("qnli", ("question", "sentence"), 2, ("accuracy",), "accuracy", _ENTAILMENT),
    "rte": _glue("rte", ("sentence1", "sentence2"), 2, ("accuracy",), "accuracy", _ENTAILMENT),
    "wnli": _glue(
        "wnli",
        ("sentence1", "sentence2"),
        2,
        ("accuracy",),
        "accuracy",
        ("not_entailment", "entailment"),
    ),
    "bbc_news": TaskSpec(
        name="bbc_news",
        text_columns=("text",),
        num_labels=5,
        metric_names=("accuracy",),
        main_metric="accuracy",
        label_names=("business", "entertainment", "politics", "sports", "tech"),
    ),
    # Built offline from the same corpus by nlpkd.data.pairs: where does the paragraph come from?
    "bbc_pairs": TaskSpec(
        name="bbc_pairs",
        text_columns=("headline", "paragraph"),
        num_labels=3,
        metric_names=("accuracy",),
        main_metric="accuracy",
        label_names=("same_article", "same_topic", "other_topic"),
    ),
}


GLUE_TASKS: tuple[str, ...] = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")


DEFAULT_TASK = "bbc_news"


def get_task(name: str) -> TaskSpec:
    """Look up a task by name.

    Args:
        name (`str`):
            Task name, case-insensitive: one of the GLUE tasks (`cola`, `sst2`, `mrpc`, `qqp`,
            `stsb`, `mnli`, `qnli`, `rte`, `wnli`), `bbc_news` or `bbc_pairs`.

    Returns:
        [`TaskSpec`]: the task's description.

    Raises:
        `ValueError`: if the name is unknown; the message lists the known tasks.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in TASKS:
        raise ValueError(
            f"Unknown task {name!r}. Known tasks: {', '.join(TASKS)}. "
            "Pass one of these names, or build your own TaskSpec."
        )
    return TASKS[key]


def resolve_task(task: TaskSpec | str) -> TaskSpec:
    return task if isinstance(task, TaskSpec) else get_task(task)


def custom_task(text_columns: tuple[str, ...] = ("text",), num_labels: int = 2) -> TaskSpec:
    """A [`TaskSpec`] for the user's own data: accuracy for classes, Pearson/Spearman for regression.

    Args:
        text_columns (`tuple[str, ...]`, *optional*, defaults to `("text",)`):
            One text column, or two for sentence pairs.
        num_labels (`int`, *optional*, defaults to `2`):
            Number of classes; `1` means regression.
    """
    if num_labels == 1:
        return TaskSpec(
            name="custom",
            text_columns=tuple(text_columns),
            num_labels=1,
            metric_names=("pearson", "spearmanr"),
            main_metric="pearson",
        )
    return TaskSpec(
        name="custom",
        text_columns=tuple(text_columns),
        num_labels=num_labels,
        metric_names=("accuracy",),
        main_metric="accuracy",
    )
