"""Layer-reduced students built from a teacher, DistilBERT-style.

A student is a model of the teacher's own class and configuration with fewer layers. It starts
from the teacher's weights: the embeddings, a chosen subset of the layers and everything that is
not per-layer (pooler, classification or language-model head, relative-position tables, final
norms). Which layers a student keeps is recorded in its config, so the choice travels with
`save_pretrained`.

The architectures this works for are listed explicitly in [`SUPPORTED_FAMILIES`]: text encoders
(BERT and its relatives), decoders (GPT-2, Llama, Qwen2, Mistral) and ResNet, whose blocks are
grouped in stages. Anything else raises instead of guessing where the layers live.
"""

import copy
import inspect
import logging
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import PreTrainedConfig, PreTrainedModel

logger = logging.getLogger(__name__)

__all__ = [
    "LAYER_STRATEGIES",
    "SUPPORTED_FAMILIES",
    "EncoderFamily",
    "LayerStrategy",
    "attention_probs_dropouts",
    "attention_projections",
    "check_compatible",
    "check_layer_outputs",
    "check_tokenizers_match",
    "create_student",
    "default_layer_map",
    "default_teacher_layers",
    "get_encoder_layers",
    "num_encoder_layers",
    "resolve_layer_map",
    "select_forward_inputs",
]

LayerStrategy = Literal["uniform", "alternate", "first", "last"]
# The strategies `default_teacher_layers` and `create_student` accept, the default first.
LAYER_STRATEGIES: tuple[LayerStrategy, ...] = ("uniform", "alternate", "first", "last")


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


def _family(config: PreTrainedConfig) -> EncoderFamily:
    model_type = getattr(config, "model_type", None)
    family = SUPPORTED_FAMILIES.get(model_type)
    if family is None:
        raise ValueError(
            f"model_type {model_type!r} is not supported; supported families: "
            f"{', '.join(sorted(SUPPORTED_FAMILIES))}. To add a family, register an "
            "`EncoderFamily` in `nlpkd.student.SUPPORTED_FAMILIES`. Or build the student yourself "
            "(any smaller model with the teacher's labels or vocabulary) and pass it to "
            "DistillationTrainer."
        )
    return family


def _as_int(value: Any, name: str) -> int:
    # bool is an int subclass, but `layers=[True]` is surely a mistake.
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be an integer, got the bool {value!r}.")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"`{name}` must be an integer, got {value!r} of type {type(value).__name__}."
        ) from None


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _check_strategy(strategy: Any) -> None:
    if strategy not in LAYER_STRATEGIES:
        raise ValueError(
            f"`strategy` must be one of {', '.join(map(repr, LAYER_STRATEGIES))}, got {strategy!r}."
        )


def _layer_list(model: PreTrainedModel, family: EncoderFamily) -> torch.nn.ModuleList:
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
            "`nlpkd.student.SUPPORTED_FAMILIES`."
        )
    return module


def _stage_blocks(model: PreTrainedModel, family: EncoderFamily) -> list[torch.nn.Module]:
    blocks = []
    for j, stage in enumerate(_layer_list(model, family)):
        try:
            stage_blocks = stage.get_submodule(family.blocks_path)
        except AttributeError:
            stage_blocks = None
        if not isinstance(stage_blocks, torch.nn.Sequential | torch.nn.ModuleList):
            raise ValueError(
                f"Stage {j} of {type(model).__name__} has no sequence of blocks at "
                f"`{family.blocks_path}`; fix the entry of model_type "
                f"{model.config.model_type!r} in `nlpkd.student.SUPPORTED_FAMILIES`."
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
    family = _family(model.config)
    if family.blocks_path is not None:
        raise ValueError(
            f"model_type {model.config.model_type!r} groups its blocks in stages "
            f"(`{family.layers_path}[j].{family.blocks_path}`, counts in "
            f"`config.{family.num_layers_attr}`) rather than one list of layers; index the stages "
            "directly."
        )
    return _layer_list(model, family)


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
    family = _family(config)
    count = getattr(config, family.num_layers_attr)
    if family.blocks_path is not None:
        return sum(int(depth) for depth in count)
    return int(count)


def default_teacher_layers(
    num_teacher_layers: int, num_student_layers: int, strategy: LayerStrategy = "uniform"
) -> list[int]:
    """Chooses which teacher layers initialise a student, by a named strategy.

    For `T` teacher and `S` student layers, student layer `i` takes teacher layer:

    - `"uniform"` (default): `round(i * (T - 1) / (S - 1))` with halves rounded up: evenly spread
      and keeping both the first and the last layer, as DistilBERT did (`12 -> 6` gives
      `[0, 2, 4, 7, 9, 11]`, `6 -> 3` gives `[0, 3, 5]`, `6 -> 2` gives `[0, 5]`). A one-layer
      student keeps the last layer, whose output the classifier was trained on: on the quality
      benchmark (docs/quality.md) it beat layer 0 by 2.2 points of accuracy.
    - `"alternate"`: `floor(i * T / S)`: equal strides from layer 0, every other layer when halving
      (`12 -> 6` gives `[0, 2, 4, 6, 8, 10]`, `12 -> 5` gives `[0, 2, 4, 7, 9]`); the last
      layer is kept only when `S == T`.
    - `"first"`: `i`, the bottom `S` layers (`[0, ..., S - 1]`).
    - `"last"`: `T - S + i`, the top `S` layers (`[T - S, ..., T - 1]`).

    All arithmetic is on integers, so exact multiples never land one layer off through rounding.

    Args:
        num_teacher_layers (`int`):
            Number of layers of the teacher, at least 1.
        num_student_layers (`int`):
            Number of layers of the student, from 1 to `num_teacher_layers`.
        strategy (`str`, *optional*, defaults to `"uniform"`):
            One of [`LAYER_STRATEGIES`]: `"uniform"`, `"alternate"`, `"first"` or `"last"`.

    Returns:
        `list[int]`: `num_student_layers` distinct 0-based teacher layer indices, ascending.

    Raises:
        `ValueError`: If a count is out of range or the strategy is unknown.
    """
    num_teacher_layers = _as_int(num_teacher_layers, "num_teacher_layers")
    num_student_layers = _as_int(num_student_layers, "num_student_layers")
    _check_strategy(strategy)
    if num_teacher_layers < 1:
        raise ValueError(f"`num_teacher_layers` must be at least 1, got {num_teacher_layers}.")
    if not 1 <= num_student_layers <= num_teacher_layers:
        raise ValueError(
            f"`num_student_layers` must be between 1 and the teacher's {num_teacher_layers} layers, "
            f"got {num_student_layers}."
        )
    t, s = num_teacher_layers, num_student_layers
    if strategy == "uniform":
        if s == 1:
            return [t - 1]
        # round-half-up of i (t - 1) / (s - 1): floor((2 i (t - 1) + (s - 1)) / (2 (s - 1))).
        return [(2 * i * (t - 1) + s - 1) // (2 * (s - 1)) for i in range(s)]
    if strategy == "alternate":
        return [i * t // s for i in range(s)]
    if strategy == "first":
        return list(range(s))
    return list(range(t - s, t))


def _check_layers_vs_strategy(layers: Any, strategy: LayerStrategy) -> None:
    if layers is not None and strategy != LAYER_STRATEGIES[0]:
        raise ValueError(
            f"`layers` names the teacher layers itself, so `strategy={strategy!r}` would be "
            "ignored; pass `layers`, or `num_layers` with a `strategy`, not both."
        )


def _validate_indices(chosen: list[int], count: int, what: str, unit: str, name: str) -> None:
    # what: "layer" or "block"; unit: how the teacher's count is named ("encoder layers").
    valid = f"valid range 0..{count - 1}"
    if not chosen:
        raise ValueError(f"`{name}` is empty; name at least one teacher {what} ({valid}).")
    out_of_range = [index for index in chosen if not 0 <= index < count]
    if out_of_range:
        raise ValueError(
            f"`{name}` has indices {out_of_range} outside the teacher's {count} {unit} ({valid})."
        )
    duplicates = sorted({index for index in chosen if chosen.count(index) > 1})
    if duplicates:
        raise ValueError(
            f"`{name}` repeats teacher {what}s {duplicates}; each teacher {what} can initialise "
            f"at most one student {what} ({valid})."
        )


def _warn_unsorted(chosen: list[int], name: str) -> None:
    if chosen != sorted(chosen):
        logger.warning(
            "Student layers %s%s are not in ascending teacher order; they are kept in the given "
            "order (student layer i = teacher layer layers[i]), which changes the order in which "
            "the teacher's layers process the input.",
            chosen,
            name,
        )


def _resolve_teacher_layers(
    num_teacher_layers: int,
    num_layers: int | None,
    layers: Sequence[int] | None,
    strategy: LayerStrategy,
) -> list[int]:
    if layers is None:
        if num_layers is None:
            num_layers = max(1, num_teacher_layers // 2)
        num_layers = _as_int(num_layers, "num_layers")
        if not 1 <= num_layers < num_teacher_layers:
            raise ValueError(
                f"`num_layers` must be at least 1 and fewer than the teacher's "
                f"{num_teacher_layers} encoder layers, got {num_layers}."
            )
        return default_teacher_layers(num_teacher_layers, num_layers, strategy)

    if not _is_sequence(layers):
        raise TypeError(f"`layers` must be a sequence of integers, got {layers!r}.")
    chosen = [_as_int(index, "layers") for index in layers]
    _validate_indices(chosen, num_teacher_layers, "layer", "encoder layers", "layers")
    if len(chosen) >= num_teacher_layers:
        raise ValueError(
            f"`layers` names {len(chosen)} layers but a student needs fewer than the teacher's "
            f"{num_teacher_layers} encoder layers."
        )
    if num_layers is not None and _as_int(num_layers, "num_layers") != len(chosen):
        raise ValueError(
            f"`num_layers={num_layers}` disagrees with `layers={chosen}` ({len(chosen)} layers); "
            "pass only one of them, or make them agree."
        )
    _warn_unsorted(chosen, "")
    return chosen


def _stage_choice(depth: int, count: int, strategy: LayerStrategy) -> list[int]:
    chosen = default_teacher_layers(depth, count, strategy)
    # The first block of a stage changes the width or resolution (and holds the shortcut
    # projection), so no other block can stand in for it; only "last" ever skips it.
    return chosen if chosen[0] == 0 else [0, *chosen[1:]]


def _resolve_stage_blocks(
    depths: list[int],
    num_layers: int | Sequence[int] | None,
    layers: Sequence[Sequence[int]] | None,
    strategy: LayerStrategy,
) -> list[list[int]]:
    num_stages = len(depths)
    counts: list[int] | None = None
    if num_layers is not None:
        if _is_sequence(num_layers):
            counts = [_as_int(k, "num_layers") for k in num_layers]
            if len(counts) != num_stages:
                raise ValueError(
                    f"`num_layers={counts}` gives {len(counts)} block counts but the teacher has "
                    f"{num_stages} stages (depths {depths}); give one count per stage or one int."
                )
            bad = [
                (j, k)
                for j, (k, d) in enumerate(zip(counts, depths, strict=True))
                if not 1 <= k <= d
            ]
            if bad:
                raise ValueError(
                    f"`num_layers={counts}`: each stage keeps from 1 block to all its blocks "
                    f"(depths {depths}); stage, count out of range: {bad}."
                )
        else:
            k = _as_int(num_layers, "num_layers")
            if k < 1:
                raise ValueError(f"`num_layers` must be at least 1 block per stage, got {k}.")
            counts = [min(k, d) for d in depths]

    if layers is None:
        if counts is None:
            counts = [max(1, d // 2) for d in depths]
        chosen = [_stage_choice(d, k, strategy) for d, k in zip(depths, counts, strict=True)]
    else:
        if not _is_sequence(layers) or not all(_is_sequence(stage) for stage in layers):
            raise TypeError(
                f"`layers` must be one sequence of block indices per stage, got {layers!r}."
            )
        if len(layers) != num_stages:
            raise ValueError(
                f"`layers` gives {len(layers)} stages but the teacher has {num_stages} (depths "
                f"{depths}); name the kept blocks of every stage."
            )
        chosen = []
        for j, (stage, depth) in enumerate(zip(layers, depths, strict=True)):
            blocks = [_as_int(index, "layers") for index in stage]
            _validate_indices(blocks, depth, "block", "blocks", f"layers[{j}]")
            if blocks[0] != 0:
                raise ValueError(
                    f"`layers[{j}]={blocks}` must start with block 0: the first block of a stage "
                    "changes its width or resolution, and no other block can replace it."
                )
            _warn_unsorted(blocks, f" of stage {j}")
            chosen.append(blocks)
        if counts is not None and counts != [len(blocks) for blocks in chosen]:
            raise ValueError(
                f"`num_layers={num_layers}` disagrees with `layers={chosen}`; pass only one of "
                "them, or make them agree."
            )
    if [len(blocks) for blocks in chosen] == list(depths):
        raise ValueError(
            f"The student would keep every block of the teacher (depths {depths}); ask for fewer "
            "blocks in at least one stage."
        )
    return chosen


def _prefix_of(model: torch.nn.Module, target: torch.nn.Module) -> str:
    name = next(name for name, module in model.named_modules() if module is target)
    return f"{name}." if name else ""


def _remap_state_dict(
    state_dict: Mapping[str, torch.Tensor], keep: Mapping[str, Mapping[int, int]]
) -> dict[str, torch.Tensor]:
    # keep: prefix of a layer list -> {teacher index: student index}; tensors of dropped layers
    # are left out, everything outside the lists is copied by name.
    remapped = {}
    for key, tensor in state_dict.items():
        prefix = next((p for p in keep if key.startswith(p)), None)
        if prefix is not None:
            teacher_index, rest = key[len(prefix) :].split(".", 1)
            i = keep[prefix].get(int(teacher_index))
            if i is None:
                continue
            key = f"{prefix}{i}.{rest}"
        remapped[key] = tensor
    return remapped


def _student_config_of_stack(
    config: PreTrainedConfig, family: EncoderFamily, chosen: list[int], num_teacher_layers: int
) -> None:
    setattr(config, family.num_layers_attr, len(chosen))
    for attr in family.per_layer_attrs:
        values = getattr(config, attr, None)
        if values is None:
            continue
        if len(values) != num_teacher_layers:
            raise ValueError(
                f"The teacher's `config.{attr}` has {len(values)} entries but the teacher has "
                f"{num_teacher_layers} layers; fix the config before creating a student."
            )
        setattr(config, attr, [values[index] for index in chosen])
    for attr in family.leading_layers_attrs:
        value = getattr(config, attr, None)
        if value is not None:
            setattr(config, attr, sum(1 for index in chosen if index < value))
    moved = [(i, index) for i, index in enumerate(chosen) if i != index]
    flags = [flag for flag in family.layer_index_flags if getattr(config, flag, False)]
    if flags and moved:
        logger.warning(
            "The teacher sets %s, so each layer computes with its own index; the student layers "
            "that come from other positions (student, teacher: %s) will not compute what they "
            "did in the teacher. `strategy='first'` keeps the positions.",
            ", ".join(flags),
            moved,
        )


def create_student(
    teacher: PreTrainedModel,
    num_layers: int | Sequence[int] | None = None,
    layers: Sequence[int] | Sequence[Sequence[int]] | None = None,
    strategy: LayerStrategy = "uniform",
) -> PreTrainedModel:
    """Builds a student with fewer encoder layers (decoder layers, ResNet blocks) from a teacher.

    The student is a new model of the teacher's own class (a `*ForSequenceClassification` model, a
    bare base model such as `BertModel`, a `*ForCausalLM` decoder, a ResNet, or any other head of a
    supported family) with a deep copy of the teacher's config in which only the layer count (and
    any per-layer list such as `layer_types`) changes; label maps (`id2label`, `label2id`,
    `num_labels`, `problem_type`) and the attention implementation are kept. Its weights are copied
    from the teacher: student layer `i` is teacher layer `layers[i]`, and every tensor that is not
    per-layer (embeddings, pooler, heads, relative-position embeddings, final norms) is copied by
    name. The copies do not share memory with the teacher.

    For text encoders and decoders the chosen teacher layers are recorded as
    `config.nlpkd_teacher_layers`, and the teacher's name or path as `config.nlpkd_teacher`; both
    survive `save_pretrained`/`from_pretrained`.

    A ResNet student keeps every stage, since each changes the resolution or width, with fewer
    blocks per stage. There `num_layers` is the number of blocks kept per stage: an `int` keeps at
    most that many in every stage (a stage with fewer keeps all of them), a sequence gives one
    count per stage; it defaults to half of each stage's blocks, rounded down, at least 1. Each
    stage keeps its first block, which changes the resolution or width and holds the shortcut
    projection; the strategy chooses the blocks of a stage as for layers, with block 0 replacing
    its first pick when that is not block 0 (only `"last"` does that). `layers` is then one list
    of block indices per stage, each starting with 0. The chosen blocks are recorded as
    `config.nlpkd_teacher_blocks` (a list per stage) and `config.depths` is updated.

    The student is placed on the teacher's device, in the teacher's dtype and train/eval mode, with
    all parameters trainable even when the teacher's are frozen. Call this before the teacher is
    wrapped or sharded (DDP, DeepSpeed ZeRO-3, FSDP), since it reads the teacher's full state dict.

    Args:
        teacher ([`~transformers.PreTrainedModel`]):
            The model to compress; its `model_type` must be one of [`SUPPORTED_FAMILIES`].
        num_layers (`int` or `Sequence[int]`, *optional*):
            Number of student layers, from 1 to one fewer than the teacher's. Layers are then
            chosen by [`default_teacher_layers`] with `strategy`. Defaults to half the teacher's
            layers, rounded down, and at least 1. For ResNet, blocks per stage (see above).
        layers (`Sequence[int]` or `Sequence[Sequence[int]]`, *optional*):
            The 0-based teacher layers that initialise the student, one per student layer, all
            distinct and in range. They are used in the given order; ascending order is
            recommended (others log a warning). When `num_layers` is also given it must equal
            `len(layers)`. Takes the place of `strategy`. For ResNet, one sequence per stage.
        strategy (`str`, *optional*, defaults to `"uniform"`):
            How [`default_teacher_layers`] spreads `num_layers` over the teacher: `"uniform"`
            (first and last layer kept, evenly spaced), `"alternate"` (`floor(i * T / S)`),
            `"first"` or `"last"`. Passing a strategy other than the default together with
            `layers` is an error.

    Returns:
        [`~transformers.PreTrainedModel`]: The student.

    Raises:
        `ValueError`: If the family is not supported, the strategy is unknown or given with
            `layers`, or the layer choice is empty, repeats a layer, is out of range, keeps as many
            layers as the teacher, or disagrees with `num_layers`.

    Example:

    ```python
    >>> from transformers import AutoModelForSequenceClassification
    >>> from nlpkd.student import create_student
    >>> teacher = AutoModelForSequenceClassification.from_pretrained("path/to/fine-tuned-bert")
    >>> student = create_student(teacher)  # 12 -> 6 layers, first and last kept
    >>> student.config.nlpkd_teacher_layers
    [0, 2, 4, 7, 9, 11]
    >>> create_student(teacher, num_layers=6, strategy="alternate").config.nlpkd_teacher_layers
    [0, 2, 4, 6, 8, 10]
    ```
    """
    if not isinstance(teacher, PreTrainedModel):
        raise TypeError(
            f"`teacher` must be a transformers PreTrainedModel, got {type(teacher).__name__}."
        )
    family = _family(teacher.config)
    _check_strategy(strategy)
    _check_layers_vs_strategy(layers, strategy)
    if getattr(teacher.config, "is_heterogeneous", False):
        raise ValueError(
            "The teacher's config sets `per_layer_config` (layers with different settings); "
            "nlpkd cannot yet carry per-layer overrides over to a student. Use a teacher with a "
            "homogeneous config."
        )
    config = copy.deepcopy(teacher.config)
    config.nlpkd_teacher = teacher.config.name_or_path

    if family.blocks_path is None:
        teacher_layers = _layer_list(teacher, family)
        num_teacher_layers = num_encoder_layers(teacher)
        if len(teacher_layers) != num_teacher_layers:
            raise ValueError(
                f"The teacher's config says {num_teacher_layers} layers "
                f"(`{family.num_layers_attr}`) but the model has {len(teacher_layers)}; fix the "
                "config before creating a student."
            )
        chosen = _resolve_teacher_layers(num_teacher_layers, num_layers, layers, strategy)
        _student_config_of_stack(config, family, chosen, num_teacher_layers)
        # Plain JSON-friendly values so they round-trip through config.json.
        config.nlpkd_teacher_layers = list(chosen)
        keep = {_prefix_of(teacher, teacher_layers): {index: i for i, index in enumerate(chosen)}}
    else:
        stages = _stage_blocks(teacher, family)
        depths = [int(depth) for depth in getattr(teacher.config, family.num_layers_attr)]
        if [len(blocks) for blocks in stages] != depths:
            raise ValueError(
                f"The teacher's config says {depths} blocks per stage (`{family.num_layers_attr}`) "
                f"but the model has {[len(blocks) for blocks in stages]}; fix the config before "
                "creating a student."
            )
        chosen_blocks = _resolve_stage_blocks(depths, num_layers, layers, strategy)
        setattr(config, family.num_layers_attr, [len(blocks) for blocks in chosen_blocks])
        config.nlpkd_teacher_blocks = [list(blocks) for blocks in chosen_blocks]
        keep = {
            _prefix_of(teacher, blocks): {index: i for i, index in enumerate(stage_choice)}
            for blocks, stage_choice in zip(stages, chosen_blocks, strict=True)
        }

    init_kwargs = {}
    # Bare models can be built without a pooler; the student must match or strict loading fails.
    if "add_pooling_layer" in inspect.signature(type(teacher).__init__).parameters:
        init_kwargs["add_pooling_layer"] = getattr(teacher, "pooler", None) is not None
    student = type(teacher)(config, **init_kwargs)
    student.to(device=teacher.device, dtype=teacher.dtype)
    # strict=True is the safety net: any per-layer tensor living outside the layer lists would
    # show up here as missing, unexpected or mis-shaped instead of silently staying random.
    student.load_state_dict(_remap_state_dict(teacher.state_dict(), keep), strict=True)
    student.train(teacher.training)
    return student


def _flat_family(model: PreTrainedModel, role: str, use: str) -> EncoderFamily:
    family = _family(model.config)
    if family.blocks_path is not None:
        raise ValueError(
            f"The {role} (model_type {model.config.model_type!r}) groups its blocks in stages, "
            f"which {use} does not support; set alpha_hidden=0 and alpha_attn=0 to distil it on "
            "its outputs only."
        )
    return family


def _is_staged(model: PreTrainedModel) -> bool:
    return _family(model.config).blocks_path is not None


def _num_stages(model: PreTrainedModel) -> int:
    return len(getattr(model.config, _family(model.config).num_layers_attr))


def _stage_map(student: PreTrainedModel, teacher: PreTrainedModel) -> dict[int, int]:
    num_student, num_teacher = _num_stages(student), _num_stages(teacher)
    if num_student != num_teacher:
        raise ValueError(
            f"The student has {num_student} stages and the teacher {num_teacher}: stage outputs "
            "can only be compared stage by stage. Pass an explicit layer_map of stages, or set "
            "alpha_hidden=0."
        )
    return {j: j for j in range(num_student)}


def default_layer_map(student: PreTrainedModel, teacher: PreTrainedModel) -> dict[int, int]:
    """Maps student layers to the teacher layers their intermediate losses compare with.

    Both sides are 0-based layer indices; in a model's `hidden_states` output, layer `k` is at
    position `k + 1` (position 0 is the embedding output), while `attentions[k]` is layer `k`.

    Every student layer is mapped to the end of its block of teacher layers, as in TinyBERT:
    student layer `i` maps to teacher layer `round((i + 1) * T / S) - 1` with halves rounded up,
    for `S` student and `T` teacher layers, so the last student layer learns from the last teacher
    layer (`6 -> 3` gives `{0: 1, 1: 3, 2: 5}`, `12 -> 6` gives `{0: 1, 1: 3, ..., 5: 11}`,
    `6 -> 1` gives `{0: 5}`). This holds whichever teacher layers the student was initialised from
    (`config.nlpkd_teacher_layers` is not read).

    Staged families (ResNet) compare stage outputs instead: when both models are staged, stage `j`
    maps to stage `j` (a student from [`create_student`] keeps every stage and its width), and the
    indices of the map are stages.

    Args:
        student ([`~transformers.PreTrainedModel`]):
            The student, of a supported family with one list of layers (encoders and decoders).
        teacher ([`~transformers.PreTrainedModel`]):
            The teacher, of such a family (not necessarily the student's).

    Returns:
        `dict[int, int]`: Student layer index -> teacher layer index, one entry per student layer.

    Raises:
        `ValueError`: If the student has more layers than the teacher, only one of the two models
            is of a staged family (ResNet), or two staged models have different stage counts.
    """
    if _is_staged(student) and _is_staged(teacher):
        return _stage_map(student, teacher)
    _flat_family(student, "student", "the layer map of the intermediate losses")
    _flat_family(teacher, "teacher", "the layer map of the intermediate losses")
    num_student = num_encoder_layers(student)
    num_teacher = num_encoder_layers(teacher)
    if num_student > num_teacher:
        raise ValueError(
            f"The student has {num_student} encoder layers, more than the teacher's {num_teacher}; "
            "there is no uniform map. Pass an explicit layer map instead."
        )
    # round-half-up of (i + 1) * T / S in integers: floor((2 (i + 1) T + S) / (2 S)).
    return {
        i: (2 * (i + 1) * num_teacher + num_student) // (2 * num_student) - 1
        for i in range(num_student)
    }


def _layer_part(layer: torch.nn.Module, path: str, model: PreTrainedModel) -> torch.nn.Module:
    try:
        return layer.get_submodule(path)
    except AttributeError:
        raise ValueError(
            f"{type(model).__name__} has no module at `{path}` in its layers, where its family "
            f"keeps it; fix the entry of model_type {model.config.model_type!r} in "
            "`nlpkd.student.SUPPORTED_FAMILIES`."
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
    family = _flat_family(model, "model", "the query/key/value relations")
    paths = (family.query_path, family.key_path, family.value_path)
    if any(path is None for path in paths):
        raise ValueError(
            f"model_type {model.config.model_type!r} has no query/key/value projections in "
            "`nlpkd.student.SUPPORTED_FAMILIES`; the query/key/value relations are available for: "
            f"{', '.join(sorted(k for k, f in SUPPORTED_FAMILIES.items() if f.query_path))}."
        )
    layers = _layer_list(model, family)
    index = _as_int(layer_index, "layer_index")
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
    family = _flat_family(model, "model", "attention dropout control")
    if family.attention_dropout_path is None:
        raise ValueError(
            f"model_type {model.config.model_type!r} has no attention-dropout module in "
            "`nlpkd.student.SUPPORTED_FAMILIES`; it is available for: "
            f"{', '.join(sorted(k for k, f in SUPPORTED_FAMILIES.items() if f.attention_dropout_path))}."
        )
    return [
        _layer_part(layer, family.attention_dropout_path, model)
        for layer in _layer_list(model, family)
    ]


def forward_input_names(model: torch.nn.Module) -> set[str] | None:
    """The batch keys a model's `forward` takes by name, never `labels`.

    A teacher and a student of different families take different inputs: a BERT teacher takes
    `token_type_ids`, a DistilBERT student does not. Only named parameters of `forward` count; a
    catch-all `**kwargs` does not, since in transformers it carries flags and loss arguments rather
    than batch columns. Wrappers with a `module` attribute (DDP, DeepSpeed) or `_orig_mod`
    (`torch.compile`) are looked through. A module that routes inputs to models of its own (a
    [`~nlpkd.ensemble.TeacherEnsemble`]) says what it takes through an `input_names()` method.

    Args:
        model (`torch.nn.Module`):
            The model whose `forward` signature decides.

    Returns:
        `set[str]` or `None`: the accepted names; `None` when `forward` names no parameter at all (a
        plain `**kwargs` module), which then takes every key but `labels`.
    """
    module: Any = model
    while not isinstance(module, PreTrainedModel):
        inner = getattr(module, "module", None)
        if inner is None:
            inner = getattr(module, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            break
        module = inner
    own_names = getattr(module, "input_names", None)
    if callable(own_names):
        return own_names()
    accepted = {
        name
        for name, parameter in inspect.signature(module.forward).parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }
    if not accepted:
        return None
    accepted.discard("labels")
    return accepted


def select_forward_inputs(model: torch.nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
    """Keeps the entries of a batch that a model's `forward` takes by name, never `labels`.

    See [`forward_input_names`] for the rule.

    Args:
        model (`torch.nn.Module`):
            The model whose `forward` signature decides.
        batch (`Mapping[str, Any]`):
            The collated batch, e.g. `input_ids`, `attention_mask`, `token_type_ids`, `labels`.

    Returns:
        `dict[str, Any]`: A new dict with the accepted entries, in the batch's order; the values
        are the batch's own objects.
    """
    accepted = forward_input_names(model)
    return {
        key: value
        for key, value in batch.items()
        if (key in accepted if accepted is not None else key != "labels")
    }


def check_family(config: PreTrainedConfig) -> None:
    """Raise the `ValueError` of an unsupported `model_type`: no student can be built from it.

    Args:
        config (`PreTrainedConfig`): the teacher's configuration.
    """
    _family(config)


def _is_generic_label_map(id2label: Mapping[int, str]) -> bool:
    return all(str(name) == f"LABEL_{i}" for i, name in id2label.items())


def check_compatible(
    student: PreTrainedModel, teacher: PreTrainedModel, teacher_columns: slice | None = None
) -> None:
    """Raise a `ValueError` that says what to do when the teacher cannot teach this student.

    Checks the vocabulary (both models must read the same token ids), the number of labels and, when both models
    name their labels, the label maps (the logits must mean the same classes in the same order).

    Args:
        student (`PreTrainedModel`): the model being trained.
        teacher (`PreTrainedModel`): the fine-tuned teacher.
        teacher_columns (`slice`, *optional*): the student's logit columns that the teacher's logits stand for
            (a student with a head grown for a new task, see `nlpkd.continual`); all of them when not given.
    """
    s_cfg, t_cfg = student.config, teacher.config
    if getattr(s_cfg, "vocab_size", None) != getattr(t_cfg, "vocab_size", None):
        raise ValueError(
            f"Teacher and student vocabularies differ (teacher vocab_size={t_cfg.vocab_size}, student "
            f"vocab_size={s_cfg.vocab_size}): both models must read the same token ids. Build the student "
            "from the teacher with nlpkd.create_student, or use a student with the teacher's tokenizer."
        )
    s_ids = list(range(s_cfg.num_labels))[teacher_columns or slice(None)]
    if teacher_columns is not None and len(s_ids) != t_cfg.num_labels:
        raise ValueError(
            f"Teacher has num_labels={t_cfg.num_labels} but the student's teacher columns {s_ids} hold "
            f"{len(s_ids)}: they must be the teacher's classes. Pass teacher_columns of the teacher's width."
        )
    if len(s_ids) != t_cfg.num_labels:
        raise ValueError(
            f"Teacher has num_labels={t_cfg.num_labels} but student has num_labels={s_cfg.num_labels}: the "
            "logits must have the same classes. Load the student with num_labels matching the teacher."
        )
    s_map = {i: s_cfg.id2label[s_id] for i, s_id in enumerate(s_ids) if s_id in s_cfg.id2label}
    t_map = dict(t_cfg.id2label)
    if not (_is_generic_label_map(s_map) or _is_generic_label_map(t_map)) and s_map != t_map:
        raise ValueError(
            f"Teacher and student label maps disagree (teacher id2label={t_map}, student id2label={s_map}): "
            "logit i must mean the same class in both. Load the student with id2label/label2id from the "
            "teacher's config."
        )


def check_tokenizers_match(student_tokenizer: Any, teacher_tokenizer: Any) -> None:
    """Raise a `ValueError` when two tokenizers would give different token ids for the same text.

    Args:
        student_tokenizer: the tokenizer the data was tokenized with.
        teacher_tokenizer: the tokenizer the teacher was trained with.
    """
    if student_tokenizer is None or teacher_tokenizer is None:
        return
    if student_tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        raise ValueError(
            f"Teacher and student tokenizers differ ({type(teacher_tokenizer).__name__} with "
            f"{len(teacher_tokenizer)} tokens vs {type(student_tokenizer).__name__} with "
            f"{len(student_tokenizer)} tokens): the teacher would read different token ids. Tokenize the "
            "data once with the teacher's tokenizer and use a student that shares it."
        )


def resolve_layer_map(
    student: PreTrainedModel, teacher: PreTrainedModel, layer_map: Mapping[int, int] | None
) -> dict[int, int]:
    """The layer map of the intermediate losses: `layer_map` checked against both models, else
    [`default_layer_map`].

    Args:
        student ([`~transformers.PreTrainedModel`]): the student.
        teacher ([`~transformers.PreTrainedModel`]): the teacher.
        layer_map (`dict[int, int]`, *optional*): student layer -> teacher layer, 0-based (stages for
            ResNet).

    Raises:
        `ValueError`: if an entry is out of range.
    """
    if not layer_map or _is_staged(student) != _is_staged(teacher):
        # Also raises the error of a staged model paired with a flat one.
        default = default_layer_map(student, teacher)
    layer_map = dict(layer_map) if layer_map else default
    staged = _is_staged(student)
    if staged:
        n_student, n_teacher = _num_stages(student), _num_stages(teacher)
    else:
        n_student, n_teacher = num_encoder_layers(student), num_encoder_layers(teacher)
    bad = {s: t for s, t in layer_map.items() if not (0 <= s < n_student and 0 <= t < n_teacher)}
    if bad and staged:
        raise ValueError(
            f"layer_map entries {bad} are out of range: student stages are 0..{n_student - 1} and teacher "
            f"stages 0..{n_teacher - 1} (0-based)."
        )
    if bad:
        raise ValueError(
            f"layer_map entries {bad} are out of range: student layers are 0..{n_student - 1} and teacher "
            f"layers 0..{n_teacher - 1} (0-based encoder layers)."
        )
    return layer_map


def _probe_inputs(model: PreTrainedModel, device: torch.device) -> dict[str, torch.Tensor]:
    # The smallest input of the model's own modality: three tokens, or one small image.
    if getattr(model, "main_input_name", "input_ids") == "pixel_values":
        channels = getattr(model.config, "num_channels", 3)
        return {"pixel_values": torch.zeros(1, channels, 32, 32, device=device)}
    return {"input_ids": torch.tensor([[1, 2, 3]], device=device)}


def check_layer_outputs(
    model: PreTrainedModel, role: str, hidden_states: bool, attentions: bool
) -> None:
    """Probe a model once so that a family that cannot give per-layer outputs fails before training.

    Args:
        model ([`~transformers.PreTrainedModel`]): the student or the teacher.
        role (`str`): `"student"` or `"teacher"`, for the message.
        hidden_states (`bool`): whether the hidden-state terms need them.
        attentions (`bool`): whether the attention term needs them.
    """
    wants = {"hidden_states": hidden_states, "attentions": attentions}
    if not any(wants.values()):
        return
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    requests = {"output_hidden_states": hidden_states}
    if attentions:
        requests["output_attentions"] = True
    with torch.no_grad():
        out = model(**_probe_inputs(model, device), **requests)
    model.train(was_training)
    for name, wanted in wants.items():
        if wanted and not getattr(out, name, None):
            weight = "alpha_attn" if name == "attentions" else "alpha_hidden"
            raise ValueError(
                f"The {role} ({type(model).__name__}, attention implementation "
                f"{model.config._attn_implementation!r}) returns no per-layer {name}, which the "
                f"{'attention' if name == 'attentions' else 'hidden-state'} loss needs. Load it with "
                f"attn_implementation='eager', or set {weight}=0."
            )
