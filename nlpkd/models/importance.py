"""Which heads, feed-forward neurons and hidden channels of a teacher matter: activation scores on a calibration
batch (Minitron, Muralidharan et al. 2024), read by forward hooks in evaluation mode on real tokens only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from .inputs import select_forward_inputs
from .width_families import (
    WidthFamily,
    family_layers,
    layer_module,
    module_at,
    teacher_widths,
    width_family,
)

__all__ = ["WidthScores", "width_importance"]


@dataclass(frozen=True)
class WidthScores:
    """Importance of every head, feed-forward neuron and hidden channel of a model, from [`width_importance`].

    Args:
        heads (`torch.Tensor`): `(layers, heads)`, mean over real tokens of the L2 norm of each head's context
            vector (its slice of the attention output projection's input).
        neurons (`torch.Tensor`): `(layers, intermediate)`, mean over real tokens of each neuron's absolute
            activation (the feed-forward output projection's input).
        hidden (`torch.Tensor`): `(layers + 1, hidden)`, mean over real tokens of each channel's absolute
            LayerNorm output: row 0 sums the hidden-space outputs outside the layers (the embeddings), row
            `l + 1` the LayerNorms of layer `l`.
        tokens (`int`): the number of real tokens the means are over.
    """

    heads: Tensor
    neurons: Tensor
    hidden: Tensor
    tokens: int


def _calibration_batches(data: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(data, Mapping):
        yield data
        return
    if not isinstance(data, Iterable) or isinstance(data, str | bytes | Tensor):
        raise TypeError(
            "calibration_data must be a batch (a dict of tensors: input_ids, attention_mask, ...) or an "
            f"iterable of batches, got {type(data).__name__}."
        )
    count = 0
    for batch in data:
        if not isinstance(batch, Mapping):
            raise TypeError(
                f"calibration_data yielded a {type(batch).__name__}, not a dict batch of tensors."
            )
        count += 1
        yield batch
    if not count:
        raise ValueError(
            "calibration_data holds no batch; pass at least one batch of the training data."
        )


def _forward_kwargs(model: PreTrainedModel, batch: Mapping[str, Any]) -> dict[str, Any]:
    # The model's named inputs only: a batch from a collator also carries labels and other columns.
    return {
        key: value.to(model.device) if isinstance(value, Tensor) else value
        for key, value in select_forward_inputs(model, batch).items()
    }


def _token_mask(inputs: Mapping[str, Any]) -> Tensor:
    mask = inputs.get("attention_mask")
    if mask is not None:
        return mask.bool()
    ids = inputs.get("input_ids")
    if ids is None:
        raise ValueError(
            "A calibration batch needs input_ids (and attention_mask when it is padded)."
        )
    return torch.ones_like(ids, dtype=torch.bool)


class _ScoreSums:
    """Sums of the activation magnitudes over real tokens, filled by forward hooks."""

    def __init__(
        self, layers: int, heads: int, intermediate: int, hidden: int, head_size: int
    ) -> None:
        self.heads = torch.zeros(layers, heads, dtype=torch.float64)
        self.neurons = torch.zeros(layers, intermediate, dtype=torch.float64)
        self.hidden = torch.zeros(layers + 1, hidden, dtype=torch.float64)
        self.head_size = head_size
        self.mask: Tensor | None = None

    def _masked_sum(self, values: Tensor) -> Tensor:
        # values: (batch, seq, ...) -> sum over the real tokens, float64 on the CPU.
        mask = self.mask.to(values.device)
        return values.float()[mask].sum(dim=0).double().cpu()

    def add_heads(self, layer: int, context: Tensor) -> None:
        per_head = context.unflatten(-1, (-1, self.head_size)).float().norm(dim=-1)
        self.heads[layer] += self._masked_sum(per_head)

    def add_neurons(self, layer: int, activations: Tensor) -> None:
        self.neurons[layer] += self._masked_sum(activations.abs())

    def add_hidden(self, row: int, states: Tensor) -> None:
        if states.dim() == 3 and states.shape[-1] == self.hidden.shape[1]:
            self.hidden[row] += self._masked_sum(states.abs())


def _score_hooks(model: PreTrainedModel, family: WidthFamily, sums: _ScoreSums) -> list[Any]:
    def reading_input(add: Any, index: int) -> Any:
        return lambda module, args: add(index, args[0])

    def reading_output(add: Any, index: int) -> Any:
        return lambda module, args, output: add(index, output)

    handles = []
    for i, layer in enumerate(family_layers(model, family)):
        heads = layer_module(layer, family.head_columns, model)
        neurons = layer_module(layer, family.neuron_columns, model)
        handles.append(heads.register_forward_pre_hook(reading_input(sums.add_heads, i)))
        handles.append(neurons.register_forward_pre_hook(reading_input(sums.add_neurons, i)))
        for path in family.layer_norms:
            norm = layer_module(layer, path, model)
            handles.append(norm.register_forward_hook(reading_output(sums.add_hidden, i + 1)))
    for path in family.model_outputs:
        module = module_at(model.base_model, path)
        if module is not None:
            handles.append(module.register_forward_hook(reading_output(sums.add_hidden, 0)))
    return handles


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def width_importance(model: PreTrainedModel, calibration_data: Any) -> WidthScores:
    """Activation-based importance of every head, neuron and hidden channel (Minitron, Muralidharan et al. 2024).

    The model runs in eval mode without gradients on the calibration batches; forward hooks measure, over the
    real tokens only (`attention_mask`), a head by the mean L2 norm of its context vector, a feed-forward neuron
    by its mean absolute activation, and a hidden channel by its mean absolute LayerNorm output (per layer, and
    outside the layers for the embeddings). See [`WidthScores`].

    Args:
        model ([`~transformers.PreTrainedModel`]): the teacher, of a family in [`WIDTH_FAMILIES`].
        calibration_data: a batch (a dict of tensors: `input_ids`, `attention_mask`, ...; other keys such as
            `labels` are ignored) or an iterable of batches, e.g. a `DataLoader` over the training set.

    Returns:
        [`WidthScores`]: the scores, float64 on the CPU.
    """
    family = width_family(model.config)
    hidden, heads, intermediate, head_size = teacher_widths(model.config, family)
    sums = _ScoreSums(len(family_layers(model, family)), heads, intermediate, hidden, head_size)
    handles = _score_hooks(model, family, sums)
    tokens = 0
    try:
        with _evaluating(model):
            for batch in _calibration_batches(calibration_data):
                inputs = _forward_kwargs(model, batch)
                sums.mask = _token_mask(inputs)
                tokens += int(sums.mask.sum())
                model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not tokens:
        raise ValueError("The calibration batches hold no real token (attention_mask is all 0).")
    return WidthScores(sums.heads / tokens, sums.neurons / tokens, sums.hidden / tokens, tokens)
