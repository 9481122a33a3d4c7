"""Hard quality benchmark: a sentence-pair task where a 2-layer student falls short of its 6-layer teacher.

The task is built by `build_bbc_pairs` (nlpkd.data.pairs): a BBC News headline paired with a paragraph that comes
from the same article, from another article of the same topic, or from another topic, both negatives chosen among
the paragraphs most similar to the headline by TF-IDF. By default the paragraphs are lead paragraphs
(`--paragraph lead`, 2,400 training pairs at 64 tokens: the teacher reaches 0.74 there); `--paragraph body` is
the `bbc_pairs` task of `nlpkd distill` (non-lead paragraphs), where this teacher stops near 0.55. The teacher
is the packaged all-MiniLM-L6-v2 fine-tuned on the training pairs; the student keeps its layers 0 and 5
(`create_student(teacher, 2)`). Every recipe trains that student from the same initialisation; a row says how
many optimizer steps it took, and each comparison (docs/quality.md) puts rows with the same number of steps side
by side. Recipes with logits terms only read the teacher's logits from the cache (`teacher_cache`), so extra
epochs cost the student alone.

    python benchmarks/quality_pairs.py --recipes no_kd,kd,attn_kl --seeds 0      # a quick look
    python benchmarks/quality_pairs.py --group defaults                         # one of GROUPS, 3 seeds
    python benchmarks/quality_pairs.py --bow                                    # bag-of-words baselines only

It prints a Markdown table (mean and spread over seeds, retention against the teacher, gap closed) and writes it,
with the raw numbers, the steps and the minutes of each run, to --output (JSON).
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

from quality import BASE, RECIPES, accuracy

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TASK = "bbc_pairs"
# The recipes of docs/quality.md's single-stage table (quality.RECIPES; `kd_first_layer` becomes layers 0 and 1
# here), then what the hard task adds: epochs (`epochs`), temperature, weights, and more text for the teacher to
# label: `unlabelled` (as many pairs again, drawn with another seed from the training articles, labels dropped)
# and `augment` (seeded variants per labelled pair).
PAIR_RECIPES: dict[str, dict[str, Any]] = {
    **{name: dict(settings) for name, settings in RECIPES.items()},
    "kd_first_layer": {"layers": [0, 1]},
    "no_kd_e4": {"alpha_kd": 0.0, "alpha_ce": 1.0, "epochs": 4.0},
    "no_kd_e6": {"alpha_kd": 0.0, "alpha_ce": 1.0, "epochs": 6.0},
    "kd_e4": {"epochs": 4.0},
    "kd_e6": {"epochs": 6.0},
    "kd_e10": {"epochs": 10.0},
    "kd_t1": {"temperature": 1.0},
    "kd_t4": {"temperature": 4.0},
    "kd_a0.9": {"alpha_kd": 0.9, "alpha_ce": 0.1},
    "kd_a1.0": {"alpha_kd": 1.0, "alpha_ce": 0.0},
    "kd_a0.9_e6": {"alpha_kd": 0.9, "alpha_ce": 0.1, "epochs": 6.0},
    "attn_kl_e4": {"alpha_attn": 1.0, "epochs": 4.0},
    "attn_kl_e6": {"alpha_attn": 1.0, "epochs": 6.0},
    "kd+unlabelled": {"unlabelled": True},
    "attn_kl+unlabelled": {"alpha_attn": 1.0, "unlabelled": True},
    "kd+augment": {"augment": 1},
    "attn_kl+augment": {"alpha_attn": 1.0, "augment": 1},
    # Learning rate and longer schedules (the teacher-output cache makes extra epochs cost the student alone),
    # and four times as many unlabelled pairs as labelled ones (other draws of the training articles).
    "kd_lr3e-4": {"learning_rate": 3e-4},
    "no_kd_lr3e-4": {"alpha_kd": 0.0, "alpha_ce": 1.0, "learning_rate": 3e-4},
    "kd_e6_lr3e-4": {"epochs": 6.0, "learning_rate": 3e-4},
    "no_kd_e6_lr3e-4": {"alpha_kd": 0.0, "alpha_ce": 1.0, "epochs": 6.0, "learning_rate": 3e-4},
    "no_kd_e20_lr3e-4": {"alpha_kd": 0.0, "alpha_ce": 1.0, "epochs": 20.0, "learning_rate": 3e-4},
    "kd_e20_lr3e-4": {"epochs": 20.0, "learning_rate": 3e-4},
    "attn_kl_e6_lr3e-4": {"alpha_attn": 1.0, "epochs": 6.0, "learning_rate": 3e-4},
    "kd+unlabelled4_lr3e-4": {"unlabelled": 4, "learning_rate": 3e-4},
    "kd+unlabelled4_e4_lr3e-4": {"unlabelled": 4, "epochs": 4.0, "learning_rate": 3e-4},
    "kd+augment4_e4_lr3e-4": {"augment": 4, "epochs": 4.0, "learning_rate": 3e-4},
}
EXTRA_KEYS = ("layers", "unlabelled", "augment", "epochs", "learning_rate")
GROUPS: dict[str, list[str]] = {
    "first_look": ["no_kd", "kd", "attn_kl", "kd_e6", "attn_kl_e6"],
    "single_stage": [
        "no_kd", "kd", "kd_first_layer", "hidden", "hidden_emb", "attn_kl", "attn_mse", "hidden_attn",
        "relation", "pkd",
    ],
    "epochs": ["no_kd", "kd", "no_kd_e6", "kd_e6", "kd_e10", "attn_kl", "attn_kl_e6"],
    "soft_targets": ["kd", "kd_t1", "kd_t4", "kd_a0.9", "kd_a1.0"],
    "more_text": [
        "kd_e4", "attn_kl_e4", "kd+unlabelled", "attn_kl+unlabelled", "kd+augment", "attn_kl+augment",
    ],
    # What decided the job's defaults (docs/quality.md): the learning rate, then epochs, the attention term and
    # unlabelled pairs at it, each against the labels alone at the same steps.
    "defaults": [
        "kd", "kd_lr3e-4", "no_kd_lr3e-4", "kd_e6_lr3e-4", "no_kd_e6_lr3e-4", "attn_kl_e6_lr3e-4",
        "kd_e20_lr3e-4", "kd+unlabelled4_lr3e-4", "kd+unlabelled4_e4_lr3e-4",
    ],
    # Beside it (one seed): augmented pairs in place of the unlabelled ones (text the job makes without the
    # user's), and the labels alone over the longest schedule (not run yet).
    "defaults_extra": ["kd+augment4_e4_lr3e-4", "no_kd_e20_lr3e-4"],
}  # fmt: skip
INTERMEDIATE = ("alpha_hidden", "alpha_attn", "alpha_relation")


def recipe_settings(name: str) -> dict[str, Any]:
    """A recipe's full settings: the job's soft-target defaults, then the recipe's own."""
    return {**BASE, **PAIR_RECIPES[name]}


def load_data(args: argparse.Namespace, tokenizer: Any) -> dict[str, Any]:
    """The tokenized task (at --max_length), and the unlabelled pairs of the training articles."""
    from nlpkd.data import build_bbc_pairs, load_bbc_news, load_task_data, tokenize_dataset

    if args.paragraph == "body":
        raw = load_task_data(TASK, seed=42)
    else:  # the lead-paragraph variant: the same articles, the headline against a lead paragraph
        raw = build_bbc_pairs(load_bbc_news(seed=42), paragraph=args.paragraph)
    if args.max_train_pairs and args.max_train_pairs < len(raw["train"]):
        # A seeded subset (the order of the pairs is already shuffled by the builder): a cheaper benchmark.
        raw["train"] = raw["train"].select(range(args.max_train_pairs))
    data = dict(tokenize_dataset(raw, tokenizer, TASK, max_length=args.max_length))
    data["raw"] = raw
    data["raw_train"] = raw["train"]
    return data


def unlabelled_pairs(args: argparse.Namespace, data: dict[str, Any], times: int):
    """`times` as many unlabelled pairs as labelled ones: other draws (seeds 1, 2, ...) from the same training
    articles, labels dropped, so that a run with them takes `1 + times` the steps of one without."""
    import datasets

    from nlpkd.data import build_bbc_pairs, load_bbc_news

    key = f"unlabelled{times}"  # built once per count: every recipe and seed reads the same pairs
    if key not in data:
        news, wanted, parts, seed = load_bbc_news(seed=42), times * len(data["raw_train"]), [], 1
        while sum(len(p) for p in parts) < wanted:
            draw = build_bbc_pairs(news, seed=seed, paragraph=args.paragraph)
            parts.append(draw["train"].remove_columns("label"))
            seed += 1
        data[key] = datasets.concatenate_datasets(parts).select(range(wanted))
    return data[key]


def teacher_for(args: argparse.Namespace, data: dict[str, Any], tokenizer: Any):
    """The fine-tuned teacher, trained once (`nlpkd finetune`'s settings) and kept in --cache_dir."""
    from transformers import AutoModelForSequenceClassification

    from nlpkd.config import DistillationConfig
    from nlpkd.data import get_task
    from nlpkd.jobs import finetune_teacher, training_defaults
    from nlpkd.models import packaged_minilm_path

    folder = Path(args.cache_dir) / (
        f"teacher-{args.paragraph}-l{args.max_length}-e{args.teacher_epochs:g}-n{len(data['train'])}"
    )
    if (folder / "config.json").is_file():
        return AutoModelForSequenceClassification.from_pretrained(folder).eval()
    task = get_task(TASK)
    defaults = {**training_defaults(), "disable_tqdm": True, "logging_steps": 50}
    config = DistillationConfig(output_dir=str(folder), **defaults)
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
    ).eval()


def training_set(settings: dict[str, Any], seed: int, data: dict[str, Any], tokenizer, args):
    """The labelled pairs, plus the pairs only the teacher supervises (augmented variants, unlabelled pairs)."""
    from nlpkd.data import tokenize_dataset
    from nlpkd.data.unlabeled import extra_training_text, with_unlabeled

    if not settings.get("unlabelled") and not settings.get("augment"):
        return data["train"]
    text = extra_training_text(
        data["raw_train"],
        ("headline", "paragraph"),
        unlabeled=(
            unlabelled_pairs(args, data, int(settings["unlabelled"]))
            if settings.get("unlabelled")
            else None
        ),
        augment=settings.get("augment", 0),
        augment_options={"seed": seed, "tokenizer": tokenizer},
    )
    extra = tokenize_dataset({"extra": text}, tokenizer, TASK, max_length=args.max_length)
    return with_unlabeled(data["train"], extra["extra"])


def train_student(name: str, seed: int, teacher, data, tokenizer, args) -> dict[str, Any]:
    """Distil one student with recipe `name` and seed `seed`: its accuracy, steps and minutes."""
    from transformers import DataCollatorWithPadding

    from nlpkd import DistillationConfig, DistillationTrainer, create_student

    settings = recipe_settings(name)
    overrides = {k: v for k, v in settings.items() if k not in EXTRA_KEYS}
    # Logits-only recipes read the teacher's logits from the disk cache: extra epochs cost the student alone.
    cache = not any(settings.get(term) for term in INTERMEDIATE)
    student = create_student(teacher, num_layers=2, layers=settings.get("layers"))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        config = DistillationConfig(
            output_dir=tmp,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=64,
            num_train_epochs=settings.get("epochs", args.epochs),
            learning_rate=settings.get("learning_rate", args.learning_rate),
            warmup_steps=0.1,
            seed=seed,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1000,
            teacher_cache=cache,
            teacher_cache_dir=str(Path(args.cache_dir) / "logits") if cache else None,
            **overrides,
        )
        trainer = DistillationTrainer(
            model=student,
            teacher=teacher,
            args=config,
            train_dataset=training_set(settings, seed, data, tokenizer, args),
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        trainer.train()
        if trainer.state.global_step < trainer.state.max_steps:
            # The Trainer ends early on SIGTERM: a shortened run must not be recorded as the recipe's result.
            raise SystemExit(
                f"{name} stopped after {trainer.state.global_step} of {trainer.state.max_steps} steps"
            )
    minutes = (time.perf_counter() - start) / 60
    value = accuracy(trainer.student, data["validation"], tokenizer)
    return {"accuracy": value, "steps": trainer.state.global_step, "minutes": minutes}


def bag_of_words(raw) -> dict[str, float]:
    """Validation accuracy of TF-IDF + logistic-regression baselines: what word overlap alone achieves."""
    import numpy as np
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train, validation = raw["train"], raw["validation"]
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2)
    vectorizer.fit([*train["headline"], *train["paragraph"]])

    def features(split, kind: str):
        head, para = (
            vectorizer.transform(split["headline"]),
            vectorizer.transform(split["paragraph"]),
        )
        cosine = sparse.csr_matrix(np.asarray(head.multiply(para).sum(axis=1)))
        return {
            "cosine": cosine,
            "paragraph": para,
            "headline+paragraph": sparse.hstack([head, para]).tocsr(),
            "headline+paragraph+shared words+cosine": sparse.hstack(
                [head, para, head.multiply(para), cosine]
            ).tocsr(),
        }[kind]

    result = {}
    for kind in (
        "cosine",
        "paragraph",
        "headline+paragraph",
        "headline+paragraph+shared words+cosine",
    ):
        model = LogisticRegression(C=1.0, max_iter=3000).fit(features(train, kind), train["label"])
        predicted = model.predict(features(validation, kind))
        result[kind] = float((predicted == np.asarray(validation["label"])).mean())
    return result


def setting(args: argparse.Namespace, train_pairs: int, validation_pairs: int) -> dict[str, Any]:
    return {
        "data": f"{TASK}: BBC News headline/paragraph pairs (nlpkd.data.pairs), seed-42 article split",
        "train_pairs": train_pairs,
        "validation_pairs": validation_pairs,
        "max_length": args.max_length,
        "teacher": "all-MiniLM-L6-v2 (packaged), fine-tuned on the training pairs",
        "teacher_epochs": args.teacher_epochs,
        "teacher_learning_rate": args.teacher_learning_rate,
        "student": "2 layers built from the teacher (layers 0 and 5)",
        "student_epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
    }


def summarise(runs: dict[str, list[dict[str, Any]]], teacher_acc: float) -> list[dict[str, Any]]:
    base = statistics.mean(r["accuracy"] for r in runs["no_kd"]) if "no_kd" in runs else None
    rows = []
    for recipe, values in runs.items():
        accuracies = [r["accuracy"] for r in values]
        mean = statistics.mean(accuracies)
        closed = (
            (mean - base) / (teacher_acc - base)
            if base is not None and teacher_acc > base
            else None
        )
        rows.append(
            {
                "recipe": recipe,
                "settings": recipe_settings(recipe),
                "accuracies": accuracies,
                "run_seeds": [r.get("seed") for r in values],
                "mean": mean,
                "std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                "retention": mean / teacher_acc,
                "gap_closed": closed,
                "steps": values[0]["steps"],
                "minutes": [r["minutes"] for r in values],
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], teacher_acc: float) -> str:
    lines = [
        f"teacher accuracy: {teacher_acc:.4f}",
        "",
        "| recipe | steps | seeds | accuracy (mean ± sd) | retention | gap closed |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        closed = "-" if row["gap_closed"] is None else f"{row['gap_closed']:.0%}"
        lines.append(
            f"| {row['recipe']} | {row['steps']} | {len(row['accuracies'])} | "
            f"{row['mean']:.4f} ± {row['std']:.4f} | "
            f"{row['retention']:.1%} | {closed} |"
        )
    return "\n".join(lines)


def write(args, data, teacher_acc, baselines, runs, seeds, start) -> None:
    """The results so far, as JSON in --output (rewritten after every run)."""
    if not args.output:
        return
    record = {
        "setting": setting(args, len(data["train"]), len(data["validation"])),
        "teacher_accuracy": teacher_acc,
        "bag_of_words": baselines,
        "rows": summarise(runs, teacher_acc),
        "minutes": (time.perf_counter() - start) / 60,
        "seeds": seeds,
        "command": " ".join(sys.argv),
        "earlier_commands": getattr(args, "earlier_commands", []),
    }
    Path(args.output).write_text(json.dumps(record, indent=2) + "\n")


def previous_runs(args: argparse.Namespace, teacher_acc: float) -> dict[str, list[dict[str, Any]]]:
    """The runs an earlier invocation wrote to --output, when its teacher scored the same (the same setting)."""
    path = Path(args.output) if args.output else None
    if path is None or not path.is_file():
        return {}
    record = json.loads(path.read_text())
    if abs(record["teacher_accuracy"] - teacher_acc) > 1e-9:
        raise SystemExit(
            f"{path} was measured with another teacher: leave out --resume or pick another --output."
        )
    args.earlier_commands = [*record.get("earlier_commands", []), record["command"]]
    runs: dict[str, list[dict[str, Any]]] = {}
    for row in record["rows"]:
        seeds = row.get("run_seeds") or record["seeds"][: len(row["accuracies"])]
        for seed, value, minutes in zip(seeds, row["accuracies"], row["minutes"], strict=True):
            run = {"accuracy": value, "steps": row["steps"], "minutes": minutes, "seed": seed}
            runs.setdefault(row["recipe"], []).append(run)
    return runs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default=None, help="Comma-separated names of PAIR_RECIPES.")
    parser.add_argument(
        "--group", default=None, choices=list(GROUPS), help="A named set of recipes."
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument(
        "--paragraph",
        default="lead",
        choices=["body", "lead"],
        help="Pair headlines with body paragraphs (the task) or with lead paragraphs (build_bbc_pairs' variant).",
    )
    parser.add_argument(
        "--max_train_pairs",
        type=int,
        default=2400,
        help="Use the first N training pairs (the builder shuffles them; 0 = all 4,992).",
    )
    parser.add_argument("--teacher_epochs", type=float, default=3.0)
    parser.add_argument("--teacher_learning_rate", type=float, default=1e-4)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--bow", action="store_true", help="Only the bag-of-words baselines.")
    parser.add_argument(
        "--cache_dir", default=str(Path(tempfile.gettempdir()) / "nlpkd-quality-pairs")
    )
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Keep the runs already in --output (same setting) and train only the missing recipe/seed pairs.",
    )
    args = parser.parse_args(argv)
    names = args.recipes.split(",") if args.recipes else GROUPS[args.group or "first_look"]
    args.recipe_names = [r for r in names if r]
    unknown = [r for r in args.recipe_names if r not in PAIR_RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; known: {', '.join(PAIR_RECIPES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from nlpkd.models import packaged_minilm_path

    hf_logging.set_verbosity_error()
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_path())
    data = load_data(args, tokenizer)
    baselines = bag_of_words(data["raw"])
    print(json.dumps({"bag_of_words": baselines}, indent=2), flush=True)
    if args.bow:
        return 0
    teacher = teacher_for(args, data, tokenizer)
    teacher_acc = accuracy(teacher, data["validation"], tokenizer)
    print(f"teacher accuracy {teacher_acc:.4f} ({len(data['train'])} training pairs)", flush=True)
    runs = previous_runs(args, teacher_acc) if args.resume else {}
    # Seed by seed, every recipe once: a stopped run still leaves one comparable row per recipe.
    for seed in seeds:
        for recipe in args.recipe_names:
            if any(r.get("seed") == seed for r in runs.get(recipe, [])):
                continue
            run = train_student(recipe, seed, teacher, data, tokenizer, args)
            runs.setdefault(recipe, []).append({**run, "seed": seed})
            runs[recipe].sort(key=lambda r: r["seed"])
            print(
                f"{recipe:>20} seed {seed}: {run['accuracy']:.4f} ({run['steps']} steps, "
                f"{run['minutes']:.1f} min)",
                flush=True,
            )
            write(args, data, teacher_acc, baselines, runs, seeds, start)
    rows = summarise(runs, teacher_acc)
    minutes = (time.perf_counter() - start) / 60
    print(f"\n{markdown(rows, teacher_acc)}\n\n({minutes:.1f} minutes, {' '.join(sys.argv)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
