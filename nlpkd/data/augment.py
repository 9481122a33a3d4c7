"""Data augmentation for distillation: new, unlabeled variants of the training texts for the teacher to label.

Small students learn more from a teacher when they see more text than the labeled set: Tang et al. (2019,
"Distilling Task-Specific Knowledge from BERT into Simple Neural Networks") distil BERT into a one-layer BiLSTM
only with an augmented transfer set, and TinyBERT (Jiao et al., 2020) loses the most in its ablations without
data augmentation. The teacher labels the augmented text: an augmented row carries no label of its own, only the
teacher's soft targets.

[`augment_dataset`] returns the new rows only; [`concatenate_augmented`] puts them after the originals. Every
random draw comes from a generator seeded with `(seed, row index)`, so the output depends on the seed and the
data alone, not on the number of processes or threads.

Methods (applied in this order to each side of a variant that is changed):

- `"mask"` (Tang et al.): each word becomes the mask token with probability `p_mask`.
- `"mlm"` (TinyBERT): each word is replaced with probability `p_mlm` by one of the top-`mlm_top_k` predictions of
  a masked language model with that word masked; only words that are a single piece of the MLM's vocabulary.
- `"shuffle"` (Lample et al., 2018, "Unsupervised Machine Translation Using Monolingual Corpora Only"): a local
  shuffle in which no word moves more than `shuffle_window` positions.
- `"ngram"` (Tang et al.): with probability `p_ngram` only a random n-gram of the words is kept, n uniform in
  `1..max_ngram`.

A word is a maximal run of letters, digits and underscores, or a single other non-space character (the units of
BERT's basic tokenizer); the text between words is kept, so untouched parts of a variant read as the original.

"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np

from .fingerprint import dataset_fingerprint, teacher_fingerprint
from .masked_lm import MaskedLM, check_mlm

__all__ = ["AUGMENTED_COLUMN", "METHODS", "PAIR_SIDES", "augment_dataset", "concatenate_augmented"]

logger = logging.getLogger(__name__)


AUGMENTED_COLUMN = "is_augmented"


METHODS = ("mask", "mlm", "shuffle", "ngram")


PAIR_SIDES = ("random", "first", "second", "both")


_WORD = re.compile(r"\w+|[^\w\s]")


_VERSION = "nlpkd-augment-v1"


@dataclass(frozen=True)
class _Settings:
    """Everything that decides the output, checked once; hashed into the map fingerprint."""

    num_variants: int
    text_columns: tuple[str, ...]
    label_column: str | None
    methods: frozenset[str]
    seed: int
    pair_side: str
    p_mask: float
    p_ngram: float
    max_ngram: int
    shuffle_window: int
    p_mlm: float
    mlm_top_k: int
    mask_token: str
    mlm_batch_size: int
    mlm_max_length: int


@dataclass
class _SidePlan:
    """One side of one variant: which words change and how, the word order, and the kept n-gram."""

    ops: np.ndarray  # 0 keep, 1 mask, 2 MLM replacement, per word
    choice: np.ndarray  # uniform draw in [0, 1) that picks the MLM candidate, per word
    order: np.ndarray  # output position -> original word index
    ngram: tuple[int, int] | None  # (first output position, length), or None for all words


def _check_probability(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} is a probability and must lie in [0, 1], got {value!r}.")


def _check_positive_int(name: str, value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer ({what}), got {value!r}.")


def _resolve_methods(methods: Sequence[str] | str | None, mlm_model: Any) -> frozenset[str]:
    if methods is None:
        # Each paper's own recipe: TinyBERT replaces words with an MLM; Tang et al. mask and sample
        # n-grams (their third operation, POS-guided replacement, needs a tagger and is left out).
        return frozenset(("mlm",) if mlm_model is not None else ("mask", "ngram"))
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(methods)
    if not methods:
        raise ValueError(
            f"methods is empty; choose at least one of {METHODS} (or None for defaults)."
        )
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown augmentation method(s) {unknown}; choose among {METHODS}.")
    return frozenset(methods)


def _resolve_mask_token(mask_token: str | None, tokenizer: Any) -> str:
    if tokenizer is None:
        if mask_token is not None and (not isinstance(mask_token, str) or not mask_token.strip()):
            raise ValueError(f"mask_token must be a non-empty string, got {mask_token!r}.")
        return mask_token if mask_token is not None else "[MASK]"
    if mask_token is None:
        mask_token = getattr(tokenizer, "mask_token", None)
        if mask_token is None:
            raise ValueError(
                f"The tokenizer ({type(tokenizer).__name__}) has no mask token, which the 'mask' method "
                "writes in place of words. Pass mask_token= with a token of its vocabulary (e.g. its "
                "unk_token), or leave 'mask' out of methods."
            )
    if not isinstance(mask_token, str) or mask_token not in tokenizer.get_vocab():
        raise ValueError(
            f"mask_token {mask_token!r} is not in the tokenizer's vocabulary, so the teacher would read it "
            f"as ordinary text. Use the tokenizer's mask token ({getattr(tokenizer, 'mask_token', None)!r}) "
            "or another token of its vocabulary."
        )
    return mask_token


def _check_dataset(
    dataset: Any, text_columns: tuple[str, ...], label_column: str | None, pair_side: str
) -> None:
    if not isinstance(dataset, datasets.Dataset):
        hint = (
            " Pass one split, e.g. data['train']."
            if isinstance(dataset, datasets.DatasetDict)
            else ""
        )
        raise ValueError(f"dataset must be a datasets.Dataset, got {type(dataset).__name__}.{hint}")
    if len(dataset) == 0:
        raise ValueError("dataset has no rows; there is nothing to augment.")
    if len(text_columns) not in (1, 2) or len(set(text_columns)) != len(text_columns):
        raise ValueError(
            f"text_columns must name one text column or two different ones (a sentence pair), got "
            f"{text_columns!r}."
        )
    missing = [c for c in text_columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The dataset lacks the text column(s) {missing}; its columns are {dataset.column_names}. Pass "
            "text_columns= with the task's text columns."
        )
    for column in text_columns:
        feature = dataset.features[column]
        if not (
            isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")
        ):
            raise ValueError(
                f"Text column {column!r} must hold strings, but its feature is {feature}."
            )
    if label_column is not None and label_column not in dataset.column_names:
        raise ValueError(
            f"The dataset has no label column {label_column!r} (columns: {dataset.column_names}). Pass "
            "label_column= with its name, or label_column=None for unlabeled text."
        )
    if label_column is not None and label_column in text_columns:
        raise ValueError(
            f"label_column {label_column!r} is also one of the text columns {text_columns}."
        )
    if pair_side not in PAIR_SIDES:
        raise ValueError(f"pair_side must be one of {PAIR_SIDES}, got {pair_side!r}.")
    if pair_side == "second" and len(text_columns) == 1:
        raise ValueError(
            "pair_side='second' changes the second text of a pair, but only one text column is given; "
            "use pair_side='first' (or the default) for single texts."
        )


def _word_spans(text: str) -> list[tuple[int, int]]:
    return [match.span() for match in _WORD.finditer(text)]


def _changed_sides(rng: np.random.Generator, num_sides: int, pair_side: str) -> tuple[int, ...]:
    if num_sides == 1:
        return (0,)
    if pair_side == "random":
        # Tang et al.'s released code changes one side (either, evenly) of a pair with probability 2/3 and both
        # with 1/3, which is one of the three choices uniformly.
        return ((0,), (1,), (0, 1))[int(rng.integers(3))]
    return {"first": (0,), "second": (1,), "both": (0, 1)}[pair_side]


def _plan(rng: np.random.Generator, num_words: int, settings: _Settings) -> _SidePlan:
    """Draws one side of one variant. The number of draws depends only on the settings and the word count,
    never on MLM outputs, so a change of MLM candidates cannot shift the random stream of other words."""
    methods = settings.methods
    ops = np.zeros(num_words, dtype=np.int8)
    choice = np.zeros(num_words)
    if "mask" in methods or "mlm" in methods:
        u = rng.random(num_words)
        p_mask = settings.p_mask if "mask" in methods else 0.0
        # Masking and replacement exclude each other per word, as masking and POS replacement do in Tang et al.
        ops[u < p_mask] = 1
        if "mlm" in methods:
            ops[(u >= p_mask) & (u < p_mask + settings.p_mlm)] = 2
            choice = rng.random(num_words)
    order = np.arange(num_words)
    if "shuffle" in methods:
        # Lample et al. (2018): sort by i + U(0, k + 1), so no word moves more than k positions.
        keys = order + rng.random(num_words) * (settings.shuffle_window + 1)
        order = np.argsort(keys, kind="stable")
    ngram = None
    if "ngram" in methods:
        keep, length_draw, start_draw = (
            rng.random(),
            rng.integers(1, settings.max_ngram + 1),
            rng.random(),
        )
        length = min(int(length_draw), num_words)
        if keep < settings.p_ngram and 0 < length < num_words:
            ngram = (int(start_draw * (num_words - length + 1)), length)
    return _SidePlan(ops=ops, choice=choice, order=order, ngram=ngram)


def _match_case(candidate: str, word: str) -> str:
    # Uncased MLMs predict lower case; the variant keeps the look of the word it replaces.
    if len(word) > 1 and word.isupper():
        return candidate.upper()
    if word[:1].isupper():
        return candidate[:1].upper() + candidate[1:]
    return candidate


def _render(
    text: str,
    spans: list[tuple[int, int]],
    plan: _SidePlan,
    mask_token: str,
    candidates: dict[int, tuple[str, ...]],
) -> str:
    if not spans:
        return text
    words = []
    for index, (start, end) in enumerate(spans):
        word = text[start:end]
        op = plan.ops[index]
        if op == 1:
            word = mask_token
        elif op == 2 and candidates.get(index):
            options = candidates[index]
            word = _match_case(options[int(plan.choice[index] * len(options))], word)
        words.append(word)
    first, count = plan.ngram if plan.ngram is not None else (0, len(spans))
    pieces = [text[: spans[0][0]]] if plan.ngram is None else []
    for position in range(first, first + count):
        pieces.append(words[plan.order[position]])
        if position + 1 < first + count:
            gap = text[spans[position][1] : spans[position + 1][0]]
            # Two words written without a space keep it only if they still follow each other, or
            # `good .` shuffled to `. good` could glue words into one.
            if not gap and plan.order[position + 1] != plan.order[position] + 1:
                gap = " "
            pieces.append(gap)
    if plan.ngram is None:
        pieces.append(text[spans[-1][1] :])
    return "".join(pieces)


def _augment_batch(
    batch: dict[str, list[Any]],
    indices: list[int],
    settings: _Settings,
    mlm: MaskedLM | None,
) -> dict[str, list[Any]]:
    texts = [
        [value if isinstance(value, str) else "" for value in batch[c]]
        for c in settings.text_columns
    ]
    spans = [[_word_spans(text) for text in column] for column in texts]
    plans: list[list[dict[int, _SidePlan]]] = []
    for example, index in enumerate(indices):
        rng = np.random.default_rng([settings.seed, index])
        variants = []
        for _ in range(settings.num_variants):
            sides = _changed_sides(rng, len(texts), settings.pair_side)
            variants.append(
                {side: _plan(rng, len(spans[side][example]), settings) for side in sides}
            )
        plans.append(variants)

    # The MLM is asked only about words that some variant replaces, each once, in batches.
    # (example, side) -> word index -> replacement words
    candidates: dict[tuple[int, int], dict[int, tuple[str, ...]]] = {}
    if mlm is not None:
        requests: dict[tuple[int, int, int], tuple[list[int], int]] = {}
        for example, variants in enumerate(plans):
            wanted: dict[int, set[int]] = {}
            for variant in variants:
                for side, plan in variant.items():
                    wanted.setdefault(side, set()).update(np.flatnonzero(plan.ops == 2).tolist())
            for side, words in sorted(wanted.items()):
                if not words:
                    continue
                ids, eligible = mlm.single_piece_words(texts[side][example], spans[side][example])
                for word in sorted(words & eligible.keys()):
                    requests[(example, side, word)] = (ids, eligible[word])
        found = mlm.candidates(list(requests.values())) if requests else []
        for (example, side, word), words in zip(requests, found, strict=True):
            candidates.setdefault((example, side), {})[word] = words

    out: dict[str, list[Any]] = {column: [] for column in settings.text_columns}
    for example, variants in enumerate(plans):
        for variant in variants:
            for side, column in enumerate(settings.text_columns):
                text = texts[side][example]
                plan = variant.get(side)
                if plan is None:
                    out[column].append(text)
                    continue
                found = candidates.get((example, side), {})
                out[column].append(
                    _render(text, spans[side][example], plan, settings.mask_token, found)
                )
    total = len(indices) * settings.num_variants
    if settings.label_column is not None:
        out[settings.label_column] = [None] * total
    out[AUGMENTED_COLUMN] = [True] * total
    return out


def _fingerprint(
    dataset: datasets.Dataset, settings: _Settings, mlm_model: Any, mlm_tokenizer: Any
) -> str:
    digest = hashlib.sha256(_VERSION.encode())
    digest.update(dataset_fingerprint(dataset).encode())
    fields = {k: sorted(v) if isinstance(v, frozenset) else v for k, v in vars(settings).items()}
    digest.update(json.dumps(fields, sort_keys=True, default=str).encode())
    if mlm_model is not None:
        digest.update(teacher_fingerprint(mlm_model).encode())
        backend = getattr(mlm_tokenizer, "backend_tokenizer", None)
        digest.update((backend.to_str() if backend is not None else repr(mlm_tokenizer)).encode())
    return digest.hexdigest()[:32]


def augment_dataset(
    dataset: datasets.Dataset,
    num_variants: int,
    *,
    text_columns: Sequence[str] = ("text",),
    label_column: str | None = "label",
    methods: Sequence[str] | None = None,
    seed: int = 42,
    pair_side: str = "random",
    p_mask: float = 0.1,
    p_ngram: float = 0.25,
    max_ngram: int = 5,
    shuffle_window: int = 3,
    p_mlm: float = 0.4,
    mlm_top_k: int = 15,
    tokenizer: Any = None,
    mask_token: str | None = None,
    mlm_model: Any = None,
    mlm_tokenizer: Any = None,
    mlm_batch_size: int = 64,
    mlm_max_length: int = 128,
    batch_size: int = 64,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Make `num_variants` augmented copies of every example, for the teacher to label.

    The result holds only the new rows: row `i * num_variants + v` is variant `v` of example `i`. Its columns
    are the text columns (changed), the label column with every value missing (`None`; the feature, e.g. a
    `ClassLabel`, is kept so the rows concatenate with the originals), and `is_augmented` (`True`). Other
    columns of `dataset` are not carried over. A variant can equal its original (a short sentence in which
    no word was drawn); it is kept, so the number of rows is always `len(dataset) * num_variants`.

    Defaults follow the papers: `p_mask=0.1`, `p_ngram=0.25` and n-grams of 1 to 5 words from Tang et al.
    (2019), who make up to 20 variants per example; `p_mlm=0.4` and `mlm_top_k=15` from TinyBERT (Jiao et
    al., 2020), who make 20 (`N_a`); `shuffle_window=3` from Lample et al. (2018). Without `methods`, the
    published recipe is used: `("mlm",)` when `mlm_model` is given (TinyBERT), else `("mask", "ngram")`
    (Tang et al.).

    Args:
        dataset (`datasets.Dataset`):
            The labeled training examples; it is not changed.
        num_variants (`int`):
            Augmented rows per example (at least 1). The papers use 10 to 30; 20 is a good start.
        text_columns (`Sequence[str]`, *optional*, defaults to `("text",)`):
            One text column, or two for sentence pairs.
        label_column (`str`, *optional*, defaults to `"label"`):
            The label column, set to `None` in the new rows; `None` for a dataset without labels.
        methods (`Sequence[str]`, *optional*):
            Some of `"mask"`, `"mlm"`, `"shuffle"` and `"ngram"`; they are applied in that order whatever the
            order given. Defaults to the published recipes above.
        seed (`int`, *optional*, defaults to `42`):
            Seed of every draw; with the row index it seeds one generator per example.
        pair_side (`str`, *optional*, defaults to `"random"`):
            For sentence pairs, which text a variant changes: `"first"`, `"second"`, `"both"`, or `"random"`,
            one of these three drawn per variant with equal chances. The default follows Tang et al.'s code
            (one side with probability 2/3, both with 1/3) and TinyBERT's, which changes one side at a time:
            keeping one side intact keeps the pair's relation recognisable while both sides get variants.
            Ignored for single texts.
        p_mask (`float`, *optional*, defaults to `0.1`):
            `"mask"`: probability that a word becomes the mask token.
        p_ngram (`float`, *optional*, defaults to `0.25`):
            `"ngram"`: probability that only an n-gram of the words is kept.
        max_ngram (`int`, *optional*, defaults to `5`):
            `"ngram"`: n is drawn uniformly from 1 to `max_ngram` (capped at the number of words).
        shuffle_window (`int`, *optional*, defaults to `3`):
            `"shuffle"`: no word moves more than this many positions.
        p_mlm (`float`, *optional*, defaults to `0.4`):
            `"mlm"`: probability that a word (a single alphabetic piece of the MLM's vocabulary) is replaced.
            With `"mask"` too, a word is masked with probability `p_mask` or replaced with probability `p_mlm`,
            never both, so `p_mask + p_mlm` must not exceed 1.
        mlm_top_k (`int`, *optional*, defaults to `15`):
            `"mlm"`: the replacement is drawn uniformly from the MLM's `mlm_top_k` most likely tokens at the
            masked word, less word pieces, special tokens and non-alphabetic tokens (the word itself may be
            drawn, as in TinyBERT).
        tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*):
            The teacher's tokenizer; its mask token is the default `mask_token`, and `mask_token` must be in
            its vocabulary.
        mask_token (`str`, *optional*):
            `"mask"`: the text written in place of a masked word. Defaults to `tokenizer.mask_token`, or
            `"[MASK]"` without a tokenizer.
        mlm_model ([`~transformers.PreTrainedModel`], *optional*):
            `"mlm"`: a masked language model with its head (`AutoModelForMaskedLM`), on any device. It is
            run in evaluation mode without gradients; its training mode is restored afterwards.
        mlm_tokenizer ([`~transformers.PreTrainedTokenizerFast`], *optional*):
            `"mlm"`: the MLM's fast tokenizer.
        mlm_batch_size (`int`, *optional*, defaults to `64`):
            Masked copies per MLM forward pass.
        mlm_max_length (`int`, *optional*, defaults to `128`):
            Tokens the MLM sees around a masked word (the model's own limit applies too).
        batch_size (`int`, *optional*, defaults to `64`):
            Examples per `datasets.map` batch.
        num_proc (`int`, *optional*):
            Processes for `datasets.map`; the output does not depend on it.

    Returns:
        `datasets.Dataset`: `len(dataset) * num_variants` rows with the text columns, the label column
        (all `None`) unless `label_column=None`, and `is_augmented` (all `True`).

    Raises:
        `ValueError`: before any work, for a `num_variants` below 1, an unknown method, a probability
            outside [0, 1], an empty dataset, a missing text or label column, a bad `pair_side`, a mask
            token outside the tokenizer's vocabulary, or an MLM without a masked-LM head or mask token.

    Example:

    ```python
    from nlpkd.data.augment import augment_dataset, concatenate_augmented

    extra = augment_dataset(data["train"], 20, text_columns=("sentence",), tokenizer=tokenizer)
    train = concatenate_augmented(data["train"], extra)  # originals first, is_augmented=False
    ```
    """
    _check_positive_int("num_variants", num_variants, "augmented rows per example")
    resolved_methods = _resolve_methods(methods, mlm_model)
    text_columns = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
    _check_dataset(dataset, text_columns, label_column, pair_side)
    for name, value in (("p_mask", p_mask), ("p_ngram", p_ngram), ("p_mlm", p_mlm)):
        _check_probability(name, value)
    if {"mask", "mlm"} <= resolved_methods and p_mask + p_mlm > 1.0:
        raise ValueError(
            f"p_mask ({p_mask}) + p_mlm ({p_mlm}) exceeds 1: a word is masked or replaced, never both. "
            "Lower one of them."
        )
    _check_positive_int("max_ngram", max_ngram, "the longest n-gram kept")
    _check_positive_int("shuffle_window", shuffle_window, "the farthest a word moves")
    _check_positive_int("mlm_top_k", mlm_top_k, "MLM candidates per word")
    _check_positive_int("mlm_batch_size", mlm_batch_size, "masked copies per forward pass")
    _check_positive_int("batch_size", batch_size, "examples per map batch")
    if (
        isinstance(mlm_max_length, bool)
        or not isinstance(mlm_max_length, int)
        or mlm_max_length < 3
    ):
        raise ValueError(
            f"mlm_max_length must be an integer of at least 3 tokens, got {mlm_max_length!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if num_proc is not None:
        _check_positive_int("num_proc", num_proc, "processes")
    resolved_mask = _resolve_mask_token(mask_token, tokenizer) if "mask" in resolved_methods else ""
    check_mlm(mlm_model, mlm_tokenizer, resolved_methods, num_proc)

    settings = _Settings(
        num_variants=num_variants,
        text_columns=text_columns,
        label_column=label_column,
        methods=resolved_methods,
        seed=seed,
        pair_side=pair_side,
        p_mask=float(p_mask),
        p_ngram=float(p_ngram),
        max_ngram=max_ngram,
        shuffle_window=shuffle_window,
        p_mlm=float(p_mlm),
        mlm_top_k=mlm_top_k,
        mask_token=resolved_mask,
        mlm_batch_size=mlm_batch_size,
        mlm_max_length=mlm_max_length,
    )
    mlm = MaskedLM(mlm_model, mlm_tokenizer, settings) if "mlm" in resolved_methods else None
    features = {column: dataset.features[column] for column in text_columns}
    if label_column is not None:
        features[label_column] = dataset.features[label_column]
    features[AUGMENTED_COLUMN] = datasets.Value("bool")
    logger.info(
        "Augmenting %d examples x %d variants with %s.",
        len(dataset),
        num_variants,
        sorted(resolved_methods),
    )
    return dataset.map(
        _augment_batch,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        remove_columns=dataset.column_names,
        features=datasets.Features(features),
        fn_kwargs={"settings": settings, "mlm": mlm},
        num_proc=num_proc,
        new_fingerprint=_fingerprint(dataset, settings, mlm_model, mlm_tokenizer),
        desc=f"Augmenting ({num_variants} variants per example)",
    )


def concatenate_augmented(
    dataset: datasets.Dataset, augmented: datasets.Dataset
) -> datasets.Dataset:
    """The original examples (marked `is_augmented=False`) followed by the rows of [`augment_dataset`].

    The originals keep only the columns of `augmented` (the text and label columns), so the two concatenate.

    Args:
        dataset (`datasets.Dataset`):
            The examples that `augmented` was made from.
        augmented (`datasets.Dataset`):
            The output of [`augment_dataset`].

    Returns:
        `datasets.Dataset`: `len(dataset) + len(augmented)` rows, originals first.

    Raises:
        `ValueError`: if `augmented` has no `is_augmented` column or `dataset` lacks one of its columns.
    """
    if AUGMENTED_COLUMN not in augmented.column_names:
        raise ValueError(
            f"augmented has no {AUGMENTED_COLUMN!r} column; pass the output of augment_dataset."
        )
    columns = [c for c in augmented.column_names if c != AUGMENTED_COLUMN]
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"dataset lacks the column(s) {missing} of the augmented rows; pass the dataset they were made from."
        )
    originals = dataset.select_columns(columns)
    originals = originals.add_column(AUGMENTED_COLUMN, [False] * len(originals))
    if originals.features != augmented.features:
        originals = originals.cast(augmented.features)
    return datasets.concatenate_datasets([originals, augmented])
