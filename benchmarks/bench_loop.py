"""Step times read off `trainer.train()`: the trainers of every measured run, the clock, the dtype probe."""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from bench_setup import Case, log, random_dataset, shape_of
from torch import nn
from transformers import TrainerCallback

PRECISIONS = ("fp32", "bf16", "fp16")
PRECISION_FLAGS: dict[str, dict[str, bool]] = {
    "fp32": {},
    "bf16": {"bf16": True},
    "fp16": {"fp16": True},
}
TERMS: dict[str, dict[str, float]] = {
    "kd": {},
    "hidden": {"alpha_hidden": 1.0},
    "attn": {"alpha_attn": 1.0},
    "relation": {"alpha_relation": 1.0},
}
STEP_RUNS = ("loop", "teacher", "plain", "kd", "cached")
TERM_RUNS = ("hidden", "attn", "relation")


class LoopOnly(nn.Module):
    """A model whose training step is the loop alone, or the loop plus the teacher's no_grad forward.

    Its one scalar parameter gives the optimizer, the scheduler and `backward` something to do, at no cost;
    the teacher, when given, stays frozen and in eval mode whatever the Trainer asks of this module, as
    `DistillationTrainer` keeps it.
    """

    def __init__(self, teacher: nn.Module | None = None) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.teacher = teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LoopOnly:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if self.teacher is not None:
            with torch.no_grad():
                self.teacher(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                )
        return {"loss": self.anchor * 0.0}


class StepClock(TrainerCallback):
    """Reads the clock at the end of every optimizer step (CUDA-synchronised), and what the step computed in.

    A timed step is the interval between the ends of two steps, so it holds everything the loop does between
    them: fetching and collating the batch, forward, loss, backward, clipping, optimizer, scheduler, callbacks.
    The first `warmup` steps (optimizer state, kernel selection, caches) are not timed.
    """

    def __init__(self, warmup: int, cuda: bool, trainer: Any) -> None:
        self.warmup, self.cuda, self.trainer = warmup, cuda, trainer
        self.ends: list[float] = []
        self.scales: list[float] = []
        self.skipped = 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())
        accelerator = self.trainer.accelerator
        if accelerator.scaler is not None:
            self.scales.append(float(accelerator.scaler.get_scale()))
            self.skipped += int(accelerator.optimizer_step_was_skipped)

    def seconds(self) -> list[float]:
        """The timed steps, in seconds."""
        ends = self.ends[max(self.warmup - 1, 0) :]
        return [later - earlier for earlier, later in zip(ends[:-1], ends[1:], strict=True)]


def first_linear(module: nn.Module) -> nn.Module | None:
    return next((m for m in module.modules() if isinstance(m, nn.Linear)), None)


class DtypeProbe:
    """Records the dtype of the first linear layer's output of each named model: what autocast made of it."""

    def __init__(self, models: dict[str, nn.Module]) -> None:
        self.dtypes: dict[str, str] = {}
        self.handles = []
        for name, model in models.items():
            layer = first_linear(model)
            if layer is not None:
                self.handles.append(layer.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Callable[..., None]:
        def record(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            self.dtypes[name] = str(output.dtype).removeprefix("torch.")

        return record

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@dataclass
class Loop:
    """Where and how one measurement trains: device, precision, batch, steps, output folder."""

    device: str
    precision: str
    batch_size: int
    max_steps: int
    output_dir: str

    def arguments(self) -> dict[str, Any]:
        return dict(
            output_dir=self.output_dir,
            per_device_train_batch_size=self.batch_size,
            max_steps=self.max_steps,
            learning_rate=1e-5,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=self.device == "cpu",
            dataloader_pin_memory=self.device == "cuda",
            seed=0,
            **PRECISION_FLAGS[self.precision],
        )


def make_trainer(
    run: str,
    teacher: nn.Module | None,
    student: nn.Module | None,
    loop: Loop,
    dataset: Any,
    fresh: Callable[[nn.Module], nn.Module] = copy.deepcopy,
) -> tuple[Any, dict[str, nn.Module]]:
    """The trainer of one run on `fresh` models (copies by default), and the models whose compute dtype to probe.

    The step figures train copies, since the attention term switches both models to eager attention in place
    and every run must start from the same weights; the memory figure trains the models themselves, so that
    a copy does not count.
    """
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from nlpkd import DistillationConfig, DistillationTrainer

    if run in ("loop", "teacher", "plain", "teacher_ft"):
        model = {
            "loop": lambda: LoopOnly(),
            "teacher": lambda: LoopOnly(fresh(teacher)),
            "plain": lambda: fresh(student),
            "teacher_ft": lambda: fresh(teacher).train().requires_grad_(True),
        }[run]()
        trainer = Trainer(
            model=model, args=TrainingArguments(**loop.arguments()), train_dataset=dataset
        )
        probed = {"teacher": model.teacher} if run == "teacher" else {"student": model}
    else:
        extra = {"teacher_cache": True} if run == "cached" else TERMS[run]
        trainer = DistillationTrainer(
            model=fresh(student),
            teacher=fresh(teacher),
            args=DistillationConfig(**loop.arguments(), alpha_kd=0.5, alpha_ce=0.5, **extra),
            train_dataset=dataset,
        )
        probed = {"student": trainer.student, "teacher": trainer.teacher_model}
    trainer.remove_callback(PrinterCallback)
    return trainer, probed


def free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def time_run(
    run: str, teacher: nn.Module, student: nn.Module, loop: Loop, warmup: int, dataset: Any
) -> dict[str, Any]:
    """Train one run for `loop.max_steps` steps and return its timed steps, compute dtypes and grad scaler."""
    started = time.perf_counter()
    trainer, probed = make_trainer(run, teacher, student, loop, dataset)
    clock = StepClock(warmup, loop.device == "cuda", trainer)
    trainer.add_callback(clock)
    probe = DtypeProbe(probed)
    built = time.perf_counter()
    try:
        trainer.train()
    finally:
        probe.remove()
    result = {
        "seconds": clock.seconds(),
        # Not figures: what a run costs besides its steps, to size a run (building, preparing, the warm-up).
        "build_s": built - started,
        "train_s": time.perf_counter() - built,
        "dtypes": probe.dtypes,
        "scaler": clock.scales[-1] if clock.scales else None,
        "scaler_skipped_steps": clock.skipped if clock.scales else None,
    }
    del trainer, probed, clock
    free_memory(loop.device)
    return result


def autocast_check(device: str, precision: str) -> str | None:
    """Why `precision` cannot be measured on `device` (None when it can): asks Accelerate what it enables."""
    if precision == "fp32":
        return None
    from transformers import Trainer, TrainingArguments

    with tempfile.TemporaryDirectory(prefix="nlpkd-bench-") as tmp:
        loop = Loop(device, precision, 1, 1, tmp)
        try:
            trainer = Trainer(model=LoopOnly(), args=TrainingArguments(**loop.arguments()))
        except (ValueError, RuntimeError) as err:
            return f"refused: {err}"
        if not trainer.accelerator.native_amp:
            import accelerate

            return (
                f"--{precision} is accepted but not applied on {device}: Accelerate {accelerate.__version__} "
                "enables no autocast (and no grad scaler) for it there, so the run would train in float32"
            )
    return None


def measure_steps(
    case: Case,
    teacher: nn.Module,
    student: nn.Module,
    cli: argparse.Namespace,
    runs: tuple[str, ...],
) -> dict[str, dict[str, Any]]:
    """Every run in every precision, `cli.rounds` rounds, alternating the order; per precision and run, the
    pooled timed steps and what the last round recorded."""
    batch, seq_len, _ = shape_of(case, cli)
    steps = cli.warmup + cli.steps
    dataset = random_dataset(teacher.config.vocab_size, batch * steps, seq_len)
    results: dict[str, dict[str, Any]] = {
        p: {r: {"seconds": []} for r in runs} for p in cli.precisions
    }
    with tempfile.TemporaryDirectory(prefix="nlpkd-bench-") as tmp:
        for round_index in range(cli.rounds):
            order = runs if round_index % 2 == 0 else runs[::-1]
            for precision in cli.precisions:
                loop = Loop(cli.device, precision, batch, steps, tmp)
                for run in order:
                    done = time_run(run, teacher, student, loop, cli.warmup, dataset)
                    entry = results[precision][run]
                    entry["seconds"] += done.pop("seconds")
                    entry.update(done)
                    log(f"{case.name} {precision} {run}: round {round_index + 1} done", cli)
    return results


def summarise(seconds: list[float]) -> dict[str, float]:
    values = sorted(seconds)
    if len(values) >= 4:
        q1, median, q3 = statistics.quantiles(values, n=4)
        median = statistics.median(values)
    else:
        q1, median, q3 = values[0], statistics.median(values), values[-1]
    return {"median_ms": 1000 * median, "q1_ms": 1000 * q1, "q3_ms": 1000 * q3, "n": len(values)}


def step_figures(timings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ratios of one precision from its runs' medians."""
    ms = {run: summarise(entry["seconds"])["median_ms"] for run, entry in timings.items()}
    figures: dict[str, Any] = {"ms": ms}
    if {"loop", "teacher", "plain", "kd"} <= ms.keys():
        forward = ms["teacher"] - ms["loop"]
        figures["teacher_forward_ms"] = forward
        figures["overhead"] = ms["kd"] / (forward + ms["plain"])
        figures["throughput"] = ms["plain"] / ms["kd"]
        figures["bound"] = ms["plain"] / (forward + ms["plain"])
    if "cached" in ms and "plain" in ms:
        figures["cache"] = ms["cached"] / ms["plain"]
    figures["terms"] = {run: ms[run] / ms["kd"] for run in TERM_RUNS if run in ms and "kd" in ms}
    return figures
