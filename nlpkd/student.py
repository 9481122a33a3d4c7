"""Layer-reduced students built from a teacher, DistilBERT-style.

A student is a model of the teacher's own class and configuration with fewer encoder layers. It
starts from the teacher's weights: the embeddings, a chosen subset of the encoder layers and
everything that is not per-layer (pooler, classification head, relative-position tables, final
LayerNorms). Which layers a student keeps is recorded in its config, so the choice travels with
`save_pretrained` and drives the default layer map of the intermediate distillation losses.

The architectures this works for are listed explicitly in [`SUPPORTED_FAMILIES`]; anything else
raises instead of guessing where the encoder layers live.
"""

import copy
import inspect
import logging
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedConfig, PreTrainedModel

logger = logging.getLogger(__name__)

__all__ = [
    "SUPPORTED_FAMILIES",
    "EncoderFamily",
    "create_student",
    "default_layer_map",
    "default_teacher_layers",
    "get_encoder_layers",
    "num_encoder_layers",
    "select_forward_inputs",
]


@dataclass(frozen=True)
class EncoderFamily:
    """Where one architecture keeps its stack of encoder layers.

    Args:
        layers_path (`str`):
            Dotted attribute path of the `torch.nn.ModuleList` of encoder layers, relative to
            `model.base_model` (so the same entry serves `BertModel` and
            `BertForSequenceClassification`), e.g. `"encoder.layer"`.
        num_layers_attr (`str`):
            Name of the config attribute that holds the number of encoder layers, e.g.
            `"num_hidden_layers"`.
    """

    layers_path: str
    num_layers_attr: str


# Checked against the modeling and configuration files of transformers 5.23. Keyed by
# `config.model_type`. Users may register another encoder family by adding an entry, provided its
# layers are independent modules in one ModuleList and nothing outside it depends on the count.
SUPPORTED_FAMILIES: dict[str, EncoderFamily] = {
    "bert": EncoderFamily(layers_path="encoder.layer", num_layers_attr="num_hidden_layers"),
    "deberta-v2": EncoderFamily(layers_path="encoder.layer", num_layers_attr="num_hidden_layers"),
    "distilbert": EncoderFamily(layers_path="transformer.layer", num_layers_attr="n_layers"),
    "electra": EncoderFamily(layers_path="encoder.layer", num_layers_attr="num_hidden_layers"),
    "mpnet": EncoderFamily(layers_path="encoder.layer", num_layers_attr="num_hidden_layers"),
    "roberta": EncoderFamily(layers_path="encoder.layer", num_layers_attr="num_hidden_layers"),
    "xlm-roberta": EncoderFamily(layers_path="encoder.layer", num_layers_attr="num_hidden_layers"),
}


def _family(config: PreTrainedConfig) -> EncoderFamily:
    model_type = getattr(config, "model_type", None)
    family = SUPPORTED_FAMILIES.get(model_type)
    if family is None:
        raise ValueError(
            f"model_type {model_type!r} is not supported; supported families: "
            f"{', '.join(sorted(SUPPORTED_FAMILIES))}. To add an encoder family, register an "
            "`EncoderFamily` in `nlpkd.student.SUPPORTED_FAMILIES`."
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


def get_encoder_layers(model: PreTrainedModel) -> torch.nn.ModuleList:
    """Returns the list of encoder layers of a model of a supported family.

    Args:
        model ([`~transformers.PreTrainedModel`]):
            A model of one of the [`SUPPORTED_FAMILIES`], bare (e.g. `BertModel`) or with a head
            (e.g. `BertForSequenceClassification`).

    Returns:
        `torch.nn.ModuleList`: The encoder layers, in order. This is the model's own module, not a
        copy.

    Raises:
        `ValueError`: If the model's `model_type` is not supported, or the model does not have the
            layer list where its family keeps it.
    """
    family = _family(model.config)
    module: Any = model.base_model
    for attr in family.layers_path.split("."):
        module = getattr(module, attr, None)
        if module is None:
            break
    if not isinstance(module, torch.nn.ModuleList):
        raise ValueError(
            f"{type(model).__name__} (model_type {model.config.model_type!r}) has no "
            f"`torch.nn.ModuleList` at `base_model.{family.layers_path}`, where its family keeps "
            "its encoder layers. Pass a model built by transformers for that family, or fix its "
            "entry in `nlpkd.student.SUPPORTED_FAMILIES`."
        )
    return module


def num_encoder_layers(model_or_config: PreTrainedModel | PreTrainedConfig) -> int:
    """Returns the number of encoder layers of a model or configuration of a supported family.

    Args:
        model_or_config ([`~transformers.PreTrainedModel`] or [`~transformers.PreTrainedConfig`]):
            The model, or its configuration. The count is read from the config attribute named in
            [`SUPPORTED_FAMILIES`] (e.g. `n_layers` for DistilBERT).

    Returns:
        `int`: The number of encoder layers.

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
    return int(getattr(config, _family(config).num_layers_attr))


def default_teacher_layers(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """Chooses which teacher layers initialise a student, with equal strides starting at layer 0.

    Student layer `i` takes teacher layer `floor(i * num_teacher_layers / num_student_layers)`. When
    the student has half the teacher's layers this is every other layer (`6 -> 3` gives
    `[0, 2, 4]`, `12 -> 6` gives `[0, 2, 4, 6, 8, 10]`); otherwise the stride is the fractional
    ratio of the two depths, rounded down per layer (`12 -> 4` gives `[0, 3, 6, 9]`, `12 -> 5`
    gives `[0, 2, 4, 7, 9]`). Layer 0 is always kept, since it sits directly on the embeddings the
    student also inherits.

    Args:
        num_teacher_layers (`int`):
            Number of encoder layers of the teacher, at least 1.
        num_student_layers (`int`):
            Number of encoder layers of the student, from 1 to `num_teacher_layers`.

    Returns:
        `list[int]`: `num_student_layers` distinct 0-based teacher layer indices, ascending.

    Raises:
        `ValueError`: If a count is out of range.
    """
    num_teacher_layers = _as_int(num_teacher_layers, "num_teacher_layers")
    num_student_layers = _as_int(num_student_layers, "num_student_layers")
    if num_teacher_layers < 1:
        raise ValueError(f"`num_teacher_layers` must be at least 1, got {num_teacher_layers}.")
    if not 1 <= num_student_layers <= num_teacher_layers:
        raise ValueError(
            f"`num_student_layers` must be between 1 and the teacher's {num_teacher_layers} layers, "
            f"got {num_student_layers}."
        )
    # Integer arithmetic so that exact multiples never land one layer short through rounding.
    return [i * num_teacher_layers // num_student_layers for i in range(num_student_layers)]


def _resolve_teacher_layers(
    num_teacher_layers: int, num_layers: int | None, layers: Sequence[int] | None
) -> list[int]:
    valid = f"valid range 0..{num_teacher_layers - 1}"
    if layers is None:
        if num_layers is None:
            num_layers = max(1, num_teacher_layers // 2)
        num_layers = _as_int(num_layers, "num_layers")
        if not 1 <= num_layers < num_teacher_layers:
            raise ValueError(
                f"`num_layers` must be at least 1 and fewer than the teacher's "
                f"{num_teacher_layers} encoder layers, got {num_layers}."
            )
        return default_teacher_layers(num_teacher_layers, num_layers)

    if isinstance(layers, str | bytes) or not isinstance(layers, Sequence):
        raise TypeError(f"`layers` must be a sequence of integers, got {layers!r}.")
    chosen = [_as_int(index, "layers") for index in layers]
    if not chosen:
        raise ValueError(f"`layers` is empty; name at least one teacher layer ({valid}).")
    out_of_range = [index for index in chosen if not 0 <= index < num_teacher_layers]
    if out_of_range:
        raise ValueError(
            f"`layers` has indices {out_of_range} outside the teacher's {num_teacher_layers} "
            f"encoder layers ({valid})."
        )
    duplicates = sorted({index for index in chosen if chosen.count(index) > 1})
    if duplicates:
        raise ValueError(
            f"`layers` repeats teacher layers {duplicates}; each teacher layer can initialise at "
            f"most one student layer ({valid})."
        )
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
    if chosen != sorted(chosen):
        logger.warning(
            "Student layers %s are not in ascending teacher order; they are kept in the given order "
            "(student layer i = teacher layer layers[i]), which changes the order in which the "
            "teacher's layers process the input.",
            chosen,
        )
    return chosen


def create_student(
    teacher: PreTrainedModel,
    num_layers: int | None = None,
    layers: Sequence[int] | None = None,
) -> PreTrainedModel:
    """Builds a student with fewer encoder layers from a teacher, initialised from its weights.

    The student is a new model of the teacher's own class (a `*ForSequenceClassification` model, a
    bare base model such as `BertModel`, or any other head of a supported family) with a deep copy of
    the teacher's config in which only the layer count changes; label maps (`id2label`, `label2id`,
    `num_labels`, `problem_type`) and the attention implementation are kept. Its weights are copied
    from the teacher: student encoder layer `i` is teacher layer `layers[i]`, and every tensor that
    is not per-layer (embeddings, pooler, classification head, relative-position embeddings, final
    LayerNorms) is copied by name. The copies do not share memory with the teacher.

    The chosen teacher layers are recorded as `config.nlpkd_teacher_layers` and the teacher's name or
    path as `config.nlpkd_teacher`; both survive `save_pretrained`/`from_pretrained`, and
    [`default_layer_map`] reads the former.

    The student is placed on the teacher's device, in the teacher's dtype and train/eval mode, with
    all parameters trainable even when the teacher's are frozen. Call this before the teacher is
    wrapped or sharded (DDP, DeepSpeed ZeRO-3, FSDP), since it reads the teacher's full state dict.

    Args:
        teacher ([`~transformers.PreTrainedModel`]):
            The model to compress; its `model_type` must be one of [`SUPPORTED_FAMILIES`].
        num_layers (`int`, *optional*):
            Number of student encoder layers, from 1 to one fewer than the teacher's. Layers are
            then chosen by [`default_teacher_layers`] (every other layer when halving). Defaults to
            half the teacher's layers, rounded down, and at least 1.
        layers (`Sequence[int]`, *optional*):
            The 0-based teacher layers that initialise the student, one per student layer, all
            distinct and in range. They are used in the given order; ascending order is
            recommended (others log a warning). When `num_layers` is also given it must equal
            `len(layers)`.

    Returns:
        [`~transformers.PreTrainedModel`]: The student.

    Raises:
        `ValueError`: If the family is not supported, or the layer choice is empty, repeats a layer,
            is out of range, keeps as many layers as the teacher, or disagrees with `num_layers`.

    Example:

    ```python
    >>> from transformers import AutoModelForSequenceClassification
    >>> from nlpkd.student import create_student
    >>> teacher = AutoModelForSequenceClassification.from_pretrained("path/to/fine-tuned-bert")
    >>> student = create_student(teacher)  # 12 -> 6 layers: teacher layers 0, 2, 4, 6, 8, 10
    >>> student.config.nlpkd_teacher_layers
    [0, 2, 4, 6, 8, 10]
    ```
    """
    if not isinstance(teacher, PreTrainedModel):
        raise TypeError(
            f"`teacher` must be a transformers PreTrainedModel, got {type(teacher).__name__}."
        )
    family = _family(teacher.config)
    teacher_layers = get_encoder_layers(teacher)
    num_teacher_layers = num_encoder_layers(teacher)
    if len(teacher_layers) != num_teacher_layers:
        raise ValueError(
            f"The teacher's config says {num_teacher_layers} encoder layers "
            f"(`{family.num_layers_attr}`) but the model has {len(teacher_layers)}; fix the config "
            "before creating a student."
        )
    chosen = _resolve_teacher_layers(num_teacher_layers, num_layers, layers)

    config = copy.deepcopy(teacher.config)
    setattr(config, family.num_layers_attr, len(chosen))
    # Plain JSON-friendly values so they round-trip through config.json.
    config.nlpkd_teacher_layers = list(chosen)
    config.nlpkd_teacher = teacher.config.name_or_path

    init_kwargs = {}
    # Bare models can be built without a pooler; the student must match or strict loading fails.
    if "add_pooling_layer" in inspect.signature(type(teacher).__init__).parameters:
        init_kwargs["add_pooling_layer"] = getattr(teacher, "pooler", None) is not None
    student = type(teacher)(config, **init_kwargs)
    student.to(device=teacher.device, dtype=teacher.dtype)

    # Find the layer list's full name in the teacher (e.g. "bert.encoder.layer") so the remapping
    # works the same for bare models and for every head.
    prefix = next(name for name, module in teacher.named_modules() if module is teacher_layers)
    prefix = f"{prefix}." if prefix else ""
    student_index = {teacher_index: i for i, teacher_index in enumerate(chosen)}
    state_dict = {}
    for key, tensor in teacher.state_dict().items():
        if prefix and key.startswith(prefix):
            teacher_index, rest = key[len(prefix) :].split(".", 1)
            i = student_index.get(int(teacher_index))
            if i is None:
                continue
            key = f"{prefix}{i}.{rest}"
        state_dict[key] = tensor
    # strict=True is the safety net: any per-layer tensor living outside the layer list would show
    # up here as missing, unexpected or mis-shaped instead of silently staying random.
    student.load_state_dict(state_dict, strict=True)
    student.train(teacher.training)
    return student


def default_layer_map(student: PreTrainedModel, teacher: PreTrainedModel) -> dict[int, int]:
    """Maps student encoder layers to the teacher layers their intermediate losses compare with.

    Both sides are 0-based encoder layer indices; in a model's `hidden_states` output, layer `k`
    is at position `k + 1` (position 0 is the embedding output), while `attentions[k]` is layer
    `k`.

    When the student records the teacher layers it was initialised from
    (`config.nlpkd_teacher_layers`, written by [`create_student`]), student layer `i` maps to
    `nlpkd_teacher_layers[i]`. Otherwise the layers are spread uniformly so that the last student
    layer maps to the last teacher layer: student layer `i` maps to teacher layer
    `round((i + 1) * T / S) - 1` with halves rounded up, for `S` student and `T` teacher layers
    (3 of 6 gives `{0: 1, 1: 3, 2: 5}`).

    Args:
        student ([`~transformers.PreTrainedModel`]):
            The student, of a supported family.
        teacher ([`~transformers.PreTrainedModel`]):
            The teacher, of a supported family (not necessarily the student's).

    Returns:
        `dict[int, int]`: Student layer index -> teacher layer index, one entry per student layer.

    Raises:
        `ValueError`: If the recorded layers do not fit the two models, or, without recorded layers,
            the student has more layers than the teacher.
    """
    num_student = num_encoder_layers(student)
    num_teacher = num_encoder_layers(teacher)
    recorded = getattr(student.config, "nlpkd_teacher_layers", None)
    if recorded is not None:
        recorded = [_as_int(index, "config.nlpkd_teacher_layers") for index in recorded]
        if len(recorded) != num_student:
            raise ValueError(
                f"student.config.nlpkd_teacher_layers has {len(recorded)} entries {recorded} but "
                f"the student has {num_student} encoder layers; pass an explicit layer map instead."
            )
        out_of_range = [index for index in recorded if not 0 <= index < num_teacher]
        if out_of_range:
            raise ValueError(
                f"student.config.nlpkd_teacher_layers names teacher layers {out_of_range} but the "
                f"teacher has {num_teacher} encoder layers (valid range 0..{num_teacher - 1}); was "
                "the student created from a different teacher? Pass an explicit layer map instead."
            )
        return dict(enumerate(recorded))
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


def forward_input_names(model: torch.nn.Module) -> set[str] | None:
    """The batch keys a model's `forward` takes by name, never `labels`.

    A teacher and a student of different families take different inputs: a BERT teacher takes
    `token_type_ids`, a DistilBERT student does not. Only named parameters of `forward` count; a
    catch-all `**kwargs` does not, since in transformers it carries flags and loss arguments rather
    than batch columns. Wrappers with a `module` attribute (DDP, DeepSpeed) or `_orig_mod`
    (`torch.compile`) are looked through.

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
