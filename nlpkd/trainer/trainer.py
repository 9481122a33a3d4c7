"""`DistillationTrainer`: a `transformers.Trainer` whose loss teaches the student to imitate a frozen teacher."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.modeling_outputs import SequenceClassifierOutput

from ..config import LOSS_COMPONENTS, DistillationConfig
from ..data.completions import CompletionCollator, ShiftLabelsCollator
from ..losses.logits import hard_label_loss
from ..losses.terms import LogitColumns, has_labels, loss_components, output_requests
from ..models.causal import check_causal_pair
from ..models.inputs import forward_input_names, route_inputs, signature_columns
from ..models.teacher import freeze_teacher
from ..models.width import kept_teacher_heads
from .accumulation import loss_scales, step_counts
from .cache import cached_training_set
from .checkpoints import GracefulStop, resolve_resume_checkpoint
from .hooks import student_forward
from .loss_log import LossLog, check_finite
from .placement import place_teacher
from .preparation import prepare_models, relation_heads, teacher_outputs, trainable_student
from .projections import StudentWithProjections, save_student
from .teacher_inputs import plan_teacher_inputs
from .token_level import next_token_targets

__all__ = ["DistillationTrainer"]


class DistillationTrainer(Trainer):
    r"""
    A [`~transformers.Trainer`] that trains `model` (the student) to imitate a frozen `teacher`.

    The loss is the weighted sum of the terms of [`DistillationConfig`] (`kd`, `ce`, `hidden`, `attn`,
    `relation`; see `nlpkd.losses.terms`), each logged on its own. Evaluation runs the student alone (`eval_loss`
    is its hard-label loss) unless `eval_distillation_loss=True`. Everything else is the ordinary Trainer:
    datasets, collators, callbacks, checkpoints, `push_to_hub`, Accelerate (multi-GPU, DeepSpeed, FSDP, fp16/bf16).
    Any model whose output has `logits` works (`input_ids`, `pixel_values`, ...); two causal LMs distil per
    completion token, normalised over the accumulated batch (see `nlpkd.trainer.token_level`).

    The teacher is frozen, in `eval()` mode, run under `torch.no_grad()`, placed by Accelerate in evaluation mode
    (the DeepSpeed engine under ZeRO-3), never optimized nor checkpointed. Learned width projections train inside
    the module the Trainer sees ([`~nlpkd.trainer.StudentWithProjections`]); `save_model` saves the student.

    Args:
        model (`PreTrainedModel`):
            The student, e.g. from [`create_student`].
        teacher (`PreTrainedModel`, `str` or a list of them):
            The fine-tuned teacher, or a path / Hub id loaded with `AutoModelForSequenceClassification`. A list
            of teachers (or a [`~nlpkd.models.TeacherEnsemble`]) distils their averaged soft targets
            (`teacher_weights`, `teacher_ensemble`); the intermediate terms use the first one.
        args (`DistillationConfig`):
            Training and distillation settings.
        teacher_processing_class (tokenizer or a list of them, *optional*):
            The teacher's tokenizer (one per teacher). When it differs from `processing_class`, the teacher reads
            its own columns (`tokenize_dataset(..., teacher_tokenizer=...)`, `nlpkd.data.teacher_inputs`).
        logit_columns ([`~nlpkd.losses.LogitColumns`], *optional*):
            The student's logit columns of the teacher's logits and of the labels (all by default; `nlpkd.jobs.continual`).
        **kwargs:
            Everything else [`~transformers.Trainer`] takes (`train_dataset`, `eval_dataset`, `processing_class`,
            `data_collator`, `compute_metrics`, `callbacks`, ...).

    Example:

    ```python
    >>> from nlpkd import DistillationConfig, DistillationTrainer, create_student
    >>> student = create_student(teacher, num_layers=3)
    >>> args = DistillationConfig(output_dir="student", temperature=2.0, alpha_kd=0.5, alpha_ce=0.5)
    >>> trainer = DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=train,
    ...                               eval_dataset=validation, processing_class=tokenizer)
    >>> trainer.train()
    ```
    """

    # A per-batch mean: the Trainer divides it by the accumulation steps (causal LMs: True, see __init__).
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: PreTrainedModel,
        teacher: PreTrainedModel | str,
        args: DistillationConfig,
        teacher_processing_class: Any | None = None,
        logit_columns: LogitColumns | None = None,
        **kwargs: Any,
    ) -> None:
        teacher, self.teacher_prefix = plan_teacher_inputs(
            model, teacher, args, teacher_processing_class, kwargs
        )
        self.token_level = check_causal_pair(model, teacher, args)
        teacher = freeze_teacher(teacher, args.teacher_dtype)
        self.logit_columns = logit_columns or LogitColumns()
        self.layer_map = prepare_models(
            model, teacher, args, self.logit_columns, self.teacher_prefix
        )
        # A narrow student's attention heads are compared with the teacher heads they were sliced from.
        self.attention_heads = kept_teacher_heads(model.config, self.layer_map)
        if self.token_level and kwargs.get("data_collator") is None:
            kwargs["data_collator"] = CompletionCollator(kwargs.get("processing_class"))
        self.relation_heads = relation_heads(args, teacher) if args.alpha_relation > 0 else None
        # None means "takes every key" (a forward with **kwargs only).
        self._student_keys = forward_input_names(model)
        self._teacher_keys = forward_input_names(teacher)
        if None in (self._student_keys, self._teacher_keys) and args.remove_unused_columns:
            # A model that takes every key cannot say which columns to drop: keep them all.
            args = dataclasses.replace(args, remove_unused_columns=False)
        model = trainable_student(model, teacher, args, self.layer_map)
        super().__init__(model=model, args=args, **kwargs)
        # The Trainer counts `num_items_in_batch` only for models that accept loss kwargs: token-level losses
        # divide by it (counted from `shift_labels`), per-example losses do not need it.
        self.model_accepts_loss_kwargs = self.token_level
        if self.token_level:
            self.loss_is_scaled_for_ga = True
            self.data_collator = ShiftLabelsCollator(self.data_collator)
        # The Trainer would keep only the columns of the student's forward; the teacher may need more. No public
        # hook names the columns to keep (remove_unused_columns=False would hand raw text to the collator), so
        # this sets the private attribute the Trainer fills lazily; tests/test_internals.py pins that it is read.
        if args.remove_unused_columns:
            self._signature_columns = signature_columns(
                self._student_keys, self._teacher_keys, self.teacher_prefix
            )
        self.teacher = place_teacher(teacher, self)
        if args.teacher_cache and self.train_dataset is not None:
            self.train_dataset = cached_training_set(self.train_dataset, self, self._teacher_keys)
        self.stopped_by_signal: str | None = None
        self.step_unit_counts: dict[str, torch.Tensor] | None = None
        # Set by the job (nlpkd.jobs) to write nlpkd's card from its report; see create_model_card.
        self.model_card_writer: Callable[[str], Any] | None = None
        names = [name for name in LOSS_COMPONENTS if args.loss_weights[name] > 0]
        self._loss_logs = {"train": LossLog(names), "eval": LossLog(names)}

    @property
    def student(self) -> PreTrainedModel:
        """The student as a `PreTrainedModel`, whatever wraps it (projections, DDP, DeepSpeed)."""
        model = self.accelerator.unwrap_model(self.model)
        return model.student if isinstance(model, StudentWithProjections) else model

    @property
    def projections(self) -> nn.ModuleList:
        """The learned width projections of the hidden-state loss (empty when the widths match)."""
        model = self.accelerator.unwrap_model(self.model)
        return model.projections if isinstance(model, StudentWithProjections) else nn.ModuleList()

    @property
    def teacher_model(self) -> nn.Module:
        """The teacher (a model or an ensemble), whatever wraps it for distributed inference."""
        return self.accelerator.unwrap_model(self.teacher)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """[`~transformers.Trainer.train`], made safe to interrupt and resume.

        Half-written checkpoints (a process killed while saving) are moved aside as `checkpoint-N.incomplete`;
        `resume_from_checkpoint=True` (or `"last"`) takes the newest complete one. SIGINT/SIGTERM save a
        checkpoint at the end of the current step and stop: `self.stopped_by_signal` then names the signal.
        """
        resume = resolve_resume_checkpoint(
            self.args.output_dir, resume_from_checkpoint, self.args.should_save
        )
        stopper = GracefulStop(self.accelerator)
        self.add_callback(stopper)
        try:
            with stopper.installed():
                output = super().train(resume_from_checkpoint=resume, **kwargs)
        finally:
            self.remove_callback(stopper)
        self.stopped_by_signal = stopper.received
        return output

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the student so that `from_pretrained` and `pipeline()` load it; checkpoints keep the
        projections too, so a resumed run restores them."""
        if _internal_call or not self.projections:
            return super().save_model(output_dir, _internal_call)
        # Gathered under ZeRO-3 and FSDP, so every process takes part.
        state = self.accelerator.get_state_dict(self.model_wrapped)
        if self.args.should_save:
            output_dir = output_dir or self.args.output_dir
            save_student(self.student, state, output_dir, self.processing_class, self.args)
        if self.args.push_to_hub:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def create_model_card(self, **kwargs: Any) -> None:
        """Write the model card `README.md` that `push_to_hub` uploads: nlpkd's card with teacher and student
        results when a job set `model_card_writer`, else the Trainer's own card tagged `distillation`."""
        if self.is_world_process_zero() and self.model_card_writer is not None:
            return self.model_card_writer(self.args.output_dir)
        tags = kwargs.pop("tags", None)
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        kwargs.setdefault("finetuned_from", self.teacher_model.config.name_or_path or None)
        super().create_model_card(tags=[*tags, "distillation", "nlpkd"], **kwargs)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        args = self.args
        requests = output_requests(args)
        targets = self._targets(inputs)
        # An ensemble's first teacher gives the per-layer outputs.
        models = (self.student, getattr(self.teacher_model, "primary", self.teacher_model))
        with student_forward(args, self.relation_heads, *models) as relations:
            student_out = model(**route_inputs(self._student_keys, inputs), **requests)
            teacher_out = teacher_outputs(
                self.teacher, self._teacher_keys, inputs, requests, relations, self.teacher_prefix
            )
        components = loss_components(
            args,
            student_out,
            teacher_out,
            labels=targets,
            attention_mask=inputs.get("attention_mask"),
            layer_map=self.layer_map,
            label_smoother=self.label_smoother,
            relations=relations,
            relation_heads=self.relation_heads,
            logit_columns=self.logit_columns,
            token_level=self.token_level,
            attention_heads=self.attention_heads,
        )
        if not components:
            raise ValueError(
                "No loss component could be computed: alpha_ce is the only weight > 0 but the batch has no "
                "labels. Add labels to the data or set alpha_kd > 0."
            )
        scales = loss_scales(self, inputs, targets, num_items_in_batch, training=model.training)
        loss = sum(args.loss_weights[n] * scales.get(n, 1.0) * v for n, v in components.items())
        check_finite(loss, components, teacher_out.get("logits"), self.state.global_step)
        self._loss_logs["train" if model.training else "eval"].add(components)
        if return_outputs:
            # Only the logits: the Trainer treats every other output of evaluation as predictions.
            logits = self.logit_columns.for_labels(student_out.logits)
            return loss, SequenceClassifierOutput(logits=logits)
        return loss

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: torch.device):
        batches, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        # Every term is normalised over the units of the whole step (trainer/accumulation.py).
        gather = self.args.average_tokens_across_devices
        self.step_unit_counts = step_counts(batches, self.accelerator, gather)
        return batches, num_items_in_batch

    def _targets(self, inputs: Mapping[str, Any]) -> torch.Tensor | None:
        # Causal LMs learn the next token at every position: the labels shifted onto the logits.
        if self.token_level:
            return next_token_targets(inputs, self.student, self.teacher_model)
        return inputs.get("labels")

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ):
        # As the Trainer's own prediction_step does (the evaluation loop hands it unprepared batches).
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        with torch.no_grad(), self.compute_loss_context_manager():
            if self.args.eval_distillation_loss:
                loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
                logits = outputs.logits
            else:
                # The student alone: the teacher's forward would double the cost of every evaluation.
                outputs = model(**route_inputs(self._student_keys, inputs))
                logits = self.logit_columns.for_labels(outputs.logits)
                targets = self._targets(inputs)
                loss = hard_label_loss(logits, targets) if has_labels(targets) else None
                if loss is not None and self.args.alpha_ce > 0:
                    self._loss_logs["eval"].add({"ce": loss})
        loss = loss.detach() if loss is not None else None
        if prediction_loss_only:
            return loss, None, None
        return loss, logits.detach(), labels

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        # Start a clean window: predict() also runs prediction_step but never logs.
        self._loss_logs["eval"].reset()
        return super().evaluate(*args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self._loss_logs["train"].drain(self.accelerator))
        else:
            key = next((k for k in logs if k.startswith("eval") and k.endswith("_loss")), None)
            if key is not None:
                prefix = key[: -len("loss")]
                logs.update(self._loss_logs["eval"].drain(self.accelerator, prefix=prefix))
        super().log(logs, start_time)
