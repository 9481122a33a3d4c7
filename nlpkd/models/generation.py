"""The teacher's own generations, the data of sequence-level distillation (Kim and Rush, 2016): sampled once,
seeded, and cached by the teacher's fingerprint and the generation settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any

import datasets
import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from ..data.fingerprint import teacher_fingerprint
from .causal import context_length, is_causal_lm

__all__ = ["generate_completions"]


def _left_padded(tokenizer: Any, texts: list[str], device: torch.device) -> dict[str, Tensor]:
    # Decoder-only generation continues the last position of every row, so prompts are padded on the left.
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    length = max(len(row) for row in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = [[pad] * (length - len(row)) + row for row in ids]
    mask = [[0] * (length - len(row)) + [1] * len(row) for row in ids]
    return {
        "input_ids": torch.tensor(input_ids, device=device),
        "attention_mask": torch.tensor(mask, device=device),
    }


def _completions_key(teacher: nn.Module, tokenizer: Any, prompts: list[str], settings: dict) -> str:
    digest = hashlib.sha256(teacher_fingerprint(teacher).encode())
    digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(json.dumps([prompts, settings], sort_keys=True).encode())
    return digest.hexdigest()[:20]


def _check_prompts(
    teacher: nn.Module, tokenizer: Any, prompts: list[str], max_new_tokens: int
) -> None:
    if not prompts:
        raise ValueError("generate_completions needs at least one prompt.")
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
        raise ValueError(
            "The tokenizer has neither a padding nor an end-of-sequence token: set tokenizer.pad_token first."
        )
    limit = context_length(teacher)
    if limit is None:
        return
    for index, prompt in enumerate(prompts):
        length = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if length + max_new_tokens > limit:
            raise ValueError(
                f"Prompt {index} has {length} tokens, and with max_new_tokens={max_new_tokens} it does not fit "
                f"the teacher's context of {limit} positions: shorten it (keep its last "
                f"{max(limit - max_new_tokens, 0)} tokens) or lower max_new_tokens."
            )


def generate_completions(
    teacher: PreTrainedModel,
    tokenizer: Any,
    prompts: Iterable[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """The teacher's completions of `prompts`, for sequence-level distillation: a dataset of `prompt` and
    `completion` texts, in the order of the prompts.

    Prompts are generated in batches, padded on the left, after `torch.manual_seed(seed)`, so the same teacher,
    prompts and settings give the same completions. With `cache_dir`, the dataset is saved there under a key made
    of the teacher's weights, the tokenizer's vocabulary, the prompts and every setting, and read back instead
    of generating again. Tokenize the result with [`tokenize_completions`] and train the student on it.

    Args:
        teacher ([`~transformers.PreTrainedModel`]): a causal language model.
        tokenizer: its tokenizer.
        prompts (`Iterable[str]`): the prompts.
        max_new_tokens (`int`, *optional*, defaults to `64`): the longest completion, in tokens.
        batch_size (`int`, *optional*, defaults to `16`): prompts per `generate` call.
        seed (`int`, *optional*, defaults to `0`): seeds the sampling.
        do_sample (`bool`, *optional*, defaults to `True`): sample; `False` decodes greedily.
        temperature (`float`, *optional*, defaults to `1.0`): sampling temperature.
        top_p (`float`, *optional*, defaults to `1.0`): nucleus sampling mass.
        cache_dir (`str` or `os.PathLike`, *optional*): folder of the cached datasets.

    Raises:
        `ValueError`: if a prompt with `max_new_tokens` does not fit the teacher's context, the teacher is not a
            causal language model, or the tokenizer cannot pad.
    """
    prompts = list(prompts)
    if not is_causal_lm(teacher):
        raise ValueError(
            f"generate_completions needs a causal language model, got {type(teacher).__name__}: load the "
            "teacher with AutoModelForCausalLM."
        )
    _check_prompts(teacher, tokenizer, prompts, max_new_tokens)
    settings = dict(
        max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed, do_sample=do_sample,
        temperature=temperature, top_p=top_p,
    )  # fmt: skip
    target = None
    if cache_dir is not None:
        key = _completions_key(teacher, tokenizer, prompts, settings)
        target = os.path.join(os.fspath(cache_dir), f"completions-{key}")
        if os.path.isdir(target):
            return datasets.load_from_disk(target)
    completions = _generate(teacher, tokenizer, prompts, settings)
    dataset = datasets.Dataset.from_dict({"prompt": prompts, "completion": completions})
    if target is not None:
        _save_atomically(dataset, target)
    return dataset


def _generate(teacher: nn.Module, tokenizer: Any, prompts: list[str], settings: dict) -> list[str]:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(teacher.parameters()).device
    was_training = teacher.training
    teacher.eval()
    torch.manual_seed(settings["seed"])
    sampling = {"temperature": settings["temperature"], "top_p": settings["top_p"]}
    completions = []
    try:
        for start in range(0, len(prompts), settings["batch_size"]):
            batch = _left_padded(tokenizer, prompts[start : start + settings["batch_size"]], device)
            with torch.no_grad():
                output = teacher.generate(
                    **batch,
                    max_new_tokens=settings["max_new_tokens"],
                    do_sample=settings["do_sample"],
                    pad_token_id=pad,
                    **(sampling if settings["do_sample"] else {}),
                )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            completions += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    finally:
        teacher.train(was_training)
    return completions


def _save_atomically(dataset: datasets.Dataset, target: str) -> None:
    # Written beside the target and renamed, so an interrupted run never leaves a half-written cache behind.
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".completions-", dir=parent)
    try:
        dataset.save_to_disk(staging)
        os.replace(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not os.path.isdir(target):
            raise
