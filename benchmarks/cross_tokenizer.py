"""Cross-tokenizer benchmark: a teacher of another family and tokenizer distilled into an off-the-shelf student.

BBC News (the packaged corpus, the job's seed-42 80/20 split: 1,780 training and 445 validation articles), every
text cut to its first 64 tokens by each model's own tokenizer. The teacher is the 12-layer all-mpnet-base-v2
(MPNet tokenizer), fine-tuned here once and kept in --work_dir; the student is the packaged all-MiniLM-L6-v2
(6 layers, width 384, BERT WordPiece tokenizer) with a new classification head. Students, each over --seeds:

- `minilm_labels`: the MiniLM fine-tuned on the labels alone (a plain `Trainer`);
- `minilm_from_mpnet_*`: the MiniLM distilled from the MPNet teacher, each reading its own tokenization of the
  same text (`tokenize_dataset(..., teacher_tokenizer=...)`, `DistillationTrainer(teacher_processing_class=...)`);
- `mpnet6_from_mpnet`: a 6-layer MPNet built from the teacher (`create_student(teacher, 6)`), same tokenizer;
- `minilm_from_minilm`: the default job's teacher (the packaged MiniLM fine-tuned, one epoch at 1e-4) distilling
  the same MiniLM student: the same-tokenizer baseline.

Every student trains with the job's defaults (batch 32, learning rate 1e-4, warm-up 10%, 2 epochs unless a recipe
says otherwise) and the teachers' logits cached once (`teacher_cache`). Accuracy is measured on the 445 validation
articles; latency in one interleaved run of every model on fixed-shape batches (--latency_batch_size x 64) of the
same validation texts, each through its own tokenizer.

    python benchmarks/cross_tokenizer.py --output benchmarks/results/cross_tokenizer.json    # about 1 h, 2 cores
    python benchmarks/cross_tokenizer.py --seeds 0 --students minilm_labels,minilm_from_mpnet_kd   # a quick look

The machine it was written on has 2 CPU cores shared with other work; the run says so in its output (load
average), and only the latency ratios of its one interleaved run are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MPNET = "/root/.cache/nlpkd/all-mpnet-base-v2"
BASE = {"alpha_kd": 0.5, "alpha_ce": 0.5, "temperature": 2.0}
# Each student: its teacher (mpnet, minilm or None), its model (minilm or mpnet6) and its DistillationConfig.
STUDENTS: dict[str, dict[str, Any]] = {
    "minilm_labels": {"teacher": None, "model": "minilm", "config": {}},
    "minilm_from_mpnet_kd": {"teacher": "mpnet", "model": "minilm", "config": BASE},
    "minilm_from_mpnet_kd_4ep": {
        "teacher": "mpnet",
        "model": "minilm",
        "config": {**BASE, "num_train_epochs": 4.0},
    },
    "minilm_from_mpnet_kd_t4_4ep": {
        "teacher": "mpnet",
        "model": "minilm",
        "config": {**BASE, "temperature": 4.0, "num_train_epochs": 4.0},
    },
    "minilm_from_mpnet_pkd": {
        "teacher": "mpnet",
        "model": "minilm",
        "config": {**BASE, "alpha_hidden": 0.5, "hidden_loss": "pkd", "teacher_cache": False},
    },
    "mpnet6_from_mpnet": {"teacher": "mpnet", "model": "mpnet6", "config": BASE},
    "minilm_from_minilm": {"teacher": "minilm", "model": "minilm", "config": BASE},
}
DEFAULT_STUDENTS = [
    "minilm_labels",
    "minilm_from_mpnet_kd",
    "minilm_from_mpnet_kd_4ep",
    "minilm_from_mpnet_kd_t4_4ep",
    "mpnet6_from_mpnet",
    "minilm_from_minilm",
]
TRAINING = {
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "learning_rate": 1e-4,
    "num_train_epochs": 2.0,
    "warmup_steps": 0.1,
    "report_to": "none",
    "save_strategy": "no",
    "eval_strategy": "no",
    "logging_steps": 20,
    "disable_tqdm": True,
    "use_cpu": True,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--students", default=",".join(DEFAULT_STUDENTS))
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--teacher_epochs", type=float, default=2.0)
    parser.add_argument("--teacher_learning_rate", type=float, default=5e-5)
    parser.add_argument("--latency_batch_size", type=int, default=32)
    parser.add_argument("--latency_batches", type=int, default=4)
    parser.add_argument("--latency_repeats", type=int, default=5)
    parser.add_argument("--work_dir", default="/tmp/nlpkd-cross-tokenizer")
    parser.add_argument("--output", default=None, help="JSON file for the results.")
    return parser.parse_args(argv)


def load_data(args: argparse.Namespace):
    from transformers import AutoTokenizer

    from nlpkd.data import load_bbc_news, student_view, teacher_view, tokenize_dataset
    from nlpkd.models import packaged_minilm_path

    raw = load_bbc_news(seed=42)
    mpnet_tokenizer = AutoTokenizer.from_pretrained(MPNET)
    minilm_tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_path())
    # One tokenization step: the MiniLM's columns, and the MPNet teacher's own (teacher_input_ids, ...).
    both = tokenize_dataset(
        raw, minilm_tokenizer, "bbc_news", args.max_length, teacher_tokenizer=mpnet_tokenizer
    )
    return {
        "raw": raw,
        "tokenizers": {"mpnet": mpnet_tokenizer, "minilm": minilm_tokenizer},
        "both": both,
        "minilm": {split: student_view(d) for split, d in both.items()},
        "mpnet": {split: teacher_view(d, "teacher_") for split, d in both.items()},
    }


def coverage(raw, tokenizers: dict[str, Any], max_length: int) -> dict[str, Any]:
    """What truncation at `max_length` tokens keeps of the validation articles, per tokenizer."""
    texts = list(raw["validation"]["text"])
    result = {}
    for name, tokenizer in tokenizers.items():
        encoded = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True)
        kept = [
            max(end for _, end in offsets) / max(len(text), 1)
            for offsets, text in zip(encoded["offset_mapping"], texts, strict=True)
        ]
        lengths = tokenizer(texts)["input_ids"]
        result[name] = {
            "truncated_share": sum(len(ids) > max_length for ids in lengths) / len(texts),
            "mean_tokens_untruncated": statistics.mean(len(ids) for ids in lengths),
            "mean_chars_kept": statistics.mean(
                max(end for _, end in offsets)
                for offsets in encoded["offset_mapping"]
            ),
            "mean_share_kept": statistics.mean(kept),
        }
    return result


def finetuned(name: str, base: str, data, tokenizer, args: argparse.Namespace, epochs, lr):
    """A teacher fine-tuned once on the training split and kept in --work_dir."""
    from transformers import AutoModelForSequenceClassification

    from nlpkd.config import DistillationConfig
    from nlpkd.data import get_task
    from nlpkd.jobs import finetune_teacher

    folder = Path(args.work_dir) / f"{name}-l{args.max_length}-e{epochs}-lr{lr}"
    if (folder / "config.json").is_file():
        return AutoModelForSequenceClassification.from_pretrained(folder).eval(), 0.0
    task = get_task("bbc_news")
    start = time.perf_counter()
    config = DistillationConfig(output_dir=str(folder), seed=42, **TRAINING)
    model = finetune_teacher(
        base, data, task, list(task.label_names), tokenizer, config,
        output_dir=folder, num_train_epochs=epochs, learning_rate=lr,
    )  # fmt: skip
    tokenizer.save_pretrained(folder)
    return model.eval(), time.perf_counter() - start


def accuracy(model, dataset, tokenizer) -> float:
    import torch
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(dataset), 64):
            batch = collate([dataset[i] for i in range(start, min(start + 64, len(dataset)))])
            labels = batch.pop("labels")
            correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    return correct / len(dataset)


def new_student(kind: str, teachers: dict[str, Any], seed: int):
    from transformers import AutoModelForSequenceClassification, set_seed

    from nlpkd import create_student
    from nlpkd.data import get_task
    from nlpkd.data.labels import label_maps
    from nlpkd.models import packaged_minilm_path

    set_seed(seed)  # the new classification head
    if kind == "mpnet6":
        return create_student(teachers["mpnet"], num_layers=6)
    task = get_task("bbc_news")
    return AutoModelForSequenceClassification.from_pretrained(
        packaged_minilm_path(), **label_maps(list(task.label_names), task)
    )


def train_student(name: str, seed: int, data, teachers, args: argparse.Namespace):
    """Train one student with one seed; returns it and its training time."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from nlpkd import DistillationConfig, DistillationTrainer

    spec = STUDENTS[name]
    student = new_student(spec["model"], teachers, seed)
    output = str(Path(args.work_dir) / "runs" / f"{name}-seed{seed}")
    tokenizers = data["tokenizers"]
    start = time.perf_counter()
    if spec["teacher"] is None:
        training = TrainingArguments(output_dir=output, seed=seed, **TRAINING)
        tokenizer = tokenizers["minilm"]
        trainer = Trainer(
            model=student, args=training, train_dataset=data["minilm"]["train"],
            processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
        )  # fmt: skip
    else:
        settings = {**TRAINING, "teacher_cache": True, **spec["config"]}
        settings["teacher_cache_dir"] = str(Path(args.work_dir) / "teacher_cache")
        config = DistillationConfig(output_dir=output, seed=seed, **settings)
        cross = spec["teacher"] == "mpnet" and spec["model"] == "minilm"
        own = "mpnet" if spec["model"] == "mpnet6" else spec["teacher"]
        trainer = DistillationTrainer(
            model=student,
            teacher=teachers[spec["teacher"]],
            args=config,
            train_dataset=data["both"]["train"] if cross else data[own]["train"],
            processing_class=tokenizers["minilm" if spec["model"] == "minilm" else "mpnet"],
            teacher_processing_class=tokenizers[spec["teacher"]],
        )
    trainer.train()
    return student.eval(), time.perf_counter() - start


def latency(models: dict[str, Any], data, args: argparse.Namespace) -> dict[str, float]:
    """One interleaved run: every model on the same validation texts, each through its own tokenizer, at
    `latency_batch_size x max_length`."""
    from nlpkd.report.measure import latency_batches, measure_latency

    batches = {}
    for name, (model, kind) in models.items():
        split = data[kind]["validation"]
        tokenizer = data["tokenizers"][kind]
        batches[name] = latency_batches(
            split, tokenizer, args.latency_batch_size, args.latency_batches, args.max_length
        )
    timed = {name: model for name, (model, _) in models.items()}
    return measure_latency(timed, batches, warmup=2, repeats=args.latency_repeats, progress=False)


def summarize(results: dict[str, Any], teacher_accuracy: float) -> list[dict[str, Any]]:
    rows = []
    for name, entry in results.items():
        values = entry["accuracy"]
        mean = statistics.mean(values)
        rows.append(
            {
                "student": name,
                "accuracy_mean": mean,
                "accuracy_sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                "retention": mean / teacher_accuracy,
            }
        )
    return rows


def run_students(args, data, teachers) -> dict[str, Any]:
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, Any] = {}
    last: dict[str, Any] = {}
    for name in args.students.split(","):
        results[name] = {"accuracy": [], "train_seconds": []}
        kind = "mpnet" if STUDENTS[name]["model"] == "mpnet6" else "minilm"
        for seed in seeds:
            student, seconds = train_student(name, seed, data, teachers, args)
            score = accuracy(student, data[kind]["validation"], data["tokenizers"][kind])
            results[name]["accuracy"].append(score)
            results[name]["train_seconds"].append(seconds)
            print(f"{name} seed {seed}: accuracy {score:.4f} ({seconds:.0f} s)", flush=True)
            last[kind if kind == "mpnet" else "minilm"] = student
    return {"results": results, "last": last}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from nlpkd.models import packaged_minilm_path
    from nlpkd.report.measure import count_parameters, size_on_disk_mb

    args = parse_args(argv)
    began = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"2-core machine shared with other work; 1-minute load average at the start: {load}")
    data = load_data(args)
    mpnet, mpnet_seconds = finetuned(
        "mpnet-teacher", MPNET, data["mpnet"], data["tokenizers"]["mpnet"], args,
        args.teacher_epochs, args.teacher_learning_rate,
    )  # fmt: skip
    minilm, minilm_seconds = finetuned(
        "minilm-teacher", packaged_minilm_path(), data["minilm"], data["tokenizers"]["minilm"], args,
        1.0, 1e-4,
    )  # fmt: skip
    teachers = {"mpnet": mpnet, "minilm": minilm}
    teacher_accuracy = {
        "mpnet": accuracy(mpnet, data["mpnet"]["validation"], data["tokenizers"]["mpnet"]),
        "minilm": accuracy(minilm, data["minilm"]["validation"], data["tokenizers"]["minilm"]),
    }
    print(f"teachers: {teacher_accuracy}", flush=True)
    trained = run_students(args, data, teachers)
    timed = {"mpnet_teacher": (mpnet, "mpnet")}
    if "minilm" in trained["last"]:
        timed["minilm_student"] = (trained["last"]["minilm"], "minilm")
    if "mpnet" in trained["last"]:
        timed["mpnet6_student"] = (trained["last"]["mpnet"], "mpnet")
    latency_ms = latency(timed, data, args)
    sizes = {
        name: {"params": count_parameters(model), "size_mb": size_on_disk_mb(model)}
        for name, (model, _) in timed.items()
    }
    output = {
        "setting": {
            "data": "BBC News (packaged), seed-42 80/20 split: 1780 train, 445 validation",
            "max_length": args.max_length,
            "teacher": f"all-mpnet-base-v2 fine-tuned {args.teacher_epochs} epochs at {args.teacher_learning_rate}",
            "baseline_teacher": "packaged all-MiniLM-L6-v2 fine-tuned 1 epoch at 1e-4 (the job's default)",
            "training": TRAINING,
            "seeds": args.seeds,
            "latency": f"{args.latency_batches} batches of {args.latency_batch_size} x {args.max_length}, "
            f"{args.latency_repeats} interleaved rounds, {torch.get_num_threads()} threads",
            "load_average_at_start": load,
        },
        "teacher_accuracy": teacher_accuracy,
        "teacher_seconds": {"mpnet": mpnet_seconds, "minilm": minilm_seconds},
        "students": trained["results"],
        "summary": summarize(trained["results"], teacher_accuracy["mpnet"]),
        "latency_ms": latency_ms,
        "speedup_over_mpnet_teacher": {
            name: latency_ms["mpnet_teacher"] / value for name, value in latency_ms.items()
        },
        "sizes": sizes,
        "truncation": coverage(data["raw"], data["tokenizers"], args.max_length),
        "wall_seconds": time.perf_counter() - began,
    }
    print(json.dumps({k: output[k] for k in ("summary", "speedup_over_mpnet_teacher")}, indent=1))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(output, indent=1) + "\n")
    return output


if __name__ == "__main__":
    main()
