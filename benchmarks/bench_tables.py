"""The results of `bench.py` as Markdown tables, and the machine they were measured on."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from bench_loop import TERM_RUNS, summarise
from bench_memory import MEMORY_RUNS
from bench_setup import CASES


def machine_description(device: str) -> dict[str, Any]:
    """CPU model, cores, torch threads, library versions, the GPU when timing on CUDA, the load average."""
    import accelerate
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    described = {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
        "device": device,
        # Other work on the machine slows the timings; the 1-minute load average says how much.
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if device == "cuda":
        described["gpu"] = torch.cuda.get_device_name()
    return described


def verdict(value: float | None, target: Callable[[float], bool] | None) -> str:
    if value is None:
        return "-"
    if target is None:
        return f"{value:.3f}"
    return f"{value:.3f} {'PASS' if target(value) else 'MISS'}"


def markdown_report(payload: dict[str, Any]) -> str:
    """The whole result as Markdown: per case a table of step figures and one of memory, then the machine."""
    machine, device = payload["machine"], payload["machine"]["device"]
    parts = []
    for name, result in payload["cases"].items():
        case = CASES[name]
        batch, seq_len, memory_batch = result["shape"]
        parts.append(f"### {name}: {case.description}, {device}\n")
        for precision, why in result.get("skipped", {}).items():
            parts.append(f"- {precision} not measured: {why}")
        if result.get("figures"):
            header = (f"step figures, batch {batch} x {seq_len}", *result["figures"], "target")
            parts.append(markdown_table(header, step_rows(result, device)) + "\n")
            parts.append(spread_note(result))
        if result.get("memory"):
            header = (
                f"memory, batch {memory_batch} x {payload['settings']['memory_seq_len']}",
                *result["memory"],
                "target",
            )
            parts.append(markdown_table(header, memory_rows(result)) + "\n")
    parts += latency_and_epoch(payload)
    gpu = f", GPU {machine['gpu']}" if "gpu" in machine else ""
    parts.append(
        f"machine: {machine['cpu']}, {machine['logical_cores']} logical cores ({machine['usable_cores']} usable), "
        f"torch threads {machine['torch_threads']}{gpu}; torch {machine['torch']}, transformers "
        f"{machine['transformers']}, accelerate {machine['accelerate']}, python {machine['python']}; load "
        f"average {machine['load_average_1min']} at the start, {payload.get('load_average_end', '?')} at the end; "
        f"{payload.get('total_s', 0):.0f} s in all"
    )
    return "\n".join(parts)


def latency_and_epoch(payload: dict[str, Any]) -> list[str]:
    """The float32 `inference` and `epoch` figures, when measured."""
    parts = []
    if "inference" in payload:
        rows = [
            (
                name,
                f"{r['teacher']:.1f}",
                f"{r['student']:.1f}",
                verdict(r["ratio"], lambda v: v >= 1.8),
            )
            for name, r in payload["inference"].items()
        ]
        header = ("inference (float32)", "teacher ms", "student ms", "teacher / student (>= 1.8)")
        parts.append(markdown_table(header, rows) + "\n")
    if "epoch" in payload:
        e = payload["epoch"]
        with_cache, without = e["with_cache"], e["without_cache"]
        rows = [
            (
                side,
                f"{r['total_s']:.1f}",
                f"{r['build_s']:.1f}",
                f"{r['train_s']:.1f}",
                str(int(r["teacher_forwards_in_training"])),
            )
            for side, r in (("with cache", with_cache), ("without", without))
        ]
        header = (
            f"epoch: 3 epochs x {e['examples']} BBC News articles",
            "total s",
            "building s",
            "train() s",
            "teacher forwards in train()",
        )
        parts.append(markdown_table(header, rows))
        parts.append(
            f"\nepoch: with / without = {verdict(e['ratio'], lambda v: v < 1.0)} (target < 1.00)\n"
        )
    return parts


def step_rows(case_result: dict[str, Any], device: str) -> list[tuple[str, ...]]:
    """One row per figure, one column per precision."""
    precisions = list(case_result["figures"])
    figures = case_result["figures"]
    steps = case_result["steps"]
    gpu_bert_bf16 = case_result["case"] == "bert-base" and device == "cuda"
    rows = []

    def row(label: str, cell: Callable[[str], str], target: str) -> None:
        rows.append((label, *(cell(p) for p in precisions), target))

    row(
        "step ms: loop / teacher fwd / plain / distill",
        lambda p: " / ".join(
            f"{x:.1f}"
            for x in (
                figures[p]["ms"].get("loop", float("nan")),
                figures[p].get("teacher_forward_ms", float("nan")),
                figures[p]["ms"].get("plain", float("nan")),
                figures[p]["ms"].get("kd", float("nan")),
            )
        ),
        "",
    )
    row(
        "overhead: distill / (teacher fwd + plain)",
        lambda p: verdict(figures[p].get("overhead"), lambda v: v <= 1.05),
        "<= 1.05",
    )
    row(
        "throughput: distill / plain fine-tuning",
        lambda p: verdict(
            figures[p].get("throughput"),
            (lambda v: v >= 0.60) if gpu_bert_bf16 and p == "bf16" else None,
        ),
        ">= 0.60 (bert-base, GPU, bf16)",
    )
    row(
        "bound: plain / (teacher fwd + plain)", lambda p: verdict(figures[p].get("bound"), None), ""
    )
    row(
        "cache: cached / plain",
        lambda p: verdict(figures[p].get("cache"), lambda v: v <= 1.10),
        "<= 1.10",
    )
    for term in TERM_RUNS:
        row(
            f"term {term}: step / distill step",
            lambda p, term=term: verdict(figures[p]["terms"].get(term), None),
            "none (a cost)",
        )
    row(
        "compute dtype: student / teacher",
        lambda p: " / ".join(
            steps[p].get("kd", {}).get("dtypes", {}).get(k, "?") for k in ("student", "teacher")
        ),
        "",
    )
    if any(steps[p].get("kd", {}).get("scaler") is not None for p in precisions):
        row(
            "grad scaler: final scale (skipped steps)",
            lambda p: (
                "-"
                if steps[p].get("kd", {}).get("scaler") is None
                else f"{steps[p]['kd']['scaler']:.0f} ({steps[p]['kd']['scaler_skipped_steps']})"
            ),
            "active under fp16",
        )
    return rows


def memory_rows(case_result: dict[str, Any]) -> list[tuple[str, ...]]:
    memory = case_result["memory"]
    precisions = list(memory)
    rows = []
    for run in MEMORY_RUNS:
        if not any(run in memory[p] for p in precisions):
            continue
        cells = []
        for p in precisions:
            entry = memory[p].get(run, {})
            cells.append(entry.get("error", f"{entry['peak_mb']:.0f}") if entry else "-")
        rows.append((f"peak MB: {run}", *cells, ""))

    def ratio(p: str) -> float | None:
        kd, ft = memory[p].get("kd", {}), memory[p].get("teacher_ft", {})
        return kd["peak_mb"] / ft["peak_mb"] if "peak_mb" in kd and "peak_mb" in ft else None

    rows.append(
        (
            "memory: distill / teacher fine-tuning",
            *(verdict(ratio(p), lambda v: v <= 1.0) for p in precisions),
            "<= 1.00",
        )
    )
    return rows


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def spread_note(result: dict[str, Any]) -> str:
    """The quartiles of each run's steps, so a reader can judge the noise."""
    notes, counts = [], set()
    for precision, runs in result["steps"].items():
        spans = []
        for run, entry in runs.items():
            summary = summarise(entry["seconds"])
            counts.add(summary["n"])
            spans.append(f"{run} {summary['q1_ms']:.0f}-{summary['q3_ms']:.0f}")
        notes.append(f"{precision}: {', '.join(spans)}")
    count = "/".join(str(n) for n in sorted(counts))
    return f"Step quartiles in ms ({count} timed steps per run): " + "; ".join(notes) + ".\n"
