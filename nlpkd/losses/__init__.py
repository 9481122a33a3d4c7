"""The distillation loss: pure loss functions and the assembly of the terms a config asks for.

The functions of `logits`, `intermediate` and `relations` are pure: tensors in, a float32 scalar out, with
padding given by an explicit mask and the teacher side detached, so no gradient can reach the teacher and
fp16/bf16 models give finite losses. [`loss_components`] (in `terms`) computes the weighted terms of a
[`DistillationConfig`], which the trainer sums as

``alpha_kd * kd + alpha_ce * ce + alpha_hidden * hidden + alpha_attn * attn + alpha_relation * relation``.
"""

from .intermediate import attention_loss, hidden_state_loss, pkd_loss
from .logits import (
    hard_label_loss,
    logit_distillation_loss,
    masked_mean,
    soft_kl_loss,
)
from .relations import relation_loss
from .terms import LogitColumns, has_labels, hidden_pairs, loss_components, output_requests

__all__ = [
    "LogitColumns",
    "attention_loss",
    "hard_label_loss",
    "has_labels",
    "hidden_pairs",
    "hidden_state_loss",
    "logit_distillation_loss",
    "loss_components",
    "masked_mean",
    "output_requests",
    "pkd_loss",
    "relation_loss",
    "soft_kl_loss",
]
