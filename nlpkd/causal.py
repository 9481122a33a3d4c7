"""Causal language models: token-level distillation over the completion, sequence-level distillation from the
teacher's own generations, and perplexity.

[`DistillationTrainer`][nlpkd.trainer.DistillationTrainer] switches to token level by itself when the student and
the teacher are causal language models (`*ForCausalLM`, `GPT2LMHeadModel`): the logit term compares the two
next-token distributions at every position whose target is a completion token (`labels != -100` after the
shift), and the hard-label term is next-token cross-entropy on the same tokens. Both are normalised over the
completion tokens of the whole accumulated batch, as `transformers` does for its own language-model loss: see
[`token_loss_scale`].

The data are rows of `input_ids` with `labels` that copy them and hold `-100` on the prompt
([`tokenize_completions`]); [`CompletionCollator`] pads them. Sequence-level distillation (Kim and Rush, 2016)
trains the student on completions that the teacher wrote for a set of prompts ([`generate_completions`]).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from .cache import teacher_fingerprint
from .config import LOSS_COMPONENTS, DistillationConfig
from .student import select_forward_inputs

__all__ = [
    "CompletionCollator",
    "ShiftLabelsCollator",
    "check_causal_pair",
    "check_context_length",
    "context_length",
    "generate_completions",
    "is_causal_lm",
    "next_token_targets",
    "perplexity",
    "shift_labels",
    "term_scales",
    "token_loss_scale",
    "tokenize_completions",
]

_CAUSAL_LM_CLASSES = frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
# Where configurations keep the number of positions a model can attend to.
_CONTEXT_ATTRS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")


def _unwrap(model: nn.Module) -> nn.Module:
    while not isinstance(model, PreTrainedModel):
        inner = getattr(model, "module", None) or getattr(model, "student", None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    return model


def is_causal_lm(model: nn.Module) -> bool:
    """Whether a model is a causal language model (a `*ForCausalLM` or `*LMHeadModel` class of transformers, or
    any class that `AutoModelForCausalLM` maps to), looking through DDP and projection wrappers.

    Args:
        model (`torch.nn.Module`): the model.
    """
    name = type(_unwrap(model)).__name__
    return name in _CAUSAL_LM_CLASSES or name.endswith(("ForCausalLM", "LMHeadModel"))


def check_causal_pair(student: nn.Module, teacher: nn.Module, args: DistillationConfig) -> bool:
    """Whether a pair distils at token level (both causal language models); raises a `ValueError` that says what
    to do when only one of them is, or when a setting cannot work at token level.

    Args:
        student (`torch.nn.Module`): the student.
        teacher (`torch.nn.Module`): the teacher.
        args ([`DistillationConfig`]): the settings.
    """
    student_lm, teacher_lm = is_causal_lm(student), is_causal_lm(teacher)
    if student_lm != teacher_lm:
        kinds = {True: "a causal language model", False: "not a causal language model"}
        raise ValueError(
            f"The teacher ({type(_unwrap(teacher)).__name__}) is {kinds[teacher_lm]} but the student "
            f"({type(_unwrap(student)).__name__}) is {kinds[student_lm]}: both must predict the same things. "
            "Load both with AutoModelForCausalLM, or both as classifiers."
        )
    if not student_lm:
        return False
    if args.teacher_cache:
        raise ValueError(
            "teacher_cache stores one logit vector per example, but a causal language model has one per token "
            "over the whole vocabulary: set teacher_cache=False."
        )
    if args.label_smoothing_factor > 0:
        raise ValueError(
            "label_smoothing_factor is not supported for causal language models: the teacher's soft "
            "next-token distributions already smooth the targets. Set label_smoothing_factor=0."
        )
    return True


def context_length(model: nn.Module) -> int | None:
    """The number of positions a model can attend to (`max_position_embeddings`, `n_positions`, ...), or `None`
    when its config names none.

    Args:
        model (`torch.nn.Module`): the model (wrappers are looked through).
    """
    config = getattr(_unwrap(model), "config", None)
    for attr in _CONTEXT_ATTRS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_context_length(model: nn.Module, length: int, role: str = "model") -> None:
    """Raise a `ValueError` that says what to do when `length` positions do not fit a model's context.

    Args:
        model (`torch.nn.Module`): the model.
        length (`int`): the sequence length it would see.
        role (`str`, *optional*, defaults to `"model"`): names the model in the message.
    """
    limit = context_length(model)
    if limit is not None and length > limit:
        raise ValueError(
            f"A sequence of {length} tokens is longer than the {role}'s context of {limit} positions: "
            f"truncate the data (tokenize_completions(..., max_length={limit}) or "
            f"CompletionCollator(tokenizer, max_length={limit})), or shorten the prompts."
        )


def shift_labels(labels: Tensor) -> Tensor:
    """Next-token targets aligned with the logits: position `i` holds `labels[i + 1]`, the last position `-100`.

    Args:
        labels (`torch.Tensor`): `(batch, seq)` token ids, `-100` where a token is not a target.

    Returns:
        `torch.Tensor`: the shifted targets, same shape.
    """
    return F.pad(labels[..., 1:], (0, 1), value=-100)


class CompletionCollator:
    """Pads rows of `input_ids` (and `labels`, `-100` on the prompt) on the right into a batch for a causal LM.

    Rows without `labels` learn from every token. Padding gets attention mask 0 and label `-100`.

    Args:
        tokenizer: gives `pad_token_id` (its `eos_token_id` when it has no padding token).
        max_length (`int`, *optional*): keep at most this many tokens per row (the first ones).
        pad_to_multiple_of (`int`, *optional*): round the padded length up to a multiple of this.
    """

    def __init__(
        self, tokenizer: Any, max_length: int | None = None, pad_to_multiple_of: int | None = None
    ) -> None:
        if tokenizer is None:
            raise ValueError(
                "Causal language-model batches are padded with the tokenizer's padding token: pass "
                "processing_class=tokenizer, or data_collator=CompletionCollator(tokenizer)."
            )
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(tokenizer, "eos_token_id", None)
        if pad is None:
            raise ValueError(
                "The tokenizer has neither a padding nor an end-of-sequence token: set "
                "tokenizer.pad_token before collating language-model batches."
            )
        self.pad_token_id = int(pad)
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
        rows = [list(f["input_ids"])[: self.max_length] for f in features]
        targets = [
            list(f["labels"])[: self.max_length] if f.get("labels") is not None else list(row)
            for f, row in zip(features, rows, strict=True)
        ]
        length = max(len(row) for row in rows)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {"input_ids": [], "attention_mask": [], "labels": []}
        for row, target in zip(rows, targets, strict=True):
            pad = length - len(row)
            batch["input_ids"].append(row + [self.pad_token_id] * pad)
            batch["attention_mask"].append([1] * len(row) + [0] * pad)
            batch["labels"].append(target + [-100] * pad)
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}


class ShiftLabelsCollator:
    """Wraps a collator so that every batch also carries `shift_labels` ([`shift_labels`]).

    The Trainer counts `num_items_in_batch` from `shift_labels` when a batch has them, whatever the model class,
    so the count is exactly the number of next-token targets the token-level loss sums over.

    Args:
        collator (`Callable`): the data collator to wrap.
    """

    def __init__(self, collator: Callable[[list[Any]], Mapping[str, Any]]) -> None:
        self.collator = collator

    def __call__(self, features: list[Any]) -> dict[str, Any]:
        batch = dict(self.collator(features))
        if "shift_labels" not in batch and isinstance(batch.get("labels"), Tensor):
            batch["shift_labels"] = shift_labels(batch["labels"])
        return batch


def token_loss_scale(
    num_items_in_batch: Tensor | int | None,
    local_count: Tensor | int,
    *,
    accumulation_steps: int = 1,
    num_processes: int = 1,
    average_tokens_across_devices: bool = True,
    n_gpu: int = 1,
) -> Tensor | float:
    """The factor that turns one micro-batch's token mean into its share of the accumulated batch's token mean.

    Summed over the micro-batches of an optimizer step (and, after DDP averages the gradients, over processes),
    `mean_i * token_loss_scale(...)` is `(sum of the per-token losses) / (number of tokens)` of the whole step,
    so every completion token weighs the same however the tokens fall into micro-batches. The Trainer passes
    `num_items_in_batch`: the targets of all micro-batches of the step (`shift_labels != -100`), gathered over
    processes when `average_tokens_across_devices` and more than one process run. Then the factor is
    `local_count / num_items_in_batch`, times the number of processes because DDP averages their gradients
    (the same rule as `Trainer.compute_loss`). Without `num_items_in_batch` (evaluation, or a batch the Trainer
    could not count) each micro-batch keeps its own mean, divided by `accumulation_steps`.

    Args:
        num_items_in_batch (`torch.Tensor` or `int`, *optional*): the Trainer's count of the step's targets.
        local_count (`torch.Tensor` or `int`): the targets in this micro-batch.
        accumulation_steps (`int`, *optional*, defaults to `1`): micro-batches in this step (training only).
        num_processes (`int`, *optional*, defaults to `1`): data-parallel processes.
        average_tokens_across_devices (`bool`, *optional*, defaults to `True`): the `TrainingArguments` flag.
        n_gpu (`int`, *optional*, defaults to `1`): GPUs of one process (`torch.nn.DataParallel`).
    """
    if num_items_in_batch is None:
        return 1.0 / max(accumulation_steps, 1)
    # On the device of the loss it scales (the count may come on another one).
    device = local_count.device if isinstance(local_count, Tensor) else None
    total = torch.as_tensor(num_items_in_batch, dtype=torch.float32, device=device)
    if total.dim() > 0:
        # DataParallel hands every replica the same count.
        total = total.reshape(-1)[0]
    scale = 1.0
    if average_tokens_across_devices and num_processes > 1:
        scale = float(num_processes)
    elif not average_tokens_across_devices and n_gpu > 1:
        # The Trainer divided the count by the GPUs; our loss is computed once on the gathered outputs.
        total = total * n_gpu
    local = torch.as_tensor(local_count, dtype=torch.float32, device=device)
    return local * scale / total.clamp_min(1.0)


def next_token_targets(inputs: Mapping[str, Any], *models: nn.Module) -> Tensor | None:
    """A batch's next-token targets aligned with the logits (its `shift_labels`, else [`shift_labels`] of its
    `labels`; `None` without labels), after checking that the batch fits every model's context.

    Args:
        inputs (`Mapping[str, Any]`): the collated batch.
        *models (`torch.nn.Module`): the models that will read it (the student and the teacher).
    """
    labels = inputs.get("labels")
    if labels is None:
        return None
    for role, model in zip(("student", "teacher"), models, strict=False):
        check_context_length(model, labels.shape[-1], role)
    shifted = inputs.get("shift_labels")
    return shifted if shifted is not None else shift_labels(labels)


def term_scales(
    targets: Tensor | None,
    num_items_in_batch: Tensor | int | None,
    accumulation_steps: int,
    num_processes: int,
    *,
    args: Any,
    training: bool = True,
) -> dict[str, Tensor | float]:
    """Per loss component, the factor that makes the micro-batch losses of a causal LM's optimizer step add up to
    the accumulated batch's loss: the token terms (`kd`, `ce`) by [`token_loss_scale`], the per-batch terms
    (`hidden`, `attn`, `relation`) by `1 / accumulation_steps`. Outside training every factor is 1 (means of the
    batch).

    Args:
        targets (`torch.Tensor`, *optional*): the micro-batch's next-token targets (`-100` where none).
        num_items_in_batch (`torch.Tensor` or `int`, *optional*): the Trainer's count of the step's targets.
        accumulation_steps (`int`): micro-batches in this optimizer step.
        num_processes (`int`): data-parallel processes.
        args (`TrainingArguments`): reads `average_tokens_across_devices` and `n_gpu`.
        training (`bool`, *optional*, defaults to `True`): whether this is a training step.
    """
    if not training:
        num_items_in_batch, accumulation_steps = None, 1
    scales: dict[str, Tensor | float] = {
        name: 1.0 / max(accumulation_steps, 1) for name in LOSS_COMPONENTS
    }
    if targets is not None:
        token_scale = token_loss_scale(
            num_items_in_batch,
            (targets != -100).sum(),
            accumulation_steps=accumulation_steps,
            num_processes=num_processes,
            average_tokens_across_devices=args.average_tokens_across_devices,
            n_gpu=args.n_gpu,
        )
        scales.update(kd=token_scale, ce=token_scale)
    return scales


def tokenize_completions(
    dataset: datasets.Dataset,
    tokenizer: Any,
    *,
    prompt_column: str = "prompt",
    completion_column: str = "completion",
    max_length: int | None = None,
    add_eos: bool = True,
) -> datasets.Dataset:
    """Tokenize (prompt, completion) pairs into `input_ids` and `labels` that hold `-100` on the prompt.

    The prompt and the completion are tokenized separately and joined, so the boundary is exact; the
    tokenizer's end-of-sequence token closes the completion when `add_eos`. Rows longer than `max_length` keep
    their first `max_length` tokens; a row whose prompt alone fills `max_length` has no completion token left
    and is an error. With `prompt_column=None` every token is a completion token (plain language modelling).

    Args:
        dataset (`datasets.Dataset`): the pairs.
        tokenizer: the teacher's (and student's) tokenizer.
        prompt_column (`str`, *optional*, defaults to `"prompt"`): the prompt texts, or `None`.
        completion_column (`str`, *optional*, defaults to `"completion"`): the completion texts.
        max_length (`int`, *optional*): at most this many tokens per row.
        add_eos (`bool`, *optional*, defaults to `True`): end each completion with the end-of-sequence token.

    Returns:
        `datasets.Dataset`: columns `input_ids`, `attention_mask` and `labels`.
    """
    eos = [tokenizer.eos_token_id] if add_eos and tokenizer.eos_token_id is not None else []

    def encode(row: Mapping[str, Any], index: int) -> dict[str, list[int]]:
        prompt = (
            tokenizer(row[prompt_column], add_special_tokens=False)["input_ids"]
            if prompt_column
            else []
        )
        completion = tokenizer(row[completion_column], add_special_tokens=False)["input_ids"] + eos
        ids = (prompt + completion)[:max_length]
        labels = ([-100] * len(prompt) + completion)[:max_length]
        if all(label == -100 for label in labels):
            raise ValueError(
                f"Row {index} has no completion token within max_length={max_length} (its prompt has "
                f"{len(prompt)} tokens): raise max_length or shorten the prompt."
            )
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}

    return dataset.map(encode, with_indices=True, remove_columns=dataset.column_names)


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


def perplexity(
    model: nn.Module,
    dataset: datasets.Dataset,
    data_collator: Callable[[list[Any]], Mapping[str, Tensor]],
    batch_size: int = 16,
) -> dict[str, float]:
    """Perplexity of a causal language model on the target tokens of a dataset (the completion: `labels` not
    `-100`, after the shift), exact over the whole dataset: `exp(sum of the token losses / number of tokens)`.

    Args:
        model (`torch.nn.Module`): the language model.
        dataset (`datasets.Dataset`): tokenized rows ([`tokenize_completions`]).
        data_collator (`Callable`): pads a list of rows ([`CompletionCollator`]).
        batch_size (`int`, *optional*, defaults to `16`): rows per forward pass.

    Returns:
        `dict[str, float]`: `perplexity` and `loss` (the mean token cross-entropy, in nats).
    """
    if len(dataset) == 0:
        raise ValueError("perplexity needs at least one row; the dataset is empty.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.inference_mode():
            for start in range(0, len(dataset), batch_size):
                batch = data_collator(
                    [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
                )
                targets = shift_labels(batch["labels"]).to(device)
                check_context_length(model, targets.shape[-1])
                inputs = {k: v.to(device) for k, v in select_forward_inputs(model, batch).items()}
                logits = model(**inputs).logits.float()
                total += float(
                    F.cross_entropy(
                        logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum"
                    )
                )
                count += int((targets != -100).sum())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError(
            "The dataset has no target token (every label is -100): nothing to measure."
        )
    loss = total / count
    return {"perplexity": math.exp(loss), "loss": loss}
