"""Property tests for the loss terms: sign, zero at equality, padding and order invariance,
gradient flow (student only), and finiteness for extreme and half-precision inputs."""

import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.testing import assert_close

from nlpkd.losses import (
    attention_loss,
    hard_label_loss,
    hidden_state_loss,
    logit_distillation_loss,
    pkd_loss,
    relation_loss,
    soft_kl_loss,
)

LOGIT_LOSS_TYPES = ("forward_kl", "reverse_kl", "symmetric_kl", "jsd", "mse")

PROPERTY_SETTINGS = settings(max_examples=50, deadline=None)

# Float32 round-off can push a mathematically non-negative loss a hair below zero.
ROUND_OFF = 1e-6


@dataclass
class Batch:
    mask: torch.Tensor  # (batch, seq), 1 = real token
    labels: torch.Tensor  # (batch,), some -100
    student_logits: torch.Tensor
    teacher_logits: torch.Tensor
    student_hidden: list[torch.Tensor]
    teacher_hidden: list[torch.Tensor]
    student_attn: list[torch.Tensor]
    teacher_attn: list[torch.Tensor]
    temperature: float
    projection: nn.Linear | None
    beta: float  # JSD mixture weight
    student_tokens: torch.Tensor  # (batch, seq, classes): token logits, masked by `mask`
    teacher_tokens: torch.Tensor
    relation_heads: int
    student_rel: list[torch.Tensor]  # (batch, seq, heads * d): e.g. Q, K, V projections
    teacher_rel: list[torch.Tensor]

    def student_tensors(self) -> list[torch.Tensor]:
        return [
            self.student_logits,
            self.student_tokens,
            *self.student_hidden,
            *self.student_attn,
            *self.student_rel,
        ]

    def teacher_tensors(self) -> list[torch.Tensor]:
        return [
            self.teacher_logits,
            self.teacher_tokens,
            *self.teacher_hidden,
            *self.teacher_attn,
            *self.teacher_rel,
        ]


def attention_probs(mask: torch.Tensor, heads: int, generator: torch.Generator) -> torch.Tensor:
    batch, seq = mask.shape
    scores = torch.randn(batch, heads, seq, seq, generator=generator) * 2
    scores = scores.masked_fill((mask == 0)[:, None, None, :], float("-inf"))
    # Examples with no real key give NaN rows; those rows are padding and must be ignored anyway.
    return torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.5)


@st.composite
def batches(draw, project: bool = False) -> Batch:
    batch = draw(st.integers(1, 4))
    seq = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(0, seq), min_size=batch, max_size=batch))
    num_labels = draw(st.integers(1, 5))
    width = draw(st.integers(1, 8))
    student_width = draw(st.integers(1, 8)) if project else width
    student_heads = draw(st.integers(1, 3))
    teacher_heads = draw(st.sampled_from([student_heads, student_heads + 1]))
    pairs = draw(st.integers(1, 3))
    temperature = draw(st.floats(0.5, 8.0))
    beta = draw(st.floats(0.05, 0.95))
    relation_heads = draw(st.integers(1, 3))
    rel_sizes = draw(
        st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=3)
    )
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))

    mask = torch.tensor([[1] * n + [0] * (seq - n) for n in lengths])
    if num_labels == 1:
        labels = torch.randn(batch, generator=generator)
    else:
        labels = torch.randint(0, num_labels, (batch,), generator=generator)
        labels[torch.rand(batch, generator=generator) < 0.3] = -100
    projection = None
    if project:
        torch.manual_seed(draw(st.integers(0, 2**31 - 1)))
        projection = nn.Linear(student_width, width)
    return Batch(
        mask=mask,
        labels=labels,
        student_logits=torch.randn(batch, num_labels, generator=generator) * 3,
        teacher_logits=torch.randn(batch, num_labels, generator=generator) * 3,
        student_hidden=[
            torch.randn(batch, seq, student_width, generator=generator) for _ in range(pairs)
        ],
        teacher_hidden=[torch.randn(batch, seq, width, generator=generator) for _ in range(pairs)],
        student_attn=[attention_probs(mask, student_heads, generator) for _ in range(pairs)],
        teacher_attn=[attention_probs(mask, teacher_heads, generator) for _ in range(pairs)],
        temperature=temperature,
        projection=projection,
        beta=beta,
        student_tokens=torch.randn(batch, seq, num_labels, generator=generator) * 3,
        teacher_tokens=torch.randn(batch, seq, num_labels, generator=generator) * 3,
        relation_heads=relation_heads,
        student_rel=[
            torch.randn(batch, seq, relation_heads * d, generator=generator) * 2
            for d, _ in rel_sizes
        ],
        teacher_rel=[
            torch.randn(batch, seq, relation_heads * d, generator=generator) * 2
            for _, d in rel_sizes
        ],
    )


def compute_losses(
    b: Batch,
    student_logits: torch.Tensor | None = None,
    student_hidden: list[torch.Tensor] | None = None,
    student_attn: list[torch.Tensor] | None = None,
    student_tokens: torch.Tensor | None = None,
    student_rel: list[torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Every loss and variant on a batch; the student side can be swapped for the equality test."""
    s_logits = b.student_logits if student_logits is None else student_logits
    s_hidden = b.student_hidden if student_hidden is None else student_hidden
    s_attn = b.student_attn if student_attn is None else student_attn
    s_tokens = b.student_tokens if student_tokens is None else student_tokens
    s_rel = b.student_rel if student_rel is None else student_rel
    projections = None if b.projection is None else [b.projection] * len(s_hidden)
    logit_losses = {}
    for loss_type in LOGIT_LOSS_TYPES:
        logit_losses[f"logits_{loss_type}"] = logit_distillation_loss(
            s_logits, b.teacher_logits, b.temperature, loss_type, b.beta
        )
        logit_losses[f"tokens_{loss_type}"] = logit_distillation_loss(
            s_tokens, b.teacher_tokens, b.temperature, loss_type, b.beta, mask=b.mask
        )
    return {
        **logit_losses,
        "kd": soft_kl_loss(s_logits, b.teacher_logits, b.temperature),
        "ce": hard_label_loss(s_logits, b.labels),
        "hidden_mse": hidden_state_loss(s_hidden, b.teacher_hidden, b.mask, "mse", projections),
        "hidden_cosine": hidden_state_loss(
            s_hidden, b.teacher_hidden, b.mask, "cosine", projections
        ),
        "attention_kl": attention_loss(s_attn, b.teacher_attn, b.mask, "kl"),
        "attention_mse": attention_loss(s_attn, b.teacher_attn, b.mask, "mse"),
        "attention_mse_probs": attention_loss(s_attn, b.teacher_attn, b.mask, "mse_probs"),
        "relation": relation_loss(s_rel, b.teacher_rel, b.mask, b.relation_heads),
        "pkd": pkd_loss(s_hidden, b.teacher_hidden, projections),
    }


# Losses that weigh rows or tokens by the attention mask, so padding must not matter to them.
MASKED_LOSSES = (
    "ce",
    "hidden_mse",
    "hidden_cosine",
    "attention_kl",
    "attention_mse",
    "attention_mse_probs",
    "relation",
    *(f"tokens_{loss_type}" for loss_type in LOGIT_LOSS_TYPES),
)


@PROPERTY_SETTINGS
@given(b=batches())
def test_losses_are_non_negative_and_finite(b):
    for name, loss in compute_losses(b).items():
        assert loss.dtype == torch.float32, name
        assert loss.dim() == 0, name
        assert torch.isfinite(loss), name
        assert loss.item() >= -ROUND_OFF, name


@PROPERTY_SETTINGS
@given(b=batches())
def test_distillation_losses_are_zero_when_student_equals_teacher(b):
    same_attn = [t.clone() for t in b.teacher_attn]
    losses = compute_losses(
        b,
        student_logits=b.teacher_logits.clone(),
        student_hidden=[t.clone() for t in b.teacher_hidden],
        student_attn=same_attn,
        student_tokens=b.teacher_tokens.clone(),
        student_rel=[t.clone() for t in b.teacher_rel],
    )
    losses.pop("ce")  # compares with labels, not with the teacher
    for name, loss in losses.items():
        assert abs(loss.item()) <= 1e-5, name


@PROPERTY_SETTINGS
@given(b=batches(), garbage_seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1.0, 1e3]))
def test_losses_ignore_values_at_padding(b, garbage_seed, scale):
    before = compute_losses(b)
    generator = torch.Generator().manual_seed(garbage_seed)
    token_pad = b.mask == 0

    def scramble_tokens(state: torch.Tensor) -> torch.Tensor:
        garbage = torch.randn(state.shape, generator=generator) * scale
        return torch.where(token_pad[:, :, None], garbage, state)

    def scramble_attention(probs: torch.Tensor) -> torch.Tensor:
        # Anything in a padded query row or a padded key column.
        pad = token_pad[:, None, :, None] | token_pad[:, None, None, :]
        return torch.where(pad, torch.rand(probs.shape, generator=generator), probs)

    b.student_hidden = [scramble_tokens(t) for t in b.student_hidden]
    b.teacher_hidden = [scramble_tokens(t) for t in b.teacher_hidden]
    b.student_attn = [scramble_attention(t) for t in b.student_attn]
    b.teacher_attn = [scramble_attention(t) for t in b.teacher_attn]
    b.student_tokens = scramble_tokens(b.student_tokens)
    b.teacher_tokens = scramble_tokens(b.teacher_tokens)
    b.student_rel = [scramble_tokens(t) for t in b.student_rel]
    b.teacher_rel = [scramble_tokens(t) for t in b.teacher_rel]
    # Rows whose label is ignored are padding for the cross-entropy term.
    ignored = (b.labels == -100)[:, None]
    b.student_logits = torch.where(
        ignored, torch.randn(b.student_logits.shape, generator=generator) * scale, b.student_logits
    )
    after = compute_losses(b)
    for name in MASKED_LOSSES:
        assert_close(after[name], before[name], msg=name)


@PROPERTY_SETTINGS
@given(b=batches(), perm_seed=st.integers(0, 2**31 - 1))
def test_losses_do_not_depend_on_example_order(b, perm_seed):
    before = compute_losses(b)
    order = torch.randperm(b.mask.shape[0], generator=torch.Generator().manual_seed(perm_seed))
    b.mask = b.mask[order]
    b.labels = b.labels[order]
    b.student_logits = b.student_logits[order]
    b.teacher_logits = b.teacher_logits[order]
    b.student_hidden = [t[order] for t in b.student_hidden]
    b.teacher_hidden = [t[order] for t in b.teacher_hidden]
    b.student_attn = [t[order] for t in b.student_attn]
    b.teacher_attn = [t[order] for t in b.teacher_attn]
    b.student_tokens = b.student_tokens[order]
    b.teacher_tokens = b.teacher_tokens[order]
    b.student_rel = [t[order] for t in b.student_rel]
    b.teacher_rel = [t[order] for t in b.teacher_rel]
    after = compute_losses(b)
    for name in before:
        assert_close(after[name], before[name], rtol=1e-5, atol=1e-6, msg=name)


@PROPERTY_SETTINGS
@given(b=batches(project=True))
def test_gradient_reaches_student_and_never_teacher(b):
    for tensor in b.student_tensors() + b.teacher_tensors():
        tensor.requires_grad_(True)
    losses = compute_losses(b)
    sum(losses.values()).backward()
    for tensor in b.teacher_tensors():
        assert tensor.grad is None
    for tensor in b.student_tensors():
        assert tensor.grad is not None
        assert torch.isfinite(tensor.grad).all()
    # The KD term alone always has a gradient unless the student already equals the teacher.
    assert b.student_logits.grad.abs().sum() > 0 or losses["kd"].item() == 0
    pad = b.mask == 0
    # Only the counted tokens of the token logits and of the relation states get a gradient.
    assert b.student_tokens.grad[pad].abs().sum() == 0
    for tensor in b.student_rel:
        assert tensor.grad[pad].abs().sum() == 0
    if b.mask.sum() > 0:
        for tensor in [b.student_tokens, *b.student_hidden, *b.student_attn]:
            assert tensor.grad.abs().sum() > 0
        assert b.projection.weight.grad.abs().sum() > 0
    # A relation over a single real key is (1.0) on both sides: it needs two real tokens.
    if (b.mask.sum(dim=1) >= 2).any():
        for tensor in b.student_rel:
            assert tensor.grad.abs().sum() > 0


EXTREME_LOGITS = st.lists(
    st.one_of(st.sampled_from([-1e4, 1e4, 0.0]), st.floats(-1e4, 1e4)), min_size=2, max_size=5
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@PROPERTY_SETTINGS
@given(
    rows=st.integers(1, 3).flatmap(
        lambda n: st.tuples(
            st.lists(EXTREME_LOGITS, min_size=n, max_size=n),
            st.lists(EXTREME_LOGITS, min_size=n, max_size=n),
        )
    ),
    temperature=st.floats(0.5, 8.0),
)
def test_extreme_logits_give_finite_losses_and_gradients(dtype, rows, temperature):
    student_rows, teacher_rows = rows
    width = min(len(r) for r in student_rows + teacher_rows)
    student = torch.tensor([r[:width] for r in student_rows], dtype=dtype, requires_grad=True)
    teacher = torch.tensor([r[:width] for r in teacher_rows], dtype=dtype)
    labels = torch.zeros(student.shape[0], dtype=torch.long)
    losses = [soft_kl_loss(student, teacher, temperature), hard_label_loss(student, labels)]
    losses += [
        logit_distillation_loss(student, teacher, temperature, loss_type, beta=0.5)
        for loss_type in LOGIT_LOSS_TYPES
    ]
    for loss in losses:
        assert loss.dtype == torch.float32
        assert torch.isfinite(loss)
        assert loss.item() >= -ROUND_OFF
    sum(losses).backward()
    assert torch.isfinite(student.grad).all()


def binary_entropy(beta: float) -> float:
    return -beta * math.log(beta) - (1 - beta) * math.log(1 - beta)


@PROPERTY_SETTINGS
@given(b=batches())
def test_jsd_is_bounded_by_the_binary_entropy_of_beta(b):
    losses = compute_losses(b)
    bound = b.temperature**2 * binary_entropy(b.beta)
    for name in ("logits_jsd", "tokens_jsd"):
        if b.student_logits.shape[-1] > 1:  # one output: the squared error, not a divergence
            assert losses[name].item() <= bound * (1 + 1e-5) + ROUND_OFF, name


@PROPERTY_SETTINGS
@given(b=batches(), split=st.integers(0, 4), loss_type=st.sampled_from(LOGIT_LOSS_TYPES))
def test_normalized_micro_batches_add_up_to_the_batch_mean(b, split, loss_type):
    # The sum over counted tokens divided by the count of the whole batch, per micro-batch, adds up
    # to the mean of the whole batch; the normaliser scales the sum linearly.
    def loss(rows: slice, normalizer=None) -> torch.Tensor:
        return logit_distillation_loss(
            b.student_tokens[rows],
            b.teacher_tokens[rows],
            b.temperature,
            loss_type,
            b.beta,
            mask=b.mask[rows],
            normalizer=normalizer,
        )

    everything = slice(None)
    count = b.mask.sum()
    parts = loss(slice(0, split), count) + loss(slice(split, None), count)
    assert_close(parts, loss(everything), rtol=1e-5, atol=1e-6)
    total = loss(everything, 1)
    assert_close(loss(everything, 3) * 3, total, rtol=1e-5, atol=1e-6)
    assert_close(loss(everything, torch.tensor(0.5)), total)
