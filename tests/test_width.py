"""Narrower students (nlpkd.models.width): exact slices of the teacher, importance scores, errors, training, deploy."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SENTENCES, packaged_minilm_dir, random_dataset, tiny_bert
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    DataCollatorWithPadding,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    MPNetConfig,
    MPNetForSequenceClassification,
    ResNetConfig,
    ResNetForImageClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

from nlpkd import DistillationConfig, DistillationTrainer, deploy
from nlpkd.losses import attention_loss
from nlpkd.models import create_student
from nlpkd.models.importance import WidthScores, width_importance
from nlpkd.models.width import KeptWidth, narrow_model, resolve_width_sizes, select_width

TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    num_labels=3,
)
HEAD_SIZE = 8
DEBERTA = dict(
    TINY,
    relative_attention=True,
    pos_att_type=["p2c", "c2p"],
    position_buckets=16,
    max_relative_positions=32,
    norm_rel_ebd="layer_norm",
    conv_kernel_size=3,
)
BERT_PARTS = dict(
    q="attention.self.query",
    k="attention.self.key",
    v="attention.self.value",
    out="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    norm="output.LayerNorm",
)

# Written out by hand rather than read from nlpkd.models.width_families.WIDTH_FAMILIES, so a wrong table entry fails:
# (model class, config, state-dict prefix of the base model, module paths inside one layer).
FAMILIES = {
    "bert": (BertForSequenceClassification, BertConfig(**TINY), "bert.", BERT_PARTS),
    "roberta": (RobertaForSequenceClassification, RobertaConfig(**TINY), "roberta.", BERT_PARTS),
    "xlm-roberta": (
        XLMRobertaForSequenceClassification,
        XLMRobertaConfig(**TINY),
        "roberta.",
        BERT_PARTS,
    ),
    # embedding_size == hidden_size: the embeddings narrow with the hidden size.
    "electra": (
        ElectraForSequenceClassification,
        ElectraConfig(**TINY, embedding_size=32),
        "electra.",
        BERT_PARTS,
    ),
    # embedding_size != hidden_size: the embeddings keep their width, embeddings_project loses rows.
    "electra-projected": (
        ElectraForSequenceClassification,
        ElectraConfig(**TINY, embedding_size=24),
        "electra.",
        BERT_PARTS,
    ),
    "distilbert": (
        DistilBertForSequenceClassification,
        DistilBertConfig(
            vocab_size=100, dim=32, n_layers=3, n_heads=4, hidden_dim=37, num_labels=3
        ),
        "distilbert.",
        dict(
            q="attention.q_lin",
            k="attention.k_lin",
            v="attention.v_lin",
            out="attention.out_lin",
            ffn_in="ffn.lin1",
            ffn_out="ffn.lin2",
            norm="sa_layer_norm",
        ),
    ),
    "mpnet": (
        MPNetForSequenceClassification,
        MPNetConfig(**TINY),
        "mpnet.",
        dict(
            BERT_PARTS,
            q="attention.attn.q",
            k="attention.attn.k",
            v="attention.attn.v",
            out="attention.attn.o",
            norm="attention.LayerNorm",
        ),
    ),
    "deberta-v2": (
        DebertaV2ForSequenceClassification,
        DebertaV2Config(**DEBERTA, share_att_key=False),
        "deberta.",
        dict(
            BERT_PARTS,
            q="attention.self.query_proj",
            k="attention.self.key_proj",
            v="attention.self.value_proj",
            pos_k="attention.self.pos_key_proj",
            pos_q="attention.self.pos_query_proj",
        ),
    ),
    "deberta-v2-shared-key": (
        DebertaV2ForSequenceClassification,
        DebertaV2Config(**DEBERTA, share_att_key=True),
        "deberta.",
        dict(
            BERT_PARTS,
            q="attention.self.query_proj",
            k="attention.self.key_proj",
            v="attention.self.value_proj",
        ),
    ),
}
SHARED_HEADS = {"mpnet"}


def make_teacher(family: str, seed: int = 0):
    model_cls, config, _, _ = FAMILIES[family]
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    # Fresh LayerNorms are all 1 and 0, which would hide a LayerNorm sliced along the wrong axis.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                param.normal_(1.0 if name.endswith("weight") else 0.0, 0.3)
    return model


def inputs_of(batch: int = 3, length: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, length - 4 :] = 0
    ids[0, length - 4 :] = 1
    return {"input_ids": ids, "attention_mask": mask}


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def layer_of(model, prefix: str, index: int):
    base = model.get_submodule(prefix.rstrip("."))
    layers = base.transformer.layer if hasattr(base, "transformer") else base.encoder.layer
    return layers[index]


def rows_of(heads):
    return [h * HEAD_SIZE + d for h in heads for d in range(HEAD_SIZE)]


def random_kept(family: str, seed: int = 0, heads: int = 2, neurons: int = 20) -> KeptWidth:
    g = torch.Generator().manual_seed(seed)
    per_layer = [torch.randperm(4, generator=g)[:heads].tolist() for _ in range(3)]
    if family in SHARED_HEADS:
        per_layer = [per_layer[0]] * 3
    return KeptWidth(
        heads=per_layer,
        neurons=[torch.randperm(37, generator=g)[:neurons].tolist() for _ in range(3)],
        hidden=torch.randperm(32, generator=g)[: heads * HEAD_SIZE].tolist(),
    )


# ---- nothing removed, any order ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("selection", ["first", "importance"])
def test_a_student_with_nothing_removed_is_the_teacher(family, selection):
    teacher = make_teacher(family)
    batch = inputs_of()
    student = create_student(
        teacher,
        num_layers=3,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        width_selection=selection,
        calibration_data=batch,
    )
    torch.testing.assert_close(logits(student, batch), logits(teacher, batch), rtol=0, atol=1e-6)
    assert student.config.nlpkd_kept_heads == [[0, 1, 2, 3]] * 3
    assert student.config.nlpkd_kept_hidden == list(range(32))
    assert student.config.nlpkd_width_selection == selection


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_permuted_heads_neurons_and_channels_compute_the_teacher(family):
    # Every slicing rule is exercised (nothing is dropped, everything moves), and the model must compute
    # the same function: a rule applied along the wrong axis, or a tensor missed, changes the logits.
    teacher = make_teacher(family, seed=1)
    kept = random_kept(family, seed=2, heads=4, neurons=37)
    student = narrow_model(teacher, kept)
    batch = inputs_of(seed=3)
    torch.testing.assert_close(logits(student, batch), logits(teacher, batch), rtol=0, atol=1e-5)
    assert student.config.nlpkd_kept_heads == kept.heads


def test_bare_model_with_pooler_and_masked_lm_head_permute_exactly():
    torch.manual_seed(0)
    kept = random_kept("bert", heads=4, neurons=37)
    batch = inputs_of()
    for teacher in (
        BertModel(BertConfig(**TINY)).eval(),
        BertForMaskedLM(BertConfig(**TINY)).eval(),
    ):
        student = narrow_model(teacher, kept)
        with torch.no_grad():
            expected, got = teacher(**batch), student(**batch)
        if "pooler_output" in expected:
            # The pooler's output is in hidden space: its channels come in the kept order.
            want, have = expected.pooler_output[:, kept.hidden], got.pooler_output
        else:
            want, have = expected.logits, got.logits
        torch.testing.assert_close(have, want, rtol=0, atol=1e-5)
    # The tied decoder stays tied to the narrowed word embeddings.
    assert student.cls.predictions.decoder.weight is student.bert.embeddings.word_embeddings.weight


# ---- the weights are the teacher's slices -----------------------------------------------------------------


def check_layer_slices(student_layer, teacher_layer, parts, heads, neurons, hidden):
    def weight(layer, name, attr="weight"):
        return getattr(layer.get_submodule(parts[name]), attr).detach()

    head_rows = rows_of(heads)
    for name in [n for n in ("q", "k", "v", "pos_k", "pos_q") if n in parts]:
        s, t = weight(student_layer, name), weight(teacher_layer, name)
        for i, r in enumerate(head_rows):
            for j, c in enumerate(hidden):
                assert s[i, j] == t[r, c]
        assert torch.equal(
            weight(student_layer, name, "bias"), weight(teacher_layer, name, "bias")[head_rows]
        )
    s, t = weight(student_layer, "out"), weight(teacher_layer, "out")
    assert all(s[i, j] == t[c, r] for i, c in enumerate(hidden) for j, r in enumerate(head_rows))
    s, t = weight(student_layer, "ffn_in"), weight(teacher_layer, "ffn_in")
    assert all(s[i, j] == t[n, c] for i, n in enumerate(neurons) for j, c in enumerate(hidden))
    s, t = weight(student_layer, "ffn_out"), weight(teacher_layer, "ffn_out")
    assert all(s[i, j] == t[c, n] for i, c in enumerate(hidden) for j, n in enumerate(neurons))
    s, t = weight(student_layer, "norm"), weight(teacher_layer, "norm")
    assert [s[i].item() for i in range(len(hidden))] == [t[c].item() for c in hidden]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_narrowed_weights_are_the_teachers_slices(family):
    _, config, prefix, parts = FAMILIES[family]
    teacher = make_teacher(family)
    student = create_student(
        teacher, layers=[0, 2], hidden_size=16, intermediate_size=20, width_selection="first"
    )
    assert student.config.nlpkd_teacher_layers == [0, 2]
    kept = random_kept(family, seed=5)
    narrow = narrow_model(teacher, kept)
    for i, t in enumerate([0, 2]):
        check_layer_slices(
            layer_of(student, prefix, i),
            layer_of(teacher, prefix, t),
            parts,
            [0, 1],
            range(20),
            range(16),
        )
    for i in range(3):
        check_layer_slices(
            layer_of(narrow, prefix, i),
            layer_of(teacher, prefix, i),
            parts,
            kept.heads[i],
            kept.neurons[i],
            kept.hidden,
        )
    s_words = narrow.get_input_embeddings().weight.detach()
    t_words = teacher.get_input_embeddings().weight.detach()
    if family == "electra-projected":
        assert torch.equal(s_words, t_words)  # the embeddings keep their 24 channels
        s_proj, t_proj = (
            narrow.electra.embeddings_project.weight,
            teacher.electra.embeddings_project.weight,
        )
        assert torch.equal(s_proj, torch.stack([t_proj[c] for c in kept.hidden]))
    else:
        assert torch.equal(s_words, torch.stack([t_words[:, c] for c in kept.hidden], dim=1))
    head = "classifier.out_proj" if hasattr(teacher.classifier, "out_proj") else "classifier"
    classifier, narrow_classifier = teacher.get_submodule(head), narrow.get_submodule(head)
    expected = torch.stack([classifier.weight[:, c] for c in kept.hidden], dim=1)
    assert torch.equal(narrow_classifier.weight, expected)
    assert torch.equal(narrow_classifier.bias, classifier.bias)


def test_mpnet_relative_attention_bias_keeps_the_heads_columns():
    teacher = make_teacher("mpnet")
    kept = random_kept("mpnet", seed=4)
    narrow = narrow_model(teacher, kept)
    t_bias = teacher.mpnet.encoder.relative_attention_bias.weight
    s_bias = narrow.mpnet.encoder.relative_attention_bias.weight
    assert torch.equal(s_bias, torch.stack([t_bias[:, h] for h in kept.heads[0]], dim=1))
    assert narrow.config.num_attention_heads == 2 and narrow.config.hidden_size == 16


def test_deberta_relative_embeddings_and_pooler_narrow_with_the_hidden_size():
    teacher = make_teacher("deberta-v2")
    kept = random_kept("deberta-v2", seed=6)
    narrow = narrow_model(teacher, kept)
    t_rel, s_rel = (
        teacher.deberta.encoder.rel_embeddings.weight,
        narrow.deberta.encoder.rel_embeddings.weight,
    )
    assert torch.equal(s_rel, torch.stack([t_rel[:, c] for c in kept.hidden], dim=1))
    assert narrow.config.pooler_hidden_size == 16
    t_conv, s_conv = (
        teacher.deberta.encoder.conv.conv.weight,
        narrow.deberta.encoder.conv.conv.weight,
    )
    assert s_conv[3, 5, 1] == t_conv[kept.hidden[3], kept.hidden[5], 1]


# ---- importance scores ------------------------------------------------------------------------------------


def reference_scores(model: BertForSequenceClassification, batch) -> tuple:
    """Head, neuron and hidden-channel scores of a BERT, written from the definitions by hand."""
    config = model.config
    heads, d = config.num_attention_heads, HEAD_SIZE
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        states = model(**batch, output_hidden_states=True).hidden_states
        head_scores, neuron_scores, hidden_scores = [], [], [states[0].abs()[mask].sum(0)]
        for i, layer in enumerate(model.bert.encoder.layer):
            x = states[i]
            att = layer.attention.self

            def split(y):
                return y.view(*y.shape[:2], heads, d).transpose(1, 2)

            q, k, v = split(att.query(x)), split(att.key(x)), split(att.value(x))
            scores = q @ k.transpose(-1, -2) / math.sqrt(d)
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
            context = scores.softmax(-1) @ v  # (batch, heads, seq, d)
            head_scores.append(context.norm(dim=-1).transpose(1, 2)[mask].sum(0))
            flat = context.transpose(1, 2).reshape(x.shape)
            after_attention = layer.attention.output.LayerNorm(
                layer.attention.output.dense(flat) + x
            )
            activation = torch.nn.functional.gelu(layer.intermediate.dense(after_attention))
            neuron_scores.append(activation.abs()[mask].sum(0))
            hidden_scores.append(
                after_attention.abs()[mask].sum(0) + states[i + 1].abs()[mask].sum(0)
            )
    return (
        torch.stack(head_scores),
        torch.stack(neuron_scores),
        torch.stack(hidden_scores),
        int(mask.sum()),
    )


def test_importance_scores_match_a_hand_computed_reference():
    teacher = make_teacher("bert", seed=3)
    batches = [inputs_of(3, 10, seed=0), inputs_of(2, 7, seed=1)]
    scores = width_importance(teacher, batches)
    sums = [reference_scores(teacher, b) for b in batches]
    tokens = sum(s[3] for s in sums)
    assert scores.tokens == tokens == 3 * 10 - 4 + 2 * 7 - 4
    for i, got in enumerate((scores.heads, scores.neurons, scores.hidden)):
        expected = sum(s[i] for s in sums).double() / tokens
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert scores.hidden.shape == (4, 32) and scores.heads.shape == (3, 4)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_importance_measures_every_head_neuron_and_channel_of_every_family(family):
    # A module path missing from the family's entry would leave its rows at zero.
    scores = width_importance(make_teacher(family), inputs_of())
    assert scores.heads.shape == (3, 4) and scores.neurons.shape == (3, 37)
    assert scores.hidden.shape == (4, 32)
    for table in (scores.heads, scores.neurons, scores.hidden):
        assert torch.all(table.sum(dim=1) > 0) and torch.isfinite(table).all()


def test_importance_ignores_padding_and_other_columns_and_restores_the_mode():
    teacher = make_teacher("bert").train()
    batch = inputs_of()
    padded = {k: torch.cat([v, v[:, :3] * 0 + 1], dim=1) for k, v in batch.items()}
    padded["attention_mask"][:, -3:] = 0
    scores = width_importance(teacher, {**padded, "labels": torch.tensor([0, 1, 2])})
    teacher.eval()
    plain = width_importance(teacher, batch)
    torch.testing.assert_close(scores.heads, plain.heads)
    torch.testing.assert_close(scores.hidden, plain.hidden)
    assert scores.tokens == plain.tokens


def dominant_teacher(family: str = "bert"):
    """A teacher where head 2 of layer 1, neuron 5 of every layer and hidden channel 20 stand out."""
    teacher = make_teacher(family, seed=7)
    _, _, prefix, parts = FAMILIES[family]
    with torch.no_grad():
        layer = layer_of(teacher, prefix, 1)
        layer.get_submodule(parts["v"]).weight[rows_of([2])] *= 50
        for i in range(3):
            layer_of(teacher, prefix, i).get_submodule(parts["ffn_in"]).bias[5] += 20
        for name, param in teacher.named_parameters():
            if ("LayerNorm" in name or "layer_norm" in name) and name.endswith("weight"):
                param[20] = 50.0
    return teacher


def test_importance_keeps_what_the_teacher_uses_and_first_keeps_the_first():
    teacher = dominant_teacher()
    batch = inputs_of()
    student = create_student(
        teacher, num_layers=3, hidden_size=8, intermediate_size=3, calibration_data=batch
    )
    assert student.config.nlpkd_kept_heads[1] == [2]
    assert 20 in student.config.nlpkd_kept_hidden and len(student.config.nlpkd_kept_hidden) == 8
    scores = width_importance(teacher, batch)
    sizes = resolve_width_sizes(teacher.config, hidden_size=8, intermediate_size=3)
    kept = select_width(sizes, [0, 1, 2], (32, 4, 37), scores)
    assert all(5 in neurons for neurons in kept.neurons)
    first = create_student(
        teacher, num_layers=3, hidden_size=8, intermediate_size=3, width_selection="first"
    )
    assert first.config.nlpkd_kept_heads == [[0]] * 3 and first.config.nlpkd_kept_hidden == list(
        range(8)
    )
    # Precomputed scores give the same student as the batch they came from.
    again = create_student(
        teacher, num_layers=3, hidden_size=8, intermediate_size=3, calibration_data=scores
    )
    assert again.config.nlpkd_kept_heads == student.config.nlpkd_kept_heads
    torch.testing.assert_close(logits(again, batch), logits(student, batch), rtol=0, atol=0)


def test_mpnet_keeps_the_same_heads_in_every_layer_chosen_jointly():
    teacher = dominant_teacher("mpnet")
    student = create_student(teacher, layers=[0, 1], hidden_size=8, calibration_data=inputs_of())
    assert student.config.nlpkd_kept_heads == [[2], [2]]
    # Layer 2's scores alone do not pick head 2; the joint choice does, from layer 1's.
    scores = width_importance(teacher, inputs_of())
    assert scores.heads[2].argmax().item() != 2 or scores.heads[0].argmax().item() != 2


def test_select_width_breaks_ties_towards_the_lower_index():
    scores = WidthScores(
        heads=torch.ones(2, 4, dtype=torch.float64),
        neurons=torch.ones(2, 6, dtype=torch.float64),
        hidden=torch.ones(3, 8, dtype=torch.float64),
        tokens=1,
    )
    sizes = resolve_width_sizes(
        BertConfig(hidden_size=8, num_attention_heads=4, intermediate_size=6), 4
    )
    kept = select_width(sizes, [0, 1], (8, 4, 6), scores)
    assert kept.heads == [[0, 1], [0, 1]] and kept.hidden == [0, 1, 2, 3]


# ---- sizes, errors ----------------------------------------------------------------------------------------


def test_sizes_follow_the_head_size():
    config = BertConfig(**TINY)
    assert resolve_width_sizes(config) is None
    assert resolve_width_sizes(config, hidden_size=16).num_attention_heads == 2
    assert resolve_width_sizes(config, num_attention_heads=3).hidden_size == 24
    sizes = resolve_width_sizes(config, intermediate_size=20)
    assert (sizes.hidden_size, sizes.num_attention_heads, sizes.intermediate_size) == (32, 4, 20)
    distil = DistilBertConfig(dim=32, n_heads=4, hidden_dim=37)
    assert resolve_width_sizes(distil, hidden_size=8).num_attention_heads == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(hidden_size=16, num_attention_heads=3),
            r"disagree.*1 x 8 = 8, 2 x 8 = 16, 3 x 8 = 24",
        ),
        (dict(hidden_size=20), r"hidden_size=20 is not a whole number of heads.*head size is 8"),
        (dict(num_attention_heads=5), "cannot be wider than the teacher"),
        (dict(hidden_size=40), "cannot be wider than the teacher"),
        (dict(intermediate_size=38), "larger than the teacher's 37 neurons"),
        (dict(hidden_size=0), "at least 1"),
        (dict(hidden_size=16, width_selection="random"), "width_selection must be one of"),
        (dict(hidden_size=16), "pass calibration_data"),
    ],
)
def test_bad_widths_say_what_works(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_student(make_teacher("bert"), num_layers=2, **kwargs)


def test_bad_widths_raise_before_anything_is_built():
    with pytest.raises(TypeError, match="must be an integer"):
        create_student(make_teacher("bert"), hidden_size=16.0, width_selection="first")


def test_unsupported_families_name_the_supported_ones():
    gpt2 = GPT2ForSequenceClassification(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(
        ValueError, match=r"deberta-v2, distilbert, electra, mpnet, roberta, xlm-roberta"
    ):
        create_student(gpt2, num_layers=1, hidden_size=8, width_selection="first")
    resnet = ResNetForImageClassification(
        ResNetConfig(depths=[2, 2], hidden_sizes=[8, 16], embedding_size=8)
    )
    with pytest.raises(ValueError, match="width reduction supports"):
        create_student(resnet, num_layers=1, hidden_size=8, width_selection="first")
    # Depth alone still works for them.
    assert create_student(gpt2, num_layers=1).config.n_layer == 1


def test_electra_hidden_size_equal_to_its_embedding_size_is_refused():
    with pytest.raises(ValueError, match="embedding_size is 24.*lose the projection"):
        create_student(make_teacher("electra-projected"), hidden_size=24, width_selection="first")


def test_narrow_model_checks_the_kept_indices():
    teacher = make_teacher("bert")
    good = random_kept("bert")
    cases = [
        (KeptWidth([[0, 1], [0, 1], [0]], good.neurons, good.hidden), "same number of heads"),
        (KeptWidth(good.heads[:2], good.neurons, good.hidden), "for 2 layers; the model has 3"),
        (KeptWidth([[0, 4]] * 3, good.neurons, good.hidden), r"heads \[4\] are not indices 0..3"),
        (KeptWidth([[1, 1]] * 3, good.neurons, good.hidden), "repeat an index"),
        (
            KeptWidth(good.heads, good.neurons, good.hidden[:15]),
            "15 hidden channels do not fit 2 heads",
        ),
    ]
    for kept, message in cases:
        with pytest.raises(ValueError, match=message):
            narrow_model(teacher, kept)
    with pytest.raises(ValueError, match="keep the same heads in every layer"):
        narrow_model(
            make_teacher("mpnet"), KeptWidth([[0, 1], [0, 2], [0, 1]], good.neurons, good.hidden)
        )


def test_calibration_data_must_be_batches():
    teacher = make_teacher("bert")
    with pytest.raises(TypeError, match="a batch"):
        width_importance(teacher, torch.ones(2, 3))
    with pytest.raises(ValueError, match="holds no batch"):
        width_importance(teacher, [])
    with pytest.raises(TypeError, match="not a dict batch"):
        width_importance(teacher, [torch.ones(2, 3)])


def test_a_full_depth_student_needs_a_narrower_width():
    teacher = make_teacher("bert")
    with pytest.raises(ValueError, match="fewer than the teacher's 3 encoder layers"):
        create_student(teacher, num_layers=3)
    with pytest.raises(ValueError, match="at most the teacher's 3 encoder layers, got 4"):
        create_student(teacher, num_layers=4, hidden_size=16, width_selection="first")


# ---- save / load ------------------------------------------------------------------------------------------


def test_kept_indices_survive_save_and_load(tmp_path):
    teacher = make_teacher("bert")
    batch = inputs_of()
    student = create_student(
        teacher, num_layers=2, hidden_size=16, intermediate_size=20, calibration_data=batch
    )
    student.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    for key in (
        "nlpkd_kept_heads",
        "nlpkd_kept_hidden",
        "nlpkd_width_selection",
        "nlpkd_teacher_layers",
    ):
        assert getattr(loaded.config, key) == getattr(student.config, key)
    assert (loaded.config.hidden_size, loaded.config.intermediate_size) == (16, 20)
    torch.testing.assert_close(logits(loaded, batch), logits(student, batch), rtol=0, atol=0)


# ---- training and deploying a narrow student --------------------------------------------------------------


def train_config(tmp_path, **weights) -> DistillationConfig:
    return DistillationConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        max_steps=2,
        save_strategy="no",
        report_to=[],
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
        **weights,
    )


@pytest.mark.parametrize(
    "weights",
    [
        dict(alpha_hidden=1.0),
        dict(alpha_attn=1.0),
        dict(alpha_relation=1.0),
        dict(alpha_hidden=1.0, alpha_attn=1.0, alpha_relation=1.0, hidden_embeddings=True),
    ],
    ids=["hidden", "attn", "relation", "all"],
)
def test_a_narrow_student_trains_with_the_intermediate_terms(tmp_path, tiny_tokenizer, weights):
    teacher = tiny_bert(seed=1)
    data = random_dataset(8, 8, vary_length=True)
    batch = dict(DataCollatorWithPadding(tiny_tokenizer)([data[i] for i in range(4)]))
    student = create_student(
        teacher, num_layers=2, hidden_size=16, intermediate_size=20, calibration_data=batch
    )
    before = {k: v.clone() for k, v in student.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=train_config(tmp_path, alpha_kd=0.5, **weights),
        train_dataset=data,
        data_collator=DataCollatorWithPadding(tiny_tokenizer),
    )
    assert bool(trainer.projections) == ("alpha_hidden" in weights)
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    assert any(not torch.equal(v, before[k]) for k, v in trainer.student.state_dict().items())
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())


def test_attention_term_pairs_a_narrow_students_heads_with_their_teacher_heads(
    tmp_path, tiny_tokenizer
):
    # Weights large enough that the attention maps are far from uniform.
    teacher = tiny_bert(seed=1, initializer_range=0.5)
    student = create_student(teacher, num_layers=2, num_attention_heads=2, width_selection="first")
    student.config.nlpkd_kept_heads = [[3, 1], [0, 2]]  # as importance might choose them
    data = random_dataset(4, 8, vary_length=True)
    batch = dict(DataCollatorWithPadding(tiny_tokenizer)([data[i] for i in range(4)]))
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=train_config(tmp_path, alpha_kd=0.0, alpha_ce=0.0, alpha_attn=1.0),
    )
    loss = trainer.compute_loss(trainer.model, batch)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        s_maps = student.eval()(**inputs, output_attentions=True).attentions
        t_maps = teacher(**inputs, output_attentions=True).attentions
    pairs = trainer.layer_map.items()
    expected = attention_loss(
        [s_maps[s] for s, _ in pairs],
        [t_maps[t][:, heads] for (_, t), heads in zip(pairs, [[3, 1], [0, 2]], strict=True)],
        batch["attention_mask"],
    )
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    averaged = attention_loss(
        [s_maps[s] for s, _ in pairs], [t_maps[t] for _, t in pairs], batch["attention_mask"]
    )
    assert not torch.isclose(loss, averaged)


def test_attention_loss_with_teacher_heads_is_the_loss_of_those_heads():
    g = torch.Generator().manual_seed(0)
    student = torch.rand(2, 2, 5, 5, generator=g).softmax(-1)
    teacher = torch.rand(2, 4, 5, 5, generator=g).softmax(-1)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    got = attention_loss([student], [teacher], mask, teacher_heads=[[3, 0]])
    torch.testing.assert_close(got, attention_loss([student], [teacher[:, [3, 0]]], mask))
    # Indices that do not fit fall back to the head average.
    average = attention_loss([student], [teacher], mask)
    torch.testing.assert_close(
        attention_loss([student], [teacher], mask, teacher_heads=[[0, 9]]), average
    )
    torch.testing.assert_close(
        attention_loss([student], [teacher], mask, teacher_heads=[None]), average
    )


def test_the_relation_term_needs_heads_that_divide_both_widths(tmp_path):
    teacher = tiny_bert(seed=1)
    student = create_student(teacher, num_layers=2, hidden_size=24, width_selection="first")
    # 16 relation heads split the teacher's 32 channels but not the student's 24.
    with pytest.raises(ValueError, match="student's width 24 into 16 relation heads"):
        DistillationTrainer(
            model=student,
            teacher=teacher,
            args=train_config(tmp_path, alpha_relation=1.0, num_relation_heads=16),
        )
    DistillationTrainer(
        model=student,
        teacher=teacher,
        args=train_config(tmp_path, alpha_relation=1.0, num_relation_heads=8),
    )


def test_deploy_forms_work_on_a_narrow_student(tmp_path, tiny_tokenizer):
    teacher = tiny_bert(seed=2)
    batch = dict(tiny_tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    student = create_student(
        teacher, num_layers=2, hidden_size=16, intermediate_size=20, calibration_data=batch
    )
    student.eval()
    expected = logits(student, batch)
    pruned, pruned_tokenizer = deploy.prune_vocabulary(student, tiny_tokenizer, SENTENCES)
    assert (
        pruned.config.hidden_size == 16
        and pruned.config.nlpkd_kept_hidden == student.config.nlpkd_kept_hidden
    )
    pruned_batch = dict(pruned_tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    torch.testing.assert_close(logits(pruned, pruned_batch), expected, rtol=1e-5, atol=1e-6)
    quantized = deploy.quantize_int8(student)
    assert (logits(quantized, batch) - expected).abs().max() < 0.05 * expected.abs().max() + 1e-3
    folder = deploy.export_onnx(student, tmp_path / "onnx", tiny_tokenizer)
    got = deploy.load_onnx(folder)(batch)
    torch.testing.assert_close(got, expected, rtol=deploy.ONNX_RTOL, atol=deploy.ONNX_ATOL)


# ---- the real packaged encoder ----------------------------------------------------------------------------


@pytest.mark.slow
def test_packaged_minilm_two_layers_at_half_width():
    path = packaged_minilm_dir()
    teacher = AutoModelForSequenceClassification.from_pretrained(path, num_labels=5).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    student = create_student(
        teacher,
        num_layers=2,
        hidden_size=192,
        intermediate_size=768,
        num_attention_heads=6,
        calibration_data=batch,
    )
    config = student.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (2, 192, 6)
    assert config.intermediate_size == 768 and config.nlpkd_teacher_layers == [0, 5]
    assert [len(h) for h in config.nlpkd_kept_heads] == [6, 6] and len(
        config.nlpkd_kept_hidden
    ) == 192
    assert logits(student, batch).shape == (len(SENTENCES), 5)
    same = create_student(
        teacher, num_layers=6, hidden_size=384, intermediate_size=1536, calibration_data=batch
    )
    torch.testing.assert_close(logits(same, batch), logits(teacher, batch), rtol=0, atol=1e-5)
