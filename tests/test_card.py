"""Tests for nlpkd.card: the model card's metadata and body, rendered from a Report."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from nlpkd.report import Report, Variant, build_model_card, write_model_card

LOSS_CONFIG = {
    "temperature": 2.0,
    "alpha_kd": 0.5,
    "alpha_ce": 0.5,
    "alpha_hidden": 0.1,
    "alpha_attn": 0.0,
    "hidden_loss": "mse",
    "attn_loss": "kl",
}
TEACHER = {"validation": {"accuracy": 0.9125, "f1": 0.9031}, "test": {"accuracy": 0.905}}
STUDENT = {"validation": {"accuracy": 0.8843, "f1": 0.8799}, "test": {"accuracy": 0.871}}
REPORT = Report(
    main_metric="accuracy",
    main_split="validation",
    variants=[
        Variant("teacher", TEACHER, 109_484_547, 437.95, 120.5),
        Variant("student", STUDENT, 66_957_315, 267.84, 61.3),
    ],
    task="sst2",
    teacher_name="textattack/bert-base-uncased-SST-2",
    teacher_layers=[0, 2, 4, 7, 9, 11],
    student_layers=6,
    distillation=LOSS_CONFIG,
    device="cpu",
    torch_threads=2,
    latency_batch_shape=[32, 128],
    latency_num_batches=4,
)
CARD_OPTIONS = ("dataset_name", "license", "model_name", "command")


def _card(**overrides) -> ModelCard:
    options = {
        "dataset_name": "nyu-mll/glue",
        "license": "apache-2.0",
        "model_name": "someone/bert-sst2-6L",
    }
    options.update({k: v for k, v in overrides.items() if k in CARD_OPTIONS})
    report = dataclasses.replace(
        REPORT, **{k: v for k, v in overrides.items() if k not in CARD_OPTIONS}
    )
    return build_model_card(report, **options)


def test_model_card_metadata_round_trip(tmp_path):
    card = _card()
    path = write_model_card(card, tmp_path / "out")
    assert path == tmp_path / "out" / "README.md"
    loaded = ModelCard.load(path)
    assert loaded.data.to_dict() == card.data.to_dict()

    data = loaded.data
    assert data.base_model == "textattack/bert-base-uncased-SST-2"
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "text-classification"
    assert {"distillation", "nlpkd", "text-classification"} <= set(data.tags)
    assert data.datasets == ["nyu-mll/glue"]
    assert data.license == "apache-2.0"


def test_model_index_holds_the_student_results_on_the_main_split(tmp_path):
    path = write_model_card(_card(), tmp_path)
    front_matter = path.read_text().split("---\n")[1]
    metadata = yaml.safe_load(front_matter)
    name, results = model_index_to_eval_results(metadata["model-index"])
    assert name == "someone/bert-sst2-6L"
    assert {r.metric_type: r.metric_value for r in results} == STUDENT["validation"]
    for result in results:
        assert result.task_type == "text-classification"
        assert result.dataset_type == "nyu-mll/glue"
        assert result.dataset_config == "sst2"
        assert result.dataset_split == "validation"
    loaded = ModelCard.load(path)
    assert [(r.metric_type, r.metric_value) for r in loaded.data.eval_results] == [
        ("accuracy", 0.8843),
        ("f1", 0.8799),
    ]


def test_model_card_body_has_the_table_settings_and_usage():
    text = _card(command="nlpkd --task sst2 --student_layers 6").text
    for row in (
        "| accuracy (validation) | 0.9125 | 0.8843 | 0.97 |",
        "| f1 (validation) | 0.9031 | 0.8799 | 0.97 |",
        "| accuracy (test) | 0.9050 | 0.8710 | 0.96 |",
        "| parameters | 109,484,547 | 66,957,315 | 0.61x |",
        "| size on disk (MB) | 437.95 | 267.84 | 0.61x |",
        "| latency (ms per batch) | 120.50 | 61.30 | 0.51x |",
        "| speed-up (teacher / student latency) | | | 1.97x |",
        "| retention (accuracy, validation) | | | 96.9% |",
    ):
        assert row in text, row
    for setting in (
        "| `temperature` | 2 |",
        "| `alpha_kd` | 0.5 |",
        "| `alpha_ce` | 0.5 |",
        "| `alpha_hidden` | 0.1 |",
        "| `alpha_attn` | 0 |",
        "| `hidden_loss` | `mse` |",
        "| `attn_loss` | `kl` |",
    ):
        assert setting in text, setting
    assert "teacher layers [0, 2, 4, 7, 9, 11] of `textattack/bert-base-uncased-SST-2`" in text
    assert 'pipeline("text-classification", model="someone/bert-sst2-6L")' in text
    assert "nlpkd --task sst2 --student_layers 6" in text


def test_model_card_defaults_without_dataset_or_license():
    card = _card(
        dataset_name=None, license=None, model_name=None, task="custom", teacher_layers=None
    )
    data = card.data.to_dict()
    assert "datasets" not in data and "license" not in data
    assert data["model-index"][0]["name"] == "bert-base-uncased-SST-2-nlpkd-6L"
    assert "not initialised from teacher layers" in card.text


def test_model_card_rejects_layer_count_mismatch():
    with pytest.raises(
        ValueError, match=r"teacher_layers lists 2 layers \(\[0, 2\]\) but the student has 6"
    ):
        _card(teacher_layers=[0, 2])


def test_local_teacher_paths_stay_out_of_the_card_metadata(tmp_path):
    from conftest import packaged_minilm_dir
    from huggingface_hub import ModelCard

    from nlpkd.models import PACKAGED_MINILM_HUB_ID, hub_name

    assert hub_name(str(packaged_minilm_dir())) == PACKAGED_MINILM_HUB_ID
    assert hub_name("bert-base-uncased") == "bert-base-uncased"
    local = _card(teacher_name=str(tmp_path), teacher_layers=None, student_layers=2)
    write_model_card(local, tmp_path / "card")
    assert ModelCard.load(tmp_path / "card" / "README.md").data.base_model is None
    hub = _card(teacher_name="someone/teacher", teacher_layers=None, student_layers=2)
    assert hub.data.base_model == "someone/teacher"


def test_deployed_forms_get_their_own_table():
    assert "## Deployed forms" not in _card().text
    int8 = Variant("student-int8", {"validation": {"accuracy": 0.88}}, 66_957_315, 70.0, 30.0)
    text = _card(variants=[*REPORT.variants, int8]).text
    assert "## Deployed forms" in text
    size_ratio = f"{70.0 / 437.95:.3f}"
    assert (
        f"| student-int8 | 0.8800 | 66,957,315 | 70.00 | 30.00 | 4.02x | {size_ratio} | 96.4% |"
        in text
    )
    assert "| teacher | 0.9125 | 109,484,547 | 437.95 | 120.50 | 1.00x | 1.000 | 100.0% |" in text
    assert "load_quantized" not in text  # no deployment entry: no notes or snippet


def test_deployed_forms_say_where_they_are_and_what_pruning_changed():
    int8 = Variant("student-int8", {"validation": {"accuracy": 0.88}}, 66_957_315, 70.0, 30.0)
    pruned = Variant(
        "student-pruned", {"validation": {"accuracy": 0.8843}}, 40_000_000, 160.0, 61.0
    )
    onnx = Variant("student-pruned-onnx-int8", {"validation": {"accuracy": 0.88}}, 40_000_000, 40.0)
    deployment = {
        "folder": "deploy",
        "forms": ["student-int8", "student-pruned", "student-pruned-onnx-int8"],
        "vocabulary": {
            "texts": ["train", "validation"],
            "tokens": 13_828,
            "tokens_before": 30_522,
            "split": "validation",
            "examples": 872,
            "changed_predictions": 0,
            "train_texts_only": {"tokens": 12_914, "changed_predictions": 4},
        },
    }
    text = _card(
        variants=[*REPORT.variants, int8, pruned, onnx], extra={"deployment": deployment}
    ).text
    assert "| student-pruned-onnx-int8 | 0.8800 | 40,000,000 | 40.00 | - | - |" in text
    assert "kept 13,828 of 30,522 tokens, those of the train and validation texts" in text
    assert "it changed 0 of 872 validation predictions" in text
    assert "alone (12,914 tokens) it would change 4 of them" in text
    assert 'model = load_quantized("deploy/student-int8")' in text
    assert 'AutoModelForSequenceClassification.from_pretrained("deploy/student-pruned")' in text
    assert 'session = load_onnx("deploy/student-pruned-onnx-int8")' in text
