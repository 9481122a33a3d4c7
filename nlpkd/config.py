"""`DistillationConfig`: `TrainingArguments` plus the knobs of knowledge distillation."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import TrainingArguments

KD_LOSSES = ("forward_kl", "reverse_kl", "symmetric_kl", "jsd", "mse")


HIDDEN_LOSSES = ("mse", "cosine", "pkd")


ATTN_LOSSES = ("kl", "mse", "mse_probs")


TEACHER_DTYPES = ("auto", "float32", "float16", "bfloat16")


# The loss components, as they are logged; each has a weight `alpha_<name>`.
LOSS_COMPONENTS = ("kd", "ce", "hidden", "attn", "relation")


# The fields that define the loss, as reports and model cards list them.
LOSS_SETTINGS = (
    "temperature",
    "kd_loss",
    "jsd_beta",
    "alpha_kd",
    "alpha_ce",
    "alpha_hidden",
    "alpha_attn",
    "alpha_relation",
    "hidden_loss",
    "hidden_embeddings",
    "attn_loss",
    "layer_map",
    "relation_teacher_layer",
    "num_relation_heads",
)


def parse_layer_map(value: Any) -> dict[int, int] | None:
    """Normalise a layer map to `{student_layer: teacher_layer}` with 0-based encoder layer indices.

    Args:
        value (`dict`, `list`, `str` or `None`):
            A mapping (keys may be strings, as JSON gives them), a list (`[1, 3, 5]` maps student layer `i` to
            the `i`-th entry), a JSON string of either, or the command-line form `"0:1,1:3,2:5"`.

    Returns:
        `dict[int, int]` or `None` when `value` is `None` or empty.
    """
    if value is None or value == "" or value == {} or value == []:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "[{":
            value = json.loads(text)
        else:
            try:
                pairs = [item.split(":") for item in text.split(",") if item.strip()]
                value = {int(s): int(t) for s, t in pairs}
            except ValueError as err:
                raise ValueError(
                    f"layer_map={text!r} is not understood: use 'student:teacher' pairs such as "
                    "'0:1,1:3,2:5', a JSON object, or a JSON list of teacher layers."
                ) from err
    if isinstance(value, (list, tuple)):
        value = dict(enumerate(value))
    if not isinstance(value, dict):
        raise ValueError(
            f"layer_map must be a dict, a list or a string, got {type(value).__name__}."
        )
    try:
        mapping = {int(s): int(t) for s, t in value.items()}
    except (TypeError, ValueError) as err:
        raise ValueError(f"layer_map entries must be integers, got {value!r}.") from err
    negative = {s: t for s, t in mapping.items() if s < 0 or t < 0}
    if negative:
        raise ValueError(
            f"layer_map indices must be >= 0 (0-based encoder layers), got {negative}."
        )
    return dict(sorted(mapping.items()))


def plain_training_arguments(args: TrainingArguments, **overrides: Any) -> TrainingArguments:
    """A plain `TrainingArguments` with the settings of `args` (any subclass), updated with `overrides`.

    Args:
        args (`TrainingArguments`): e.g. a [`DistillationConfig`].
        **overrides: fields to change, e.g. `eval_strategy="no"`.
    """
    values = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingArguments) if f.init
    }
    values.update(overrides)
    return TrainingArguments(**values)


@dataclass
class DistillationConfig(TrainingArguments):
    r"""
    [`~transformers.TrainingArguments`] for knowledge distillation. Every field of `TrainingArguments` works as
    usual (batch size, learning rate, `fp16`/`bf16`, `gradient_accumulation_steps`, `push_to_hub`, ...); the
    fields below set the distillation loss

    `loss = alpha_kd * kd + alpha_ce * ce + alpha_hidden * hidden + alpha_attn * attn + alpha_relation * relation`

    where `kd` is `T^2 * KL(softmax(teacher / T) || softmax(student / T))` by default (MSE to the teacher
    prediction for regression heads), `ce` the hard-label loss, `hidden` the hidden-state loss and `attn` the
    attention-map loss over the layers of `layer_map`, and `relation` MiniLM's self-attention relation loss.

    Args:
        temperature (`float`, *optional*, defaults to `2.0`):
            Softmax temperature `T` of the soft-target term; must be > 0. The term is multiplied by `T^2` so its
            gradient scale does not depend on `T`.
        kd_loss (`str`, *optional*, defaults to `"forward_kl"`):
            The soft-target term: `"forward_kl"` (`T^2 * KL(teacher || student)`, Hinton et al.), `"reverse_kl"`
            (`T^2 * KL(student || teacher)`), `"symmetric_kl"` (the mean of the two, torchtune's `SymmetricKLLoss`),
            `"jsd"` (generalised Jensen-Shannon with `jsd_beta`, GKD) or `"mse"` (squared distance between the raw
            logits, Kim et al. 2021; no temperature).
        jsd_beta (`float`, *optional*, defaults to `0.5`):
            The mixture weight of `kd_loss="jsd"`, in (0, 1): `beta * p_teacher + (1 - beta) * p_student`.
        alpha_kd (`float`, *optional*, defaults to `0.5`):
            Weight of the soft-target (teacher logits) term.
        alpha_ce (`float`, *optional*, defaults to `0.5`):
            Weight of the hard-label term (cross-entropy, or MSE for regression). Honours
            `label_smoothing_factor`.
        alpha_hidden (`float`, *optional*, defaults to `0.0`):
            Weight of the hidden-state matching term (off by default).
        alpha_attn (`float`, *optional*, defaults to `0.0`):
            Weight of the attention-map matching term (off by default). Turning it on switches both models to
            eager attention, because SDPA does not return attention weights.
        alpha_relation (`float`, *optional*, defaults to `0.0`):
            Weight of the MiniLM/MiniLMv2 self-attention relation term (off by default): KL between the
            query-query, key-key and value-value relations of the student's last layer and the teacher's
            `relation_teacher_layer`, split into `num_relation_heads` heads. It needs no projection, so the
            widths and head counts of student and teacher may differ.
        hidden_loss (`str`, *optional*, defaults to `"mse"`):
            `"mse"` or `"cosine"` (1 - cosine similarity), averaged over non-padding tokens, or `"pkd"` (Patient
            KD: squared distance between the L2-normalised `[CLS]` vectors). Pairs of layers are averaged, where
            TinyBERT sums them: `alpha_hidden = number of pairs` reproduces TinyBERT's scale.
        hidden_embeddings (`bool`, *optional*, defaults to `False`):
            Also compare the embedding outputs (TinyBERT's embedding-layer term) in the hidden-state loss.
        attn_loss (`str`, *optional*, defaults to `"kl"`):
            `"kl"` (KL(teacher || student) over keys, MiniLM), `"mse"` (TinyBERT-style MSE of the attention
            logits, taken as log-probabilities: the scores up to each row's constant) or `"mse_probs"` (MSE of
            the probabilities), masked on query and key padding.
        layer_map (`dict[int, int]` or `str`, *optional*):
            Student encoder layer -> teacher encoder layer (0-based) for the hidden and attention terms. Defaults
            to TinyBERT's end-of-block map ([`default_layer_map`]): student layer `i` of `S` meets teacher layer
            `round((i + 1) T / S) - 1` of `T`, so the last student layer meets the last teacher layer, whichever
            teacher layers the student was built from. On the command line: `"0:1,1:3,2:5"`.
        relation_teacher_layer (`int`, *optional*, defaults to `-1`):
            The teacher layer of the relation term (0-based; negative counts from the end: `-1` is the last, as in
            MiniLM; MiniLMv2 takes an upper-middle layer of large teachers).
        num_relation_heads (`int`, *optional*):
            Relation heads of the relation term; it must divide both hidden sizes. Defaults to the teacher's
            number of attention heads.
        eval_distillation_loss (`bool`, *optional*, defaults to `False`):
            Run the teacher in evaluation too and report the distillation loss and its components (`eval_kd`,
            ...). Off, evaluation runs the student alone (2 to 3 times faster) and `eval_loss` is its hard-label
            loss.
        hidden_projection (`bool`, *optional*, defaults to `True`):
            When student and teacher hidden sizes differ, learn a linear projection per mapped layer (trained
            with the student, never saved in it). With `False`, different widths are an error.
        teacher_cache (`bool`, *optional*, defaults to `False`):
            Compute the teacher's logits once over the training set and reuse them on every epoch (and across
            runs while teacher, data and tokenization are unchanged). Logits only: the hidden-state and
            attention losses need the live teacher, so they cannot be combined with it.
        teacher_cache_dir (`str`, *optional*):
            Folder of the cache for a training set that lives in memory; by default a folder of the Hugging Face
            datasets cache (`HF_DATASETS_CACHE/nlpkd_teacher_logits`), shared by every run, so another run with
            the same teacher and data reuses the logits whatever its `output_dir`. A dataset read from files
            keeps the cache beside its own `datasets` cache files.
        teacher_weights (`list[float]`, *optional*):
            With several teachers, the weight of each one's soft targets (normalised to sum to 1); equal weights
            by default.
        teacher_ensemble (`str`, *optional*, defaults to `"probs"`):
            With several teachers, average their probabilities at temperature `T` (`"probs"`) or their logits
            (`"logits"`). Hidden states and attentions always come from the first teacher.
        teacher_dtype (`str`, *optional*):
            Cast the teacher to this dtype (`"float16"`, `"bfloat16"`, `"float32"`); `None` or `"auto"` keeps
            it as given. A half-precision teacher halves its memory and time; the losses stay in float32.
    """

    # The title of these fields in `nlpkd distill --help`, after nlpkd's own groups.
    _argument_group_name = (
        "distillation and training (DistillationConfig: TrainingArguments and the loss)"
    )

    temperature: float = field(
        default=2.0, metadata={"help": "Softmax temperature T of the soft-target term (> 0)."}
    )
    kd_loss: Literal["forward_kl", "reverse_kl", "symmetric_kl", "jsd", "mse"] = field(
        default="forward_kl",
        metadata={
            "help": "Soft-target term: 'forward_kl' (Hinton), 'reverse_kl', 'symmetric_kl' (their mean), 'jsd' "
            "(GKD, with jsd_beta) or 'mse' (on logits)."
        },
    )
    jsd_beta: float = field(
        default=0.5, metadata={"help": "Mixture weight of kd_loss='jsd', in (0, 1)."}
    )
    alpha_kd: float = field(default=0.5, metadata={"help": "Weight of the soft-target term."})
    alpha_ce: float = field(default=0.5, metadata={"help": "Weight of the hard-label term."})
    alpha_hidden: float = field(
        default=0.0, metadata={"help": "Weight of the hidden-state matching term (0 = off)."}
    )
    alpha_attn: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the attention-map matching term (0 = off; forces eager attention)."
        },
    )
    alpha_relation: float = field(
        default=0.0,
        metadata={"help": "Weight of the MiniLM self-attention relation term (0 = off)."},
    )
    hidden_loss: Literal["mse", "cosine", "pkd"] = field(
        default="mse",
        metadata={
            "help": "Hidden-state loss: 'mse', 'cosine' or 'pkd' (normalised [CLS] vectors)."
        },
    )
    hidden_embeddings: bool = field(
        default=False,
        metadata={
            "help": "Also compare the embedding outputs in the hidden-state loss (TinyBERT)."
        },
    )
    attn_loss: Literal["kl", "mse", "mse_probs"] = field(
        default="kl",
        metadata={
            "help": "Attention-map loss: 'kl' (MiniLM), 'mse' (TinyBERT: MSE of attention logits, taken as "
            "log-probabilities) or 'mse_probs' (MSE of probabilities)."
        },
    )
    layer_map: dict | str | None = field(
        default=None,
        metadata={
            "help": "Student layer -> teacher layer for the hidden/attention terms, e.g. '0:1,1:3,2:5' "
            "(0-based). Default: TinyBERT's end-of-block map, student layer i to teacher layer round((i+1)T/S)-1 "
            "(the last meets the last)."
        },
    )
    relation_teacher_layer: int = field(
        default=-1,
        metadata={
            "help": "Teacher layer of the relation term (negative: from the end; -1 = last)."
        },
    )
    num_relation_heads: int | None = field(
        default=None,
        metadata={
            "help": "Relation heads of the relation term (default: the teacher's attention heads)."
        },
    )
    eval_distillation_loss: bool = field(
        default=False,
        metadata={
            "help": "Run the teacher in evaluation too and log the distillation loss (default: the student "
            "alone, faster)."
        },
    )
    hidden_projection: bool = field(
        default=True,
        metadata={"help": "Learn a linear projection when student and teacher widths differ."},
    )
    teacher_cache: bool = field(
        default=False,
        metadata={
            "help": "Compute the teacher's logits once over the training set and reuse them every epoch "
            "(logits only: not with alpha_hidden or alpha_attn)."
        },
    )
    teacher_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Cache folder for an in-memory training set (default: HF_DATASETS_CACHE/nlpkd_teacher_logits, "
            "shared by every run)."
        },
    )
    teacher_weights: list[float] | None = field(
        default=None,
        metadata={"help": "Weights of several teachers' soft targets (default: equal)."},
    )
    teacher_ensemble: Literal["probs", "logits"] = field(
        default="probs",
        metadata={
            "help": "Average several teachers' probabilities ('probs') or logits ('logits')."
        },
    )
    teacher_dtype: str | None = field(
        default=None,
        metadata={
            "help": "Cast the teacher to 'float16', 'bfloat16' or 'float32' (default: as given)."
        },
    )

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}.")
        weights = {f"alpha_{name}": getattr(self, f"alpha_{name}") for name in LOSS_COMPONENTS}
        for name, weight in weights.items():
            if not weight >= 0:
                raise ValueError(f"{name} must be >= 0, got {weight}.")
        if sum(weights.values()) == 0:
            raise ValueError(
                "alpha_kd, alpha_ce, alpha_hidden, alpha_attn and alpha_relation are all 0: set at least one "
                "loss weight > 0."
            )
        if self.kd_loss not in KD_LOSSES:
            raise ValueError(f"kd_loss must be one of {KD_LOSSES}, got {self.kd_loss!r}.")
        if self.kd_loss == "jsd" and not 0 < self.jsd_beta < 1:
            raise ValueError(
                f"jsd_beta must be in (0, 1), got {self.jsd_beta}: its limits are kd_loss='forward_kl' (0) "
                "and 'reverse_kl' (1)."
            )
        if self.teacher_ensemble not in ("probs", "logits"):
            raise ValueError(
                f"teacher_ensemble must be 'probs' or 'logits', got {self.teacher_ensemble!r}."
            )
        if self.teacher_weights is not None and (
            any(w < 0 for w in self.teacher_weights) or sum(self.teacher_weights) <= 0
        ):
            raise ValueError(
                f"teacher_weights must be >= 0 and not all 0, got {self.teacher_weights}."
            )
        if self.num_relation_heads is not None and self.num_relation_heads < 1:
            raise ValueError(f"num_relation_heads must be >= 1, got {self.num_relation_heads}.")
        if self.hidden_loss not in HIDDEN_LOSSES:
            raise ValueError(
                f"hidden_loss must be one of {HIDDEN_LOSSES}, got {self.hidden_loss!r}."
            )
        if self.attn_loss not in ATTN_LOSSES:
            raise ValueError(f"attn_loss must be one of {ATTN_LOSSES}, got {self.attn_loss!r}.")
        if self.teacher_dtype is not None and self.teacher_dtype not in TEACHER_DTYPES:
            raise ValueError(
                f"teacher_dtype must be one of {TEACHER_DTYPES} or None, got {self.teacher_dtype!r}."
            )
        if self.teacher_cache and (
            self.alpha_hidden > 0 or self.alpha_attn > 0 or self.alpha_relation > 0
        ):
            raise ValueError(
                "teacher_cache stores the teacher's logits only, but alpha_hidden/alpha_attn/alpha_relation > 0 "
                "need its hidden states, attentions or projections on every step: set teacher_cache=False, or "
                "those weights to 0."
            )
        self.layer_map = parse_layer_map(self.layer_map)
        super().__post_init__()

    @property
    def loss_weights(self) -> dict[str, float]:
        """The weight of each loss component, keyed as they are logged (`kd`, `ce`, `hidden`, `attn`,
        `relation`)."""
        return {name: getattr(self, f"alpha_{name}") for name in LOSS_COMPONENTS}

    def to_training_arguments(self, **overrides: Any) -> TrainingArguments:
        """A plain `TrainingArguments` with the same settings (and `overrides`), for the steps of a job that
        need no distillation fields: fine-tuning the teacher, evaluating a model."""
        return plain_training_arguments(self, **overrides)

    def loss_settings(self) -> dict[str, Any]:
        """The distillation settings that a report and a model card state, in that order."""
        return {name: getattr(self, name) for name in LOSS_SETTINGS}
