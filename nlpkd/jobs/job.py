"""The distillation job: what to distil, on what data, how."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedModel

from ..config import DistillationConfig
from ..data.tasks import TaskSpec
from .options import JobOptions

__all__ = ["DistillationJob"]


@dataclass(kw_only=True)
class DistillationJob(JobOptions):
    """Everything one distillation run needs: the data, the models, the training settings and the
    [`JobOptions`] (every option, with the defaults of `nlpkd distill`). Build it with keywords.

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
        student_tokenizer (*optional*): the student's tokenizer, when it differs from the teacher's; loaded from
            the `student` folder when that holds tokenizer files, else the teacher's. When it gives other token
            ids than the teacher's, the data is tokenized for both and each model reads its own
            (`nlpkd.jobs.tokenizers`, docs/cross-tokenizer.md).
        label_names (`list[str]`, *optional*): the class names in id order; read from the data by default.
        compute_metrics (`Callable`, *optional*): a Trainer `compute_metrics`; the report's main metric is then
            the first one it returns. Defaults to the task's metrics, computed locally.

    Every field of [`JobOptions`] (`student_layers`, `max_length`, `deploy`, ...) is a keyword too.
    """

    data: datasets.DatasetDict
    task: TaskSpec
    args: DistillationConfig
    teacher: PreTrainedModel | str | Path | list | None = None
    tokenizer: Any = None
    student: PreTrainedModel | str | Path | None = None
    student_tokenizer: Any = None
    label_names: list[str] | None = None
    compute_metrics: Callable[..., dict[str, float]] | None = field(default=None, repr=False)
