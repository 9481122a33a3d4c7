"""Tests for nlpkd.hub: the upload file rule, push failures, tokens, and the Trainer's own push path.

No test reaches the network: `HfApi.create_repo` and `HfApi.upload_folder` are replaced by fakes
that record what would be sent.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

from nlpkd.hub import HubPushError, files_to_upload, push_to_hub

TOKEN = "hf_nlpkdTestSecretToken0123456789"


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
    # A trainer used on its own writes the Trainer's card, tagged and naming the teacher as base model.
    trainer.create_model_card(license="apache-2.0")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "someone/tiny-teacher"
    assert {"distillation", "nlpkd"} <= set(card.data.tags)
    assert card.data.license == "apache-2.0"
    assert (
        f"- Accuracy: {round(accuracy, 4)}" in card.text
    )  # the Trainer's summary of the evaluation
    # A job's trainer (DistillationResult) writes nlpkd's card from the job's report instead.
    written = []
    trainer.model_card_writer = written.append
    trainer.create_model_card()
    assert written == [str(tmp_path)]
