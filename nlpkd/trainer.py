"""`DistillationTrainer`: a `transformers.Trainer` whose loss distils a frozen teacher into the student."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.modeling_outputs import SequenceClassifierOutput

from .cache import CACHE_COLUMN, cached_training_set
from .checkpoints import GracefulStop, resolve_resume_checkpoint
from .config import LOSS_COMPONENTS, DistillationConfig
from .loss_log import LossLog, NonFiniteLossError, check_finite

__all__ = ["DistillationTrainer", "NonFiniteLossError"]
from .losses import attention_loss, hard_label_loss, hidden_state_loss, soft_kl_loss
from .models import load_teacher
from .projections import PROJECTED_KEY, StudentWithProjections, save_student, with_projections
from .student import (
    check_compatible,
    check_layer_outputs,
    check_tokenizers_match,
    forward_input_names,
    resolve_layer_map,
)
from .teacher import freeze_teacher, place_teacher


class DistillationTrainer(Trainer):
    r"""
    A [`~transformers.Trainer`] that trains `model` (the student) to imitate a frozen `teacher`.

    The loss is `alpha_kd * kd + alpha_ce * ce + alpha_hidden * hidden + alpha_attn * attn` with the weights,
    temperature and variants of [`DistillationConfig`]; each component is logged on its own (`kd`, `ce`,
    `hidden`, `attn` in training logs, `eval_kd`, ... in evaluation). Everything else is the ordinary Trainer:
    datasets, collators, callbacks, checkpoints, `push_to_hub`, Accelerate (multi-GPU, DeepSpeed, FSDP, fp16/bf16).

    The teacher is frozen, kept in `eval()` mode, run under `torch.no_grad()`, placed on the student's device by
    Accelerate in evaluation mode (through the DeepSpeed engine under ZeRO-3), never given to the optimizer and
    never written into checkpoints. Learned width projections are trained inside the module the Trainer sees
    ([`~nlpkd.projections.StudentWithProjections`]); `save_model` writes the student alone.

    Args:
        model (`PreTrainedModel`):
            The student, e.g. from [`create_student`].
        teacher (`PreTrainedModel` or `str`):
            The fine-tuned teacher, or a path / Hub id loaded with `AutoModelForSequenceClassification`.
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
        teacher = load_teacher(teacher)
        if teacher is model:
            raise ValueError(
                "The teacher and the student are the same object: pass a separate student."
            )
        check_compatible(model, teacher)
        check_tokenizers_match(kwargs.get("processing_class"), teacher_processing_class)
        teacher = freeze_teacher(teacher, args.teacher_dtype)
        if args.alpha_attn > 0:
            # SDPA and flash kernels never materialise attention probabilities.
            for m in (model, teacher):
                if m.config._attn_implementation != "eager":
                    m.set_attn_implementation("eager")
        intermediate = args.alpha_hidden > 0 or args.alpha_attn > 0
        self.layer_map = resolve_layer_map(model, teacher, args.layer_map) if intermediate else {}
        for role, m in (("student", model), ("teacher", teacher)):
            check_layer_outputs(m, role, args.alpha_hidden > 0, args.alpha_attn > 0)
        # None means "takes every key" (a forward with **kwargs only).
        self._student_keys = forward_input_names(model)
        self._teacher_keys = forward_input_names(teacher)
        if None in (self._student_keys, self._teacher_keys) and args.remove_unused_columns:
            # A model that takes every key cannot say which columns to drop: keep them all.
            args = dataclasses.replace(args, remove_unused_columns=False)
        # hidden_states[0] is the embedding output, so encoder layer i is at i + 1.
        hidden = [s + 1 for s in self.layer_map] if args.alpha_hidden > 0 else []
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
    def teacher_model(self) -> PreTrainedModel:
        """The teacher as a `PreTrainedModel`, whatever wraps it for distributed inference."""
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
        if not self.is_world_process_zero():
            return
        if self.model_card_writer is not None:
            self.model_card_writer(self.args.output_dir)
            return
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
        labels = inputs.get("labels")
        want_hidden, want_attn = args.alpha_hidden > 0, args.alpha_attn > 0
        extra = {"output_hidden_states": True} if want_hidden else {}
        if want_attn:
            extra["output_attentions"] = True
        student_out = model(**self._inputs_for(self._student_keys, inputs), **extra)
        cached = inputs.get(CACHE_COLUMN)
        if cached is not None and not extra:
            teacher_out = SequenceClassifierOutput(logits=cached)
        else:
            with torch.no_grad():
                teacher_out = self.teacher(**self._inputs_for(self._teacher_keys, inputs), **extra)

        components: dict[str, torch.Tensor] = {}
        if args.alpha_kd > 0:
            components["kd"] = soft_kl_loss(
                student_out.logits, teacher_out.logits, args.temperature
            )
        if args.alpha_ce > 0 and labels is not None:
            if self.label_smoother is not None and student_out.logits.shape[-1] > 1:
                components["ce"] = self.label_smoother(student_out, labels)
            else:
                components["ce"] = hard_label_loss(student_out.logits, labels)
        mask = inputs.get("attention_mask")
        if want_hidden:
            projected = student_out.get(PROJECTED_KEY)
            student_hidden = projected or [student_out.hidden_states[s + 1] for s in self.layer_map]
            components["hidden"] = hidden_state_loss(
                student_hidden,
                [teacher_out.hidden_states[t + 1] for t in self.layer_map.values()],
                attention_mask=mask,
                loss_type=args.hidden_loss,
            )
        if want_attn:
            components["attn"] = attention_loss(
                [student_out.attentions[s] for s in self.layer_map],
                [teacher_out.attentions[t] for t in self.layer_map.values()],
                attention_mask=mask,
                loss_type=args.attn_loss,
            )
        if not components:
            raise ValueError(
                "No loss component could be computed: alpha_ce is the only weight > 0 but the batch has no "
                "labels. Add labels to the data or set alpha_kd > 0."
            )
        loss = sum(args.loss_weights[name] * value for name, value in components.items())
        check_finite(loss, components, teacher_out.logits, self.state.global_step)
        self._loss_logs["train" if model.training else "eval"].add(components)
        if return_outputs:
            # Only the logits: the Trainer treats every other output of evaluation as predictions.
            return loss, SequenceClassifierOutput(logits=student_out.logits)
        return loss

    @staticmethod
    def _inputs_for(keys: set[str] | None, inputs: Mapping[str, Any]) -> dict[str, Any]:
        if keys is None:
            return {k: v for k, v in inputs.items() if k not in ("labels", CACHE_COLUMN)}
        return {k: v for k, v in inputs.items() if k in keys}

    # ---- evaluation and logging ---------------------------------------------------------------

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        if prediction_loss_only:
            return loss.detach(), None, None
        return loss.detach(), outputs.logits.detach(), inputs.get("labels")

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
