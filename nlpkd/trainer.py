"""`DistillationTrainer`: a `transformers.Trainer` whose loss distils a frozen teacher into the student."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.modeling_outputs import SequenceClassifierOutput

from .cache import CACHE_COLUMN, cached_training_set
from .checkpoints import GracefulStop, resolve_resume_checkpoint
from .config import LOSS_COMPONENTS, DistillationConfig
from .loss_log import LossLog, NonFiniteLossError, check_finite
from .losses import hard_label_loss
from .objectives import (
    capture_attention_projections,
    has_labels,
    hidden_pairs,
    inputs_for,
    loss_components,
    output_requests,
    prepare_models,
    relation_heads,
)
from .projections import StudentWithProjections, save_student, with_projections
from .student import check_tokenizers_match, forward_input_names
from .teacher import freeze_teacher, place_teacher, resolve_teacher, teacher_input_names

__all__ = ["DistillationTrainer", "NonFiniteLossError"]


class DistillationTrainer(Trainer):
    r"""
    A [`~transformers.Trainer`] that trains `model` (the student) to imitate a frozen `teacher`.

    The loss is `alpha_kd * kd + alpha_ce * ce + alpha_hidden * hidden + alpha_attn * attn + alpha_relation *
    relation` with the weights, temperature and variants of [`DistillationConfig`] (see `nlpkd.objectives`);
    each component is logged on its own (`kd`, `ce`, ... in training logs). Evaluation runs the student alone
    (`eval_loss` is its hard-label loss) unless `eval_distillation_loss=True`. Everything else is the ordinary Trainer:
    datasets, collators, callbacks, checkpoints, `push_to_hub`, Accelerate (multi-GPU, DeepSpeed, FSDP, fp16/bf16).

    The teacher is frozen, kept in `eval()` mode, run under `torch.no_grad()`, placed on the student's device by
    Accelerate in evaluation mode (through the DeepSpeed engine under ZeRO-3), never given to the optimizer and
    never written into checkpoints. Learned width projections are trained inside the module the Trainer sees
    ([`~nlpkd.projections.StudentWithProjections`]); `save_model` writes the student alone.

    Args:
        model (`PreTrainedModel`):
            The student, e.g. from [`create_student`].
        teacher (`PreTrainedModel`, `str` or a list of them):
            The fine-tuned teacher, or a path / Hub id loaded with `AutoModelForSequenceClassification`. A list
            of teachers (or a [`~nlpkd.ensemble.TeacherEnsemble`]) distils their averaged soft targets
            (`teacher_weights`, `teacher_ensemble`); the intermediate terms use the first one.
        args (`DistillationConfig`):
            Training and distillation settings.
        teacher_processing_class (tokenizer, *optional*):
            The teacher's tokenizer; when given, it must match `processing_class` token for token.
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

    # The distillation loss is a per-batch mean: the Trainer must divide it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: PreTrainedModel,
        teacher: PreTrainedModel | str,
        args: DistillationConfig,
        teacher_processing_class: Any | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, DistillationConfig):
            raise ValueError(
                f"args must be a nlpkd.DistillationConfig, got {type(args).__name__}: it carries the "
                "temperature and loss weights. Build one with DistillationConfig(output_dir=..., ...)."
            )
        if model is None:
            raise ValueError("DistillationTrainer needs the student as `model`.")
        teacher = resolve_teacher(teacher, args)
        if teacher is model:
            raise ValueError(
                "The teacher and the student are the same object: pass a separate student."
            )
        check_tokenizers_match(kwargs.get("processing_class"), teacher_processing_class)
        teacher = freeze_teacher(teacher, args.teacher_dtype)
        self.layer_map = prepare_models(model, teacher, args)
        self.relation_heads = relation_heads(args, teacher) if args.alpha_relation > 0 else None
        # None means "takes every key" (a forward with **kwargs only).
        self._student_keys = forward_input_names(model)
        self._teacher_keys = teacher_input_names(teacher)
        if None in (self._student_keys, self._teacher_keys) and args.remove_unused_columns:
            # A model that takes every key cannot say which columns to drop: keep them all.
            args = dataclasses.replace(args, remove_unused_columns=False)
        hidden = [s for s, _ in hidden_pairs(args, self.layer_map)]
        model = with_projections(model, teacher.config.hidden_size, hidden, args.hidden_projection)

        super().__init__(model=model, args=args, **kwargs)
        # The Trainer checks that the model accepts `num_items_in_batch` to decide on loss scaling; ours does not.
        self.model_accepts_loss_kwargs = False
        # The Trainer keeps only the columns of the student's forward; the teacher may need more (a BERT teacher
        # reads token_type_ids behind a DistilBERT student), and the cached logits are a column too.
        if args.remove_unused_columns:
            self._signature_columns = sorted(
                self._student_keys
                | self._teacher_keys
                | {"label", "label_ids", "labels", CACHE_COLUMN}
            )
        self.teacher = place_teacher(teacher, self)
        if args.teacher_cache and self.train_dataset is not None:
            self.train_dataset = cached_training_set(self.train_dataset, self, self._teacher_keys)
        self.stopped_by_signal: str | None = None
        # Set by the job (nlpkd.pipeline) to write nlpkd's card from its report; see create_model_card.
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
    def primary_teacher(self) -> PreTrainedModel:
        """The teacher whose layers the intermediate terms read (the first one of an ensemble)."""
        return getattr(self.teacher_model, "primary", self.teacher_model)

    @property
    def teacher_model(self) -> nn.Module:
        """The teacher (a model or an ensemble), whatever wraps it for distributed inference."""
        return self.accelerator.unwrap_model(self.teacher)

    # ---- training, saving and the model card ----------------------------------------------------

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
        kwargs.setdefault("finetuned_from", self.teacher_model.config._name_or_path or None)
        super().create_model_card(tags=[*tags, "distillation", "nlpkd"], **kwargs)

    # ---- the loss ----------------------------------------------------------------------------

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        args = self.args
        requests = output_requests(args)
        with self._relation_capture() as relations:
            student_out = model(**inputs_for(self._student_keys, inputs), **requests)
            cached = inputs.get(CACHE_COLUMN)
            if cached is not None and not requests and relations is None:
                teacher_out = SequenceClassifierOutput(logits=cached)
            else:
                with torch.no_grad():
                    teacher_inputs = inputs_for(self._teacher_keys, inputs)
                    teacher_out = self.teacher(**teacher_inputs, **requests)
        components = loss_components(
            args,
            student_out,
            teacher_out,
            labels=inputs.get("labels"),
            attention_mask=inputs.get("attention_mask"),
            layer_map=self.layer_map,
            label_smoother=self.label_smoother,
            relations=relations,
            relation_heads=self.relation_heads,
        )
        if not components:
            raise ValueError(
                "No loss component could be computed: alpha_ce is the only weight > 0 but the batch has no "
                "labels. Add labels to the data or set alpha_kd > 0."
            )
        loss = sum(args.loss_weights[name] * value for name, value in components.items())
        check_finite(loss, components, teacher_out.get("logits"), self.state.global_step)
        self._loss_logs["train" if model.training else "eval"].add(components)
        if return_outputs:
            # Only the logits: the Trainer treats every other output of evaluation as predictions.
            return loss, SequenceClassifierOutput(logits=student_out.logits)
        return loss

    @contextlib.contextmanager
    def _relation_capture(self) -> Iterator[tuple[list, list] | None]:
        """The query/key/value projections of the relation layers of both models, recorded during the block."""
        if self.relation_heads is None:
            yield None
            return
        teacher_layer = self.args.relation_teacher_layer
        with (
            capture_attention_projections(self.student, -1) as student_qkv,
            capture_attention_projections(self.primary_teacher, teacher_layer) as teacher_qkv,
        ):
            yield student_qkv, teacher_qkv

    # ---- evaluation and logging ---------------------------------------------------------------

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ):
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        with torch.no_grad(), self.compute_loss_context_manager():
            if self.args.eval_distillation_loss:
                loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
            else:
                # The student alone: the teacher's forward would double the cost of every evaluation.
                outputs = model(**inputs_for(self._student_keys, inputs))
                loss = hard_label_loss(outputs.logits, labels) if has_labels(labels) else None
                if loss is not None and self.args.alpha_ce > 0:
                    self._loss_logs["eval"].add({"ce": loss})
        loss = loss.detach() if loss is not None else None
        if prediction_loss_only:
            return loss, None, None
        return loss, outputs.logits.detach(), labels

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
