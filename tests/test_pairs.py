"""The bbc_pairs task (nlpkd.data.pairs): deterministic, disjoint across splits, balanced, labels as defined."""

from __future__ import annotations

import json
from collections import Counter

import datasets
import numpy as np
import pytest
from conftest import FAST_CLI, tiny_bert
from sklearn.feature_extraction.text import TfidfVectorizer

from nlpkd.cli import main
from nlpkd.data import TASKS, build_bbc_pairs, load_bbc_news, load_task_data
from nlpkd.data.pairs import BBC_PAIRS_LABELS, split_article


@pytest.fixture(scope="module")
def news() -> datasets.DatasetDict:
    return load_bbc_news(seed=42)


@pytest.fixture(scope="module")
def pairs() -> datasets.DatasetDict:
    return load_task_data("bbc_pairs", seed=42)


def small_news(news: datasets.DatasetDict, train: int = 200, validation: int = 60):
    return datasets.DatasetDict(
        {
            "train": news["train"].select(range(train)),
            "validation": news["validation"].select(range(validation)),
        }
    )


def test_the_task_row_describes_the_built_data(pairs, news):
    task = TASKS["bbc_pairs"]
    assert task.text_columns == ("headline", "paragraph")
    assert task.label_names == BBC_PAIRS_LABELS == ("same_article", "same_topic", "other_topic")
    for split in pairs.values():
        assert split.column_names == ["headline", "paragraph", "label"]
        assert split.features["label"].names == list(task.label_names)
    # The task loader is the builder applied to the seed-42 BBC split, nothing more.
    built = build_bbc_pairs(news)
    for name in ("train", "validation"):
        assert built[name].to_dict() == pairs[name].to_dict()


def test_same_arguments_give_the_same_pairs_and_another_seed_others(news):
    small = small_news(news)
    first, again = build_bbc_pairs(small, seed=3), build_bbc_pairs(small, seed=3)
    other = build_bbc_pairs(small, seed=4)
    assert first["train"].to_dict() == again["train"].to_dict()
    assert first["validation"].to_dict() == again["validation"].to_dict()
    assert first["train"]["paragraph"] != other["train"]["paragraph"]


def test_classes_are_balanced_and_the_split_is_a_few_thousand_pairs(pairs):
    for name, split in pairs.items():
        counts = Counter(split["label"])
        assert set(counts) == {0, 1, 2}
        assert len(set(counts.values())) == 1, (name, counts)
    assert 4000 < len(pairs["train"]) < 6000
    assert 900 < len(pairs["validation"]) < 1500


def test_validation_articles_never_appear_in_training(pairs, news):
    train_text = {*pairs["train"]["headline"], *pairs["train"]["paragraph"]}
    assert not train_text & set(pairs["validation"]["headline"])
    assert not train_text & set(pairs["validation"]["paragraph"])
    # Nor do copies: the corpus holds validation articles that are (edited) copies of training ones.
    texts = {h: t for t in news["validation"]["text"] for h in [split_article(t)[0]]}
    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit(news["train"]["text"])
    kept = [texts[h] for h in sorted(set(pairs["validation"]["headline"]))]
    cosine = vectorizer.transform(kept) @ vectorizer.transform(news["train"]["text"]).T
    assert cosine.max() < 0.7
    dropped = len({split_article(t)[0] for t in news["validation"]["text"]}) - len(kept)
    assert dropped > 40  # the seed-42 split holds about 50 copies of training articles


def where_paragraphs_come_from(split: datasets.Dataset) -> dict[str, list[tuple[str, int, int]]]:
    """Each paragraph's (headline, topic, position) in every article of `split` that holds it."""
    sources: dict[str, list[tuple[str, int, int]]] = {}
    for text, topic in zip(split["text"], split["label"], strict=True):
        headline, paragraphs = split_article(text)
        for position, paragraph in enumerate(paragraphs):
            sources.setdefault(paragraph, []).append((headline, topic, position))
    return sources


def test_every_label_says_where_its_paragraph_comes_from(pairs, news):
    for name in ("train", "validation"):
        sources = where_paragraphs_come_from(news[name])
        topic_of = {
            split_article(t)[0]: c
            for t, c in zip(news[name]["text"], news[name]["label"], strict=True)
        }
        for row in pairs[name]:
            found = sources[row["paragraph"]]
            own = [(h, p) for h, _, p in found if h == row["headline"]]
            if row["label"] == 0:
                assert own and all(position >= 1 for _, position in own), row
            else:
                assert not own, row
                same = [t == topic_of[row["headline"]] for h, t, _ in found]
                assert all(same) if row["label"] == 1 else not any(same), row


def overlap(vectorizer: TfidfVectorizer, split: datasets.Dataset) -> np.ndarray:
    heads, paras = vectorizer.transform(split["headline"]), vectorizer.transform(split["paragraph"])
    return np.asarray(heads.multiply(paras).sum(axis=1))


def test_word_overlap_with_the_headline_does_not_solve_the_task(pairs):
    from sklearn.linear_model import LogisticRegression

    train, validation = pairs["train"], pairs["validation"]
    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english")
    vectorizer.fit([*train["headline"], *train["paragraph"]])
    model = LogisticRegression().fit(overlap(vectorizer, train), train["label"])
    predicted = model.predict(overlap(vectorizer, validation))
    # Negatives are drawn among the paragraphs closest to the headline: overlap alone stays near 50% (3 classes).
    assert (predicted == np.asarray(validation["label"])).mean() < 0.6


def test_a_validation_copy_of_a_training_article_is_dropped(news):
    train = news["train"].select(range(60))
    copy = train[0]["text"].replace(".", " .", 1)
    validation = datasets.Dataset.from_dict(
        {
            "text": [copy, *news["validation"]["text"][:30]],
            "label": [train[0]["label"], *news["validation"]["label"][:30]],
        },
        features=news["train"].features,
    )
    built = build_bbc_pairs(datasets.DatasetDict({"train": train, "validation": validation}))
    assert split_article(copy)[0] not in set(built["validation"]["headline"])
    assert split_article(copy)[0] in set(built["train"]["headline"])


def test_bad_arguments_say_what_to_pass(news):
    with pytest.raises(ValueError, match="'train' split"):
        build_bbc_pairs(datasets.DatasetDict({"validation": news["validation"]}))
    with pytest.raises(ValueError, match="pairs_per_article"):
        build_bbc_pairs(small_news(news), pairs_per_article=0)


def test_more_pairs_per_article(news):
    built = build_bbc_pairs(small_news(news, 100, 30), pairs_per_article=2)
    one = build_bbc_pairs(small_news(news, 100, 30))
    assert len(one["train"]) < len(built["train"]) <= 2 * len(one["train"])
    counts = Counter(built["train"]["label"])
    assert counts[1] == counts[2] == counts[0]


def test_nlpkd_distill_runs_the_task(tmp_path, tiny_tokenizer):
    generic = {i: f"LABEL_{i}" for i in range(3)}
    teacher = tiny_bert(
        seed=1, num_labels=3, id2label=generic, label2id={v: k for k, v in generic.items()}
    )
    teacher.save_pretrained(tmp_path / "teacher")
    tiny_tokenizer.save_pretrained(tmp_path / "teacher")
    out = tmp_path / "out"
    argv = [
        "distill",
        "--task",
        "bbc_pairs",
        "--teacher",
        str(tmp_path / "teacher"),
        "--output_dir",
        str(out),
    ]
    status = main(
        [
            *argv,
            "--student_layers",
            "2",
            "--max_train_samples",
            "16",
            "--max_eval_samples",
            "16",
            *FAST_CLI,
        ]
    )
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "bbc_pairs"
    assert set(metrics["teacher"]["validation"]) == {"accuracy"}
