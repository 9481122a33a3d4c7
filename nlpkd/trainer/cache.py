"""Teacher-output cache: the teacher's logits computed once over the training set, reused on every epoch.

The logits become a `teacher_logits` column of the training dataset, so each example carries its own targets:
shuffling, any sampler and any number of processes see the right ones. The column is written by `datasets`
as an Arrow file named after a fingerprint of the data (which covers its tokenization) and of the teacher's
weights, so a later run with the same teacher and data reuses it, and any change recomputes it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from typing import Any

import datasets
import torch
from torch import nn

from ..data.fingerprint import dataset_fingerprint, teacher_fingerprint
from ..data.teacher_inputs import own_columns
from ..models.inputs import CACHE_COLUMN

__all__ = ["add_teacher_logits", "cached_training_set", "default_cache_dir"]


def default_cache_dir() -> str:
    """Where teacher logits of a training set held in memory are cached unless `teacher_cache_dir` says
    otherwise: a folder of the Hugging Face datasets cache (`HF_DATASETS_CACHE`), shared by every run, so a second
    run with the same teacher and data reuses them whatever its output directory. The files are named after
    the fingerprint of the teacher's weights and of the tokenized data, so nothing else ever reads them."""
    return os.path.join(datasets.config.HF_DATASETS_CACHE, "nlpkd_teacher_logits")


def add_teacher_logits(
    dataset: datasets.Dataset,
    teacher: nn.Module,
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    input_names: Iterable[str],
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    cache_dir: str | None = None,
    prefix: str | None = None,
) -> datasets.Dataset:
    """Return `dataset` with a `teacher_logits` column computed by `teacher`, from or into the disk cache.

    Args:
        dataset (`datasets.Dataset`):
            The tokenized training set.
        teacher (`torch.nn.Module`):
            The teacher, in eval mode on `device`.
        collate (`Callable`):
            Pads a list of examples into a batch (the Trainer's data collator).
        input_names (`Iterable[str]`):
            The columns the teacher's `forward` takes (others, such as labels, are not given to it).
        batch_size (`int`, *optional*, defaults to `64`):
            Examples per teacher forward.
        device (`torch.device` or `str`, *optional*, defaults to `"cpu"`):
            Where the batches go.
        cache_dir (`str`, *optional*):
            Folder of the Arrow cache for a dataset that lives in memory. A dataset read from files keeps its
            cache beside its own cache files, as `datasets` does for every `map`. Without either, the logits
            are computed in memory for this run only.
        prefix (`str`, *optional*):
            The prefix of the teacher's own columns (`teacher_`) when its tokenizer differs from the student's:
            only they are read, and given to it without the prefix.

    Returns:
        `datasets.Dataset`: the same rows with `teacher_logits` (one list of floats per example).
    """
    if CACHE_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(CACHE_COLUMN)
    names = [f"{prefix or ''}{name}" for name in input_names]
    columns = [name for name in names if name in dataset.column_names]
    if not any(name.endswith("input_ids") for name in columns):
        raise ValueError(
            f"The training set has no {prefix or ''}input_ids column (columns: {dataset.column_names}): tokenize "
            "it before caching the teacher's outputs."
        )
    fingerprint = hashlib.sha256(
        f"{dataset_fingerprint(dataset)}-{teacher_fingerprint(teacher)}-{sorted(columns)}".encode()
    ).hexdigest()[:32]

    def compute(batch: dict[str, list]) -> dict[str, list]:
        rows = [{name: batch[name][i] for name in columns} for i in range(len(batch[columns[0]]))]
        inputs = {k: v.to(device) for k, v in collate(rows).items() if k in columns}
        # A teacher with its own tokenizer reads its own columns, renamed back to `input_ids`, ...
        inputs = own_columns(inputs, prefix) if prefix else inputs
        with torch.no_grad():
            logits = teacher(**inputs).logits
        return {CACHE_COLUMN: logits.float().cpu().tolist()}

    kwargs: dict[str, Any] = {}
    if not dataset.cache_files and cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
        kwargs["cache_file_name"] = os.path.join(cache_dir, f"teacher-logits-{fingerprint}.arrow")
    was_training = teacher.training
    teacher.eval()
    try:
        return dataset.map(
            compute,
            batched=True,
            batch_size=batch_size,
            new_fingerprint=fingerprint,
            load_from_cache_file=True,
            desc="Caching teacher logits",
            **kwargs,
        )
    finally:
        teacher.train(was_training)


def cached_training_set(dataset: Any, trainer: Any, input_names: Iterable[str]) -> datasets.Dataset:
    """The trainer's training set with its teacher's logits as a column, from or into the disk cache.

    Args:
        dataset (`datasets.Dataset`): the tokenized training set.
        trainer ([`~nlpkd.DistillationTrainer`]): gives the teacher, the collator, the device and the
            cache folder (`teacher_cache_dir`, else [`default_cache_dir`]).
        input_names (`Iterable[str]`): the batch keys the teacher takes.
    """
    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(
            f"teacher_cache needs the training set as a datasets.Dataset (got {type(dataset).__name__}), "
            "so the logits can be stored as a column; convert it with datasets.Dataset.from_dict/from_pandas."
        )
    args = trainer.args
    cache_dir = args.teacher_cache_dir or default_cache_dir()
    # The main process writes the Arrow file; the others then read it instead of recomputing.
    with args.main_process_first(desc="teacher logits cache"):
        return add_teacher_logits(
            dataset,
            trainer.teacher,
            trainer.data_collator,
            input_names,
            batch_size=args.per_device_eval_batch_size,
            device=args.device,
            cache_dir=cache_dir,
            prefix=getattr(trainer, "teacher_prefix", None),
        )
