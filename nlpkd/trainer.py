"""`DistillationTrainer`: a `transformers.Trainer` whose loss distils a frozen teacher into the student."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from typing import Any

import datasets
import torch
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainerCallback
from transformers.modeling_outputs import SequenceClassifierOutput

from .cache import CACHE_COLUMN, add_teacher_logits
from .checkpoints import (
    GracefulStop,
    is_complete_checkpoint,
    last_complete_checkpoint,
    quarantine_incomplete_checkpoints,
)
from .config import DistillationConfig
from .losses import attention_loss, hard_label_loss, hidden_state_loss, soft_kl_loss
from .student import default_layer_map, forward_input_names, num_encoder_layers

PROJECTIONS_FILE = "nlpkd_projections.pt"
LOSS_COMPONENTS = ("kd", "ce", "hidden", "attn")


def _is_generic_label_map(id2label: Mapping[int, str]) -> bool:
    return all(str(name) == f"LABEL_{i}" for i, name in id2label.items())


def check_compatible(student: PreTrainedModel, teacher: PreTrainedModel) -> None:
    """Raise a `ValueError` that says what to do when the teacher cannot teach this student.

    Checks the vocabulary (both models must read the same token ids), the number of labels and, when both models
    name their labels, the label maps (the logits must mean the same classes in the same order).

    Args:
        student (`PreTrainedModel`): the model being trained.
        teacher (`PreTrainedModel`): the fine-tuned teacher.
    """
    s_cfg, t_cfg = student.config, teacher.config
    if getattr(s_cfg, "vocab_size", None) != getattr(t_cfg, "vocab_size", None):
        raise ValueError(
            f"Teacher and student vocabularies differ (teacher vocab_size={t_cfg.vocab_size}, student "
            f"vocab_size={s_cfg.vocab_size}): both models must read the same token ids. Build the student "
            "from the teacher with nlpkd.create_student, or use a student with the teacher's tokenizer."
        )
    if s_cfg.num_labels != t_cfg.num_labels:
        raise ValueError(
            f"Teacher has num_labels={t_cfg.num_labels} but student has num_labels={s_cfg.num_labels}: the "
            "logits must have the same classes. Load the student with num_labels matching the teacher."
        )
    s_map, t_map = dict(s_cfg.id2label), dict(t_cfg.id2label)
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


class NonFiniteLossError(ValueError):
    """A loss component or the teacher's output became NaN or infinite; training stops instead of going on."""


class _ProjectionCallback(TrainerCallback):
    """Keeps the learned width projections in step with the student: synced across processes before each
    optimizer step (they live outside the DDP-wrapped model), their gradients cleared after it, and saved
    inside every checkpoint."""

    def __init__(self, trainer: DistillationTrainer) -> None:
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        accelerator = self.trainer.accelerator
        if accelerator.num_processes > 1:
            for param in self.trainer.projections.parameters():
                if param.grad is not None:
                    param.grad = accelerator.reduce(param.grad, reduction="mean")

    def on_step_end(self, args, state, control, **kwargs):
        # The Trainer zeroes the model's gradients after each optimizer step; these live outside the model.
        self.trainer.projections.zero_grad(set_to_none=True)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if os.path.isdir(checkpoint):
                torch.save(
                    self.trainer.projections.state_dict(),
                    os.path.join(checkpoint, PROJECTIONS_FILE),
                )


class DistillationTrainer(Trainer):
    r"""
    A [`~transformers.Trainer`] that trains `model` (the student) to imitate a frozen `teacher`.

    The loss is `alpha_kd * kd + alpha_ce * ce + alpha_hidden * hidden + alpha_attn * attn` with the weights,
    temperature and variants of [`DistillationConfig`]; each component is logged on its own (`kd`, `ce`,
    `hidden`, `attn` in training logs, `eval_kd`, ... in evaluation). Everything else is the ordinary Trainer:
    datasets, collators, callbacks, checkpoints, `push_to_hub`, Accelerate (multi-GPU, DeepSpeed, FSDP, fp16/bf16).

    The teacher is frozen, kept in `eval()` mode, run under `torch.no_grad()`, placed on the student's device by
    Accelerate in evaluation mode (through the DeepSpeed engine under ZeRO-3), never given to the optimizer and
    never written into checkpoints.

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
        if isinstance(teacher, str):
            from transformers import AutoModelForSequenceClassification

            from .api import check_checkpoint

            check_checkpoint(teacher, "teacher")
            name = teacher
            teacher, info = AutoModelForSequenceClassification.from_pretrained(
                name, output_loading_info=True
            )
            if info["missing_keys"]:
                raise ValueError(
                    f"The teacher {name} has no trained classification head (weights not in the "
                    f"checkpoint: {sorted(info['missing_keys'])[:4]}): fine-tune it on the task "
                    "first, or pass a fine-tuned teacher."
                )
        if teacher is model:
            raise ValueError(
                "The teacher and the student are the same object: pass a separate student."
            )
        check_compatible(model, teacher)
        check_tokenizers_match(kwargs.get("processing_class"), teacher_processing_class)

        if args.teacher_dtype not in (None, "auto"):
            teacher = teacher.to(getattr(torch, args.teacher_dtype))
        teacher.eval()
        teacher.requires_grad_(False)
        if args.alpha_attn > 0:
            # SDPA and flash kernels never materialise attention probabilities.
            for m in (model, teacher):
                if m.config._attn_implementation != "eager":
                    m.set_attn_implementation("eager")

        self.layer_map = self._resolve_layer_map(model, teacher, args)
        self.projections = self._build_projections(model, teacher, args)

        super().__init__(model=model, args=args, **kwargs)
        # The Trainer checks that the model accepts `num_items_in_batch` to decide on loss scaling; ours does not.
        self.model_accepts_loss_kwargs = False

        self._student_keys = forward_input_names(self.model) or set()
        self._teacher_keys = forward_input_names(teacher) or set()
        # The Trainer keeps only the columns of the student's forward; the teacher may need more
        # (a BERT teacher reads token_type_ids behind a DistilBERT student).
        self._signature_columns = sorted(
            self._student_keys | self._teacher_keys | {"label", "label_ids", "labels", CACHE_COLUMN}
        )

        self.teacher = self._prepare_teacher(teacher)
        self._check_intermediate_outputs(teacher)
        if args.teacher_cache and self.train_dataset is not None:
            self.train_dataset = self._with_teacher_logits(self.train_dataset)
        if len(self.projections) > 0:
            self.projections.to(self.args.device)
            self.add_callback(_ProjectionCallback(self))
        self.stopped_by_signal: str | None = None
        self._component_sums: dict[str, dict[str, torch.Tensor]] = {"train": {}, "eval": {}}
        self._component_counts: dict[str, int] = {"train": 0, "eval": 0}

    # ---- set-up -------------------------------------------------------------------------------

    @staticmethod
    def _resolve_layer_map(
        student: PreTrainedModel, teacher: PreTrainedModel, args: DistillationConfig
    ) -> dict[int, int]:
        if args.alpha_hidden == 0 and args.alpha_attn == 0:
            return {}
        layer_map = args.layer_map or default_layer_map(student, teacher)
        n_student, n_teacher = num_encoder_layers(student), num_encoder_layers(teacher)
        bad = {
            s: t for s, t in layer_map.items() if not (0 <= s < n_student and 0 <= t < n_teacher)
        }
        if bad:
            raise ValueError(
                f"layer_map entries {bad} are out of range: student layers are 0..{n_student - 1} and teacher "
                f"layers 0..{n_teacher - 1} (0-based encoder layers)."
            )
        return dict(layer_map)

    def _build_projections(
        self, student: PreTrainedModel, teacher: PreTrainedModel, args: DistillationConfig
    ) -> nn.ModuleList:
        s_width, t_width = student.config.hidden_size, teacher.config.hidden_size
        if args.alpha_hidden == 0 or s_width == t_width:
            return nn.ModuleList()
        if not args.hidden_projection:
            raise ValueError(
                f"The hidden-state loss compares widths {s_width} (student) and {t_width} (teacher): set "
                "hidden_projection=True to learn a projection, or alpha_hidden=0 to turn the loss off."
            )
        projections = nn.ModuleList(nn.Linear(s_width, t_width) for _ in self.layer_map)
        return projections.to(dtype=student.dtype)

    def _prepare_teacher(self, teacher: PreTrainedModel) -> nn.Module:
        if self.is_deepspeed_enabled:
            return self._prepare_deepspeed_teacher(teacher)
        if self.is_fsdp_enabled:
            # FSDP places only what it wraps, and the frozen teacher is not wrapped.
            teacher.to(self.args.device)
        return self.accelerator.prepare_model(teacher, evaluation_mode=True)

    def _prepare_deepspeed_teacher(self, teacher: PreTrainedModel) -> nn.Module:
        # Under ZeRO-3 the teacher's parameters must be partitioned like the student's, so it needs its own
        # inference engine; other stages keep a plain replica on each device.
        import deepspeed

        plugin = self.accelerator.state.deepspeed_plugin
        config = copy.deepcopy(plugin.deepspeed_config)
        stage = config.get("zero_optimization", {}).get("stage", 0)
        if stage != 3:
            teacher.to(self.args.device)
            return teacher
        hidden = teacher.config.hidden_size
        zero = config["zero_optimization"]
        for key, value in (
            ("reduce_bucket_size", hidden * hidden),
            ("stage3_param_persistence_threshold", 10 * hidden),
            ("stage3_prefetch_bucket_size", int(0.9 * hidden * hidden)),
        ):
            if zero.get(key) == "auto":
                zero[key] = value
        for key in ("optimizer", "scheduler"):
            config.pop(key, None)
        if config.get("train_micro_batch_size_per_gpu") == "auto":
            config["train_micro_batch_size_per_gpu"] = self.args.per_device_train_batch_size
        if config.get("train_batch_size") == "auto":
            config.pop("train_batch_size")
        if config.get("gradient_accumulation_steps") == "auto":
            config["gradient_accumulation_steps"] = self.args.gradient_accumulation_steps
        engine, *_ = deepspeed.initialize(model=teacher, config=config)
        engine.eval()
        return engine

    def _with_teacher_logits(self, dataset: datasets.Dataset) -> datasets.Dataset:
        if not isinstance(dataset, datasets.Dataset):
            raise ValueError(
                f"teacher_cache needs the training set as a datasets.Dataset (got {type(dataset).__name__}), "
                "so the logits can be stored as a column; convert it with datasets.Dataset.from_dict/from_pandas."
            )
        cache_dir = self.args.teacher_cache_dir or os.path.join(
            self.args.output_dir, "teacher_cache"
        )
        # The main process writes the Arrow file; the others then read it instead of recomputing.
        with self.args.main_process_first(desc="teacher logits cache"):
            return add_teacher_logits(
                dataset,
                self.teacher,
                self.data_collator,
                self._teacher_keys,
                batch_size=self.args.per_device_eval_batch_size,
                device=self.args.device,
                cache_dir=cache_dir,
            )

    def _check_intermediate_outputs(self, teacher: PreTrainedModel) -> None:
        """Probe both models once so a family that cannot give per-layer outputs fails before training."""
        wants = {
            "hidden_states": self.args.alpha_hidden > 0,
            "attentions": self.args.alpha_attn > 0,
        }
        if not any(wants.values()):
            return
        for role, model in (("student", self.model), ("teacher", teacher)):
            device = next(model.parameters()).device
            probe = {"input_ids": torch.tensor([[1, 2, 3]], device=device)}
            was_training = model.training
            model.eval()
            with torch.no_grad():
                out = model(
                    **probe,
                    output_hidden_states=wants["hidden_states"],
                    output_attentions=wants["attentions"],
                )
            model.train(was_training)
            for name, wanted in wants.items():
                if wanted and not getattr(out, name, None):
                    raise ValueError(
                        f"The {role} ({type(model).__name__}, attention implementation "
                        f"{model.config._attn_implementation!r}) returns no per-layer {name}, which the "
                        f"{'attention' if name == 'attentions' else 'hidden-state'} loss needs. Load it "
                        "with attn_implementation='eager', or set "
                        f"{'alpha_attn' if name == 'attentions' else 'alpha_hidden'}=0."
                    )

    # ---- optimisation -------------------------------------------------------------------------

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(model)
        if len(self.projections) > 0 and not any(
            p is q
            for group in optimizer.param_groups
            for p in group["params"]
            for q in self.projections.parameters()
        ):
            optimizer.add_param_group(
                {
                    "params": list(self.projections.parameters()),
                    "weight_decay": self.args.weight_decay,
                }
            )
        return optimizer

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """[`~transformers.Trainer.train`], made safe to interrupt and resume.

        Half-written checkpoints (a process killed while saving) are moved aside as `checkpoint-N.incomplete`;
        `resume_from_checkpoint=True` takes the newest complete one; learned projections are restored with the
        student. SIGINT/SIGTERM save a checkpoint at the end of the current step and stop:
        `self.stopped_by_signal` then names the signal.
        """
        if self.args.should_save:
            for path in quarantine_incomplete_checkpoints(self.args.output_dir):
                print(f"nlpkd: moved the half-written checkpoint aside: {path}", flush=True)
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"resume_from_checkpoint=True but {self.args.output_dir} holds no complete checkpoint: "
                    "start without it, or give the path of a checkpoint-N folder."
                )
        elif resume_from_checkpoint and not is_complete_checkpoint(resume_from_checkpoint):
            raise ValueError(
                f"{resume_from_checkpoint} is not a complete checkpoint (no trainer_state.json: it was "
                "interrupted while saving or is not a checkpoint): resume from an earlier checkpoint-N."
            )
        if resume_from_checkpoint and len(self.projections) > 0:
            path = os.path.join(resume_from_checkpoint, PROJECTIONS_FILE)
            if not os.path.isfile(path):
                raise ValueError(
                    f"{resume_from_checkpoint} has no {PROJECTIONS_FILE}: it was not written by a "
                    "DistillationTrainer with the same hidden-state projections."
                )
            self.projections.load_state_dict(
                torch.load(path, map_location=self.args.device, weights_only=True)
            )
        stopper = GracefulStop(self.accelerator)
        self.add_callback(stopper)
        try:
            with stopper.installed():
                output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        finally:
            self.remove_callback(stopper)
        self.stopped_by_signal = stopper.received
        return output

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
        extra = {}
        if want_hidden:
            extra["output_hidden_states"] = True
        if want_attn:
            extra["output_attentions"] = True

        student_inputs = {k: v for k, v in inputs.items() if k in self._student_keys}
        teacher_inputs = {k: v for k, v in inputs.items() if k in self._teacher_keys}
        student_out = model(**student_inputs, **extra)
        cached = inputs.get(CACHE_COLUMN)
        if cached is not None and not extra:
            teacher_out = SequenceClassifierOutput(logits=cached)
        else:
            with torch.no_grad():
                teacher_out = self.teacher(**teacher_inputs, **extra)

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
            # hidden_states[0] is the embedding output, so encoder layer i is at i + 1.
            components["hidden"] = hidden_state_loss(
                [student_out.hidden_states[s + 1] for s in self.layer_map],
                [teacher_out.hidden_states[t + 1] for t in self.layer_map.values()],
                attention_mask=mask,
                loss_type=args.hidden_loss,
                projections=list(self.projections) if len(self.projections) > 0 else None,
            )
        if want_attn:
            components["attn"] = attention_loss(
                [student_out.attentions[s] for s in self.layer_map],
                [teacher_out.attentions[t] for t in self.layer_map.values()],
                attention_mask=mask,
                loss_type=args.attn_loss,
            )
        weights = args.loss_weights
        loss = sum(weights[name] * value for name, value in components.items())
        if not torch.is_tensor(loss):
            raise ValueError(
                "No loss component could be computed: alpha_ce is the only weight > 0 but the batch has no "
                "labels. Add labels to the data or set alpha_kd > 0."
            )
        self._check_finite(loss, components, teacher_out.logits)
        self._record(components, "train" if model.training else "eval")

        if return_outputs:
            # Only the logits: the Trainer treats every other output of evaluation as predictions.
            return loss, SequenceClassifierOutput(logits=student_out.logits)
        return loss

    def _check_finite(
        self,
        loss: torch.Tensor,
        components: Mapping[str, torch.Tensor],
        teacher_logits: torch.Tensor,
    ) -> None:
        if torch.isfinite(loss):
            return
        step = self.state.global_step
        if not torch.isfinite(teacher_logits).all():
            raise NonFiniteLossError(
                f"The teacher's logits are NaN or infinite at step {step}: the teacher checkpoint or this "
                "data is broken (check it with a forward pass on a few examples; under fp16 try "
                "teacher_dtype='float32' or bf16)."
            )
        bad = [name for name, value in components.items() if not torch.isfinite(value)]
        raise NonFiniteLossError(
            f"Non-finite distillation loss at step {step}: component(s) {', '.join(bad) or 'total'} = "
            f"{', '.join(str(components[n].item()) for n in bad)}. Under fp16 try bf16 or a lower learning "
            "rate; with alpha_attn > 0 try attn_loss='mse'."
        )

    def _record(self, components: Mapping[str, torch.Tensor], mode: str) -> None:
        sums = self._component_sums[mode]
        for name, value in components.items():
            value = value.detach().float()
            sums[name] = sums[name] + value if name in sums else value
        self._component_counts[mode] += 1

    # ---- the Hub -----------------------------------------------------------------------------

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
    ) -> None:
        """Write nlpkd's model card as `README.md` in `output_dir`; `push_to_hub` uploads it.

        The card names the teacher, the layers the student was built from, the loss settings and the
        student's results: those of `metrics.json` in `output_dir` when the run wrote one (the `nlpkd`
        command and `DistillationResult.save` do), else the last evaluation in the log history. Before any
        evaluation it falls back to the Trainer's own card, tagged `distillation` and `nlpkd`.

        Args:
            language (`str`, *optional*): passed to the Trainer's card when it is used.
            license (`str`, *optional*): the license in the card's metadata.
            tags (`str` or `list[str]`, *optional*): passed to the Trainer's card when it is used.
            model_name (`str`, *optional*): the name in the card.
            finetuned_from (`str`, *optional*): the teacher's name, when its config does not say it.
            tasks (`str` or `list[str]`, *optional*): passed to the Trainer's card when it is used.
            dataset_tags (`str` or `list[str]`, *optional*): passed to the Trainer's card when it is used.
            dataset (`str` or `list[str]`, *optional*): the Hub dataset the student was trained on.
            dataset_args (`str` or `list[str]`, *optional*): passed to the Trainer's card when it is used.
        """
        if not self.is_world_process_zero():
            return
        from .api import distillation_args_summary
        from .hub import build_model_card, write_model_card

        report = self._card_report()
        teacher_name = (
            finetuned_from or getattr(self.teacher_model.config, "_name_or_path", "") or "teacher"
        )
        if report is None:
            extra = [tags] if isinstance(tags, str) else list(tags or [])
            super().create_model_card(
                language=language,
                license=license,
                tags=[*extra, "distillation", "nlpkd"],
                model_name=model_name,
                finetuned_from=teacher_name,
                tasks=tasks,
                dataset_tags=dataset_tags,
                dataset=dataset,
                dataset_args=dataset_args,
            )
            return
        student = self.accelerator.unwrap_model(self.model)
        card = build_model_card(
            report,
            teacher_name=teacher_name,
            teacher_layers=getattr(student.config, "nlpkd_teacher_layers", None),
            student_layers=num_encoder_layers(student),
            loss_config=distillation_args_summary(self.args),
            dataset_name=dataset if isinstance(dataset, str) else None,
            license=license,
            model_name=model_name,
        )
        write_model_card(card, self.args.output_dir)

    @property
    def teacher_model(self) -> PreTrainedModel:
        """The teacher as a `PreTrainedModel`, whatever wraps it for distributed inference."""
        return self.accelerator.unwrap_model(self.teacher)

    def _card_report(self) -> dict[str, Any] | None:
        path = os.path.join(self.args.output_dir, "metrics.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                report = json.load(handle)
            if report.get("student") and report.get("main_split") in report["student"]:
                return report
        # Fall back on the last evaluation: its metrics, less losses, components and timings.
        skip = {
            "loss",
            "runtime",
            "samples_per_second",
            "steps_per_second",
            "model_preparation_time",
            *LOSS_COMPONENTS,
        }
        for log in reversed(self.state.log_history):
            metrics = {
                key[len("eval_") :]: value
                for key, value in log.items()
                if key.startswith("eval_") and key[len("eval_") :] not in skip
            }
            if metrics:
                return {
                    "student": {"validation": metrics},
                    "main_split": "validation",
                    "main_metric": next(iter(metrics)),
                }
        return None

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
        self._component_sums["eval"], self._component_counts["eval"] = {}, 0
        return super().evaluate(*args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self._drain_components("train", prefix=""))
        else:
            eval_loss_key = next(
                (k for k in logs if k.startswith("eval") and k.endswith("_loss")), None
            )
            if eval_loss_key is not None:
                logs.update(self._drain_components("eval", prefix=eval_loss_key[: -len("loss")]))
        super().log(logs, start_time)

    def _drain_components(self, mode: str, prefix: str) -> dict[str, float]:
        """Average each component over the logging window (across processes) and reset the window."""
        sums, count = self._component_sums[mode], self._component_counts[mode]
        self._component_sums[mode], self._component_counts[mode] = {}, 0
        names = [name for name in LOSS_COMPONENTS if self.args.loss_weights[name] > 0]
        if not names:
            return {}
        device = self.args.device
        # Every process must take part in the reduction with the same tensor shape, even one that skipped
        # a component (e.g. no labels); -1 in the count column marks "absent".
        totals = torch.stack(
            [
                torch.stack(
                    [
                        sums[n].to(device) if n in sums else torch.zeros((), device=device),
                        torch.tensor(float(count if n in sums else 0), device=device),
                    ]
                )
                for n in names
            ]
        )
        if self.accelerator.num_processes > 1:
            totals = self.accelerator.reduce(totals, reduction="sum")
        return {
            f"{prefix}{name}": round(total / n, 6)
            for name, (total, n) in zip(names, totals.tolist(), strict=True)
            if n > 0
        }
