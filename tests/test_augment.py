"""Tests of nlpkd.data.augment: seeded augmentation of the training texts, checked against the definitions."""

from __future__ import annotations

import math
from collections import Counter

import datasets
import numpy as np
import pytest
import torch
from conftest import WORDS
from transformers import BertConfig, BertForMaskedLM, BertModel, BertTokenizerFast

from nlpkd.data.augment import AUGMENTED_COLUMN, augment_dataset, concatenate_augmented

SENTENCES = [
    "the movie was very good",
    "the plot was boring and bad",
    "great music and a great actor",
    "awful film not fun",
    "love the song",
    "the film was not good but the music was fun",
]
# Distinct words, so that a word's position in a variant says where it came from.
DISTINCT = "a1 b2 c3 d4 e5 f6 g7 h8 i9 j10 k11 l12"
FORCED = "great"  # the token the tiny masked LM is made to predict


def _classes(texts=SENTENCES, column="text") -> datasets.Dataset:
    features = datasets.Features(
        {column: datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    labels = [i % 2 for i in range(len(texts))]
    return datasets.Dataset.from_dict({column: list(texts), "label": labels}, features=features)


def _pairs(n: int = 4) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "sentence1": [SENTENCES[i % len(SENTENCES)] for i in range(n)],
            "sentence2": [SENTENCES[(i + 1) % len(SENTENCES)] for i in range(n)],
            "label": [0.5 * i for i in range(n)],
        },
        features=datasets.Features(
            {
                "sentence1": datasets.Value("string"),
                "sentence2": datasets.Value("string"),
                "label": datasets.Value("float32"),
            }
        ),
    )


@pytest.fixture(scope="module")
def mlm_tokenizer(tmp_path_factory) -> BertTokenizerFast:
    folder = tmp_path_factory.mktemp("mlm_tok")
    # `##s` is a word piece the forced model may predict: it must never become a word.
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizerFast.from_pretrained(str(folder), model_max_length=64)


def _forced_mlm(tokenizer, token: str = FORCED) -> BertForMaskedLM:
    """A tiny masked LM whose top prediction everywhere is `token` (a large bias on its logit)."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=64,
    )
    model = BertForMaskedLM(config)
    with torch.no_grad():
        model.get_output_embeddings().bias[tokenizer.convert_tokens_to_ids(token)] = 100.0
    return model


def _augment(dataset, num_variants=3, **kwargs) -> datasets.Dataset:
    return augment_dataset(dataset, num_variants, **kwargs)


# --------------------------------------------------------------------------------------------
# Shape, columns, labels, determinism
# --------------------------------------------------------------------------------------------


def test_rows_columns_and_missing_labels():
    data = _classes()
    out = _augment(data, 4, methods=("mask", "ngram"), p_mask=0.5)
    assert len(out) == 4 * len(data)
    assert out.column_names == ["text", "label", AUGMENTED_COLUMN]
    assert out.features["label"] == data.features["label"]  # ClassLabel kept, names and all
    assert out["label"] == [None] * len(out)
    assert out[AUGMENTED_COLUMN] == [True] * len(out)


def test_regression_labels_and_unlabeled_data():
    out = _augment(_pairs(), 2, text_columns=("sentence1", "sentence2"))
    assert out.features["label"] == datasets.Value("float32")
    assert out["label"] == [None] * 8
    unlabeled = datasets.Dataset.from_dict({"text": SENTENCES})
    out = _augment(unlabeled, 2, label_column=None)
    assert out.column_names == ["text", AUGMENTED_COLUMN]


def test_other_columns_are_dropped_and_originals_untouched():
    data = _classes().add_column("idx", list(range(len(SENTENCES))))
    before = data.to_dict()
    out = _augment(data, 2, p_mask=1.0, methods=("mask",))
    assert data.to_dict() == before
    assert "idx" not in out.column_names
    # No original slips into the output: with p_mask=1 every row is all masks.
    assert not set(out["text"]) & set(SENTENCES)


def test_same_seed_same_rows_other_seed_other_rows():
    data = _classes()
    kwargs = dict(methods=("mask", "shuffle", "ngram"), p_mask=0.3, p_ngram=0.5)
    first = _augment(data, 5, seed=7, **kwargs)["text"]
    assert _augment(data, 5, seed=7, **kwargs)["text"] == first
    assert _augment(data, 5, seed=8, **kwargs)["text"] != first


def test_rows_follow_the_per_example_generator():
    """Row i*V+v is variant v of example i, drawn from default_rng([seed, i]) alone: a naive reference
    of the mask draws reproduces it, and changing another example changes nothing here."""
    data = _classes()
    seed, variants, p = 3, 4, 0.4
    out = _augment(data, variants, methods=("mask",), p_mask=p, seed=seed)["text"]
    for i, sentence in enumerate(SENTENCES):
        rng = np.random.default_rng([seed, i])
        words = sentence.split()
        for v in range(variants):
            masked = rng.random(len(words)) < p
            expected = " ".join("[MASK]" if m else w for w, m in zip(words, masked, strict=True))
            assert out[i * variants + v] == expected
    edited = _classes([SENTENCES[0].upper(), *SENTENCES[1:]])
    again = _augment(edited, variants, methods=("mask",), p_mask=p, seed=seed)["text"]
    assert again[variants:] == out[variants:]


def test_output_does_not_depend_on_batching_or_processes():
    data = _classes(SENTENCES * 3)
    kwargs = dict(methods=("mask", "shuffle", "ngram"), p_mask=0.2, p_ngram=0.5, seed=11)
    reference = _augment(data, 3, **kwargs)["text"]
    assert _augment(data, 3, batch_size=1, **kwargs)["text"] == reference
    assert _augment(data, 3, num_proc=2, batch_size=2, **kwargs)["text"] == reference


def test_concatenate_puts_originals_first():
    data = _classes().add_column("idx", list(range(len(SENTENCES))))
    out = _augment(data, 2)
    both = concatenate_augmented(data, out)
    assert len(both) == len(data) + len(out)
    assert both["text"][: len(data)] == SENTENCES
    assert both["label"][: len(data)] == data["label"]
    assert both[AUGMENTED_COLUMN] == [False] * len(data) + [True] * len(out)
    assert both.features == out.features
    with pytest.raises(ValueError, match="is_augmented"):
        concatenate_augmented(data, data)


# --------------------------------------------------------------------------------------------
# Each method does what it says
# --------------------------------------------------------------------------------------------


def test_mask_all_none_and_some(tiny_tokenizer):
    data = _classes()
    every = _augment(data, 2, methods=("mask",), p_mask=1.0, tokenizer=tiny_tokenizer)["text"]
    for row, text in enumerate(every):
        n = len(SENTENCES[row // 2].split())
        assert text == " ".join(["[MASK]"] * n)
    none = _augment(data, 2, methods=("mask",), p_mask=0.0)["text"]
    assert none == [s for s in SENTENCES for _ in range(2)]
    custom = _augment(data, 1, methods=("mask",), p_mask=1.0, mask_token="[UNK]")["text"]
    assert set(" ".join(custom).split()) == {"[UNK]"}
    # The share of masked words is p_mask (binomial: 0.3 +- 4 standard deviations).
    long = _classes([" ".join(["word"] * 50)] * 10)
    words = " ".join(_augment(long, 10, methods=("mask",), p_mask=0.3)["text"]).split()
    share = words.count("[MASK]") / len(words)
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(words))


def test_mask_keeps_punctuation_and_spacing():
    data = _classes(["Hello,  world!\nBye."])
    none = _augment(data, 1, methods=("mask",), p_mask=0.0)["text"]
    assert none == ["Hello,  world!\nBye."]
    every = _augment(data, 1, methods=("mask",), p_mask=1.0)["text"]
    assert every == ["[MASK][MASK]  [MASK][MASK]\n[MASK][MASK]"]


def test_ngram_is_a_contiguous_run_of_one_to_five_words():
    data = _classes([DISTINCT])
    words = DISTINCT.split()
    out = _augment(data, 60, methods=("ngram",), p_ngram=1.0)["text"]
    lengths = Counter()
    for text in out:
        kept = text.split()
        start = words.index(kept[0])
        assert kept == words[start : start + len(kept)]
        lengths[len(kept)] += 1
    assert set(lengths) == {1, 2, 3, 4, 5}
    never = _augment(data, 5, methods=("ngram",), p_ngram=0.0)["text"]
    assert never == [DISTINCT] * 5
    # About p_ngram of the variants are cut: 0.25 of 400 (+- 4 standard deviations).
    some = _augment(data, 400, methods=("ngram",))["text"]
    cut = sum(text != DISTINCT for text in some)
    assert abs(cut - 100) < 4 * math.sqrt(400 * 0.25 * 0.75)


def test_shuffle_is_a_local_permutation():
    data = _classes([DISTINCT])
    words = DISTINCT.split()
    for window in (1, 3):
        out = _augment(data, 30, methods=("shuffle",), shuffle_window=window)["text"]
        for text in out:
            shuffled = text.split()
            assert Counter(shuffled) == Counter(words)
            assert all(abs(words.index(w) - p) <= window for p, w in enumerate(shuffled))
        assert any(text != DISTINCT for text in out)
        if window == 3:
            assert any(abs(words.index(w) - p) == 3 for t in out for p, w in enumerate(t.split()))


def test_shuffle_never_glues_words_together():
    data = _classes(["good. bad, fine"])
    for text in _augment(data, 30, methods=("shuffle",))["text"]:
        tokens = text.replace(".", " . ").replace(",", " , ").split()
        assert Counter(tokens) == Counter(["good", ".", "bad", ",", "fine"])


def test_mlm_replaces_single_piece_words_with_the_forced_token(mlm_tokenizer):
    model = _forced_mlm(mlm_tokenizer)
    # `films` is two pieces (film ##s), `zebra` is unknown, `.` is not a word: they stay.
    data = _classes(["The movie was good.", "bad films zebra plot"])
    out = _augment(
        data,
        2,
        methods=("mlm",),
        p_mlm=1.0,
        mlm_top_k=1,
        mlm_model=model,
        mlm_tokenizer=mlm_tokenizer,
    )["text"]
    assert out == ["Great great great great."] * 2 + ["great films zebra great"] * 2
    none = _augment(
        data, 2, methods=("mlm",), p_mlm=0.0, mlm_model=model, mlm_tokenizer=mlm_tokenizer
    )["text"]
    assert none == [t for t in data["text"] for _ in range(2)]


def test_mlm_candidates_are_the_top_k(mlm_tokenizer):
    model = _forced_mlm(mlm_tokenizer)
    with torch.no_grad():
        # The text is one word, so the MLM sees `[CLS] [MASK] [SEP]`.
        logits = model(**mlm_tokenizer("[MASK]", return_tensors="pt")).logits[0, 1]
    top = set(mlm_tokenizer.convert_ids_to_tokens(torch.topk(logits, 4).indices.tolist()))
    words = {w for w in top if w.isalpha()}
    out = _augment(
        _classes(["movie"]),
        40,
        methods=("mlm",),
        p_mlm=1.0,
        mlm_top_k=4,
        mlm_model=model,
        mlm_tokenizer=mlm_tokenizer,
    )["text"]
    # Every draw is one of the top 4 (all of them, in 40 draws), less any word piece.
    assert set(out) == words


def test_mlm_never_writes_a_word_piece(mlm_tokenizer):
    model = _forced_mlm(mlm_tokenizer, token="##s")
    data = _classes(["the movie was good"])
    out = _augment(
        data,
        3,
        methods=("mlm",),
        p_mlm=1.0,
        mlm_top_k=1,
        mlm_model=model,
        mlm_tokenizer=mlm_tokenizer,
    )["text"]
    assert out == ["the movie was good"] * 3


def test_mlm_is_batched_in_eval_mode_without_gradients(mlm_tokenizer):
    model = _forced_mlm(mlm_tokenizer).train()
    calls = []

    def record(module, args, kwargs):
        calls.append((module.training, torch.is_grad_enabled(), kwargs["input_ids"].shape[0]))

    model.register_forward_pre_hook(record, with_kwargs=True)
    data = _classes(SENTENCES)
    eligible = sum(
        1
        for s in SENTENCES
        for w in s.split()
        if mlm_tokenizer.tokenize(w) == [w] and w in mlm_tokenizer.get_vocab()
    )
    _augment(
        data,
        2,
        methods=("mlm",),
        p_mlm=1.0,
        mlm_model=model,
        mlm_tokenizer=mlm_tokenizer,
        mlm_batch_size=8,
        batch_size=64,
    )
    # One masked copy per word, whatever the number of variants, in batches of 8.
    assert sum(rows for _, _, rows in calls) == eligible
    assert len(calls) == math.ceil(eligible / 8)
    assert all(not training and not grad for training, grad, _ in calls)
    assert model.training  # restored


def test_mlm_rows_do_not_depend_on_batching(mlm_tokenizer):
    torch.manual_seed(1)
    model = BertForMaskedLM(_forced_mlm(mlm_tokenizer).config)  # unforced: many candidates
    data = _classes(SENTENCES * 2)
    kwargs = dict(methods=("mlm",), mlm_model=model, mlm_tokenizer=mlm_tokenizer, seed=5)
    one_by_one = _augment(data, 3, batch_size=1, mlm_batch_size=1, **kwargs)["text"]
    assert _augment(data, 3, batch_size=64, mlm_batch_size=64, **kwargs)["text"] == one_by_one
    assert one_by_one != [t for t in data["text"] for _ in range(3)]


def test_mlm_sees_a_window_of_long_texts(mlm_tokenizer):
    model = _forced_mlm(mlm_tokenizer)  # 64 positions
    text = " ".join(["movie"] * 150)
    out = _augment(
        _classes([text]),
        1,
        methods=("mlm",),
        p_mlm=1.0,
        mlm_top_k=1,
        mlm_model=model,
        mlm_tokenizer=mlm_tokenizer,
        mlm_max_length=16,
    )["text"]
    assert out == [" ".join([FORCED] * 150)]


def test_mask_and_mlm_exclude_each_other(mlm_tokenizer):
    model = _forced_mlm(mlm_tokenizer)
    out = _augment(
        _classes(["the movie was very good"]),
        20,
        methods=("mask", "mlm"),
        p_mask=0.5,
        p_mlm=0.5,
        mlm_top_k=1,
        mlm_model=model,
        mlm_tokenizer=mlm_tokenizer,
    )["text"]
    words = Counter(w for text in out for w in text.split())
    assert set(words) == {"[MASK]", FORCED}
    assert words["[MASK]"] > 20 and words[FORCED] > 20


def test_default_methods(mlm_tokenizer):
    data = _classes([DISTINCT])
    tang = _augment(data, 50, p_mask=0.0, p_ngram=1.0)["text"]
    assert all(len(text.split()) <= 5 for text in tang)  # n-grams: the default without an MLM
    model = _forced_mlm(mlm_tokenizer)
    tinybert = _augment(
        _classes(["the movie"]),
        10,
        p_mlm=1.0,
        mlm_top_k=1,
        mlm_model=model,
        mlm_tokenizer=mlm_tokenizer,
    )
    assert tinybert["text"] == ["great great"] * 10


# --------------------------------------------------------------------------------------------
# Sentence pairs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["first", "second", "both"])
def test_pair_side_changes_only_that_side(side):
    data = _pairs()
    out = _augment(
        data,
        3,
        text_columns=("sentence1", "sentence2"),
        pair_side=side,
        methods=("mask",),
        p_mask=1.0,
    )
    for row in range(len(out)):
        original = data[row // 3]
        for column, changed in (("sentence1", side != "second"), ("sentence2", side != "first")):
            text = out[row][column]
            if changed:
                assert set(text.split()) == {"[MASK]"}
            else:
                assert text == original[column]


def test_random_pair_side_draws_each_choice():
    data = _pairs(2)
    out = _augment(data, 60, text_columns=("sentence1", "sentence2"), methods=("mask",), p_mask=1.0)
    patterns = Counter(
        (row["sentence1"].startswith("[MASK]"), row["sentence2"].startswith("[MASK]"))
        for row in out
    )
    assert set(patterns) == {(True, False), (False, True), (True, True)}
    assert min(patterns.values()) > 20  # about 40 each of 120


# --------------------------------------------------------------------------------------------
# Bad input: one ValueError each, before any work
# --------------------------------------------------------------------------------------------


@pytest.fixture
def no_work(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("augment_dataset started work before rejecting its input")

    monkeypatch.setattr(datasets.Dataset, "map", fail)


def _tokenizer_without_mask(tokenizer):
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tokenizer.mask_token = None
    assert tokenizer.mask_token is None
    return tokenizer


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_variants=0), "num_variants must be a positive integer"),
        (dict(num_variants=2.5), "num_variants must be a positive integer"),
        (dict(methods=("mask", "swap")), r"Unknown augmentation method\(s\) \['swap'\]"),
        (dict(methods=()), "methods is empty"),
        (dict(p_mask=1.5), r"p_mask is a probability and must lie in \[0, 1\]"),
        (dict(p_ngram=-0.1), r"p_ngram is a probability"),
        (dict(p_mlm=2), r"p_mlm is a probability"),
        (dict(text_columns=("sentence",)), r"lacks the text column\(s\) \['sentence'\]"),
        (dict(text_columns=("text", "text")), "two different ones"),
        (dict(label_column="labels"), "no label column 'labels'"),
        (dict(pair_side="left"), "pair_side must be one of"),
        (dict(pair_side="second"), "only one text column"),
        (dict(seed=-1), "seed must be a non-negative integer"),
        (dict(max_ngram=0), "max_ngram must be a positive integer"),
        (dict(shuffle_window=0), "shuffle_window must be a positive integer"),
        (dict(mlm_top_k=0, methods=("mask",)), "mlm_top_k must be a positive integer"),
        (dict(mask_token=""), "mask_token must be a non-empty string"),
        (dict(methods=("mlm",)), "needs both mlm_model"),
    ],
)
def test_bad_arguments(no_work, kwargs, message):
    kwargs = {"num_variants": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        augment_dataset(_classes(), **kwargs)


def test_bad_datasets(no_work):
    with pytest.raises(ValueError, match="has no rows"):
        augment_dataset(_classes([]), 2)
    with pytest.raises(ValueError, match=r"Pass one split, e.g. data\['train'\]"):
        augment_dataset(datasets.DatasetDict({"train": _classes()}), 2)
    numbers = datasets.Dataset.from_dict({"text": [1, 2], "label": [0, 1]})
    with pytest.raises(ValueError, match="must hold strings"):
        augment_dataset(numbers, 2)


def test_bad_mask_tokens(no_work, tiny_tokenizer):
    with pytest.raises(
        ValueError, match=r"mask_token '<mask>' is not in the tokenizer's vocabulary"
    ):
        augment_dataset(_classes(), 2, tokenizer=tiny_tokenizer, mask_token="<mask>")
    with pytest.raises(ValueError, match="has no mask token"):
        augment_dataset(_classes(), 2, tokenizer=_tokenizer_without_mask(tiny_tokenizer))


def test_bad_masked_lms(no_work, mlm_tokenizer):
    model = _forced_mlm(mlm_tokenizer)
    mlm = dict(methods=("mlm",), mlm_tokenizer=mlm_tokenizer)
    encoder = BertModel(model.config)
    with pytest.raises(ValueError, match="has no masked-LM head"):
        augment_dataset(_classes(), 2, mlm_model=encoder, **mlm)
    with pytest.raises(ValueError, match="mlm_tokenizer .* has no mask token"):
        augment_dataset(
            _classes(), 2, methods=("mlm",), mlm_model=model,
            mlm_tokenizer=_tokenizer_without_mask(mlm_tokenizer),
        )  # fmt: skip
    with pytest.raises(ValueError, match="lacks 'mlm'"):
        augment_dataset(
            _classes(), 2, methods=("mask",), mlm_model=model, mlm_tokenizer=mlm_tokenizer
        )
    with pytest.raises(ValueError, match=r"p_mask \(0.7\) \+ p_mlm \(0.4\) exceeds 1"):
        augment_dataset(
            _classes(), 2, methods=("mask", "mlm"), p_mask=0.7, mlm_model=model,
            mlm_tokenizer=mlm_tokenizer,
        )  # fmt: skip
    small = BertForMaskedLM(BertConfig(**{**model.config.to_dict(), "vocab_size": 3}))
    with pytest.raises(ValueError, match="does not belong to the model"):
        augment_dataset(_classes(), 2, mlm_model=small, **mlm)
