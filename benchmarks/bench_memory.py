"""Peak memory of a few training steps per run: a fresh process each on CPU (peak RSS), allocator peaks on CUDA."""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from bench_loop import TERM_RUNS, Loop, free_memory, make_trainer
from bench_setup import CASES, Case, build_teacher, log, make_student, random_dataset, shape_of

MEMORY_RUNS = ("teacher_ft", "plain", "kd", "hidden", "attn", "relation")
# Step 1 allocates the optimizer state; step 2 holds it, the gradients and the activations at once: the peak.
MEMORY_STEPS = 2


def measure_memory(case: Case, cli: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Peak memory of each memory run in each precision: in a fresh process each on CPU, in turn on CUDA.

    The CPU processes are forked from a server process that has imported the libraries and never held a model
    (multiprocessing's forkserver), so that each starts clean without paying for the imports again.
    """
    runs = [r for r in MEMORY_RUNS if r not in TERM_RUNS or "terms" in cli.figures]
    settings = {**vars(cli), "case_name": case.name}
    results: dict[str, dict[str, Any]] = {p: {} for p in cli.precisions}
    pool = None
    if cli.device == "cpu":
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(
            ["torch", "transformers", "datasets", "accelerate", "nlpkd", "bench_memory"]
        )
        # One task per process: every measurement gets a fresh one.
        pool = context.Pool(1, maxtasksperchild=1)
    try:
        for precision in cli.precisions:
            for run in runs:
                if pool is None:
                    entry = memory_task(settings, run, precision)
                else:
                    entry = pool.apply(memory_task, (settings, run, precision))
                results[precision][run] = entry
                log(f"{case.name} {precision} memory {run}: {entry}", cli)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return results


def memory_task(settings: dict[str, Any], run: str, precision: str) -> dict[str, Any]:
    """One memory measurement, with its failure (out of memory, say) as a result rather than an exception."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if settings["threads"] is not None:
        torch.set_num_threads(settings["threads"])
    try:
        return memory_run(argparse.Namespace(**settings), run, precision)
    except (RuntimeError, ValueError) as err:  # torch.cuda.OutOfMemoryError is a RuntimeError
        free_memory(settings["device"])
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}


def memory_run(cli: argparse.Namespace, run: str, precision: str) -> dict[str, Any]:
    """`MEMORY_STEPS` training steps of one run: the peak memory they needed over the memory before any model.

    Counted: the models the run trains or runs (the teacher only where the run has one), gradients, optimizer
    state, activations. The teacher that a `plain` student is cut from is freed before the peak starts.
    """
    cuda = cli.device == "cuda"
    if not cuda:
        warm_process(cli.device, precision)
    free_memory(cli.device)
    before = torch.cuda.memory_allocated() if cuda else read_status().get("VmRSS", 0)
    case = CASES[cli.case_name]
    _, _, memory_batch = shape_of(case, cli)
    teacher = (
        cached_teacher(case.name, cli.teacher) if cuda else build_teacher(case.name, cli.teacher)
    )
    vocab_size = teacher.config.vocab_size
    student = None if run == "teacher_ft" else make_student(teacher, case)
    if run == "plain":
        teacher = None
        free_memory(cli.device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        peak_reset = True
    else:
        # Without the reset (no /proc), the peak also holds the teacher a plain student was cut from.
        peak_reset = reset_peak_rss()
    dataset = random_dataset(vocab_size, memory_batch * MEMORY_STEPS, cli.memory_seq_len)
    with tempfile.TemporaryDirectory(prefix="nlpkd-bench-") as tmp:
        loop = Loop(cli.device, precision, memory_batch, MEMORY_STEPS, tmp)
        trainer, _ = make_trainer(run, teacher, student, loop, dataset, fresh=lambda model: model)
        del teacher, student
        trainer.train()
        if cuda:
            torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() if cuda else peak_rss_bytes()
        del trainer
    free_memory(cli.device)
    return {"peak_mb": (peak - before) / 1e6, "peak_reset": peak_reset}


_TEACHERS: dict[str, torch.nn.Module] = {}


def cached_teacher(case: str, path: str | None) -> torch.nn.Module:
    """A copy of the case's teacher, built once per process: on CUDA the measurements share one process, and
    the models stay on the CPU until a trainer moves them, so the copy costs no GPU memory before the peak."""
    if case not in _TEACHERS:
        _TEACHERS[case] = build_teacher(case, path)
    return copy.deepcopy(_TEACHERS[case])


def warm_process(device: str, precision: str) -> None:
    """Import everything and train one step of the empty loop, so that the memory the process holds before
    the models (libraries, thread pools, the Trainer's machinery) is in the baseline, not in the peak."""
    from transformers import BertForSequenceClassification  # noqa: F401

    import nlpkd  # noqa: F401  (the whole package, as the trainers import it)

    with tempfile.TemporaryDirectory(prefix="nlpkd-bench-") as tmp:
        trainer, _ = make_trainer(
            "loop", None, None, Loop(device, precision, 2, 1, tmp), random_dataset(2000, 2, 8)
        )
        trainer.train()
        del trainer
    free_memory(device)


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far.

    Linux's `VmHWM` belongs to the address space, which `execve` replaces, so a fresh child starts from
    zero. `ru_maxrss` would not do in a child: it is kept across `execve` and so starts at the peak of
    the parent that forked it (here, a process holding several models).
    """
    status = read_status()
    if "VmHWM" in status:
        return status["VmHWM"]
    # macOS reports bytes, Linux KiB.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def read_status() -> dict[str, int]:
    """`VmRSS` and `VmHWM` of this process in bytes (empty where `/proc` does not exist)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    fields = (line.split() for line in lines if line.startswith(("VmRSS:", "VmHWM:")))
    return {parts[0].rstrip(":"): int(parts[1]) * 1024 for parts in fields}


def reset_peak_rss() -> bool:
    """Start a new peak at the current resident memory (Linux >= 4.0: `clear_refs` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
