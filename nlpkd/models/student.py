"""Students built from a teacher, DistilBERT-style.

A student is a model of the teacher's own class and configuration with fewer layers. It starts from the
teacher's weights: the embeddings, a chosen subset of the layers and everything that is not per-layer (pooler,
classification or language-model head, relative-position tables, final norms). Which layers a student keeps is
recorded in its config, so the choice travels with `save_pretrained`.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from transformers import PreTrainedConfig, PreTrainedModel

from .families import (
    EncoderFamily,
    as_int,
    family_of,
    is_sequence,
    layer_list,
    num_encoder_layers,
    stage_block_lists,
)
from .width import apply_width, check_width_request
from .width_families import WidthSelection

__all__ = ["LAYER_STRATEGIES", "LayerStrategy", "create_student", "default_teacher_layers"]

logger = logging.getLogger(__name__)


LayerStrategy = Literal["uniform", "alternate", "first", "last"]


# The strategies `default_teacher_layers` and `create_student` accept, the default first.
LAYER_STRATEGIES: tuple[LayerStrategy, ...] = ("uniform", "alternate", "first", "last")
"""The layer strategies of [`default_teacher_layers`] and [`create_student`], the default first."""


def _check_strategy(strategy: Any) -> None:
    if strategy not in LAYER_STRATEGIES:
        raise ValueError(
            f"`strategy` must be one of {', '.join(map(repr, LAYER_STRATEGIES))}, got {strategy!r}."
        )


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
    num_teacher_layers = as_int(num_teacher_layers, "num_teacher_layers")
    num_student_layers = as_int(num_student_layers, "num_student_layers")
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
    narrower: bool = False,
) -> list[int]:
    # A narrower student may keep every layer; one of the teacher's width must drop some.
    most = num_teacher_layers if narrower else num_teacher_layers - 1
    if layers is None:
        if num_layers is None:
            num_layers = max(1, num_teacher_layers // 2)
        num_layers = as_int(num_layers, "num_layers")
        if not 1 <= num_layers <= most:
            bound = "at most" if narrower else "fewer than"
            raise ValueError(
                f"`num_layers` must be at least 1 and {bound} the teacher's "
                f"{num_teacher_layers} encoder layers, got {num_layers}."
            )
        return default_teacher_layers(num_teacher_layers, num_layers, strategy)

    if not is_sequence(layers):
        raise TypeError(f"`layers` must be a sequence of integers, got {layers!r}.")
    chosen = [as_int(index, "layers") for index in layers]
    _validate_indices(chosen, num_teacher_layers, "layer", "encoder layers", "layers")
    if len(chosen) > most:
        raise ValueError(
            f"`layers` names {len(chosen)} layers but a student needs fewer than the teacher's "
            f"{num_teacher_layers} encoder layers."
        )
    if num_layers is not None and as_int(num_layers, "num_layers") != len(chosen):
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
        if is_sequence(num_layers):
            counts = [as_int(k, "num_layers") for k in num_layers]
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
            k = as_int(num_layers, "num_layers")
            if k < 1:
                raise ValueError(f"`num_layers` must be at least 1 block per stage, got {k}.")
            counts = [min(k, d) for d in depths]

    if layers is None:
        if counts is None:
            counts = [max(1, d // 2) for d in depths]
        chosen = [_stage_choice(d, k, strategy) for d, k in zip(depths, counts, strict=True)]
    else:
        if not is_sequence(layers) or not all(is_sequence(stage) for stage in layers):
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
            blocks = [as_int(index, "layers") for index in stage]
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
    *,
    hidden_size: int | None = None,
    intermediate_size: int | None = None,
    num_attention_heads: int | None = None,
    width_selection: WidthSelection = "importance",
    calibration_data: Any = None,
) -> PreTrainedModel:
    """Builds a student with fewer encoder layers (decoder layers, ResNet blocks) from a teacher,
    and for text encoders optionally narrower (fewer heads, feed-forward neurons, hidden channels).

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
        hidden_size (`int`, *optional*):
            The student's hidden size (DistilBERT's `dim`); the teacher's when unset. The head size
            is kept, so `hidden_size = num_attention_heads * head_size`: give one, the other follows.
            Any width argument makes the student narrower ([`nlpkd.models.width.narrow_model`]): its
            weights are the teacher's slices, the kept indices are recorded as
            `config.nlpkd_kept_heads` and `config.nlpkd_kept_hidden`, and it may keep all layers.
            Text encoders only (`nlpkd.models.width_families.WIDTH_FAMILIES`).
        intermediate_size (`int`, *optional*):
            Feed-forward neurons per layer (DistilBERT's `hidden_dim`); the teacher's when unset.
        num_attention_heads (`int`, *optional*):
            Attention heads per layer (DistilBERT's `n_heads`); follows `hidden_size` when unset.
            Each layer keeps its own heads, except MPNet, whose relative-position biases are one
            table shared by all layers: there every layer keeps the same heads, chosen jointly.
        width_selection (`str`, *optional*, defaults to `"importance"`):
            Which heads, neurons and channels a narrower student keeps: `"importance"`, the ones
            with the largest activations on `calibration_data`
            ([`nlpkd.models.importance.width_importance`]), or `"first"`, the first ones.
        calibration_data (*optional*):
            For `"importance"`: a batch of the training data (a dict of tensors with `input_ids`
            and `attention_mask`), an iterable of batches, or the teacher's
            [`nlpkd.models.importance.WidthScores`] computed once. Required there; ignored by `"first"`.

    Returns:
        [`~transformers.PreTrainedModel`]: The student.

    Raises:
        `ValueError`: If the family is not supported, the strategy is unknown or given with
            `layers`, or the layer choice is empty, repeats a layer, is out of range, keeps as many
            layers as the teacher, or disagrees with `num_layers`.

    Example:

    ```python
    >>> from transformers import AutoModelForSequenceClassification
    >>> from nlpkd import create_student
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
    family = family_of(teacher.config)
    _check_strategy(strategy)
    _check_layers_vs_strategy(layers, strategy)
    width = check_width_request(
        teacher.config,
        hidden_size,
        intermediate_size,
        num_attention_heads,
        width_selection,
        calibration_data,
    )
    if getattr(teacher.config, "is_heterogeneous", False):
        raise ValueError(
            "The teacher's config sets `per_layer_config` (layers with different settings); "
            "nlpkd cannot yet carry per-layer overrides over to a student. Use a teacher with a "
            "homogeneous config."
        )
    config = copy.deepcopy(teacher.config)
    config.nlpkd_teacher = teacher.config.name_or_path

    if family.blocks_path is None:
        teacher_layers = layer_list(teacher, family)
        num_teacher_layers = num_encoder_layers(teacher)
        if len(teacher_layers) != num_teacher_layers:
            raise ValueError(
                f"The teacher's config says {num_teacher_layers} layers "
                f"(`{family.num_layers_attr}`) but the model has {len(teacher_layers)}; fix the "
                "config before creating a student."
            )
        chosen = _resolve_teacher_layers(
            num_teacher_layers, num_layers, layers, strategy, narrower=width is not None
        )
        _student_config_of_stack(config, family, chosen, num_teacher_layers)
        # Plain JSON-friendly values so they round-trip through config.json.
        config.nlpkd_teacher_layers = list(chosen)
        keep = {_prefix_of(teacher, teacher_layers): {index: i for i, index in enumerate(chosen)}}
    else:
        stages = stage_block_lists(teacher, family)
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
    if width is not None:
        student = apply_width(teacher, student, chosen, width)
    return student
