"""The tokenizers of a job: the student's, each teacher's, and which columns of the data each model reads.

A job distils across tokenizers by itself: when the student (`--student PATH` with its own tokenizer files,
`nlpkd.distill(student=..., student_tokenizer=...)`) or a further teacher (`--teacher A B` of different families)
has a tokenizer that gives other token ids than the first teacher's, the data is tokenized for each of them
from the same text, and each model reads its own tokenization (`nlpkd.data.teacher_inputs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoTokenizer, DataCollatorWithPadding, PreTrainedModel

from ..data.teacher_inputs import (
    DataCollatorWithTeacherPadding,
    student_view,
    teacher_column_prefixes,
    teacher_view,
)
from ..data.tokenize import tokenize_dataset
from ..models.loading import load_tokenizer, model_name
from ..report.measure import latency_batches
from .job import DistillationJob
from .teacher import _teacher_sources

__all__ = ["JobTokenizers", "evaluation_inputs", "job_tokenizers", "latency_inputs"]

# Files of a saved tokenizer: a student folder with one of them has a tokenizer of its own.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
)


@dataclass(frozen=True)
class JobTokenizers:
    """The tokenizers of a job and the columns each model reads.

    Args:
        student: the student's tokenizer: the data's own columns (`input_ids`, ...), saved with the student.
        teachers (`tuple`): one tokenizer per teacher.
        prefixes (`tuple`): per teacher, the prefix of the columns it reads (`None`: the student's).
    """

    student: Any
    teachers: tuple[Any, ...]
    prefixes: tuple[str | None, ...]

    @property
    def own_inputs(self) -> bool:
        """Whether a teacher reads a tokenization of its own (its tokenizer differs from the student's)."""
        return any(prefix is not None for prefix in self.prefixes)

    @property
    def teacher(self) -> Any:
        """The (first) teacher's tokenizer."""
        return self.teachers[0]

    def teacher_argument(self) -> Any:
        """`teacher_tokenizer=` of `tokenize_dataset` and `teacher_processing_class=` of the trainer: `None` when
        every teacher reads the student's columns, else one tokenizer, or one per teacher."""
        if not self.own_inputs:
            return None
        return self.teachers[0] if len(self.teachers) == 1 else list(self.teachers)

    def tokenize(
        self, raw: datasets.DatasetDict, task: Any, max_length: int, mask_token: str | None = None
    ) -> datasets.DatasetDict:
        """Tokenize every split for every model, from the same text."""
        return tokenize_dataset(
            raw, self.student, task, max_length, self.teacher_argument(), mask_token=mask_token
        )

    def view(self, data: Any, index: int = 0) -> Any:
        """A dataset (or each split of a `DatasetDict`) as teacher `index` reads it."""
        if isinstance(data, Mapping):
            return datasets.DatasetDict({s: self.view(d, index) for s, d in data.items()})
        return teacher_view(data, self.prefixes[index])

    def collator(self, **padding: Any) -> Any:
        """The data collator of the training data: [`~nlpkd.data.DataCollatorWithTeacherPadding`] when a
        teacher reads its own columns, else `DataCollatorWithPadding` (`padding`: their padding arguments)."""
        if self.own_inputs:
            return DataCollatorWithTeacherPadding(self.student, self.teacher_argument(), **padding)
        return DataCollatorWithPadding(self.student, **padding)

    def summary(self) -> dict[str, Any]:
        """What `metrics.json` records of the tokenizers when a teacher reads its own tokenization."""
        return {
            "student": _name(self.student),
            "teachers": [_name(t) for t in self.teachers],
            "teacher_columns": [f"{p}input_ids" if p else "input_ids" for p in self.prefixes],
        }


def _name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def _student_tokenizer(job: DistillationJob) -> Any:
    """The student's own tokenizer: given, or saved with a `--student` checkpoint; `None` when the student has
    none of its own (it reads the teacher's tokenization, and the trainer checks that the vocabularies agree)."""
    if job.student_tokenizer is not None:
        return job.student_tokenizer
    if job.student is None:
        return None
    source = (
        model_name(job.student) if isinstance(job.student, PreTrainedModel) else str(job.student)
    )
    if not source:
        return None
    folder = Path(source).expanduser()
    if folder.is_dir() and not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        return None
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError):
        return None


def _other_teacher_tokenizer(source: Any, first: Any, index: int) -> Any:
    """The tokenizer of teacher `index` (2, 3, ...): from its folder or Hub id; a model built in memory with the
    first teacher's vocabulary size reads the first teacher's."""
    name = model_name(source) if isinstance(source, PreTrainedModel) else str(source)
    if isinstance(source, PreTrainedModel):
        try:
            return AutoTokenizer.from_pretrained(name) if name else first
        except (OSError, ValueError):
            return first
    return load_tokenizer(name, f"The teacher {index} ({name})")


def job_tokenizers(job: DistillationJob, teacher_tokenizer: Any) -> JobTokenizers:
    """The job's tokenizers: the first teacher's (`teacher_tokenizer`), the other teachers' (from their folders),
    the student's (given, from its folder, or the first teacher's), and the columns each teacher reads."""
    sources = _teacher_sources(job)
    teachers = [teacher_tokenizer] + [
        _other_teacher_tokenizer(source, teacher_tokenizer, index)
        for index, source in enumerate(sources[1:], start=2)
    ]
    student = _student_tokenizer(job) or teacher_tokenizer
    prefixes = teacher_column_prefixes(student, teachers)
    return JobTokenizers(student=student, teachers=tuple(teachers), prefixes=tuple(prefixes))


def evaluation_inputs(
    tokenizers: JobTokenizers, splits: Mapping[str, datasets.Dataset], ensemble: bool
) -> tuple[dict[str, datasets.Dataset], Any, Any]:
    """The evaluation splits, tokenizer and collator that the job's teacher is evaluated with: its own
    tokenization, or for an ensemble whose teachers read their own columns, every column padded per tokenizer."""
    if ensemble:
        collator = tokenizers.collator() if tokenizers.own_inputs else None
        return dict(splits), tokenizers.student, collator
    return dict(tokenizers.view(splits, 0)), tokenizers.teacher, None


def latency_inputs(
    tokenizers: JobTokenizers,
    split: datasets.Dataset,
    ensemble: bool,
    sizes: tuple[int, int, int],
) -> Any:
    """Fixed-shape latency batches of the same texts: one list for both models when they share a tokenization,
    else `{"teacher": ..., "student": ...}`, each model's texts through its own tokenizer at the same shape.

    Args:
        tokenizers ([`JobTokenizers`]): the job's tokenizers.
        split (`datasets.Dataset`): the main evaluation split, tokenized by [`JobTokenizers.tokenize`].
        ensemble (`bool`): whether the teacher is an ensemble.
        sizes (`tuple`): batch size, number of batches and sequence length.
    """
    batch_size, count, max_length = sizes
    student = latency_batches(student_view(split), tokenizers.student, *sizes)
    if not tokenizers.own_inputs:
        return student
    if ensemble:
        collate = tokenizers.collator(padding="max_length", max_length=max_length)
        teacher = latency_batches(split, None, batch_size, count, max_length, data_collator=collate)
    else:
        teacher = latency_batches(tokenizers.view(split, 0), tokenizers.teacher, *sizes)
    return {"teacher": teacher, "student": student}
