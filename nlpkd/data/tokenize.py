"""Tokenization of a task's data, ready for the Trainer."""

from __future__ import annotations

from typing import Any

import datasets

from .files import text_value
from .tasks import TaskSpec, resolve_task

__all__ = ["tokenize_dataset"]


def tokenize_dataset(
    data: datasets.DatasetDict,
    tokenizer: Any,
    task: TaskSpec | str,
    max_length: int = 128,
) -> datasets.DatasetDict:
    """Tokenize every split of a task's data, ready for the Trainer.

    Sentence pairs are tokenized as pairs (so BERT-style tokenizers emit `token_type_ids` with
    both segments). Texts are truncated to `max_length` tokens and not padded: the Trainer's
    `DataCollatorWithPadding` pads each batch. Every column but `label` is removed, so that
    string columns cannot reach the collator even with `remove_unused_columns=False`. Empty texts
    are fine (they give only the special tokens).

    Args:
        data (`datasets.DatasetDict`):
            Data from [`load_task_data`].
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            The tokenizer of the models (teacher and student share it).
        task ([`TaskSpec`] or `str`):
            The task or its name; gives the text columns.
        max_length (`int`, *optional*, defaults to `128`):
            Maximum number of tokens per example, special tokens included.

    Returns:
        `datasets.DatasetDict`: the tokenizer's outputs (`input_ids`, `attention_mask`, and
        `token_type_ids` when the tokenizer makes them) plus `label`.

    Raises:
        `ValueError`: if `max_length` is not positive or a split lacks a text column.
    """
    spec = resolve_task(task)
    if max_length < 1:
        raise ValueError(f"max_length must be a positive number of tokens, got {max_length}.")
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < max_length:
        # Positions past the model's maximum do not exist: longer inputs would crash its forward pass.
        max_length = model_max
    vocab_size = len(tokenizer.get_vocab())
    if vocab_size <= len(set(tokenizer.all_special_tokens)):
        raise ValueError(
            f"The tokenizer knows only its {vocab_size} special tokens, so every word would become "
            f"{tokenizer.unk_token}: it was loaded from a folder without tokenizer files. Save the "
            "model's tokenizer there with tokenizer.save_pretrained(folder)."
        )
    for split, dataset in data.items():
        missing = [c for c in spec.text_columns if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"Split {split!r} lacks the text column(s) {missing} of task {spec.name!r}; "
                f"its columns are {dataset.column_names}. Load it with load_task_data."
            )

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        texts = [[text_value(value) for value in batch[column]] for column in spec.text_columns]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    tokenized = {}
    for split, dataset in data.items():
        remove = [c for c in dataset.column_names if c != "label"]
        tokenized[split] = dataset.map(
            encode, batched=True, remove_columns=remove, desc=f"Tokenizing {spec.name} {split}"
        )
    return datasets.DatasetDict(tokenized)
