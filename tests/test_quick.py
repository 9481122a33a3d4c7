"""Tests for nlpkd.api (nlpkd.distill, nlpkd.finetune): `distill` on lists, DataFrames and Datasets, label mapping, `save`, `finetune`."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ID2LABEL, WORDS, tiny_bert
from transformers import BertModel, pipeline

from nlpkd import DistillationConfig, DistillationResult
from nlpkd.api import distill, finetune
from nlpkd.jobs import TRAINING_DEFAULTS as DEFAULT_CONFIG

NAMES = list(ID2LABEL.values())  # negative, neutral, positive: the tiny teacher's labels
FAST = {"max_steps": 2, "latency_batches": 0, "max_length": 24, "disable_tqdm": True}


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) for _ in range(n)]


def _names(n: int) -> list[str]:
    return [NAMES[i % 3] for i in range(n)]


@pytest.fixture
def teacher_dir(tmp_path, tiny_tokenizer):
    """A fine-tuned-looking tiny classifier saved with its tokenizer, as a path teacher."""
    folder = tmp_path / "teacher"
    tiny_bert(seed=1).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_list_of_texts_save_and_pipeline_returns_the_teachers_label_names(tiny_tokenizer, tmp_path):
    texts, labels = _texts(24), _names(24)
    result = distill(
        tiny_bert(),
        texts,
        eval_data=texts[:9],
        labels=labels,
        eval_labels=labels[:9],
        tokenizer=tiny_tokenizer,
        student_layers=2,
        **FAST,
    )
    assert isinstance(result, DistillationResult)
    assert result.trainer.state.global_step == 2
    # Labels given as names reach the trainer as the teacher's ids.
    assert result.trainer.train_dataset["label"][:6] == [0, 1, 2, 0, 1, 2]

    folder = result.save(tmp_path / "student")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json"):
        assert (folder / name).is_file(), name
    assert (folder / "distillation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "2-layer student" in card
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["student_layers"] == 2 and metrics["label_names"] == NAMES

    classifier = pipeline("text-classification", model=str(folder))
    predictions = classifier(["good movie", "bad plot and boring actor", "the market"])
    assert len(predictions) == 3
    assert {p["label"] for p in predictions} <= set(NAMES)
    scores = classifier("good movie", top_k=None)
    assert sorted(s["label"] for s in scores) == sorted(NAMES)


def test_save_without_model_card(tiny_tokenizer, tmp_path):
    result = distill(tiny_bert(), _texts(6), labels=_names(6), tokenizer=tiny_tokenizer, **FAST)
    folder = result.save(tmp_path / "s", model_card=False)
    assert not (folder / "README.md").exists()
    assert (folder / "metrics.json").is_file()


def test_dataframe_with_label_names_in_any_order_and_custom_columns(tiny_tokenizer):
    frame = pd.DataFrame(
        {
            "review": _texts(12),
            "sentiment": ["positive", "negative", "neutral", "positive"] * 3,
            "ignored": range(12),
        }
    )
    result = distill(
        tiny_bert(),
        frame,
        frame.iloc[:6],
        tokenizer=tiny_tokenizer,
        text_column="review",
        label_column="sentiment",
        **FAST,
    )
    assert result.trainer.train_dataset["label"][:4] == [2, 0, 1, 2]
    assert result.trainer.eval_dataset.num_rows == 6
    assert "ignored" not in result.trainer.train_dataset.column_names


def test_dataframe_with_integer_ids_and_float_ids_from_pandas(tiny_tokenizer):
    # pandas stores an int column holding a missing value as floats; whole floats are ids.
    frame = pd.DataFrame({"text": _texts(6), "label": [2.0, 1.0, 0.0, 2.0, 1.0, 0.0]})
    result = distill(tiny_bert(), frame, tokenizer=tiny_tokenizer, **FAST)
    assert result.trainer.train_dataset["label"] == [2, 1, 0, 2, 1, 0]


def test_dataset_with_classlabel_is_mapped_by_name_not_by_id(tiny_tokenizer):
    # The data numbers its classes differently from the teacher: names decide.
    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["positive", "negative", "neutral"]),
        }
    )
    data = datasets.Dataset.from_dict({"text": _texts(6), "label": [0, 1, 2, 0, 1, 2]}, features)
    result = distill(tiny_bert(), data, tokenizer=tiny_tokenizer, **FAST)
    assert result.trainer.train_dataset["label"] == [2, 0, 1, 2, 0, 1]
    assert result.trainer.train_dataset.features["label"].names == NAMES
    assert result.student.config.id2label == ID2LABEL


def test_series_and_arrays_of_texts(tiny_tokenizer):
    frame = pd.DataFrame({"text": _texts(6), "label": _names(6)})
    result = distill(
        tiny_bert(), frame["text"], labels=frame["label"], tokenizer=tiny_tokenizer, **FAST
    )
    assert result.trainer.train_dataset["label"] == [0, 1, 2, 0, 1, 2]
    result = distill(
        tiny_bert(),
        np.array(_texts(3)),
        labels=np.array([2, 1, 0]),
        tokenizer=tiny_tokenizer,
        **FAST,
    )
    assert result.trainer.train_dataset["label"] == [2, 1, 0]


def test_dict_of_columns(tiny_tokenizer):
    data = {"text": _texts(6), "label": _names(6)}
    result = distill(tiny_bert(), data, tokenizer=tiny_tokenizer, **FAST)
    assert result.trainer.train_dataset.num_rows == 6


def test_pair_columns_are_tokenized_as_pairs(tiny_tokenizer):
    frame = pd.DataFrame(
        {"first": _texts(8, seed=1), "second": _texts(8, seed=2), "label": _names(8)}
    )
    result = distill(
        tiny_bert(), frame, tokenizer=tiny_tokenizer, text_column=("first", "second"), **FAST
    )
    row = result.trainer.train_dataset[0]
    expected = tiny_tokenizer(frame["first"][0], frame["second"][0], truncation=True, max_length=24)
    assert row["input_ids"] == expected["input_ids"]
    assert row["input_ids"].count(tiny_tokenizer.sep_token_id) == 2
    assert 1 in row["token_type_ids"]


def test_list_of_pairs_gets_default_column_names(tiny_tokenizer):
    pairs = list(zip(_texts(6, seed=1), _texts(6, seed=2), strict=True))
    result = distill(tiny_bert(), pairs, labels=_names(6), tokenizer=tiny_tokenizer, **FAST)
    assert 1 in result.trainer.train_dataset[0]["token_type_ids"]


def test_unknown_labels_raise_with_both_label_sets(tiny_tokenizer):
    labels = ["positive", "great", "negative", "awful"]
    with pytest.raises(ValueError) as error:
        distill(tiny_bert(), _texts(4), labels=labels, tokenizer=tiny_tokenizer, **FAST)
    message = str(error.value)
    assert "does not know: 'great', 'awful'. " in message
    assert "{0: 'negative', 1: 'neutral', 2: 'positive'}" in message


def test_out_of_range_id_is_unknown(tiny_tokenizer):
    frame = pd.DataFrame({"text": _texts(3), "label": [0, 1, 3]})
    with pytest.raises(ValueError, match=r"does not know: 3\. .*ids 0\.\.2"):
        distill(tiny_bert(), frame, tokenizer=tiny_tokenizer, **FAST)


def test_missing_label_raises(tiny_tokenizer):
    frame = pd.DataFrame({"text": _texts(3), "label": ["negative", None, "positive"]})
    with pytest.raises(ValueError, match=r"1 example\(s\) have no label \(first: row 1\)"):
        distill(tiny_bert(), frame, tokenizer=tiny_tokenizer, **FAST)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_data": ["a good movie"]}, "list of texts: pass their labels"),
        ({"train_data": ["good", "bad"], "labels": ["negative"]}, "2 texts but labels holds 1"),
        (
            {"train_data": pd.DataFrame({"text": ["good"], "label": [0]}), "labels": [0]},
            "labels= is for a list of texts",
        ),
        (
            {"train_data": pd.DataFrame({"txt": ["good"], "label": [0]})},
            r"no column\(s\) \['text'\]",
        ),
        ({"train_data": ["good"], "labels": [0], "text_column": ("a", "b", "c")}, "one column"),
        ({"train_data": ["good"], "labels": [0], "text_column": ("a", "b")}, "pairs of texts"),
        ({"train_data": ["good"], "labels": [0], "eval_labels": [0]}, "without eval_data"),
        ({"train_data": 42}, "must be a datasets.Dataset"),
        ({"train_data": ["good", "bad"], "labels": ["negative", 2]}, "mixes label names and"),
    ],
)
def test_bad_data_raises(tiny_tokenizer, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        distill(tiny_bert(), tokenizer=tiny_tokenizer, **kwargs, **FAST)


def test_datasetdict_asks_for_a_split(tiny_tokenizer):
    data = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"text": ["a"], "label": [0]})}
    )
    with pytest.raises(ValueError, match=r"pass one split, e.g. train_data=data\['train'\]"):
        distill(tiny_bert(), data, tokenizer=tiny_tokenizer, **FAST)


def test_student_layers_explicit_list_and_int(tiny_tokenizer):
    texts, labels = _texts(6), _names(6)
    result = distill(
        tiny_bert(), texts, labels=labels, tokenizer=tiny_tokenizer, student_layers=[0, 3], **FAST
    )
    assert result.student.config.nlpkd_teacher_layers == [0, 3]
    assert result.report["student_layers"] == 2 and result.report["teacher_layers"] == [0, 3]
    result = distill(
        tiny_bert(), texts, labels=labels, tokenizer=tiny_tokenizer, student_layers=1, **FAST
    )
    assert result.student.config.num_hidden_layers == 1
    # Default: half the teacher's four layers.
    result = distill(tiny_bert(), texts, labels=labels, tokenizer=tiny_tokenizer, **FAST)
    assert result.student.config.nlpkd_teacher_layers == [0, 3]


def test_report_keys_and_values(tiny_tokenizer):
    texts, labels = _texts(12), _names(12)
    result = distill(
        tiny_bert(),
        texts,
        texts[:6],
        labels=labels,
        eval_labels=labels[:6],
        tokenizer=tiny_tokenizer,
        max_steps=2,
        max_length=16,
        disable_tqdm=True,
    )
    report = result.report
    expected = {
        "teacher",
        "student",
        "main_metric",
        "main_split",
        "retention",
        "teacher_params",
        "student_params",
        "param_reduction",
        "teacher_size_mb",
        "student_size_mb",
        "size_ratio",
        "device",
        "torch_threads",
        "teacher_latency_ms",
        "student_latency_ms",
        "speedup",
        "latency_batch_shape",
        "latency_num_batches",
        "task",
        "teacher_name",
        "teacher_layers",
        "student_layers",
        "label_names",
        "distillation",
        "train_examples",
    }
    assert expected <= set(report)
    assert report["main_metric"] == "accuracy" and report["main_split"] == "validation"
    assert set(report["teacher"]) == {"validation"}
    assert 0.0 <= report["student"]["validation"]["accuracy"] <= 1.0
    # Six evaluation texts, padded to max_length: one latency batch of 6 x 16.
    assert report["latency_batch_shape"] == [6, 16] and report["latency_num_batches"] == 1
    assert report["student_params"] < report["teacher_params"]
    assert report["train_examples"] == 12
    assert report["distillation"]["temperature"] == DistillationConfig.temperature
    # The teacher's accuracy on the eval texts, computed by hand.
    encoded = tiny_tokenizer(texts[:6], padding=True, return_tensors="pt")
    with torch.no_grad():
        predicted = result.teacher(**encoded).logits.argmax(-1).tolist()
    gold = [NAMES.index(name) for name in labels[:6]]
    by_hand = float(np.mean([p == g for p, g in zip(predicted, gold, strict=True)]))
    assert report["teacher"]["validation"]["accuracy"] == pytest.approx(by_hand)


def test_without_eval_data_the_report_is_on_the_training_data(tiny_tokenizer):
    result = distill(tiny_bert(), _texts(6), labels=_names(6), tokenizer=tiny_tokenizer, **FAST)
    assert result.report["main_split"] == "train"
    assert set(result.report["student"]) == {"train"}
    assert result.trainer.eval_dataset is None


def test_training_changes_the_student_not_the_teacher(tiny_tokenizer):
    teacher = tiny_bert()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    result = distill(teacher, _texts(8), labels=_names(8), tokenizer=tiny_tokenizer, **FAST)
    assert result.teacher is teacher
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    # Student layer 1 started as teacher layer 2: training moved it.
    student_weight = result.student.bert.encoder.layer[1].attention.self.query.weight
    teacher_weight = before["bert.encoder.layer.2.attention.self.query.weight"]
    assert not torch.allclose(student_weight, teacher_weight)
    assert not result.student.training


def test_settings_go_to_the_config_and_conflicts_raise(tiny_tokenizer, tmp_path):
    from nlpkd import DistillationConfig

    texts, labels = _texts(4), _names(4)
    result = distill(
        tiny_bert(),
        texts,
        labels=labels,
        tokenizer=tiny_tokenizer,
        temperature=4.0,
        output_dir=str(tmp_path / "run"),
        **FAST,
    )
    assert result.trainer.args.temperature == 4.0
    assert result.trainer.args.learning_rate == DEFAULT_CONFIG["learning_rate"]
    assert result.trainer.args.output_dir == str(tmp_path / "run")

    args = DistillationConfig(output_dir=str(tmp_path / "a"), max_steps=1, alpha_kd=1.0)
    result = distill(
        tiny_bert(),
        texts,
        labels=labels,
        tokenizer=tiny_tokenizer,
        args=args,
        latency_batches=0,
    )
    assert result.trainer.args is args and result.trainer.state.global_step == 1
    with pytest.raises(
        ValueError, match=r"both args=DistillationConfig\(...\) and the settings \['temperature'\]"
    ):
        distill(
            tiny_bert(), texts, labels=labels, tokenizer=tiny_tokenizer, args=args, temperature=3.0
        )
    with pytest.raises(ValueError, match="goes to|go to DistillationConfig"):
        distill(tiny_bert(), texts, labels=labels, tokenizer=tiny_tokenizer, not_a_field=1, **FAST)


def test_student_and_student_layers_conflict(tiny_tokenizer):
    with pytest.raises(ValueError, match="either student .* or student_layers"):
        distill(
            tiny_bert(),
            _texts(2),
            labels=_names(2),
            tokenizer=tiny_tokenizer,
            student=tiny_bert(num_hidden_layers=2),
            student_layers=2,
            **FAST,
        )


def test_given_student_model_and_student_path(tiny_tokenizer, tmp_path):
    student = tiny_bert(seed=3, num_hidden_layers=1)
    result = distill(
        tiny_bert(), _texts(4), labels=_names(4), tokenizer=tiny_tokenizer, student=student, **FAST
    )
    assert result.student is student and result.report["teacher_layers"] is None
    # A path is loaded with the teacher's label names.
    tiny_bert(seed=3, num_hidden_layers=1, id2label=None, label2id=None).save_pretrained(
        tmp_path / "s"
    )
    result = distill(
        tiny_bert(),
        _texts(4),
        labels=_names(4),
        tokenizer=tiny_tokenizer,
        student=str(tmp_path / "s"),
        **FAST,
    )
    assert result.student.config.id2label == ID2LABEL


def test_teacher_path_loads_model_and_tokenizer(teacher_dir):
    result = distill(str(teacher_dir), _texts(4), labels=_names(4), **FAST)
    assert result.report["teacher_name"] == str(teacher_dir)
    assert result.tokenizer.get_vocab()["good"] == 7


def test_teacher_path_that_is_not_a_classifier_raises(tmp_path, tiny_tokenizer):
    from conftest import tiny_bert_config

    torch.manual_seed(0)
    BertModel(tiny_bert_config()).save_pretrained(tmp_path / "base")
    with pytest.raises(ValueError, match=r"not a fine-tuned sequence classifier .*nlpkd\.finetune"):
        distill(str(tmp_path / "base"), _texts(2), labels=[0, 1], tokenizer=tiny_tokenizer)


def test_missing_teacher_folder_says_so(tmp_path, tiny_tokenizer):
    with pytest.raises(ValueError, match=r"teacher .*nope does not exist"):
        distill(str(tmp_path / "nope"), _texts(2), labels=[0, 1], tokenizer=tiny_tokenizer)


def test_max_length_is_capped_at_the_tokenizers_maximum(tiny_tokenizer):
    # The tiny tokenizer (and model) stop at 64 positions; the latency batches must too.
    result = distill(
        tiny_bert(),
        [" ".join(WORDS * 3)] * 4,
        labels=_names(4),
        tokenizer=tiny_tokenizer,
        max_length=500,
        max_steps=1,
        disable_tqdm=True,
    )
    assert len(result.trainer.train_dataset[0]["input_ids"]) == 64
    assert result.report["latency_batch_shape"] == [4, 64]


def test_in_memory_teacher_without_a_name_asks_for_a_tokenizer():
    with pytest.raises(ValueError, match=r"pass tokenizer=\.\.\."):
        distill(tiny_bert(), _texts(2), labels=[0, 1], **FAST)


def test_generic_teacher_takes_the_datas_classlabel_names(tiny_tokenizer):
    teacher = tiny_bert(id2label=None, label2id=None)
    assert teacher.config.id2label[0] == "LABEL_0"
    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["ham", "eggs", "spam"]),
        }
    )
    data = datasets.Dataset.from_dict({"text": _texts(6), "label": [0, 1, 2, 2, 1, 0]}, features)
    result = distill(teacher, data, tokenizer=tiny_tokenizer, **FAST)
    assert result.student.config.id2label == {0: "ham", 1: "eggs", 2: "spam"}
    assert result.report["label_names"] == ["ham", "eggs", "spam"]
    # Without names in the data, a generic teacher takes ids, and strings only as LABEL_i or digits.
    result = distill(
        teacher, _texts(3), labels=["LABEL_2", "1", "0"], tokenizer=tiny_tokenizer, **FAST
    )
    assert result.trainer.train_dataset["label"] == [2, 1, 0]
    with pytest.raises(ValueError, match="'spam'"):
        distill(teacher, _texts(2), labels=["spam", "0"], tokenizer=tiny_tokenizer, **FAST)


def test_custom_compute_metrics_sets_the_main_metric(tiny_tokenizer):
    def compute_metrics(prediction):
        predicted = prediction.predictions.argmax(-1)
        return {"hits": float((predicted == prediction.label_ids).sum()), "constant": 7.0}

    result = distill(
        tiny_bert(),
        _texts(6),
        labels=_names(6),
        tokenizer=tiny_tokenizer,
        compute_metrics=compute_metrics,
        **FAST,
    )
    assert result.report["main_metric"] == "hits"
    assert set(result.report["student"]["train"]) == {"hits", "constant"}
    assert result.report["teacher"]["train"]["constant"] == 7.0


def test_regression_teacher_uses_correlations(tiny_tokenizer):
    teacher = tiny_bert(num_labels=1, id2label=None, label2id=None, problem_type="regression")
    scores = [0.5, 1.0, 2.5, 4.0, 3.0, 1.5]
    result = distill(teacher, _texts(6), labels=scores, tokenizer=tiny_tokenizer, **FAST)
    assert result.report["main_metric"] == "pearson"
    assert set(result.report["student"]["train"]) == {"pearson", "spearmanr"}
    assert result.trainer.train_dataset["label"] == pytest.approx(scores)
    assert result.report["label_names"] is None
    with pytest.raises(ValueError, match="regression model"):
        distill(teacher, _texts(2), labels=["high", "low"], tokenizer=tiny_tokenizer, **FAST)


def test_finetune_names_the_head_with_the_datas_labels(tmp_path, tiny_tokenizer):
    from conftest import tiny_bert_config

    torch.manual_seed(0)
    BertModel(tiny_bert_config()).save_pretrained(tmp_path / "base")
    tiny_tokenizer.save_pretrained(tmp_path / "base")
    frame = pd.DataFrame({"text": _texts(8), "topic": ["spam", "ham"] * 4})
    teacher = finetune(
        str(tmp_path / "base"),
        frame,
        label_column="topic",
        max_length=24,
        output_dir=tmp_path / "teacher",
        disable_tqdm=True,
    )
    # Sorted names when the data gives only strings.
    assert teacher.config.id2label == {0: "ham", 1: "spam"}
    assert (tmp_path / "teacher" / "config.json").is_file()
    # The fine-tuned teacher feeds distill directly, with the tokenizer found from its path.
    result = distill(teacher, frame, label_column="topic", **FAST)
    assert result.student.config.id2label == {0: "ham", 1: "spam"}
    assert result.trainer.train_dataset["label"][:2] == [1, 0]

    teacher = finetune(
        str(tmp_path / "base"),
        _texts(4),
        labels=["b", "a", "c", "a"],
        label_names=["c", "b", "a"],
        max_length=24,
        disable_tqdm=True,
    )
    assert teacher.config.id2label == {0: "c", 1: "b", 2: "a"}
    teacher = finetune(
        str(tmp_path / "base"),
        _texts(4),
        labels=[0.5, 1.5, 2.5, 4.0],
        regression=True,
        max_length=24,
        disable_tqdm=True,
    )
    assert teacher.config.num_labels == 1 and teacher.config.problem_type == "regression"
    with pytest.raises(
        ValueError, match="does not know: 'd'.*add the missing names to label_names"
    ):
        finetune(str(tmp_path / "base"), _texts(2), labels=["a", "d"], label_names=["a", "b"])
    with pytest.raises(ValueError, match="single class"):
        finetune(str(tmp_path / "base"), _texts(2), labels=["a", "a"], disable_tqdm=True)


@pytest.mark.slow
def test_python_api_doc_snippets_run_in_order(tmp_path, monkeypatch):
    """docs/python-api.md promises that its snippets run, in order, in one session."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert len(blocks) == 12
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for index, block in enumerate(blocks):
        exec(compile(block, f"{doc}:python-block-{index}", "exec"), namespace)
    for name in (
        "config.json",
        "model.safetensors",
        "metrics.json",
        "README.md",
        "distillation.png",
    ):
        assert (tmp_path / "my-student" / name).is_file(), name
    assert (tmp_path / "my-student-full" / "model.safetensors").is_file()
    assert namespace["teacher"].config.id2label == {0: "business", 1: "sport", 2: "tech"}
    assert namespace["classifier"]("Shares rose.")[0]["label"] in {"business", "sport", "tech"}


def test_result_push_to_hub_uploads_the_saved_folder(tiny_tokenizer, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    seen = {}
    monkeypatch.setattr(
        HfApi, "create_repo", lambda self, repo_id, **kw: seen.setdefault("created", repo_id)
    )

    def upload(self, *, folder_path, repo_id, allow_patterns=None, **kw):
        seen["folder"], seen["repo"], seen["patterns"] = folder_path, repo_id, allow_patterns
        return type("Commit", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()

    monkeypatch.setattr(HfApi, "upload_folder", upload)
    texts, labels = _texts(12), _names(12)
    result = distill(
        tiny_bert(), texts, labels=labels, tokenizer=tiny_tokenizer, student_layers=2, **FAST
    )
    url = result.push_to_hub("someone/tiny", tmp_path / "out")
    assert url == "https://hub.example/someone/tiny/commit/1"
    assert seen["created"] == seen["repo"] == "someone/tiny"
    assert str(seen["folder"]) == str(tmp_path / "out")
    assert {"README.md", "config.json", "model.safetensors", "metrics.json"} <= set(
        seen["patterns"]
    )


def test_eval_strategy_of_the_caller_does_not_break_the_final_evaluation(tiny_tokenizer):
    # The job's own evaluation of teacher and student used to keep the caller's eval_strategy and fail
    # after training: it must switch the schedule off for its plain evaluation Trainer.
    def compute_metrics(prediction):
        return {"hits": float((prediction.predictions.argmax(-1) == prediction.label_ids).sum())}

    texts = _texts(8)
    result = distill(
        tiny_bert(),
        texts,
        texts[:4],
        labels=_names(8),
        eval_labels=_names(4),
        tokenizer=tiny_tokenizer,
        compute_metrics=compute_metrics,
        eval_strategy="epoch",
        num_train_epochs=1,
        per_device_train_batch_size=4,
        latency_batches=0,
        max_length=24,
        disable_tqdm=True,
    )
    assert result.report.main_metric == "hits"
    assert any(
        "eval_hits" in log for log in result.trainer.state.log_history
    )  # evaluated each epoch
    assert set(result.report["student"]["validation"]) == {"hits"}
