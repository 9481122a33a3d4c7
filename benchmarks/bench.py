"""Speed and memory benchmarks of nlpkd distillation, printed as ratios measured side by side in one run.

Figures (each a ratio of two things measured in the same run, interleaved, so that machine noise hits both):

- `overhead`: one `DistillationTrainer` training step (kd + ce) divided by one teacher forward under
  `torch.no_grad()` plus one plain `Trainer` training step of the student. Target <= 1.05: distillation should
  cost no more than its two unavoidable parts.
- `cache`: one distillation step whose batch carries cached `teacher_logits` divided by one plain student
  step. Target <= 1.10: with a cache, distilling should cost about as much as ordinary fine-tuning.
- `terms`: one training step with an intermediate term on (`alpha_hidden`, `alpha_attn` or `alpha_relation` = 1,
  besides kd + ce) divided by one kd + ce step. No target: it is what each term costs (the attention term runs
  both models with eager attention, which the fused SDPA kernels avoid), to weigh against what
  `benchmarks/quality.py` measures it gains.
- `inference`: teacher latency divided by student latency (`nlpkd.report.measure_latency`). Target >= 1.8 for
  6 -> 3 layers.
- `memory`: peak memory of distillation steps divided by that of teacher fine-tuning steps, each measured in
  a fresh process (CPU: increase of peak RSS over the process after its imports; CUDA: peak allocated).
  Target <= 1.00: training a 3-layer student next to a frozen teacher should need no more than fine-tuning
  the teacher itself.
- `epoch`: wall time of a 3-epoch distillation on BBC News with the teacher-logit cache divided by the same
  run without it. Target < 1.00: the cache must pay for itself within three epochs.

A step is `trainer.training_step(model, batch)` followed by `optimizer.step()` and `zero_grad`, timed the same
way for the plain `Trainer` and the `DistillationTrainer`. Each figure is a median over `--repeats` rounds
after `--warmup` untimed rounds.

Usage:
    python benchmarks/bench.py                              # everything, defaults below
    python benchmarks/bench.py --only overhead,inference --repeats 20
    python benchmarks/bench.py --device cuda --batch_size 32 --seq_len 128
    python benchmarks/bench.py --teacher PATH_OR_ID --student_layers 6 --json results.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib.util  # noqa: E402

import torch  # noqa: E402

# Run from a checkout without installing: make the package next to this folder importable.
if importlib.util.find_spec("nlpkd") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BENCHMARKS = ("overhead", "cache", "terms", "inference", "memory", "epoch")
NUM_LABELS = 5  # BBC News topics; the teacher gets a random head with this many classes


@dataclass
class Figure:
    """One line of the results table."""

    name: str
    measured: str
    ratio: float | None
    target: str
    passed: bool | None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)


# ---- set-up -------------------------------------------------------------------------------------


def machine_description(device: str) -> dict[str, Any]:
    """CPU model, cores, torch threads and library versions (and the GPU when timing on CUDA)."""
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    described = {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": device,
        # Other work on the machine slows the timings; the 1-minute load average at the start says how much.
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if device == "cuda":
        described["gpu"] = torch.cuda.get_device_name()
    return described


def load_teacher(path: str | None, device: str) -> torch.nn.Module:
    """The teacher: a checkpoint with a random `NUM_LABELS`-way head (the packaged MiniLM by default)."""
    from transformers import AutoModelForSequenceClassification
    from transformers import logging as hf_logging

    from nlpkd.models import packaged_minilm_path

    torch.manual_seed(0)
    # The freshly initialised head would otherwise be announced on every load.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        teacher = AutoModelForSequenceClassification.from_pretrained(
            path or packaged_minilm_path(), num_labels=NUM_LABELS
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    return teacher.to(device)


def make_batch(
    vocab_size: int, batch_size: int, seq_len: int, device: str, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A full-length batch of random token ids (no padding, so every model does the same work)."""
    generator = torch.Generator().manual_seed(seed)
    # Ids 1000+ skip BERT's special and unused tokens.
    input_ids = torch.randint(1000, vocab_size, (batch_size, seq_len), generator=generator)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "token_type_ids": torch.zeros_like(input_ids).to(device),
        "labels": torch.randint(0, NUM_LABELS, (batch_size,), generator=generator).to(device),
    }


def training_args(
    output_dir: str, device: str, batch_size: int, **overrides: Any
) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        learning_rate=1e-5,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=device == "cpu",
        seed=0,
    )
    kwargs.update(overrides)
    return kwargs


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def step_function(
    trainer: Any, model: torch.nn.Module
) -> Callable[[dict[str, torch.Tensor]], None]:
    """One optimizer step the way the Trainer's loop does it: training_step (forward, loss, backward), step, zero."""
    optimizer = trainer.create_optimizer()
    # Set by the training loop for each accumulation window; one batch per optimizer step here.
    trainer.current_gradient_accumulation_steps = 1

    def step(batch: dict[str, torch.Tensor]) -> None:
        trainer.training_step(model, dict(batch))
        optimizer.step()
        model.zero_grad(set_to_none=True)

    return step


def timed_rounds(
    functions: dict[str, Callable[[], Any]], warmup: int, repeats: int, device: str
) -> dict[str, list[float]]:
    """Run every function once per round, in turn, and return the seconds of each timed round."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(warmup + repeats):
        for name, function in functions.items():
            sync(device)
            start = time.perf_counter()
            function()
            sync(device)
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def cache_supported(trainer: Any, batch: dict[str, torch.Tensor]) -> bool:
    """Whether `compute_loss` takes `teacher_logits` from the batch instead of running the teacher."""
    calls = []
    handle = trainer.teacher.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            trainer.compute_loss(trainer.model, dict(batch))
    finally:
        handle.remove()
    return not calls


# ---- the figures ----------------------------------------------------------------------------------


def bench_steps(cli: argparse.Namespace, wanted: set[str]) -> list[Figure]:
    """`overhead` and `cache`: the plain, distillation and cached steps, interleaved in every round."""
    from transformers import Trainer, TrainingArguments

    from nlpkd import DistillationConfig, DistillationTrainer, create_student

    device = cli.device
    teacher = load_teacher(cli.teacher, device).eval()
    student = create_student(teacher, num_layers=cli.student_layers)
    batch = make_batch(teacher.config.vocab_size, cli.batch_size, cli.seq_len, device)
    with tempfile.TemporaryDirectory(prefix="nlpkd-bench-") as tmp:
        plain_student = copy.deepcopy(student)
        plain = Trainer(
            model=plain_student,
            args=TrainingArguments(**training_args(tmp, device, cli.batch_size)),
        )
        kd_student = copy.deepcopy(student)
        distiller = DistillationTrainer(
            model=kd_student,
            teacher=teacher,
            args=DistillationConfig(
                **training_args(tmp, device, cli.batch_size), alpha_kd=0.5, alpha_ce=0.5
            ),
        )
        with torch.no_grad():
            cached_batch = {
                **batch,
                "teacher_logits": distiller.teacher(**_no_labels(batch)).logits,
            }
        has_cache = cache_supported(distiller, cached_batch)

        def teacher_forward() -> None:
            with torch.no_grad():
                distiller.teacher(**_no_labels(batch))

        plain_step = step_function(plain, plain_student)
        kd_step = step_function(distiller, kd_student)
        functions: dict[str, Callable[[], Any]] = {
            "plain_step": lambda: plain_step(batch),
            "teacher_forward": teacher_forward,
            "distill_step": lambda: kd_step(batch),
        }
        if has_cache and "cache" in wanted:
            functions["cached_step"] = lambda: kd_step(cached_batch)
        times = timed_rounds(functions, cli.warmup, cli.repeats, device)
    ms = {name: 1000 * statistics.median(values) for name, values in times.items()}
    shape = f"batch {cli.batch_size} x seq {cli.seq_len}"

    figures = []
    if "overhead" in wanted:
        ratio = ms["distill_step"] / (ms["teacher_forward"] + ms["plain_step"])
        figures.append(
            Figure(
                "overhead",
                f"{ms['distill_step']:.1f} ms vs {ms['teacher_forward']:.1f} + "
                f"{ms['plain_step']:.1f} ms",
                ratio,
                "<= 1.05",
                ratio <= 1.05,
                f"distill step / (teacher no_grad forward + plain student step), {shape}",
                {**ms, "spread_ms": _spreads(times)},
            )
        )
    if "cache" in wanted:
        if not has_cache:
            figures.append(
                Figure(
                    "cache",
                    "not available",
                    None,
                    "<= 1.10",
                    None,
                    "compute_loss still runs the teacher when the batch has teacher_logits",
                )
            )
        else:
            ratio = ms["cached_step"] / ms["plain_step"]
            figures.append(
                Figure(
                    "cache",
                    f"{ms['cached_step']:.1f} ms vs {ms['plain_step']:.1f} ms",
                    ratio,
                    "<= 1.10",
                    ratio <= 1.10,
                    f"distill step with cached teacher logits / plain student step, {shape}",
                    {**ms, "spread_ms": _spreads(times)},
                )
            )
    return figures


TERM_SETTINGS = {
    "kd": {},
    "hidden": {"alpha_hidden": 1.0},
    "attn": {"alpha_attn": 1.0},
    "relation": {"alpha_relation": 1.0},
}


def bench_terms(cli: argparse.Namespace) -> Figure:
    """`terms`: a step with each intermediate term on against the kd + ce step, interleaved in every round."""
    from nlpkd import DistillationConfig, DistillationTrainer, create_student

    device = cli.device
    teacher = load_teacher(cli.teacher, device).eval()
    student = create_student(teacher, num_layers=cli.student_layers)
    batch = make_batch(teacher.config.vocab_size, cli.batch_size, cli.seq_len, device)
    functions: dict[str, Callable[[], Any]] = {}
    with tempfile.TemporaryDirectory(prefix="nlpkd-bench-") as tmp:
        for name, weights in TERM_SETTINGS.items():
            # Copies for each: the attention term switches its two models to eager attention in place.
            trainer = DistillationTrainer(
                model=copy.deepcopy(student),
                teacher=copy.deepcopy(teacher),
                args=DistillationConfig(
                    **training_args(tmp, device, cli.batch_size),
                    alpha_kd=0.5,
                    alpha_ce=0.5,
                    **weights,
                ),
            )
            step = step_function(trainer, trainer.model)
            functions[name] = lambda step=step: step(batch)
        times = timed_rounds(functions, cli.warmup, cli.repeats, device)
    ms = {name: 1000 * statistics.median(values) for name, values in times.items()}
    ratios = {name: ms[name] / ms["kd"] for name in TERM_SETTINGS if name != "kd"}
    return Figure(
        "terms",
        ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items()),
        ratios["attn"],
        "none (a cost)",
        None,
        f"step with one intermediate term (weight 1) / kd + ce step ({ms['kd']:.1f} ms), "
        f"batch {cli.batch_size} x seq {cli.seq_len}; the ratio column is the attention term's",
        {**ms, "ratios": ratios, "spread_ms": _spreads(times)},
    )


def _no_labels(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k not in ("labels", "teacher_logits")}


def _spreads(times: dict[str, list[float]]) -> dict[str, list[float]]:
    """First and third quartile of each timing, in ms, so a reader can judge the noise."""
    spreads = {}
    for name, values in times.items():
        if len(values) >= 4:
            q1, _, q3 = statistics.quantiles(values, n=4)
        else:
            q1, q3 = min(values), max(values)
        spreads[name] = [round(1000 * q1, 2), round(1000 * q3, 2)]
    return spreads


def bench_inference(cli: argparse.Namespace) -> Figure:
    from nlpkd import create_student
    from nlpkd.report import measure_latency

    teacher = load_teacher(cli.teacher, cli.device).eval()
    student = create_student(teacher, num_layers=cli.student_layers)
    batch = _no_labels(
        make_batch(teacher.config.vocab_size, cli.batch_size, cli.seq_len, cli.device)
    )
    latency = measure_latency(
        {"teacher": teacher, "student": student},
        [batch],
        warmup=cli.warmup,
        repeats=cli.repeats,
        progress=False,
    )
    ratio = latency["teacher"] / latency["student"]
    layers = f"{teacher.config.num_hidden_layers} -> {student.config.num_hidden_layers} layers"
    return Figure(
        "inference",
        f"{latency['teacher']:.1f} ms vs {latency['student']:.1f} ms",
        ratio,
        ">= 1.8",
        ratio >= 1.8,
        f"teacher / student latency, {layers}, batch {cli.batch_size} x seq {cli.seq_len}",
        latency,
    )


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far.

    Linux's `VmHWM` belongs to the address space, which `execve` replaces, so a fresh child starts from
    zero. `ru_maxrss` would not do in a child: it is kept across `execve` and so starts at the peak of
    the parent that forked it (here, a process holding several models).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    # macOS reports bytes, Linux KiB.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def memory_child(cli: argparse.Namespace) -> dict[str, float]:
    """Run in a fresh process: a few training steps of one kind, and the memory they needed."""
    from transformers import Trainer, TrainingArguments

    from nlpkd import DistillationConfig, DistillationTrainer, create_student

    device = cli.device
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        # The peak so far is the process with its imports, before any model.
        baseline = peak_rss_bytes()
    teacher = load_teacher(cli.teacher, device)
    batch = make_batch(teacher.config.vocab_size, cli.batch_size, cli.seq_len, device)
    with tempfile.TemporaryDirectory(prefix="nlpkd-bench-") as tmp:
        if cli.memory_child == "distill":
            student = create_student(teacher, num_layers=cli.student_layers)
            trainer = DistillationTrainer(
                model=student,
                teacher=teacher,
                args=DistillationConfig(**training_args(tmp, device, cli.batch_size)),
            )
            step = step_function(trainer, student)
        else:
            trainer = Trainer(
                model=teacher, args=TrainingArguments(**training_args(tmp, device, cli.batch_size))
            )
            step = step_function(trainer, teacher)
        # The first step allocates the optimizer state; the next ones show the steady peak.
        for _ in range(3):
            step(batch)
        sync(device)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = peak_rss_bytes()
    return {
        "baseline_mb": baseline / 1e6,
        "peak_mb": peak / 1e6,
        "increase_mb": (peak - baseline) / 1e6,
    }


def bench_memory(cli: argparse.Namespace) -> Figure:
    results = {}
    for kind in ("distill", "finetune"):
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--memory_child",
            kind,
            "--device",
            cli.device,
            "--batch_size",
            str(cli.batch_size),
            "--seq_len",
            str(cli.seq_len),
            "--student_layers",
            str(cli.student_layers),
        ]
        if cli.threads is not None:
            command += ["--threads", str(cli.threads)]
        if cli.teacher:
            command += ["--teacher", cli.teacher]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"memory measurement '{kind}' failed:\n{done.stderr[-3000:]}")
        results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    ratio = results["distill"]["increase_mb"] / results["finetune"]["increase_mb"]
    what = "peak allocated" if cli.device == "cuda" else "peak RSS increase"
    return Figure(
        "memory",
        f"{results['distill']['increase_mb']:.0f} MB vs {results['finetune']['increase_mb']:.0f} MB",
        ratio,
        "<= 1.00",
        ratio <= 1.00,
        f"{what}: distillation steps / teacher fine-tuning steps (models, optimizer, activations), "
        f"batch {cli.batch_size} x seq {cli.seq_len}",
        results,
    )


def bench_epoch(cli: argparse.Namespace) -> Figure:
    from transformers import AutoTokenizer, DataCollatorWithPadding, PrinterCallback

    from nlpkd import DistillationConfig, DistillationTrainer, create_student
    from nlpkd.data import load_bbc_news, tokenize_dataset
    from nlpkd.models import packaged_minilm_path

    device = cli.device
    teacher_path = cli.teacher or packaged_minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    data = tokenize_dataset(load_bbc_news(), tokenizer, "bbc_news", max_length=cli.seq_len)
    train = data["train"].shuffle(seed=0).select(range(min(cli.epoch_examples, len(data["train"]))))
    teacher = load_teacher(cli.teacher, device).eval()
    has_cache = "teacher_cache" in DistillationConfig.__dataclass_fields__

    def run(cache: bool) -> dict[str, float]:
        student = create_student(teacher, num_layers=cli.student_layers)
        extra = {"teacher_cache": True} if cache else {}
        with tempfile.TemporaryDirectory(prefix="nlpkd-bench-") as tmp:
            # The clock starts before the trainer exists: it fills the cache when it is built.
            sync(device)
            start = time.perf_counter()
            args = DistillationConfig(
                **training_args(tmp, device, cli.batch_size),
                num_train_epochs=cli.epochs,
                logging_strategy="no",
                **extra,
            )
            trainer = DistillationTrainer(
                model=student,
                teacher=teacher,
                args=args,
                train_dataset=train,
                processing_class=tokenizer,
                data_collator=DataCollatorWithPadding(tokenizer),
            )
            sync(device)
            built = time.perf_counter()
            trainer.remove_callback(PrinterCallback)
            # With the cache, training itself should never run the teacher: count to make sure.
            calls: list[int] = []
            handle = trainer.teacher.register_forward_pre_hook(lambda *_: calls.append(1))
            try:
                trainer.train()
            finally:
                handle.remove()
            sync(device)
            end = time.perf_counter()
            return {
                "total_s": end - start,
                "build_s": built - start,
                "train_s": end - built,
                "teacher_forwards_in_training": len(calls),
            }

    def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
        return {key: statistics.median(r[key] for r in runs) for key in runs[0]}

    # Rounds alternate the order (without, with, then with, without, ...) so that a slow drift of the
    # machine's load does not favour either side; each side's figure is the median of its runs.
    order = [
        cache
        for i in range(cli.epoch_rounds)
        for cache in ((False, True) if i % 2 == 0 else (True, False))
        if cache is False or has_cache
    ]
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for cache in order:
        results[cache].append(run(cache))
    plain = median_run(results[False])
    without, without_calls = plain["total_s"], int(plain["teacher_forwards_in_training"])
    setting = (
        f"{cli.epochs} epochs x {len(train)} BBC News examples, max_length {cli.seq_len}, "
        f"median of {cli.epoch_rounds} run(s) each"
    )
    if not has_cache:
        return Figure(
            "epoch",
            f"cache not available; without cache {without:.1f} s",
            None,
            "< 1.00",
            None,
            f"DistillationConfig has no teacher_cache field yet; {setting}",
            {"without_cache": results[False]},
        )
    cached = median_run(results[True])
    with_cache, with_calls = cached["total_s"], int(cached["teacher_forwards_in_training"])
    ratio = with_cache / without
    return Figure(
        "epoch",
        f"{with_cache:.1f} s vs {without:.1f} s",
        ratio,
        "< 1.00",
        ratio < 1.00,
        f"with / without teacher-logit cache, {setting}; trainer construction (where the cache is "
        f"filled) {cached['build_s']:.1f} s vs {plain['build_s']:.1f} s, train() {cached['train_s']:.1f} s "
        f"vs {plain['train_s']:.1f} s; teacher forwards during train(): {with_calls} with the cache, "
        f"{without_calls} without",
        {"with_cache": results[True], "without_cache": results[False]},
    )


# ---- output ---------------------------------------------------------------------------------------


def format_table(figures: list[Figure], machine: dict[str, Any]) -> str:
    rows = [("figure", "measured", "ratio", "target", "result")]
    for f in figures:
        verdict = "n/a" if f.passed is None else ("PASS" if f.passed else "MISS")
        ratio = "-" if f.ratio is None else f"{f.ratio:.3f}"
        rows.append((f.name, f.measured, ratio, f.target, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append("")
    lines += [f"{f.name}: {f.note}" for f in figures if f.note]
    lines.append("")
    gpu = f", GPU {machine['gpu']}" if "gpu" in machine else ""
    lines.append(
        f"machine: {machine['cpu']}, {machine['logical_cores']} logical cores "
        f"({machine['usable_cores']} usable), torch threads {machine['torch_threads']}{gpu}; "
        f"torch {machine['torch']}, transformers {machine['transformers']}, python {machine['python']}; "
        f"load average at start {machine['load_average_1min']}"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="nlpkd speed and memory benchmarks (ratios measured side by side in one run)."
    )
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of {', '.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument(
        "--teacher", default=None, help="teacher checkpoint (default: packaged MiniLM)"
    )
    parser.add_argument("--student_layers", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per figure (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the `epoch` figure")
    parser.add_argument(
        "--epoch_examples",
        type=int,
        default=256,
        help="BBC News training examples of the `epoch` figure",
    )
    parser.add_argument(
        "--epoch_rounds",
        type=int,
        default=1,
        help="runs of each side of the `epoch` figure, in alternating order (median)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's choice, usually one per core)",
    )
    parser.add_argument(
        "--json", default=None, help="also write the figures and machine to this file"
    )
    parser.add_argument("--memory_child", choices=("distill", "finetune"), help=argparse.SUPPRESS)
    cli = parser.parse_args(argv)
    unknown = sorted(set(cli.only.split(",")) - set(BENCHMARKS))
    if unknown:
        parser.error(
            f"--only: unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}."
        )
    if cli.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible; use --device cpu.")
    if cli.repeats < 1 or cli.warmup < 0 or cli.epoch_rounds < 1:
        parser.error("--repeats and --epoch_rounds must be >= 1, and --warmup >= 0.")
    if cli.threads is not None:
        if cli.threads < 1:
            parser.error("--threads must be >= 1.")
        torch.set_num_threads(cli.threads)
    return cli


def main(argv: list[str] | None = None) -> int:
    cli = parse_args(argv)
    import datasets
    from transformers.utils import logging as hf_logging

    # Progress bars of weight loading, tokenization and caching would bury the table.
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    if cli.memory_child:
        print(json.dumps(memory_child(cli)))
        return 0
    wanted = set(cli.only.split(","))
    machine = machine_description(cli.device)
    figures: list[Figure] = []
    started = time.perf_counter()
    groups: list[tuple[set[str], Callable[[], list[Figure]]]] = [
        ({"overhead", "cache"}, lambda: bench_steps(cli, wanted)),
        ({"terms"}, lambda: [bench_terms(cli)]),
        ({"inference"}, lambda: [bench_inference(cli)]),
        ({"memory"}, lambda: [bench_memory(cli)]),
        ({"epoch"}, lambda: [bench_epoch(cli)]),
    ]
    for names, run in groups:
        if not names & wanted:
            continue
        # One failing figure must not cost the others, which may have taken minutes.
        try:
            figures += run()
        except Exception as err:
            for name in sorted(names & wanted):
                figures.append(
                    Figure(name, "error", None, "-", None, f"{type(err).__name__}: {err}")
                )
    order = {name: i for i, name in enumerate(BENCHMARKS)}
    figures.sort(key=lambda f: order[f.name])
    print(format_table(figures, machine))
    print(f"total benchmark time: {time.perf_counter() - started:.0f} s")
    if cli.json:
        payload = {
            "machine": machine,
            "settings": {k: v for k, v in vars(cli).items() if k not in ("json", "memory_child")},
            "figures": [f.__dict__ for f in figures],
        }
        Path(cli.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
