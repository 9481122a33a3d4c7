"""Deployment forms: vocabulary pruning, int8 quantization, ONNX export, and timing them alike."""

from __future__ import annotations

import builtins
import importlib.util
import json

import pytest
import torch
from conftest import SENTENCES, WORDS, packaged_minilm_dir, tiny_bert, tiny_bert_config
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertForMaskedLM,
    GPT2Config,
    GPT2ForSequenceClassification,
    PreTrainedTokenizerFast,
)

from nlpkd import deploy

KEPT = SENTENCES[:3]  # the texts whose vocabulary is kept
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def words_of(texts):
    return {word for text in texts for word in text.split()}


def encode(tokenizer, texts, **kwargs):
    return dict(tokenizer(list(texts), padding=True, return_tensors="pt", **kwargs))


def save_and_reload(model, tokenizer, folder, auto=AutoModelForSequenceClassification):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return auto.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


# ---- vocabulary pruning ---------------------------------------------------------------------


def test_pruned_vocabulary_is_the_texts_words_plus_special_tokens_in_order(tiny_tokenizer):
    model, tokenizer = deploy.prune_vocabulary(tiny_bert(), tiny_tokenizer, KEPT)
    # Every word of the tiny vocabulary is one token, so the kept set is known by hand.
    expected = SPECIALS + [w for w in WORDS if w in words_of(KEPT)]
    vocab = tokenizer.get_vocab()
    assert sorted(vocab, key=vocab.get) == expected
    assert model.config.vocab_size == len(expected) == model.get_input_embeddings().num_embeddings
    assert tokenizer.all_special_tokens and set(tokenizer.all_special_tokens) <= set(vocab)


def test_pruning_round_trips_with_identical_tokens_and_logits(tiny_tokenizer, tmp_path):
    original = tiny_bert()
    pruned, pruned_tokenizer = deploy.prune_vocabulary(original, tiny_tokenizer, KEPT)
    model, tokenizer = save_and_reload(pruned, pruned_tokenizer, tmp_path)
    assert tokenizer.is_fast and type(tokenizer) is type(tiny_tokenizer)
    before = encode(tiny_tokenizer, KEPT)
    after = encode(tokenizer, KEPT)
    for old_ids, new_ids in zip(before["input_ids"], after["input_ids"], strict=True):
        assert tiny_tokenizer.convert_ids_to_tokens(old_ids) == tokenizer.convert_ids_to_tokens(
            new_ids
        )
    with torch.no_grad():
        expected = original(**before).logits
        got = model(**after).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # The argument was copied, not pruned in place.
    assert original.config.vocab_size == len(WORDS) + 5


def test_special_token_rows_are_the_original_rows(tiny_tokenizer):
    original = tiny_bert()
    model, tokenizer = deploy.prune_vocabulary(original, tiny_tokenizer, ["the movie"])
    old = original.get_input_embeddings().weight
    new = model.get_input_embeddings().weight
    for token in [*SPECIALS, "the", "movie"]:
        old_id = tiny_tokenizer.convert_tokens_to_ids(token)
        new_id = tokenizer.convert_tokens_to_ids(token)
        assert torch.equal(new[new_id], old[old_id]), token
    assert tokenizer.pad_token_id == model.config.pad_token_id == 0
    assert model.get_input_embeddings().padding_idx == 0


def test_mpnet_keeps_its_padding_id(tmp_path):
    from transformers import MPNetConfig, MPNetForSequenceClassification, MPNetTokenizer

    # MPNet hard-codes padding id 1 in its position ids, so <pad> must keep that number.
    (tmp_path / "vocab.txt").write_text(
        "\n".join(["<s>", "<pad>", "</s>", "[UNK]", *WORDS, "<mask>"])
    )
    tokenizer = MPNetTokenizer.from_pretrained(str(tmp_path))
    config = MPNetConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(0)
    original = MPNetForSequenceClassification(config).eval()
    model, pruned = deploy.prune_vocabulary(original, tokenizer, KEPT)
    assert pruned.pad_token_id == 1 and pruned.convert_ids_to_tokens([0, 1, 2]) == [
        "<s>",
        "<pad>",
        "</s>",
    ]
    with torch.no_grad():
        expected = original(**encode(tokenizer, KEPT)).logits
        got = model(**encode(pruned, KEPT)).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_unseen_word_becomes_unknown(tiny_tokenizer):
    _, tokenizer = deploy.prune_vocabulary(tiny_bert(), tiny_tokenizer, ["the movie"])
    assert tokenizer.tokenize("the song") == ["the", "[UNK]"]


def test_pairs_extra_texts_and_max_length(tiny_tokenizer):
    _, tokenizer = deploy.prune_vocabulary(
        tiny_bert(), tiny_tokenizer, [("the movie", "a song")], extra_texts=["vote"]
    )
    assert set(tokenizer.get_vocab()) == set(SPECIALS) | {"the", "movie", "a", "song", "vote"}
    # [CLS] the movie [SEP]: with max_length 4 the model never sees "was good".
    _, short = deploy.prune_vocabulary(
        tiny_bert(), tiny_tokenizer, ["the movie was good"], max_length=4
    )
    assert set(short.get_vocab()) == set(SPECIALS) | {"the", "movie"}


def test_keep_characters_keeps_single_character_tokens(tiny_tokenizer):
    _, tokenizer = deploy.prune_vocabulary(
        tiny_bert(), tiny_tokenizer, ["the movie"], keep_characters=True
    )
    assert "a" in tokenizer.get_vocab()  # the only one-letter word of the tiny vocabulary


def test_tied_output_embeddings_are_pruned_with_the_input(tiny_tokenizer, tmp_path):
    torch.manual_seed(0)
    original = BertForMaskedLM(tiny_bert_config()).eval()
    with torch.no_grad():
        original.cls.predictions.bias.normal_()
    pruned, tokenizer = deploy.prune_vocabulary(original, tiny_tokenizer, KEPT)
    assert pruned.cls.predictions.decoder.weight is pruned.get_input_embeddings().weight
    model, tokenizer = save_and_reload(pruned, tokenizer, tmp_path, AutoModelForMaskedLM)
    kept = [
        tiny_tokenizer.convert_tokens_to_ids(t)
        for t in sorted(tokenizer.get_vocab(), key=tokenizer.get_vocab().get)
    ]
    with torch.no_grad():
        expected = original(**encode(tiny_tokenizer, KEPT)).logits[..., kept]
        got = model(**encode(tokenizer, KEPT)).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_a_bpe_tokenizer_is_refused_naming_the_supported_families():
    from tokenizers import Tokenizer, models

    backend = Tokenizer(
        models.BPE(vocab={"a": 0, "b": 1, "<unk>": 2}, merges=[], unk_token="<unk>")
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(ValueError, match=r"WordPiece tokenizers only .*bert, distilbert"):
        deploy.prune_vocabulary(tiny_bert(), tokenizer, ["a b"])


def test_a_special_token_without_an_embedding_row_is_an_error(tiny_tokenizer):
    tiny_tokenizer.add_special_tokens({"additional_special_tokens": ["[NEW]"]})
    with pytest.raises(ValueError, match=r"\[NEW\].*would lose them.*resize_token_embeddings"):
        deploy.prune_vocabulary(tiny_bert(), tiny_tokenizer, ["the movie"])


@pytest.mark.parametrize("texts", ["the movie", [1, 2], []])
def test_texts_must_be_a_sequence_of_strings(tiny_tokenizer, texts):
    with pytest.raises(ValueError, match="texts|at least one text"):
        deploy.prune_vocabulary(tiny_bert(), tiny_tokenizer, texts)


@pytest.mark.slow
def test_packaged_minilm_pruned_on_bbc_texts_gives_the_same_logits(tmp_path):
    from nlpkd.data import load_bbc_news

    texts = list(load_bbc_news()["validation"]["text"][:6])
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_dir())
    torch.manual_seed(0)
    original = AutoModelForSequenceClassification.from_pretrained(
        packaged_minilm_dir(), num_labels=5
    ).eval()
    pruned, pruned_tokenizer = deploy.prune_vocabulary(original, tokenizer, texts, max_length=128)
    assert len(pruned_tokenizer) < len(tokenizer) / 5
    model, reloaded = save_and_reload(pruned, pruned_tokenizer, tmp_path)
    before = encode(tokenizer, texts, truncation=True, max_length=128)
    after = encode(reloaded, texts, truncation=True, max_length=128)
    with torch.no_grad():
        torch.testing.assert_close(
            model(**after).logits, original(**before).logits, rtol=1e-5, atol=1e-6
        )


# ---- int8 quantization (PyTorch) --------------------------------------------------------------


def test_int8_weights_are_the_float_weights_within_half_a_step():
    model = tiny_bert()
    quantized = deploy.quantize_int8(model)
    float_weight = model.bert.encoder.layer[0].attention.self.query.weight
    weight = quantized.bert.encoder.layer[0].attention.self.query.weight()
    scales = weight.q_per_channel_scales().float()
    # Symmetric per-row int8: each weight is scale * integer, off by at most half a step.
    error = (weight.dequantize() - float_weight).abs().max(dim=1).values
    assert torch.all(error <= scales / 2 + 1e-7)
    embedding = quantized.bert.embeddings.word_embeddings.weight()
    step = embedding.q_per_channel_scales().float()
    row_error = (embedding.dequantize() - model.bert.embeddings.word_embeddings.weight).abs()
    assert torch.all(row_error.max(dim=1).values <= step / 2 + 1e-6)
    assert model.bert.encoder.layer[0].attention.self.query.weight.dtype == torch.float32


def test_quantized_save_load_gives_the_in_memory_outputs(tiny_tokenizer, tmp_path):
    model = tiny_bert()
    quantized = deploy.quantize_int8(model)
    folder = deploy.save_quantized(quantized, tmp_path / "int8", tiny_tokenizer)
    loaded = deploy.load_quantized(folder)
    batch = encode(tiny_tokenizer, SENTENCES)
    with torch.no_grad():
        expected = quantized(**batch).logits
        got = loaded(**batch).logits
        reference = model(**batch).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # int8 is an approximation of the float model, not something else.
    assert (got - reference).abs().max() < 0.05 * reference.abs().max() + 1e-3
    info = json.loads((folder / deploy.QUANTIZATION_FILE).read_text())
    assert (
        len(info["linear"]) == 4 * 6 + 2 and "bert.embeddings.word_embeddings" in info["embedding"]
    )
    assert AutoTokenizer.from_pretrained(folder).get_vocab() == tiny_tokenizer.get_vocab()


def test_int8_without_embeddings_keeps_them_float(tmp_path):
    quantized = deploy.quantize_int8(tiny_bert(), embeddings=False)
    assert isinstance(quantized.bert.embeddings.word_embeddings, torch.nn.Embedding)
    loaded = deploy.load_quantized(deploy.save_quantized(quantized, tmp_path / "q"))
    ids = torch.tensor([[2, 5, 6, 3]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, quantized(input_ids=ids).logits)


def test_int8_bert_runs_without_token_type_ids_and_keeps_small_tables_float():
    # BERT then reads token types from a strided buffer; only the word embeddings are int8.
    quantized = deploy.quantize_int8(tiny_bert())
    embeddings = quantized.bert.embeddings
    assert isinstance(embeddings.position_embeddings, torch.nn.Embedding)
    assert isinstance(embeddings.token_type_embeddings, torch.nn.Embedding)
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]])
    with torch.no_grad():
        assert quantized(input_ids=ids[:, :4]).logits.shape == (2, 3)


def test_quantization_bad_inputs(tmp_path):
    quantized = deploy.quantize_int8(tiny_bert())
    with pytest.raises(ValueError, match="already quantized"):
        deploy.quantize_int8(quantized)
    with pytest.raises(ValueError, match="no nn.Linear"):
        deploy.quantize_int8(torch.nn.Sequential(torch.nn.Embedding(4, 2)))
    with pytest.raises(ValueError, match="holds no int8 model"):
        deploy.load_quantized(tmp_path)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "other.txt").write_text("x")
    with pytest.raises(ValueError, match="not an empty folder"):
        deploy.save_quantized(quantized, tmp_path / "taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


# ---- ONNX ---------------------------------------------------------------------------------------


def require_export_extra():
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        pytest.fail('The test extra needs the export extra (pip install -e ".[test]").')


@pytest.fixture(scope="module")
def onnx_exports(tmp_path_factory):
    require_export_extra()
    base = tmp_path_factory.mktemp("onnx")
    model = tiny_bert(seed=1)
    fp32 = deploy.export_onnx(model, base / "fp32")
    int8 = deploy.quantize_onnx(fp32, base / "int8")
    return model, fp32, int8


def padded_batch(seed=0, shape=(5, 11)):
    # A shape unlike the export sample's (2 x 16), with padding, so the axes must be dynamic.
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 5 + len(WORDS), shape, generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[3, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_onnx_fp32_matches_pytorch(onnx_exports):
    model, fp32, _ = onnx_exports
    batch = padded_batch()
    with torch.no_grad():
        expected = model(**batch).logits
    got = deploy.load_onnx(fp32)(batch)
    torch.testing.assert_close(got, expected, rtol=deploy.ONNX_RTOL, atol=deploy.ONNX_ATOL)
    assert json.loads((fp32 / deploy.ONNX_INFO).read_text())["inputs"] == list(deploy.ONNX_INPUTS)


def test_onnx_int8_is_close_to_fp32_and_smaller(onnx_exports):
    _, fp32, int8 = onnx_exports
    batch = padded_batch(seed=2, shape=(16, 9))
    reference = deploy.load_onnx(fp32)(batch)
    got = deploy.load_onnx(int8)(batch)
    # int8 weights and activations: errors of a few steps of 1/127 of each tensor's range.
    bound = 0.05 * reference.abs().max() + 1e-3
    assert (got - reference).abs().max() <= bound
    top2 = reference.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * bound
    assert torch.equal(got.argmax(-1)[clear], reference.argmax(-1)[clear])
    assert deploy.weights_size_mb(int8) < deploy.weights_size_mb(fp32)


def test_a_failed_export_leaves_nothing(monkeypatch, tmp_path):
    require_export_extra()

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(ValueError, match="could not export BertForSequenceClassification"):
        deploy.export_onnx(tiny_bert(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_other_families_and_int8_torch_models(tmp_path):
    require_export_extra()
    gpt2 = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=20))
    with pytest.raises(ValueError, match="supports the encoder families bert"):
        deploy.export_onnx(gpt2, tmp_path / "gpt2")
    with pytest.raises(ValueError, match="needs the float model"):
        deploy.export_onnx(deploy.quantize_int8(tiny_bert()), tmp_path / "int8")
    assert list(tmp_path.iterdir()) == []


def test_missing_export_extra_is_one_line_naming_it(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def without_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ImportError("No module named 'onnxruntime'", name="onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnxruntime)
    for call in (
        lambda: deploy.export_onnx(tiny_bert(), tmp_path / "x"),
        lambda: deploy.load_onnx(tmp_path),
    ):
        with pytest.raises(
            ImportError, match=r'onnxruntime is missing.*pip install "nlpkd\[export\]"'
        ):
            call()
    assert list(tmp_path.iterdir()) == []


# ---- one call for every form --------------------------------------------------------------------


def test_variants_are_timed_interleaved_on_the_same_batches(tiny_tokenizer, tmp_path):
    model = tiny_bert()
    model.save_pretrained(tmp_path / "fp32")
    quantized = deploy.quantize_int8(model)
    deploy.save_quantized(quantized, tmp_path / "int8")
    variants = [
        deploy.torch_variant("student", model, tmp_path / "fp32"),
        deploy.torch_variant(
            "student-int8", deploy.load_quantized(tmp_path / "int8"), tmp_path / "int8", params=1
        ),
    ]
    seen = []
    for variant in variants:
        inner = variant.predict
        variant.predict = lambda batch, inner=inner, name=variant.name: (
            seen.append(name) or inner(batch)
        )
    batches = [encode(tiny_tokenizer, SENTENCES[:4]), encode(tiny_tokenizer, SENTENCES[4:])]
    latency = deploy.time_variants(variants, batches, warmup=1, repeats=2)
    assert set(latency) == {"student", "student-int8"} and all(v > 0 for v in latency.values())
    # warm-up and round 0 in list order, round 1 reversed; every batch for each.
    assert seen == ["student", "student-int8"] * 4 + ["student-int8", "student"] * 2
    logits = deploy.predict_batches(variants[0], batches)
    assert logits.shape == (len(SENTENCES), 3)
    assert variants[0].params == sum(p.numel() for p in model.parameters())
    assert variants[1].size_mb < variants[0].size_mb
    with pytest.raises(ValueError, match="pass params="):
        deploy.torch_variant("q", quantized, tmp_path / "int8")


def test_a_word_cut_by_max_length_keeps_all_its_pieces(tmp_path):
    from transformers import BertTokenizerFast

    (tmp_path / "vocab.txt").write_text("\n".join([*SPECIALS, "the", "play", "##ing", "##ed"]))
    tokenizer = BertTokenizerFast.from_pretrained(str(tmp_path))
    model = tiny_bert(vocab_size=9)
    # Truncation at 4 gives [CLS] the play [SEP]: "playing" is cut after "play".
    _, pruned = deploy.prune_vocabulary(model, tokenizer, ["the playing the played"], max_length=4)
    assert set(pruned.get_vocab()) == set(SPECIALS) | {"the", "play", "##ing"}
    assert pruned.tokenize("the playing") == ["the", "play", "##ing"]
