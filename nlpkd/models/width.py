"""Students narrower than their teacher: fewer attention heads, feed-forward neurons and hidden channels.

A narrow student is a model of the teacher's class whose weights are slices of the teacher's: the kept heads'
query/key/value rows and attention-output columns, the kept feed-forward neurons' rows and columns, and the
kept hidden channels across the embeddings, every LayerNorm, every projection, the pooler and the classifier.
Which heads, neurons and channels to keep is measured on the teacher ([`width_importance`], the activation
scores of Minitron, Muralidharan et al. 2024) or taken first-k, the baseline.

Head size is kept: in the supported families the attention width equals the hidden size, so a student has
`hidden_size = num_attention_heads * head_size` with the teacher's head size. Transformers 5 has no
`prune_heads`/`pruned_heads` any more, so every layer keeps the same number of heads; which heads differs per
layer, except in MPNet (see [`WIDTH_FAMILIES`]).

The kept indices are recorded in the student's config (`nlpkd_kept_heads`, `nlpkd_kept_hidden`,
`nlpkd_width_selection`) and survive `save_pretrained`/`from_pretrained`, as `nlpkd_teacher_layers` does.

"""

from __future__ import annotations

import copy
import inspect
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedConfig, PreTrainedModel

from .importance import WidthScores, width_importance
from .width_families import (
    WIDTH_SELECTIONS,
    WidthFamily,
    WidthSelection,
    family_layers,
    teacher_widths,
    width_family,
)

__all__ = [
    "KeptWidth",
    "WidthRequest",
    "WidthSizes",
    "apply_width",
    "check_width_request",
    "kept_teacher_heads",
    "narrow_model",
    "resolve_width_sizes",
    "select_width",
]


@dataclass(frozen=True)
class WidthSizes:
    """The widths of a student: hidden size, attention heads per layer, feed-forward neurons per layer."""

    hidden_size: int
    num_attention_heads: int
    intermediate_size: int


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be an integer, got the bool {value!r}.")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"`{name}` must be an integer, got {value!r}.") from None
    if value < 1:
        raise ValueError(f"`{name}` must be at least 1, got {value}.")
    return value


def _combinations(heads: int, head_size: int) -> str:
    return ", ".join(f"{k} x {head_size} = {k * head_size}" for k in range(1, heads + 1))


def _hidden_and_heads(
    hidden_size: int | None, num_attention_heads: int | None, teacher: tuple[int, int, int, int]
) -> tuple[int, int]:
    t_hidden, t_heads, _, head_size = teacher
    works = (
        f"the teacher's head size is {head_size}, so hidden_size = num_attention_heads x {head_size}; "
        f"combinations that work (heads x head size = hidden): {_combinations(t_heads, head_size)}"
    )
    if hidden_size is None and num_attention_heads is None:
        return t_hidden, t_heads
    if num_attention_heads is None:
        if hidden_size % head_size:
            raise ValueError(f"hidden_size={hidden_size} is not a whole number of heads: {works}.")
        num_attention_heads = hidden_size // head_size
    hidden_size = num_attention_heads * head_size if hidden_size is None else hidden_size
    if hidden_size != num_attention_heads * head_size:
        raise ValueError(
            f"hidden_size={hidden_size} and num_attention_heads={num_attention_heads} disagree: {works}."
        )
    if num_attention_heads > t_heads:
        raise ValueError(
            f"The student cannot be wider than the teacher ({t_heads} heads, hidden {t_hidden}); got "
            f"{num_attention_heads} heads, hidden {hidden_size}: {works}."
        )
    return hidden_size, num_attention_heads


def resolve_width_sizes(
    config: PreTrainedConfig,
    hidden_size: int | None = None,
    intermediate_size: int | None = None,
    num_attention_heads: int | None = None,
) -> WidthSizes | None:
    """The student's widths from the ones asked for, the others taken from the teacher.

    The head size is the teacher's (`hidden_size / num_attention_heads`), and in the supported families the
    attention width is the hidden size, so `hidden_size = num_attention_heads * head_size`: given one of the
    two, the other follows; given both, they must agree.

    Args:
        config (`PreTrainedConfig`): the teacher's config.
        hidden_size (`int`, *optional*): the student's hidden size (DistilBERT's `dim`).
        intermediate_size (`int`, *optional*): feed-forward neurons per layer (DistilBERT's `hidden_dim`).
        num_attention_heads (`int`, *optional*): attention heads per layer (DistilBERT's `n_heads`).

    Returns:
        [`WidthSizes`] or `None`: `None` when no width is asked for.

    Raises:
        `ValueError`: for an unsupported family, a width larger than the teacher's, or a hidden size and head
            count that disagree (the message lists the combinations that work).
    """
    if hidden_size is None and intermediate_size is None and num_attention_heads is None:
        return None
    family = width_family(config)
    teacher = teacher_widths(config, family)
    if hidden_size is not None:
        hidden_size = _positive_int(hidden_size, "hidden_size")
    if num_attention_heads is not None:
        num_attention_heads = _positive_int(num_attention_heads, "num_attention_heads")
    hidden_size, num_attention_heads = _hidden_and_heads(hidden_size, num_attention_heads, teacher)
    if intermediate_size is None:
        intermediate_size = teacher[2]
    intermediate_size = _positive_int(intermediate_size, "intermediate_size")
    if intermediate_size > teacher[2]:
        raise ValueError(
            f"intermediate_size={intermediate_size} is larger than the teacher's {teacher[2]} neurons per "
            "layer; a student keeps a subset of them."
        )
    return WidthSizes(hidden_size, num_attention_heads, intermediate_size)


@dataclass(frozen=True)
class KeptWidth:
    """What a narrowed model keeps, as indices into the model it is sliced from.

    Args:
        heads (`list[list[int]]`): per layer, the kept heads (the same count in every layer).
        neurons (`list[list[int]]`): per layer, the kept feed-forward neurons (the same count in every layer).
        hidden (`list[int]`): the kept hidden channels.
    """

    heads: list[list[int]]
    neurons: list[list[int]]
    hidden: list[int]


def _top(scores: Tensor, k: int) -> list[int]:
    # Stable: among equal scores the lower index wins. Kept in ascending order, the teacher's own order.
    order = torch.sort(scores, descending=True, stable=True).indices[:k]
    return sorted(order.tolist())


def _check_scores(scores: WidthScores, layers: Sequence[int], widths: tuple[int, int, int]) -> None:
    hidden, heads, intermediate = widths
    shapes = (
        tuple(scores.heads.shape[1:]),
        tuple(scores.neurons.shape[1:]),
        scores.hidden.shape[1],
    )
    if shapes != ((heads,), (intermediate,), hidden) or max(layers) >= scores.heads.shape[0]:
        raise ValueError(
            f"The width scores (heads {tuple(scores.heads.shape)}, neurons {tuple(scores.neurons.shape)}, "
            f"hidden {tuple(scores.hidden.shape)}) are not of this teacher ({hidden} hidden, {heads} heads, "
            f"{intermediate} neurons, layers {list(layers)}); compute them with width_importance(teacher, ...)."
        )


def select_width(
    sizes: WidthSizes,
    teacher_layers: Sequence[int],
    teacher_widths: tuple[int, int, int],
    scores: WidthScores | None = None,
    shared_heads: bool = False,
) -> KeptWidth:
    """Chooses the heads, neurons and hidden channels a student keeps.

    With `scores`, the highest-scoring ones: per student layer the heads and neurons of the teacher layer it
    comes from, and the hidden channels by their score summed over the embeddings and the kept layers. Without,
    the first ones (the baseline). Indices are returned in ascending order.

    Args:
        sizes ([`WidthSizes`]): the student's widths.
        teacher_layers (`Sequence[int]`): the teacher layer of each student layer.
        teacher_widths (`tuple[int, int, int]`): the teacher's hidden size, heads and neurons per layer.
        scores ([`WidthScores`], *optional*): the teacher's importance scores; `None` keeps the first ones.
        shared_heads (`bool`, *optional*, defaults to `False`): every layer must keep the same heads (MPNet);
            each kept layer's head scores are normalised to sum 1 and summed, so each layer has an equal say.
    """
    layers = list(teacher_layers)
    if scores is None:
        heads = [list(range(sizes.num_attention_heads)) for _ in layers]
        neurons = [list(range(sizes.intermediate_size)) for _ in layers]
        return KeptWidth(heads, neurons, list(range(sizes.hidden_size)))
    _check_scores(scores, layers, teacher_widths)
    k = sizes.num_attention_heads
    if shared_heads:
        layer_scores = scores.heads[layers]
        joint = (layer_scores / layer_scores.sum(dim=1, keepdim=True).clamp_min(1e-30)).sum(dim=0)
        heads = [_top(joint, k) for _ in layers]
    else:
        heads = [_top(scores.heads[t], k) for t in layers]
    neurons = [_top(scores.neurons[t], sizes.intermediate_size) for t in layers]
    hidden = scores.hidden[0] + scores.hidden[[t + 1 for t in layers]].sum(dim=0)
    return KeptWidth(heads, neurons, _top(hidden, sizes.hidden_size))


def _check_indices(indices: Sequence[int], count: int, what: str) -> None:
    if not indices:
        raise ValueError(f"A narrowed model keeps at least one {what}; got none.")
    bad = [
        i for i in indices if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < count
    ]
    if bad:
        raise ValueError(
            f"Kept {what}s {bad} are not indices 0..{count - 1} of the model's {count} {what}s."
        )
    if len(set(indices)) != len(indices):
        raise ValueError(f"Kept {what}s {list(indices)} repeat an index; each can be kept once.")


def _check_per_layer(
    per_layer: Sequence[Sequence[int]], layers: int, count: int, what: str
) -> None:
    if len(per_layer) != layers:
        raise ValueError(
            f"Kept {what}s are given for {len(per_layer)} layers; the model has {layers}."
        )
    if len({len(kept) for kept in per_layer}) != 1:
        raise ValueError(
            f"Every layer must keep the same number of {what}s (transformers 5 configs hold one count for all "
            f"layers); got {[len(kept) for kept in per_layer]}."
        )
    for kept in per_layer:
        _check_indices(list(kept), count, what)


def _check_kept(model: PreTrainedModel, family: WidthFamily, kept: KeptWidth) -> None:
    hidden, heads, intermediate, head_size = teacher_widths(model.config, family)
    layers = len(family_layers(model, family))
    _check_per_layer(kept.heads, layers, heads, "head")
    _check_per_layer(kept.neurons, layers, intermediate, "neuron")
    _check_indices(list(kept.hidden), hidden, "hidden channel")
    if len(kept.hidden) != len(kept.heads[0]) * head_size:
        raise ValueError(
            f"{len(kept.hidden)} hidden channels do not fit {len(kept.heads[0])} heads of size {head_size}: in "
            f"model_type {model.config.model_type!r} the attention width is the hidden size, so keep "
            f"heads x {head_size} channels."
        )
    if family.shared_head_tensors and any(list(h) != list(kept.heads[0]) for h in kept.heads):
        raise ValueError(
            f"model_type {model.config.model_type!r} shares one table of relative-position biases, one column "
            f"per head, between all layers ({', '.join(family.shared_head_tensors)}); keep the same heads in "
            f"every layer (got {kept.heads})."
        )


def _narrow_config(
    config: PreTrainedConfig, family: WidthFamily, hidden: int, heads: int, intermediate: int
) -> PreTrainedConfig:
    narrowed = copy.deepcopy(config)
    old_hidden = getattr(config, family.hidden_attr)
    for attr in family.tied_width_attrs:
        value = getattr(config, attr, None)
        if value == old_hidden:
            setattr(narrowed, attr, hidden)
        elif value is not None and attr == "embedding_size" and value == hidden:
            # The model adds its embedding -> hidden projection only when the two sizes differ.
            raise ValueError(
                f"The teacher's embedding_size is {value} (not its hidden size {old_hidden}), and a student of "
                f"hidden size {hidden} would lose the projection between them; choose another hidden size."
            )
    if getattr(config, "conv_groups", 1) != 1:
        # A grouped convolution mixes channels only within groups, which slicing channels would cut across.
        raise ValueError(
            "A DeBERTa-v2 teacher with conv_groups > 1 cannot be narrowed; use conv_groups=1."
        )
    setattr(narrowed, family.hidden_attr, hidden)
    setattr(narrowed, family.heads_attr, heads)
    setattr(narrowed, family.intermediate_attr, intermediate)
    return narrowed


def _build_like(model: PreTrainedModel, config: PreTrainedConfig) -> PreTrainedModel:
    kwargs = {}
    # Bare models can be built without a pooler; the narrowed model must match or strict loading fails.
    if "add_pooling_layer" in inspect.signature(type(model).__init__).parameters:
        kwargs["add_pooling_layer"] = getattr(model, "pooler", None) is not None
    return type(model)(config, **kwargs)


def _probe_shapes(model: PreTrainedModel, family: WidthFamily) -> tuple[dict[str, torch.Size], int]:
    # The shapes of the same model one head wider, built on the meta device (no memory): the axes that grow
    # with the hidden size are the ones that change, whatever else (vocabulary, labels) happens to equal it.
    hidden, heads, intermediate, head_size = teacher_widths(model.config, family)
    extra = 1
    while getattr(model.config, "embedding_size", None) == (heads + extra) * head_size:
        extra += 1
    config = _narrow_config(
        model.config, family, (heads + extra) * head_size, heads + extra, intermediate
    )
    with torch.device("meta"):
        probe = _build_like(model, config)
    shapes = {key: value.shape for key, value in probe.state_dict().items()}
    return shapes, (heads + extra) * head_size


def _prefix(model: nn.Module, target: nn.Module) -> str:
    name = next(name for name, module in model.named_modules() if module is target)
    return f"{name}." if name else ""


@dataclass(frozen=True)
class _AxisIndex:
    """The index tensors of one narrowing, and where the named axes live in the state dict."""

    layers_prefix: str
    base_prefix: str
    family: WidthFamily
    heads: list[Tensor]  # per layer, rows of the kept heads (head_size each)
    neurons: list[Tensor]
    shared_heads: Tensor  # the kept heads themselves (shared tensors index heads, not rows)
    hidden: Tensor

    def named_axes(self, key: str) -> dict[int, Tensor]:
        """The axes of a tensor that are heads or neurons, with their indices."""
        if key.startswith(self.layers_prefix):
            layer, rest = key[len(self.layers_prefix) :].split(".", 1)
            module, kind = rest.rsplit(".", 1)
            i, f = int(layer), self.family
            if module in f.head_rows:
                return {0: self.heads[i]}
            if module == f.head_columns and kind == "weight":
                return {1: self.heads[i]}
            if module == f.neuron_rows:
                return {0: self.neurons[i]}
            if module == f.neuron_columns and kind == "weight":
                return {1: self.neurons[i]}
            return {}
        shared = {self.base_prefix + path for path in self.family.shared_head_tensors}
        return {-1: self.shared_heads} if key in shared else {}


def _axis_index(model: PreTrainedModel, family: WidthFamily, kept: KeptWidth) -> _AxisIndex:
    head_size = teacher_widths(model.config, family)[3]

    def rows(heads: Sequence[int]) -> Tensor:
        return torch.tensor([h * head_size + d for h in heads for d in range(head_size)])

    return _AxisIndex(
        layers_prefix=_prefix(model, family_layers(model, family)),
        base_prefix=_prefix(model, model.base_model),
        family=family,
        heads=[rows(h) for h in kept.heads],
        neurons=[torch.tensor(list(n)) for n in kept.neurons],
        shared_heads=torch.tensor(list(kept.heads[0])),
        hidden=torch.tensor(list(kept.hidden)),
    )


def _narrow_tensor(
    key: str, tensor: Tensor, probe: torch.Size, index: _AxisIndex, hidden: tuple[int, int]
) -> Tensor:
    named = {axis % tensor.dim(): idx for axis, idx in index.named_axes(key).items()}
    for axis in range(tensor.dim()):
        if axis in named:
            tensor = tensor.index_select(axis, named[axis].to(tensor.device))
        elif probe[axis] != tensor.shape[axis]:
            if (tensor.shape[axis], probe[axis]) != hidden:
                raise ValueError(
                    f"`{key}` axis {axis} grows with the width ({tensor.shape[axis]} -> {probe[axis]}) but is "
                    "neither the hidden size nor an axis named in `nlpkd.models.WIDTH_FAMILIES`; add it there."
                )
            tensor = tensor.index_select(axis, index.hidden.to(tensor.device))
    return tensor.clone()


def narrow_model(model: PreTrainedModel, kept: KeptWidth) -> PreTrainedModel:
    """A new model of the same class that keeps some heads, feed-forward neurons and hidden channels.

    Its config is a copy with the new hidden size, heads and feed-forward size; its weights are the model's
    slices (copies): the kept heads' query/key/value rows (and biases) and attention-output columns, the kept
    neurons' feed-forward rows and output columns, and the kept hidden channels along every axis that has the
    hidden size (embeddings, LayerNorms, every projection, the pooler and classifier; the inner dense layer of
    a classification head, whose width is the hidden size, keeps the hidden channels' indices). The weights are
    loaded with `strict=True`, so nothing stays randomly initialised. The indices may come in any order (the
    model computes the same function under any order of heads, neurons and channels); the kept heads and
    hidden channels are recorded as `config.nlpkd_kept_heads` and `config.nlpkd_kept_hidden`, indices into
    `model`.

    Keeping every index in order gives a model that computes exactly what `model` does. Removing hidden
    channels changes every LayerNorm's statistics, so a narrowed model only approximates its source until it
    is trained (distilled).

    Args:
        model ([`~transformers.PreTrainedModel`]): a model of a family in [`WIDTH_FAMILIES`].
        kept ([`KeptWidth`]): what to keep, as indices into `model`.

    Returns:
        [`~transformers.PreTrainedModel`]: the narrowed model, on the model's device and dtype, in its mode.
    """
    family = width_family(model.config)
    _check_kept(model, family, kept)
    hidden = teacher_widths(model.config, family)[0]
    config = _narrow_config(
        model.config, family, len(kept.hidden), len(kept.heads[0]), len(kept.neurons[0])
    )
    config.nlpkd_kept_heads = [list(h) for h in kept.heads]
    config.nlpkd_kept_hidden = list(kept.hidden)
    probe, probe_hidden = _probe_shapes(model, family)
    index = _axis_index(model, family, kept)
    state = {}
    for key, tensor in model.state_dict().items():
        if key not in probe:
            raise ValueError(
                f"`{key}` exists only at the model's own width; fix `nlpkd.models.WIDTH_FAMILIES` for model_type "
                f"{model.config.model_type!r}."
            )
        state[key] = _narrow_tensor(key, tensor, probe[key], index, (hidden, probe_hidden))
    narrowed = _build_like(model, config)
    narrowed.to(device=model.device, dtype=model.dtype)
    narrowed.load_state_dict(state, strict=True)
    narrowed.train(model.training)
    return narrowed


@dataclass(frozen=True)
class WidthRequest:
    """A checked request for a narrower student, from [`check_width_request`].

    Args:
        sizes ([`WidthSizes`]): the student's widths.
        selection (`str`): `"importance"` or `"first"`.
        calibration_data: the calibration batches, or precomputed [`WidthScores`] (`None` for `"first"`).
    """

    sizes: WidthSizes
    selection: WidthSelection
    calibration_data: Any = None


def check_width_request(
    config: PreTrainedConfig,
    hidden_size: int | None = None,
    intermediate_size: int | None = None,
    num_attention_heads: int | None = None,
    width_selection: WidthSelection = "importance",
    calibration_data: Any = None,
) -> WidthRequest | None:
    """Checks `create_student`'s width arguments before anything is built.

    Returns:
        [`WidthRequest`] or `None`: `None` when no width is asked for (a depth-only student).

    Raises:
        `ValueError`: as [`resolve_width_sizes`]; for an unknown `width_selection`; and for `"importance"`
            without `calibration_data`, which the scores are measured on.
    """
    if width_selection not in WIDTH_SELECTIONS:
        raise ValueError(
            f"width_selection must be one of {', '.join(map(repr, WIDTH_SELECTIONS))}, got {width_selection!r}."
        )
    sizes = resolve_width_sizes(config, hidden_size, intermediate_size, num_attention_heads)
    if sizes is None:
        return None
    if width_selection == "importance" and calibration_data is None:
        raise ValueError(
            "width_selection='importance' measures which heads, neurons and hidden channels the teacher uses "
            "on calibration data: pass calibration_data (a batch of the training data, e.g. "
            "tokenizer(texts, padding=True, return_tensors='pt'), or an iterable of batches), or "
            "width_selection='first' to keep the first ones."
        )
    data = calibration_data if width_selection == "importance" else None
    return WidthRequest(sizes, width_selection, data)


def apply_width(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    teacher_layers: Sequence[int],
    request: WidthRequest,
) -> PreTrainedModel:
    """Narrows a depth-reduced student of `teacher` ([`narrow_model`]) with the heads, neurons and hidden
    channels [`select_width`] chooses from the teacher's importance scores or first-k.

    Args:
        teacher ([`~transformers.PreTrainedModel`]): the teacher; its scores are measured on it.
        student ([`~transformers.PreTrainedModel`]): the teacher's width, layer `i` from teacher layer
            `teacher_layers[i]`.
        teacher_layers (`Sequence[int]`): the teacher layer of each student layer.
        request ([`WidthRequest`]): from [`check_width_request`].

    Returns:
        [`~transformers.PreTrainedModel`]: the narrowed student; its config records the kept indices (into the
        teacher) and `nlpkd_width_selection`.
    """
    family = width_family(teacher.config)
    hidden, heads, intermediate, _ = teacher_widths(teacher.config, family)
    scores = request.calibration_data
    if request.selection == "importance" and not isinstance(scores, WidthScores):
        scores = width_importance(teacher, scores)
    kept = select_width(
        request.sizes,
        teacher_layers,
        (hidden, heads, intermediate),
        scores,
        shared_heads=bool(family.shared_head_tensors),
    )
    narrowed = narrow_model(student, kept)
    narrowed.config.nlpkd_width_selection = request.selection
    return narrowed


def kept_teacher_heads(
    student_config: PreTrainedConfig | None, layer_map: Mapping[int, int]
) -> list[list[int] | None] | None:
    """For each pair of the attention term, the teacher heads that the student's heads were sliced from.

    Reads `config.nlpkd_kept_heads` of a student from `create_student` (per student layer, the teacher heads
    kept). Student head `j` of layer `s` is then compared with teacher head `kept[s][j]` of the mapped teacher
    layer: the head it was sliced from when that is the layer student layer `s` came from, and otherwise the
    same head position, as TinyBERT pairs head `h` with head `h` across layers.

    Args:
        student_config (`PreTrainedConfig`, *optional*): the student's config.
        layer_map (`Mapping[int, int]`): student layer -> teacher layer of the attention term.

    Returns:
        `list` or `None`: one entry per pair, in the map's order (`None` for a layer without a record); `None`
        when the student has no record.
    """
    kept = getattr(student_config, "nlpkd_kept_heads", None)
    if not kept:
        return None
    return [list(kept[s]) if 0 <= s < len(kept) else None for s in layer_map]


def width_summary(config: PreTrainedConfig) -> dict[str, Any] | None:
    """A narrow student's widths and how its units were chosen, as reports state them; `None` for a student of
    its teacher's width (no `nlpkd_width_selection` in its config).

    Args:
        config (`PreTrainedConfig`): the student's config.

    Returns:
        `dict` or `None`: `hidden_size`, `num_attention_heads`, `intermediate_size` (under these names for every
        family) and `selection` (`"importance"` or `"first"`).
    """
    selection = getattr(config, "nlpkd_width_selection", None)
    if selection is None:
        return None
    hidden, heads, intermediate, _ = teacher_widths(config, width_family(config))
    return {
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "selection": selection,
    }
