"""Vocabulary pruning: keep only the tokens a domain's texts use, cutting the embedding matrix and the
tokenizer together.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

__all__ = ["PRUNABLE_FAMILIES", "prune_vocabulary"]

logger = logging.getLogger(__name__)


# Tokenizer families whose fast tokenizer is a WordPiece model, the only kind pruned here: its
# vocabulary is a plain token -> id table, so dropping entries cannot change how kept words split.
PRUNABLE_FAMILIES: tuple[str, ...] = ("bert", "distilbert", "electra", "mpnet")


TextItem = str | tuple[str, str] | list[str]


def wordpiece_state(tokenizer: Any) -> dict[str, Any]:
    """The fast tokenizer's serialised state, after checking that its model is WordPiece."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not getattr(tokenizer, "is_fast", False) or backend is None:
        raise ValueError(
            f"prune_vocabulary needs a fast WordPiece tokenizer (families "
            f"{', '.join(PRUNABLE_FAMILIES)}); {type(tokenizer).__name__} is not a fast tokenizer. "
            "Load it with AutoTokenizer.from_pretrained(path) (fast is the default)."
        )
    state = json.loads(backend.to_str())
    kind = state.get("model", {}).get("type")
    if kind != "WordPiece":
        raise ValueError(
            f"prune_vocabulary supports WordPiece tokenizers only (families "
            f"{', '.join(PRUNABLE_FAMILIES)}); {type(tokenizer).__name__} is a {kind} tokenizer. "
            "Deploy this model without vocabulary pruning."
        )
    return state


def _check_texts(texts: Any, name: str) -> list[TextItem]:
    if isinstance(texts, str | bytes):
        raise ValueError(
            f"{name} must be a sequence of texts (or of (text, text) pairs), got a single string; "
            "wrap it in a list."
        )
    items = list(texts)
    for item in items:
        is_pair = isinstance(item, tuple | list) and len(item) == 2
        if not (isinstance(item, str) or (is_pair and all(isinstance(t, str) for t in item))):
            raise ValueError(
                f"{name} must hold strings or (text, text) pairs; found {type(item).__name__} "
                f"{item!r:.60}."
            )
    return items


def _token_ids_in(
    tokenizer: Any, texts: Sequence[TextItem], max_length: int | None, chunk: int = 512
) -> set[int]:
    """The ids of every token the tokenizer makes from the texts, special tokens included.

    With `max_length`, a single text contributes the tokens of the words that its first
    `max_length` tokens reach, all of each such word's pieces: a word cut by truncation must keep
    its tail pieces, or it would no longer split the same way and turn into `[UNK]`. Pairs always
    contribute every token, since `longest_first` truncation depends on both texts' full lengths.
    """
    found: set[int] = set()
    for start in range(0, len(texts), chunk):
        block = texts[start : start + chunk]
        singles = [t for t in block if isinstance(t, str)]
        pairs = [t for t in block if not isinstance(t, str)]
        if pairs:
            encoded = tokenizer([p[0] for p in pairs], [p[1] for p in pairs], verbose=False)
            for ids in encoded["input_ids"]:
                found.update(ids)
        if not singles:
            continue
        full = tokenizer(singles, verbose=False)
        if max_length is None:
            for ids in full["input_ids"]:
                found.update(ids)
            continue
        cut = tokenizer(singles, truncation=True, max_length=max_length, verbose=False)
        for row, ids in enumerate(full["input_ids"]):
            seen = {word for word in cut.word_ids(row) if word is not None}
            words = full.word_ids(row)
            found.update(
                i for i, word in zip(ids, words, strict=True) if word is None or word in seen
            )
    return found


def _character_ids(vocab: Mapping[str, int], prefix: str) -> set[int]:
    """Ids of single-character tokens and their word-continuation forms (`##a`)."""
    return {
        index
        for token, index in vocab.items()
        if len(token) == 1 or (token.startswith(prefix) and len(token) == len(prefix) + 1)
    }


def _remap_post_processor(processor: dict[str, Any] | None, mapping: Mapping[int, int]) -> None:
    """Rewrite, in place, the special-token ids that a tokenizers post-processor hard-codes."""
    if not processor:
        return
    kind = processor.get("type")
    if kind == "Sequence":
        for inner in processor.get("processors", []):
            _remap_post_processor(inner, mapping)
    elif kind == "TemplateProcessing":
        for special in processor.get("special_tokens", {}).values():
            special["ids"] = [mapping[i] for i in special["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            token, index = processor[key]
            processor[key] = [token, mapping[index]]


def _pruned_tokenizer(tokenizer: Any, state: dict[str, Any], mapping: Mapping[int, int]) -> Any:
    """A tokenizer of the same class whose vocabulary holds the kept tokens, renumbered."""
    state = copy.deepcopy(state)
    model = state["model"]
    model["vocab"] = {token: mapping[i] for token, i in model["vocab"].items() if i in mapping}
    for added in state.get("added_tokens") or []:
        added["id"] = mapping[added["id"]]
    _remap_post_processor(state.get("post_processor"), mapping)
    padding = state.get("padding")
    if isinstance(padding, dict) and padding.get("pad_id") in mapping:
        padding["pad_id"] = mapping[padding["pad_id"]]
    ordered = sorted(model["vocab"], key=model["vocab"].__getitem__)
    # Going through save_pretrained/from_pretrained keeps every setting of the tokenizer (lower
    # casing, maximum length, special tokens) exactly as a user reloading it would get them.
    with tempfile.TemporaryDirectory(prefix="nlpkd-prune-") as folder:
        tokenizer.save_pretrained(folder)
        (Path(folder) / "tokenizer.json").write_text(json.dumps(state, ensure_ascii=False))
        vocab_txt = Path(folder) / "vocab.txt"
        if vocab_txt.exists():
            vocab_txt.write_text("".join(f"{token}\n" for token in ordered), encoding="utf-8")
        return type(tokenizer).from_pretrained(folder)


def special_token_ids(tokenizer: Any) -> set[int]:
    """The ids of the tokenizer's special tokens, each of which must be in its vocabulary."""
    vocab = tokenizer.get_vocab()  # the WordPiece table and the added tokens
    kept: set[int] = set()
    for token in tokenizer.all_special_tokens:
        index = vocab.get(token)
        if index is None:
            raise ValueError(
                f"The special token {token!r} is not in the tokenizer's vocabulary, so a pruned "
                "vocabulary would lose it. Add it with tokenizer.add_special_tokens and "
                "model.resize_token_embeddings(len(tokenizer)) before pruning."
            )
        kept.add(index)
    return kept


def check_rows(tokenizer: Any, kept: set[int], rows: int) -> None:
    too_large = sorted(i for i in kept if i >= rows)
    if too_large:
        names = tokenizer.convert_ids_to_tokens(too_large)
        raise ValueError(
            f"The tokens {names} (ids {too_large}) have no row in the model's {rows}-row word "
            "embeddings, so a pruned vocabulary would lose them. Call "
            "model.resize_token_embeddings(len(tokenizer)) first."
        )


def _always_kept_ids(tokenizer: Any, model: PreTrainedModel) -> set[int]:
    """Special and added tokens, the config's token ids, and every id up to the padding id."""
    rows = model.get_input_embeddings().weight.shape[0]
    kept = special_token_ids(tokenizer)
    kept.update(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    config = model.config
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        value = getattr(config, name, None)
        if isinstance(value, int) and 0 <= value < rows:
            kept.add(value)
    # Some models hard-code the padding id (MPNet builds position ids from `input_ids != 1`):
    # keeping every id below it keeps its number unchanged.
    pad = tokenizer.pad_token_id
    if pad is not None:
        kept.update(range(pad + 1))
    check_rows(tokenizer, kept, rows)
    return kept


def _prune_embeddings(model: PreTrainedModel, index: Tensor) -> PreTrainedModel:
    """A copy of `model` whose word embeddings (and tied or vocabulary-sized output) keep rows."""
    pruned = copy.deepcopy(model)
    old = pruned.get_input_embeddings()
    rows = old.weight.shape[0]
    index = index.to(old.weight.device)
    replacements: dict[int, nn.Parameter] = {}

    def shrink(parameter: nn.Parameter | None) -> None:
        if parameter is None or id(parameter) in replacements:
            return
        if parameter.shape[0] != rows:
            raise ValueError(
                f"{type(model).__name__}'s output layer has {parameter.shape[0]} rows but the word "
                f"embeddings have {rows}; prune_vocabulary cannot tell which rows are which tokens."
            )
        kept = parameter.detach().index_select(0, index).clone()
        replacements[id(parameter)] = nn.Parameter(kept, requires_grad=parameter.requires_grad)

    shrink(old.weight)
    output = pruned.get_output_embeddings()
    if output is not None:
        shrink(output.weight)
        shrink(getattr(output, "bias", None))
        # Masked-LM heads also hold the output bias as a parameter of their own (tied to it).
        for module in pruned.modules():
            if output in module.children():
                bias = dict(module.named_parameters(recurse=False)).get("bias")
                if bias is not None and bias.dim() == 1 and bias.shape[0] == rows:
                    shrink(bias)
    # Replacing by identity keeps every tie (input/output weights, head bias/decoder bias).
    for module in pruned.modules():
        own = module.named_parameters(recurse=False, remove_duplicate=False)
        for name, parameter in list(own):
            if id(parameter) in replacements:
                setattr(module, name, replacements[id(parameter)])
    count = int(index.numel())
    old.num_embeddings = count
    if old.padding_idx is not None:
        old.padding_idx = int((index == old.padding_idx).nonzero()[0, 0])
    if output is not None and hasattr(output, "out_features"):
        output.out_features = count
    pruned.config.vocab_size = count
    return pruned


def prune_vocabulary(
    model: PreTrainedModel,
    tokenizer: Any,
    texts: Iterable[TextItem],
    *,
    extra_texts: Iterable[TextItem] | None = None,
    max_length: int | None = None,
    keep_characters: bool = False,
) -> tuple[PreTrainedModel, Any]:
    """
    Shrink a model's vocabulary to the tokens its texts use (TextPruner-style vocabulary pruning).

    The texts are tokenized; their tokens, every special and added token, and every id up to the
    padding id are kept, in their original order and renumbered from 0. The word embeddings keep
    those rows, as do an output layer tied to them and its bias (masked-LM heads), and
    `config.vocab_size` and the padding index follow. The tokenizer is rebuilt with the same class
    and settings and the kept tokens only. Both are copies; the arguments are not changed.

    A text whose tokens were all kept is tokenized to the same tokens and gets the same logits as
    before. A word that never occurred in the texts may split differently: into kept sub-words, or
    into `[UNK]` when no split exists (`keep_characters=True` keeps every single character, so any
    word made of known characters still splits into something other than `[UNK]`). Take the
    vocabulary from every text the model will see, e.g. the training split plus an unlabeled
    corpus of the deployment domain through `extra_texts`.

    Args:
        model (`PreTrainedModel`):
            The model, whose word embeddings are `model.get_input_embeddings()` (an `nn.Embedding`).
        tokenizer (`PreTrainedTokenizerBase`):
            Its fast WordPiece tokenizer (families in [`PRUNABLE_FAMILIES`]).
        texts (`Iterable[str | tuple[str, str]]`):
            Texts, or (text, text) pairs for sentence-pair tasks, whose tokens are kept.
        extra_texts (`Iterable[str | tuple[str, str]]`, *optional*):
            More texts, e.g. an unlabeled corpus of the deployment domain.
        max_length (`int`, *optional*):
            Take from each single text only the words that its first `max_length` tokens reach
            (the model's view after truncation at that length), with all their pieces; pairs
            always give all their tokens. Defaults to the whole texts.
        keep_characters (`bool`, *optional*, defaults to `False`):
            Also keep every single-character token and its word-continuation form (`##a`).

    Returns:
        `tuple[PreTrainedModel, PreTrainedTokenizerBase]`: the pruned model and tokenizer; save
        both with `save_pretrained` into one folder and load them with the `Auto` classes.

    Raises:
        `ValueError`: if the tokenizer is not a fast WordPiece tokenizer, the texts are not a
            sequence of strings or pairs (or are empty), a special token has no embedding row,
            or the model's word embeddings are not an `nn.Embedding`.
    """
    state = wordpiece_state(tokenizer)
    items = _check_texts(texts, "texts")
    if extra_texts is not None:
        items += _check_texts(extra_texts, "extra_texts")
    if not items:
        raise ValueError("prune_vocabulary needs at least one text to take the vocabulary from.")
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be a positive number of tokens, got {max_length}.")
    embeddings = model.get_input_embeddings()
    if not isinstance(embeddings, nn.Embedding):
        raise ValueError(
            f"prune_vocabulary needs word embeddings of type nn.Embedding; "
            f"{type(model).__name__} has {type(embeddings).__name__}. Prune before quantizing."
        )
    vocab: dict[str, int] = state["model"]["vocab"]
    kept = _always_kept_ids(tokenizer, model)
    kept |= _token_ids_in(tokenizer, items, max_length)
    if keep_characters:
        kept |= _character_ids(vocab, state["model"].get("continuing_subword_prefix", "##"))
    kept = {i for i in kept if i < embeddings.weight.shape[0]}
    order = sorted(kept)
    mapping = {old: new for new, old in enumerate(order)}
    pruned_tokenizer = _pruned_tokenizer(tokenizer, state, mapping)
    pruned_model = _prune_embeddings(model, torch.tensor(order, dtype=torch.long))
    logger.info(
        "Vocabulary pruned from %d to %d tokens (%d texts).",
        embeddings.weight.shape[0],
        len(order),
        len(items),
    )
    return pruned_model, pruned_tokenizer
