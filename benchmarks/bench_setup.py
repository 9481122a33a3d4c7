"""What `bench.py` measures on: the cases (teacher, student depth, batch shapes) and their random data."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

NUM_LABELS = 5  # BBC News topics; every teacher gets a random head with this many classes


@dataclass(frozen=True)
class Case:
    """A teacher, the student's depth, and the batch shapes per device: (batch, seq_len, memory batch)."""

    name: str
    description: str
    student_layers: int
    shapes: dict[str, tuple[int, int, int]]


CASES = {
    "minilm": Case(
        "minilm",
        "packaged all-MiniLM-L6-v2 (6 layers x 384) -> 3 layers",
        3,
        {"cpu": (16, 128, 4), "cuda": (64, 128, 64)},
    ),
    "bert-base": Case(
        "bert-base",
        "BERT-base-sized teacher from BertConfig() (12 layers x 768, 12 heads, random weights) -> 6 layers",
        6,
        {"cpu": (4, 128, 2), "cuda": (64, 128, 64)},
    ),
    "tiny": Case(
        "tiny",
        "tiny BERT (4 layers x 64, random weights) -> 2 layers, for smoke tests",
        2,
        {"cpu": (4, 32, 4), "cuda": (8, 64, 8)},
    ),
}


def build_teacher(case: str, path: str | None = None) -> nn.Module:
    """The case's teacher on the CPU, in float32, with a random `NUM_LABELS`-way head, seeded."""
    from transformers import AutoModelForSequenceClassification, BertConfig
    from transformers import BertForSequenceClassification as Bert
    from transformers import logging as hf_logging

    torch.manual_seed(0)
    if case == "bert-base":
        # BertConfig's defaults are BERT-base: 12 layers, 768 wide, 12 heads, 3072 FFN, 30522 tokens.
        return Bert(BertConfig(num_labels=NUM_LABELS))
    if case == "tiny":
        shape = dict(
            hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128
        )
        return Bert(BertConfig(vocab_size=2000, num_labels=NUM_LABELS, **shape))
    from nlpkd.models import packaged_minilm_path

    verbosity = hf_logging.get_verbosity()
    # The freshly initialised head would otherwise be announced on every load.
    hf_logging.set_verbosity_error()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            path or packaged_minilm_path(), num_labels=NUM_LABELS
        )
    finally:
        hf_logging.set_verbosity(verbosity)


def make_student(teacher: nn.Module, case: Case) -> nn.Module:
    from nlpkd import create_student

    return create_student(teacher, num_layers=case.student_layers)


def random_dataset(vocab_size: int, examples: int, seq_len: int, seed: int = 0) -> Any:
    """Full-length rows of random token ids (no padding, so every step does the same work)."""
    import datasets

    generator = torch.Generator().manual_seed(seed)
    # Ids 1000+ skip BERT's special and unused tokens.
    ids = torch.randint(
        min(1000, vocab_size // 2), vocab_size, (examples, seq_len), generator=generator
    )
    labels = torch.randint(0, NUM_LABELS, (examples,), generator=generator)
    return datasets.Dataset.from_dict(
        {
            "input_ids": ids.tolist(),
            "attention_mask": torch.ones_like(ids).tolist(),
            "token_type_ids": torch.zeros_like(ids).tolist(),
            "labels": labels.tolist(),
        }
    )


def shape_of(case: Case, cli: argparse.Namespace) -> tuple[int, int, int]:
    batch, seq_len, memory_batch = case.shapes[cli.device]
    return (
        cli.batch_size or batch,
        cli.seq_len or seq_len,
        cli.memory_batch_size or memory_batch,
    )


def log(message: str, cli: argparse.Namespace) -> None:
    if cli.verbose:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
