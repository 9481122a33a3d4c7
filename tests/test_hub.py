"""Tests for nlpkd.hub: model card metadata and body, the upload file rule, push failures, tokens.

No test reaches the network: `HfApi.create_repo` and `HfApi.upload_folder` are replaced by fakes
that record what would be sent.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

from nlpkd.hub import (
    HubPushError,
    build_model_card,
    files_to_upload,
    push_to_hub,
    write_model_card,
)

TOKEN = "hf_nlpkdTestSecretToken0123456789"
LOSS_CONFIG = {
    "temperature": 2.0,
    "alpha_kd": 0.5,
    "alpha_ce": 0.5,
    "alpha_hidden": 0.1,
    "alpha_attn": 0.0,
    "hidden_loss": "mse",
    "attn_loss": "kl",
}
REPORT = {
    "teacher": {"validation": {"accuracy": 0.9125, "f1": 0.9031}, "test": {"accuracy": 0.905}},
    "student": {"validation": {"accuracy": 0.8843, "f1": 0.8799}, "test": {"accuracy": 0.871}},
    "main_metric": "accuracy",
    "main_split": "validation",
    "retention": 0.8843 / 0.9125,
    "teacher_params": 109_484_547,
    "student_params": 66_957_315,
    "param_reduction": 1 - 66_957_315 / 109_484_547,
    "teacher_size_mb": 437.95,
    "student_size_mb": 267.84,
    "teacher_latency_ms": 120.5,
    "student_latency_ms": 61.3,
    "speedup": 120.5 / 61.3,
    "latency_batch_shape": [32, 128],
    "device": "cpu",
    "torch_threads": 2,
}


def _card(**overrides) -> ModelCard:
    kwargs = {
        "teacher_name": "textattack/bert-base-uncased-SST-2",
        "teacher_layers": [0, 2, 4, 7, 9, 11],
        "student_layers": 6,
        "loss_config": LOSS_CONFIG,
        "task_name": "sst2",
        "dataset_name": "nyu-mll/glue",
        "license": "apache-2.0",
        "model_name": "someone/bert-sst2-6L",
    }
    kwargs.update(overrides)
    return build_model_card(REPORT, **kwargs)


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
    assert {r.metric_type: r.metric_value for r in results} == REPORT["student"]["validation"]
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
        dataset_name=None, license=None, model_name=None, task_name=None, teacher_layers=None
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


def _make_output_dir(root: Path) -> tuple[Path, set[str]]:
    """An output directory as the CLI leaves it, and the files that belong on the Hub."""
    out = root / "student"
    uploaded = {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "README.md",
        "metrics.json",
        "nlpkd_config.yaml",
        "report.png",
        "report[1].png",  # wildcard characters in a name must match only that name
    }
    kept_local = {
        "training_args.bin",
        "trainer_state.json",
        "pytorch_model.bin",
        "optimizer.pt",
        "notes.txt",
        "checkpoint-10/model.safetensors",
        "checkpoint-10/config.json",
        "checkpoint-10/optimizer.pt",
        "runs/Nov23_16-00-00/events.out.tfevents.1.host",
        "runs/report.png",
    }
    for name in uploaded | kept_local:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"content of {name}".encode())
    return out, uploaded


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


class _FakeHub:
    """Stands in for the Hub: records calls and resolves upload patterns like upload_folder does."""

    def __init__(self, fail_on: str | None = None, message: str = "boom") -> None:
        self.fail_on, self.message = fail_on, message
        self.created: list[dict] = []
        self.uploads: list[dict] = []

    def install(self, monkeypatch) -> None:
        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.created.append({"repo_id": repo_id, **kwargs})
            if hub.fail_on == "create_repo":
                raise OSError(hub.message)
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(api, *, repo_id, folder_path, **kwargs):
            if hub.fail_on == "upload_folder":
                raise ConnectionError(hub.message)
            folder = Path(folder_path)
            every_file = [
                str(p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_file()
            ]
            ignore = list(kwargs.get("ignore_patterns") or []) + DEFAULT_IGNORE_PATTERNS
            files = set(
                filter_repo_objects(
                    every_file, allow_patterns=kwargs.get("allow_patterns"), ignore_patterns=ignore
                )
            )
            hub.uploads.append({"repo_id": repo_id, "files": files, **kwargs})
            return f"https://huggingface.co/{repo_id}/commit/abc123"

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)


def test_files_to_upload_is_the_documented_rule(tmp_path):
    out, uploaded = _make_output_dir(tmp_path)
    assert set(files_to_upload(out)) == uploaded


def test_push_uploads_exactly_the_model_files(tmp_path, monkeypatch):
    out, uploaded = _make_output_dir(tmp_path)
    hub = _FakeHub()
    hub.install(monkeypatch)
    url = push_to_hub(out, "someone/bert-sst2-6L", token=TOKEN, private=True, commit_message="v1")
    assert url == "https://huggingface.co/someone/bert-sst2-6L/commit/abc123"
    assert hub.created == [
        {
            "repo_id": "someone/bert-sst2-6L",
            "token": TOKEN,
            "private": True,
            "repo_type": "model",
            "exist_ok": True,
        }
    ]
    (upload,) = hub.uploads
    assert upload["repo_id"] == "someone/bert-sst2-6L"
    assert upload["files"] == uploaded
    assert upload["commit_message"] == "v1"
    assert upload["token"] == TOKEN


@pytest.mark.parametrize(
    ("fail_on", "step"),
    [("create_repo", "creating the repository"), ("upload_folder", "uploading the files")],
)
def test_failed_push_names_repo_and_failure_and_keeps_the_directory(
    tmp_path, monkeypatch, fail_on, step
):
    out, _ = _make_output_dir(tmp_path)
    before = _snapshot(out)
    hub = _FakeHub(fail_on=fail_on, message="503 Service Unavailable")
    hub.install(monkeypatch)
    with pytest.raises(HubPushError) as excinfo:
        push_to_hub(out, "someone/bert-sst2-6L", token=TOKEN)
    message = str(excinfo.value)
    assert isinstance(excinfo.value, RuntimeError)
    assert "'someone/bert-sst2-6L'" in message
    assert f"failed while {step}" in message
    assert "503 Service Unavailable" in message
    assert f"the output directory is intact at {out.resolve()}" in message
    assert _snapshot(out) == before
    if fail_on == "create_repo":
        assert hub.uploads == []


def test_token_is_never_logged_or_written(tmp_path, monkeypatch, caplog, capsys):
    out, _ = _make_output_dir(tmp_path)
    caplog.set_level(logging.DEBUG)
    _FakeHub().install(monkeypatch)
    push_to_hub(out, "someone/bert-sst2-6L", token=TOKEN)
    # A failure whose text echoes the token must not leak it either.
    _FakeHub(fail_on="upload_folder", message=f"401 Unauthorized for token {TOKEN}").install(
        monkeypatch
    )
    with pytest.raises(HubPushError) as excinfo:
        push_to_hub(out, "someone/bert-sst2-6L", token=TOKEN)
    captured = capsys.readouterr()
    assert "someone/bert-sst2-6L" in caplog.text, "the push should be logged (without the token)"
    assert TOKEN not in caplog.text
    assert TOKEN not in captured.out and TOKEN not in captured.err
    assert TOKEN not in str(excinfo.value)
    assert "401 Unauthorized for token ***" in str(excinfo.value)
    for path in out.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_push_refuses_a_directory_without_weights(tmp_path, monkeypatch):
    hub = _FakeHub()
    hub.install(monkeypatch)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickled")
    with pytest.raises(ValueError, match=r"has no config.json and \*.safetensors weights"):
        push_to_hub(tmp_path, "someone/model")
    with pytest.raises(ValueError, match="is not a directory"):
        push_to_hub(tmp_path / "missing", "someone/model")
    with pytest.raises(ValueError, match="is not a Hub repo id"):
        push_to_hub(tmp_path, "a/b/c")
    assert hub.created == [] and hub.uploads == []


def test_trainer_push_to_hub_writes_the_nlpkd_card(tmp_path):
    """The Trainer's own push_to_hub path (args.push_to_hub) calls create_model_card: it must be ours."""
    from conftest import random_dataset, tiny_bert
    from huggingface_hub import ModelCard

    from nlpkd import DistillationConfig, DistillationTrainer, create_student

    teacher = tiny_bert(seed=1)
    teacher.config._name_or_path = "someone/tiny-teacher"
    student = create_student(teacher, num_layers=2)
    args = DistillationConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
    )
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=random_dataset(4, 8),
        eval_dataset=random_dataset(4, 8, seed=2),
        compute_metrics=lambda p: {
            "accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())
        },
    )
    trainer.train()
    accuracy = trainer.evaluate()["eval_accuracy"]
    trainer.create_model_card(license="apache-2.0")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "someone/tiny-teacher"
    assert {"distillation", "nlpkd"} <= set(card.data.tags)
    assert card.data.license == "apache-2.0"
    assert card.data.eval_results[0].metric_type == "accuracy"
    assert card.data.eval_results[0].metric_value == pytest.approx(accuracy)
    assert "teacher layers [0, 2]" in card.text or "[0, 2]" in card.text


def test_local_teacher_paths_stay_out_of_the_card_metadata(tmp_path):
    from conftest import packaged_minilm_dir
    from huggingface_hub import ModelCard

    from nlpkd.api import PACKAGED_MINILM_HUB_ID, hub_name

    assert hub_name(str(packaged_minilm_dir())) == PACKAGED_MINILM_HUB_ID
    assert hub_name("bert-base-uncased") == "bert-base-uncased"
    report = {
        "student": {"validation": {"accuracy": 0.9}},
        "main_split": "validation",
        "main_metric": "accuracy",
    }
    local = build_model_card(
        report, teacher_name=str(tmp_path), teacher_layers=None, student_layers=2, loss_config={}
    )
    write_model_card(local, tmp_path / "card")
    assert ModelCard.load(tmp_path / "card" / "README.md").data.base_model is None
    hub = build_model_card(
        report,
        teacher_name="someone/teacher",
        teacher_layers=None,
        student_layers=2,
        loss_config={},
    )
    assert hub.data.base_model == "someone/teacher"
