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
    masked_mean,
    soft_kl_loss,
)

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
                            total += (float(s_map[b, h, q, k]) - float(t_map[b, h, q, k])) ** 2
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


@pytest.mark.parametrize("loss_type", ["kl", "mse"])
def test_attention_matches_naive_reference_with_padding(generator, loss_type):
    mask = padding_mask([4, 2, 0], seq=4)
    student = [attention_probs(mask, 3, generator) for _ in range(2)]
    teacher = [attention_probs(mask, 3, generator) for _ in range(2)]
    # Garbage at padded query rows of the student must not matter either.
    student[0][1, :, 2:, :] = 0.9
    loss = attention_loss(student, teacher, attention_mask=mask, loss_type=loss_type)
    expected = naive_attention(student, teacher, mask, loss_type)
    assert_close(loss, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_type", ["kl", "mse"])
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
            "loss_type must be 'kl' or 'mse', got 'cosine'",
        ),
    ],
)
def test_attention_rejects_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        attention_loss(**kwargs)


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
    }


def make_outputs(mask: torch.Tensor, generator: torch.Generator, dtype=torch.float32) -> dict:
    batch, seq = mask.shape
    return {
        "logits": torch.randn(batch, 3, generator=generator).to(dtype),
        "value": torch.randn(batch, 1, generator=generator).to(dtype),
        "hidden": [torch.randn(batch, seq, 8, generator=generator).to(dtype) for _ in range(2)],
        "attn": [attention_probs(mask, 2, generator).to(dtype) for _ in range(2)],
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
    }
    teacher = {
        "hidden": [torch.randn(2, 3, 4, generator=generator)],
        "attn": [torch.rand(2, 2, 3, 3, generator=generator)],
    }
    losses = [
        hidden_state_loss(student["hidden"], teacher["hidden"], mask, "mse"),
        hidden_state_loss(student["hidden"], teacher["hidden"], mask, "cosine"),
        attention_loss(student["attn"], teacher["attn"], mask, "kl"),
        attention_loss(student["attn"], teacher["attn"], mask, "mse"),
    ]
    for loss in losses:
        assert loss.item() == 0.0
    sum(losses).backward()
    for tensor in (student["hidden"][0], student["attn"][0]):
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
            }

    batched = run(input_ids, mask)
    singles = [run(torch.tensor([e]), None) for e in examples]
    lengths = [len(e) for e in examples]
    # Hidden and attention-KL terms weigh each real token (query) once; attention MSE weighs each
    # real (query, key) pair once.
    weights = {
        "hidden_mse": lengths,
        "hidden_cosine": lengths,
        "attention_kl": lengths,
        "attention_mse": [n * n for n in lengths],
    }
    for name, value in batched.items():
        w = weights[name]
        expected = sum(wi * single[name] for wi, single in zip(w, singles, strict=True)) / sum(w)
        assert value.item() > 0, name
        assert_close(value, expected, rtol=1e-5, atol=1e-6, msg=name)
