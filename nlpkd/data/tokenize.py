"""Tokenization of a task's data, ready for the Trainer: one tokenization per tokenizer when the teacher's
differs from the student's (see `nlpkd.data.teacher_inputs`)."""

from __future__ import annotations

from typing import Any

import datasets

from .files import text_value
from .tasks import TaskSpec, resolve_task
from .teacher_inputs import check_tokenizer_reads, teacher_tokenizer_groups

__all__ = ["tokenize_dataset"]

# Texts per split that the tokenizers are checked on before the whole data is tokenized.
_CHECKED_TEXTS = 64


def tokenize_dataset(
    data: datasets.DatasetDict,
    tokenizer: Any,
    task: TaskSpec | str,
    max_length: int = 128,
    teacher_tokenizer: Any = None,
    mask_token: str | None = None,
) -> datasets.DatasetDict:
    """Tokenize every split of a task's data, ready for the Trainer.

    Sentence pairs are tokenized as pairs (so BERT-style tokenizers emit `token_type_ids` with
    both segments). Texts are truncated to `max_length` tokens and not padded: the Trainer's
    `DataCollatorWithPadding` pads each batch. Every column but `label` is removed, so that
    string columns cannot reach the collator even with `remove_unused_columns=False`. Empty texts
    are fine (they give only the special tokens).

    With a `teacher_tokenizer` that differs from `tokenizer`, every example is tokenized twice from the same
    text: the student's tokenization in the usual columns, the teacher's in columns of its own
    (`teacher_input_ids`, `teacher_attention_mask`, and `teacher_token_type_ids` when its tokenizer makes them;
    `teacher2_...` for a second teacher with yet another tokenizer). Truncation is per tokenizer: each model
    reads the first `max_length` of its own tokens, so on texts longer than that the two models may see a few
    words more or less of the same text. Pad such data with
    [`~nlpkd.data.DataCollatorWithTeacherPadding`].

    Args:
        data (`datasets.DatasetDict`):
            Data from [`load_task_data`].
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            The student's tokenizer (the teacher's too, unless `teacher_tokenizer` says otherwise).
        task ([`TaskSpec`] or `str`):
            The task or its name; gives the text columns.
        max_length (`int`, *optional*, defaults to `128`):
            Maximum number of tokens per example, special tokens included, for every tokenizer (clamped to each
            tokenizer's own maximum).
        teacher_tokenizer (tokenizer or `list`, *optional*):
            The teacher's tokenizer, or one per teacher (`None` entries: the student's). Columns of its own are
            written only for a tokenizer that gives other ids than `tokenizer`.
        mask_token (`str`, *optional*):
            A mask token written into the texts (augmentation's `mask` method writes the teacher's): each
            tokenizer reads its own mask token in its place.

    Returns:
        `datasets.DatasetDict`: the tokenizer's outputs (`input_ids`, `attention_mask`, and
        `token_type_ids` when the tokenizer makes them), the teachers' own columns, plus `label`.

    Raises:
        `ValueError`: if `max_length` is not positive, a split lacks a text column, or a tokenizer cannot
            encode the texts.
    """
    spec = resolve_task(task)
    if max_length < 1:
        raise ValueError(f"max_length must be a positive number of tokens, got {max_length}.")
    groups = teacher_tokenizer_groups(tokenizer, teacher_tokenizer) if teacher_tokenizer else {}
    for own in (tokenizer, *groups.values()):
        _check_vocabulary(own)
    for split, dataset in data.items():
        missing = [c for c in spec.text_columns if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"Split {split!r} lacks the text column(s) {missing} of task {spec.name!r}; "
                f"its columns are {dataset.column_names}. Load it with load_task_data."
            )
    if groups:
        sample = _texts(spec, next(iter(data.values()))[:_CHECKED_TEXTS])
        check_tokenizer_reads(tokenizer, sample, "The student's tokenizer")
        for prefix, own in groups.items():
            check_tokenizer_reads(own, sample, f"The teacher's tokenizer of the {prefix}* columns")

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        texts = _texts(spec, batch)
        encoded = dict(_encode(tokenizer, texts, max_length, mask_token))
        for prefix, own in groups.items():
            columns = _encode(own, texts, max_length, mask_token)
            encoded.update({prefix + name: value for name, value in columns.items()})
        return encoded

    tokenized = {}
    for split, dataset in data.items():
        remove = [c for c in dataset.column_names if c != "label"]
        tokenized[split] = dataset.map(
            encode, batched=True, remove_columns=remove, desc=f"Tokenizing {spec.name} {split}"
        )
    return datasets.DatasetDict(tokenized)


def _texts(spec: TaskSpec, batch: dict[str, list[Any]]) -> list[Any]:
    """The text column(s) of a batch of rows, as one list of texts or of `(text, text)` pairs."""
    columns = [[text_value(value) for value in batch[column]] for column in spec.text_columns]
    return columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))


def _encode(tokenizer: Any, texts: list[Any], max_length: int, mask_token: str | None) -> Any:
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < max_length:
        # Positions past the model's maximum do not exist: longer inputs would crash its forward pass.
        max_length = model_max
    own_mask = getattr(tokenizer, "mask_token", None)
    if mask_token and own_mask and own_mask != mask_token:
        texts = [_replace(text, mask_token, own_mask) for text in texts]
    columns = list(zip(*texts, strict=True)) if texts and isinstance(texts[0], tuple) else [texts]
    return tokenizer(*[list(c) for c in columns], truncation=True, max_length=max_length)


def _replace(text: Any, old: str, new: str) -> Any:
    if isinstance(text, tuple):
        return tuple(part.replace(old, new) for part in text)
    return text.replace(old, new)


def _check_vocabulary(tokenizer: Any) -> None:
    vocab_size = len(tokenizer.get_vocab())
    if vocab_size <= len(set(tokenizer.all_special_tokens)):
        raise ValueError(
            f"The tokenizer knows only its {vocab_size} special tokens, so every word would become "
            f"{tokenizer.unk_token}: it was loaded from a folder without tokenizer files. Save the "
            "model's tokenizer there with tokenizer.save_pretrained(folder)."
        )
