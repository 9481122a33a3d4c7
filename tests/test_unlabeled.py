"""Unlabeled text: read from files or Python, checked, and marked so that only the teacher supervises it."""

from __future__ import annotations

import datasets
import pytest

from nlpkd.data.unlabeled import UNLABELED as UNLABELED
from nlpkd.data.unlabeled import load_unlabeled as load_unlabeled
from nlpkd.data.unlabeled import with_unlabeled as with_unlabeled


def test_text_file_one_text_per_line(tmp_path):
    path = tmp_path / "more.txt"
    path.write_text("first text\n\n  second text \n")
    data = load_unlabeled(path)
    assert data.column_names == ["text"] and data["text"] == ["first text", "second text"]


def test_pairs_from_a_csv_and_from_python(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("question,answer,source\nwho,me,web\nwhy,because,book\n")
    data = load_unlabeled(path, ("question", "answer"))
    assert data.column_names == ["question", "answer"] and data["answer"] == ["me", "because"]
    python = load_unlabeled([("a", "b"), ("c", "d")], ("question", "answer"))
    assert python["question"] == ["a", "c"]


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (
            "text,label\nhello,1\n",
            "x.csv",
            "has a 'label' column, but unlabeled text carries no labels",
        ),
        ("\n\n", "x.txt", "holds no text"),
        ("sentence\nhello\n", "x.csv", r"lacks the text column\(s\) \['text'\]"),
    ],
)
def test_bad_unlabeled_files(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_unlabeled(path)


def test_pairs_cannot_come_from_plain_text(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("one\n")
    with pytest.raises(ValueError, match="sentence pairs"):
        load_unlabeled(path, ("a", "b"))


def test_unlabeled_rows_join_the_training_set_with_label_minus_100():
    labeled = datasets.Dataset.from_dict(
        {"input_ids": [[2, 5, 3], [2, 6, 3]], "label": [0, 1]},
        features=datasets.Features(
            {
                "input_ids": datasets.Sequence(datasets.Value("int32")),
                "label": datasets.ClassLabel(names=["a", "b"]),
            }
        ),
    )
    unlabeled = datasets.Dataset.from_dict({"input_ids": [[2, 7, 8, 3]]})
    joined = with_unlabeled(labeled, unlabeled)
    assert joined["label"] == [0, 1, UNLABELED] and len(joined) == 3
    assert joined["input_ids"][2] == [2, 7, 8, 3]
