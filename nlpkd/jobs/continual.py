"""Continual distillation: learn a new task without forgetting the old one (Learning without Forgetting,
Li and Hoiem, 2016).

A classifier trained on task A is copied and its head grown with the labels of task B
([`grow_classifier`]). The copy is trained on task B's data with the ordinary
[`DistillationTrainer`][nlpkd.trainer.DistillationTrainer]: the hard-label term on the new columns, and the
distillation term between the copy's old columns and the frozen original's outputs *on task B's inputs*. No task-A
data is needed: the original model's own answers on the new inputs are the targets that keep its behaviour.
[`LogitColumns`][nlpkd.losses.LogitColumns] tells the trainer which columns each term reads; with
`alpha_kd=0` the same call is plain fine-tuning, the baseline that forgets.

The setting is task-incremental: each task is scored on its own columns ([`evaluate_tasks`]).

"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel, TrainingArguments

from ..config import DistillationConfig
from ..losses.terms import LogitColumns
from ..report.evaluate import evaluate_model
from ..trainer.trainer import DistillationTrainer

__all__ = [
    "evaluate_tasks",
    "grow_classifier",
    "learn_without_forgetting",
    "task_columns",
    "task_metrics",
]


def _head(model: PreTrainedModel) -> tuple[nn.Module, str, nn.Linear]:
    """The classification layer: the last `nn.Linear` with one output per label, and where it hangs."""
    num_labels = model.config.num_labels
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == num_labels:
            found = name
    if found is None:
        raise ValueError(
            f"{type(model).__name__} has no torch.nn.Linear layer with {num_labels} outputs (one per label) to "
            "grow: pass a *ForSequenceClassification or *ForImageClassification model."
        )
    parent_name, _, attr = found.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, attr, getattr(parent, attr)


def grow_classifier(model: PreTrainedModel, new_labels: Sequence[str]) -> PreTrainedModel:
    """A copy of a classifier with `len(new_labels)` more outputs, for a new task.

    The copy's first `num_labels` outputs are the original's (same weights), the new ones come after them,
    initialised like a fresh head (normal with the config's `initializer_range`, zero bias); `id2label` and
    `label2id` grow with `new_labels`. The original model is not changed.

    Args:
        model ([`~transformers.PreTrainedModel`]): a classifier trained on the old task.
        new_labels (`Sequence[str]`): the names of the new task's labels, in id order.

    Returns:
        [`~transformers.PreTrainedModel`]: the grown copy.

    Raises:
        `ValueError`: if `new_labels` is empty or repeats a label of the model, or the model has no
            classification layer to grow.
    """
    new_labels = [str(label) for label in new_labels]
    old_names = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    clash = sorted(set(new_labels) & set(old_names)) or sorted(
        {n for n in new_labels if new_labels.count(n) > 1}
    )
    if not new_labels or clash:
        raise ValueError(
            f"new_labels must name at least one label, each once and none of the model's own ({old_names}); "
            f"got {new_labels}. Give the new task's labels names of their own."
        )
    grown = copy.deepcopy(model)
    parent, attr, old = _head(grown)
    head = nn.Linear(old.in_features, old.out_features + len(new_labels), bias=old.bias is not None)
    head.to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        nn.init.normal_(head.weight, std=getattr(grown.config, "initializer_range", 0.02))
        head.weight[: old.out_features] = old.weight
        if old.bias is not None:
            head.bias.zero_()
            head.bias[: old.out_features] = old.bias
    setattr(parent, attr, head)
    # The original may be a frozen teacher already; the copy learns everywhere, as in LwF.
    grown.requires_grad_(True)
    names = old_names + new_labels
    grown.config.id2label = dict(enumerate(names))
    grown.config.label2id = {name: i for i, name in enumerate(names)}
    if isinstance(getattr(grown, "num_labels", None), int):
        # Heads keep their own copy of the count for their loss (`logits.view(-1, self.num_labels)`).
        grown.num_labels = len(names)
    return grown


def task_columns(old_num_labels: int, new_num_labels: int) -> LogitColumns:
    """The columns of a grown classifier: the teacher's logits are the first `old_num_labels`, the new task's
    labels index the `new_num_labels` after them.

    Args:
        old_num_labels (`int`): labels of the old task (the teacher's).
        new_num_labels (`int`): labels of the new task.
    """
    return LogitColumns(
        teacher=slice(0, old_num_labels),
        labels=slice(old_num_labels, old_num_labels + new_num_labels),
    )


def learn_without_forgetting(
    model: PreTrainedModel,
    train_dataset: datasets.Dataset,
    new_labels: Sequence[str],
    args: DistillationConfig,
    **trainer_kwargs: Any,
) -> DistillationTrainer:
    """Train a classifier on a new task while it keeps its answers on the old one (Learning without Forgetting).

    The student is [`grow_classifier`]`(model, new_labels)`; the teacher is `model` itself, frozen (it is put in
    `eval()` mode with gradients off). The loss is `alpha_ce` times the cross-entropy of the new columns with the
    new task's labels plus `alpha_kd` times the distillation term (with `temperature`; Li and Hoiem use T = 2)
    between the student's old columns and the teacher's logits, both on the new task's inputs. `alpha_kd=0` gives
    plain fine-tuning of the grown model, the baseline that forgets.

    Args:
        model ([`~transformers.PreTrainedModel`]): a classifier trained on the old task.
        train_dataset (`datasets.Dataset`): the new task's training data; its labels are `0 ..
            len(new_labels) - 1`.
        new_labels (`Sequence[str]`): the new task's label names, in id order.
        args ([`DistillationConfig`]): training settings; `alpha_kd` weighs remembering, `alpha_ce` learning.
        **trainer_kwargs: anything else [`DistillationTrainer`][nlpkd.trainer.DistillationTrainer] takes
            (`processing_class`, `eval_dataset`, `data_collator`, `callbacks`, ...).

    Returns:
        [`DistillationTrainer`][nlpkd.trainer.DistillationTrainer]: the trainer after training; its `student` is
        the grown model.
    """
    columns = task_columns(model.config.num_labels, len(new_labels))
    student = grow_classifier(model, new_labels)
    trainer = DistillationTrainer(
        model=student,
        teacher=model,
        args=args,
        logit_columns=columns,
        train_dataset=train_dataset,
        **trainer_kwargs,
    )
    trainer.train()
    return trainer


def task_metrics(columns: slice) -> Callable[[Any], dict[str, float]]:
    """A Trainer `compute_metrics` that scores one task of a grown classifier: the accuracy of the arg-max over
    its `columns`, with labels counted from the first of them.

    Args:
        columns (`slice`): the task's logit columns, e.g. `slice(0, 3)` for the old task.
    """

    def compute(prediction: Any) -> dict[str, float]:
        logits = np.asarray(prediction.predictions)[..., columns]
        labels = np.asarray(prediction.label_ids)
        return {"accuracy": float((logits.argmax(-1) == labels).mean())}

    return compute


def evaluate_tasks(
    model: PreTrainedModel,
    tasks: Mapping[str, tuple[datasets.Dataset, slice]],
    tokenizer: Any,
    args: TrainingArguments,
    data_collator: Callable[[list[Any]], Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, float]]:
    """The accuracy of a model on each task, each scored on its own columns: `{task: {"accuracy": value}}`, the
    layout of a [`~nlpkd.report.Report`]'s metrics with tasks in place of splits.

    Args:
        model ([`~transformers.PreTrainedModel`]): the original or the grown classifier.
        tasks (`Mapping[str, tuple[datasets.Dataset, slice]]`): per task, its tokenized evaluation data (labels
            counted from the task's first column) and its columns.
        tokenizer: pads the batches (`None` with a `data_collator`).
        args (`TrainingArguments`): evaluation batch size and precision.
        data_collator (`Callable`, *optional*): builds the batches.
    """
    results = {}
    for name, (dataset, columns) in tasks.items():
        metrics = evaluate_model(
            model,
            {name: dataset},
            tokenizer,
            args,
            compute_metrics=task_metrics(columns),
            data_collator=data_collator,
        )
        results[name] = metrics[name]
    return results
