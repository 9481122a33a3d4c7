"""Loss terms against hand values and naive references written from the definitions."""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from nlpkd.losses import (
    attention_loss,
    hard_label_loss,
    hidden_state_loss,
    logit_distillation_loss,
    masked_mean,
    pkd_loss,
    relation_loss,
    soft_kl_loss,
)

LOGIT_LOSS_TYPES = ["forward_kl", "reverse_kl", "symmetric_kl", "jsd", "mse"]

# ---------------------------------------------------------------------------------------------
# Naive references: python loops over floats, straight from the definitions.
# ---------------------------------------------------------------------------------------------


def naive_softmax(row: list[float], temperature: float) -> list[float]:
    scaled = [x / temperature for x in row]
    top = max(scaled)
    exps = [math.exp(x - top) for x in scaled]
    total = sum(exps)
    return [e / total for e in exps]


def naive_soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> float:
    num_labels = student.shape[-1]
    s_rows = student.reshape(-1, num_labels).tolist()
    t_rows = teacher.reshape(-1, num_labels).tolist()
    total = 0.0
    for s_row, t_row in zip(s_rows, t_rows, strict=True):
        p_s = naive_softmax(s_row, temperature)
        p_t = naive_softmax(t_row, temperature)
        total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True) if pt > 0)
    return temperature**2 * total / len(s_rows)


def naive_kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def naive_logit_row(
    s_row: list[float], t_row: list[float], temperature: float, loss_type: str, beta: float
) -> float:
    if len(s_row) == 1 or loss_type == "mse":
        return sum((s - t) ** 2 for s, t in zip(s_row, t_row, strict=True))
    p_s = naive_softmax(s_row, temperature)
    p_t = naive_softmax(t_row, temperature)
    if loss_type == "forward_kl":
        value = naive_kl(p_t, p_s)
    elif loss_type == "reverse_kl":
        value = naive_kl(p_s, p_t)
    elif loss_type == "symmetric_kl":
        value = (naive_kl(p_t, p_s) + naive_kl(p_s, p_t)) / 2
    else:
        mixture = [beta * a + (1 - beta) * b for a, b in zip(p_t, p_s, strict=True)]
        value = beta * naive_kl(p_t, mixture) + (1 - beta) * naive_kl(p_s, mixture)
    return temperature**2 * value


def naive_logit_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
    loss_type: str,
    beta: float = 0.5,
    mask: torch.Tensor | None = None,
    normalizer: float | None = None,
) -> float:
    num_classes = student.shape[-1]
    s_rows = student.reshape(-1, num_classes).tolist()
    t_rows = teacher.reshape(-1, num_classes).tolist()
    keep = [True] * len(s_rows) if mask is None else [m != 0 for m in mask.reshape(-1).tolist()]
    total, count = 0.0, 0
    for s_row, t_row, counted in zip(s_rows, t_rows, keep, strict=True):
        if counted:
            total += naive_logit_row(s_row, t_row, temperature, loss_type, beta)
            count += 1
    if normalizer is not None:
        return total / max(normalizer, 1)
    return total / max(count, 1)


def naive_relation_row(
    state: torch.Tensor, b: int, head: int, q: int, keys: list[int], heads: int
) -> list[float]:
    size = state.shape[-1] // heads
    vectors = [v[head * size : (head + 1) * size] for v in state[b].tolist()]
    scores = [
        sum(x * y for x, y in zip(vectors[q], vectors[k], strict=True)) / math.sqrt(size)
        for k in keys
    ]
    return naive_softmax(scores, 1.0)


def naive_relation(
    student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor, heads: int
) -> float:
    total = 0.0
    for s_state, t_state in zip(student, teacher, strict=True):
        batch, seq, _ = s_state.shape
        pair_total, count = 0.0, 0
        for b in range(batch):
            real = [k for k in range(seq) if mask[b, k] != 0]
            for h in range(heads):
                for q in real:
                    r_s = naive_relation_row(s_state, b, h, q, real, heads)
                    r_t = naive_relation_row(t_state, b, h, q, real, heads)
                    pair_total += naive_kl(r_t, r_s)
                    count += 1
        total += pair_total / count if count else 0.0
    return total  # summed over pairs, as MiniLMv2 adds its Q-Q, K-K and V-V terms


def naive_pkd(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> float:
    pair_values = []
    for s_state, t_state in zip(student, teacher, strict=True):
        total = 0.0
        for b in range(s_state.shape[0]):
            s_vec = s_state[b, 0].tolist()
            t_vec = t_state[b, 0].tolist()
            norm_s = math.sqrt(sum(x * x for x in s_vec)) or 1.0
            norm_t = math.sqrt(sum(y * y for y in t_vec)) or 1.0
            total += sum((x / norm_s - y / norm_t) ** 2 for x, y in zip(s_vec, t_vec, strict=True))
        pair_values.append(total / s_state.shape[0])
    return sum(pair_values) / len(pair_values)


def naive_hidden(
    student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor, loss_type: str
) -> float:
    pair_values = []
    for s_state, t_state in zip(student, teacher, strict=True):
        total, count = 0.0, 0
        batch, seq, width = t_state.shape
        for b in range(batch):
            for q in range(seq):
                if mask[b, q] == 0:
                    continue
                s_vec = s_state[b, q].tolist()
                t_vec = t_state[b, q].tolist()
                if loss_type == "mse":
                    value = sum((x - y) ** 2 for x, y in zip(s_vec, t_vec, strict=True)) / width
                else:
                    dot = sum(x * y for x, y in zip(s_vec, t_vec, strict=True))
                    norm_s = math.sqrt(sum(x * x for x in s_vec))
                    norm_t = math.sqrt(sum(y * y for y in t_vec))
                    value = 1.0 - dot / (norm_s * norm_t)
                total += value
                count += 1
        pair_values.append(total / count if count else 0.0)
    return sum(pair_values) / len(pair_values)


def naive_attention(
    student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor, loss_type: str
) -> float:
    pair_values = []
    for s_map, t_map in zip(student, teacher, strict=True):
        batch, heads, seq, _ = s_map.shape
        total, count = 0.0, 0
        for b in range(batch):
            real = [k for k in range(seq) if mask[b, k] != 0]
            for h in range(heads):
                for q in real:
                    if loss_type == "kl":
                        kl = 0.0
                        for k in real:
                            pt = float(t_map[b, h, q, k])
                            ps = float(s_map[b, h, q, k])
                            if pt > 0:
                                kl += pt * math.log(pt / ps)
                        total += kl
                        count += 1
                    else:
                        for k in real:
                            ps = float(s_map[b, h, q, k])
                            pt = float(t_map[b, h, q, k])
                            if loss_type == "mse":
                                # Log-probabilities, floored like the library at 1e-12.
                                ps, pt = math.log(max(ps, 1e-12)), math.log(max(pt, 1e-12))
                            total += (ps - pt) ** 2
                            count += 1
        pair_values.append(total / count if count else 0.0)
    return sum(pair_values) / len(pair_values)


# ---------------------------------------------------------------------------------------------
# Builders for realistic inputs.
# ---------------------------------------------------------------------------------------------


def padding_mask(lengths: list[int], seq: int) -> torch.Tensor:
    return torch.tensor([[1] * n + [0] * (seq - n) for n in lengths])


def attention_probs(mask: torch.Tensor, heads: int, generator: torch.Generator) -> torch.Tensor:
    """Softmax over keys with padded keys masked out, like eager BERT attention."""
    batch, seq = mask.shape
    scores = torch.randn(batch, heads, seq, seq, generator=generator)
    key_is_pad = (mask == 0)[:, None, None, :]
    scores = scores.masked_fill(key_is_pad, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    # Rows whose every key is padding are all -inf: give them garbage that must be ignored.
    return torch.nan_to_num(probs, nan=0.25)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


# ---------------------------------------------------------------------------------------------
# soft_kl_loss
# ---------------------------------------------------------------------------------------------


def test_soft_kl_hand_value():
    teacher = torch.tensor([[math.log(0.7), math.log(0.3)]])
    student = torch.tensor([[math.log(0.6), math.log(0.4)]])
    loss = soft_kl_loss(student, teacher, temperature=1.0)
    assert loss.dtype == torch.float32
    assert loss.dim() == 0
    assert abs(loss.item() - 0.0216) < 1e-4
    expected = 0.7 * math.log(0.7 / 0.6) + 0.3 * math.log(0.3 / 0.4)
    assert abs(loss.item() - expected) < 1e-6


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0, 8.0])
def test_soft_kl_hand_value_scales_with_temperature_squared(temperature):
    teacher = torch.tensor([[math.log(0.7), math.log(0.3)]])
    student = torch.tensor([[math.log(0.6), math.log(0.4)]])
    loss = soft_kl_loss(student, teacher, temperature=temperature)
    # Softened distributions from the definition, then the T^2 factor.
    p_t = naive_softmax(teacher[0].tolist(), temperature)
    p_s = naive_softmax(student[0].tolist(), temperature)
    kl = sum(a * math.log(a / b) for a, b in zip(p_t, p_s, strict=True))
    # At high T the KL is a small difference of float32 log-probabilities, so relative error grows
    # to ~1e-4; a wrong power of T would be off by a factor of T.
    assert loss.item() == pytest.approx(temperature**2 * kl, rel=5e-4)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 5)])
def test_soft_kl_matches_naive_reference(generator, temperature, shape):
    student = torch.randn(*shape, generator=generator) * 3
    teacher = torch.randn(*shape, generator=generator) * 3
    loss = soft_kl_loss(student, teacher, temperature=temperature)
    expected = naive_soft_kl(student, teacher, temperature)
    assert_close(loss, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_soft_kl_regression_is_mse_without_temperature(generator):
    student = torch.randn(7, 1, generator=generator)
    teacher = torch.randn(7, 1, generator=generator)
    expected = (
        sum(
            (s - t) ** 2
            for s, t in zip(student.flatten().tolist(), teacher.flatten().tolist(), strict=True)
        )
        / 7
    )
    for temperature in (1.0, 3.0):
        loss = soft_kl_loss(student, teacher, temperature=temperature)
        assert_close(loss, torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_soft_kl_rejects_non_positive_temperature(temperature):
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=f"temperature must be positive, got {temperature}"):
        soft_kl_loss(logits, logits, temperature=temperature)


def test_soft_kl_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"shape \(4, 3\) and teacher logits of shape \(4, 2\)"):
        soft_kl_loss(torch.zeros(4, 3), torch.zeros(4, 2))


def test_soft_kl_finite_for_extreme_logits():
    student = torch.tensor([[1e4, -1e4], [-1e4, 1e4]])
    teacher = torch.tensor([[-1e4, 1e4], [-1e4, 1e4]])
    loss = soft_kl_loss(student, teacher, temperature=2.0)
    # Row 1: KL = 1 * (0 - (-1e4)) = 1e4 at T=2; row 2 matches exactly. Mean 5e3, times T^2 = 4.
    assert_close(loss, torch.tensor(2e4))


# ---------------------------------------------------------------------------------------------
# hard_label_loss
# ---------------------------------------------------------------------------------------------


def test_hard_label_cross_entropy_ignores_minus_100(generator):
    logits = torch.randn(5, 4, generator=generator)
    labels = torch.tensor([0, 3, -100, 1, -100])
    total, count = 0.0, 0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        if label == -100:
            continue
        total += -math.log(naive_softmax(row, 1.0)[label])
        count += 1
    loss = hard_label_loss(logits, labels)
    assert loss.dtype == torch.float32
    assert_close(loss, torch.tensor(total / count, dtype=torch.float32))


def test_hard_label_all_ignored_is_zero():
    loss = hard_label_loss(torch.randn(3, 2), torch.full((3,), -100))
    assert loss.item() == 0.0


@pytest.mark.parametrize("label_shape", [(6,), (6, 1)])
def test_hard_label_regression_is_mse(generator, label_shape):
    logits = torch.randn(6, 1, generator=generator)
    labels = torch.randn(*label_shape, generator=generator)
    expected = (
        sum(
            (s - y) ** 2
            for s, y in zip(logits.flatten().tolist(), labels.flatten().tolist(), strict=True)
        )
        / 6
    )
    assert_close(hard_label_loss(logits, labels), torch.tensor(expected, dtype=torch.float32))


def test_hard_label_rejects_float_labels_for_classification():
    with pytest.raises(ValueError, match="pass integer class indices"):
        hard_label_loss(torch.zeros(2, 3), torch.zeros(2))


def test_hard_label_rejects_label_shape_mismatch():
    with pytest.raises(
        ValueError, match=r"labels of shape \(3,\) do not fit logits of shape \(2, 3\)"
    ):
        hard_label_loss(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"regression labels of shape \(3,\)"):
        hard_label_loss(torch.zeros(2, 1), torch.zeros(3))


# ---------------------------------------------------------------------------------------------
# hidden_state_loss
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_type", ["mse", "cosine"])
def test_hidden_matches_naive_reference_with_padding(generator, loss_type):
    mask = padding_mask([5, 2, 0, 4], seq=5)
    student = [torch.randn(4, 5, 6, generator=generator) for _ in range(3)]
    teacher = [torch.randn(4, 5, 6, generator=generator) for _ in range(3)]
    loss = hidden_state_loss(student, teacher, attention_mask=mask, loss_type=loss_type)
    expected = naive_hidden(student, teacher, mask, loss_type)
    assert_close(loss, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_hidden_averages_over_tokens_of_the_whole_batch():
    # One example with 1 real token (loss 4), one with 3 real tokens (loss 0): token-weighted mean
    # is 4 / 4 = 1, not the per-example mean (4 + 0) / 2 = 2.
    mask = padding_mask([1, 3], seq=3)
    teacher = torch.zeros(2, 3, 1)
    student = torch.zeros(2, 3, 1)
    student[0, 0, 0] = 2.0
    student[0, 1:, 0] = 100.0  # padding, ignored
    loss = hidden_state_loss([student], [teacher], attention_mask=mask)
    assert loss.item() == pytest.approx(1.0)


def test_hidden_without_mask_counts_every_token(generator):
    student = [torch.randn(2, 3, 4, generator=generator)]
    teacher = [torch.randn(2, 3, 4, generator=generator)]
    expected = naive_hidden(student, teacher, torch.ones(2, 3), "mse")
    assert_close(hidden_state_loss(student, teacher), torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize("loss_type", ["mse", "cosine"])
def test_hidden_uses_projection_when_widths_differ(generator, loss_type):
    mask = padding_mask([3, 1], seq=3)
    projection = nn.Linear(4, 8)
    student = [torch.randn(2, 3, 4, generator=generator), torch.randn(2, 3, 8, generator=generator)]
    teacher = [torch.randn(2, 3, 8, generator=generator), torch.randn(2, 3, 8, generator=generator)]
    loss = hidden_state_loss(
        student, teacher, attention_mask=mask, loss_type=loss_type, projections=[projection, None]
    )
    with torch.no_grad():
        projected = [projection(student[0]), student[1]]
    expected = naive_hidden(projected, teacher, mask, loss_type)
    assert_close(loss, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)
    loss.backward()
    assert projection.weight.grad is not None
    assert projection.weight.grad.abs().sum() > 0


def test_hidden_missing_projection_is_a_clear_error():
    with pytest.raises(
        ValueError,
        match=r"pair 0: student width 4 differs from teacher width 8; enable a projection",
    ):
        hidden_state_loss([torch.zeros(1, 2, 4)], [torch.zeros(1, 2, 8)])


def test_hidden_projection_with_wrong_output_width_is_an_error():
    with pytest.raises(ValueError, match="must output the teacher width"):
        hidden_state_loss(
            [torch.zeros(1, 2, 4)], [torch.zeros(1, 2, 8)], projections=[nn.Linear(4, 6)]
        )


def test_hidden_fp32_projection_accepts_half_student():
    projection = nn.Linear(4, 8)
    student = torch.randn(2, 3, 4).half()
    loss = hidden_state_loss([student], [torch.randn(2, 3, 8).half()], projections=[projection])
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"student_hidden": [], "teacher_hidden": []}, "no hidden states to compare"),
        (
            {"student_hidden": [torch.zeros(1, 2, 3)], "teacher_hidden": []},
            "got 1 student hidden states and 0 teacher hidden states",
        ),
        (
            {"student_hidden": [torch.zeros(1, 2, 3)], "teacher_hidden": [torch.zeros(1, 4, 3)]},
            r"differ in \(batch, seq\)",
        ),
        (
            {"student_hidden": [torch.zeros(2, 3)], "teacher_hidden": [torch.zeros(2, 3)]},
            r"expected \(batch, seq, width\)",
        ),
        (
            {
                "student_hidden": [torch.zeros(1, 2, 3)],
                "teacher_hidden": [torch.zeros(1, 2, 3)],
                "attention_mask": torch.ones(1, 3),
            },
            r"attention_mask of shape \(1, 3\) does not match \(batch, seq\) = \(1, 2\)",
        ),
        (
            {
                "student_hidden": [torch.zeros(1, 2, 3)],
                "teacher_hidden": [torch.zeros(1, 2, 3)],
                "projections": [None, None],
            },
            "got 2 projections for 1 hidden-state pairs",
        ),
        (
            {
                "student_hidden": [torch.zeros(1, 2, 3)],
                "teacher_hidden": [torch.zeros(1, 2, 3)],
                "loss_type": "l1",
            },
            "loss_type must be 'mse' or 'cosine', got 'l1'",
        ),
    ],
)
def test_hidden_rejects_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hidden_state_loss(**kwargs)


# ---------------------------------------------------------------------------------------------
# attention_loss
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_type", ["kl", "mse", "mse_probs"])
def test_attention_matches_naive_reference_with_padding(generator, loss_type):
    mask = padding_mask([4, 2, 0], seq=4)
    student = [attention_probs(mask, 3, generator) for _ in range(2)]
    teacher = [attention_probs(mask, 3, generator) for _ in range(2)]
    # Garbage at padded query rows of the student must not matter either.
    student[0][1, :, 2:, :] = 0.9
    loss = attention_loss(student, teacher, attention_mask=mask, loss_type=loss_type)
    expected = naive_attention(student, teacher, mask, loss_type)
    assert_close(loss, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_type", ["kl", "mse", "mse_probs"])
def test_attention_averages_heads_when_counts_differ(generator, loss_type):
    mask = padding_mask([3, 2], seq=3)
    student = attention_probs(mask, 2, generator)
    teacher = attention_probs(mask, 4, generator)
    loss = attention_loss([student], [teacher], attention_mask=mask, loss_type=loss_type)
    expected = naive_attention(
        [student.mean(dim=1, keepdim=True)], [teacher.mean(dim=1, keepdim=True)], mask, loss_type
    )
    assert_close(loss, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_attention_kl_zero_probabilities_stay_finite():
    # Teacher zero on a key: contributes 0. Student zero where the teacher has mass: large, finite.
    teacher = torch.tensor([[[[1.0, 0.0]]]])
    student = torch.tensor([[[[0.0, 1.0]]]])
    loss = attention_loss([student], [teacher], loss_type="kl")
    assert loss.item() == pytest.approx(-math.log(1e-12), rel=1e-5)
    same = attention_loss([teacher], [teacher.clone()], loss_type="kl")
    assert same.item() == 0.0


def test_attention_mse_hand_values():
    student = torch.tensor([[[[0.5, 0.5]]]])
    teacher = torch.tensor([[[[0.25, 0.75]]]])
    log_mse = attention_loss([student], [teacher], loss_type="mse")
    expected = ((math.log(0.5) - math.log(0.25)) ** 2 + (math.log(0.5) - math.log(0.75)) ** 2) / 2
    assert log_mse.item() == pytest.approx(expected, rel=1e-6)
    prob_mse = attention_loss([student], [teacher], loss_type="mse_probs")
    assert prob_mse.item() == pytest.approx((0.25**2 + 0.25**2) / 2, rel=1e-6)


def test_attention_mse_is_mse_of_log_softmax_scores(generator):
    # TinyBERT compares pre-softmax scores; "mse" compares their log-softmax, i.e. the scores
    # shifted by a constant per (example, head, query), over real (query, key) pairs.
    mask = padding_mask([4, 3], seq=4)
    key_is_pad = (mask == 0)[:, None, None, :]
    s_scores = torch.randn(2, 2, 4, 4, generator=generator).masked_fill(key_is_pad, float("-inf"))
    t_scores = torch.randn(2, 2, 4, 4, generator=generator).masked_fill(key_is_pad, float("-inf"))
    loss = attention_loss(
        [s_scores.softmax(-1)], [t_scores.softmax(-1)], attention_mask=mask, loss_type="mse"
    )
    s_log, t_log = s_scores.log_softmax(-1), t_scores.log_softmax(-1)
    total, count = 0.0, 0
    for b, n in enumerate([4, 3]):
        for h in range(2):
            for q in range(n):
                for k in range(n):
                    total += (float(s_log[b, h, q, k]) - float(t_log[b, h, q, k])) ** 2
                    count += 1
    assert_close(loss, torch.tensor(total / count), rtol=1e-5, atol=1e-6)


def test_attention_mse_zero_probabilities_stay_finite():
    teacher = torch.tensor([[[[1.0, 0.0]]]])
    student = torch.tensor([[[[0.0, 1.0]]]], requires_grad=True)
    loss = attention_loss([student], [teacher], loss_type="mse")
    # Both entries differ by log(1e-12) after flooring.
    assert loss.item() == pytest.approx(math.log(1e-12) ** 2, rel=1e-5)
    loss.backward()
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"student_attentions": [], "teacher_attentions": []}, "no attention maps to compare"),
        (
            {
                "student_attentions": [torch.zeros(1, 2, 3, 3)],
                "teacher_attentions": [torch.zeros(1, 2, 4, 4)],
            },
            r"differ in \(batch, query, key\)",
        ),
        (
            {
                "student_attentions": [torch.zeros(1, 3, 3)],
                "teacher_attentions": [torch.zeros(1, 3, 3)],
            },
            r"expected \(batch, heads, query, key\)",
        ),
        (
            {
                "student_attentions": [torch.zeros(1, 2, 3, 3)],
                "teacher_attentions": [torch.zeros(1, 2, 3, 3)],
                "attention_mask": torch.ones(2, 3),
            },
            r"attention_mask of shape \(2, 3\) does not match",
        ),
        (
            {
                "student_attentions": [torch.zeros(1, 2, 3, 3)],
                "teacher_attentions": [torch.zeros(1, 2, 3, 3)],
                "loss_type": "cosine",
            },
            r"loss_type must be one of \('kl', 'mse', 'mse_probs'\), got 'cosine'",
        ),
    ],
)
def test_attention_rejects_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        attention_loss(**kwargs)


# ---------------------------------------------------------------------------------------------
# logit_distillation_loss
# ---------------------------------------------------------------------------------------------


def two_class_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """Student (0.6, 0.4) and teacher (0.7, 0.3) as logits whose softmax at T=1 is exact."""
    student = torch.tensor([[math.log(0.6), math.log(0.4)]])
    teacher = torch.tensor([[math.log(0.7), math.log(0.3)]])
    return student, teacher


def test_logit_loss_hand_values():
    student, teacher = two_class_rows()
    forward = 0.7 * math.log(0.7 / 0.6) + 0.3 * math.log(0.3 / 0.4)
    reverse = 0.6 * math.log(0.6 / 0.7) + 0.4 * math.log(0.4 / 0.3)
    m = (0.5 * 0.7 + 0.5 * 0.6, 0.5 * 0.3 + 0.5 * 0.4)  # (0.65, 0.35)
    jsd = 0.5 * (0.7 * math.log(0.7 / m[0]) + 0.3 * math.log(0.3 / m[1])) + 0.5 * (
        0.6 * math.log(0.6 / m[0]) + 0.4 * math.log(0.4 / m[1])
    )
    mse = (math.log(0.6) - math.log(0.7)) ** 2 + (math.log(0.4) - math.log(0.3)) ** 2
    assert forward == pytest.approx(0.0216, abs=1e-4)
    assert reverse == pytest.approx(0.0226, abs=1e-4)
    assert jsd == pytest.approx(0.00551, abs=1e-5)
    expected = {"forward_kl": forward, "reverse_kl": reverse, "jsd": jsd, "mse": mse}
    for loss_type, value in expected.items():
        loss = logit_distillation_loss(student, teacher, 1.0, loss_type, beta=0.5)
        assert loss.dtype == torch.float32, loss_type
        assert loss.dim() == 0, loss_type
        # Differences of float32 log-probabilities: ~1e-7 absolute error on values of ~1e-2.
        assert loss.item() == pytest.approx(value, rel=1e-4, abs=1e-7), loss_type


@pytest.mark.parametrize("loss_type", LOGIT_LOSS_TYPES)
@pytest.mark.parametrize(("temperature", "beta"), [(1.0, 0.5), (2.0, 0.1), (4.0, 0.9)])
@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 5)])
def test_logit_loss_matches_naive_reference(generator, loss_type, temperature, beta, shape):
    student = torch.randn(*shape, generator=generator) * 3
    teacher = torch.randn(*shape, generator=generator) * 3
    loss = logit_distillation_loss(student, teacher, temperature, loss_type, beta)
    expected = naive_logit_loss(student, teacher, temperature, loss_type, beta)
    assert_close(loss, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_soft_kl_is_forward_kl_logit_loss(generator):
    student = torch.randn(4, 3, 6, generator=generator) * 3
    teacher = torch.randn(4, 3, 6, generator=generator) * 3
    assert_close(
        soft_kl_loss(student, teacher, 3.0),
        logit_distillation_loss(student, teacher, 3.0, "forward_kl"),
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize("loss_type", LOGIT_LOSS_TYPES)
def test_logit_loss_single_output_is_squared_error(generator, loss_type):
    student = torch.randn(2, 4, 1, generator=generator)
    teacher = torch.randn(2, 4, 1, generator=generator)
    mask = padding_mask([3, 1], seq=4)
    pairs = [
        (s, t)
        for s, t, m in zip(
            student.flatten().tolist(),
            teacher.flatten().tolist(),
            mask.flatten().tolist(),
            strict=True,
        )
        if m
    ]
    expected = sum((s - t) ** 2 for s, t in pairs) / len(pairs)
    loss = logit_distillation_loss(student, teacher, 3.0, loss_type, mask=mask)
    assert_close(loss, torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize("loss_type", ["forward_kl", "reverse_kl"])
def test_jsd_approaches_scaled_kl_at_the_limits(generator, loss_type):
    student = torch.randn(8, 5, generator=generator)
    teacher = torch.randn(8, 5, generator=generator)
    kl = logit_distillation_loss(student, teacher, 1.0, loss_type)
    # JSD(beta) = beta * KL(t || s) + O(beta^2) as beta -> 0, and symmetrically as beta -> 1.
    weight = 1e-3
    beta = weight if loss_type == "forward_kl" else 1 - weight
    jsd = logit_distillation_loss(student, teacher, 1.0, "jsd", beta=beta)
    assert (jsd / weight).item() == pytest.approx(kl.item(), rel=1e-2)


@pytest.mark.parametrize("loss_type", LOGIT_LOSS_TYPES)
def test_logit_loss_mask_and_normalizer_match_naive_reference(generator, loss_type):
    # A causal-LM batch: prompt and padding rows do not count, completion rows do.
    student = torch.randn(3, 5, 7, generator=generator) * 3
    teacher = torch.randn(3, 5, 7, generator=generator) * 3
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    # Whatever a dropped row holds must not matter, not even NaN.
    student[0, 0] = float("nan")
    teacher[1, 4] = float("inf")
    clean_student = student.nan_to_num(0.0)
    clean_teacher = teacher.nan_to_num(0.0, posinf=0.0)
    mean = logit_distillation_loss(student, teacher, 2.0, loss_type, 0.3, mask)
    expected = naive_logit_loss(clean_student, clean_teacher, 2.0, loss_type, 0.3, mask)
    assert_close(mean, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)
    for normalizer in (11, torch.tensor(11), torch.tensor(11.0)):
        normalized = logit_distillation_loss(
            student, teacher, 2.0, loss_type, 0.3, mask, normalizer=normalizer
        )
        reference = naive_logit_loss(clean_student, clean_teacher, 2.0, loss_type, 0.3, mask, 11)
        assert_close(normalized, torch.tensor(reference, dtype=torch.float32), rtol=1e-5, atol=1e-6)
    # Below one, the normaliser is clamped to one: the plain sum over counted rows.
    total = logit_distillation_loss(student, teacher, 2.0, loss_type, 0.3, mask, normalizer=0)
    assert_close(total, mean * 5, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_type", LOGIT_LOSS_TYPES)
def test_logit_loss_micro_batches_add_up_to_the_accumulated_batch(generator, loss_type):
    # Gradient accumulation: each micro-batch divides its sum by the token count of the whole
    # accumulated batch (the Trainer's num_items_in_batch), so the parts add up to the full mean.
    student = torch.randn(4, 6, 5, generator=generator, requires_grad=True)
    teacher = torch.randn(4, 6, 5, generator=generator)
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 0], [1, 1, 0, 0, 0, 0], [0] * 6])
    full = logit_distillation_loss(student, teacher, 2.0, loss_type, mask=mask)
    total_tokens = mask.sum()
    parts = [
        logit_distillation_loss(
            student[rows], teacher[rows], 2.0, loss_type, mask=mask[rows], normalizer=total_tokens
        )
        for rows in (slice(0, 2), slice(2, 4))
    ]
    assert_close(parts[0] + parts[1], full, rtol=1e-5, atol=1e-6)
    (full_grad,) = torch.autograd.grad(full, student)
    (parts_grad,) = torch.autograd.grad(parts[0] + parts[1], student)
    assert_close(parts_grad, full_grad, rtol=1e-5, atol=1e-7)
    assert full_grad[mask == 0].abs().sum() == 0


def test_logit_loss_nothing_counted_is_zero():
    logits = torch.randn(2, 3, 4)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    for normalizer in (None, 0, 5):
        loss = logit_distillation_loss(logits, logits + 1, mask=mask, normalizer=normalizer)
        assert loss.item() == 0.0
        assert loss.dtype == torch.float32


@pytest.mark.parametrize("loss_type", LOGIT_LOSS_TYPES)
def test_logit_loss_extreme_logits_are_finite(loss_type):
    student = torch.tensor([[1e4, -1e4], [-1e4, 1e4]], requires_grad=True)
    teacher = torch.tensor([[-1e4, 1e4], [-1e4, 1e4]])
    loss = logit_distillation_loss(student, teacher, 1.0, loss_type, beta=0.5)
    # Row 1 puts all mass on opposite classes, row 2 matches exactly.
    expected = {
        "forward_kl": 2e4 / 2,
        "reverse_kl": 2e4 / 2,
        "symmetric_kl": 2e4 / 2,
        # Disjoint supports: each KL to the (0.5, 0.5) mixture is log 2.
        "jsd": math.log(2) / 2,
        "mse": (2e4**2 + 2e4**2) / 2,
    }[loss_type]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize("loss_type", LOGIT_LOSS_TYPES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_logit_loss_half_precision_gives_float32(generator, loss_type, dtype):
    student = (torch.randn(2, 4, 6, generator=generator) * 3).to(dtype)
    teacher = (torch.randn(2, 4, 6, generator=generator) * 3).to(dtype)
    mask = padding_mask([4, 2], seq=4)
    loss = logit_distillation_loss(student, teacher, 2.0, loss_type, mask=mask, normalizer=9)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    upcast = logit_distillation_loss(
        student.float(), teacher.float(), 2.0, loss_type, mask=mask, normalizer=9
    )
    assert_close(loss, upcast)
    extreme = torch.tensor([[1e4, -1e4, 0.0]], dtype=dtype)
    assert torch.isfinite(logit_distillation_loss(extreme, extreme.flip(-1), 1.0, loss_type))


@pytest.mark.parametrize("loss_type", LOGIT_LOSS_TYPES)
def test_logit_loss_gradient_reaches_student_only(generator, loss_type):
    student = torch.randn(3, 4, generator=generator, requires_grad=True)
    teacher = torch.randn(3, 4, generator=generator, requires_grad=True)
    logit_distillation_loss(student, teacher, 2.0, loss_type).backward()
    assert teacher.grad is None
    assert student.grad is not None
    assert student.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "temperature must be positive, got 0.0"),
        ({"loss_type": "kl"}, r"loss_type must be one of \('forward_kl', .*got 'kl'"),
        ({"loss_type": "jsd", "beta": 0.0}, r"open interval \(0, 1\).*got 0.0.*'forward_kl'"),
        ({"loss_type": "jsd", "beta": 1.0}, r"open interval \(0, 1\).*got 1.0.*'reverse_kl'"),
        ({"loss_type": "jsd", "beta": 1.5}, r"open interval \(0, 1\) for loss_type='jsd'"),
        (
            {"mask": torch.ones(2, 4)},
            r"mask of shape \(2, 4\) does not fit .* entry per row, shape \(2, 2\)",
        ),
        ({"normalizer": torch.tensor([4, 4])}, r"0-dim tensor, got a tensor of shape \(2,\)"),
        ({"normalizer": "4"}, "normalizer must be an int, a float or a 0-dim tensor, got str"),
        ({"normalizer": True}, "got bool"),
    ],
)
def test_logit_loss_rejects_bad_arguments(kwargs, message):
    logits = torch.zeros(2, 2, 3)
    with pytest.raises(ValueError, match=message):
        logit_distillation_loss(logits, logits, **kwargs)


def test_logit_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"shape \(4, 3\) and teacher logits of shape \(4, 2\)"):
        logit_distillation_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="have no class dimension"):
        logit_distillation_loss(torch.zeros(4, 0), torch.zeros(4, 0))


def test_logit_loss_beta_is_only_checked_for_jsd():
    logits = torch.zeros(2, 3)
    assert logit_distillation_loss(logits, logits, loss_type="forward_kl", beta=0.0).item() == 0.0


# ---------------------------------------------------------------------------------------------
# relation_loss
# ---------------------------------------------------------------------------------------------


def relation_states(
    mask: torch.Tensor, widths: list[int], generator: torch.Generator
) -> list[torch.Tensor]:
    batch, seq = mask.shape
    states = [torch.randn(batch, seq, w, generator=generator) * 2 for w in widths]
    # Garbage at padded positions must not matter.
    return [torch.where(mask[:, :, None] == 0, torch.full_like(x, 50.0), x) for x in states]


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_relation_matches_naive_reference_with_padding_and_widths(generator, heads):
    mask = padding_mask([5, 3, 0, 1], seq=5)
    # Student and teacher widths differ, and differ from pair to pair.
    student = relation_states(mask, [8, 4, 12], generator)
    teacher = relation_states(mask, [12, 8, 4], generator)
    loss = relation_loss(student, teacher, attention_mask=mask, num_relation_heads=heads)
    expected = naive_relation(student, teacher, mask, heads)
    assert loss.dtype == torch.float32
    assert_close(loss, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_relation_without_mask_counts_every_token(generator):
    student = relation_states(torch.ones(2, 4), [6], generator)
    teacher = relation_states(torch.ones(2, 4), [9], generator)
    expected = naive_relation(student, teacher, torch.ones(2, 4), heads=3)
    loss = relation_loss(student, teacher, num_relation_heads=3)
    assert_close(loss, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_relation_sums_over_pairs(generator):
    mask = padding_mask([4, 2], seq=4)
    student = relation_states(mask, [8, 8, 8], generator)
    teacher = relation_states(mask, [4, 4, 4], generator)
    together = relation_loss(student, teacher, mask, num_relation_heads=2)
    apart = [
        relation_loss([s], [t], mask, num_relation_heads=2)
        for s, t in zip(student, teacher, strict=True)
    ]
    assert_close(together, sum(apart), rtol=1e-6, atol=1e-7)
    assert together.item() > max(a.item() for a in apart)


def test_relation_student_equal_to_teacher_is_exactly_zero(generator):
    mask = padding_mask([4, 1, 0], seq=4)
    teacher = relation_states(mask, [8, 16, 4], generator)
    student = [t.clone() for t in teacher]
    assert relation_loss(student, teacher, mask, num_relation_heads=4).item() == 0.0


def test_relation_single_real_token_gives_zero(generator):
    # One real key: every relation row is (1.0) on both sides whatever the states.
    mask = padding_mask([1, 1], seq=3)
    loss = relation_loss(
        relation_states(mask, [4], generator), relation_states(mask, [6], generator), mask, 2
    )
    assert loss.item() == 0.0


def test_relation_gradient_reaches_student_only(generator):
    mask = padding_mask([4, 2], seq=4)
    student = [s.requires_grad_(True) for s in relation_states(mask, [8, 4], generator)]
    teacher = [t.requires_grad_(True) for t in relation_states(mask, [4, 12], generator)]
    relation_loss(student, teacher, mask, num_relation_heads=4).backward()
    for tensor in teacher:
        assert tensor.grad is None
    for tensor in student:
        assert torch.isfinite(tensor.grad).all()
        assert tensor.grad[mask == 1].abs().sum() > 0
        assert tensor.grad[mask == 0].abs().sum() == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_relation_half_precision_gives_float32(generator, dtype):
    mask = padding_mask([3, 2], seq=3)
    student = relation_states(mask, [8], generator)
    teacher = relation_states(mask, [4], generator)
    half = relation_loss([s.to(dtype) for s in student], [t.to(dtype) for t in teacher], mask, 2)
    assert half.dtype == torch.float32
    assert torch.isfinite(half)
    upcast = relation_loss(
        [s.to(dtype).float() for s in student], [t.to(dtype).float() for t in teacher], mask, 2
    )
    assert_close(half, upcast)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {
                "student_states": [torch.zeros(1, 2, 384)],
                "teacher_states": [torch.zeros(1, 2, 256)],
            },
            "teacher width 256 is not divisible by num_relation_heads=12",
        ),
        (
            {"student_states": [torch.zeros(1, 2, 10)], "teacher_states": [torch.zeros(1, 2, 12)]},
            "student width 10 is not divisible by num_relation_heads=12",
        ),
        (
            {
                "student_states": [torch.zeros(1, 2, 12)],
                "teacher_states": [torch.zeros(1, 2, 12)],
                "num_relation_heads": 0,
            },
            "num_relation_heads must be a positive integer, got 0",
        ),
        ({"student_states": [], "teacher_states": []}, "no relation states to compare"),
        (
            {"student_states": [torch.zeros(1, 2, 12)], "teacher_states": []},
            "got 1 student relation states and 0 teacher relation states",
        ),
        (
            {"student_states": [torch.zeros(2, 12)], "teacher_states": [torch.zeros(2, 12)]},
            r"expected \(batch, seq, width\)",
        ),
        (
            {"student_states": [torch.zeros(1, 2, 12)], "teacher_states": [torch.zeros(1, 3, 12)]},
            r"differ in \(batch, seq\)",
        ),
        (
            {
                "student_states": [torch.zeros(1, 2, 12), torch.zeros(1, 3, 12)],
                "teacher_states": [torch.zeros(1, 2, 12), torch.zeros(1, 3, 12)],
            },
            "every pair must come from the same batch",
        ),
        (
            {
                "student_states": [torch.zeros(1, 2, 12)],
                "teacher_states": [torch.zeros(1, 2, 12)],
                "attention_mask": torch.ones(1, 3),
            },
            r"attention_mask of shape \(1, 3\) does not match",
        ),
    ],
)
def test_relation_rejects_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        relation_loss(**kwargs)


# ---------------------------------------------------------------------------------------------
# pkd_loss
# ---------------------------------------------------------------------------------------------


def test_pkd_hand_values():
    # Example 1: orthogonal unit vectors, distance 2. Example 2: same direction, different length,
    # distance 0 after normalising. Positions after 0 do not matter.
    student = torch.tensor([[[1.0, 0.0], [9.0, 9.0]], [[3.0, 0.0], [-9.0, 9.0]]])
    teacher = torch.tensor([[[0.0, 1.0], [5.0, 5.0]], [[1.0, 0.0], [7.0, 1.0]]])
    loss = pkd_loss([student], [teacher])
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(1.0, rel=1e-6)
    # A zero vector stays zero: distance 1 to any unit vector.
    zero = pkd_loss([torch.zeros(1, 2, 2)], [torch.tensor([[[3.0, 4.0], [0.0, 0.0]]])])
    assert zero.item() == pytest.approx(1.0, rel=1e-6)


def test_pkd_matches_naive_reference_with_projection(generator):
    projection = nn.Linear(4, 6)
    student = [torch.randn(3, 5, 4, generator=generator), torch.randn(3, 5, 6, generator=generator)]
    teacher = [torch.randn(3, 5, 6, generator=generator), torch.randn(3, 5, 6, generator=generator)]
    loss = pkd_loss(student, teacher, projections=[projection, None])
    with torch.no_grad():
        projected = [projection(student[0]), student[1]]
    expected = naive_pkd(projected, teacher)
    assert_close(loss, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)
    loss.backward()
    assert projection.weight.grad.abs().sum() > 0


def test_pkd_gradient_reaches_student_cls_only(generator):
    student = torch.randn(2, 3, 4, generator=generator, requires_grad=True)
    teacher = torch.randn(2, 3, 4, generator=generator, requires_grad=True)
    pkd_loss([student], [teacher]).backward()
    assert teacher.grad is None
    assert student.grad[:, 0].abs().sum() > 0
    assert student.grad[:, 1:].abs().sum() == 0


def test_pkd_fp32_projection_accepts_half_student():
    loss = pkd_loss(
        [torch.randn(2, 3, 4).half()], [torch.randn(2, 3, 8).bfloat16()], [nn.Linear(4, 8)]
    )
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"student_hidden": [], "teacher_hidden": []}, "no hidden states to compare"),
        (
            {"student_hidden": [torch.zeros(1, 2, 4)], "teacher_hidden": [torch.zeros(1, 2, 8)]},
            r"pair 0: student width 4 differs from teacher width 8; enable a projection",
        ),
        (
            {
                "student_hidden": [torch.zeros(1, 2, 4)],
                "teacher_hidden": [torch.zeros(1, 2, 8)],
                "projections": [nn.Linear(4, 6)],
            },
            "must output the teacher width",
        ),
        (
            {
                "student_hidden": [torch.zeros(1, 2, 3)],
                "teacher_hidden": [torch.zeros(1, 2, 3)],
                "projections": [None, None],
            },
            "got 2 projections for 1 hidden-state pairs",
        ),
        (
            {"student_hidden": [torch.zeros(1, 2, 3)], "teacher_hidden": [torch.zeros(2, 2, 3)]},
            r"differ in \(batch, seq\)",
        ),
        (
            {"student_hidden": [torch.zeros(2, 3)], "teacher_hidden": [torch.zeros(2, 3)]},
            r"expected \(batch, seq, width\)",
        ),
        (
            {"student_hidden": [torch.zeros(2, 0, 3)], "teacher_hidden": [torch.zeros(2, 0, 3)]},
            r"sequences are empty",
        ),
    ],
)
def test_pkd_rejects_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pkd_loss(**kwargs)


# ---------------------------------------------------------------------------------------------
# Shared behaviour: identical inputs, all padding, half precision.
# ---------------------------------------------------------------------------------------------


def all_losses(student: dict, teacher: dict, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    return {
        "kd": soft_kl_loss(student["logits"], teacher["logits"], temperature=2.0),
        "kd_regression": soft_kl_loss(student["value"], teacher["value"]),
        "hidden_mse": hidden_state_loss(student["hidden"], teacher["hidden"], mask, "mse"),
        "hidden_cosine": hidden_state_loss(student["hidden"], teacher["hidden"], mask, "cosine"),
        "attention_kl": attention_loss(student["attn"], teacher["attn"], mask, "kl"),
        "attention_mse": attention_loss(student["attn"], teacher["attn"], mask, "mse"),
        "attention_mse_probs": attention_loss(student["attn"], teacher["attn"], mask, "mse_probs"),
        **{
            f"logits_{loss_type}": logit_distillation_loss(
                student["tokens"], teacher["tokens"], 2.0, loss_type, 0.3, mask
            )
            for loss_type in LOGIT_LOSS_TYPES
        },
        "relation": relation_loss(student["qkv"], teacher["qkv"], mask, num_relation_heads=2),
        "pkd": pkd_loss(student["hidden"], teacher["hidden"]),
    }


def make_outputs(mask: torch.Tensor, generator: torch.Generator, dtype=torch.float32) -> dict:
    batch, seq = mask.shape
    return {
        "logits": torch.randn(batch, 3, generator=generator).to(dtype),
        "value": torch.randn(batch, 1, generator=generator).to(dtype),
        "hidden": [torch.randn(batch, seq, 8, generator=generator).to(dtype) for _ in range(2)],
        "attn": [attention_probs(mask, 2, generator).to(dtype) for _ in range(2)],
        # Token-level logits of a language model, and Q, K, V projections of widths 8, 6, 4.
        "tokens": (torch.randn(batch, seq, 5, generator=generator) * 3).to(dtype),
        "qkv": [torch.randn(batch, seq, w, generator=generator).to(dtype) for w in (8, 6, 4)],
    }


def test_identical_inputs_give_zero_for_every_loss(generator):
    mask = padding_mask([4, 1, 3], seq=4)
    outputs = make_outputs(mask, generator)
    copies = {
        key: [t.clone() for t in v] if isinstance(v, list) else v.clone()
        for key, v in outputs.items()
    }
    for name, loss in all_losses(outputs, copies, mask).items():
        assert loss.item() == pytest.approx(0.0, abs=1e-6), name
    labels_as_values = outputs["value"].squeeze(-1)
    assert hard_label_loss(outputs["value"], labels_as_values).item() == 0.0


def test_all_padding_gives_finite_zero_and_finite_gradients(generator):
    mask = torch.zeros(2, 3, dtype=torch.long)
    student = {
        "hidden": [torch.randn(2, 3, 4, generator=generator, requires_grad=True)],
        "attn": [torch.rand(2, 2, 3, 3, generator=generator, requires_grad=True)],
        "tokens": torch.randn(2, 3, 5, generator=generator, requires_grad=True),
    }
    teacher = {
        "hidden": [torch.randn(2, 3, 4, generator=generator)],
        "attn": [torch.rand(2, 2, 3, 3, generator=generator)],
        "tokens": torch.randn(2, 3, 5, generator=generator),
    }
    losses = [
        hidden_state_loss(student["hidden"], teacher["hidden"], mask, "mse"),
        hidden_state_loss(student["hidden"], teacher["hidden"], mask, "cosine"),
        attention_loss(student["attn"], teacher["attn"], mask, "kl"),
        attention_loss(student["attn"], teacher["attn"], mask, "mse"),
        attention_loss(student["attn"], teacher["attn"], mask, "mse_probs"),
        relation_loss(student["hidden"], teacher["hidden"], mask, num_relation_heads=2),
    ]
    for loss_type in LOGIT_LOSS_TYPES:
        for normalizer in (None, 0, 7):
            losses.append(
                logit_distillation_loss(
                    student["tokens"],
                    teacher["tokens"],
                    loss_type=loss_type,
                    mask=mask,
                    normalizer=normalizer,
                )
            )
    for loss in losses:
        assert loss.item() == 0.0
    sum(losses).backward()
    for tensor in (student["hidden"][0], student["attn"][0], student["tokens"]):
        assert torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_finite_float32(generator, dtype):
    mask = padding_mask([3, 2], seq=3)
    student = make_outputs(mask, generator, dtype)
    teacher = make_outputs(mask, generator, dtype)
    losses = all_losses(student, teacher, mask)
    losses["ce"] = hard_label_loss(student["logits"], torch.tensor([0, 2]))
    for name, loss in losses.items():
        assert loss.dtype == torch.float32, name
        assert torch.isfinite(loss), name
    # Same numbers as computing from the upcast tensors.
    upcast = {
        k: [t.float() for t in v] if isinstance(v, list) else v.float() for k, v in student.items()
    }
    upcast_teacher = {
        k: [t.float() for t in v] if isinstance(v, list) else v.float() for k, v in teacher.items()
    }
    for name, loss in all_losses(upcast, upcast_teacher, mask).items():
        assert_close(losses[name], loss, msg=name)


def test_half_precision_extreme_logits_are_finite():
    student = torch.tensor([[1e4, -1e4, 0.0]], dtype=torch.float16)
    teacher = torch.tensor([[-1e4, 1e4, 0.0]], dtype=torch.float16)
    loss = soft_kl_loss(student, teacher, temperature=1.0)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(2e4, rel=1e-4)


# ---------------------------------------------------------------------------------------------
# masked_mean
# ---------------------------------------------------------------------------------------------


def test_masked_mean():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 1]])
    assert masked_mean(values, mask).item() == pytest.approx(3.0)
    assert masked_mean(values).item() == pytest.approx(3.5)
    assert masked_mean(values, torch.zeros(2, 3)).item() == 0.0
    # Right-aligned broadcasting: a (3,) mask applies to every row.
    assert masked_mean(values, torch.tensor([0, 1, 0])).item() == pytest.approx(3.5)
    with pytest.raises(ValueError, match="cannot be broadcast"):
        masked_mean(values, torch.ones(2))


# ---------------------------------------------------------------------------------------------
# With real (tiny) models: the masks line up with what eager BERT attention does to padding.
# ---------------------------------------------------------------------------------------------


def tiny_bert_model(layers: int, heads: int, width: int, seed: int):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=37,
        attn_implementation="eager",
    )
    return BertModel(config).eval()


def test_padded_batch_equals_token_weighted_unpadded_examples():
    teacher = tiny_bert_model(layers=4, heads=4, width=32, seed=0)
    student = tiny_bert_model(layers=2, heads=2, width=16, seed=1)
    torch.manual_seed(2)
    projections = [nn.Linear(16, 32), nn.Linear(16, 32)]
    examples = [[2, 11, 12, 13, 14, 3], [2, 21, 22, 3]]
    seq = max(len(e) for e in examples)
    input_ids = torch.tensor([e + [0] * (seq - len(e)) for e in examples])
    mask = padding_mask([len(e) for e in examples], seq)

    def run(ids: torch.Tensor, attention_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        kwargs = {"output_hidden_states": True, "output_attentions": True}
        with torch.no_grad():
            t_out = teacher(input_ids=ids, attention_mask=attention_mask, **kwargs)
            s_out = student(input_ids=ids, attention_mask=attention_mask, **kwargs)
            # Student layers 1, 2 against teacher layers 2, 4 (hidden_states[0] is the embeddings).
            s_hidden = [s_out.hidden_states[1], s_out.hidden_states[2]]
            t_hidden = [t_out.hidden_states[2], t_out.hidden_states[4]]
            s_attn = [s_out.attentions[0], s_out.attentions[1]]
            t_attn = [t_out.attentions[1], t_out.attentions[3]]
            return {
                "hidden_mse": hidden_state_loss(
                    s_hidden, t_hidden, attention_mask, "mse", projections
                ),
                "hidden_cosine": hidden_state_loss(
                    s_hidden, t_hidden, attention_mask, "cosine", projections
                ),
                "attention_kl": attention_loss(s_attn, t_attn, attention_mask, "kl"),
                "attention_mse": attention_loss(s_attn, t_attn, attention_mask, "mse"),
                "attention_mse_probs": attention_loss(s_attn, t_attn, attention_mask, "mse_probs"),
                # Widths 16 and 32, four relation heads of sizes 4 and 8.
                "relation": relation_loss(s_hidden, t_hidden, attention_mask, 4),
                "pkd": pkd_loss(s_hidden, t_hidden, projections),
            }

    batched = run(input_ids, mask)
    singles = [run(torch.tensor([e]), None) for e in examples]
    lengths = [len(e) for e in examples]
    # Hidden, attention-KL and relation terms weigh each real token (query) once; attention MSE
    # weighs each real (query, key) pair once; PKD weighs each example once.
    weights = {
        "hidden_mse": lengths,
        "hidden_cosine": lengths,
        "attention_kl": lengths,
        "attention_mse": [n * n for n in lengths],
        "attention_mse_probs": [n * n for n in lengths],
        "relation": lengths,
        "pkd": [1 for _ in lengths],
    }
    for name, value in batched.items():
        w = weights[name]
        expected = sum(wi * single[name] for wi, single in zip(w, singles, strict=True)) / sum(w)
        assert value.item() > 0, name
        assert_close(value, expected, rtol=1e-5, atol=1e-6, msg=name)


def test_symmetric_kl_against_hand_values_and_torchtune():
    # DESIGN.md's reference pair at T=1: teacher (0.7, 0.3), student (0.6, 0.4).
    teacher = torch.log(torch.tensor([[0.7, 0.3]]))
    student = torch.log(torch.tensor([[0.6, 0.4]]))
    forward = 0.7 * math.log(0.7 / 0.6) + 0.3 * math.log(0.3 / 0.4)  # 0.0216 nats
    reverse = 0.6 * math.log(0.6 / 0.7) + 0.4 * math.log(0.4 / 0.3)  # 0.0226 nats
    loss = logit_distillation_loss(student, teacher, 1.0, "symmetric_kl")
    assert forward == pytest.approx(0.02160, abs=1e-5) and reverse == pytest.approx(
        0.02258, abs=1e-5
    )
    assert loss.item() == pytest.approx((forward + reverse) / 2, abs=1e-7)
    # torchtune's SymmetricKLLoss (sym_kd_ratio=0.5, no temperature): 0.5 * its ForwardKLLoss, which is the
    # cross-entropy -sum p_t log p_s, plus 0.5 * ReverseKLLoss. It exceeds ours by half the teacher's entropy.
    cross_entropy = -(0.7 * math.log(0.6) + 0.3 * math.log(0.4))  # 0.6325 nats
    entropy = -(0.7 * math.log(0.7) + 0.3 * math.log(0.3))
    torchtune = 0.5 * cross_entropy + 0.5 * reverse
    assert loss.item() == pytest.approx(torchtune - 0.5 * entropy, abs=1e-7)
    # At T=2 the mean of the two KLs of the softened distributions, times T^2.
    p_t, p_s = (
        naive_softmax([math.log(0.7), math.log(0.3)], 2.0),
        naive_softmax([math.log(0.6), math.log(0.4)], 2.0),
    )
    expected = 4 * (naive_kl(p_t, p_s) + naive_kl(p_s, p_t)) / 2
    assert logit_distillation_loss(student, teacher, 2.0, "symmetric_kl").item() == pytest.approx(
        expected
    )
    assert logit_distillation_loss(teacher, teacher, 2.0, "symmetric_kl").item() == pytest.approx(
        0.0, abs=1e-7
    )
