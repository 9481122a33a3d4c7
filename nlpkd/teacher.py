"""Where the frozen teacher lives during training: prepared by Accelerate in evaluation mode, with its own
DeepSpeed inference engine under ZeRO-3 and moved to the device under FSDP."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import PreTrainedModel

from .ensemble import TeacherEnsemble
from .models import load_teacher

if TYPE_CHECKING:
    from transformers import Trainer

__all__ = ["freeze_teacher", "place_teacher", "resolve_teacher"]


def resolve_teacher(teacher: Any, args: Any) -> nn.Module:
    """The teacher a trainer was given, as a module: a model, a path or Hub id loaded as a fine-tuned
    classifier, or a list of those averaged into a [`~nlpkd.ensemble.TeacherEnsemble`] with `args`'s
    `teacher_weights`, `temperature` and `teacher_ensemble`."""
    if isinstance(teacher, TeacherEnsemble):
        return teacher
    if isinstance(teacher, list | tuple):
        return TeacherEnsemble(
            [load_teacher(t) for t in teacher],
            args.teacher_weights,
            args.temperature,
            args.teacher_ensemble,
        )
    return load_teacher(teacher)


def freeze_teacher(teacher: PreTrainedModel, dtype: str | None = None) -> PreTrainedModel:
    """Put the teacher in `eval()` with no gradients, cast to `dtype` (`"float16"`, `"bfloat16"`, `"float32"`;
    `None` or `"auto"` keeps it as given).

    Args:
        teacher ([`~transformers.PreTrainedModel`]): the fine-tuned teacher, changed in place.
        dtype (`str`, *optional*): the dtype to cast it to.
    """
    if dtype not in (None, "auto"):
        teacher = teacher.to(getattr(torch, dtype))
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def place_teacher(teacher: PreTrainedModel, trainer: Trainer) -> nn.Module:
    """The teacher as the trainer's processes run it: on their device, sharded like the student under ZeRO-3.

    Args:
        teacher ([`~transformers.PreTrainedModel`]): the frozen teacher.
        trainer ([`~transformers.Trainer`]): the trainer whose Accelerate set-up decides the placement.
    """
    if trainer.is_deepspeed_enabled:
        return _deepspeed_teacher(teacher, trainer)
    if trainer.is_fsdp_enabled:
        # FSDP places only what it wraps, and the frozen teacher is not wrapped.
        teacher.to(trainer.args.device)
    return trainer.accelerator.prepare_model(teacher, evaluation_mode=True)


def _deepspeed_teacher(teacher: PreTrainedModel, trainer: Trainer) -> nn.Module:
    # Under ZeRO-3 the teacher's parameters must be partitioned like the student's, so it needs its own
    # inference engine; other stages keep a plain replica on each device.
    import deepspeed

    args = trainer.args
    config = copy.deepcopy(trainer.accelerator.state.deepspeed_plugin.deepspeed_config)
    if config.get("zero_optimization", {}).get("stage", 0) != 3:
        teacher.to(args.device)
        return teacher
    hidden = teacher.config.hidden_size
    zero = config["zero_optimization"]
    for key, value in (
        ("reduce_bucket_size", hidden * hidden),
        ("stage3_param_persistence_threshold", 10 * hidden),
        ("stage3_prefetch_bucket_size", int(0.9 * hidden * hidden)),
    ):
        if zero.get(key) == "auto":
            zero[key] = value
    for key in ("optimizer", "scheduler"):
        config.pop(key, None)
    if config.get("train_micro_batch_size_per_gpu") == "auto":
        config["train_micro_batch_size_per_gpu"] = args.per_device_train_batch_size
    if config.get("train_batch_size") == "auto":
        config.pop("train_batch_size")
    if config.get("gradient_accumulation_steps") == "auto":
        config["gradient_accumulation_steps"] = args.gradient_accumulation_steps
    engine, *_ = deepspeed.initialize(model=teacher, config=config)
    engine.eval()
    return engine
