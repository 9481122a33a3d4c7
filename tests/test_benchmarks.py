"""The speed benchmark's arithmetic and its reading of the training loop (benchmarks/bench*.py, gpu_check.py)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_loop  # noqa: E402
import gpu_check  # noqa: E402
from bench_setup import CASES, build_teacher, make_student, random_dataset  # noqa: E402


def test_step_figures_against_their_definitions():
    seconds = {
        "loop": 0.01,
        "teacher": 0.21,
        "plain": 0.40,
        "kd": 0.63,
        "cached": 0.41,
        "attn": 0.9,
    }
    timings = {run: {"seconds": [s, s * 1.1, s * 0.9]} for run, s in seconds.items()}
    figures = bench_loop.step_figures(timings)
    forward = 0.21 - 0.01
    assert figures["teacher_forward_ms"] == pytest.approx(1000 * forward)
    assert figures["overhead"] == pytest.approx(0.63 / (forward + 0.40))
    assert figures["throughput"] == pytest.approx(0.40 / 0.63)
    assert figures["bound"] == pytest.approx(0.40 / (forward + 0.40))
    assert figures["cache"] == pytest.approx(0.41 / 0.40)
    assert figures["terms"] == {"attn": pytest.approx(0.9 / 0.63)}


def test_step_clock_times_the_steps_after_warmup():
    clock = bench_loop.StepClock(warmup=2, cuda=False, trainer=None)
    clock.ends = [1.0, 3.0, 4.5, 4.75, 6.0]  # the ends of steps 1..5
    # Steps 3, 4 and 5 are timed: from the end of step 2 to the end of each.
    assert clock.seconds() == [1.5, 0.25, 1.25]


def test_summarise_gives_median_and_quartiles():
    summary = bench_loop.summarise([0.004, 0.001, 0.003, 0.002, 0.005])
    assert summary["median_ms"] == pytest.approx(3.0)
    assert summary["q1_ms"] <= summary["median_ms"] <= summary["q3_ms"]
    assert summary["n"] == 5


def test_fp16_on_cpu_is_reported_as_not_applied():
    # Accelerate enables neither autocast nor a grad scaler for fp16 on a CPU: --fp16 --use_cpu trains in
    # float32. If a release changes that, the benchmark must measure fp16 on CPU instead of skipping it.
    why = bench_loop.autocast_check("cpu", "fp16")
    assert why is not None and "float32" in why
    assert bench_loop.autocast_check("cpu", "bf16") is None
    assert bench_loop.autocast_check("cpu", "fp32") is None


@pytest.mark.slow
@pytest.mark.parametrize("precision, dtype", [("fp32", "float32"), ("bf16", "bfloat16")])
def test_the_loop_runs_both_models_under_the_runs_autocast(tmp_path, precision, dtype):
    teacher = build_teacher("tiny").eval()
    student = make_student(teacher, CASES["tiny"])
    dataset = random_dataset(teacher.config.vocab_size, 8, 16)
    loop = bench_loop.Loop("cpu", precision, 4, 2, str(tmp_path))
    for run in ("kd", "teacher"):
        done = bench_loop.time_run(run, teacher, student, loop, 1, dataset)
        assert len(done["seconds"]) == 1 and done["seconds"][0] > 0
        assert done["dtypes"]["teacher"] == dtype
        if run == "kd":
            assert done["dtypes"]["student"] == dtype
    # The runs froze and trained copies: the models given stay as they were.
    assert all(p.requires_grad for p in teacher.parameters())


def test_logged_dicts_reads_printed_logs_between_progress_bars():
    text = (
        "  0%|   | 0/2 [00:00<?, ?it/s]{'loss': '1.615', 'grad_norm': '0.58', 'epoch': '0.5'}\n"
        "{'loss': 0.8, 'kd': 0.01, 'ce': 1.6, 'epoch': 1.0}\r 50%|\n"
        "{'train_runtime': '8.5', 'train_loss': '0.79'}\n"
    )
    logs = gpu_check.logged_dicts(text)
    assert [d["loss"] for d in logs] == [1.615, 0.8]
    assert logs[1]["kd"] == 0.01


def test_falls_compares_the_first_and_last_logs():
    assert gpu_check.falls([1.6, 1.5, 1.4, 0.5, 0.4, 0.3])
    assert not gpu_check.falls([1.6, 1.5, 1.4, 1.3, 1.2, 1.1])
    assert not gpu_check.falls([1.0])


def test_check_job_needs_finite_falling_loss_and_accuracy(tmp_path):
    log = tmp_path / "job.log"
    teacher = "{'loss': '1.6', 'epoch': '1'}\n[nlpkd] distilling into 3 layers ...\n"
    log.write_text(
        teacher + "".join(f"{{'loss': '{v}', 'kd': '0.1'}}\n" for v in (0.9, 0.8, 0.2, 0.1))
    )
    metrics = {
        "student": {"validation": {"accuracy": 0.95}},
        "teacher": {"validation": {"accuracy": 0.97}},
        "device": "cuda",
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    result = gpu_check.check_job(log, tmp_path)
    assert result["passed"] and result["losses"] == [0.9, 0.8, 0.2, 0.1]
    assert result["teacher_losses"] == [1.6]
    log.write_text(teacher + "{'loss': 'nan'}\n{'loss': '0.1'}\n")
    assert not math.isfinite(gpu_check.check_job(log, tmp_path)["losses"][0])
    assert not gpu_check.check_job(log, tmp_path)["passed"]


def test_bench_tables_mark_targets():
    from bench_tables import verdict

    assert verdict(1.02, lambda v: v <= 1.05) == "1.020 PASS"
    assert verdict(1.07, lambda v: v <= 1.05) == "1.070 MISS"
    assert verdict(None, None) == "-"
