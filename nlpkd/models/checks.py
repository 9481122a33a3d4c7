"""Pair checks: whether a teacher can teach a student (vocabulary, labels, tokenizers, per-layer outputs),
with errors that say what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import PreTrainedModel

from ..data.teacher_inputs import same_tokenizer

__all__ = ["check_compatible", "check_layer_outputs", "check_tokenizers_match"]


def _is_generic_label_map(id2label: Mapping[int, str]) -> bool:
    return all(str(name) == f"LABEL_{i}" for i, name in id2label.items())


def check_compatible(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    teacher_columns: slice | None = None,
    shared_vocabulary: bool = True,
) -> None:
    """Raise a `ValueError` that says what to do when the teacher cannot teach this student.

    Checks the vocabulary (both models must read the same token ids, unless each reads its own tokenization),
    the number of labels and, when both models name their labels, the label maps (the logits must mean the same
    classes in the same order).

    Args:
        student (`PreTrainedModel`): the model being trained.
        teacher (`PreTrainedModel`): the fine-tuned teacher.
        teacher_columns (`slice`, *optional*): the student's logit columns that the teacher's logits stand for
            (a student with a head grown for a new task, see `nlpkd.jobs.continual`); all of them when not given.
        shared_vocabulary (`bool`, *optional*, defaults to `True`): both models read the same token ids; `False`
            when the teacher reads its own tokenization (`nlpkd.data.teacher_inputs`).
    """
    s_cfg, t_cfg = student.config, teacher.config
    s_vocab, t_vocab = getattr(s_cfg, "vocab_size", None), getattr(t_cfg, "vocab_size", None)
    if shared_vocabulary and s_vocab != t_vocab:
        raise ValueError(
            f"Teacher and student vocabularies differ (teacher vocab_size={t_vocab}, student "
            f"vocab_size={s_vocab}): both models must read the same token ids. Build the student "
            "from the teacher with nlpkd.create_student, use a student with the teacher's tokenizer, or give "
            "each model its own tokenizer: DistillationTrainer(processing_class=student_tokenizer, "
            "teacher_processing_class=teacher_tokenizer) with data from tokenize_dataset(..., "
            "teacher_tokenizer=teacher_tokenizer); nlpkd.distill(student_tokenizer=...); with the command, the "
            "--student folder's own tokenizer files (docs/cross-tokenizer.md)."
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
    """Raise a `ValueError` when two tokenizers that claim to be one would give different token ids for the
    same text (the data carries one tokenization, which the teacher would read too).

    Args:
        student_tokenizer: the tokenizer the data was tokenized with.
        teacher_tokenizer: the tokenizer the teacher was trained with.
    """
    if student_tokenizer is None or teacher_tokenizer is None:
        return
    if not same_tokenizer(student_tokenizer, teacher_tokenizer):
        raise ValueError(
            f"Teacher and student tokenizers differ ({type(teacher_tokenizer).__name__} with "
            f"{len(teacher_tokenizer)} tokens vs {type(student_tokenizer).__name__} with "
            f"{len(student_tokenizer)} tokens), but the data carries one tokenization: the teacher would read "
            "token ids it was not trained on. Tokenize the data once with the teacher's tokenizer and use a "
            "student that shares it, or tokenize it for both models with tokenize_dataset(..., "
            "teacher_tokenizer=teacher_tokenizer) so that the teacher reads its own teacher_input_ids."
        )


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
