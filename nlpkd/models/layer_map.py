"""The layer map of the intermediate terms: which teacher layer each student layer is compared with."""

from __future__ import annotations

from collections.abc import Mapping

from transformers import PreTrainedModel

from .families import count_stages, flat_family, is_staged, num_encoder_layers

__all__ = ["default_layer_map", "resolve_layer_map"]


def _stage_map(student: PreTrainedModel, teacher: PreTrainedModel) -> dict[int, int]:
    num_student, num_teacher = count_stages(student), count_stages(teacher)
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
    if is_staged(student) and is_staged(teacher):
        return _stage_map(student, teacher)
    # Reached only when one of the two is staged (two staged models map stage to stage above).
    use, remedy = "a layer map against the other model's layers", "alpha_hidden=0 and alpha_attn=0"
    flat_family(student, "student", use, remedy)
    flat_family(teacher, "teacher", use, remedy)
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
    if not layer_map or is_staged(student) != is_staged(teacher):
        # Also raises the error of a staged model paired with a flat one.
        default = default_layer_map(student, teacher)
    layer_map = dict(layer_map) if layer_map else default
    staged = is_staged(student)
    if staged:
        n_student, n_teacher = count_stages(student), count_stages(teacher)
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
