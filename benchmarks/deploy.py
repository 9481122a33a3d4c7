"""Every deployed form of a distilled student, measured side by side in one run.

Given a fine-tuned teacher folder and a distilled student folder (e.g. from
`nlpkd distill --output_dir OUT`: the student in OUT, the teacher in OUT/teacher), this builds
the deployed forms with `nlpkd.deploy`, evaluates each on the BBC News validation split and times
each on the same fixed-shape batches (32 x 128 by default), then prints one table:
name, accuracy, parameters, size on disk, latency, and speed-up, size ratio and accuracy retention
against the float32 teacher.

Forms: teacher; student (float32, PyTorch); student-int8 (PyTorch dynamic int8, linear layers and
embeddings); student-onnx and student-onnx-int8 (ONNX Runtime); student-pruned (vocabulary of the
training split, as the model sees it at max_length) in float32, PyTorch int8 and ONNX int8. Three
more pruned vocabularies are evaluated for accuracy only, to show what pruning alone changes:
train + single characters, and train + validation. `--extra_student` adds another student
(e.g. 2 layers) in float32, PyTorch int8 and pruned PyTorch int8.

Usage:
    python benchmarks/deploy.py --teacher OUT/teacher --student OUT
    python benchmarks/deploy.py --teacher T --student S --output_dir deployed --json deploy.json
    python benchmarks/deploy.py --teacher T --student S --repeats 20 --latency_batches 4
    python benchmarks/deploy.py --teacher T --student S --extra_student S2  # e.g. a 2-layer one
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

# Run from a checkout without installing: make the package next to this folder importable.
if importlib.util.find_spec("nlpkd") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = {"size_ratio": 0.25, "speedup": 3.5, "retention": 0.99}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="fine-tuned teacher folder")
    parser.add_argument("--student", required=True, help="distilled student folder")
    parser.add_argument("--output_dir", help="where the forms are written (default: a temp dir)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--latency_batches", type=int, default=2, help="batches timed per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip_onnx", action="store_true", help="PyTorch forms only")
    parser.add_argument(
        "--extra_student",
        action="append",
        default=[],
        help="another distilled student (e.g. 2 layers) to add in float, int8 and pruned int8; "
        "repeatable",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    return parser.parse_args(argv)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import transformers

    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime

        versions += f", onnxruntime {onnxruntime.__version__}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}; {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}; "
        f"{versions}; load average {load:.2f} at start"
    )


def fixed_batches(texts_data: Any, tokenizer: Any, batch_size: int, max_length: int) -> list:
    """All validation examples tokenized by `tokenizer`, padded to `max_length`, in batches."""
    import datasets

    from nlpkd.data import tokenize_dataset
    from nlpkd.report import latency_batches

    split = datasets.DatasetDict({"validation": texts_data})
    tokenized = tokenize_dataset(split, tokenizer, "bbc_news", max_length=max_length)["validation"]
    count = math.ceil(len(tokenized) / batch_size)
    return latency_batches(tokenized, tokenizer, batch_size, count, max_length)


def build(args: argparse.Namespace, work: Path) -> tuple[list, dict[str, Any], dict[str, str]]:
    """The variants, their tokenizers, and notes on the pruned vocabularies."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from nlpkd import deploy
    from nlpkd.data import load_bbc_news

    data = load_bbc_news()
    train = list(data["train"]["text"])
    validation = list(data["validation"]["text"])
    teacher_tokenizer = AutoTokenizer.from_pretrained(args.teacher)
    tokenizer = AutoTokenizer.from_pretrained(args.student)
    load = AutoModelForSequenceClassification.from_pretrained
    teacher = load(args.teacher).eval()
    student = load(args.student).eval()
    student_params = sum(p.numel() for p in student.parameters())

    variants = [
        deploy.torch_variant("teacher", teacher, args.teacher, tokenizer=teacher_tokenizer),
        deploy.torch_variant("student", student, args.student, tokenizer=tokenizer),
    ]
    folder = deploy.save_quantized(deploy.quantize_int8(student), work / "student-int8", tokenizer)
    variants.append(
        deploy.torch_variant(
            "student-int8", deploy.load_quantized(folder), folder, student_params, tokenizer
        )
    )
    if not args.skip_onnx:
        onnx_fp32 = deploy.export_onnx(student, work / "student-onnx", tokenizer)
        onnx_int8 = deploy.quantize_onnx(onnx_fp32, work / "student-onnx-int8")
        variants.append(
            deploy.onnx_variant("student-onnx", onnx_fp32, student_params, None, tokenizer)
        )
        variants.append(
            deploy.onnx_variant("student-onnx-int8", onnx_int8, student_params, None, tokenizer)
        )

    notes = {}
    vocabularies = {
        "student-pruned": dict(texts=train),
        "student-pruned-chars": dict(texts=train, keep_characters=True),
        "student-pruned-trainval": dict(texts=train, extra_texts=validation),
    }
    pruned_main = None
    for name, kwargs in vocabularies.items():
        model, pruned_tokenizer = deploy.prune_vocabulary(
            student, tokenizer, max_length=args.max_length, **kwargs
        )
        model.save_pretrained(work / name)
        pruned_tokenizer.save_pretrained(work / name)
        reloaded = load(work / name).eval()
        params = sum(p.numel() for p in reloaded.parameters())
        variants.append(
            deploy.torch_variant(name, reloaded, work / name, tokenizer=pruned_tokenizer)
        )
        notes[name] = f"{len(pruned_tokenizer):,} of {len(tokenizer):,} tokens"
        if name == "student-pruned":
            pruned_main = (reloaded, pruned_tokenizer, params)

    reloaded, pruned_tokenizer, params = pruned_main
    folder = deploy.save_quantized(
        deploy.quantize_int8(reloaded), work / "student-pruned-int8", pruned_tokenizer
    )
    variants.append(
        deploy.torch_variant(
            "student-pruned-int8", deploy.load_quantized(folder), folder, params, pruned_tokenizer
        )
    )
    if not args.skip_onnx:
        onnx_fp32 = deploy.export_onnx(reloaded, work / "pruned-onnx-fp32", pruned_tokenizer)
        onnx_int8 = deploy.quantize_onnx(onnx_fp32, work / "student-pruned-onnx-int8")
        variants.append(
            deploy.onnx_variant(
                "student-pruned-onnx-int8", onnx_int8, params, None, pruned_tokenizer
            )
        )
    for folder in args.extra_student:
        variants += extra_student_variants(Path(folder), train, args.max_length, work, notes)
    return variants, data, notes


def extra_student_variants(
    folder: Path, train: list[str], max_length: int, work: Path, notes: dict[str, str]
) -> list:
    """Float, int8 and pruned int8 forms of another student, named after its layer count."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from nlpkd import deploy

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    name = f"student-{model.config.num_hidden_layers}L"
    params = sum(p.numel() for p in model.parameters())
    variants = [deploy.torch_variant(name, model, folder, tokenizer=tokenizer)]
    int8 = deploy.save_quantized(deploy.quantize_int8(model), work / f"{name}-int8", tokenizer)
    variants.append(
        deploy.torch_variant(f"{name}-int8", deploy.load_quantized(int8), int8, params, tokenizer)
    )
    pruned, pruned_tokenizer = deploy.prune_vocabulary(
        model, tokenizer, train, max_length=max_length
    )
    pruned_params = sum(p.numel() for p in pruned.parameters())
    target = deploy.save_quantized(
        deploy.quantize_int8(pruned), work / f"{name}-pruned-int8", pruned_tokenizer
    )
    variants.append(
        deploy.torch_variant(
            f"{name}-pruned-int8",
            deploy.load_quantized(target),
            target,
            pruned_params,
            pruned_tokenizer,
        )
    )
    notes[f"{name}-pruned-int8"] = f"{len(pruned_tokenizer):,} of {len(tokenizer):,} tokens"
    return variants


def retokenized(before: list, tokenizer: Any, after: list, pruned_tokenizer: Any) -> int:
    """How many examples a pruned tokenizer turns into other tokens than the original one."""
    count = 0
    for old, new in zip(before, after, strict=True):
        for old_ids, new_ids in zip(old["input_ids"], new["input_ids"], strict=True):
            old_tokens = tokenizer.convert_ids_to_tokens(old_ids.tolist())
            count += old_tokens != pruned_tokenizer.convert_ids_to_tokens(new_ids.tolist())
    return count


# Forms evaluated for accuracy only: their speed is that of student-pruned.
ACCURACY_ONLY = ("student-pruned-chars", "student-pruned-trainval")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from nlpkd import deploy

    description = machine()
    temporary = None
    if args.output_dir:
        work = Path(args.output_dir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        temporary = tempfile.TemporaryDirectory(prefix="nlpkd-deploy-")
        work = Path(temporary.name)
    try:
        variants, data, notes = build(args, work)
        labels = torch.tensor(data["validation"]["label"])
        batches_by_tokenizer: dict[int, list] = {}
        batches = {}
        for variant in variants:
            key = id(variant.tokenizer)
            if key not in batches_by_tokenizer:
                batches_by_tokenizer[key] = fixed_batches(
                    data["validation"], variant.tokenizer, args.batch_size, args.max_length
                )
            batches[variant.name] = batches_by_tokenizer[key]
        for variant in variants:
            if variant.name in notes and variant.tokenizer is not None:
                differ = retokenized(
                    batches["student"],
                    variants[1].tokenizer,
                    batches[variant.name],
                    variant.tokenizer,
                )
                notes[variant.name] += f"; {differ} validation texts tokenized differently"
        predictions = {
            v.name: deploy.predict_batches(v, batches[v.name]).argmax(-1) for v in variants
        }
        timed = [v for v in variants if v.name not in ACCURACY_ONLY]
        latency = deploy.time_variants(
            timed,
            {v.name: batches[v.name][: args.latency_batches] for v in timed},
            warmup=args.warmup,
            repeats=args.repeats,
        )
    finally:
        if temporary is not None:
            temporary.cleanup()

    teacher = variants[0]
    teacher_accuracy = float((predictions["teacher"] == labels).float().mean())
    rows = []
    for variant in variants:
        accuracy = float((predictions[variant.name] == labels).float().mean())
        ms = latency.get(variant.name)
        rows.append(
            {
                "name": variant.name,
                "accuracy": accuracy,
                "params": variant.params,
                "size_mb": variant.size_mb,
                "latency_ms": ms,
                "speedup": latency["teacher"] / ms if ms else None,
                "size_ratio": variant.size_mb / teacher.size_mb,
                "retention": accuracy / teacher_accuracy,
                "changed_vs_student": int(
                    (predictions[variant.name] != predictions["student"]).sum()
                ),
                "note": notes.get(variant.name, ""),
            }
        )
    print(format_table(rows, args, description, len(labels)))
    result = {"machine": description, "args": vars(args), "rows": rows, "targets": TARGETS}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_table(rows: list[dict[str, Any]], args: argparse.Namespace, machine: str, n: int) -> str:
    header = (
        "| name | accuracy | params | size_mb | latency_ms | speedup | size ratio | retention "
        "| changed vs student | note |"
    )
    lines = [header, "|" + " --- |" * 10]
    for row in rows:
        latency = f"{row['latency_ms']:.1f}" if row["latency_ms"] else "(as student-pruned)"
        speedup = f"{row['speedup']:.2f}x" if row["speedup"] else "-"
        lines.append(
            f"| {row['name']} | {row['accuracy']:.4f} | {row['params'] / 1e6:.2f}M "
            f"| {row['size_mb']:.1f} | {latency} | {speedup} | {row['size_ratio']:.3f} "
            f"| {row['retention']:.4f} | {row['changed_vs_student']} / {n} | {row['note']} |"
        )
    best = [
        row
        for row in rows
        if row["speedup"]
        and row["size_ratio"] <= TARGETS["size_ratio"]
        and row["speedup"] >= TARGETS["speedup"]
        and row["retention"] >= TARGETS["retention"]
    ]
    lines.append("")
    lines.append(
        f"Targets: size ratio <= {TARGETS['size_ratio']}, speed-up >= {TARGETS['speedup']}x, "
        f"retention >= {TARGETS['retention']}; met by: "
        + (", ".join(row["name"] for row in best) or "none")
    )
    lines.append(
        f"Latency: median ms per {args.batch_size} x {args.max_length} batch over {args.repeats} "
        f"rounds x {args.latency_batches} batches after {args.warmup} warm-up rounds, interleaved."
    )
    lines.append(f"Machine: {machine}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
