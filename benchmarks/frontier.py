"""The compression frontier (issue 20): students of several depths and widths built from one teacher, distilled,
deployed and measured against the float32 teacher in one interleaved run.

Each student is built by `create_student` (fewer layers and, for a narrower one, slices of the teacher's heads,
neurons and hidden channels, chosen by importance or keep-first-k), distilled with the job's recipe (logits KD,
the teacher's logits cached once), saved, and deployed in three forms: `fp32` (as trained), `int8` (the
vocabulary pruned to the training texts, then PyTorch dynamic int8) and `onnx-int8` (the same pruned model in
ONNX Runtime, int8). Every form of every seed is evaluated on the whole validation split; the first seed of each
architecture is then timed with the teacher in one interleaved run (`nlpkd.deploy.time_variants`) at batch
32 x 128 and at 1 x 128, and the time of each part of a forward pass (embeddings, attention, feed-forward, head)
is measured for the students named by --breakdown.

    python benchmarks/frontier.py minilm --output benchmarks/results/frontier_minilm.json
    python benchmarks/frontier.py few-labels --output benchmarks/results/frontier_few_labels.json
    python benchmarks/frontier.py mpnet --output benchmarks/results/frontier_mpnet.json
    python benchmarks/frontier.py recipe --specs 2x192,1x96 --recipes 2:1e-4,6:1e-4,6:3e-4
    python benchmarks/frontier.py report          # tables and docs/frontier.png from the JSON files
    python benchmarks/frontier.py minilm --quick  # a few steps, one seed: proves the script runs

A student is written `LxH` (layers x hidden size; the feed-forward size scales with the hidden size and the head
size is kept) with `:first` for keep-first-k instead of importance. Teachers, students and the teacher-logit
cache are kept in --cache_dir, so a second run (or a run with more seeds) trains only what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy as deploy_bench  # noqa: E402  (benchmarks/deploy.py: machine)
import frontier_report  # noqa: E402
import quality  # noqa: E402  (benchmarks/quality.py: the 5%-label setting)
from frontier_measure import (  # noqa: E402
    FORMS,
    accuracy_of,
    deployed_forms,
    measure_breakdown,
    shapes_of,
    time_all,
)

if deploy_bench.importlib.util.find_spec("nlpkd") is None:  # pragma: no cover - run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MPNET = Path.home() / ".cache" / "nlpkd" / "all-mpnet-base-v2"


@dataclass(frozen=True)
class Setting:
    """A teacher and its data: the base encoder, how it is fine-tuned, and the students built from it."""

    base: str
    max_length: int
    teacher_epochs: float
    teacher_learning_rate: float
    teacher_batch_size: int
    specs: tuple[str, ...]
    breakdown: tuple[str, ...]


def settings() -> dict[str, Setting]:
    from nlpkd.models import packaged_minilm_path

    return {
        # The job's teacher step (1 epoch at 1e-4, batch 32) on BBC News, all labels, 128 tokens.
        "minilm": Setting(
            str(packaged_minilm_path()), 128, 1.0, 1e-4, 32,
            ("3x384", "3x192", "3x96", "2x384", "2x192", "2x96", "1x384", "1x192", "1x96",
             "3x192:first", "2x192:first", "1x192:first"),
            ("2x192", "2x96", "1x96"),
        ),
        # 110 M parameters on 2 cores: 64 tokens; the teacher of benchmarks/cross_tokenizer.py (1 epoch at 5e-5,
        # batch 32), so one fine-tuning serves both benchmarks.
        "mpnet": Setting(
            str(MPNET), 64, 1.0, 5e-5, 32, ("6x768", "4x384", "3x384"), ("4x384", "3x384")
        ),
    }  # fmt: skip


@dataclass(frozen=True)
class Spec:
    """One student: depth, hidden size and how its width is chosen."""

    layers: int
    hidden: int
    selection: str = "importance"

    @classmethod
    def parse(cls, text: str) -> Spec:
        match = re.fullmatch(r"(\d+)x(\d+)(?::(importance|first))?", text.strip())
        if match is None:
            raise ValueError(
                f"student {text!r}: write LAYERSxHIDDEN, optionally :first, e.g. 2x192:first"
            )
        return cls(int(match[1]), int(match[2]), match[3] or "importance")

    @property
    def arch(self) -> str:
        return f"{self.layers}x{self.hidden}"

    @property
    def label(self) -> str:
        return self.arch if self.selection == "importance" else f"{self.arch}-first"

    def width(self, teacher_config: Any, scores: Any) -> dict[str, Any]:
        """`create_student`'s width arguments (none at the teacher's width)."""
        if self.hidden == teacher_config.hidden_size:
            return {}
        ratio = teacher_config.intermediate_size / teacher_config.hidden_size
        return {
            "hidden_size": self.hidden,
            "intermediate_size": int(self.hidden * ratio),
            "width_selection": self.selection,
            "calibration_data": scores if self.selection == "importance" else None,
        }


# ---- data, teacher, students --------------------------------------------------------------------


def load_data(setting: Setting, args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The tokenizer, the raw BBC News splits (the job's split, seed 42) and their tokenization."""
    from transformers import AutoTokenizer

    from nlpkd.data import load_bbc_news, tokenize_dataset

    tokenizer = AutoTokenizer.from_pretrained(setting.base)
    raw = load_bbc_news(seed=42)
    for split, limit in (("train", args.max_train_samples), ("validation", args.max_eval_samples)):
        if limit is not None and limit < len(raw[split]):
            raw[split] = raw[split].shuffle(seed=42).select(range(limit))
    return (
        tokenizer,
        raw,
        tokenize_dataset(raw, tokenizer, "bbc_news", max_length=setting.max_length),
    )


def finetuned_teacher(
    name: str, setting: Setting, args: argparse.Namespace, data: Any, tokenizer: Any
):
    """The fine-tuned teacher and its folder: trained once, then read from --cache_dir."""
    from transformers import AutoModelForSequenceClassification

    from nlpkd import DistillationConfig
    from nlpkd.data import get_task
    from nlpkd.jobs import finetune_teacher
    from nlpkd.jobs.options import training_defaults

    key = (
        f"{name}-e{setting.teacher_epochs}-lr{setting.teacher_learning_rate}-n{len(data['train'])}"
    )
    folder = Path(args.cache_dir) / "teachers" / key
    if (folder / "config.json").is_file():
        return AutoModelForSequenceClassification.from_pretrained(folder).eval(), folder
    task = get_task("bbc_news")
    values = {**training_defaults(), "disable_tqdm": True, "logging_steps": 20}
    values.update(output_dir=str(folder), per_device_train_batch_size=setting.teacher_batch_size)
    config = DistillationConfig(**values)
    start = time.perf_counter()
    teacher = finetune_teacher(
        setting.base, data, task, list(task.label_names), tokenizer, config, output_dir=folder,
        num_train_epochs=setting.teacher_epochs, learning_rate=setting.teacher_learning_rate,
    )  # fmt: skip
    tokenizer.save_pretrained(folder)
    (folder / "frontier.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))
    return teacher.eval(), folder


def importance_scores(teacher: Any, train: Any, tokenizer: Any, samples: int, seed: int = 0) -> Any:
    """The teacher's width importance on `samples` training examples (a seeded subset), measured once and
    shared by every student, as the job measures it (`--width_calibration_samples`)."""
    from transformers import DataCollatorWithPadding

    from nlpkd.models import width_importance

    rows = train.shuffle(seed=seed).select(range(min(samples, len(train))))
    rows = rows.select_columns([c for c in rows.column_names if c in tokenizer.model_input_names])
    collate = DataCollatorWithPadding(tokenizer)
    batches = [
        collate([rows[i] for i in range(s, min(s + 64, len(rows)))])
        for s in range(0, len(rows), 64)
    ]
    return width_importance(teacher, batches)


def recipe_for(spec: Spec, teacher_config: Any, args: argparse.Namespace) -> tuple[float, float]:
    """(epochs, learning rate): the job's default at the teacher's width, --narrow_* for narrower students."""
    if spec.hidden == teacher_config.hidden_size:
        return args.epochs, args.learning_rate
    return args.narrow_epochs, args.narrow_learning_rate


def distil(
    teacher: Any, student: Any, train: Any, tokenizer: Any, seed: int, recipe: dict[str, Any], args
):
    """Distil `student` with the job's training defaults (logits KD, alpha 0.5 / 0.5, T = 2) and `recipe`
    (epochs, learning rate, batch size, loss settings), the teacher's logits cached in --cache_dir."""
    from transformers import DataCollatorWithPadding

    from nlpkd import DistillationConfig, DistillationTrainer
    from nlpkd.jobs.options import training_defaults

    with tempfile.TemporaryDirectory(prefix="nlpkd-frontier-") as tmp:
        values = {
            **training_defaults(),
            "output_dir": tmp,
            "seed": seed,
            "disable_tqdm": True,
            "logging_steps": 50,
            "teacher_cache": True,
            "teacher_cache_dir": str(Path(args.cache_dir) / "teacher_cache"),
            "max_steps": args.max_steps,
            **recipe,
        }
        trainer = DistillationTrainer(
            model=student,
            teacher=teacher,
            args=DistillationConfig(**values),
            train_dataset=train,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        trainer.train()
    return trainer.student.eval()


def trained_student(
    name: str, spec: Spec, seed: int, context: dict[str, Any], args
) -> tuple[Any, Path, dict]:
    """The distilled student of `spec` and `seed`, its folder and how it was made: trained once, then read
    from --cache_dir."""
    from transformers import AutoModelForSequenceClassification

    from nlpkd import create_student

    teacher, data = context["teacher"], context["data"]
    epochs, learning_rate = context.get("recipe") or recipe_for(spec, teacher.config, args)
    key = (
        f"{spec.label}-s{seed}-e{epochs}-lr{learning_rate}-n{len(data['train'])}-m{args.max_steps}"
    )
    folder = Path(args.cache_dir) / "students" / name / key
    info_file = folder / "frontier.json"
    if info_file.is_file():
        info = json.loads(info_file.read_text())
        return AutoModelForSequenceClassification.from_pretrained(folder).eval(), folder, info
    start = time.perf_counter()
    student = create_student(
        teacher, num_layers=spec.layers, **spec.width(teacher.config, context["scores"])
    )
    recipe = {"num_train_epochs": epochs, "learning_rate": learning_rate, **context.get("loss", {})}
    if "batch_size" in context:
        recipe["per_device_train_batch_size"] = context["batch_size"]
    student = distil(teacher, student, data["train"], context["tokenizer"], seed, recipe, args)
    student.save_pretrained(folder)
    context["tokenizer"].save_pretrained(folder)
    info = {
        "train_seconds": time.perf_counter() - start,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "teacher_layers": student.config.nlpkd_teacher_layers,
        "heads": student.config.num_attention_heads,
        "intermediate": student.config.intermediate_size,
        "params": sum(p.numel() for p in student.parameters()),
    }
    info_file.write_text(json.dumps(info))
    return student, folder, info


# ---- the runs -------------------------------------------------------------------------------------


def student_row(
    name: str, spec: Spec, seeds: list[int], context: dict[str, Any], raw: Any, args
) -> tuple:
    """One student over its seeds: every form's accuracy per seed, size and parameters; and the first seed's
    forms, to be timed."""
    setting, texts = context["setting"], list(raw["train"]["text"])
    forms: dict[str, dict[str, Any]] = {form: {"accuracy": []} for form in FORMS}
    row: dict[str, Any] = {"label": spec.label, "arch": spec.arch, "layers": spec.layers, "hidden": spec.hidden,
                           "selection": spec.selection, "seeds": seeds, "train_seconds": [], "forms": forms}  # fmt: skip
    first = None
    for seed in seeds:
        student, folder, info = trained_student(name, spec, seed, context, args)
        root = Path(args.cache_dir) / "forms" / name / f"{spec.label}-s{seed}"
        variants = deployed_forms(
            student, folder, context["tokenizer"], texts, setting.max_length, root
        )
        for form, variant in variants.items():
            forms[form]["accuracy"].append(
                accuracy_of(variant, raw["validation"], setting.max_length)
            )
            forms[form].update(
                params=variant.params, size_mb=variant.size_mb, vocabulary=len(variant.tokenizer)
            )
        row["train_seconds"].append(info["train_seconds"])
        row.update(
            {
                k: info[k]
                for k in ("epochs", "learning_rate", "teacher_layers", "heads", "intermediate")
            }
        )
        first = first or variants
        accuracies = {form: forms[form]["accuracy"][-1] for form in FORMS}
        print(
            f"{name} {spec.label} seed {seed}: {accuracies} ({info['train_seconds']:.0f} s)",
            flush=True,
        )
    return row, first


def teacher_entry(
    teacher: Any, variant: Any, folder: Path, validation: Any, max_length: int
) -> dict:
    return {
        "accuracy": accuracy_of(variant, validation, max_length),
        "params": variant.params,
        "size_mb": variant.size_mb,
        "layers": teacher.config.num_hidden_layers,
        "hidden": teacher.config.hidden_size,
        "fine_tune_seconds": json.loads((folder / "frontier.json").read_text())["seconds"],
    }


def time_setting(
    result: dict[str, Any], timed: dict, teacher_variant: Any, validation: Any, args
) -> None:
    """Time the teacher and the first seed's forms of every architecture in one interleaved run, add each
    latency to `result`, and break the forward passes of --breakdown down into parts."""
    variants = [teacher_variant, *(v for forms in timed.values() for v in forms.values())]
    timing = time_all(variants, validation, args)
    result["teacher"]["latency_ms"] = timing["latency_ms"]["teacher"]
    for row in result["students"]:
        for form in FORMS:
            row["forms"][form]["latency_ms"] = timing["latency_ms"][timed[row["arch"]][form].name]
    names = (
        args.breakdown
        if args.breakdown is not None
        else list(settings()[result["setting"]].breakdown)
    )
    result["timing"] = {
        "load": timing["load"],
        "quiet": timing["quiet"],
        "threads": args.threads,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "shapes": shapes_of(args),
    }
    result["breakdown"] = measure_breakdown(timed, names, teacher_variant, validation, args)


def run_setting(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train, deploy, evaluate and time the students of one teacher (`minilm` or `mpnet`)."""
    from nlpkd import deploy

    setting = settings()[name]
    start, machine = time.perf_counter(), deploy_bench.machine()
    tokenizer, raw, data = load_data(setting, args)
    teacher, folder = finetuned_teacher(name, setting, args, data, tokenizer)
    scores = importance_scores(teacher, data["train"], tokenizer, args.calibration_samples)
    context = {"teacher": teacher, "data": data, "tokenizer": tokenizer, "scores": scores}
    context["setting"] = setting
    teacher_variant = deploy.torch_variant("teacher", teacher, folder, tokenizer=tokenizer)
    entry = teacher_entry(teacher, teacher_variant, folder, raw["validation"], setting.max_length)
    print(f"{name} teacher: accuracy {entry['accuracy']:.4f}", flush=True)
    rows, timed = [], {}
    for text in args.specs or setting.specs:
        spec = Spec.parse(text)
        seeds = args.seeds[:1] if text in args.single_seed_specs else args.seeds
        row, variants = student_row(name, spec, seeds, context, raw, args)
        row["full_width"] = spec.hidden == teacher.config.hidden_size
        timed.setdefault(spec.arch, variants)
        rows.append(row)
    result = {
        "setting": name,
        "teacher_base": setting.base,
        "max_length": setting.max_length,
        "teacher_recipe": {
            "epochs": setting.teacher_epochs,
            "learning_rate": setting.teacher_learning_rate,
            "batch_size": setting.teacher_batch_size,
        },  # fmt: skip
        "data": {"train": len(raw["train"]), "validation": len(raw["validation"])},
        "machine": machine,
        "teacher": entry,
        "students": rows,
    }
    if not args.no_timing:
        time_setting(result, timed, teacher_variant, raw["validation"], args)
    result["minutes"] = (time.perf_counter() - start) / 60
    return result


def quality_setting(args: argparse.Namespace) -> argparse.Namespace:
    """benchmarks/quality.py's setting (5% labels, 32 tokens), its teacher kept in --cache_dir."""
    qargs = quality.build_parser().parse_args(
        ["--cache_dir", str(Path(args.cache_dir) / "quality")]
    )
    if args.quick:
        qargs.teacher_epochs = 1.0
    return qargs


def run_few_labels(args: argparse.Namespace) -> dict[str, Any]:
    """The 2-layer student at full, half and quarter width on docs/quality.md's 5%-label setting (accuracy
    only: the architectures are timed by the `minilm` run)."""
    from transformers import AutoTokenizer

    from nlpkd.models import packaged_minilm_path

    start, qargs = time.perf_counter(), quality_setting(args)
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_path())
    data = quality.load_data(qargs, tokenizer)
    teacher = quality.teacher_for(qargs, data, tokenizer, seed=0)
    teacher_accuracy = quality.accuracy(teacher, data["validation"], tokenizer)
    print(f"few-labels teacher: accuracy {teacher_accuracy:.4f}", flush=True)
    context = {
        "teacher": teacher,
        "data": data,
        "tokenizer": tokenizer,
        "scores": importance_scores(teacher, data["train"], tokenizer, args.calibration_samples),
        "recipe": (qargs.epochs, qargs.learning_rate),
        "batch_size": qargs.batch_size,
        "loss": dict(quality.BASE),
    }
    rows = []
    for text in args.specs or ("2x384", "2x192", "2x192:first", "2x96", "2x96:first"):
        spec, accuracies, seconds = Spec.parse(text), [], []
        for seed in args.seeds:
            student, _, info = trained_student("few-labels", spec, seed, context, args)
            accuracies.append(quality.accuracy(student, data["validation"], tokenizer))
            seconds.append(info["train_seconds"])
            print(f"few-labels {spec.label} seed {seed}: {accuracies[-1]:.4f}", flush=True)
        rows.append({"label": spec.label, "arch": spec.arch, "selection": spec.selection, "seeds": args.seeds,
                     "accuracy": accuracies, "train_seconds": seconds})  # fmt: skip
    return {
        "setting": "few-labels",
        "quality_setting": quality.setting(qargs),
        "teacher": {"accuracy": teacher_accuracy},
        "students": rows,
        "machine": deploy_bench.machine(),
        "minutes": (time.perf_counter() - start) / 60,
    }


def run_recipe(args: argparse.Namespace) -> dict[str, Any]:
    """Students of --setting under several (epochs, learning rate) pairs: float accuracy only."""
    setting = settings()[args.setting]
    start = time.perf_counter()
    tokenizer, raw, data = load_data(setting, args)
    teacher, _ = finetuned_teacher(args.setting, setting, args, data, tokenizer)
    teacher_accuracy = quality.accuracy(teacher, data["validation"], tokenizer)
    context = {"teacher": teacher, "data": data, "tokenizer": tokenizer,
               "scores": importance_scores(teacher, data["train"], tokenizer, args.calibration_samples)}  # fmt: skip
    rows = []
    for text in args.specs or ("2x192", "1x96"):
        spec = Spec.parse(text)
        for pair in args.recipes.split(","):
            epochs, learning_rate = (float(value) for value in pair.split(":"))
            context["recipe"] = (epochs, learning_rate)
            for seed in args.seeds:
                student, _, info = trained_student(args.setting, spec, seed, context, args)
                accuracy = quality.accuracy(student, data["validation"], tokenizer)
                print(
                    f"recipe {spec.label} {epochs:g} epochs lr {learning_rate:g} seed {seed}: {accuracy:.4f}"
                )
                rows.append({"label": spec.label, "epochs": epochs, "learning_rate": learning_rate, "seed": seed,
                             "accuracy": accuracy, "train_seconds": info["train_seconds"]})  # fmt: skip
    return {
        "setting": f"recipe-{args.setting}",
        "teacher": {"accuracy": teacher_accuracy},
        "students": rows,
        "machine": deploy_bench.machine(),
        "minutes": (time.perf_counter() - start) / 60,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["minilm", "mpnet", "few-labels", "recipe", "report"])
    parser.add_argument(
        "--specs", help="students, comma-separated (LxH or LxH:first); default per setting"
    )
    parser.add_argument(
        "--single_seed_specs", default="", help="students trained with the first seed only"
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--epochs", type=float, default=2.0, help="at the teacher's width (the job's default)"
    )
    parser.add_argument("--learning_rate", type=float, default=1e-4, help="at the teacher's width")
    parser.add_argument("--narrow_epochs", type=float, default=2.0, help="for narrower students")
    parser.add_argument(
        "--narrow_learning_rate", type=float, default=1e-4, help="for narrower students"
    )
    parser.add_argument("--recipes", default="2:1e-4,6:1e-4,6:3e-4", help="recipe: EPOCHS:LR pairs")
    parser.add_argument(
        "--setting", default="minilm", choices=["minilm", "mpnet"], help="recipe's teacher"
    )
    parser.add_argument("--calibration_samples", type=int, default=256)
    parser.add_argument(
        "--breakdown", help="students whose forward pass is broken down (default per setting)"
    )
    parser.add_argument("--latency_batches", type=int, default=2, help="32 x 128 batches per round")
    parser.add_argument("--single_batches", type=int, default=16, help="1 x 128 batches per round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", default="2", help="intra-op threads to time with, e.g. 2,1")
    parser.add_argument(
        "--quiet_load", type=float, help="before timing, wait for a load average below this"
    )
    parser.add_argument(
        "--quiet_wait", type=float, default=900, help="... for at most this many seconds"
    )
    parser.add_argument("--no_timing", action="store_true", help="train and evaluate only")
    parser.add_argument("--max_train_samples", type=int)
    parser.add_argument("--max_eval_samples", type=int)
    parser.add_argument("--max_steps", type=int, default=-1)
    parser.add_argument(
        "--quick", action="store_true", help="64 examples, 2 steps, one seed: a smoke run"
    )
    parser.add_argument("--cache_dir", default=str(Path(tempfile.gettempdir()) / "nlpkd-frontier"))
    parser.add_argument("--results", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument(
        "--plot", default=str(Path(__file__).resolve().parents[1] / "docs" / "frontier.png")
    )
    parser.add_argument("--output", help="write the results as JSON here")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.seeds, args.max_train_samples, args.max_eval_samples, args.max_steps = "0", 64, 64, 2
        args.latency_batches, args.single_batches, args.warmup, args.repeats = 1, 2, 0, 1
        args.calibration_samples = 16
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    args.threads = [int(threads) for threads in args.threads.split(",")]
    args.specs = [s.strip() for s in args.specs.split(",")] if args.specs else None
    args.single_seed_specs = [s.strip() for s in args.single_seed_specs.split(",") if s.strip()]
    args.breakdown = (
        [s.strip() for s in args.breakdown.split(",") if s.strip()] if args.breakdown else None
    )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if args.command == "report":
        print(frontier_report.report(Path(args.results), Path(args.plot)))
        return 0
    runs = {
        "minilm": run_setting,
        "mpnet": run_setting,
        "few-labels": run_few_labels,
        "recipe": run_recipe,
    }
    run = runs[args.command]
    result = run(args.command, args) if run is run_setting else run(args)
    result["command"] = " ".join(
        ["python benchmarks/frontier.py", *(argv if argv is not None else sys.argv[1:])]
    )
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(frontier_report.markdown(result))
    print(f"\n({result['minutes']:.1f} minutes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
