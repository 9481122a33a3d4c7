"""BBC News pairs: a sentence-pair task built offline from the packaged BBC News corpus, where small students
fall short of their teacher.

Each example pairs an article's headline with one paragraph, and the label says where the paragraph comes from:

- `same_article` (0): a paragraph of the headline's own article, never its first (lead) paragraph, which mostly
  restates the headline;
- `same_topic` (1): a paragraph of another article of the same topic (business, politics, ...);
- `other_topic` (2): a paragraph of an article of another topic.

Both negatives are *hard*: each is drawn among the `candidates` paragraphs of its pool that are most similar to
the headline by TF-IDF cosine, so word overlap with the headline does not tell the classes apart, and the
positive is a random non-lead paragraph. Deciding needs the pair read together: whether the paragraph continues
the headline's story (the same people, company or event) and whether it is on the headline's subject at all.

The pairs of each split are built from that split's articles only (negatives included), so no validation
article, headline or paragraph is seen in training. The corpus holds exact and lightly edited copies of
articles: each is kept once, and a validation article that copies a training one is dropped (about 50 of the 445
validation articles of the seed-42 split). A paragraph that occurs in two articles (a team list) is left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import datasets
import numpy as np

__all__ = ["BBC_PAIRS_LABELS", "build_bbc_pairs", "split_article"]

BBC_PAIRS_LABELS = ("same_article", "same_topic", "other_topic")
# Paragraphs shorter than this many words ("He said: 'No.'") say too little to be told apart: left out.
_MIN_WORDS = 8
# TF-IDF cosine of two whole articles: from _SAME_STORY on they tell the same story (a follow-up, the same
# match), from _DUPLICATE on one is a copy of the other (the corpus holds exact and lightly edited copies).
_SAME_STORY = 0.2
_DUPLICATE = 0.7


def split_article(text: str) -> tuple[str, list[str]]:
    """An article's headline (its first line) and its body paragraphs, in order.

    Args:
        text (`str`): one article of the BBC News corpus, headline first, paragraphs on their own lines.

    Returns:
        `tuple[str, list[str]]`: the headline and the non-empty paragraphs after it.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else ""), lines[1:]


@dataclass
class _Articles:
    """One split's articles: headlines, non-lead paragraphs (long enough), topics and whole texts."""

    headlines: list[str] = field(default_factory=list)
    leads: list[str] = field(default_factory=list)
    bodies: list[list[str]] = field(default_factory=list)
    topics: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def _parse(split: datasets.Dataset) -> _Articles:
    articles = _Articles()
    for text, topic in zip(split["text"], split["label"], strict=True):
        headline, paragraphs = split_article(text)
        body = [p for p in paragraphs[1:] if len(p.split()) >= _MIN_WORDS]
        if body:
            articles.headlines.append(headline)
            articles.leads.append(paragraphs[0])
            articles.bodies.append(body)
            articles.topics.append(int(topic))
            articles.texts.append(text)
    return articles


def _keep(articles: _Articles, indices: list[int]) -> _Articles:
    return _Articles(*([values[i] for i in indices] for values in vars(articles).values()))


def _deduplicate(splits: dict[str, _Articles]) -> dict[str, _Articles]:
    """Drop every article that repeats one kept before it (the corpus holds exact and lightly edited copies):
    the training split's articles first, then each other split's, so no validation article is a copy of a
    training one. A copy is an article whose TF-IDF cosine with a kept one is at least `_DUPLICATE`."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english")
    vectorizer.fit(splits["train"].texts)
    earlier = None
    result = {}
    for name, articles in splits.items():
        vectors = vectorizer.transform(articles.texts)
        within = (vectors @ vectors.T).toarray()
        copies = (
            (vectors @ earlier.T).toarray().max(axis=1) >= _DUPLICATE
            if earlier is not None and earlier.shape[0]
            else np.zeros(len(articles.texts), dtype=bool)
        )
        keep: list[int] = []
        for i in np.flatnonzero(~copies):
            if not keep or within[i, keep].max() < _DUPLICATE:
                keep.append(int(i))
        earlier = vectors[keep] if earlier is None else sparse.vstack([earlier, vectors[keep]])
        result[name] = _keep(articles, keep)
    return result


def _drop_shared_paragraphs(splits: dict[str, _Articles]) -> dict[str, _Articles]:
    """Leave out the paragraphs that occur in more than one article of any split (team lists, standard lines):
    their source is ambiguous, and one would reach training from a validation article."""
    counts = Counter(
        p for articles in splits.values() for body in articles.bodies for p in set(body)
    )
    result = {}
    for name, articles in splits.items():
        articles.bodies = [[p for p in body if counts[p] == 1] for body in articles.bodies]
        result[name] = _keep(articles, [i for i, body in enumerate(articles.bodies) if body])
    return result


def _similarities(left: Sequence[str], right: Sequence[str], fit: Sequence[str]) -> np.ndarray:
    """TF-IDF cosine of every text of `left` with every text of `right`, the vocabulary fit on `fit`."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit(fit)
    # TF-IDF rows are L2-normalised, so the dot product is the cosine.
    return (vectorizer.transform(left) @ vectorizer.transform(right).T).toarray()


def _hard_negatives(
    scores: np.ndarray, allowed: np.ndarray, count: int, candidates: int, rng: np.random.Generator
) -> np.ndarray:
    """`count` distinct paragraph indices drawn among the `candidates` allowed ones that score highest."""
    pool = np.flatnonzero(allowed)
    top = pool[np.argsort(-scores[pool], kind="stable")[: max(candidates, count)]]
    return rng.choice(top, size=min(count, len(top)), replace=False)


def _pairs_of_split(
    articles: _Articles,
    pairs_per_article: int,
    candidates: int,
    rng: np.random.Generator,
    paragraph: str = "body",
) -> dict[str, list]:
    if paragraph == "lead":
        paragraphs, owner = list(articles.leads), np.arange(len(articles.leads))
    else:
        paragraphs = [p for body in articles.bodies for p in body]
        owner = np.repeat(np.arange(len(articles.bodies)), [len(body) for body in articles.bodies])
    topic_of = np.asarray(articles.topics)[owner]
    scores = _similarities(articles.headlines, paragraphs, [*articles.headlines, *paragraphs])
    # Another article on the same story (a follow-up, a profile of the same person) is no negative: its
    # paragraphs are left out of the headline's negatives.
    related = _similarities(articles.texts, articles.texts, articles.texts) >= _SAME_STORY
    rows: dict[str, list] = {"headline": [], "paragraph": [], "label": []}
    for article, headline in enumerate(articles.headlines):
        own = np.flatnonzero(owner == article)
        count = min(pairs_per_article, len(own))
        other = ~related[article][owner]
        same_topic = topic_of == articles.topics[article]
        chosen = [
            rng.choice(own, size=count, replace=False),
            _hard_negatives(scores[article], other & same_topic, count, candidates, rng),
            _hard_negatives(scores[article], other & ~same_topic, count, candidates, rng),
        ]
        for label, indices in enumerate(chosen):
            for index in indices:
                rows["headline"].append(headline)
                rows["paragraph"].append(paragraphs[index])
                rows["label"].append(label)
    return rows


def build_bbc_pairs(
    news: datasets.DatasetDict,
    *,
    seed: int = 0,
    pairs_per_article: int = 1,
    candidates: int = 10,
    paragraph: str = "body",
) -> datasets.DatasetDict:
    """The BBC News pairs task (module docstring) built from a BBC News split such as [`load_bbc_news`]'s.

    The result depends only on `news`, `seed`, `pairs_per_article`, `candidates` and `paragraph`: the same arguments give the
    same pairs, in the same (shuffled) order.

    Args:
        news (`datasets.DatasetDict`):
            Splits of whole articles (`text`, headline on the first line; `label`, the topic), with a `train`
            split; pairs of every split are built from that split's articles only.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the paragraph draws and of the order of the rows. Another seed gives other pairs of the same
            articles (useful as unlabelled text).
        pairs_per_article (`int`, *optional*, defaults to `1`):
            Pairs of each class per article (fewer where the article has fewer non-lead paragraphs), so the
            classes are balanced up to those short articles.
        candidates (`int`, *optional*, defaults to `10`):
            How many of the most headline-similar paragraphs each negative is drawn from; smaller is harder.

    Returns:
        `datasets.DatasetDict`: the same split names, columns `headline`, `paragraph` and `label` (a
        `ClassLabel` over `same_article`, `same_topic`, `other_topic`).

    Raises:
        `ValueError`: if `news` has no `train` split or the counts are not positive.
    """
    if "train" not in news:
        raise ValueError(
            f"build_bbc_pairs needs a 'train' split of articles, got {list(news)}: pass load_bbc_news()."
        )
    if pairs_per_article < 1 or candidates < 1:
        raise ValueError(
            f"pairs_per_article and candidates must be >= 1, got {pairs_per_article} and {candidates}."
        )
    features = datasets.Features(
        {
            "headline": datasets.Value("string"),
            "paragraph": datasets.Value("string"),
            "label": datasets.ClassLabel(names=list(BBC_PAIRS_LABELS)),
        }
    )
    rng = np.random.default_rng(seed)
    # The training split goes first, so that a validation article that copies a training one is dropped.
    splits = _deduplicate(
        {name: _parse(news[name]) for name in ["train", *(s for s in news if s != "train")]}
    )
    splits = _drop_shared_paragraphs(splits)
    result = {}
    for name, articles in splits.items():
        rows = _pairs_of_split(articles, pairs_per_article, candidates, rng, paragraph)
        order = rng.permutation(len(rows["label"]))
        rows = {column: [values[i] for i in order] for column, values in rows.items()}
        result[name] = datasets.Dataset.from_dict(rows, features=features)
    return datasets.DatasetDict({name: result[name] for name in news})
