"""Resume after interruption reaches the same student; kills and signals leave resumable checkpoints."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import random_dataset, tiny_bert, tiny_distilbert_student
from safetensors.torch import load_file
from transformers import TrainerCallback

from nlpkd import DistillationConfig, DistillationTrainer, create_student
from nlpkd.trainer import last_complete_checkpoint

WORKER = Path(__file__).parent / "_train_worker.py"


class StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def make_trainer(tmp_path, name, variant, tokenizer, callbacks=()):
    teacher = tiny_bert(seed=1)
    if variant == "projections":
        student, extra = tiny_distilbert_student(), {"alpha_hidden": 1.0}
    else:
        student, extra = create_student(teacher, 2), {"teacher_cache": True}
    args = DistillationConfig(
        output_dir=str(tmp_path / name),
        max_steps=6,
        per_device_train_batch_size=4,
        save_strategy="steps",
        save_steps=3,
        logging_steps=1,
        learning_rate=1e-3,
        report_to=[],
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
        teacher_cache_dir=str(tmp_path / "cache"),
        **extra,
    )
    return DistillationTrainer(
        model=student,
        teacher=teacher,
        args=args,
        processing_class=tokenizer,
        train_dataset=random_dataset(20, 8),
        callbacks=list(callbacks),
    )


@pytest.mark.parametrize("variant", ["teacher_cache", "projections"])
def test_interrupted_and_resumed_run_matches_uninterrupted_run(tmp_path, tiny_tokenizer, variant):
    straight = make_trainer(tmp_path, "straight", variant, tiny_tokenizer)
    straight.train()

    first = make_trainer(tmp_path, "resumed", variant, tiny_tokenizer, callbacks=[StopAt(3)])
    first.train()
    assert first.state.global_step == 3
    second = make_trainer(tmp_path, "resumed", variant, tiny_tokenizer)
    if variant == "projections":  # fresh projections differ until the checkpoint restores them
        with torch.no_grad():
            for p in second.projections.parameters():
                p.add_(1.0)
    second.train(resume_from_checkpoint=True)
    assert second.state.global_step == 6

    for (name, a), b in zip(
        straight.model.state_dict().items(), second.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=name)
    for a, b in zip(
        straight.projections.parameters(), second.projections.parameters(), strict=True
    ):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)


def test_same_seed_same_student(tmp_path, tiny_tokenizer):
    runs = []
    for name in ("a", "b"):
        trainer = make_trainer(tmp_path, name, "teacher_cache", tiny_tokenizer)
        trainer.train()
        runs.append(trainer.model.state_dict())
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key


def test_half_written_checkpoint_is_moved_aside_and_not_resumed(tmp_path, tiny_tokenizer):
    first = make_trainer(tmp_path, "run", "teacher_cache", tiny_tokenizer, callbacks=[StopAt(3)])
    first.train()
    out = tmp_path / "run"
    # What a SIGKILL during the next save leaves: a newer folder with a truncated model and no state file.
    broken = out / "checkpoint-5"
    shutil.copytree(out / "checkpoint-3", broken)
    (broken / "trainer_state.json").unlink()
    (broken / "model.safetensors").write_bytes((broken / "model.safetensors").read_bytes()[:100])
    assert last_complete_checkpoint(out) == str(out / "checkpoint-3")

    second = make_trainer(tmp_path, "run", "teacher_cache", tiny_tokenizer)
    second.train(resume_from_checkpoint=True)
    assert second.state.global_step == 6
    assert not broken.exists() and (out / "checkpoint-5.incomplete").is_dir()
    assert set(load_file(out / "checkpoint-6" / "model.safetensors")) == set(
        second.model.state_dict()
    )


def test_resume_without_a_complete_checkpoint_says_so(tmp_path, tiny_tokenizer):
    trainer = make_trainer(tmp_path, "empty", "teacher_cache", tiny_tokenizer)
    with pytest.raises(ValueError, match="holds no complete checkpoint"):
        trainer.train(resume_from_checkpoint=True)


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_sigkill_leaves_a_resumable_run(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(out), "12"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(lambda: (out / "checkpoint-3" / "trainer_state.json").exists())
        proc.kill()  # SIGKILL: no handler runs, whatever was being written stays half-written
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    complete = last_complete_checkpoint(out)
    assert complete is not None
    load_file(Path(complete) / "model.safetensors")  # loadable
    resumed = subprocess.run(
        [sys.executable, str(WORKER), str(out), "12", "resume"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "done 12" in resumed.stdout
    assert not [
        p
        for p in out.iterdir()
        if p.name.startswith("checkpoint-")
        and p.name[11:].isdigit()
        and not (p / "trainer_state.json").exists()
    ]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_cleanly_after_saving(tmp_path, sig):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(out), "40"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert wait_for(lambda: (out / "checkpoint-2" / "trainer_state.json").exists())
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    assert f"stopped by {sig.name} at step" in stdout
    step = int(stdout.split(f"stopped by {sig.name} at step ")[1].split()[0])
    assert step < 40
    assert last_complete_checkpoint(out) == str(out / f"checkpoint-{step}")
    assert "saving a checkpoint at the end of this step" in stderr
