"""Learn a second task without forgetting the first (Learning without Forgetting), on BBC News topics.

    python examples/continual_learning.py --output_dir lwf-student

Task A sorts articles into business, entertainment and politics; task B into sports and tech. A classifier is
fine-tuned on task A (the packaged all-MiniLM-L6-v2 with a fresh head), then trained on task B twice, from the
same model with its head grown by task B's labels: once plainly (`alpha_kd=0`) and once with Learning without
Forgetting, whose distillation term keeps the model's task-A answers on task B's articles. No task-A article is
seen while learning task B. The script prints task-A and task-B accuracy before and after both, and writes the
LwF model with `metrics.json`, the plot and a model card. Runs offline; a few minutes on a laptop CPU with the
defaults, well under one with `--base_layers 2 --per_topic 40 --max_length 48` (a two-layer MiniLM built with
`create_student`).
"""

from __future__ import annotations

import argparse
import json

import datasets
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from nlpkd import DistillationConfig, create_student
from nlpkd.data import load_bbc_news
from nlpkd.jobs import evaluate_tasks, learn_without_forgetting
from nlpkd.models import packaged_minilm_path
from nlpkd.report import build_report, latency_batches, write_report

TASK_A = ["business", "entertainment", "politics"]
TASK_B = ["sports", "tech"]


def task_split(
    split: datasets.Dataset, topics: list[str], per_topic: int | None
) -> datasets.Dataset:
    """The articles of `topics`, relabeled 0 .. len(topics) - 1, at most `per_topic` of each."""
    names = split.features["label"].names
    wanted = {names.index(topic): i for i, topic in enumerate(topics)}
    taken = dict.fromkeys(wanted.values(), 0)
    keep, labels = [], []
    for index, label in enumerate(split["label"]):
        new = wanted.get(label)
        if new is not None and (per_topic is None or taken[new] < per_topic):
            taken[new] += 1
            keep.append(index)
            labels.append(new)
    texts = split.select(keep)["text"]
    # The headline and the lead tell the topic and keep the sequences short.
    leads = [" ".join(p.strip() for p in text.split("\n") if p.strip()) for text in texts]
    return datasets.Dataset.from_dict({"text": leads, "label": labels})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="lwf-student")
    parser.add_argument("--per_topic", type=int, default=120, help="training articles per topic")
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--max_eval", type=int, default=None, help="held-out articles per topic")
    parser.add_argument("--epochs_a", type=float, default=2.0)
    parser.add_argument("--epochs_b", type=float, default=3.0)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--alpha_kd", type=float, default=1.0, help="weight of remembering task A")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--base_layers",
        type=int,
        default=6,
        help="MiniLM layers to keep (fewer: faster; the test uses 2)",
    )
    options = parser.parse_args()

    bbc = load_bbc_news(seed=options.seed)
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_path())

    def tokenize(data: datasets.Dataset) -> datasets.Dataset:
        def encode(batch: dict) -> dict:
            return tokenizer(batch["text"], truncation=True, max_length=options.max_length)

        return data.map(encode, batched=True, remove_columns=["text"])

    train_a = tokenize(task_split(bbc["train"], TASK_A, options.per_topic))
    train_b = tokenize(task_split(bbc["train"], TASK_B, options.per_topic))
    test_a = tokenize(task_split(bbc["validation"], TASK_A, options.max_eval))
    test_b = tokenize(task_split(bbc["validation"], TASK_B, options.max_eval))
    common = dict(
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=options.learning_rate,
        warmup_steps=5,
        save_strategy="no",
        report_to=[],
        logging_steps=10,
        seed=options.seed,
        use_cpu=True,
        disable_tqdm=True,
    )

    print(f"Fine-tuning on task A ({', '.join(TASK_A)}; {len(train_a)} articles) ...")
    labels = dict(id2label=dict(enumerate(TASK_A)), label2id={n: i for i, n in enumerate(TASK_A)})
    model = AutoModelForSequenceClassification.from_pretrained(packaged_minilm_path(), **labels)
    if options.base_layers < model.config.num_hidden_layers:
        model = create_student(model, num_layers=options.base_layers)
    args_a = TrainingArguments(
        output_dir=f"{options.output_dir}/task-a", num_train_epochs=options.epochs_a, **common
    )
    collator = DataCollatorWithPadding(tokenizer)
    trainer_a = Trainer(model=model, args=args_a, train_dataset=train_a, data_collator=collator)
    trainer_a.train()
    trainer_a.save_model()
    old, new = len(TASK_A), len(TASK_B)
    tasks = {"task_a": (test_a, slice(0, old)), "task_b": (test_b, slice(old, old + new))}
    before = evaluate_tasks(model, {"task_a": tasks["task_a"]}, tokenizer, args_a)

    results = {}
    for name, alpha_kd in (
        ("plain fine-tuning", 0.0),
        ("learning without forgetting", options.alpha_kd),
    ):
        print(f"Training on task B ({', '.join(TASK_B)}; {len(train_b)} articles): {name} ...")
        args = DistillationConfig(
            output_dir=options.output_dir,
            num_train_epochs=options.epochs_b,
            temperature=options.temperature,
            alpha_kd=alpha_kd,
            alpha_ce=1.0,
            **common,
        )
        trainer = learn_without_forgetting(model, train_b, TASK_B, args, processing_class=tokenizer)
        results[name] = (trainer, evaluate_tasks(trainer.student, tasks, tokenizer, args))

    lwf_trainer, lwf = results["learning without forgetting"]
    plain = results["plain fine-tuning"][1]
    before_a = before["task_a"]["accuracy"]
    print(f"\ntask A accuracy before learning task B: {before_a:.4f}")
    for name, (_, metrics) in results.items():
        a, b = metrics["task_a"]["accuracy"], metrics["task_b"]["accuracy"]
        print(f"{name:>28}: task A {a:.4f} (drop {before_a - a:+.4f}), task B {b:.4f}")
    plain_drop = before_a - plain["task_a"]["accuracy"]
    lwf_drop = before_a - lwf["task_a"]["accuracy"]
    ratio = lwf_drop / plain_drop if plain_drop > 0 else float("nan")
    print(f"LwF keeps {ratio:.2f} of plain fine-tuning's task-A drop (target: < 0.33)")

    lwf_trainer.save_model()
    report = build_report(
        model,
        lwf_trainer.student,
        before,
        lwf,
        main_metric="accuracy",
        main_split="task_a",
        latency_batches=latency_batches(test_a, tokenizer, 32, 2, options.max_length),
        progress=False,
        task="bbc-continual",
        teacher_name=f"{options.output_dir}/task-a",
        distillation=lwf_trainer.args.loss_settings(),
        train_examples=len(train_b),
        label_names=TASK_A + TASK_B,
        extra={
            "plain_fine_tuning": plain,
            "task_a_drop": {"plain": plain_drop, "lwf": lwf_drop},
            "origin": f"`{options.output_dir}/task-a` with its head grown by {TASK_B} and trained on them "
            "with Learning without Forgetting",
        },
    )
    write_report(
        report, options.output_dir, lwf_trainer.state.log_history, model_name="minilm-bbc-lwf"
    )
    print(json.dumps({"before": before, "plain": plain, "lwf": lwf}))
    print(f"LwF model, metrics.json, plot and model card written to {options.output_dir}")


if __name__ == "__main__":
    main()
