"""General (task-agnostic) distillation: the first stage of two-stage distillation (TinyBERT, MiniLM).

A base encoder (no task head) is distilled into a smaller one on plain text with task-agnostic objectives:
MiniLM's self-attention relations of the last layer and TinyBERT's hidden-state matching (embeddings and
every mapped layer). The saved general student then starts the task stage: `nlpkd distill --student FOLDER`
(or `nlpkd.distill(..., student=FOLDER)`) adds a head and distils the fine-tuned teacher into it.

```python
from nlpkd.jobs import general_distill

result = general_distill(texts, num_layers=3, output_dir="minilm-l3-general")  # packaged MiniLM teacher
```

"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoModel, AutoTokenizer, DataCollatorWithPadding, PreTrainedModel

from ..config import DistillationConfig
from ..data.tasks import custom_task
from ..data.tokenize import tokenize_dataset
from ..data.unlabeled import load_unlabeled
from ..models.loading import check_checkpoint, packaged_minilm_path
from ..models.student import create_student
from ..trainer.trainer import DistillationTrainer

__all__ = ["GENERAL_DEFAULTS", "GeneralResult", "MIN_GENERAL_TEXTS", "general_distill"]

logger = logging.getLogger("nlpkd")


# Fewer texts than this cannot teach a general student anything that lasts: refuse them.
MIN_GENERAL_TEXTS = 100


# The stage's objectives and training defaults (keyword arguments of `general_distill` win).
GENERAL_DEFAULTS: dict[str, Any] = {
    "alpha_kd": 0.0,
    "alpha_ce": 0.0,
    "alpha_relation": 1.0,
    "alpha_hidden": 1.0,
    "hidden_embeddings": True,
    "per_device_train_batch_size": 32,
    "learning_rate": 3e-4,
    "num_train_epochs": 3.0,
    "warmup_steps": 0.1,
    "logging_steps": 10,
    "save_strategy": "no",
    "report_to": "none",
}


@dataclass
class GeneralResult:
    """What [`general_distill`] built.

    Args:
        student ([`~transformers.PreTrainedModel`]): the general student (a base encoder, no head).
        trainer ([`~nlpkd.DistillationTrainer`]): the trainer (its log history has the loss components).
        output_dir (`Path`): where the student and its tokenizer were saved.
        held_out_loss (`dict[str, float]`): the stage's loss on held-out text, `before` and `after`.
    """

    student: PreTrainedModel
    trainer: DistillationTrainer
    output_dir: Path
    held_out_loss: dict[str, float]


def _held_out_loss(trainer: DistillationTrainer, dataset: datasets.Dataset) -> float:
    """The stage's weighted loss on `dataset`, student in eval mode (no dropout)."""
    args, student = trainer.args, trainer.student
    collate = DataCollatorWithPadding(trainer.processing_class)
    was_training = student.training
    student.eval()
    total, batches = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(dataset), 64):
            batch = collate([dataset[i] for i in range(start, min(start + 64, len(dataset)))])
            batch = {k: v.to(args.device) for k, v in batch.items()}
            total += trainer.compute_loss(trainer.model, batch).item()
            batches += 1
    student.train(was_training)
    return total / max(batches, 1)


def general_distill(
    texts: str | Path | datasets.Dataset | Sequence[str],
    teacher: str | PreTrainedModel | None = None,
    *,
    num_layers: int | None = None,
    layers: Sequence[int] | None = None,
    output_dir: str | Path | None = None,
    max_length: int = 128,
    held_out_fraction: float = 0.05,
    tokenizer: Any = None,
    args: DistillationConfig | None = None,
    **config_kwargs: Any,
) -> GeneralResult:
    """Distil a base encoder into a smaller one on plain text, without any task, and save it.

    Args:
        texts (path, `Dataset` or `list[str]`): the corpus: a `.txt` file (one text per line), a TSV/CSV/JSON
            Lines file or `Dataset` with a `text` column, or a list of texts; at least [`MIN_GENERAL_TEXTS`].
        teacher (`str` or model, *optional*): the base encoder (path, Hub id or model). Defaults to the packaged
            all-MiniLM-L6-v2.
        num_layers (`int`, *optional*): the student's depth (layers chosen by `create_student`'s strategy).
        layers (`Sequence[int]`, *optional*): the teacher layers to copy instead.
        output_dir (`str` or `Path`, *optional*): where the student is saved (a temporary folder by default).
        max_length (`int`, *optional*, defaults to `128`): tokens per text.
        held_out_fraction (`float`, *optional*, defaults to `0.05`): share of the texts kept out of training
            to measure the stage's loss before and after.
        tokenizer (*optional*): the teacher's tokenizer; loaded from its folder by default.
        args ([`DistillationConfig`], *optional*): all settings at once (then no keyword settings); the
            `nlpkd general-distill` command passes its parsed options here.
        **config_kwargs: [`DistillationConfig`] fields; they start from [`GENERAL_DEFAULTS`] (relations and
            hidden states, no logit or label terms).
    """
    if not isinstance(teacher, PreTrainedModel):
        source = str(teacher or packaged_minilm_path())
        check_checkpoint(source, "teacher")
        teacher = AutoModel.from_pretrained(source)
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(teacher.config.name_or_path)
    corpus = load_unlabeled(texts)
    if len(corpus) < MIN_GENERAL_TEXTS:
        raise ValueError(
            f"The general-distillation corpus has {len(corpus)} texts; it needs at least {MIN_GENERAL_TEXTS} "
            "(thousands help): give more plain text, e.g. the unlabeled text of your domain."
        )
    seed = args.seed if args is not None else config_kwargs.get("seed", 42)
    split = corpus.train_test_split(test_size=held_out_fraction, seed=seed)
    data = tokenize_dataset(
        datasets.DatasetDict(split), tokenizer, custom_task(("text",)), max_length=max_length
    )
    if args is None:
        output_dir = Path(output_dir or tempfile.mkdtemp(prefix="nlpkd-general-"))
        args = DistillationConfig(
            output_dir=str(output_dir), **{**GENERAL_DEFAULTS, **config_kwargs}
        )
    elif config_kwargs:
        raise ValueError(
            f"Got both args=DistillationConfig(...) and the settings {sorted(config_kwargs)}: put them "
            "into the DistillationConfig, or leave args out."
        )
    output_dir = Path(output_dir or args.output_dir)
    student = create_student(teacher, num_layers=num_layers, layers=layers)
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=data["train"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    before = _held_out_loss(trainer, data["test"])
    logger.info(
        "general distillation into %d layers on %d texts ...",
        len(student.config.nlpkd_teacher_layers),
        len(data["train"]),
    )
    trainer.train()
    after = _held_out_loss(trainer, data["test"])
    trainer.save_model(str(output_dir))
    return GeneralResult(trainer.student, trainer, output_dir, {"before": before, "after": after})
