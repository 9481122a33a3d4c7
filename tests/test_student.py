"""create_student and the per-architecture layer table: weights, configs, layer choices, errors."""

import logging

import pytest
import torch
from conftest import packaged_minilm_dir
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    BertTokenizer,
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
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    pipeline,
)

from nlpkd.student import (
    SUPPORTED_FAMILIES,
    create_student,
    default_layer_map,
    default_teacher_layers,
    get_encoder_layers,
    num_encoder_layers,
    select_forward_inputs,
)

LABELS = {0: "sad", 1: "calm", 2: "glad"}
LABEL_KWARGS = dict(num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
TINY = dict(
    vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37
)

# Written out by hand rather than derived from SUPPORTED_FAMILIES, so a wrong table entry fails:
# (config class, model class, config kwargs, state-dict prefix of the encoder layers, layer field).
FAMILIES = {
    "bert": (
        BertConfig,
        BertForSequenceClassification,
        TINY,
        "bert.encoder.layer.",
        "num_hidden_layers",
    ),
    "roberta": (
        RobertaConfig,
        RobertaForSequenceClassification,
        TINY,
        "roberta.encoder.layer.",
        "num_hidden_layers",
    ),
    "xlm-roberta": (
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
        TINY,
        "roberta.encoder.layer.",
        "num_hidden_layers",
    ),
    "distilbert": (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        dict(vocab_size=100, dim=32, n_layers=4, n_heads=4, hidden_dim=37),
        "distilbert.transformer.layer.",
        "n_layers",
    ),
    "electra": (
        ElectraConfig,
        ElectraForSequenceClassification,
        # embedding_size != hidden_size adds `embeddings_project`, a non-layer tensor to carry over.
        dict(TINY, embedding_size=16),
        "electra.encoder.layer.",
        "num_hidden_layers",
    ),
    "deberta-v2": (
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
        # Relative attention with its encoder-level tables (rel_embeddings, LayerNorm) and the
        # convolution after the first layer: all shared, none per layer.
        dict(
            TINY,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_buckets=16,
            max_relative_positions=32,
            norm_rel_ebd="layer_norm",
            conv_kernel_size=3,
        ),
        "deberta.encoder.layer.",
        "num_hidden_layers",
    ),
    "mpnet": (
        MPNetConfig,
        MPNetForSequenceClassification,
        TINY,
        "mpnet.encoder.layer.",
        "num_hidden_layers",
    ),
}


def make_teacher(family: str, seed: int = 0):
    config_cls, model_cls, kwargs, _, _ = FAMILIES[family]
    torch.manual_seed(seed)
    teacher = model_cls(config_cls(**kwargs, **LABEL_KWARGS)).eval()
    # Fresh models have LayerNorms at exactly 1/0 and zero biases in every layer, which would let a
    # layer mix-up go unnoticed; make every tensor distinct.
    with torch.no_grad():
        for parameter in teacher.parameters():
            parameter.normal_(0.0, 0.2)
    return teacher


def expected_teacher_key(key: str, prefix: str, layers: list[int]) -> str:
    """The teacher tensor that a student tensor must equal, from the definition of the remap."""
    if key.startswith(prefix):
        index, rest = key[len(prefix) :].split(".", 1)
        return f"{prefix}{layers[int(index)]}.{rest}"
    return key


def sample_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (2, 9), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def test_supported_families_table():
    assert sorted(SUPPORTED_FAMILIES) == sorted(FAMILIES)
    assert SUPPORTED_FAMILIES["distilbert"].layers_path == "transformer.layer"
    assert SUPPORTED_FAMILIES["distilbert"].num_layers_attr == "n_layers"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_create_student_copies_weights_per_family(family, tmp_path):
    _, model_cls, _, prefix, layer_field = FAMILIES[family]
    teacher = make_teacher(family)
    layers = [1, 3]
    student = create_student(teacher, num_layers=2, layers=layers)

    assert type(student) is model_cls
    assert not student.training  # follows the teacher, which is in eval mode
    assert getattr(student.config, layer_field) == 2
    assert num_encoder_layers(student) == 2
    assert len(get_encoder_layers(student)) == 2
    assert num_encoder_layers(teacher) == 4  # the teacher is left alone
    assert student.config.nlpkd_teacher_layers == layers
    assert student.config.id2label == LABELS
    assert student.config.num_labels == 3

    teacher_state = teacher.state_dict()
    student_state = student.state_dict()
    # Everything but the two dropped layers (0 and 2) comes over, nothing else.
    dropped = [k for k in teacher_state if k.startswith((f"{prefix}0.", f"{prefix}2."))]
    assert dropped
    assert len(student_state) == len(teacher_state) - len(dropped)
    for key, tensor in student_state.items():
        source = teacher_state[expected_teacher_key(key, prefix, layers)]
        assert torch.equal(tensor, source), key
        if tensor.numel():
            assert tensor.data_ptr() != source.data_ptr(), f"{key} shares memory with the teacher"
    # Guard the guard: layer 0 of the student is teacher layer 1, not teacher layer 0.
    some_layer_key = next(k for k in student_state if k.startswith(f"{prefix}0.") and "weight" in k)
    assert not torch.equal(student_state[some_layer_key], teacher_state[some_layer_key])

    student.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is model_cls
    assert reloaded.config.id2label == LABELS
    assert reloaded.config.label2id == {v: k for k, v in LABELS.items()}
    assert reloaded.config.nlpkd_teacher_layers == layers
    assert getattr(reloaded.config, layer_field) == 2
    inputs = sample_inputs()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, student.eval()(**inputs).logits)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_student_of_first_layers_reproduces_teacher_hidden_states(family):
    # Behavioural check of the copy: a student built from teacher layers 0 and 1 must compute the
    # teacher's first two layers exactly, including shared parts such as relative positions.
    teacher = make_teacher(family, seed=1)
    student = create_student(teacher, layers=[0, 1]).eval()
    inputs = sample_inputs(seed=1)
    with torch.no_grad():
        teacher_hidden = teacher(**inputs, output_hidden_states=True).hidden_states
        student_hidden = student(**inputs, output_hidden_states=True).hidden_states
    assert len(student_hidden) == 3
    for k in range(3):
        torch.testing.assert_close(student_hidden[k], teacher_hidden[k])
    assert not torch.allclose(teacher_hidden[2], teacher_hidden[3])


def test_student_keeps_dtype_mode_attention_and_records_teacher():
    teacher = make_teacher("bert")
    teacher.config._name_or_path = "my-org/bert-teacher"
    teacher.config._attn_implementation = "eager"
    teacher.to(torch.bfloat16).train()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)

    student = create_student(teacher)

    assert student.dtype == torch.bfloat16
    assert student.device == teacher.device
    assert student.training
    assert student.config._attn_implementation == "eager"
    assert student.config.nlpkd_teacher == "my-org/bert-teacher"
    assert all(parameter.requires_grad for parameter in student.parameters())
    assert torch.equal(
        student.bert.encoder.layer[1].output.dense.weight,
        teacher.bert.encoder.layer[2].output.dense.weight,
    )
    # The config is a copy: changing the student's must not touch the teacher's.
    assert teacher.config.num_hidden_layers == 4
    assert not hasattr(teacher.config, "nlpkd_teacher_layers")


def test_student_of_sdpa_teacher_stays_sdpa():
    teacher = make_teacher("bert")
    assert teacher.config._attn_implementation == "sdpa"
    assert create_student(teacher).config._attn_implementation == "sdpa"


def test_bare_base_model_with_and_without_pooler():
    config = BertConfig(**TINY)
    with_pooler = BertModel(config)
    student = create_student(with_pooler, layers=[0, 3])
    assert type(student) is BertModel
    assert torch.equal(student.pooler.dense.weight, with_pooler.pooler.dense.weight)
    assert torch.equal(
        student.encoder.layer[1].attention.self.query.weight,
        with_pooler.encoder.layer[3].attention.self.query.weight,
    )

    no_pooler = BertModel(config, add_pooling_layer=False)
    student = create_student(no_pooler, num_layers=2)
    assert student.pooler is None
    assert student.config.nlpkd_teacher_layers == [0, 2]


def test_tied_heads_stay_tied():
    teacher = BertForMaskedLM(BertConfig(**TINY))
    student = create_student(teacher, num_layers=2)
    assert student.cls.predictions.decoder.weight is student.bert.embeddings.word_embeddings.weight
    assert torch.equal(
        student.bert.embeddings.word_embeddings.weight,
        teacher.bert.embeddings.word_embeddings.weight,
    )


def test_pipeline_returns_user_labels(tmp_path):
    words = "the movie was good bad great awful plot music fun".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab_file=str(tmp_path / "vocab.txt"), model_max_length=32)
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(
        BertConfig(**dict(TINY, vocab_size=len(vocab)), **LABEL_KWARGS)
    ).eval()

    student = create_student(teacher)
    out_dir = tmp_path / "student"
    student.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

    classifier = pipeline("text-classification", model=str(out_dir))
    result = classifier("the movie was great fun")
    assert len(result) == 1
    assert result[0]["label"] in LABELS.values()
    assert 0.0 <= result[0]["score"] <= 1.0
    assert classifier.model.config.nlpkd_teacher_layers == [0, 2]


@pytest.mark.parametrize(
    "teacher_layers, student_layers, expected",
    [
        (6, 3, [0, 2, 4]),
        (12, 6, [0, 2, 4, 6, 8, 10]),
        (12, 4, [0, 3, 6, 9]),
        (12, 5, [0, 2, 4, 7, 9]),  # floor(i * 2.4)
        (6, 4, [0, 1, 3, 4]),  # floor(i * 1.5)
        (12, 1, [0]),
        (4, 4, [0, 1, 2, 3]),
    ],
)
def test_default_teacher_layers(teacher_layers, student_layers, expected):
    assert default_teacher_layers(teacher_layers, student_layers) == expected


@pytest.mark.parametrize("teacher_layers", range(1, 25))
def test_default_teacher_layers_matches_its_definition(teacher_layers):
    for student_layers in range(1, teacher_layers + 1):
        stride = teacher_layers / student_layers
        chosen = default_teacher_layers(teacher_layers, student_layers)
        assert chosen == [int(i * stride + 1e-9) for i in range(student_layers)]
        assert len(set(chosen)) == student_layers and chosen[0] == 0


@pytest.mark.parametrize("args", [(6, 0), (6, 7), (0, 0), (3, -1)])
def test_default_teacher_layers_rejects_bad_counts(args):
    with pytest.raises(ValueError, match="must be"):
        default_teacher_layers(*args)


def test_default_choice_is_half_the_teacher():
    teacher = BertForSequenceClassification(BertConfig(**dict(TINY, num_hidden_layers=6)))
    student = create_student(teacher)
    assert student.config.num_hidden_layers == 3
    assert student.config.nlpkd_teacher_layers == [0, 2, 4]
    for i, j in enumerate([0, 2, 4]):
        assert torch.equal(
            student.bert.encoder.layer[i].intermediate.dense.weight,
            teacher.bert.encoder.layer[j].intermediate.dense.weight,
        )

    odd = BertForSequenceClassification(BertConfig(**dict(TINY, num_hidden_layers=5)))
    assert create_student(odd).config.nlpkd_teacher_layers == [0, 2]  # 5 // 2 = 2 layers
    two = BertForSequenceClassification(BertConfig(**dict(TINY, num_hidden_layers=2)))
    assert create_student(two).config.nlpkd_teacher_layers == [0]


def test_explicit_layers_keep_the_given_order(caplog):
    teacher = make_teacher("bert")
    with caplog.at_level(logging.WARNING, logger="nlpkd.student"):
        student = create_student(teacher, layers=[3, 0])
    assert "not in ascending teacher order" in caplog.text
    assert student.config.nlpkd_teacher_layers == [3, 0]
    assert torch.equal(
        student.bert.encoder.layer[0].attention.output.dense.weight,
        teacher.bert.encoder.layer[3].attention.output.dense.weight,
    )
    assert default_layer_map(student, teacher) == {0: 3, 1: 0}


def test_explicit_layers_sorted_do_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="nlpkd.student"):
        create_student(make_teacher("bert"), layers=(0, 3))
    assert caplog.text == ""


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(layers=[0, 4, 7]),
            r"`layers` has indices \[4, 7\] outside the teacher's 4 encoder layers \(valid range 0..3\)",
        ),
        (dict(layers=[-1]), r"indices \[-1\] outside .* \(valid range 0..3\)"),
        (dict(layers=[1, 1, 2]), r"`layers` repeats teacher layers \[1\]"),
        (
            dict(layers=[]),
            r"`layers` is empty; name at least one teacher layer \(valid range 0..3\)",
        ),
        (dict(layers=[0, 1, 2, 3]), "a student needs fewer than the teacher's 4 encoder layers"),
        (dict(num_layers=4), r"fewer than the teacher's 4 encoder layers, got 4"),
        (dict(num_layers=9), r"fewer than the teacher's 4 encoder layers, got 9"),
        (dict(num_layers=0), r"`num_layers` must be at least 1 .* got 0"),
        (dict(num_layers=3, layers=[0, 2]), r"`num_layers=3` disagrees with `layers=\[0, 2\]`"),
    ],
)
def test_create_student_rejects_bad_layer_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_student(make_teacher("bert"), **kwargs)


def test_create_student_rejects_non_integer_layers():
    with pytest.raises(TypeError, match="must be an integer"):
        create_student(make_teacher("bert"), layers=[0, 1.5])
    with pytest.raises(TypeError, match="must be an integer, got the bool"):
        create_student(make_teacher("bert"), layers=[True])
    with pytest.raises(TypeError, match="sequence of integers"):
        create_student(make_teacher("bert"), layers="02")


def test_one_layer_teacher_cannot_shrink():
    teacher = BertForSequenceClassification(BertConfig(**dict(TINY, num_hidden_layers=1)))
    with pytest.raises(ValueError, match="fewer than the teacher's 1 encoder layers, got 1"):
        create_student(teacher)


def test_unsupported_family_lists_supported_ones():
    gpt2 = GPT2ForSequenceClassification(
        GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, num_labels=3)
    )
    expected = (
        "model_type 'gpt2' is not supported; supported families: "
        "bert, deberta-v2, distilbert, electra, mpnet, roberta, xlm-roberta."
    )
    for call in (
        lambda: create_student(gpt2),
        lambda: get_encoder_layers(gpt2),
        lambda: num_encoder_layers(gpt2.config),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value).startswith(expected)


def test_num_encoder_layers_accepts_models_and_configs():
    distil = DistilBertConfig(vocab_size=100, dim=32, n_layers=5, n_heads=4, hidden_dim=37)
    assert num_encoder_layers(distil) == 5
    assert num_encoder_layers(DistilBertForSequenceClassification(distil)) == 5
    assert num_encoder_layers(BertConfig(**TINY)) == 4
    with pytest.raises(TypeError, match="PreTrainedModel or PreTrainedConfig"):
        num_encoder_layers({"num_hidden_layers": 4})


def test_get_encoder_layers_returns_the_models_own_modules():
    teacher = make_teacher("distilbert")
    assert get_encoder_layers(teacher) is teacher.distilbert.transformer.layer
    bare = teacher.distilbert
    assert get_encoder_layers(bare) is bare.transformer.layer


def test_default_layer_map_uses_recorded_teacher_layers():
    teacher = BertForSequenceClassification(BertConfig(**dict(TINY, num_hidden_layers=6)))
    student = create_student(teacher, layers=[1, 2, 5])
    assert default_layer_map(student, teacher) == {0: 1, 1: 2, 2: 5}


def test_default_layer_map_uniform_without_record():
    def bert(n):
        return BertForSequenceClassification(BertConfig(**dict(TINY, num_hidden_layers=n)))

    def reference(s, t):
        # round half up of (i + 1) * t / s, minus one, from the definition.
        return {i: int((i + 1) * t / s + 0.5) - 1 for i in range(s)}

    assert default_layer_map(bert(3), bert(6)) == {0: 1, 1: 3, 2: 5}
    assert default_layer_map(bert(4), bert(12)) == {0: 2, 1: 5, 2: 8, 3: 11}
    assert default_layer_map(bert(2), bert(5)) == {0: 2, 1: 4}  # 2.5 rounds up
    assert default_layer_map(bert(4), bert(4)) == {0: 0, 1: 1, 2: 2, 3: 3}
    for s, t in [(1, 1), (1, 7), (3, 7), (5, 12), (6, 12), (7, 24)]:
        mapping = default_layer_map(bert(s), bert(t))
        assert mapping == reference(s, t)
        assert mapping[s - 1] == t - 1

    # A DistilBERT student (layer count in `n_layers`) from a BERT teacher.
    distil = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=37)
    )
    assert default_layer_map(distil, bert(6)) == {0: 2, 1: 5}


def test_default_layer_map_errors():
    def bert(n):
        return BertForSequenceClassification(BertConfig(**dict(TINY, num_hidden_layers=n)))

    with pytest.raises(ValueError, match="student has 5 encoder layers, more than the teacher's 3"):
        default_layer_map(bert(5), bert(3))

    student = create_student(bert(6), layers=[0, 3, 5])
    with pytest.raises(
        ValueError, match=r"names teacher layers \[3, 5\] but the teacher has 3 encoder layers"
    ):
        default_layer_map(student, bert(3))

    student.config.nlpkd_teacher_layers = [0, 1]
    with pytest.raises(ValueError, match=r"has 2 entries \[0, 1\] but the student has 3"):
        default_layer_map(student, bert(6))


def test_select_forward_inputs_per_model():
    teacher = BertForSequenceClassification(BertConfig(**TINY))
    student = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=37)
    )
    ids = torch.tensor([[2, 7, 9, 3]])
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
        "labels": torch.tensor([1]),
        "idx": torch.tensor([17]),
        "output_hidden_states": True,  # a forward kwarg, not a named parameter: dropped
    }
    teacher_inputs = select_forward_inputs(teacher, batch)
    student_inputs = select_forward_inputs(student, batch)
    assert list(teacher_inputs) == ["input_ids", "attention_mask", "token_type_ids"]
    assert list(student_inputs) == ["input_ids", "attention_mask"]
    assert teacher_inputs["input_ids"] is ids
    assert "labels" in batch  # the batch itself is untouched

    # The filtered inputs are what each model actually runs on.
    assert teacher(**teacher_inputs).loss is None
    assert student(**student_inputs).logits.shape == (1, 2)


def test_select_forward_inputs_looks_through_wrappers():
    class Wrapper(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            return self.module(*args, **kwargs)

    teacher = BertForSequenceClassification(BertConfig(**TINY))
    batch = {"input_ids": 1, "token_type_ids": 2, "labels": 3, "extra": 4}
    assert select_forward_inputs(Wrapper(teacher), batch) == {"input_ids": 1, "token_type_ids": 2}


@pytest.mark.slow
def test_packaged_minilm_student():
    teacher = BertForSequenceClassification.from_pretrained(packaged_minilm_dir(), num_labels=5)
    assert num_encoder_layers(teacher) == 6
    student = create_student(teacher, num_layers=3)

    assert student.config.num_hidden_layers == 3
    assert student.config.hidden_size == 384
    assert student.config.nlpkd_teacher_layers == [0, 2, 4]
    assert student.config.num_labels == 5
    assert student.config.nlpkd_teacher == teacher.config.name_or_path != ""
    teacher_state = teacher.state_dict()
    student_state = student.state_dict()
    embedding_keys = [k for k in student_state if k.startswith("bert.embeddings.")]
    assert len(embedding_keys) >= 5
    for key in embedding_keys:
        assert torch.equal(student_state[key], teacher_state[key]), key
    for i, j in enumerate([0, 2, 4]):
        layer_keys = [k for k in student_state if k.startswith(f"bert.encoder.layer.{i}.")]
        assert len(layer_keys) == 16
        for key in layer_keys:
            source = key.replace(f"bert.encoder.layer.{i}.", f"bert.encoder.layer.{j}.")
            assert torch.equal(student_state[key], teacher_state[source]), key
    for key in ("bert.pooler.dense.weight", "classifier.weight", "classifier.bias"):
        assert torch.equal(student_state[key], teacher_state[key]), key
    assert sum(p.numel() for p in student.parameters()) < sum(
        p.numel() for p in teacher.parameters()
    )
