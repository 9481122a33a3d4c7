"""Where the frozen teacher lives during training: prepared by Accelerate in evaluation mode, with its own
DeepSpeed inference engine under ZeRO-3 and moved to the device under FSDP.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from torch import nn
from transformers import PreTrainedModel

if TYPE_CHECKING:
    from transformers import Trainer

__all__ = ["place_teacher"]


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
