"""The family table: where each supported architecture keeps its layers, and what in them the distillation
terms use (attention projections, attention dropout).

The architectures nlpkd knows are listed explicitly in [`SUPPORTED_FAMILIES`]: text encoders (BERT and its
relatives), decoders (GPT-2, Llama, Qwen2, Mistral) and ResNet, whose blocks are grouped in stages. Anything
else raises instead of guessing where the layers live.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedConfig, PreTrainedModel

__all__ = [
    "EncoderFamily",
    "SUPPORTED_FAMILIES",
    "attention_probs_dropouts",
    "attention_projections",
    "get_encoder_layers",
    "num_encoder_layers",
]


@dataclass(frozen=True)
class EncoderFamily:
    """Where one architecture keeps its layers, and what in them the distillation losses use.

    All paths are dotted attribute paths. Fields that a family lacks stay `None`, and the helper
    that needs them raises a `ValueError` for that family.

    Args:
        layers_path (`str`):
            Path of the `torch.nn.ModuleList` of layers, relative to `model.base_model` (so the same
            entry serves `BertModel` and `BertForSequenceClassification`), e.g. `"encoder.layer"`.
            For a staged family (`blocks_path` set) this is the list of stages.
        num_layers_attr (`str`):
            Name of the config attribute that holds the number of layers, e.g.
            `"num_hidden_layers"`; for a staged family, the list of blocks per stage (`"depths"`).
        query_path (`str`, *optional*):
            Path of the self-attention query projection (`torch.nn.Linear`), relative to one layer.
        key_path (`str`, *optional*):
            Path of the self-attention key projection, relative to one layer.
        value_path (`str`, *optional*):
            Path of the self-attention value projection, relative to one layer.
        attention_dropout_path (`str`, *optional*):
            Path of the `torch.nn.Dropout` applied to the attention probabilities, relative to one
            layer. Its `p` is what the attention implementation reads in train mode.
        blocks_path (`str`, *optional*):
            For a staged family (ResNet), the path of the sequence of blocks inside one stage,
            e.g. `"layers"`. A student keeps every stage and fewer blocks per stage.
        per_layer_attrs (`tuple[str, ...]`, *optional*, defaults to `()`):
            Config attributes that hold one entry per layer (e.g. `"layer_types"`); a student's
            config keeps the entries of its layers.
        leading_layers_attrs (`tuple[str, ...]`, *optional*, defaults to `()`):
            Config attributes that count leading layers (Qwen2's `max_window_layers`: the first
            that many layers use full attention); a student's config counts its layers that came
            from below the teacher's value.
        layer_index_flags (`tuple[str, ...]`, *optional*, defaults to `()`):
            Boolean config attributes that, when true, make a layer compute with its own index
            (GPT-2's `scale_attn_by_inverse_layer_idx`); a copied layer that changes position then
            no longer computes what it did in the teacher, which is logged as a warning.
    """

    layers_path: str
    num_layers_attr: str
    query_path: str | None = None
    key_path: str | None = None
    value_path: str | None = None
    attention_dropout_path: str | None = None
    blocks_path: str | None = None
    per_layer_attrs: tuple[str, ...] = ()
    leading_layers_attrs: tuple[str, ...] = ()
    layer_index_flags: tuple[str, ...] = ()


def _bert_like(layers_path: str = "encoder.layer") -> EncoderFamily:
    return EncoderFamily(
        layers_path=layers_path,
        num_layers_attr="num_hidden_layers",
        query_path="attention.self.query",
        key_path="attention.self.key",
        value_path="attention.self.value",
        attention_dropout_path="attention.self.dropout",
    )


def _llama_like() -> EncoderFamily:
    # Decoders of this layout build every layer from the shared config; `layer_idx` only indexes
    # the KV cache, which a freshly built student numbers afresh.
    return EncoderFamily(
        layers_path="layers", num_layers_attr="num_hidden_layers", per_layer_attrs=("layer_types",)
    )


# Checked against the modeling and configuration files of transformers 5.24. Keyed by
# `config.model_type`. Users may register another family by adding an entry, provided its layers
# are independent modules in one ModuleList and nothing outside it depends on the count beyond
# what the entry declares.
SUPPORTED_FAMILIES: dict[str, EncoderFamily] = {
    "bert": _bert_like(),
    "deberta-v2": EncoderFamily(
        layers_path="encoder.layer",
        num_layers_attr="num_hidden_layers",
        query_path="attention.self.query_proj",
        key_path="attention.self.key_proj",
        value_path="attention.self.value_proj",
        attention_dropout_path="attention.self.dropout",
    ),
    "distilbert": EncoderFamily(
        layers_path="transformer.layer",
        num_layers_attr="n_layers",
        query_path="attention.q_lin",
        key_path="attention.k_lin",
        value_path="attention.v_lin",
        attention_dropout_path="attention.dropout",
    ),
    "electra": _bert_like(),
    "gpt2": EncoderFamily(
        layers_path="h",
        num_layers_attr="n_layer",
        layer_index_flags=("scale_attn_by_inverse_layer_idx",),
    ),
    "llama": _llama_like(),
    "mistral": _llama_like(),
    "mpnet": EncoderFamily(
        layers_path="encoder.layer",
        num_layers_attr="num_hidden_layers",
        query_path="attention.attn.q",
        key_path="attention.attn.k",
        value_path="attention.attn.v",
        # Not `attention.dropout`: that one acts on the attention output (hidden dropout).
        attention_dropout_path="attention.attn.dropout",
    ),
    "qwen2": EncoderFamily(
        layers_path="layers",
        num_layers_attr="num_hidden_layers",
        per_layer_attrs=("layer_types",),
        leading_layers_attrs=("max_window_layers",),
    ),
    "resnet": EncoderFamily(
        layers_path="encoder.stages", num_layers_attr="depths", blocks_path="layers"
    ),
    "roberta": _bert_like(),
    "xlm-roberta": _bert_like(),
}
"""The architectures nlpkd builds students of, keyed by `config.model_type`: where each keeps its layers."""


def family_of(config: PreTrainedConfig) -> EncoderFamily:
    model_type = getattr(config, "model_type", None)
    family = SUPPORTED_FAMILIES.get(model_type)
    if family is None:
        raise ValueError(
            f"model_type {model_type!r} is not supported; supported families: "
            f"{', '.join(sorted(SUPPORTED_FAMILIES))}. To add a family, register an "
            "`EncoderFamily` in `nlpkd.models.SUPPORTED_FAMILIES`. Or build the student yourself "
            "(any smaller model with the teacher's labels or vocabulary) and pass it to "
            "DistillationTrainer."
        )
    return family


def as_int(value: Any, name: str) -> int:
    # bool is an int subclass, but `layers=[True]` is surely a mistake.
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be an integer, got the bool {value!r}.")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"`{name}` must be an integer, got {value!r} of type {type(value).__name__}."
        ) from None


def is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def layer_list(model: PreTrainedModel, family: EncoderFamily) -> torch.nn.ModuleList:
    module: Any = model.base_model
    for attr in family.layers_path.split("."):
        module = getattr(module, attr, None)
        if module is None:
            break
    if not isinstance(module, torch.nn.ModuleList):
        raise ValueError(
            f"{type(model).__name__} (model_type {model.config.model_type!r}) has no "
            f"`torch.nn.ModuleList` at `base_model.{family.layers_path}`, where its family keeps "
            "its layers. Pass a model built by transformers for that family, or fix its entry in "
            "`nlpkd.models.SUPPORTED_FAMILIES`."
        )
    return module


def stage_block_lists(model: PreTrainedModel, family: EncoderFamily) -> list[torch.nn.Module]:
    blocks = []
    for j, stage in enumerate(layer_list(model, family)):
        try:
            stage_blocks = stage.get_submodule(family.blocks_path)
        except AttributeError:
            stage_blocks = None
        if not isinstance(stage_blocks, torch.nn.Sequential | torch.nn.ModuleList):
            raise ValueError(
                f"Stage {j} of {type(model).__name__} has no sequence of blocks at "
                f"`{family.blocks_path}`; fix the entry of model_type "
                f"{model.config.model_type!r} in `nlpkd.models.SUPPORTED_FAMILIES`."
            )
        blocks.append(stage_blocks)
    return blocks


def get_encoder_layers(model: PreTrainedModel) -> torch.nn.ModuleList:
    """Returns the list of layers of a model of a supported family.

    Args:
        model ([`~transformers.PreTrainedModel`]):
            A model of one of the [`SUPPORTED_FAMILIES`], bare (e.g. `BertModel`) or with a head
            (e.g. `BertForSequenceClassification`, `GPT2LMHeadModel`).

    Returns:
        `torch.nn.ModuleList`: The encoder (or decoder) layers, in order. This is the model's own
        module, not a copy.

    Raises:
        `ValueError`: If the model's `model_type` is not supported, is a staged family (ResNet,
            whose blocks are grouped in stages rather than one list), or the model does not have the
            layer list where its family keeps it.
    """
    family = family_of(model.config)
    if family.blocks_path is not None:
        raise ValueError(
            f"model_type {model.config.model_type!r} groups its blocks in stages "
            f"(`{family.layers_path}[j].{family.blocks_path}`, counts in "
            f"`config.{family.num_layers_attr}`) rather than one list of layers; index the stages "
            "directly."
        )
    return layer_list(model, family)


def num_encoder_layers(model_or_config: PreTrainedModel | PreTrainedConfig) -> int:
    """Returns the number of layers of a model or configuration of a supported family.

    Args:
        model_or_config ([`~transformers.PreTrainedModel`] or [`~transformers.PreTrainedConfig`]):
            The model, or its configuration. The count is read from the config attribute named in
            [`SUPPORTED_FAMILIES`] (e.g. `n_layers` for DistilBERT, `n_layer` for GPT-2). For a
            staged family (ResNet) it is the total number of blocks, `sum(config.depths)`.

    Returns:
        `int`: The number of layers.

    Raises:
        `ValueError`: If the `model_type` is not supported.
        `TypeError`: If the argument is neither a model nor a configuration.
    """
    if isinstance(model_or_config, PreTrainedModel):
        config = model_or_config.config
    elif isinstance(model_or_config, PreTrainedConfig):
        config = model_or_config
    else:
        raise TypeError(
            "`model_or_config` must be a transformers PreTrainedModel or PreTrainedConfig, got "
            f"{type(model_or_config).__name__}."
        )
    family = family_of(config)
    count = getattr(config, family.num_layers_attr)
    if family.blocks_path is not None:
        return sum(int(depth) for depth in count)
    return int(count)


def check_family(config: PreTrainedConfig) -> None:
    """Raise the `ValueError` of an unsupported `model_type`: no student can be built from it.

    Args:
        config (`PreTrainedConfig`): the teacher's configuration.
    """
    family_of(config)


def flat_family(model: PreTrainedModel, role: str, use: str, remedy: str) -> EncoderFamily:
    # remedy: the weights to set to 0, e.g. "alpha_attn=0"; the message names only those.
    family = family_of(model.config)
    if family.blocks_path is not None:
        raise ValueError(
            f"The {role} (model_type {model.config.model_type!r}) groups its blocks in stages, "
            f"which {use} does not support; set {remedy}."
        )
    return family


def is_staged(model: PreTrainedModel) -> bool:
    return family_of(model.config).blocks_path is not None


def count_stages(model: PreTrainedModel) -> int:
    return len(getattr(model.config, family_of(model.config).num_layers_attr))


def _layer_part(layer: torch.nn.Module, path: str, model: PreTrainedModel) -> torch.nn.Module:
    try:
        return layer.get_submodule(path)
    except AttributeError:
        raise ValueError(
            f"{type(model).__name__} has no module at `{path}` in its layers, where its family "
            f"keeps it; fix the entry of model_type {model.config.model_type!r} in "
            "`nlpkd.models.SUPPORTED_FAMILIES`."
        ) from None


def attention_projections(
    model: PreTrainedModel, layer_index: int
) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """Returns the query, key and value projections of one layer's self-attention.

    Each is the `torch.nn.Linear` that maps the layer's input of shape `(batch, seq, hidden)` to
    the queries, keys or values of all heads, `(batch, seq, num_heads * head_dim)`; a forward hook
    on it sees them before they are split into heads. The paths come from [`SUPPORTED_FAMILIES`].

    Args:
        model ([`~transformers.PreTrainedModel`]):
            A model of a family with separate query/key/value projections (the text encoders).
        layer_index (`int`):
            0-based layer index, from 0 to the number of layers minus one.

    Returns:
        `tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]`: The model's own query, key and
        value modules.

    Raises:
        `ValueError`: If the family has no separate projections in the table (GPT-2 fuses them in
            one `c_attn`; decoders and ResNet are not covered), or `layer_index` is out of range.
    """
    family = flat_family(
        model,
        "model",
        "the query/key/value relations",
        "alpha_relation=0 (the hidden-state term compares stage outputs and works on it)",
    )
    paths = (family.query_path, family.key_path, family.value_path)
    if any(path is None for path in paths):
        raise ValueError(
            f"model_type {model.config.model_type!r} has no query/key/value projections in "
            "`nlpkd.models.SUPPORTED_FAMILIES`; the query/key/value relations are available for: "
            f"{', '.join(sorted(k for k, f in SUPPORTED_FAMILIES.items() if f.query_path))}."
        )
    layers = layer_list(model, family)
    index = as_int(layer_index, "layer_index")
    if not 0 <= index < len(layers):
        raise ValueError(
            f"`layer_index` {index} is out of range: the model has {len(layers)} layers "
            f"(valid range 0..{len(layers) - 1})."
        )
    query, key, value = (_layer_part(layers[index], path, model) for path in paths)
    return query, key, value


def attention_probs_dropouts(model: PreTrainedModel) -> list[torch.nn.Module]:
    """Returns the dropout modules applied to the attention probabilities, one per layer.

    In train mode every attention implementation of these families reads the `p` of this module
    (eager attention drops out the probabilities it also returns as `attentions`). Setting their
    `p` to 0 makes train-mode attention maps the undropped distributions, as in eval mode.

    Args:
        model ([`~transformers.PreTrainedModel`]):
            A model of a family with an attention-dropout path in [`SUPPORTED_FAMILIES`] (the text
            encoders).

    Returns:
        `list[torch.nn.Module]`: The model's own `torch.nn.Dropout` modules, in layer order.

    Raises:
        `ValueError`: If the family has no attention-dropout module in the table (decoders are
            not covered: Llama-style ones read a float from the config instead; ResNet has no
            attention).
    """
    family = flat_family(
        model,
        "model",
        "the attention-map term",
        "alpha_attn=0 (the hidden-state term compares stage outputs and works on it)",
    )
    if family.attention_dropout_path is None:
        raise ValueError(
            f"model_type {model.config.model_type!r} has no attention-dropout module in "
            "`nlpkd.models.SUPPORTED_FAMILIES`; it is available for: "
            f"{', '.join(sorted(k for k, f in SUPPORTED_FAMILIES.items() if f.attention_dropout_path))}."
        )
    return [
        _layer_part(layer, family.attention_dropout_path, model)
        for layer in layer_list(model, family)
    ]
