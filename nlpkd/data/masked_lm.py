"""The masked language model of TinyBERT's word replacement (the `mlm` augmentation method): checked once, then
asked for the top predictions of each masked word, in batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from .augment import _Settings


def check_mlm(
    mlm_model: Any, mlm_tokenizer: Any, methods: frozenset[str], num_proc: int | None
) -> None:
    if "mlm" not in methods:
        if mlm_model is not None or mlm_tokenizer is not None:
            raise ValueError(
                f"mlm_model/mlm_tokenizer are given but methods {sorted(methods)} lacks 'mlm'; add 'mlm' to "
                "methods or drop the masked-LM arguments."
            )
        return
    if mlm_model is None or mlm_tokenizer is None:
        raise ValueError(
            "The 'mlm' method needs both mlm_model (an AutoModelForMaskedLM) and mlm_tokenizer (its "
            "tokenizer); pass both, or leave 'mlm' out of methods."
        )
    head = (
        mlm_model.get_output_embeddings() if hasattr(mlm_model, "get_output_embeddings") else None
    )
    if head is None or not hasattr(head, "out_features"):
        raise ValueError(
            f"mlm_model ({type(mlm_model).__name__}) has no masked-LM head, so it cannot predict words. Load "
            "it with transformers.AutoModelForMaskedLM.from_pretrained(...); an encoder without its "
            "pretraining head (AutoModel, a sentence-transformers checkpoint) cannot be used."
        )
    if getattr(mlm_tokenizer, "mask_token", None) is None or mlm_tokenizer.mask_token_id is None:
        raise ValueError(
            f"mlm_tokenizer ({type(mlm_tokenizer).__name__}) has no mask token, so no word can be masked "
            "for the MLM to predict. Pass the tokenizer the masked-LM was pretrained with."
        )
    if not getattr(mlm_tokenizer, "is_fast", False):
        raise ValueError(
            "mlm_tokenizer must be a fast tokenizer (is_fast=True): its character offsets map words to "
            "word pieces. Load it with AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    if mlm_tokenizer.mask_token_id >= head.out_features:
        raise ValueError(
            f"mlm_tokenizer's mask token id {mlm_tokenizer.mask_token_id} is outside mlm_model's vocabulary "
            f"of {head.out_features} tokens: the tokenizer does not belong to the model."
        )
    device = next(mlm_model.parameters()).device
    if num_proc is not None and num_proc > 1 and device.type != "cpu":
        raise ValueError(
            f"num_proc={num_proc} would copy mlm_model, which is on {device}, into several processes; "
            "use num_proc=None with a model on an accelerator (its forward passes are batched already)."
        )


class MaskedLM:
    """Top-k replacement words from a masked LM, one batched forward pass per `batch_size` masked copies."""

    def __init__(self, model: Any, tokenizer: Any, settings: _Settings):
        self.model = model
        self.tokenizer = tokenizer
        self.top_k = settings.mlm_top_k
        self.batch_size = settings.mlm_batch_size
        limits = [settings.mlm_max_length]
        model_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max < 1_000_000:
            limits.append(model_max)
        positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            limits.append(positions)
        self.max_length = min(limits)
        self.special_ids = set(tokenizer.all_special_ids)
        self._words: dict[int, str | None] = {}

    def single_piece_words(
        self, text: str, spans: list[tuple[int, int]]
    ) -> tuple[list[int], dict[int, int]]:
        """Token ids of `text` (with special tokens) and, for each word that is one whole alphabetic piece
        of the vocabulary, the position of that piece."""
        encoding = self.tokenizer(
            text,
            add_special_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            truncation=False,
            verbose=False,
        )
        ids = list(encoding["input_ids"])
        special = encoding["special_tokens_mask"]
        pieces: dict[int, list[int]] = {}
        bounds = [start for start, _ in spans]
        for position, (start, end) in enumerate(encoding["offset_mapping"]):
            if special[position] or end <= start:
                continue
            word = int(np.searchsorted(bounds, start, side="right")) - 1
            if word >= 0 and start < spans[word][1]:
                pieces.setdefault(word, []).append(position)
        unk = self.tokenizer.unk_token_id
        eligible = {}
        for word, positions in pieces.items():
            start, end = spans[word]
            if len(positions) != 1:
                continue
            position = positions[0]
            whole = tuple(encoding["offset_mapping"][position]) == (start, end)
            if whole and text[start:end].isalpha() and ids[position] != unk:
                eligible[word] = position
        return ids, eligible

    def _window(self, ids: list[int], position: int) -> tuple[list[int], int]:
        """A copy of `ids` with `position` masked, cut to a window around it that fits the model."""
        ids = list(ids)
        ids[position] = self.tokenizer.mask_token_id
        if len(ids) <= self.max_length:
            return ids, position
        # Keep the special tokens at both ends; centre the window of content tokens on the masked one.
        head = 0
        while head < len(ids) and ids[head] in self.special_ids and head != position:
            head += 1
        tail = len(ids)
        while tail > head and ids[tail - 1] in self.special_ids and tail - 1 != position:
            tail -= 1
        room = max(1, self.max_length - head - (len(ids) - tail))
        start = min(max(head, position - room // 2), max(head, tail - room))
        window = ids[:head] + ids[start : start + room] + ids[tail:]
        return window, head + position - start

    def _word(self, token_id: int) -> str | None:
        if token_id not in self._words:
            word = None
            if token_id not in self.special_ids:
                token = self.tokenizer.convert_ids_to_tokens(token_id)
                text = self.tokenizer.convert_tokens_to_string([token]).strip()
                # `##` marks a WordPiece continuation: it would glue onto the previous word.
                if not token.startswith("##") and text.isalpha():
                    word = text
            self._words[token_id] = word
        return self._words[token_id]

    @torch.no_grad()
    def candidates(self, rows: list[tuple[list[int], int]]) -> list[tuple[str, ...]]:
        """For each (ids, position) the replacement words, ordered by token id so that the choice depends on
        the set of the top k only, not on the order of near-equal scores."""
        model = self.model
        device = next(model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        head = model.get_output_embeddings()
        was_training = model.training
        model.eval()
        results: list[tuple[str, ...]] = []
        try:
            for begin in range(0, len(rows), self.batch_size):
                chunk = [
                    self._window(ids, position)
                    for ids, position in rows[begin : begin + self.batch_size]
                ]
                width = max(len(ids) for ids, _ in chunk)
                input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                attention = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, (ids, _) in enumerate(chunk):
                    input_ids[row, : len(ids)] = torch.tensor(ids)
                    attention[row, : len(ids)] = 1
                masked = torch.tensor([position for _, position in chunk], device=device)
                rows_index = torch.arange(len(chunk), device=device)

                # Only the masked positions go through the output layer: the full (rows, length, vocab)
                # logits of a BERT-base batch would take a gigabyte for nothing.
                def keep_masked(_module, args, rows_index=rows_index, masked=masked):
                    return (args[0][rows_index, masked], *args[1:])

                handle = head.register_forward_pre_hook(keep_masked)
                try:
                    logits = model(
                        input_ids=input_ids.to(device), attention_mask=attention.to(device)
                    ).logits
                finally:
                    handle.remove()
                if logits.shape != (len(chunk), head.out_features):
                    raise RuntimeError(
                        f"{type(model).__name__} returned logits of shape {tuple(logits.shape)} where "
                        f"{(len(chunk), head.out_features)} was expected; its masked-LM head is not supported."
                    )
                top = torch.topk(
                    logits.float(), k=min(self.top_k, logits.shape[-1]), dim=-1
                ).indices
                for ids in top.cpu().tolist():
                    words = [self._word(token_id) for token_id in sorted(ids)]
                    results.append(tuple(word for word in words if word is not None))
        finally:
            model.train(was_training)
        return results
