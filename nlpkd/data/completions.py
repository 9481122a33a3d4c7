"""Data for causal language models: prompt and completion rows, and the collators that pad them and shift the
labels onto the logits.

The rows hold `input_ids` with `labels` that copy them and hold `-100` on the prompt ([`tokenize_completions`]);
[`CompletionCollator`] pads them. The teacher's own completions for sequence-level distillation come from
[`nlpkd.models.generation.generate_completions`].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CompletionCollator", "ShiftLabelsCollator", "shift_labels", "tokenize_completions"]


def shift_labels(labels: Tensor) -> Tensor:
    """Next-token targets aligned with the logits: position `i` holds `labels[i + 1]`, the last position `-100`.

    Args:
        labels (`torch.Tensor`): `(batch, seq)` token ids, `-100` where a token is not a target.

    Returns:
        `torch.Tensor`: the shifted targets, same shape.
    """
    return F.pad(labels[..., 1:], (0, 1), value=-100)


class CompletionCollator:
    """Pads rows of `input_ids` (and `labels`, `-100` on the prompt) on the right into a batch for a causal LM.

    Rows without `labels` learn from every token. Padding gets attention mask 0 and label `-100`.

    Args:
        tokenizer: gives `pad_token_id` (its `eos_token_id` when it has no padding token).
        max_length (`int`, *optional*): keep at most this many tokens per row (the first ones).
        pad_to_multiple_of (`int`, *optional*): round the padded length up to a multiple of this.
    """

    def __init__(
        self, tokenizer: Any, max_length: int | None = None, pad_to_multiple_of: int | None = None
    ) -> None:
        if tokenizer is None:
            raise ValueError(
                "Causal language-model batches are padded with the tokenizer's padding token: pass "
                "processing_class=tokenizer, or data_collator=CompletionCollator(tokenizer)."
            )
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(tokenizer, "eos_token_id", None)
        if pad is None:
            raise ValueError(
                "The tokenizer has neither a padding nor an end-of-sequence token: set "
                "tokenizer.pad_token before collating language-model batches."
            )
        self.pad_token_id = int(pad)
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
        rows = [list(f["input_ids"])[: self.max_length] for f in features]
        targets = [
            list(f["labels"])[: self.max_length] if f.get("labels") is not None else list(row)
            for f, row in zip(features, rows, strict=True)
        ]
        length = max(len(row) for row in rows)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {"input_ids": [], "attention_mask": [], "labels": []}
        for row, target in zip(rows, targets, strict=True):
            pad = length - len(row)
            batch["input_ids"].append(row + [self.pad_token_id] * pad)
            batch["attention_mask"].append([1] * len(row) + [0] * pad)
            batch["labels"].append(target + [-100] * pad)
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}


class ShiftLabelsCollator:
    """Wraps a collator so that every batch also carries `shift_labels` ([`shift_labels`]).

    The Trainer counts `num_items_in_batch` from `shift_labels` when a batch has them, whatever the model class,
    so the count is exactly the number of next-token targets the token-level loss sums over.

    Args:
        collator (`Callable`): the data collator to wrap.
    """

    def __init__(self, collator: Callable[[list[Any]], Mapping[str, Any]]) -> None:
        self.collator = collator

    def __call__(self, features: list[Any]) -> dict[str, Any]:
        batch = dict(self.collator(features))
        if "shift_labels" not in batch and isinstance(batch.get("labels"), Tensor):
            batch["shift_labels"] = shift_labels(batch["labels"])
        return batch


def tokenize_completions(
    dataset: datasets.Dataset,
    tokenizer: Any,
    *,
    prompt_column: str = "prompt",
    completion_column: str = "completion",
    max_length: int | None = None,
    add_eos: bool = True,
) -> datasets.Dataset:
    """Tokenize (prompt, completion) pairs into `input_ids` and `labels` that hold `-100` on the prompt.

    The prompt and the completion are tokenized separately and joined, so the boundary is exact; the
    tokenizer's end-of-sequence token closes the completion when `add_eos`. Rows longer than `max_length` keep
    their first `max_length` tokens; a row whose prompt alone fills `max_length` has no completion token left
    and is an error. With `prompt_column=None` every token is a completion token (plain language modelling).

    Args:
        dataset (`datasets.Dataset`): the pairs.
        tokenizer: the teacher's (and student's) tokenizer.
        prompt_column (`str`, *optional*, defaults to `"prompt"`): the prompt texts, or `None`.
        completion_column (`str`, *optional*, defaults to `"completion"`): the completion texts.
        max_length (`int`, *optional*): at most this many tokens per row.
        add_eos (`bool`, *optional*, defaults to `True`): end each completion with the end-of-sequence token.

    Returns:
        `datasets.Dataset`: columns `input_ids`, `attention_mask` and `labels`.
    """
    eos = [tokenizer.eos_token_id] if add_eos and tokenizer.eos_token_id is not None else []

    def encode(row: Mapping[str, Any], index: int) -> dict[str, list[int]]:
        prompt = (
            tokenizer(row[prompt_column], add_special_tokens=False)["input_ids"]
            if prompt_column
            else []
        )
        completion = tokenizer(row[completion_column], add_special_tokens=False)["input_ids"] + eos
        ids = (prompt + completion)[:max_length]
        labels = ([-100] * len(prompt) + completion)[:max_length]
        if all(label == -100 for label in labels):
            raise ValueError(
                f"Row {index} has no completion token within max_length={max_length} (its prompt has "
                f"{len(prompt)} tokens): raise max_length or shorten the prompt."
            )
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}

    return dataset.map(encode, with_indices=True, remove_columns=dataset.column_names)
