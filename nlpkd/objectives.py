"""The components of the distillation loss: which terms a [`DistillationConfig`] asks for, computed from the two
models' outputs with the pure functions of `nlpkd.losses`.

Adding a term is a function in `losses.py`, a weight or a `Literal` field in `config.py`, and one `if` in
[`loss_components`].
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from torch import Tensor

from .cache import CACHE_COLUMN
from .config import DistillationConfig
from .losses import (
    attention_loss,
    hard_label_loss,
    hidden_state_loss,
    logit_distillation_loss,
    pkd_loss,
    relation_loss,
)
from .student import (
    attention_probs_dropouts,
    attention_projections,
    check_compatible,
    check_layer_outputs,
    num_encoder_layers,
    resolve_layer_map,
)

__all__ = [
    "capture_attention_projections",
    "prepare_models",
    "relation_heads",
    "has_labels",
    "hidden_pairs",
    "inputs_for",
    "loss_components",
    "output_requests",
]


def prepare_models(student: Any, teacher: Any, args: DistillationConfig) -> dict[int, int]:
    """Make a frozen teacher and its student ready for the configured terms, and return the layer map.

    Checks that the pair can be distilled (vocabulary, labels), switches both models to eager attention when
    the attention term needs the maps (SDPA never materialises them) and the student's attention-probability
    dropout off (the maps are compared before dropout: in train mode eager attention returns dropped-out
    maps), probes the per-layer outputs once, and checks that the relation heads divide both widths.

    Args:
        student ([`~transformers.PreTrainedModel`]): the model being distilled (changed in place).
        teacher ([`~transformers.PreTrainedModel`]): the frozen teacher (changed in place).
        args ([`DistillationConfig`]): the loss settings.

    Returns:
        `dict[int, int]`: student layer -> teacher layer of the hidden-state and attention terms (empty when
        neither is on).
    """
    # An ensemble of teachers answers for its first teacher's layers.
    primary = getattr(teacher, "primary", teacher)
    check_compatible(student, primary)
    if args.alpha_attn > 0:
        for model in (student, *getattr(teacher, "teachers", [teacher])):
            if model.config._attn_implementation != "eager":
                model.set_attn_implementation("eager")
        for dropout in attention_probs_dropouts(student):
            dropout.p = 0.0
    intermediate = args.alpha_hidden > 0 or args.alpha_attn > 0
    layer_map = resolve_layer_map(student, primary, args.layer_map) if intermediate else {}
    for role, model in (("student", student), ("teacher", primary)):
        check_layer_outputs(model, role, args.alpha_hidden > 0, args.alpha_attn > 0)
    if args.alpha_relation > 0:
        heads = relation_heads(args, primary)
        for role, model in (("student", student), ("teacher", primary)):
            width = model.config.hidden_size
            if width % heads:
                raise ValueError(
                    f"The relation term splits the {role}'s width {width} into {heads} relation heads, which "
                    f"does not divide it: set num_relation_heads to a common divisor of both widths."
                )
        # Fails now for a family without separate query/key/value projections, or an index out of range.
        attention_projections(student, num_encoder_layers(student) - 1)
        attention_projections(primary, _layer_index(primary, args.relation_teacher_layer))
    return layer_map


def relation_heads(args: DistillationConfig, teacher: Any) -> int:
    """`num_relation_heads`, or the teacher's number of attention heads when it is not set."""
    return args.num_relation_heads or teacher.config.num_attention_heads


def _layer_index(model: Any, index: int) -> int:
    return index + num_encoder_layers(model) if index < 0 else index


def inputs_for(keys: set[str] | None, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a batch that a model taking `keys` reads; `None` keys: every entry but the labels and
    the cached teacher logits."""
    if keys is None:
        return {k: v for k, v in inputs.items() if k not in ("labels", CACHE_COLUMN)}
    return {k: v for k, v in inputs.items() if k in keys}


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


@contextlib.contextmanager
def capture_attention_projections(model: Any, layer_index: int) -> Iterator[list[Tensor | None]]:
    """Record the query, key and value projections of one layer during the forward passes inside the block.

    Args:
        model ([`~transformers.PreTrainedModel`]): a text encoder of a family with separate projections.
        layer_index (`int`): the 0-based layer (negative counts from the end).

    Yields:
        `list`: `[query, key, value]`, each `(batch, seq, width)`, filled by the forward pass.
    """
    layer_index = _layer_index(model, layer_index)
    captured: list[Tensor | None] = [None, None, None]

    def hook(index: int) -> Callable[..., None]:
        def record(module: Any, inputs: Any, output: Tensor) -> None:
            captured[index] = output

        return record

    handles = [
        module.register_forward_hook(hook(i))
        for i, module in enumerate(attention_projections(model, layer_index))
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _hard_label_term(
    args: DistillationConfig, logits: Tensor, labels: Tensor, label_smoother: Any
) -> Tensor | None:
    # Rows without a label (-100: unlabelled or augmented text) learn from the teacher alone; a batch with
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
    """
    layer_map = layer_map or {}
    components: dict[str, Tensor] = {}
    if args.alpha_kd > 0:
        components["kd"] = logit_distillation_loss(
            student_out.logits, teacher_out.logits, args.temperature, args.kd_loss, args.jsd_beta
        )
    if args.alpha_ce > 0 and labels is not None:
        term = _hard_label_term(args, student_out.logits, labels, label_smoother)
        if term is not None:
            components["ce"] = term
    pairs = hidden_pairs(args, layer_map)
    if pairs:
        projected = student_out.get("projected_hidden_states")
        student_hidden = projected or [student_out.hidden_states[s] for s, _ in pairs]
        teacher_hidden = [teacher_out.hidden_states[t] for _, t in pairs]
        if args.hidden_loss == "pkd":
            components["hidden"] = pkd_loss(student_hidden, teacher_hidden)
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
        )
    if args.alpha_relation > 0 and relations is not None:
        components["relation"] = relation_loss(
            relations[0], relations[1], attention_mask, relation_heads or args.num_relation_heads
        )
    return components


def has_labels(labels: Tensor | None) -> bool:
    """Whether a batch carries at least one hard label (not `-100`)."""
    return labels is not None and (labels.is_floating_point() or bool((labels != -100).any()))
