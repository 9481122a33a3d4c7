"""The assembly of the distillation loss: which terms a [`DistillationConfig`] asks for, computed from the two
models' outputs with the pure functions of `nlpkd.losses`.

Adding a term is a function in `nlpkd/losses/`, a weight or a `Literal` field in `config.py`, and one `if` in
[`loss_components`].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..config import DistillationConfig
from .intermediate import attention_loss, hidden_state_loss, pkd_loss
from .logits import hard_label_loss, logit_distillation_loss
from .relations import relation_loss

__all__ = ["LogitColumns", "has_labels", "hidden_pairs", "loss_components", "output_requests"]


@dataclass(frozen=True)
class LogitColumns:
    """Which of the student's logit columns the teacher's logits and the hard labels refer to.

    By default both refer to all of them. A student whose head was grown for a new task (Learning without
    Forgetting, `nlpkd.jobs.continual`) is taught its old task by the teacher on the first columns and learns the new
    task's labels on the others.

    Args:
        teacher (`slice`, *optional*): the student's columns compared with the teacher's logits (all when `None`).
        labels (`slice`, *optional*): the student's columns the hard labels index (all when `None`); evaluation
            predictions are these columns too.
    """

    teacher: slice | None = None
    labels: slice | None = None

    def for_teacher(self, logits: Tensor) -> Tensor:
        """The student's logits that the teacher's logits are compared with."""
        return logits if self.teacher is None else logits[..., self.teacher]

    def for_labels(self, logits: Tensor) -> Tensor:
        """The student's logits that the hard labels index."""
        return logits if self.labels is None else logits[..., self.labels]


def output_requests(args: DistillationConfig) -> dict[str, bool]:
    """The per-layer outputs the configured terms need from both models' `forward`."""
    requests = {}
    if args.alpha_hidden > 0:
        requests["output_hidden_states"] = True
    if args.alpha_attn > 0:
        requests["output_attentions"] = True
    return requests


def hidden_pairs(args: DistillationConfig, layer_map: Mapping[int, int]) -> list[tuple[int, int]]:
    """`(student, teacher)` positions in `hidden_states` that the hidden-state term compares: the embedding
    outputs (position 0) when `hidden_embeddings`, then encoder layer `s` at `s + 1` against `t + 1`."""
    if args.alpha_hidden == 0:
        return []
    pairs = [(0, 0)] if args.hidden_embeddings else []
    return pairs + [(s + 1, t + 1) for s, t in layer_map.items()]


def _as_tokens(states: Tensor) -> Tensor:
    # A convolutional feature map (batch, channels, height, width) compares position by position like a
    # sequence of height * width tokens of width `channels`.
    return states.flatten(2).transpose(1, 2) if states.dim() == 4 else states


def _hard_label_term(
    args: DistillationConfig, logits: Tensor, labels: Tensor, label_smoother: Any
) -> Tensor | None:
    # Rows without a label (-100: unlabeled or augmented text) learn from the teacher alone; a batch with
    # none has no hard-label term at all, so the logged `ce` averages the batches that had labels.
    if not has_labels(labels):
        return None
    if label_smoother is not None and logits.shape[-1] > 1:
        return label_smoother({"logits": logits}, labels)
    return hard_label_loss(logits, labels)


def loss_components(
    args: DistillationConfig,
    student_out: Any,
    teacher_out: Any,
    *,
    labels: Tensor | None = None,
    attention_mask: Tensor | None = None,
    layer_map: Mapping[int, int] | None = None,
    label_smoother: Any = None,
    relations: tuple[list[Tensor], list[Tensor]] | None = None,
    relation_heads: int | None = None,
    logit_columns: LogitColumns | None = None,
    token_level: bool = False,
    attention_heads: Sequence[Sequence[int] | None] | None = None,
) -> dict[str, Tensor]:
    """Each weighted term of the distillation loss, keyed as it is logged (`kd`, `ce`, `hidden`, `attn`,
    `relation`); a term whose weight is 0, or that the batch cannot give (`ce` without labels), is absent.

    Args:
        args ([`DistillationConfig`]): the weights and variants of the terms.
        student_out: the student's output (`logits`, and the per-layer outputs the terms need; with learned
            width projections, `projected_hidden_states` in the order of [`hidden_pairs`]).
        teacher_out: the teacher's output, the same way.
        labels (`torch.Tensor`, *optional*): the hard labels (`-100` for rows without one).
        attention_mask (`torch.Tensor`, *optional*): `(batch, seq)`, 1 for real tokens.
        layer_map (`dict[int, int]`, *optional*): student layer -> teacher layer of the intermediate terms.
        label_smoother (*optional*): the Trainer's label smoother, used by the hard-label term when set.
        relations (`tuple`, *optional*): the student's and the teacher's `[query, key, value]` of the relation
            layers, from [`capture_attention_projections`].
        relation_heads (`int`, *optional*): the relation heads ([`relation_heads`]).
        logit_columns ([`LogitColumns`], *optional*): the student's columns of the teacher's logits and of the
            labels (all of them by default).
        token_level (`bool`, *optional*, defaults to `False`): causal language models: `labels` are the
            next-token targets aligned with the logits (`shift_labels`, `-100` on prompt and padding), and the
            teacher term counts only the positions that have one. Both terms are then means over those tokens.
        attention_heads (`list`, *optional*): per pair of the attention term, the teacher heads a narrow
            student's heads were sliced from ([`nlpkd.models.width.kept_teacher_heads`]).
    """
    layer_map = layer_map or {}
    columns = logit_columns or LogitColumns()
    components: dict[str, Tensor] = {}
    if args.alpha_kd > 0:
        mask = labels != -100 if token_level and labels is not None else None
        components["kd"] = logit_distillation_loss(
            columns.for_teacher(student_out.logits),
            teacher_out.logits,
            args.temperature,
            args.kd_loss,
            args.jsd_beta,
            mask=mask,
        )
    if args.alpha_ce > 0 and labels is not None:
        logits = columns.for_labels(student_out.logits)
        term = _hard_label_term(args, logits, labels, label_smoother)
        if term is not None:
            components["ce"] = term
    pairs = hidden_pairs(args, layer_map)
    if pairs:
        projected = student_out.get("projected_hidden_states")
        student_hidden = projected or [_as_tokens(student_out.hidden_states[s]) for s, _ in pairs]
        teacher_hidden = [_as_tokens(teacher_out.hidden_states[t]) for _, t in pairs]
        if args.hidden_loss == "pkd":
            # PKD reads position 0 alone, which two tokenizations of one text both have (their lengths differ).
            first = [[h[:, :1] for h in side] for side in (student_hidden, teacher_hidden)]
            components["hidden"] = pkd_loss(*first)
        else:
            components["hidden"] = hidden_state_loss(
                student_hidden, teacher_hidden, attention_mask, loss_type=args.hidden_loss
            )
    if args.alpha_attn > 0:
        components["attn"] = attention_loss(
            [student_out.attentions[s] for s in layer_map],
            [teacher_out.attentions[t] for t in layer_map.values()],
            attention_mask=attention_mask,
            loss_type=args.attn_loss,
            teacher_heads=attention_heads,
        )
    if args.alpha_relation > 0 and relations is not None:
        components["relation"] = relation_loss(
            relations[0], relations[1], attention_mask, relation_heads or args.num_relation_heads
        )
    return components


def has_labels(labels: Tensor | None) -> bool:
    """Whether a batch carries at least one hard label (not `-100`)."""
    return labels is not None and (labels.is_floating_point() or bool((labels != -100).any()))
