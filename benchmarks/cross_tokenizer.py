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

Every student trains with the job's defaults before 0.3 (batch 32, learning rate 1e-4, warm-up 10%, 2 epochs unless a recipe
says otherwise). Each teacher's logits are computed once over the training set with the teacher-output cache
(`nlpkd.trainer.add_teacher_logits`, on the teacher's own tokenization, kept on disk in --work_dir) and carried by
the training rows as `teacher_logits`, so no student step runs a teacher. Accuracy is measured on the 445
validation articles; latency in one interleaved run of every architecture on fixed-shape batches
(--latency_batch_size x --max_length) of the same validation texts, each through its own tokenizer (speed does not
depend on the weights, so it is timed once, before the students train).

    python benchmarks/cross_tokenizer.py --output benchmarks/results/cross_tokenizer.json    # ~1 h on 2 idle cores
    python benchmarks/cross_tokenizer.py --seeds 0 --students minilm_labels,minilm_from_mpnet_kd   # a quick look

The results file is written after every trained student and read back on a rerun, which trains only what it lacks
(the fine-tuned teachers and their logits are kept in --work_dir too): a run on a shared machine can be resumed.
The machine it was written on has 2 CPU cores shared with other work; the run records the load average, and only
the latency ratios of its one interleaved run are reported.
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
    "minilm_from_minilm": {"teacher": "minilm", "model": "minilm", "config": BASE},
    "minilm_from_mpnet_kd_4ep": {
        "teacher": "mpnet",
        "model": "minilm",
        "config": {**BASE, "num_train_epochs": 4.0},
    },
    "minilm_from_mpnet_kd_t4": {
        "teacher": "mpnet",
        "model": "minilm",
        "config": {**BASE, "temperature": 4.0},
    },
    "minilm_from_mpnet_symmetric": {
        "teacher": "mpnet",
        "model": "minilm",
        "config": {**BASE, "kd_loss": "symmetric_kl"},
    },
    "mpnet6_from_mpnet": {"teacher": "mpnet", "model": "mpnet6", "config": BASE},
}
# Most informative first: a run stopped early still answers the main question.
DEFAULT_STUDENTS = [
    "minilm_labels",
    "minilm_from_mpnet_kd",
    "minilm_from_minilm",
    "minilm_from_mpnet_kd_4ep",
    "mpnet6_from_mpnet",
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
    parser.add_argument("--teacher_epochs", type=float, default=1.0)
    parser.add_argument("--teacher_learning_rate", type=float, default=5e-5)
    parser.add_argument("--latency_batch_size", type=int, default=32)
    parser.add_argument("--latency_batches", type=int, default=4)
    parser.add_argument("--latency_repeats", type=int, default=5)
    parser.add_argument("--work_dir", default="/tmp/nlpkd-cross-tokenizer")
    parser.add_argument(
        "--output", default=None, help="JSON file for the results (read back on a rerun)."
    )
    parser.add_argument(
        "--table", action="store_true", help="Print the Markdown table of --output and stop."
    )
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
        "both": dict(both),
        "minilm": {split: student_view(d) for split, d in both.items()},
        "mpnet": {split: teacher_view(d, "teacher_") for split, d in both.items()},
    }


def coverage(raw, tokenizers: dict[str, Any], max_length: int) -> dict[str, Any]:
    """What truncation at `max_length` tokens keeps of the validation articles, per tokenizer."""
    texts = list(raw["validation"]["text"])
    result = {}
    for name, tokenizer in tokenizers.items():
        encoded = tokenizer(
            texts, truncation=True, max_length=max_length, return_offsets_mapping=True
        )
        ends = [max(end for _, end in offsets) for offsets in encoded["offset_mapping"]]
        lengths = [
            len(ids) for ids in tokenizer(texts, truncation=True, max_length=4096)["input_ids"]
        ]
        result[name] = {
            "truncated_share": sum(n > max_length for n in lengths) / len(texts),
            "mean_tokens_untruncated": statistics.mean(lengths),
            "mean_chars_kept": statistics.mean(ends),
            "mean_share_kept": statistics.mean(
                end / max(len(text), 1) for end, text in zip(ends, texts, strict=True)
            ),
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
        return AutoModelForSequenceClassification.from_pretrained(folder).eval(), None
    task = get_task("bbc_news")
    start = time.perf_counter()
    config = DistillationConfig(output_dir=str(folder), seed=42, **TRAINING)
    model = finetune_teacher(
        base, data, task, list(task.label_names), tokenizer, config,
        output_dir=folder, num_train_epochs=epochs, learning_rate=lr,
    )  # fmt: skip
    tokenizer.save_pretrained(folder)
    return model.eval(), time.perf_counter() - start


def with_teacher_logits(teacher, dataset, tokenizer, args: argparse.Namespace):
    """`dataset` with the teacher's logits on its own tokenization, computed once (the teacher-output cache)."""
    from transformers import DataCollatorWithPadding

    from nlpkd.trainer import add_teacher_logits

    cache = Path(args.work_dir) / "teacher_cache"
    names = ["input_ids", "attention_mask", "token_type_ids"]
    collate = DataCollatorWithPadding(tokenizer)
    return add_teacher_logits(dataset, teacher, collate, names, batch_size=64, cache_dir=str(cache))


def accuracy(model, dataset, tokenizer) -> float:
    import torch
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    columns = [c for c in dataset.column_names if c in (*tokenizer.model_input_names, "label")]
    dataset = dataset.select_columns(columns)
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
    from transformers import logging as hf_logging

    from nlpkd import create_student
    from nlpkd.data import get_task
    from nlpkd.data.labels import label_maps
    from nlpkd.models import packaged_minilm_path

    set_seed(seed)  # the new classification head
    if kind == "mpnet6":
        return create_student(teachers["mpnet"], num_layers=6)
    task = get_task("bbc_news")
    hf_logging.set_verbosity_error()  # the new head's "newly initialized" report is expected
    return AutoModelForSequenceClassification.from_pretrained(
        packaged_minilm_path(), **label_maps(list(task.label_names), task)
    )


def training_rows(spec: dict[str, Any], data) -> Any:
    """The training rows of a student: its own tokenization, the teacher's when it differs, and the teacher's
    cached logits."""
    if spec["teacher"] is None:
        return data["minilm"]["train"]
    logits = data["logits"][spec["teacher"]]
    cross = spec["teacher"] == "mpnet" and spec["model"] == "minilm"
    own = "mpnet" if spec["model"] == "mpnet6" else "minilm"
    rows = data["both"]["train"] if cross else data[own]["train"]
    return rows.add_column("teacher_logits", logits)


def train_student(name: str, seed: int, data, teachers, args: argparse.Namespace):
    """Train one student with one seed; returns it and its training time."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from nlpkd import DistillationConfig, DistillationTrainer

    spec = STUDENTS[name]
    student = new_student(spec["model"], teachers, seed)
    output = str(Path(args.work_dir) / "runs" / f"{name}-seed{seed}")
    tokenizers = data["tokenizers"]
    rows = training_rows(spec, data)
    start = time.perf_counter()
    if spec["teacher"] is None:
        training = TrainingArguments(output_dir=output, seed=seed, **TRAINING)
        tokenizer = tokenizers["minilm"]
        trainer = Trainer(
            model=student, args=training, train_dataset=rows,
            processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
        )  # fmt: skip
    else:
        config = DistillationConfig(output_dir=output, seed=seed, **{**TRAINING, **spec["config"]})
        trainer = DistillationTrainer(
            model=student,
            teacher=teachers[spec["teacher"]],
            args=config,
            train_dataset=rows,
            processing_class=tokenizers["minilm" if spec["model"] == "minilm" else "mpnet"],
            teacher_processing_class=tokenizers[spec["teacher"]],
        )
    trainer.train()
    return student.eval(), time.perf_counter() - start


def latency(teachers, data, args: argparse.Namespace) -> dict[str, Any]:
    """One interleaved run of every architecture on the same validation texts, each through its own tokenizer,
    at `latency_batch_size x max_length`; with the parameters and the size on disk of each."""
    from nlpkd.report.measure import (
        count_parameters,
        latency_batches,
        measure_latency,
        size_on_disk_mb,
    )

    models = {
        "mpnet_teacher": (teachers["mpnet"], "mpnet"),
        "minilm_student": (new_student("minilm", teachers, 0), "minilm"),
        "mpnet6_student": (new_student("mpnet6", teachers, 0), "mpnet"),
    }
    batches = {
        name: latency_batches(
            data[kind]["validation"], data["tokenizers"][kind], args.latency_batch_size,
            args.latency_batches, args.max_length,
        )
        for name, (_, kind) in models.items()
    }  # fmt: skip
    timed = {name: model for name, (model, _) in models.items()}
    ms = measure_latency(timed, batches, warmup=2, repeats=args.latency_repeats, progress=False)
    return {
        "latency_ms": ms,
        "speedup_over_mpnet_teacher": {name: ms["mpnet_teacher"] / v for name, v in ms.items()},
        "sizes": {
            name: {"params": count_parameters(model), "size_mb": size_on_disk_mb(model)}
            for name, model in timed.items()
        },
        "batch_shape": list(batches["mpnet_teacher"][0]["input_ids"].shape),
    }


def summarize(results: dict[str, Any], teacher_accuracy: float) -> list[dict[str, Any]]:
    rows = []
    for name, entry in results.items():
        values = list(entry["accuracy"].values())
        if not values:
            continue
        mean = statistics.mean(values)
        rows.append(
            {
                "student": name,
                "seeds": len(values),
                "accuracy_mean": mean,
                "accuracy_sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                "retention": mean / teacher_accuracy,
            }
        )
    return rows


# What the table calls each student, and the architecture it is timed as.
DESCRIPTIONS = {
    "minilm_labels": ("(a) MiniLM-L6, labels alone", "minilm_student"),
    "minilm_from_mpnet_kd": (
        "(b) MiniLM-L6 from MPNet, logits KD, T=2, 2 epochs",
        "minilm_student",
    ),
    "minilm_from_mpnet_kd_4ep": (
        "(b) MiniLM-L6 from MPNet, logits KD, T=2, 4 epochs",
        "minilm_student",
    ),
    "minilm_from_mpnet_kd_t4": (
        "(b) MiniLM-L6 from MPNet, logits KD, T=4, 2 epochs",
        "minilm_student",
    ),
    "minilm_from_mpnet_symmetric": (
        "(b) MiniLM-L6 from MPNet, symmetric KL, 2 epochs",
        "minilm_student",
    ),
    "minilm_from_mpnet_pkd": ("(b) MiniLM-L6 from MPNet, KD + PKD", "minilm_student"),
    "mpnet6_from_mpnet": ("(c) MPNet 12 -> 6 layers (create_student), logits KD", "mpnet6_student"),
    "minilm_from_minilm": (
        "(d) MiniLM-L6 from the job's MiniLM teacher, logits KD",
        "minilm_student",
    ),
}


def markdown_table(output: dict[str, Any]) -> str:
    """The results as the Markdown table of docs/cross-tokenizer.md."""
    teacher = output["teacher_accuracy"]["mpnet"]
    timing = output["latency"]
    lines = [
        "| model | accuracy (mean ± sd) | seeds | retention of the MPNet teacher | speed-up | parameters | size |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| MPNet teacher (12 x 768) | {teacher:.4f} | - | 100.0% | 1.00x | "
        f"{timing['sizes']['mpnet_teacher']['params'] / 1e6:.1f} M | "
        f"{timing['sizes']['mpnet_teacher']['size_mb']:.0f} MB |",
        f"| MiniLM teacher of (d) (6 x 384) | {output['teacher_accuracy']['minilm']:.4f} | - | "
        f"{output['teacher_accuracy']['minilm'] / teacher:.1%} | "
        f"{timing['speedup_over_mpnet_teacher']['minilm_student']:.2f}x | "
        f"{timing['sizes']['minilm_student']['params'] / 1e6:.1f} M | "
        f"{timing['sizes']['minilm_student']['size_mb']:.0f} MB |",
    ]
    for row in output.get("summary", []):
        name, timed = DESCRIPTIONS[row["student"]]
        size = timing["sizes"][timed]
        lines.append(
            f"| {name} | {row['accuracy_mean']:.4f} ± {row['accuracy_sd']:.4f} | {row['seeds']} | "
            f"{row['retention']:.1%} | {timing['speedup_over_mpnet_teacher'][timed]:.2f}x | "
            f"{size['params'] / 1e6:.1f} M | {size['size_mb']:.0f} MB |"
        )
    return "\n".join(lines)


def save(output: dict[str, Any], args: argparse.Namespace) -> None:
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(output, indent=1) + "\n")


def prepare(args: argparse.Namespace, output: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The data, both teachers (fine-tuned once) and their cached logits; their accuracy into `output`."""
    from nlpkd.models import packaged_minilm_path

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
    for name, seconds in (("mpnet", mpnet_seconds), ("minilm", minilm_seconds)):
        if seconds is not None:
            output["teacher_seconds"][name] = seconds
        if name not in output["teacher_accuracy"]:
            split = data[name]["validation"]
            output["teacher_accuracy"][name] = accuracy(
                teachers[name], split, data["tokenizers"][name]
            )
    print(f"teachers: {output['teacher_accuracy']}", flush=True)
    data["logits"] = {
        name: with_teacher_logits(
            teachers[name], data[name]["train"], data["tokenizers"][name], args
        )["teacher_logits"]
        for name in teachers
    }
    return data, teachers


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    args = parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.output).read_text())))
        return {}
    began = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"2-core machine shared with other work; 1-minute load average at the start: {load}")
    previous = Path(args.output) if args.output else None
    output: dict[str, Any] = (
        json.loads(previous.read_text())
        if previous is not None and previous.is_file()
        else {"teacher_accuracy": {}, "teacher_seconds": {}, "students": {}, "wall_seconds": 0.0}
    )
    output["setting"] = {
        "data": "BBC News (packaged), seed-42 80/20 split: 1780 train, 445 validation",
        "max_length": args.max_length,
        "teacher": f"all-mpnet-base-v2 fine-tuned {args.teacher_epochs} epoch(s) at {args.teacher_learning_rate}",
        "baseline_teacher": "packaged all-MiniLM-L6-v2 fine-tuned 1 epoch at 1e-4 (the job's default)",
        "training": TRAINING,
        "recipes": {name: STUDENTS[name] for name in args.students.split(",")},
        "latency": f"{args.latency_batches} batches of {args.latency_batch_size} x {args.max_length}, "
        f"{args.latency_repeats} interleaved rounds, {torch.get_num_threads()} threads",
    }
    output.setdefault("load_average_at_starts", []).append(load)
    data, teachers = prepare(args, output)
    if "latency" not in output:
        output["latency"] = latency(teachers, data, args)
        output["truncation"] = coverage(data["raw"], data["tokenizers"], args.max_length)
        save(output, args)
    print(json.dumps(output["latency"], indent=1), flush=True)
    for name in args.students.split(","):
        entry = output["students"].setdefault(name, {"accuracy": {}, "train_seconds": {}})
        kind = "mpnet" if STUDENTS[name]["model"] == "mpnet6" else "minilm"
        for seed in args.seeds.split(","):
            if seed in entry["accuracy"]:
                continue
            student, seconds = train_student(name, int(seed), data, teachers, args)
            score = accuracy(student, data[kind]["validation"], data["tokenizers"][kind])
            entry["accuracy"][seed], entry["train_seconds"][seed] = score, seconds
            output["summary"] = summarize(output["students"], output["teacher_accuracy"]["mpnet"])
            output["wall_seconds"] += time.perf_counter() - began
            began = time.perf_counter()
            save(output, args)
            print(f"{name} seed {seed}: accuracy {score:.4f} ({seconds:.0f} s)", flush=True)
    print(markdown_table(output))
    return output


if __name__ == "__main__":
    main()
