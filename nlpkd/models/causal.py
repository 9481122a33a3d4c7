"""Causal language models as teacher and student: recognising them, checking that a pair can be distilled per
token, and their context length.
"""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from ..config import DistillationConfig

__all__ = [
    "OTHER_VOCABULARY_REFUSAL",
    "check_causal_pair",
    "check_context_length",
    "context_length",
    "is_causal_lm",
]

# Why two causal LMs with different tokenizers are refused, not distilled.
OTHER_VOCABULARY_REFUSAL = (
    "nlpkd distils two causal language models token by token, comparing the teacher's and the student's "
    "next-token distributions at the same position over one vocabulary; with different tokenizers neither the "
    "positions nor the vocabularies correspond, and comparing them anyway would train on a silently wrong "
    "target. Cross-tokenizer methods exist (ULD, Boizard et al. 2024, compares sorted probabilities with a "
    "Wasserstein distance and aligns positions by truncation; TRL's GOLDTrainer aligns token spans and maps "
    "vocabularies) but nlpkd does not implement them: use a student with the teacher's tokenizer "
    "(nlpkd.create_student), or TRL's GOLDTrainer."
)

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
    student_vocab = getattr(_unwrap(student).config, "vocab_size", None)
    teacher_vocab = getattr(_unwrap(teacher).config, "vocab_size", None)
    if student_vocab != teacher_vocab:
        raise ValueError(
            f"Teacher and student vocabularies differ (teacher vocab_size={teacher_vocab}, student "
            f"vocab_size={student_vocab}): {OTHER_VOCABULARY_REFUSAL}"
        )
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
