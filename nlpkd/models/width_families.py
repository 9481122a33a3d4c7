"""The width table: where each text-encoder family keeps what a narrower student slices (attention heads,
feed-forward neurons, hidden channels), and which of its settings a narrow student must keep consistent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

__all__ = [
    "WIDTH_FAMILIES",
    "WIDTH_SELECTIONS",
    "WidthFamily",
    "WidthSelection",
    "teacher_widths",
    "width_family",
]

WidthSelection = Literal["importance", "first"]


# The choices of `create_student(width_selection=...)`, the default first.
WIDTH_SELECTIONS: tuple[WidthSelection, ...] = ("importance", "first")


@dataclass(frozen=True)
class WidthFamily:
    """Where one architecture keeps what a narrower student slices. Paths are dotted attribute paths.

    Args:
        layers_path (`str`): the `torch.nn.ModuleList` of layers, relative to `model.base_model`.
        hidden_attr (`str`): the config attribute of the hidden size (`"hidden_size"`, DistilBERT `"dim"`).
        heads_attr (`str`): the config attribute of the number of attention heads.
        intermediate_attr (`str`): the config attribute of the feed-forward size.
        head_rows (`tuple[str, ...]`): the `nn.Linear` modules of a layer whose output features are the heads'
            (query, key, value; DeBERTa's position projections), `head_size` rows per head.
        head_columns (`str`): the `nn.Linear` of a layer that reads the heads' context vectors (the attention
            output); its input columns are the heads', and its input is what the head scores measure.
        neuron_rows (`str`): the feed-forward input `nn.Linear` of a layer (one row per neuron).
        neuron_columns (`str`): the feed-forward output `nn.Linear` (one input column per neuron); its input,
            the activations, is what the neuron scores measure.
        layer_norms (`tuple[str, ...]`): the LayerNorms of a layer, whose outputs the hidden-channel scores
            measure.
        model_outputs (`tuple[str, ...]`): modules outside the layers, relative to `model.base_model`, whose
            token-shaped output is in hidden space (the embeddings' LayerNorm, ELECTRA's `embeddings_project`,
            DeBERTa's convolution); those absent or of another width are skipped.
        shared_head_tensors (`tuple[str, ...]`, *optional*): tensors relative to `model.base_model` whose last
            axis is one entry per head and that every layer shares (MPNet's `relative_attention_bias`): the
            kept heads must then be the same in every layer.
        tied_width_attrs (`tuple[str, ...]`, *optional*): config attributes that follow the hidden size when
            the teacher's equals it (`embedding_size`, DeBERTa's `pooler_hidden_size`).
    """

    layers_path: str
    hidden_attr: str
    heads_attr: str
    intermediate_attr: str
    head_rows: tuple[str, ...]
    head_columns: str
    neuron_rows: str
    neuron_columns: str
    layer_norms: tuple[str, ...]
    model_outputs: tuple[str, ...]
    shared_head_tensors: tuple[str, ...] = ()
    tied_width_attrs: tuple[str, ...] = ()


def _bert_like(**changes: Any) -> WidthFamily:
    fields = dict(
        layers_path="encoder.layer",
        hidden_attr="hidden_size",
        heads_attr="num_attention_heads",
        intermediate_attr="intermediate_size",
        head_rows=("attention.self.query", "attention.self.key", "attention.self.value"),
        head_columns="attention.output.dense",
        neuron_rows="intermediate.dense",
        neuron_columns="output.dense",
        layer_norms=("attention.output.LayerNorm", "output.LayerNorm"),
        model_outputs=("embeddings.LayerNorm",),
    )
    return WidthFamily(**{**fields, **changes})


# Checked against the modeling files of transformers 5.24; keyed by `config.model_type`. Every tensor whose
# axis is not named here (heads, neurons, shared heads) is narrowed along the axes that follow the hidden size.
WIDTH_FAMILIES: dict[str, WidthFamily] = {
    "bert": _bert_like(),
    "roberta": _bert_like(),
    "xlm-roberta": _bert_like(),
    # With embedding_size != hidden_size the embeddings keep their width and `embeddings_project` (embedding
    # -> hidden) loses rows; with them equal, the embeddings narrow with the hidden size.
    "electra": _bert_like(
        model_outputs=("embeddings.LayerNorm", "embeddings_project"),
        tied_width_attrs=("embedding_size",),
    ),
    "distilbert": WidthFamily(
        layers_path="transformer.layer",
        hidden_attr="dim",
        heads_attr="n_heads",
        intermediate_attr="hidden_dim",
        head_rows=("attention.q_lin", "attention.k_lin", "attention.v_lin"),
        head_columns="attention.out_lin",
        neuron_rows="ffn.lin1",
        neuron_columns="ffn.lin2",
        layer_norms=("sa_layer_norm", "output_layer_norm"),
        model_outputs=("embeddings.LayerNorm",),
    ),
    # One Embedding(num_buckets, heads) of relative-position biases serves every layer, and head j of every
    # layer adds its column j: a student keeps the same heads in every layer, chosen jointly.
    "mpnet": _bert_like(
        head_rows=("attention.attn.q", "attention.attn.k", "attention.attn.v"),
        head_columns="attention.attn.o",
        layer_norms=("attention.LayerNorm", "output.LayerNorm"),
        shared_head_tensors=("encoder.relative_attention_bias.weight",),
    ),
    # The relative-position table (rel_embeddings) is in hidden space and each layer projects it with its own
    # per-head projections (query/key, or pos_query/pos_key), so heads can differ per layer here.
    "deberta-v2": _bert_like(
        head_rows=(
            "attention.self.query_proj",
            "attention.self.key_proj",
            "attention.self.value_proj",
            "attention.self.pos_key_proj",
            "attention.self.pos_query_proj",
        ),
        model_outputs=("embeddings.LayerNorm", "encoder.conv.LayerNorm"),
        tied_width_attrs=("embedding_size", "pooler_hidden_size"),
    ),
}


def width_family(config: PreTrainedConfig) -> WidthFamily:
    """The [`WidthFamily`] of a config's `model_type`.

    Raises:
        `ValueError`: for a family without an entry (decoders, ResNet, ...), naming the supported ones.
    """
    model_type = getattr(config, "model_type", None)
    family = WIDTH_FAMILIES.get(model_type)
    if family is None:
        raise ValueError(
            f"A narrower student (hidden_size, intermediate_size, num_attention_heads) cannot be built from "
            f"model_type {model_type!r}; width reduction supports: {', '.join(sorted(WIDTH_FAMILIES))}. Reduce "
            "only the number of layers for this teacher (leave the width arguments unset)."
        )
    return family


def module_at(root: nn.Module, path: str) -> nn.Module | None:
    try:
        return root.get_submodule(path)
    except AttributeError:
        return None


def family_layers(model: PreTrainedModel, family: WidthFamily) -> nn.ModuleList:
    layers = module_at(model.base_model, family.layers_path)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(
            f"{type(model).__name__} has no layer list at `base_model.{family.layers_path}`; fix the entry of "
            f"model_type {model.config.model_type!r} in `nlpkd.models.WIDTH_FAMILIES`."
        )
    return layers


def layer_module(layer: nn.Module, path: str, model: PreTrainedModel) -> nn.Module:
    module = module_at(layer, path)
    if module is None:
        raise ValueError(
            f"{type(model).__name__} has no `{path}` in its layers; fix the entry of model_type "
            f"{model.config.model_type!r} in `nlpkd.models.WIDTH_FAMILIES`."
        )
    return module


def teacher_widths(config: PreTrainedConfig, family: WidthFamily) -> tuple[int, int, int, int]:
    hidden = getattr(config, family.hidden_attr)
    heads = getattr(config, family.heads_attr)
    intermediate = getattr(config, family.intermediate_attr)
    if getattr(config, "attention_head_size", None) is not None:
        raise ValueError(
            "The teacher's config sets `attention_head_size`, so its attention width is not its hidden size; "
            "nlpkd narrows only teachers whose head size is hidden_size / num_attention_heads."
        )
    if hidden % heads:
        raise ValueError(
            f"The teacher's hidden size {hidden} is not a multiple of its {heads} heads."
        )
    return hidden, heads, intermediate, hidden // heads
