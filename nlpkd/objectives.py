"""The components of the distillation loss: which terms a [`DistillationConfig`] asks for, computed from the two
models' outputs with the pure functions of `nlpkd.losses`.

Adding a term is a function in `losses.py`, a weight or a `Literal` field in `config.py`, and one `if` in
[`loss_components`].
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers.modeling_outputs import SequenceClassifierOutput

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
from .projections import with_projections
from .student import (
    attention_probs_dropouts,
    attention_projections,
    check_compatible,
    check_layer_outputs,
    num_encoder_layers,
    resolve_layer_map,
)
from .teacher import resolve_teacher

__all__ = [
    "LogitColumns",
    "capture_attention_projections",
    "capture_relations",
    "check_pair",
    "prepare_models",
    "relation_heads",
    "has_labels",
    "hidden_pairs",
    "loss_components",
    "output_requests",
    "route_inputs",
    "signature_columns",
    "teacher_outputs",
    "trainable_student",
]

# Batch keys that are targets, never model inputs.
_TARGET_KEYS = ("labels", "shift_labels", CACHE_COLUMN)


@dataclass(frozen=True)
class LogitColumns:
    """Which of the student's logit columns the teacher's logits and the hard labels refer to.

    By default both refer to all of them. A student whose head was grown for a new task (Learning without
    Forgetting, `nlpkd.continual`) is taught its old task by the teacher on the first columns and learns the new
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


def check_pair(student: Any, teacher: Any, args: Any) -> Any:
    """The teacher, loaded when given as a path, after checking the arguments of a
    [`~nlpkd.trainer.DistillationTrainer`]: `args` is a [`DistillationConfig`], and the student is a separate
    model."""
    if not isinstance(args, DistillationConfig):
        raise ValueError(
            f"args must be a nlpkd.DistillationConfig, got {type(args).__name__}: it carries the "
            "temperature and loss weights. Build one with DistillationConfig(output_dir=..., ...)."
        )
    if student is None:
        raise ValueError("DistillationTrainer needs the student as `model`.")
    # A path is loaded; several teachers become one ensemble (teacher_weights, teacher_ensemble).
    teacher = resolve_teacher(teacher, args)
    if teacher is student:
        raise ValueError(
            "The teacher and the student are the same object: pass a separate student."
        )
    return teacher


def teacher_outputs(
    teacher: nn.Module,
    keys: set[str] | None,
    inputs: Mapping[str, Any],
    requests: Mapping[str, bool],
    relations: Any,
) -> Any:
    """The teacher's outputs on a batch, without gradients: its cached logits when the batch carries them and
    only the logits are needed, else a forward pass on the inputs it takes (`keys`) with the per-layer outputs
    the terms ask for (`requests`)."""
    cached = inputs.get(CACHE_COLUMN)
    if cached is not None and not requests and relations is None:
        return SequenceClassifierOutput(logits=cached)
    with torch.no_grad():
        return teacher(**route_inputs(keys, inputs), **requests)


def signature_columns(student_keys: set[str], teacher_keys: set[str]) -> list[str]:
    """The dataset columns the Trainer must keep: the inputs of both models' `forward`, the labels and the
    cached teacher logits (the Trainer alone would keep only the student's)."""
    return sorted(student_keys | teacher_keys | {"label", "label_ids", "labels", CACHE_COLUMN})


def route_inputs(keys: set[str] | None, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a batch that a model's `forward` takes (`keys`, from
    [`~nlpkd.student.forward_input_names`]); with `keys=None` (a `**kwargs` forward), every entry but the targets.
    """
    if keys is None:
        return {k: v for k, v in inputs.items() if k not in _TARGET_KEYS}
    return {k: v for k, v in inputs.items() if k in keys}


def prepare_models(
    student: Any, teacher: Any, args: DistillationConfig, logit_columns: LogitColumns | None = None
) -> dict[int, int]:
    """Make a frozen teacher and its student ready for the configured terms, and return the layer map.

    Checks that the pair can be distilled (vocabulary, labels), switches both models to eager attention when
    the attention term needs the maps (SDPA never materialises them) and the student's attention-probability
    dropout off (the maps are compared before dropout: in train mode eager attention returns dropped-out
    maps), probes the per-layer outputs once, and checks that the relation heads divide both widths.

    Args:
        student ([`~transformers.PreTrainedModel`]): the model being distilled (changed in place).
        teacher ([`~transformers.PreTrainedModel`]): the frozen teacher (changed in place).
        args ([`DistillationConfig`]): the loss settings.
        logit_columns ([`LogitColumns`], *optional*): the student's columns that the teacher's logits stand for.

    Returns:
        `dict[int, int]`: student layer -> teacher layer of the hidden-state and attention terms (empty when
        neither is on; stages for ResNet).
    """
    # An ensemble of teachers answers for its first teacher's layers.
    primary = getattr(teacher, "primary", teacher)
    check_compatible(student, primary, (logit_columns or LogitColumns()).teacher)
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
        # Fails now for a family without separate query/key/value projections, or an index out of range.
        attention_projections(student, num_encoder_layers(student) - 1)
        attention_projections(primary, _layer_index(primary, args.relation_teacher_layer))
        heads = relation_heads(args, primary)
        for role, model in (("student", student), ("teacher", primary)):
            width = model.config.hidden_size
            if width % heads:
                raise ValueError(
                    f"The relation term splits the {role}'s width {width} into {heads} relation heads, which "
                    f"does not divide it: set num_relation_heads to a common divisor of both widths."
                )
    return layer_map


def trainable_student(
    student: Any, teacher: Any, args: DistillationConfig, layer_map: Mapping[int, int]
) -> nn.Module:
    """The module the Trainer trains: the student, wrapped with learned width projections when the hidden-state
    term compares layers of different widths ([`~nlpkd.projections.with_projections`]).

    Models without one `hidden_size` (ResNet, whose stages have their own widths) are returned as they are: a
    student from [`~nlpkd.create_student`] keeps every stage's width, and the hidden-state term says which pair
    differs otherwise.
    """
    teacher_width = getattr(teacher.config, "hidden_size", None)
    if teacher_width is None or getattr(student.config, "hidden_size", None) is None:
        return student
    hidden = [s for s, _ in hidden_pairs(args, layer_map)]
    return with_projections(student, teacher_width, hidden, args.hidden_projection)


def relation_heads(args: DistillationConfig, teacher: Any) -> int:
    """`num_relation_heads`, or the teacher's number of attention heads when it is not set."""
    return args.num_relation_heads or teacher.config.num_attention_heads


def _layer_index(model: Any, index: int) -> int:
    return index + num_encoder_layers(model) if index < 0 else index


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


@contextlib.contextmanager
def capture_relations(
    args: DistillationConfig, heads: int | None, student: Any, teacher: Any
) -> Iterator[tuple[list, list] | None]:
    """The query/key/value projections of the relation layers of both models, recorded during the block
    (`None` when the relation term is off, `heads is None`).

    Args:
        args ([`DistillationConfig`]): `relation_teacher_layer` names the teacher's layer.
        heads (`int`, *optional*): the relation heads, `None` when the term is off.
        student ([`~transformers.PreTrainedModel`]): the student (its last layer is compared).
        teacher ([`~transformers.PreTrainedModel`]): the teacher, unwrapped.
    """
    if heads is None:
        yield None
        return
    with (
        capture_attention_projections(student, -1) as student_qkv,
        capture_attention_projections(teacher, args.relation_teacher_layer) as teacher_qkv,
    ):
        yield student_qkv, teacher_qkv


def _as_tokens(states: Tensor) -> Tensor:
    # A convolutional feature map (batch, channels, height, width) compares position by position like a
    # sequence of height * width tokens of width `channels`.
    return states.flatten(2).transpose(1, 2) if states.dim() == 4 else states


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
    logit_columns: LogitColumns | None = None,
    token_level: bool = False,
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
