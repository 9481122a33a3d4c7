"""Use a distilled student like any Hugging Face classifier: `transformers.pipeline`.

    python examples/use_in_pipeline.py --model_dir my-student "Shares rose after the results" ...

A folder written by `nlpkd distill` or by `DistillationResult.save` is a plain transformers model
folder (config, weights, tokenizer), so `pipeline("text-classification", model=FOLDER)` loads it,
and the predictions carry the label names the student was trained with.

Without `--model_dir`, a very short distillation runs first (the packaged all-MiniLM-L6-v2 is
fine-tuned on a few BBC News articles, then distilled into 3 layers) and its student is used; it
is a smoke test, not a good model. Runs offline.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from transformers import pipeline

DEFAULT_TEXTS = [
    "Shares in the carmaker fell sharply after it cut its profit forecast for the year.",
    "The striker scored twice as the champions won the cup final in extra time.",
    "The new phone chip doubles battery life, the company told developers.",
    "The minister said the election would be held in May.",
]


def quick_student(output_dir: Path, num_examples: int, max_steps: int) -> Path:
    """Fine-tune a teacher on a few BBC News articles and distil it briefly; return the folder."""
    from nlpkd.api import distill, finetune
    from nlpkd.data import load_bbc_news
    from nlpkd.models import packaged_minilm_path

    articles = load_bbc_news()["train"].shuffle(seed=0).select(range(num_examples))
    teacher = finetune(
        packaged_minilm_path(),
        articles,
        max_length=64,
        num_train_epochs=3.0,
        learning_rate=2e-4,
        disable_tqdm=True,
    )
    # The labels travel from the data's ClassLabel to the teacher's and the student's config.
    result = distill(
        teacher,
        articles,
        student_layers=3,
        max_length=64,
        max_steps=max_steps,
        learning_rate=3e-4,
        latency_batches=0,
        disable_tqdm=True,
    )
    return result.save(output_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("texts", nargs="*", help="texts to classify (default: four examples)")
    parser.add_argument("--model_dir", help="a saved student (default: distil one quickly)")
    parser.add_argument("--num_examples", type=int, default=64, help="articles for the quick run")
    parser.add_argument("--max_steps", type=int, default=10, help="steps of the quick run")
    options = parser.parse_args()

    model_dir = options.model_dir
    if model_dir is None:
        print("No --model_dir given: distilling a small student first ...")
        model_dir = quick_student(
            Path(tempfile.mkdtemp()) / "student", options.num_examples, options.max_steps
        )

    # The student folder is all pipeline() needs: weights, config with id2label, tokenizer.
    classifier = pipeline("text-classification", model=str(model_dir))
    labels = list(classifier.model.config.id2label.values())
    print(f"student from {model_dir} ({classifier.model.config.model_type})")
    print(f"labels: {', '.join(labels)}")
    texts = options.texts or DEFAULT_TEXTS
    # top_k=None returns every label's score, best first.
    for text, scores in zip(texts, classifier(texts, top_k=None), strict=True):
        best = scores[0]
        print(f"{best['label']:>15} ({best['score']:.2f})  {text}")


if __name__ == "__main__":
    main()
