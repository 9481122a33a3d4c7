"""Any teacher into any student: a teacher whose tokenizer differs from the student's reads its own tokenization.

Two tiny tokenizers with different vocabularies are built here: the WordPiece of conftest (the student's, BERT)
and a byte-pair encoding trained on the test sentences (the teacher's, RoBERTa), which splits words finer and pads
with `<pad>` = 1 where the WordPiece pads with `[PAD]` = 0.
"""

from __future__ import annotations

import json

import datasets
import pytest
import torch
from conftest import FAST_CLI, SENTENCES, WORDS, tiny_bert
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertModel,
    DataCollatorWithPadding,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
)

import nlpkd
from nlpkd import DistillationConfig, DistillationTrainer, create_student
from nlpkd.cli import main
from nlpkd.data import DataCollatorWithTeacherPadding, custom_task, tokenize_dataset
from nlpkd.losses import hard_label_loss, soft_kl_loss
from nlpkd.models import TeacherEnsemble, ensemble_logits, route_inputs, signature_columns

TASK = custom_task(("text",), 3)
LABELS = [i % 3 for i in range(len(SENTENCES))]


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A RoBERTa-style byte-pair encoding of the test sentences (padded on the right: a RoBERTa classifier reads
    position 0, which left padding would fill with `<pad>`)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(vocab_size=60, special_tokens=specials)
    tokenizer.train_from_iterator([*SENTENCES, " ".join(WORDS)], trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=64,
        model_input_names=["input_ids", "attention_mask"],
    )


@pytest.fixture
def bpe():
    return bpe_tokenizer()


def tiny_roberta(tokenizer, seed: int = 1, num_labels: int = 3, **overrides):
    torch.manual_seed(seed)
    labels = {i: name for i, name in enumerate(["negative", "neutral", "positive"][:num_labels])}
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=70, pad_token_id=tokenizer.pad_token_id,
        type_vocab_size=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        num_labels=num_labels, id2label=labels, label2id={v: k for k, v in labels.items()},
        **overrides,
    )  # fmt: skip
    return RobertaForSequenceClassification(config).eval()


def make_config(tmp_path, **overrides) -> DistillationConfig:
    kwargs = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, per_device_eval_batch_size=4,
        learning_rate=1e-3, max_steps=3, logging_steps=1, save_strategy="no", report_to=[], seed=0,
        use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    kwargs.update(overrides)
    return DistillationConfig(**kwargs)


def both(student_tokenizer, teacher_tokenizer, max_length: int = 16, texts=SENTENCES):
    raw = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"text": list(texts), "label": LABELS[: len(texts)]})}
    )
    return tokenize_dataset(
        raw, student_tokenizer, TASK, max_length, teacher_tokenizer=teacher_tokenizer
    )["train"]


class Recorder:
    """Records the keyword inputs of every forward of a model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: list[dict] = []
        model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        self.calls.append(dict(kwargs))


# ---- the data: two tokenizations of one text, and their padding --------------------------------------------


def test_tokenize_dataset_writes_both_tokenizations_of_the_same_text(tiny_tokenizer, bpe):
    data = both(tiny_tokenizer, bpe)
    assert set(data.column_names) == {
        "label", "input_ids", "token_type_ids", "attention_mask", "teacher_input_ids",
        "teacher_attention_mask",
    }  # fmt: skip
    for row, text in zip(data, SENTENCES, strict=True):
        assert row["input_ids"] == tiny_tokenizer(text)["input_ids"]
        assert row["teacher_input_ids"] == bpe(text)["input_ids"]
    assert data[0]["input_ids"] != data[0]["teacher_input_ids"]
    # The same tokenizer on both sides writes no second tokenization.
    raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": SENTENCES})})
    same = tokenize_dataset(raw, tiny_tokenizer, TASK, 16, teacher_tokenizer=tiny_tokenizer)
    assert not [c for c in same["train"].column_names if c.startswith("teacher")]


def test_truncation_is_per_tokenizer(tiny_tokenizer, bpe):
    text = " ".join(SENTENCES)
    row = both(tiny_tokenizer, bpe, max_length=10, texts=[text])[0]
    assert len(row["input_ids"]) == len(row["teacher_input_ids"]) == 10
    # Each side reads the first 10 of its own tokens, so each sees another share of the same text.
    kept = {}
    for name, tokenizer in (("student", tiny_tokenizer), ("teacher", bpe)):
        encoded = tokenizer(text, truncation=True, max_length=10, return_offsets_mapping=True)
        assert (
            encoded["input_ids"] == row["input_ids" if name == "student" else "teacher_input_ids"]
        )
        kept[name] = max(end for _, end in encoded["offset_mapping"])
    assert kept["student"] == len("the movie was very good the plot was")
    assert 0 < kept["teacher"] < kept["student"]  # the finer BPE covers fewer characters


def test_collator_pads_each_side_with_its_own_tokenizer(tiny_tokenizer, bpe):
    data = both(tiny_tokenizer, bpe)
    rows = [data[i] for i in (0, 4)]  # a long and a short sentence
    batch = DataCollatorWithTeacherPadding(tiny_tokenizer, bpe)(rows)
    student = DataCollatorWithPadding(tiny_tokenizer)(
        [{k: v for k, v in r.items() if not k.startswith("teacher")} for r in rows]
    )
    teacher = bpe.pad(
        [{"input_ids": r["teacher_input_ids"], "attention_mask": r["teacher_attention_mask"]} for r in rows],
        return_tensors="pt",
    )  # fmt: skip
    for key in ("input_ids", "attention_mask", "token_type_ids", "labels"):
        assert torch.equal(batch[key], student[key]), key
    assert torch.equal(batch["teacher_input_ids"], teacher["input_ids"])
    assert torch.equal(batch["teacher_attention_mask"], teacher["attention_mask"])
    # The student's short row is padded with [PAD] = 0 to the student's longest row, the teacher's with <pad> = 1
    # to the teacher's longest (each tokenization has its own length).
    short = len(SENTENCES[4].split()) + 2
    assert batch["input_ids"][1, short:].eq(0).all() and batch["input_ids"][1, short - 1] == 3
    own = len(rows[1]["teacher_input_ids"])
    assert (
        batch["teacher_input_ids"].shape[1] > own
        and batch["teacher_input_ids"][1, own:].eq(1).all()
    )
    assert batch["teacher_input_ids"][1, own - 1] == bpe.eos_token_id
    assert batch["teacher_input_ids"].shape[1] != batch["input_ids"].shape[1]
    # A batch of the teacher's columns alone (the logit cache) is padded too.
    alone = DataCollatorWithTeacherPadding(tiny_tokenizer, bpe)(
        [{"teacher_input_ids": r["teacher_input_ids"]} for r in rows]
    )
    assert set(alone) == {"teacher_input_ids", "teacher_attention_mask"}


def test_routing_gives_each_model_its_own_columns():
    batch = {
        "input_ids": 1, "attention_mask": 2, "teacher_input_ids": 3, "teacher_attention_mask": 4,
        "teacher2_input_ids": 5, "labels": 6, "teacher_logits": 7,
    }  # fmt: skip
    assert route_inputs({"input_ids", "attention_mask"}, batch) == {
        "input_ids": 1,
        "attention_mask": 2,
    }
    assert route_inputs(None, batch) == {"input_ids": 1, "attention_mask": 2}
    assert route_inputs(None, batch, "teacher_") == {"input_ids": 3, "attention_mask": 4}
    assert route_inputs({"input_ids"}, batch, "teacher2_") == {"input_ids": 5}
    with pytest.raises(ValueError, match="The batch has no teacher3_input_ids"):
        route_inputs(None, batch, "teacher3_")
    assert "teacher_attention_mask" in signature_columns(
        {"input_ids"}, {"attention_mask"}, "teacher_"
    )


# ---- the trainer --------------------------------------------------------------------------------------------


def test_the_teacher_reads_exactly_its_own_ids_and_the_loss_matches_a_reference(
    tmp_path, tiny_tokenizer, bpe
):
    teacher = tiny_roberta(bpe)
    student = tiny_bert(seed=2, num_hidden_layers=2)
    data = both(tiny_tokenizer, bpe)
    trainer = DistillationTrainer(
        model=student, teacher=teacher, args=make_config(tmp_path, alpha_kd=0.7, alpha_ce=0.3),
        train_dataset=data, processing_class=tiny_tokenizer, teacher_processing_class=bpe,
    )  # fmt: skip
    assert trainer.teacher_prefix == "teacher_"
    assert isinstance(trainer.data_collator, DataCollatorWithTeacherPadding)
    seen_by_teacher, seen_by_student = Recorder(teacher), Recorder(student)
    batch = trainer.data_collator([data[i] for i in range(4)])
    student.train()
    loss = trainer.compute_loss(student, dict(batch))

    texts = SENTENCES[:4]
    own = bpe(texts, padding=True, return_tensors="pt")
    assert torch.equal(seen_by_teacher.calls[0]["input_ids"], own["input_ids"])
    assert torch.equal(seen_by_teacher.calls[0]["attention_mask"], own["attention_mask"])
    assert not any(k.startswith("teacher") for k in seen_by_student.calls[0])
    students = tiny_tokenizer(texts, padding=True, return_tensors="pt")
    assert torch.equal(seen_by_student.calls[0]["input_ids"], students["input_ids"])
    with torch.no_grad():
        t_logits = teacher(**own).logits
        s_logits = student(**students).logits
    expected = 0.7 * soft_kl_loss(s_logits, t_logits, 2.0) + 0.3 * hard_label_loss(
        s_logits, torch.tensor(LABELS[:4])
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_distils_with_the_cache_and_evaluates_the_student_alone(tmp_path, tiny_tokenizer, bpe):
    teacher = tiny_roberta(bpe)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = tiny_bert(seed=2, num_hidden_layers=2)
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    data = both(tiny_tokenizer, bpe)
    # Evaluation data tokenized for the student alone: the teacher never runs in evaluation.
    raw = datasets.DatasetDict(
        {"validation": datasets.Dataset.from_dict({"text": SENTENCES, "label": LABELS})}
    )
    validation = tokenize_dataset(raw, tiny_tokenizer, TASK, 16)["validation"]
    trainer = DistillationTrainer(
        model=student, teacher=teacher, args=make_config(tmp_path, teacher_cache=True),
        train_dataset=data, eval_dataset=validation, processing_class=tiny_tokenizer,
        teacher_processing_class=bpe,
    )  # fmt: skip
    # The cached logits are the teacher's on its own tokenization of each text.
    with torch.no_grad():
        reference = teacher(**bpe(SENTENCES, padding=True, return_tensors="pt")).logits
    cached = torch.tensor(trainer.train_dataset["teacher_logits"])
    assert torch.allclose(cached, reference, atol=1e-5)
    calls = Recorder(teacher)
    trainer.train()
    assert not calls.calls  # the cache stood in for the teacher on every step
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and not calls.calls
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, student.state_dict()[k]) for k, v in student_before.items())


def test_two_teachers_with_different_tokenizers_each_read_their_own(tmp_path, tiny_tokenizer, bpe):
    # Teacher 1 shares the student's WordPiece; teacher 2 reads its BPE columns (teacher2_...).
    first, second = tiny_bert(seed=1), tiny_roberta(bpe, seed=3)
    student = create_student(first, num_layers=2)
    data = both(tiny_tokenizer, [None, bpe])
    assert (
        "teacher2_input_ids" in data.column_names and "teacher_input_ids" not in data.column_names
    )
    trainer = DistillationTrainer(
        model=student, teacher=[first, second], args=make_config(tmp_path, teacher_cache=True),
        train_dataset=data, processing_class=tiny_tokenizer, teacher_processing_class=[tiny_tokenizer, bpe],
    )  # fmt: skip
    ensemble = trainer.teacher_model
    assert isinstance(ensemble, TeacherEnsemble) and ensemble.input_prefixes == [None, "teacher2_"]
    with torch.no_grad():
        logits = [
            first(**tiny_tokenizer(SENTENCES, padding=True, return_tensors="pt")).logits,
            second(**bpe(SENTENCES, padding=True, return_tensors="pt")).logits,
        ]
    expected = ensemble_logits(logits, [1.0, 1.0], temperature=2.0)
    cached = torch.tensor(trainer.train_dataset["teacher_logits"])
    assert torch.allclose(cached, expected, atol=1e-5)
    trainer.train()
    # The intermediate terms use teacher 1, which reads the student's tokens: they remain available.
    DistillationTrainer(
        model=create_student(first, num_layers=2), teacher=[first, second],
        args=make_config(tmp_path, alpha_hidden=1.0), train_dataset=data,
        processing_class=tiny_tokenizer, teacher_processing_class=[tiny_tokenizer, bpe],
    )  # fmt: skip


def test_the_sentence_level_hidden_term_is_allowed(tmp_path, tiny_tokenizer, bpe):
    args = make_config(tmp_path, alpha_hidden=1.0, hidden_loss="pkd", max_steps=1)
    trainer = DistillationTrainer(
        model=tiny_bert(seed=2, num_hidden_layers=2, hidden_size=16, num_attention_heads=2),
        teacher=tiny_roberta(bpe), args=args, train_dataset=both(tiny_tokenizer, bpe),
        processing_class=tiny_tokenizer, teacher_processing_class=bpe,
    )  # fmt: skip
    trainer.train()
    assert "hidden" in trainer.state.log_history[0]


# ---- refusals, each in one line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"alpha_hidden": 1.0}, "alpha_hidden (hidden_loss='mse')"),
        ({"alpha_hidden": 1.0, "hidden_loss": "cosine"}, "alpha_hidden (hidden_loss='cosine')"),
        ({"alpha_attn": 1.0}, "alpha_attn"),
        ({"alpha_relation": 1.0}, "alpha_relation"),
    ],
)
def test_token_level_terms_are_refused_with_what_remains(
    tmp_path, tiny_tokenizer, bpe, settings, named
):
    with pytest.raises(ValueError) as info:
        DistillationTrainer(
            model=tiny_bert(seed=2, num_hidden_layers=2), teacher=tiny_roberta(bpe),
            args=make_config(tmp_path, **settings), train_dataset=both(tiny_tokenizer, bpe),
            processing_class=tiny_tokenizer, teacher_processing_class=bpe,
        )  # fmt: skip
    message = str(info.value)
    assert "\n" not in message and message.startswith(named)
    assert "What remains with two tokenizers: alpha_kd (every kd_loss), alpha_ce, and alpha_hidden with " \
        "hidden_loss='pkd'" in message  # fmt: skip


def test_a_missing_side_and_mismatched_data_fail_in_one_line(tmp_path, tiny_tokenizer, bpe):
    data = both(tiny_tokenizer, bpe)
    common = {"model": tiny_bert(seed=2, num_hidden_layers=2), "teacher": tiny_roberta(bpe)}

    def message(**kwargs) -> str:
        with pytest.raises(ValueError) as info:
            DistillationTrainer(args=make_config(tmp_path), **common, **kwargs)
        assert "\n" not in str(info.value)
        return str(info.value)

    assert "no teacher_processing_class was given: pass teacher_processing_class=the teacher's tokenizer" in (
        message(train_dataset=data, processing_class=tiny_tokenizer)
    )  # fmt: skip
    assert (
        "no processing_class was given: pass processing_class=the student's tokenizer"
        in message(train_dataset=data, teacher_processing_class=bpe)
    )
    # Tokenizers that differ over data with one tokenization: the old error, pointing to this mode.
    plain = tokenize_dataset(
        datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": SENTENCES, "label": LABELS})}),
        tiny_tokenizer, TASK, 16,
    )["train"]  # fmt: skip
    text = message(
        train_dataset=plain, processing_class=tiny_tokenizer, teacher_processing_class=bpe
    )
    assert text.startswith("Teacher and student tokenizers differ") and "teacher_tokenizer=" in text
    # Another vocabulary with no tokenizer at all: the vocabulary error names the tokenizers' way.
    text = message(train_dataset=plain)
    assert (
        text.startswith("Teacher and student vocabularies differ")
        and "teacher_processing_class" in text
    )
    text = message(
        train_dataset=data, processing_class=tiny_tokenizer, teacher_processing_class=bpe,
        data_collator=DataCollatorWithPadding(tiny_tokenizer),
    )  # fmt: skip
    assert text.startswith(
        "data_collator=DataCollatorWithPadding pads every column with one tokenizer"
    )


def test_a_teacher_tokenizer_that_cannot_encode_the_texts_fails_in_one_line(
    tmp_path, tiny_tokenizer
):
    from transformers import BertTokenizerFast

    (tmp_path / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "zebra"])
    )
    foreign = BertTokenizerFast.from_pretrained(str(tmp_path))
    with pytest.raises(ValueError) as info:
        both(tiny_tokenizer, foreign)
    text = str(info.value)
    assert (
        "\n" not in text
        and "reads 100% of the tokens of these texts as its unknown token '[UNK]'" in text
    )
    with pytest.raises(ValueError, match="teacher tokenizer 2 \\(object\\) is not a tokenizer"):
        both(tiny_tokenizer, [None, object()])


def test_causal_lms_with_other_vocabularies_are_refused_with_the_reason(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    def gpt2(vocab_size: int):
        return GPT2LMHeadModel(
            GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=32)
        )

    with pytest.raises(ValueError) as info:
        DistillationTrainer(model=gpt2(40), teacher=gpt2(50), args=make_config(tmp_path))
    text = str(info.value)
    assert text.startswith(
        "Teacher and student vocabularies differ (teacher vocab_size=50, student vocab_size=40)"
    )
    assert "ULD, Boizard et al. 2024" in text and "GOLDTrainer" in text and "silently wrong" in text


# ---- the job: the command line and nlpkd.distill -------------------------------------------------------------


def save_pair(root, tiny_tokenizer, bpe, num_labels: int = 2):
    """A fine-tuned RoBERTa/BPE teacher folder and a base BERT/WordPiece student folder, each with its tokenizer."""
    teacher = tiny_roberta(bpe, num_labels=num_labels)
    teacher.config.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    teacher.config.label2id = {v: k for k, v in teacher.config.id2label.items()}
    teacher.save_pretrained(root / "teacher")
    bpe.save_pretrained(root / "teacher")
    torch.manual_seed(4)
    BertModel(tiny_bert(num_hidden_layers=2).config).save_pretrained(root / "student")
    tiny_tokenizer.save_pretrained(root / "student")
    return root / "teacher", root / "student"


def write_sst2(folder):
    rows = [f"{s}\t{i % 2}" for i, s in enumerate(SENTENCES)]
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (folder / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows[:5]) + "\n")
    return folder / "train.tsv", folder / "dev.tsv"


def test_the_command_detects_a_student_with_its_own_tokenizer(tmp_path, tiny_tokenizer, bpe):
    teacher_dir, student_dir = save_pair(tmp_path, tiny_tokenizer, bpe)
    train, dev = write_sst2(tmp_path)
    out = tmp_path / "out"
    argv = [
        "distill", "--task", "sst2", "--teacher", str(teacher_dir), "--student", str(student_dir),
        "--train_file", str(train), "--validation_file", str(dev), "--output_dir", str(out),
        "--teacher_cache", "true", "--augment", "1", *FAST_CLI,
    ]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tokenizers"]["teacher_columns"] == ["teacher_input_ids"]
    # The teacher is evaluated on its own tokenization: its accuracy, by hand.
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    own = AutoTokenizer.from_pretrained(teacher_dir)
    with torch.no_grad():
        logits = teacher(
            **own(SENTENCES[:5], padding=True, truncation=True, max_length=16, return_tensors="pt")
        )
    expected = float((logits.logits.argmax(-1) == torch.tensor([0, 1, 0, 1, 0])).float().mean())
    assert metrics["teacher"]["validation"]["accuracy"] == pytest.approx(expected)
    assert metrics["latency_batch_shape"] == [2, 16]
    # The saved student carries its own tokenizer, so pipeline() reads it as it was trained.
    saved = AutoTokenizer.from_pretrained(out)
    assert saved.get_vocab() == tiny_tokenizer.get_vocab()


def test_the_command_averages_teachers_of_different_families(tmp_path, tiny_tokenizer, bpe):
    roberta_dir, _ = save_pair(tmp_path, tiny_tokenizer, bpe)
    bert = tiny_bert(
        seed=1,
        num_labels=2,
        id2label={0: "LABEL_0", 1: "LABEL_1"},
        label2id={"LABEL_0": 0, "LABEL_1": 1},
    )
    bert.save_pretrained(tmp_path / "bert")
    tiny_tokenizer.save_pretrained(tmp_path / "bert")
    train, dev = write_sst2(tmp_path)
    out = tmp_path / "out"
    argv = [
        "distill", "--task", "sst2", "--teacher", str(tmp_path / "bert"), str(roberta_dir),
        "--student_layers", "2", "--train_file", str(train), "--validation_file", str(dev),
        "--output_dir", str(out), *FAST_CLI,
    ]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tokenizers"]["teacher_columns"] == ["input_ids", "teacher2_input_ids"]
    assert len(metrics["teachers"]) == 2


def test_distill_takes_a_student_and_its_tokenizer(tmp_path, tiny_tokenizer, bpe):
    teacher_dir, _ = save_pair(tmp_path, tiny_tokenizer, bpe)
    generic = {0: "LABEL_0", 1: "LABEL_1"}
    student = tiny_bert(
        seed=2,
        num_hidden_layers=2,
        num_labels=2,
        id2label=generic,
        label2id={v: k for k, v in generic.items()},
    )
    labels = ["LABEL_0", "LABEL_1"] * 4
    result = nlpkd.distill(
        str(teacher_dir), SENTENCES, SENTENCES[:5], labels=labels, eval_labels=labels[:5],
        student=student, student_tokenizer=tiny_tokenizer, teacher_cache=True, max_length=16,
        max_steps=2, per_device_train_batch_size=4, latency_batches=1, latency_batch_size=2,
        latency_repeats=1, use_cpu=True, disable_tqdm=True, output_dir=str(tmp_path / "run"),
    )  # fmt: skip
    assert result.tokenizer is tiny_tokenizer
    assert "teacher_logits" in result.trainer.train_dataset.column_names
    assert result.report["tokenizers"]["teacher_columns"] == ["teacher_input_ids"]
    assert result.student is student
