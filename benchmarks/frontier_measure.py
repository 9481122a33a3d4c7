"""What benchmarks/frontier.py measures on a trained student: its deployed forms, their accuracy, every model's
latency in one interleaved run, and where the time of a forward pass goes."""

from __future__ import annotations

import argparse
import inspect
import os
import re
import shutil
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import deploy as deploy_bench  # benchmarks/deploy.py: fixed_batches
import torch

FORMS = ("fp32", "int8", "onnx-int8")


def deployed_forms(
    student: Any, folder: Path, tokenizer: Any, texts: list[str], max_length: int, root: Path
) -> dict[str, Any]:
    """`{form: DeployedVariant}`: the student as trained (`fp32`), and with its vocabulary pruned to `texts`
    in PyTorch dynamic int8 (`int8`) and ONNX Runtime int8 (`onnx-int8`), each loaded back from its folder as
    it ships (`nlpkd.deploy.build_forms`)."""
    from transformers import AutoModelForSequenceClassification

    from nlpkd import deploy

    shutil.rmtree(root, ignore_errors=True)
    name = root.name
    [pruned] = deploy.build_forms(
        student, tokenizer, (), root / "pruned", vocabulary_texts=texts, max_length=max_length,
        name=name,
    )  # fmt: skip
    shipped = AutoModelForSequenceClassification.from_pretrained(pruned.path).eval()
    forms = ("int8", "onnx-int8")
    int8, onnx_int8 = deploy.build_forms(
        shipped, pruned.tokenizer, forms, root / "forms", name=name
    )
    fp32 = deploy.torch_variant(f"{name}-fp32", student, folder, tokenizer=tokenizer)
    return {"fp32": fp32, "int8": int8, "onnx-int8": onnx_int8}


def accuracy_of(variant: Any, validation: Any, max_length: int) -> float:
    """Accuracy of a deployed form on the whole validation split, tokenized by its own tokenizer."""
    from nlpkd import deploy

    batches = deploy_bench.fixed_batches(validation, variant.tokenizer, 64, max_length)
    predicted = deploy.predict_batches(variant, batches).argmax(-1)
    return float((predicted == torch.tensor(validation["label"])).float().mean())


def load_average() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(limit: float | None, patience: float) -> dict[str, float]:
    """Wait (at most `patience` seconds) until the 1-minute load average is below `limit`: the machine is
    shared, and PyTorch's threads wait for each other at every operation when another process holds a core."""
    start, before = time.perf_counter(), load_average()
    while limit is not None and load_average() > limit and time.perf_counter() - start < patience:
        time.sleep(20)
    return {"load_before_wait": before, "waited_seconds": time.perf_counter() - start}


def shapes_of(args: argparse.Namespace) -> list[tuple[int, int, int]]:
    """(batch size, tokens, batches per round) of each timed shape."""
    return [(32, 128, args.latency_batches), (1, 128, args.single_batches)]


def shape_key(batch_size: int, tokens: int, threads: int, main_threads: int) -> str:
    key = f"{batch_size}x{tokens}"
    return key if threads == main_threads else f"{key} t{threads}"


def _with_threads(variants: list[Any], threads: int) -> list[Any]:
    """The variants with `threads` intra-op threads: torch's setting, and new ONNX Runtime sessions."""
    from nlpkd import deploy

    torch.set_num_threads(threads)
    return [
        deploy.onnx_variant(v.name, v.path, v.params, threads=threads, tokenizer=v.tokenizer)
        if isinstance(v.predict, deploy.OnnxClassifier)
        else v
        for v in variants
    ]


def time_all(variants: list[Any], validation: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Every variant's median latency per shape and thread count, all variants in the same interleaved rounds
    (`nlpkd.deploy.time_variants`); the 1-minute load average before and after each."""
    from nlpkd import deploy

    result: dict[str, Any] = {"latency_ms": defaultdict(dict), "load": {}}
    result["quiet"] = wait_for_quiet(args.quiet_load, args.quiet_wait)
    default = torch.get_num_threads()
    batches_of: dict[tuple[int, int, int], list] = {}
    for threads in args.threads:
        timed = _with_threads(variants, threads)
        for batch_size, tokens, count in shapes_of(args):
            key = shape_key(batch_size, tokens, threads, args.threads[0])
            batches = {}
            for variant in timed:
                cache = (id(variant.tokenizer), batch_size, tokens)
                if cache not in batches_of:
                    every = deploy_bench.fixed_batches(
                        validation, variant.tokenizer, batch_size, tokens
                    )
                    batches_of[cache] = every[:count]
                batches[variant.name] = batches_of[cache]
            load = {"before": load_average()}
            start = time.perf_counter()
            medians = deploy.time_variants(timed, batches, warmup=args.warmup, repeats=args.repeats)
            load.update(after=load_average(), seconds=time.perf_counter() - start)
            result["load"][key] = load
            for name, ms in medians.items():
                result["latency_ms"][name][key] = ms
            print(f"timed {len(timed)} models at {key}: {load}", flush=True)
    torch.set_num_threads(default)
    return result


# Parts of a forward pass, by module name (BERT and MPNet families); what no part covers is "other" (the
# attention mask, MPNet's relative-position bias, the Python between modules).
PARTS = (
    ("embeddings", re.compile(r"\.embeddings$")),
    ("attention", re.compile(r"\.layer\.\d+\.attention$")),
    ("feed-forward", re.compile(r"\.layer\.\d+\.(intermediate|output)$")),
    ("head", re.compile(r"(\.pooler|^classifier)$")),
)


def _part_hooks(model: Any, spent: dict[str, float]) -> list[Any]:
    """Forward hooks that add each part's wall-clock milliseconds to `spent`."""
    starts: dict[str, float] = {}
    handles = []
    for module_name, module in model.named_modules():
        part = next((part for part, pattern in PARTS if pattern.search(module_name)), None)
        if part is None:
            continue

        def pre(_module, _inputs, key=module_name):
            starts[key] = time.perf_counter()

        def post(_module, _inputs, _output, key=module_name, part=part):
            spent[part] += (time.perf_counter() - starts[key]) * 1000.0

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    return handles


def _forward_parts(model: Any, batch: dict[str, Any]) -> dict[str, float]:
    accepted = inspect.signature(model.forward).parameters
    inputs = {k: v for k, v in batch.items() if k in accepted}
    spent: dict[str, float] = defaultdict(float)
    handles = _part_hooks(model, spent)
    try:
        with torch.inference_mode():
            start = time.perf_counter()
            model(**inputs)
            total = (time.perf_counter() - start) * 1000.0
    finally:
        for handle in handles:
            handle.remove()
    parts = {part: spent[part] for part, _ in PARTS}
    return {**parts, "other": total - sum(parts.values()), "total": total}


def breakdown(models: dict[str, tuple[Any, dict]], warmup: int, repeats: int) -> dict[str, dict]:
    """Median milliseconds of each part of one forward pass (`PARTS`, `other` and `total`) per model, the
    models run in turn in every round."""
    samples: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in models}
    for round_index in range(warmup + repeats):
        for name, (model, batch) in models.items():
            parts = _forward_parts(model, batch)
            if round_index >= warmup:
                for part, ms in parts.items():
                    samples[name][part].append(ms)
    return {
        name: {part: statistics.median(values) for part, values in parts.items()}
        for name, parts in samples.items()
    }


def breakdown_models(timed: dict[str, dict[str, Any]], names: list[str], teacher: Any) -> dict:
    """`{name: (model, tokenizer)}`: the teacher, and the fp32 and int8 forms of the students `names`."""
    from transformers import AutoModelForSequenceClassification

    from nlpkd.deploy import load_quantized

    load = AutoModelForSequenceClassification.from_pretrained
    models = {"teacher": (load(teacher.path).eval(), teacher.tokenizer)}
    for arch in names:
        if arch in timed:
            fp32, int8 = timed[arch]["fp32"], timed[arch]["int8"]
            models[f"{arch} fp32"] = (load(fp32.path).eval(), fp32.tokenizer)
            models[f"{arch} int8"] = (load_quantized(int8.path), int8.tokenizer)
    return models


def measure_breakdown(
    timed: dict, names: list[str], teacher: Any, validation: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """The breakdown at each timed shape and thread count, on the first batch of the validation split."""
    models = breakdown_models(timed, names, teacher)
    default, result = torch.get_num_threads(), {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch_size, tokens, _ in shapes_of(args):
            inputs = {
                name: (
                    model,
                    deploy_bench.fixed_batches(validation, tokenizer, batch_size, tokens)[0],
                )
                for name, (model, tokenizer) in models.items()
            }
            key = shape_key(batch_size, tokens, threads, args.threads[0])
            result[key] = breakdown(inputs, args.warmup, args.repeats)
    torch.set_num_threads(default)
    return result
