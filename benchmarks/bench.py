"""Speed and memory of nlpkd distillation, measured through `trainer.train()` and printed as ratios.

Every step figure is read off the ordinary training loop: each measured thing is a `Trainer` (or a
`DistillationTrainer`) whose `train()` runs `--warmup` untimed and `--steps` timed optimizer steps, and a
callback reads the clock at the end of every step (after `torch.cuda.synchronize()` on a GPU). A step is then
what a user's run does: Accelerate's prepared model (autocast under `--bf16`/`--fp16`, the grad scaler under
fp16), the data loader and collator, forward, loss, backward, gradient clipping, optimizer, scheduler and the
Trainer's own bookkeeping. Each round trains every measured thing once, in turn (in alternating order), and a
figure is the median over all timed steps of all `--rounds` rounds, so that the machine's noise hits both sides.

The measured things (`runs`):

- `loop`: a model whose step is nothing but the loop (one scalar parameter, loss 0): the Trainer's own cost
  per step (data loader, autocast wrapper, backward of a scalar, clipping, optimizer, scheduler, callbacks).
- `teacher`: a model whose step is the frozen teacher's forward under `torch.no_grad()` in eval mode, under the
  same Accelerate autocast, plus the loop. The teacher's forward "through the loop" is `teacher - loop`.
- `plain`: plain `Trainer` fine-tuning of the student (hard labels).
- `kd`: `DistillationTrainer` with `alpha_kd = alpha_ce = 0.5` (the default job's loss).
- `cached`: the same with `teacher_cache=True` (the cache is filled when the trainer is built, not timed).
- `hidden`, `attn`, `relation`: `kd` plus one intermediate term at weight 1.

Figures, per case and precision:

- `overhead` = kd / ((teacher - loop) + plain). Target <= 1.05: distillation costs no more than its parts.
- `throughput` = plain / kd: distillation's examples per second over plain fine-tuning's, same student and batch
  (the number a user compares). `bound` = plain / ((teacher - loop) + plain) is the most it can be.
  Target >= 0.60 for bert-base on a GPU in bf16.
- `cache` = cached / plain. Target <= 1.10.
- `terms`: hidden / kd, attn / kd, relation / kd. No target: what each term costs.
- `memory`: peak memory of 2 training steps of each of `teacher_ft` (plain fine-tuning of the teacher), `plain`,
  `kd`, `hidden`, `attn`, `relation`, at `--memory_seq_len` tokens (512: eager attention maps grow with its
  square). CPU: each in a fresh process, the peak resident memory over the process after its imports; CUDA:
  `torch.cuda.max_memory_allocated` over what was allocated before the models moved to the GPU. Target:
  kd / teacher_ft <= 1.00.
- `inference` (teacher / student latency) and `epoch` (3 epochs with / without the teacher-logit cache, BBC
  News, `--epoch_*`), in float32, only with `--only`.

Cases: `minilm` (the packaged all-MiniLM-L6-v2, 6 x 384, with a random 5-label head -> 3 layers), `bert-base`
(a 12-layer, 768-wide, 12-head BERT built from `BertConfig()`, random weights -> 6 layers), `tiny` (4 x 64 -> 2,
for smoke tests). Batches are random token ids without padding. Sizes per device below (`--batch_size`,
`--seq_len`, `--memory_batch_size` override them for every case).

Usage:
    python benchmarks/bench.py                                   # CPU: fp32 and bf16, minilm and bert-base
    python benchmarks/bench.py --precision bf16                  # one precision
    python benchmarks/bench.py --device cuda --precision fp32,bf16,fp16 --json results.json
    python benchmarks/bench.py --case minilm --only steps --rounds 3 --steps 8
    python benchmarks/bench.py --only inference,epoch            # the latency and cache-epoch figures
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch import nn  # noqa: E402

# Run from a checkout without installing: make the package next to this folder importable.
if importlib.util.find_spec("nlpkd") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_loop import (  # noqa: E402
    PRECISIONS,
    STEP_RUNS,
    TERM_RUNS,
    Loop,
    autocast_check,
    measure_steps,
    step_figures,
)
from bench_memory import measure_memory  # noqa: E402
from bench_setup import CASES, Case, build_teacher, make_student, random_dataset, shape_of  # noqa: E402
from bench_tables import machine_description, markdown_report  # noqa: E402

FIGURES = ("steps", "terms", "memory", "inference", "epoch")
DEFAULT_FIGURES = "steps,terms,memory"


def run_case(case: Case, cli: argparse.Namespace) -> dict[str, Any]:
    """The step and memory figures of one case, in every precision that the device applies."""
    result: dict[str, Any] = {"case": case.name, "shape": list(shape_of(case, cli)), "skipped": {}}
    precisions = []
    for precision in cli.precisions:
        why = autocast_check(cli.device, precision)
        if why:
            result["skipped"][precision] = why
        else:
            precisions.append(precision)
    measured = argparse.Namespace(**{**vars(cli), "precisions": precisions})
    if not precisions:
        return result
    runs = STEP_RUNS + (TERM_RUNS if "terms" in cli.figures else ())
    if "steps" in cli.figures or "terms" in cli.figures:
        teacher = build_teacher(case.name, cli.teacher if case.name == "minilm" else None).eval()
        student = make_student(teacher, case)
        steps = measure_steps(case, teacher, student, measured, runs)
        result["steps"] = steps
        result["figures"] = {p: step_figures(steps[p]) for p in precisions}
        del teacher, student
    if "memory" in cli.figures:
        result["memory"] = measure_memory(case, measured)
    return result


def bench_inference(case: Case, cli: argparse.Namespace) -> dict[str, Any]:
    """Teacher latency / student latency (`nlpkd.report.measure_latency`), float32."""
    from nlpkd.report import measure_latency

    teacher = build_teacher(case.name, cli.teacher).to(cli.device).eval()
    student = make_student(teacher, case).to(cli.device).eval()
    batch, seq_len, _ = shape_of(case, cli)
    data = random_dataset(teacher.config.vocab_size, batch, seq_len)
    inputs = {
        k: torch.tensor(data[k]).to(cli.device)
        for k in ("input_ids", "attention_mask", "token_type_ids")
    }
    latency = measure_latency(
        {"teacher": teacher, "student": student},
        [inputs],
        warmup=cli.warmup,
        repeats=max(cli.steps, 5),
        progress=False,
    )
    return {**latency, "ratio": latency["teacher"] / latency["student"]}


def bench_epoch(case: Case, cli: argparse.Namespace) -> dict[str, Any]:
    """Wall time of a 3-epoch BBC News distillation with the teacher-logit cache / without it, float32.

    Rounds alternate the order (without, with, then with, without, ...) so that a slow drift of the machine's
    load does not favour either side; each side's figure is the median of its runs.
    """
    from transformers import AutoTokenizer

    from nlpkd.data import load_bbc_news, tokenize_dataset
    from nlpkd.models import packaged_minilm_path

    tokenizer = AutoTokenizer.from_pretrained(cli.teacher or packaged_minilm_path())
    data = tokenize_dataset(load_bbc_news(), tokenizer, "bbc_news", max_length=128)
    train = data["train"].shuffle(seed=0).select(range(min(cli.epoch_examples, len(data["train"]))))
    teacher = build_teacher("minilm", cli.teacher).eval()
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for index in range(cli.epoch_rounds):
        for cache in (False, True) if index % 2 == 0 else (True, False):
            runs[cache].append(epoch_run(teacher, tokenizer, train, cache, cli))
    medians = {
        cache: {key: statistics.median(r[key] for r in done) for key in done[0]}
        for cache, done in runs.items()
    }
    return {
        "with_cache": medians[True],
        "without_cache": medians[False],
        "ratio": medians[True]["total_s"] / medians[False]["total_s"],
        "examples": len(train),
    }


def epoch_run(
    teacher: nn.Module, tokenizer: Any, train: Any, cache: bool, cli: argparse.Namespace
) -> dict[str, float]:
    from transformers import DataCollatorWithPadding, PrinterCallback

    from nlpkd import DistillationConfig, DistillationTrainer

    student = make_student(teacher, CASES["minilm"])
    with tempfile.TemporaryDirectory(prefix="nlpkd-bench-") as tmp:
        # The clock starts before the trainer exists: it fills the cache when it is built.
        start = time.perf_counter()
        loop = Loop(cli.device, "fp32", 16, -1, tmp)
        arguments = {**loop.arguments(), "num_train_epochs": 3}
        trainer = DistillationTrainer(
            model=student,
            teacher=teacher,
            args=DistillationConfig(**arguments, teacher_cache=cache),
            train_dataset=train,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        built = time.perf_counter()
        trainer.remove_callback(PrinterCallback)
        # With the cache, training itself should never run the teacher: count to make sure.
        calls: list[int] = []
        handle = trainer.teacher.register_forward_pre_hook(lambda *_: calls.append(1))
        try:
            trainer.train()
        finally:
            handle.remove()
        end = time.perf_counter()
    return {
        "total_s": end - start,
        "build_s": built - start,
        "train_s": end - built,
        "teacher_forwards_in_training": len(calls),
    }


# Every flag but the lists: name, type, default, help.
FLAGS: tuple[tuple[str, type, Any, str], ...] = (
    ("--teacher", str, None, "checkpoint for the minilm case instead of the packaged MiniLM"),
    ("--batch_size", int, None, "batch of the step figures (default: per case and device)"),
    ("--seq_len", int, None, "tokens per example of the step figures (default 128)"),
    ("--memory_batch_size", int, None, "batch of the memory figure (default: per case and device)"),
    ("--memory_seq_len", int, 512, "tokens per example of the memory figure"),
    ("--warmup", int, None, "untimed steps per train() (default 2 on CPU, 3 on CUDA)"),
    ("--steps", int, None, "timed steps per train() (default 4 on CPU, 10 on CUDA)"),
    ("--rounds", int, 2, "rounds, each training every run once (figures: medians over all)"),
    ("--epoch_examples", int, 256, "BBC News training examples of `epoch`"),
    ("--epoch_rounds", int, 1, "runs of each side of `epoch`, alternating (median)"),
    ("--threads", int, None, "torch threads (default: torch's choice)"),
    ("--json", str, None, "also write everything measured to this file (after each case)"),
    ("--markdown", str, None, "also write the Markdown tables to this file"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="nlpkd speed and memory through trainer.train(), ratios measured side by side."
    )
    add = parser.add_argument
    add("--only", default=DEFAULT_FIGURES, help=f"comma list of {', '.join(FIGURES)}")
    add(
        "--precision",
        help="comma list of fp32, bf16, fp16 (default: fp32,bf16 on CPU, all on CUDA)",
    )
    add("--case", default="minilm,bert-base", help=f"comma list of {', '.join(CASES)}")
    add("--device", choices=("cpu", "cuda"), default="cpu")
    for flag, kind, default, text in FLAGS:
        add(flag, type=kind, default=default, help=text)
    add("--verbose", action="store_true", help="say on stderr what is being measured")
    cli = parser.parse_args(argv)
    check_args(parser, cli)
    return cli


def check_args(parser: argparse.ArgumentParser, cli: argparse.Namespace) -> None:
    cli.figures = [f for f in cli.only.split(",") if f]
    cli.cases = [c for c in cli.case.split(",") if c]
    default_precisions = "fp32,bf16,fp16" if cli.device == "cuda" else "fp32,bf16"
    cli.precisions = [p for p in (cli.precision or default_precisions).split(",") if p]
    for flag, values, allowed in (
        ("--only", cli.figures, FIGURES),
        ("--case", cli.cases, CASES),
        ("--precision", cli.precisions, PRECISIONS),
    ):
        unknown = sorted(set(values) - set(allowed))
        if unknown or not values:
            parser.error(f"{flag}: unknown or empty {unknown}; choose from {', '.join(allowed)}.")
    if cli.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible; use --device cpu.")
    cli.warmup = cli.warmup if cli.warmup is not None else (3 if cli.device == "cuda" else 2)
    cli.steps = cli.steps if cli.steps is not None else (10 if cli.device == "cuda" else 4)
    if cli.warmup < 1 or cli.steps < 1 or cli.rounds < 1 or cli.epoch_rounds < 1:
        parser.error("--warmup, --steps, --rounds and --epoch_rounds must be >= 1.")
    if cli.threads is not None:
        if cli.threads < 1:
            parser.error("--threads must be >= 1.")
        torch.set_num_threads(cli.threads)


def main(argv: list[str] | None = None) -> int:
    cli = parse_args(argv)
    import datasets
    from transformers.utils import logging as hf_logging

    # Progress bars and notices of every trainer would bury the tables.
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    started = time.perf_counter()
    payload: dict[str, Any] = {
        "machine": machine_description(cli.device),
        "settings": {k: v for k, v in vars(cli).items() if k not in ("json", "markdown")},
        "cases": {},
    }
    for name in cli.cases:
        if {"steps", "terms", "memory"} & set(cli.figures):
            payload["cases"][name] = run_case(CASES[name], cli)
            finish(payload, cli, started)
    if "inference" in cli.figures:
        payload["inference"] = {name: bench_inference(CASES[name], cli) for name in cli.cases}
    if "epoch" in cli.figures:
        payload["epoch"] = bench_epoch(CASES["minilm"], cli)
    finish(payload, cli, started)
    print(markdown_report(payload))
    return 0


def finish(payload: dict[str, Any], cli: argparse.Namespace, started: float) -> None:
    """Stamp the time and load, and write the files: after each case, so a run cut short keeps its cases."""
    payload["total_s"] = time.perf_counter() - started
    payload["load_average_end"] = (
        round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    )
    if cli.json:
        Path(cli.json).write_text(json.dumps(payload, indent=1) + "\n")
    if cli.markdown:
        Path(cli.markdown).write_text(markdown_report(payload) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
