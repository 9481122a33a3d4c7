"""create_student and the per-architecture layer table: weights, configs, layer choices, errors."""

import logging
import re

import pytest
import torch
from conftest import packaged_minilm_dir
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
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
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    MPNetConfig,
    MPNetForSequenceClassification,
    Qwen2Config,
    Qwen2ForCausalLM,
    ResNetConfig,
    ResNetForImageClassification,
    ResNetModel,
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    pipeline,
)

from nlpkd.models import (
    LAYER_STRATEGIES,
    SUPPORTED_FAMILIES,
    attention_probs_dropouts,
    attention_projections,
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


def make_distinct(model):
    # Fresh models have LayerNorms at exactly 1/0 and zero biases in every layer, which would let a
    # layer mix-up go unnoticed; make every tensor distinct.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0.0, 0.2)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    return model


def make_teacher(family: str, seed: int = 0, **overrides):
    config_cls, model_cls, kwargs, _, _ = FAMILIES[family]
    torch.manual_seed(seed)
    return make_distinct(model_cls(config_cls(**{**kwargs, **overrides}, **LABEL_KWARGS)).eval())


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


SPECIAL_TOKENS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
LLAMA_TINY = dict(
    vocab_size=100,
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    **SPECIAL_TOKENS,
)
GPT2_TINY = dict(vocab_size=100, n_embd=32, n_layer=4, n_head=4, **SPECIAL_TOKENS)
# Written out by hand: (config class, model class, config kwargs, state-dict prefix of the
# layers, layer-count field, final norm relative to base_model).
DECODERS = {
    "gpt2": (GPT2Config, GPT2LMHeadModel, GPT2_TINY, "transformer.h.", "n_layer", "ln_f"),
    "gpt2-cls": (
        GPT2Config,
        GPT2ForSequenceClassification,
        dict(GPT2_TINY, **LABEL_KWARGS),
        "transformer.h.",
        "n_layer",
        "ln_f",
    ),
    "llama": (
        LlamaConfig,
        LlamaForCausalLM,
        LLAMA_TINY,
        "model.layers.",
        "num_hidden_layers",
        "norm",
    ),
    # Sliding window on the layers from 2 up: per-layer `layer_types` must follow the layers.
    "qwen2": (
        Qwen2Config,
        Qwen2ForCausalLM,
        dict(LLAMA_TINY, use_sliding_window=True, sliding_window=4, max_window_layers=2),
        "model.layers.",
        "num_hidden_layers",
        "norm",
    ),
    "mistral": (
        MistralConfig,
        MistralForCausalLM,
        dict(LLAMA_TINY, sliding_window=4),
        "model.layers.",
        "num_hidden_layers",
        "norm",
    ),
}


def make_decoder(name: str, seed: int = 0, **overrides):
    config_cls, model_cls, kwargs, _, _, _ = DECODERS[name]
    torch.manual_seed(seed)
    return make_distinct(model_cls(config_cls(**{**kwargs, **overrides})).eval())


RESNET_TINY = dict(
    num_channels=3,
    embedding_size=8,
    hidden_sizes=[8, 16, 24],
    depths=[3, 4, 2],
    layer_type="basic",
    num_labels=3,
)


def make_resnet(seed: int = 0, model_cls=ResNetForImageClassification, **overrides):
    torch.manual_seed(seed)
    return make_distinct(model_cls(ResNetConfig(**{**RESNET_TINY, **overrides})).eval())


def test_supported_families_table():
    assert sorted(SUPPORTED_FAMILIES) == sorted(
        [*FAMILIES, "gpt2", "llama", "mistral", "qwen2", "resnet"]
    )
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
    assert student.config.nlpkd_teacher_layers == [0, 3]  # uniform: first and last
    assert torch.equal(
        student.bert.encoder.layer[1].output.dense.weight,
        teacher.bert.encoder.layer[3].output.dense.weight,
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
    assert student.config.nlpkd_teacher_layers == [0, 3]


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
    assert classifier.model.config.nlpkd_teacher_layers == [0, 3]


@pytest.mark.parametrize(
    "teacher_layers, student_layers, expected",
    [
        (12, 6, [0, 2, 4, 7, 9, 11]),  # DistilBERT's choice
        (6, 3, [0, 3, 5]),  # 2.5 rounds up
        (6, 2, [0, 5]),
        (12, 4, [0, 4, 7, 11]),  # 11/3 = 3.67, 7.33
        (12, 5, [0, 3, 6, 8, 11]),  # 2.75, 5.5 (up), 8.25
        (6, 4, [0, 2, 3, 5]),  # 1.67, 3.33
        (12, 1, [11]),  # one layer: the last (measured in docs/quality.md)
        (4, 4, [0, 1, 2, 3]),
    ],
)
def test_default_teacher_layers_uniform(teacher_layers, student_layers, expected):
    assert default_teacher_layers(teacher_layers, student_layers) == expected
    assert default_teacher_layers(teacher_layers, student_layers, "uniform") == expected


@pytest.mark.parametrize(
    "teacher_layers, student_layers, strategy, expected",
    [
        (6, 3, "alternate", [0, 2, 4]),
        (12, 6, "alternate", [0, 2, 4, 6, 8, 10]),
        (12, 4, "alternate", [0, 3, 6, 9]),
        (12, 5, "alternate", [0, 2, 4, 7, 9]),  # floor(i * 2.4)
        (6, 4, "alternate", [0, 1, 3, 4]),  # floor(i * 1.5)
        (12, 1, "alternate", [0]),
        (6, 3, "first", [0, 1, 2]),
        (12, 1, "first", [0]),
        (6, 3, "last", [3, 4, 5]),
        (12, 1, "last", [11]),
        (4, 4, "last", [0, 1, 2, 3]),
    ],
)
def test_default_teacher_layers_other_strategies(
    teacher_layers, student_layers, strategy, expected
):
    assert default_teacher_layers(teacher_layers, student_layers, strategy) == expected


def reference_teacher_layers(t: int, s: int, strategy: str) -> list[int]:
    """The strategies from their definitions, in floats (exact halves are exact in binary)."""
    if strategy == "uniform":
        return [t - 1] if s == 1 else [int(i * (t - 1) / (s - 1) + 0.5) for i in range(s)]
    if strategy == "alternate":
        return [int(i * t / s + 1e-9) for i in range(s)]
    return list(range(s)) if strategy == "first" else list(range(t - s, t))


@pytest.mark.parametrize("strategy", LAYER_STRATEGIES)
def test_default_teacher_layers_matches_its_definition(strategy):
    for teacher_layers in range(1, 25):
        for student_layers in range(1, teacher_layers + 1):
            chosen = default_teacher_layers(teacher_layers, student_layers, strategy)
            assert chosen == reference_teacher_layers(teacher_layers, student_layers, strategy)
            assert len(set(chosen)) == student_layers and chosen == sorted(chosen)
            if strategy == "uniform":
                assert chosen[-1] == teacher_layers - 1
                assert student_layers == 1 or chosen[0] == 0


def test_layer_strategies_constant():
    assert LAYER_STRATEGIES == ("uniform", "alternate", "first", "last")
    with pytest.raises(ValueError, match="`strategy` must be one of 'uniform', 'alternate'"):
        default_teacher_layers(6, 3, "even")


@pytest.mark.parametrize("args", [(6, 0), (6, 7), (0, 0), (3, -1)])
def test_default_teacher_layers_rejects_bad_counts(args):
    with pytest.raises(ValueError, match="must be"):
        default_teacher_layers(*args)


def test_default_choice_is_half_the_teacher():
    teacher = BertForSequenceClassification(BertConfig(**dict(TINY, num_hidden_layers=6)))
    student = create_student(teacher)
    assert student.config.num_hidden_layers == 3
    assert student.config.nlpkd_teacher_layers == [0, 3, 5]
    for i, j in enumerate([0, 3, 5]):
        assert torch.equal(
            student.bert.encoder.layer[i].intermediate.dense.weight,
            teacher.bert.encoder.layer[j].intermediate.dense.weight,
        )

    odd = BertForSequenceClassification(BertConfig(**dict(TINY, num_hidden_layers=5)))
    assert create_student(odd).config.nlpkd_teacher_layers == [0, 4]  # 5 // 2 = 2 layers
    two = BertForSequenceClassification(BertConfig(**dict(TINY, num_hidden_layers=2)))
    assert create_student(two).config.nlpkd_teacher_layers == [1]  # one layer: the last


@pytest.mark.parametrize(
    "strategy, expected",
    [("uniform", [0, 3, 5]), ("alternate", [0, 2, 4]), ("first", [0, 1, 2]), ("last", [3, 4, 5])],
)
def test_create_student_strategies(strategy, expected):
    teacher = make_teacher("bert", num_hidden_layers=6)
    student = create_student(teacher, num_layers=3, strategy=strategy)
    assert student.config.nlpkd_teacher_layers == expected
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    prefix = "bert.encoder.layer."
    for key, tensor in student_state.items():
        assert torch.equal(tensor, teacher_state[expected_teacher_key(key, prefix, expected)]), key


def test_create_student_strategy_errors():
    teacher = make_teacher("bert")
    with pytest.raises(ValueError, match="`strategy` must be one of"):
        create_student(teacher, num_layers=2, strategy="every_other")
    with pytest.raises(ValueError, match="`layers` names the teacher layers itself"):
        create_student(teacher, layers=[0, 2], strategy="last")
    # The default strategy alongside explicit layers is fine: layers win.
    assert create_student(teacher, layers=[1, 2]).config.nlpkd_teacher_layers == [1, 2]


def test_explicit_layers_keep_the_given_order(caplog):
    teacher = make_teacher("bert")
    with caplog.at_level(logging.WARNING, logger="nlpkd.models.student"):
        student = create_student(teacher, layers=[3, 0])
    assert "not in ascending teacher order" in caplog.text
    assert student.config.nlpkd_teacher_layers == [3, 0]
    assert torch.equal(
        student.bert.encoder.layer[0].attention.output.dense.weight,
        teacher.bert.encoder.layer[3].attention.output.dense.weight,
    )
    # The layer map does not follow the copied layers: 2 of 4 is TinyBERT's {0: 1, 1: 3}.
    assert default_layer_map(student, teacher) == {0: 1, 1: 3}


def test_explicit_layers_sorted_do_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="nlpkd.models.student"):
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
    # ALBERT shares one layer across the depth: there is no list of layers to choose from.
    albert = AlbertForSequenceClassification(
        AlbertConfig(
            vocab_size=100,
            embedding_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            num_labels=3,
        )
    )
    expected = (
        "model_type 'albert' is not supported; supported families: "
        "bert, deberta-v2, distilbert, electra, gpt2, llama, mistral, mpnet, qwen2, resnet, "
        "roberta, xlm-roberta."
    )
    for call in (
        lambda: create_student(albert),
        lambda: get_encoder_layers(albert),
        lambda: num_encoder_layers(albert.config),
        lambda: attention_projections(albert, 0),
        lambda: attention_probs_dropouts(albert),
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


def tinybert_map(s: int, t: int) -> dict[int, int]:
    """TinyBERT's end-of-block map from its definition: round half up of (i + 1) * t / s, minus 1."""
    return {i: int((i + 1) * t / s + 0.5) - 1 for i in range(s)}


def test_default_layer_map_ignores_recorded_teacher_layers():
    teacher = BertForSequenceClassification(BertConfig(**dict(TINY, num_hidden_layers=6)))
    for layers in ([1, 2, 5], [0, 2, 4], [0, 3, 5], [3, 4, 5]):
        student = create_student(teacher, layers=layers)
        assert student.config.nlpkd_teacher_layers == layers
        assert default_layer_map(student, teacher) == {0: 1, 1: 3, 2: 5}
    # The default student (teacher layers 0, 3, 5) learns from the ends of the blocks.
    assert default_layer_map(create_student(teacher), teacher) == {0: 1, 1: 3, 2: 5}


def test_default_layer_map_is_tinybert_end_of_block():
    def bert(n):
        return BertForSequenceClassification(BertConfig(**dict(TINY, num_hidden_layers=n)))

    assert default_layer_map(bert(3), bert(6)) == {0: 1, 1: 3, 2: 5}
    assert default_layer_map(bert(6), bert(12)) == {0: 1, 1: 3, 2: 5, 3: 7, 4: 9, 5: 11}
    assert default_layer_map(bert(1), bert(6)) == {0: 5}
    assert default_layer_map(bert(4), bert(12)) == {0: 2, 1: 5, 2: 8, 3: 11}
    assert default_layer_map(bert(2), bert(5)) == {0: 2, 1: 4}  # 2.5 rounds up
    assert default_layer_map(bert(4), bert(4)) == {0: 0, 1: 1, 2: 2, 3: 3}
    for s, t in [(1, 1), (1, 7), (3, 7), (5, 12), (6, 12), (7, 24)]:
        mapping = default_layer_map(bert(s), bert(t))
        assert mapping == tinybert_map(s, t)
        assert mapping[s - 1] == t - 1

    # A DistilBERT student (layer count in `n_layers`) from a BERT teacher.
    distil = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=37)
    )
    assert default_layer_map(distil, bert(6)) == {0: 2, 1: 5}
    # Decoders have one list of layers too.
    gpt2 = make_decoder("gpt2")
    assert default_layer_map(create_student(gpt2, num_layers=2), gpt2) == {0: 1, 1: 3}


def test_default_layer_map_errors():
    def bert(n):
        return BertForSequenceClassification(BertConfig(**dict(TINY, num_hidden_layers=n)))

    with pytest.raises(ValueError, match="student has 5 encoder layers, more than the teacher's 3"):
        default_layer_map(bert(5), bert(3))
    resnet = make_resnet()
    with pytest.raises(ValueError, match="The teacher .*'resnet'.* groups its blocks in stages"):
        default_layer_map(bert(2), resnet)
    with pytest.raises(ValueError, match="The student .*'resnet'.* groups its blocks in stages"):
        default_layer_map(resnet, bert(2))
    # Two staged models compare stage outputs, stage to stage.
    stages = len(resnet.config.depths)
    assert default_layer_map(create_student(resnet), resnet) == {j: j for j in range(stages)}
    with pytest.raises(ValueError, match="student has 1 stages and the teacher 2"):
        default_layer_map(
            make_resnet(depths=[2], hidden_sizes=[8]),
            make_resnet(depths=[2, 2], hidden_sizes=[8, 16]),
        )


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
    assert student.config.nlpkd_teacher_layers == [0, 3, 5]
    assert student.config.num_labels == 5
    assert student.config.nlpkd_teacher == teacher.config.name_or_path != ""
    teacher_state = teacher.state_dict()
    student_state = student.state_dict()
    embedding_keys = [k for k in student_state if k.startswith("bert.embeddings.")]
    assert len(embedding_keys) >= 5
    for key in embedding_keys:
        assert torch.equal(student_state[key], teacher_state[key]), key
    for i, j in enumerate([0, 3, 5]):
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


# ---- attention modules of the text encoders --------------------------------------------------

# Written out by hand per family: the module whose input is the attention context (the
# probabilities times the values, heads merged back).
OUTPUT_PROJECTIONS = {
    "bert": "attention.output.dense",
    "roberta": "attention.output.dense",
    "xlm-roberta": "attention.output.dense",
    "electra": "attention.output.dense",
    "deberta-v2": "attention.output.dense",
    "distilbert": "attention.out_lin",
    "mpnet": "attention.attn.o",
}
# Hidden dropout off, attention dropout on.
ATTENTION_DROPOUT_ONLY = {
    family: dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.5)
    for family in FAMILIES
    if family != "distilbert"
}
ATTENTION_DROPOUT_ONLY["distilbert"] = dict(dropout=0.0, attention_dropout=0.5)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_attention_projections_are_the_layers_query_key_value(family):
    # DeBERTa's relative terms would add to the scores; without them it is plain scaled attention.
    overrides = dict(relative_attention=False, pos_att_type=[]) if family == "deberta-v2" else {}
    model = make_teacher(family, **overrides)
    model.set_attn_implementation("eager")
    layer_index = 2
    query, key, value = attention_projections(model, layer_index)
    assert all(type(m) is torch.nn.Linear for m in (query, key, value))
    assert len({id(query), id(key), id(value)}) == 3
    layer = get_encoder_layers(model)[layer_index]
    assert all(any(m is sub for sub in layer.modules()) for m in (query, key, value))

    seen = {}

    def keep_output(name):
        return lambda module, args, output: seen.__setitem__(name, output)

    def keep_input(name, position=0):
        return lambda module, args: seen.__setitem__(name, args[position])

    handles = [
        m.register_forward_hook(keep_output(n))
        for n, m in zip("qkv", (query, key, value), strict=True)
    ]
    out_proj = layer.get_submodule(OUTPUT_PROJECTIONS[family])
    handles.append(out_proj.register_forward_pre_hook(keep_input("context")))
    if family == "mpnet":
        # MPNet adds a relative-position bias, computed once in the encoder, to the scores.
        attn = layer.attention.attn
        handles.append(attn.register_forward_pre_hook(keep_input("bias", position=2)))
    inputs = sample_inputs()
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    for handle in handles:
        handle.remove()

    batch, seq = inputs["input_ids"].shape
    heads, head_dim = 4, 8
    for name in "qkv":
        assert seen[name].shape == (batch, seq, heads * head_dim), name

    def split(x):
        return x.view(batch, seq, heads, head_dim).transpose(1, 2)

    probs = out.attentions[layer_index]
    assert probs.shape == (batch, heads, seq, seq)
    context = (probs @ split(seen["v"])).transpose(1, 2).reshape(batch, seq, heads * head_dim)
    torch.testing.assert_close(seen["context"], context)
    scores = split(seen["q"]) @ split(seen["k"]).transpose(-1, -2) / head_dim**0.5
    if family == "mpnet":
        scores = scores + seen["bias"]
    padding = inputs["attention_mask"][:, None, None, :] == 0
    expected = scores.masked_fill(padding, float("-inf")).softmax(-1)
    # Rows of padding queries are left to each implementation (DeBERTa spreads them evenly).
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(probs.transpose(1, 2)[real], expected.transpose(1, 2)[real])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_attention_probs_dropouts_control_the_returned_attentions(family):
    model = make_teacher(family, **ATTENTION_DROPOUT_ONLY[family])
    model.set_attn_implementation("eager")
    inputs = sample_inputs()
    with torch.no_grad():
        reference = model.eval()(**inputs, output_attentions=True).attentions
        model.train()
        torch.manual_seed(0)
        dropped = model(**inputs, output_attentions=True).attentions
        dropouts = attention_probs_dropouts(model)
        assert len(dropouts) == num_encoder_layers(model) == 4
        assert all(type(m) is torch.nn.Dropout and m.p == 0.5 for m in dropouts)
        for dropout in dropouts:
            dropout.p = 0.0
        undropped = model(**inputs, output_attentions=True).attentions
    assert model.training
    for k in range(4):
        assert not torch.allclose(dropped[k], reference[k]), k
        torch.testing.assert_close(undropped[k], reference[k])
    # They are the model's own modules, one per layer, in layer order.
    layers = get_encoder_layers(model)
    assert all(any(m is sub for sub in layers[k].modules()) for k, m in enumerate(dropouts))


def test_attention_helpers_reject_models_without_those_modules():
    for name in ("gpt2", "llama"):
        model = make_decoder(name)
        with pytest.raises(ValueError, match=f"'{name}' has no query/key/value projections"):
            attention_projections(model, 0)
        with pytest.raises(ValueError, match=f"'{name}' has no attention-dropout module"):
            attention_probs_dropouts(model)
    resnet = make_resnet()
    with pytest.raises(ValueError, match="groups its blocks in stages"):
        attention_projections(resnet, 0)
    with pytest.raises(ValueError, match="groups its blocks in stages"):
        attention_probs_dropouts(resnet)
    bert = make_teacher("bert")
    for index in (4, -1):
        with pytest.raises(ValueError, match=rf"`layer_index` {index} is out of range.*0..3"):
            attention_projections(bert, index)


# ---- decoders ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoder_student_copies_layers(name, tmp_path):
    _, model_cls, _, prefix, layer_field, _ = DECODERS[name]
    teacher = make_decoder(name)
    student = create_student(teacher, num_layers=2)
    layers = [0, 3]

    assert type(student) is model_cls
    assert student.config.nlpkd_teacher_layers == layers
    assert getattr(student.config, layer_field) == 2
    assert num_encoder_layers(student) == len(get_encoder_layers(student)) == 2
    assert getattr(teacher.config, layer_field) == 4

    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    dropped = [k for k in teacher_state if k.startswith((f"{prefix}1.", f"{prefix}2."))]
    assert dropped
    assert len(student_state) == len(teacher_state) - len(dropped)
    for key, tensor in student_state.items():
        source = teacher_state[expected_teacher_key(key, prefix, layers)]
        assert torch.equal(tensor, source), key
        assert tensor.data_ptr() != source.data_ptr(), f"{key} shares memory with the teacher"

    ids = torch.randint(3, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        logits = student(input_ids=ids, attention_mask=mask).logits
    assert logits.shape == ((2, 3) if name == "gpt2-cls" else (2, 6, 100))
    assert torch.isfinite(logits).all()

    student.save_pretrained(tmp_path)
    reloaded = model_cls.from_pretrained(tmp_path).eval()
    assert reloaded.config.nlpkd_teacher_layers == layers
    assert getattr(reloaded.config, layer_field) == 2
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids, attention_mask=mask).logits, logits)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoder_student_of_first_layers_reproduces_teacher(name):
    *_, final_norm = DECODERS[name]
    teacher = make_decoder(name, seed=1)
    student = create_student(teacher, num_layers=2, strategy="first")
    assert student.config.nlpkd_teacher_layers == [0, 1]
    ids = torch.randint(3, 100, (2, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        teacher_hidden = teacher(input_ids=ids, output_hidden_states=True).hidden_states
        student_hidden = student(input_ids=ids, output_hidden_states=True).hidden_states
        # A decoder's last hidden state is taken after its final norm.
        expected_last = teacher.base_model.get_submodule(final_norm)(teacher_hidden[2])
    assert len(student_hidden) == 3
    torch.testing.assert_close(student_hidden[0], teacher_hidden[0])
    torch.testing.assert_close(student_hidden[1], teacher_hidden[1])
    torch.testing.assert_close(student_hidden[2], expected_last)
    assert not torch.allclose(student_hidden[2], teacher_hidden[3])


@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral", "qwen2"])
def test_decoder_student_generates(name):
    student = create_student(make_decoder(name), num_layers=2)
    prompt = torch.randint(3, 100, (2, 5), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(prompt)
    with torch.no_grad():
        out = student.generate(
            prompt, attention_mask=mask, max_new_tokens=3, min_new_tokens=3, do_sample=False
        )
        next_token = student(input_ids=prompt, attention_mask=mask).logits[:, -1].argmax(-1)
    assert out.shape == (2, 8)
    assert torch.equal(out[:, :5], prompt)
    assert torch.equal(out[:, 5], next_token)  # greedy: the first new token is the argmax


def test_qwen2_student_keeps_the_attention_type_of_each_layer(tmp_path):
    teacher = make_decoder("qwen2")
    full, sliding = "full_attention", "sliding_attention"
    assert teacher.config.layer_types == [full, full, sliding, sliding]
    student = create_student(teacher, layers=[0, 2, 3])
    assert student.config.layer_types == [full, sliding, sliding]
    assert student.config.max_window_layers == 1  # teacher layers below 2: only layer 0
    windows = [layer.self_attn.sliding_window for layer in get_encoder_layers(student)]
    assert windows == [None, 4, 4]
    assert teacher.config.layer_types == [full, full, sliding, sliding]

    student.save_pretrained(tmp_path)
    reloaded = Qwen2ForCausalLM.from_pretrained(tmp_path)
    assert reloaded.config.layer_types == [full, sliding, sliding]
    assert reloaded.config.num_hidden_layers == 3


def test_gpt2_layer_index_scaling_warns_when_layers_move(caplog):
    teacher = make_decoder("gpt2", scale_attn_by_inverse_layer_idx=True)
    with caplog.at_level(logging.WARNING, logger="nlpkd.models.student"):
        create_student(teacher, num_layers=2, strategy="first")
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING, logger="nlpkd.models.student"):
        create_student(teacher, num_layers=2)
    assert "scale_attn_by_inverse_layer_idx" in caplog.text
    assert "[(1, 3)]" in caplog.text


# ---- ResNet -----------------------------------------------------------------------------------


def expected_resnet_key(key: str, blocks: list[list[int]]) -> str:
    """The teacher tensor of a student tensor: block b of stage j is teacher block blocks[j][b]."""
    match = re.fullmatch(r"(.*encoder\.stages\.)(\d+)\.layers\.(\d+)\.(.*)", key)
    if match is None:
        return key
    head, stage, block, rest = match.groups()
    return f"{head}{stage}.layers.{blocks[int(stage)][int(block)]}.{rest}"


def test_resnet_student_keeps_every_stage_with_fewer_blocks(tmp_path):
    teacher = make_resnet()
    student = create_student(teacher)  # half of each stage: [3, 4, 2] -> [1, 2, 1]
    blocks = [[0], [0, 3], [0]]

    assert type(student) is ResNetForImageClassification
    assert student.config.depths == [1, 2, 1]
    assert student.config.nlpkd_teacher_blocks == blocks
    assert student.config.hidden_sizes == [8, 16, 24]
    assert teacher.config.depths == [3, 4, 2]
    assert num_encoder_layers(teacher) == 9 and num_encoder_layers(student) == 4
    assert [len(stage.layers) for stage in student.resnet.encoder.stages] == [1, 2, 1]
    assert sum(p.numel() for p in student.parameters()) < sum(
        p.numel() for p in teacher.parameters()
    )

    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    kept_keys = {expected_resnet_key(key, blocks) for key in student_state}
    assert len(kept_keys) == len(student_state) < len(teacher_state)
    for key, tensor in student_state.items():
        source = teacher_state[expected_resnet_key(key, blocks)]
        assert torch.equal(tensor, source), key
        assert tensor.data_ptr() != source.data_ptr(), f"{key} shares memory with the teacher"
    # Guard the guard: student block 1 of stage 1 is teacher block 3, not block 1.
    key = "resnet.encoder.stages.1.layers.1.layer.0.convolution.weight"
    assert not torch.equal(student_state[key], teacher_state[key])

    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = student(pixel_values=pixels).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()

    student.save_pretrained(tmp_path)
    reloaded = ResNetForImageClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.depths == [1, 2, 1]
    assert reloaded.config.nlpkd_teacher_blocks == blocks
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixels).logits, logits)


def test_resnet_student_computes_its_kept_blocks():
    teacher = make_resnet(seed=1)
    blocks = [[0, 2], [0, 1, 3], [0]]
    student = create_student(teacher, layers=blocks)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # Reference: the teacher's stem, then only the kept blocks of each stage, by hand.
        hidden = teacher.resnet.embedder(pixels)
        expected = [hidden]
        for stage, kept in zip(teacher.resnet.encoder.stages, blocks, strict=True):
            for b in kept:
                hidden = stage.layers[b](hidden)
            expected.append(hidden)
        expected_logits = teacher.classifier(teacher.resnet.pooler(hidden))
        out = student(pixel_values=pixels, output_hidden_states=True)
    assert len(out.hidden_states) == 4
    for k in range(4):
        torch.testing.assert_close(out.hidden_states[k], expected[k])
    torch.testing.assert_close(out.logits, expected_logits)


@pytest.mark.parametrize(
    "num_layers, strategy, expected",
    [
        (None, "uniform", [[0], [0, 3], [0]]),
        (1, "uniform", [[0], [0], [0]]),
        (2, "uniform", [[0, 2], [0, 3], [0, 1]]),  # a stage of 2 keeps both
        (2, "alternate", [[0, 1], [0, 2], [0, 1]]),
        (2, "first", [[0, 1], [0, 1], [0, 1]]),
        (2, "last", [[0, 2], [0, 3], [0, 1]]),  # block 0 replaces the first of the last two
        (3, "last", [[0, 1, 2], [0, 2, 3], [0, 1]]),
        ([1, 3, 2], "uniform", [[0], [0, 2, 3], [0, 1]]),  # 4 -> 3: 0, 1.5 (up), 3
        ((2, 1, 1), "first", [[0, 1], [0], [0]]),
    ],
)
def test_resnet_block_choice(num_layers, strategy, expected):
    student = create_student(make_resnet(), num_layers=num_layers, strategy=strategy)
    assert student.config.nlpkd_teacher_blocks == expected
    assert student.config.depths == [len(blocks) for blocks in expected]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(num_layers=4), ValueError, r"would keep every block of the teacher \(depths"),
        (dict(num_layers=[3, 4, 2]), ValueError, "would keep every block"),
        (dict(num_layers=0), ValueError, "`num_layers` must be at least 1 block per stage, got 0"),
        (dict(num_layers=[1, 2]), ValueError, "gives 2 block counts but the teacher has 3 stages"),
        (dict(num_layers=[1, 5, 1]), ValueError, r"out of range: \[\(1, 5\)\]"),
        (dict(num_layers=[1, 0, 1]), ValueError, r"out of range: \[\(1, 0\)\]"),
        (dict(layers=[[1], [0], [0]]), ValueError, r"`layers\[0\]=\[1\]` must start with block 0"),
        (dict(layers=[[0], [0]]), ValueError, "`layers` gives 2 stages but the teacher has 3"),
        (
            dict(layers=[[0, 3], [0], [0]]),
            ValueError,
            r"`layers\[0\]` has indices \[3\] outside the teacher's 3 blocks \(valid range 0..2\)",
        ),
        (
            dict(layers=[[0, 0], [0], [0]]),
            ValueError,
            r"`layers\[0\]` repeats teacher blocks \[0\]",
        ),
        (dict(layers=[[0], [], [0]]), ValueError, r"`layers\[1\]` is empty"),
        (dict(layers=[0, 1, 2]), TypeError, "one sequence of block indices per stage"),
        (dict(layers=[[0, 1, 2], [0, 1, 2, 3], [0, 1]]), ValueError, "would keep every block"),
        (dict(num_layers=2, layers=[[0], [0], [0]]), ValueError, "disagrees with"),
        (dict(layers=[[0], [0], [0]], strategy="last"), ValueError, "names the teacher layers"),
    ],
)
def test_resnet_rejects_bad_block_choices(kwargs, error, message):
    with pytest.raises(error, match=message):
        create_student(make_resnet(), **kwargs)


def test_resnet_bare_model_and_unsorted_blocks(caplog):
    teacher = make_resnet(model_cls=ResNetModel)
    with caplog.at_level(logging.WARNING, logger="nlpkd.models.student"):
        student = create_student(teacher, layers=[[0, 2, 1], [0], [0, 1]])
    assert "[0, 2, 1] of stage 0 are not in ascending teacher order" in caplog.text
    assert type(student) is ResNetModel
    assert torch.equal(
        student.encoder.stages[0].layers[1].layer[0].convolution.weight,
        teacher.encoder.stages[0].layers[2].layer[0].convolution.weight,
    )
    with torch.no_grad():
        pooled = student(pixel_values=torch.randn(1, 3, 16, 16)).pooler_output
    assert pooled.shape == (1, 24, 1, 1)
    with pytest.raises(ValueError, match="groups its blocks in stages"):
        get_encoder_layers(teacher)


def test_select_forward_inputs_for_decoders_and_resnet():
    batch = {
        "input_ids": 1,
        "attention_mask": 2,
        "token_type_ids": 3,
        "pixel_values": 4,
        "labels": 5,
    }
    assert select_forward_inputs(make_decoder("llama"), batch) == {
        "input_ids": 1,
        "attention_mask": 2,
    }
    # GPT-2's forward names token_type_ids (added as token embeddings when given).
    assert select_forward_inputs(make_decoder("gpt2-cls"), batch) == {
        "input_ids": 1,
        "attention_mask": 2,
        "token_type_ids": 3,
    }
    assert select_forward_inputs(make_resnet(), batch) == {"pixel_values": 4}
