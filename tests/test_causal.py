"""Causal language models: the token-level loss against a loop reference, its normalisation under gradient
accumulation, the completion collator, sequence-level distillation and perplexity, on tiny decoders."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import WORDS, tiny_bert
from datasets import Dataset
from test_trainer import _float32_tolerance, _GradientRecorder, make_config

import nlpkd.models.generation
import nlpkd.trainer.token_level
from nlpkd import DistillationTrainer, create_student
from nlpkd.data.completions import (
    CompletionCollator,
    shift_labels,
    tokenize_completions,
)
from nlpkd.models import generate_completions, is_causal_lm
from nlpkd.report import perplexity
from nlpkd.trainer.token_level import token_loss_scale

VOCAB = ["[PAD]", "[UNK]", "[EOS]", *WORDS]


def tiny_gpt2(seed: int = 0, layers: int = 4, **overrides):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    kwargs = dict(
        vocab_size=len(VOCAB), n_embd=32, n_layer=layers, n_head=4, n_positions=32,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=2, eos_token_id=2,
        pad_token_id=0,
    )  # fmt: skip
    kwargs.update(overrides)
    return GPT2LMHeadModel(GPT2Config(**kwargs)).eval()


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(VOCAB), hidden_size=32, intermediate_size=48, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
        bos_token_id=2, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def word_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins the words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]"
    )


def lm_rows(prompt_lengths, completion_lengths, seed=0) -> Dataset:
    """Rows of random words: a prompt (labels -100) then a completion (labels = the tokens)."""
    g = torch.Generator().manual_seed(seed)
    rows = {"input_ids": [], "labels": []}
    for p, c in zip(prompt_lengths, completion_lengths, strict=True):
        ids = torch.randint(3, len(VOCAB), (p + c,), generator=g).tolist()
        rows["input_ids"].append(ids)
        rows["labels"].append([-100] * p + ids[p:])
    return Dataset.from_dict(rows)


def perturbed_student(teacher, layers=2):
    student = create_student(teacher, num_layers=layers)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in student.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return student


def reference_token_loss(s_logits, t_logits, labels, temperature, alpha_kd, alpha_ce):
    """Loop over every position whose next token is a completion token, from the definitions."""
    kd_terms, ce_terms = [], []
    for b in range(labels.shape[0]):
        for i in range(labels.shape[1] - 1):
            target = int(labels[b, i + 1])
            if target == -100:
                continue
            p_t = torch.softmax(t_logits[b, i].double() / temperature, -1)
            log_p_s = torch.log_softmax(s_logits[b, i].double() / temperature, -1)
            kd_terms.append(temperature**2 * float((p_t * (p_t.log() - log_p_s)).sum()))
            ce_terms.append(-float(torch.log_softmax(s_logits[b, i].double(), -1)[target]))
    kd = sum(kd_terms) / len(kd_terms)
    ce = sum(ce_terms) / len(ce_terms)
    return alpha_kd * kd + alpha_ce * ce


def test_is_causal_lm():
    assert is_causal_lm(tiny_gpt2()) and is_causal_lm(tiny_llama())
    assert not is_causal_lm(tiny_bert())


def test_shift_labels_aligns_targets_with_logits():
    labels = torch.tensor([[-100, 5, 6, -100], [7, 8, -100, -100]])
    assert shift_labels(labels).tolist() == [[5, 6, -100, -100], [8, -100, -100, -100]]


def test_completion_collator_pads_and_masks(word_tokenizer):
    rows = lm_rows([2, 1], [1, 4])
    batch = CompletionCollator(word_tokenizer)([rows[0], rows[1]])
    assert batch["input_ids"].shape == (2, 5)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["input_ids"][0, 3:].tolist() == [0, 0]
    assert batch["labels"][0].tolist() == [-100, -100, rows[0]["input_ids"][2], -100, -100]
    assert (
        batch["labels"][1, 0] == -100
        and batch["labels"][1, 1:].tolist() == rows[1]["input_ids"][1:]
    )
    with pytest.raises(ValueError, match="pass processing_class=tokenizer"):
        CompletionCollator(None)


def test_tokenize_completions_masks_the_prompt(word_tokenizer):
    data = Dataset.from_dict({"prompt": ["the movie"], "completion": ["was very good"]})
    row = tokenize_completions(data, word_tokenizer)[0]
    ids = word_tokenizer("the movie was very good")["input_ids"]
    assert row["input_ids"] == [*ids, word_tokenizer.eos_token_id]
    assert row["labels"] == [-100, -100, *ids[2:], word_tokenizer.eos_token_id]
    with pytest.raises(ValueError, match="Row 0 has no completion token within max_length=2"):
        tokenize_completions(data, word_tokenizer, max_length=2)


@pytest.mark.parametrize("kd_loss", ["forward_kl", "reverse_kl", "jsd"])
def test_token_level_loss_matches_a_loop_over_completion_tokens(tmp_path, word_tokenizer, kd_loss):
    teacher = tiny_gpt2(seed=1)
    student = perturbed_student(teacher)
    args = make_config(tmp_path, alpha_kd=1.0, alpha_ce=0.5, temperature=2.0, kd_loss=kd_loss)
    trainer = DistillationTrainer(
        model=student, teacher=teacher, args=args, processing_class=word_tokenizer
    )
    rows = lm_rows([3, 1, 2], [2, 5, 1])
    batch = trainer.data_collator([rows[i] for i in range(3)])
    assert "shift_labels" in batch
    student.train()
    loss = trainer.compute_loss(student, batch)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        s, t = student(**inputs).logits, teacher(**inputs).logits
    if kd_loss == "forward_kl":
        expected = reference_token_loss(s, t, batch["labels"], 2.0, 1.0, 0.5)
        assert loss.item() == pytest.approx(expected, rel=1e-5)
    # Every variant: the same mask as a hand-picked list of rows.
    keep = shift_labels(batch["labels"]) != -100
    assert int(keep.sum()) == 2 + 5 + 1
    kd = nlpkd.losses.logit_distillation_loss(s[keep], t[keep], 2.0, kd_loss)
    ce = F.cross_entropy(s[keep], shift_labels(batch["labels"])[keep])
    torch.testing.assert_close(loss.detach(), kd + 0.5 * ce, rtol=1e-5, atol=1e-6)


def lm_accumulated_gradient(tmp_path, name, batch_size, accumulation, tokenizer):
    teacher = tiny_gpt2(seed=1)
    student = perturbed_student(teacher)
    args = make_config(
        tmp_path / name,
        alpha_kd=1.0,
        alpha_ce=0.5,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        max_grad_norm=0.0,
    )
    recorder = _GradientRecorder()
    # Completions of 1, 2, 3 and 10 tokens: however the sampler splits them in two pairs, the two
    # micro-batches hold different numbers of completion tokens. The row without a prompt has a
    # target at position 0, which no position predicts: the count must leave it out.
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=lm_rows([4, 2, 0, 1], [1, 2, 4, 10]),
        processing_class=tokenizer,
        callbacks=[recorder],
    )
    counts = []
    compute_loss = trainer.compute_loss

    def recording(model, inputs, return_outputs=False, num_items_in_batch=None):
        counts.append(int(num_items_in_batch))
        return compute_loss(model, inputs, return_outputs, num_items_in_batch)

    trainer.compute_loss = recording
    trainer.train()
    assert recorder.grads
    # 1 + 2 + 3 + 10 predicted tokens in the step, whatever the split into micro-batches.
    assert counts == [16] * accumulation
    return recorder.grads


def test_lm_gradient_accumulation_normalises_over_all_completion_tokens(tmp_path, word_tokenizer):
    full = lm_accumulated_gradient(tmp_path, "full", 4, 1, word_tokenizer)
    accumulated = lm_accumulated_gradient(tmp_path, "ga", 2, 2, word_tokenizer)
    assert set(accumulated) == set(full)
    atol = _float32_tolerance(full)
    for name in full:
        torch.testing.assert_close(accumulated[name], full[name], rtol=1e-4, atol=atol)


def test_lm_accumulation_check_catches_a_per_micro_batch_mean(
    tmp_path, word_tokenizer, monkeypatch
):
    # A mean per micro-batch, averaged over the two micro-batches, weighs the tokens of the short
    # micro-batch more: the accumulated gradient then differs from the large-batch one.
    full = lm_accumulated_gradient(tmp_path, "full", 4, 1, word_tokenizer)

    def per_micro_batch_mean(num_items, local, *, accumulation_steps=1, **kwargs):
        return 1.0 / accumulation_steps

    monkeypatch.setattr(nlpkd.trainer.token_level, "token_loss_scale", per_micro_batch_mean)
    accumulated = lm_accumulated_gradient(tmp_path, "ga", 2, 2, word_tokenizer)
    atol = _float32_tolerance(full)
    name = max(full, key=lambda n: float(full[n].abs().max()))
    with pytest.raises(AssertionError):
        torch.testing.assert_close(accumulated[name], full[name], rtol=1e-4, atol=atol)


def test_token_loss_scale_by_hand():
    # One process: this micro-batch's share of the step's tokens.
    assert float(token_loss_scale(torch.tensor(12), 3, accumulation_steps=2)) == 0.25
    # DDP averages gradients over 4 processes, so each process's share is multiplied back by 4.
    assert float(token_loss_scale(torch.tensor(40), 5, num_processes=4)) == 0.5
    # Without averaging across devices each process keeps its own token mean.
    scale = token_loss_scale(10, 5, num_processes=4, average_tokens_across_devices=False)
    assert float(scale) == 0.5
    # DataParallel: the count comes as one entry per GPU, divided by the GPUs when not averaged.
    dp = token_loss_scale(torch.tensor([6, 6]), 3, average_tokens_across_devices=False, n_gpu=2)
    assert float(dp) == 0.25
    # No count (evaluation): the micro-batch's own mean, divided by the accumulation steps.
    assert token_loss_scale(None, 7, accumulation_steps=4) == 0.25


def test_training_changes_the_student_and_not_the_teacher(tmp_path, word_tokenizer):
    teacher = tiny_llama(seed=1)
    student = create_student(teacher, num_layers=2)
    before_teacher = {k: v.clone() for k, v in teacher.state_dict().items()}
    before_student = {k: v.clone() for k, v in student.state_dict().items()}
    args = make_config(tmp_path, alpha_kd=1.0, alpha_ce=1.0, kd_loss="jsd", max_steps=2)
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=lm_rows([2, 3, 1, 2], [3, 2, 4, 2]),
        processing_class=word_tokenizer,
    )
    trainer.train()
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before_teacher.items())
    assert any(not torch.equal(v, student.state_dict()[k]) for k, v in before_student.items())
    logged = [entry for entry in trainer.state.log_history if "kd" in entry]
    assert logged and math.isfinite(logged[0]["kd"]) and math.isfinite(logged[0]["ce"])


def test_hidden_state_term_on_decoders(tmp_path, word_tokenizer):
    teacher = tiny_gpt2(seed=1)
    args = make_config(tmp_path, alpha_kd=1.0, alpha_ce=0.0, alpha_hidden=1.0)
    trainer = DistillationTrainer(
        model=perturbed_student(teacher),
        teacher=teacher,
        args=args,
        processing_class=word_tokenizer,
    )
    batch = trainer.data_collator([lm_rows([2], [3])[0]])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    assert set(trainer._loss_logs["train"].sums) == {"kd", "hidden"}
    assert loss.item() > 0


def test_bad_pairs_and_inputs_say_what_to_do(tmp_path, word_tokenizer):
    teacher = tiny_gpt2(seed=1)
    args = make_config(tmp_path)
    with pytest.raises(ValueError, match="is a causal language model but the student .* is not"):
        DistillationTrainer(model=tiny_bert(), teacher=teacher, args=args)
    with pytest.raises(ValueError, match="vocabularies differ"):
        DistillationTrainer(model=tiny_gpt2(vocab_size=50), teacher=teacher, args=args)
    with pytest.raises(ValueError, match="set teacher_cache=False"):
        DistillationTrainer(
            model=create_student(teacher, num_layers=2),
            teacher=teacher,
            args=make_config(tmp_path, teacher_cache=True),
        )
    trainer = DistillationTrainer(
        model=create_student(teacher, num_layers=2),
        teacher=teacher,
        args=args,
        processing_class=word_tokenizer,
    )
    batch = trainer.data_collator([lm_rows([30], [5])[0]])
    with pytest.raises(ValueError, match="35 tokens is longer than the student's context of 32"):
        trainer.compute_loss(trainer.model, batch)


def test_generate_completions_is_seeded_and_cached(tmp_path, word_tokenizer, monkeypatch):
    teacher = tiny_gpt2(seed=1)
    prompts = ["the movie was", "great music and", "the plot"]
    settings = dict(max_new_tokens=4, batch_size=2, seed=3, cache_dir=tmp_path / "cache")
    first = generate_completions(teacher, word_tokenizer, prompts, **settings)
    assert first["prompt"] == prompts
    assert all(1 <= len(text.split()) <= 4 for text in first["completion"])
    # Same settings: read from the cache, without generating.
    monkeypatch.setattr(
        nlpkd.models.generation, "_generate", lambda *a: pytest.fail("generated again")
    )
    again = generate_completions(teacher, word_tokenizer, prompts, **settings)
    assert again["completion"] == first["completion"]
    monkeypatch.undo()
    # The same seed without the cache gives the same completions; batches are left-padded, so the
    # first prompt alone continues exactly as in its batch under greedy decoding.
    assert (
        generate_completions(teacher, word_tokenizer, prompts, **{**settings, "cache_dir": None})[
            "completion"
        ]
        == first["completion"]
    )
    greedy = dict(max_new_tokens=4, do_sample=False)
    alone = generate_completions(teacher, word_tokenizer, prompts[:1], **greedy)
    batched = generate_completions(teacher, word_tokenizer, prompts, batch_size=3, **greedy)
    assert alone["completion"][0] == batched["completion"][0]


def test_prompt_longer_than_the_context_is_refused(word_tokenizer):
    teacher = tiny_gpt2(seed=1)
    prompt = " ".join(["good"] * 30)
    with pytest.raises(ValueError, match="Prompt 1 has 30 tokens, and with max_new_tokens=4"):
        generate_completions(teacher, word_tokenizer, ["the", prompt], max_new_tokens=4)
    with pytest.raises(ValueError, match="needs a causal language model"):
        generate_completions(tiny_bert(), word_tokenizer, ["the"])


def test_sequence_level_distillation_trains_on_teacher_completions(tmp_path, word_tokenizer):
    teacher = tiny_gpt2(seed=1)
    generated = generate_completions(
        teacher, word_tokenizer, ["the movie", "a song"], max_new_tokens=5
    )
    train = tokenize_completions(generated, word_tokenizer)
    args = make_config(tmp_path, alpha_kd=0.0, alpha_ce=1.0, max_steps=1)
    student = create_student(teacher, num_layers=2)
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=train,
        processing_class=word_tokenizer,
    )
    trainer.train()
    assert trainer.state.global_step == 1


def test_perplexity_is_exact_over_the_dataset(word_tokenizer):
    model = tiny_gpt2(seed=2)
    rows = lm_rows([2, 1, 3], [3, 5, 2])
    collator = CompletionCollator(word_tokenizer)
    result = perplexity(model, rows, collator, batch_size=2)
    total, count = 0.0, 0
    for row in rows:
        ids = torch.tensor([row["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
        for i in range(len(row["labels"]) - 1):
            if row["labels"][i + 1] != -100:
                total -= float(torch.log_softmax(logits[i].double(), -1)[row["labels"][i + 1]])
                count += 1
    assert result["loss"] == pytest.approx(total / count, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)


@pytest.mark.slow
def test_bbc_language_model_example_reports_perplexity_and_speed_up(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    out = tmp_path / "lm"
    small = [
        "--max_articles", "40", "--eval_articles", "20", "--vocab_size", "512", "--block_size", "64",
        "--teacher_epochs", "1", "--epochs", "1", "--sequence_level", "8",
    ]  # fmt: skip
    completed = subprocess.run(
        [sys.executable, str(repo / "examples" / "causal_lm.py"), "--output_dir", str(out), *small],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["main_metric"] == "perplexity" and metrics["pipeline_tag"] == "text-generation"
    for model in ("teacher", "student"):
        assert 1 < metrics[model]["validation"]["perplexity"] < 512
    assert metrics["student_layers"] == 2 and metrics["teacher_layers"] == [0, 5]
    assert metrics["speedup"] > 1
    assert (out / "completions").is_dir()  # the teacher's generations, cached
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "a causal language model" in card
