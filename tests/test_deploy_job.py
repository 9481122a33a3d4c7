"""Deployment inside the one job: `nlpkd distill --deploy ... --prune_vocabulary true` and `nlpkd.distill(...,
deploy=...)` build the forms into OUTPUT_DIR/deploy, measure them with teacher and student, and report them."""

from __future__ import annotations

import json
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FAST_CLI, SENTENCES, WORDS, tiny_bert
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertTokenizerFast

import nlpkd.deploy.forms
from nlpkd import deploy, distill
from nlpkd.cli import main
from nlpkd.report import changed_predictions, evaluate_model, evaluate_predict, load_report
from nlpkd.report import plot as plot_module

FORMS = ["student-int8", "student-onnx-int8"]
PRUNED = ["student-pruned", "student-pruned-int8", "student-pruned-onnx-int8"]
NAMES = ["teacher", "student", *FORMS, *PRUNED]
# Validation sentences with words that the training sentences lack (phone, team, match, chip).
DEV = [
    "the phone was great",
    "the team match was boring",
    "love the chip",
    "the movie was very good",
    "hate the boring plot",
]
DEV_LABELS = [1, 0, 1, 1, 0]
CORPUS = "market shares\n\nthe vote\n"  # in the tokenizer's vocabulary, in no sentence
BATCH = 4  # FAST_CLI's per-device evaluation batch size


def generic_teacher(folder: Path, tokenizer) -> Path:
    labels = {0: "LABEL_0", 1: "LABEL_1"}
    model = tiny_bert(
        seed=1, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_data(folder: Path) -> tuple[Path, Path, Path]:
    train, dev, corpus = folder / "train.tsv", folder / "dev.tsv", folder / "corpus.txt"
    train.write_text(
        "sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(SENTENCES))
    )
    dev.write_text(
        "sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in zip(DEV, DEV_LABELS, strict=True))
    )
    corpus.write_text(CORPUS)
    return train, dev, corpus


def argv(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "distill", "--task", "sst2", "--teacher", str(root / "teacher"),
        "--train_file", str(root / "train.tsv"), "--validation_file", str(root / "dev.tsv"),
        "--output_dir", str(out), *FAST_CLI, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One `nlpkd distill` run with every kind of form; the plot's variant panel and the summary recorded."""
    root = tmp_path_factory.mktemp("deploy-job")
    (root / "vocab").mkdir()
    (root / "vocab" / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n"
    )
    tokenizer = BertTokenizerFast.from_pretrained(str(root / "vocab"), model_max_length=64)
    generic_teacher(root / "teacher", tokenizer)
    _, _, corpus = write_data(root)
    out = root / "out"
    drawn = []
    original = plot_module._plot_variants
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            plot_module,
            "_plot_variants",
            lambda speed, size, report: (
                drawn.append(report["variants"]) or original(speed, size, report)
            ),
        )
        flags = ["--deploy", "onnx-int8,int8", "--prune_vocabulary", "true"]
        printed = StringIO()
        with redirect_stdout(printed):
            status = main(argv(root, out, *flags, "--vocabulary_file", str(corpus)))
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    return root, out, metrics, drawn, printed.getvalue()


def predictions_by_hand(predict, tokenizer, texts) -> torch.Tensor:
    """Logits batch by batch, padded per batch, as the evaluation pads them."""
    logits = []
    for start in range(0, len(texts), BATCH):
        batch = tokenizer(
            texts[start : start + BATCH],
            truncation=True,
            max_length=16,
            padding=True,
            return_tensors="pt",
        )
        with torch.inference_mode():
            logits.append(predict(dict(batch)).float())
    return torch.cat(logits)


def accuracy(logits: torch.Tensor) -> float:
    return float((logits.argmax(-1) == torch.tensor(DEV_LABELS)).float().mean())


def test_metrics_json_lists_every_form_with_all_its_figures(run):
    _, _, metrics, _, _ = run
    variants = {v["name"]: v for v in metrics["variants"]}
    assert [v["name"] for v in metrics["variants"]] == NAMES
    teacher = variants["teacher"]
    for name, variant in variants.items():
        for key in (
            "metric",
            "params",
            "size_mb",
            "latency_ms",
            "speedup",
            "retention",
            "size_ratio",
        ):
            assert variant[key] is not None, (name, key)
        assert variant["speedup"] == pytest.approx(teacher["latency_ms"] / variant["latency_ms"])
        assert variant["retention"] == pytest.approx(variant["metric"] / teacher["metric"])
        assert variant["size_ratio"] == pytest.approx(variant["size_mb"] / teacher["size_mb"])
    # Teacher and student were timed in the same rounds as the forms: the top level says the same.
    assert metrics["teacher_latency_ms"] == teacher["latency_ms"]
    assert metrics["student_latency_ms"] == variants["student"]["latency_ms"]
    assert metrics["latency_batch_shape"] == [2, 16] and metrics["device"] == "cpu"
    assert metrics["deployment"]["forms"] == NAMES[2:]


def test_every_form_loads_back_and_scores_what_the_report_says(run):
    root, out, metrics, _, _ = run
    variants = {v["name"]: v for v in metrics["variants"]}
    folder = out / "deploy"
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES[2:])
    student = AutoModelForSequenceClassification.from_pretrained(out).eval()
    loaded = {
        "student": student,
        "student-int8": deploy.load_quantized(folder / "student-int8"),
        "student-onnx-int8": deploy.load_onnx(folder / "student-onnx-int8"),
        "student-pruned": AutoModelForSequenceClassification.from_pretrained(
            folder / "student-pruned"
        ),
        "student-pruned-int8": deploy.load_quantized(folder / "student-pruned-int8"),
        "student-pruned-onnx-int8": deploy.load_onnx(folder / "student-pruned-onnx-int8"),
    }
    logits = {}
    for name, model in loaded.items():
        tokenizer = AutoTokenizer.from_pretrained(out if name == "student" else folder / name)
        predict = model if name.endswith("onnx-int8") else lambda b, m=model: m(**b).logits
        logits[name] = predictions_by_hand(predict, tokenizer, DEV)
        assert variants[name]["metric"] == pytest.approx(accuracy(logits[name])), name
        if name != "student":
            assert variants[name]["size_mb"] == pytest.approx(deploy.weights_size_mb(folder / name))
    # Quantization keeps the parameter count; pruning drops 32 numbers (the width) per token.
    pruned_tokens = len(AutoTokenizer.from_pretrained(folder / "student-pruned").get_vocab())
    assert variants["student-int8"]["params"] == variants["student"]["params"]
    assert variants["student-pruned"]["params"] == variants["student"]["params"] - 32 * (
        36 - pruned_tokens
    )
    torch.testing.assert_close(logits["student-pruned"], logits["student"], rtol=1e-5, atol=1e-6)


def test_the_report_says_what_pruning_kept_and_changed(run):
    root, out, metrics, _, _ = run
    vocabulary = metrics["deployment"]["vocabulary"]
    pruned = AutoTokenizer.from_pretrained(out / "deploy" / "student-pruned").get_vocab()
    assert {"market", "shares", "vote", "phone", "chip"} <= set(pruned)  # corpus and validation
    assert "song" in pruned and "election" not in pruned
    assert vocabulary["texts"] == ["train", "validation", str(root / "corpus.txt")]
    assert vocabulary["tokens"] == len(pruned) and vocabulary["tokens_before"] == 36
    assert (vocabulary["split"], vocabulary["examples"], vocabulary["changed_predictions"]) == (
        "validation",
        5,
        0,
    )
    # The training texts alone (and the corpus), by hand: phone, team, match and chip become [UNK].
    student = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = [*SENTENCES, "market shares", "the vote"]
    alone, alone_tokenizer = deploy.prune_vocabulary(student, tokenizer, texts, max_length=16)
    assert alone_tokenizer.tokenize("the phone") == ["the", "[UNK]"]
    reference = predictions_by_hand(lambda b: student(**b).logits, tokenizer, DEV)
    got = predictions_by_hand(lambda b: alone(**b).logits, alone_tokenizer, DEV)
    expected = int((reference.argmax(-1) != got.argmax(-1)).sum())
    assert vocabulary["train_texts_only"] == {
        "tokens": len(alone_tokenizer.get_vocab()),
        "changed_predictions": expected,
    }


def test_summary_card_plot_and_config_show_the_same_forms(run):
    _, out, metrics, drawn, printed = run
    card = (out / "README.md").read_text()
    assert "## Deployed forms" in card
    for variant in metrics["variants"]:
        row = (
            f"| {variant['name']} | {variant['metric']:.4f} | {variant['params']:,} "
            f"| {variant['size_mb']:.2f} | {variant['latency_ms']:.2f} | {variant['speedup']:.2f}x "
            f"| {variant['size_ratio']:.3f} | {variant['retention']:.1%} |"
        )
        assert row in card
        cells = [
            variant["name"],
            f"{variant['metric']:.4f}",
            f"{variant['params']:,}",
            f"{variant['speedup']:.2f}x",
            f"{variant['retention']:.1%}",
        ]
        assert any(line.split()[:1] == [variant["name"]] and all(c in line.split() for c in cells)
                   for line in printed.splitlines()), variant["name"]  # fmt: skip
    assert 'load_quantized("deploy/student-pruned-int8")' in card
    assert 'load_onnx("deploy/student-onnx-int8")' in card
    assert "it changed 0 of 5 validation predictions" in card and "changed 0 of 5" in printed
    assert drawn == [metrics["variants"]]
    assert (out / "distillation.png").read_bytes().startswith(b"\x89PNG")
    saved = yaml.safe_load((out / "nlpkd_config.yaml").read_text())
    assert saved["deploy"] == "onnx-int8,int8" and saved["prune_vocabulary"] is True
    assert load_report(out).variants[-1].name == "student-pruned-onnx-int8"


def test_a_rerun_with_overwrite_replaces_the_forms(run, tmp_path):
    root, out, _, _, _ = run
    again = tmp_path / "again"
    (again / "deploy" / "old-form").mkdir(parents=True)
    (again / "metrics.json").write_text("{}")
    status = main(argv(root, again, "--deploy", "int8", "--overwrite_output_dir", "true"))
    assert status == 0
    assert [p.name for p in (again / "deploy").iterdir()] == ["student-int8"]
    names = [v["name"] for v in json.loads((again / "metrics.json").read_text())["variants"]]
    assert names == ["teacher", "student", "student-int8"]


def test_the_python_keywords_build_measure_and_save_the_forms(tmp_path, tiny_tokenizer):
    teacher = tiny_bert(
        seed=1, num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1}
    )
    work = tmp_path / "work"
    result = distill(
        teacher,
        SENTENCES,
        labels=[i % 2 for i in range(len(SENTENCES))],
        eval_data=DEV,
        eval_labels=DEV_LABELS,
        tokenizer=tiny_tokenizer,
        deploy="int8",
        prune_vocabulary=True,
        output_dir=str(work),
        max_steps=2,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=BATCH,
        max_length=16,
        use_cpu=True,
        disable_tqdm=True,
        latency_batches=0,
    )
    report = result.report
    assert [v.name for v in report.variants] == [
        "teacher", "student", "student-int8", "student-pruned", "student-pruned-int8",
    ]  # fmt: skip
    assert all(v.latency_ms is None for v in report.variants)  # latency_batches=0
    assert result.deploy_dir == work / "deploy"
    saved = result.save(tmp_path / "saved")
    model = deploy.load_quantized(saved / "deploy" / "student-pruned-int8")
    tokenizer = AutoTokenizer.from_pretrained(saved / "deploy" / "student-pruned-int8")
    logits = predictions_by_hand(lambda b: model(**b).logits, tokenizer, DEV)
    assert report.variants[-1].metrics["validation"]["accuracy"] == pytest.approx(accuracy(logits))
    on_disk = json.loads((saved / "metrics.json").read_text())
    assert [v["name"] for v in on_disk["variants"]] == [v.name for v in report.variants]


def test_a_failed_form_leaves_no_deploy_folder(tmp_path, tiny_tokenizer, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("The ONNX graph differs from PyTorch")

    monkeypatch.setattr(nlpkd.deploy.forms, "export_onnx", broken)
    work = tmp_path / "work"
    with pytest.raises(ValueError, match="differs from PyTorch"):
        distill(
            tiny_bert(seed=1),
            SENTENCES,
            labels=[i % 3 for i in range(len(SENTENCES))],
            tokenizer=tiny_tokenizer,
            deploy="int8,onnx-int8",
            output_dir=str(work),
            max_steps=1,
            max_length=16,
            use_cpu=True,
            disable_tqdm=True,
            latency_batches=0,
        )
    assert not (work / "deploy").exists()


# ---- the pieces -------------------------------------------------------------------------------


def test_parse_forms_orders_checks_and_drops_repeats():
    assert deploy.parse_forms(None) == () and deploy.parse_forms("") == ()
    assert deploy.parse_forms("onnx-int8, int8,int8") == ("int8", "onnx-int8")
    assert deploy.parse_forms(["onnx", "int8"]) == ("int8", "onnx")
    with pytest.raises(ValueError, match=r"Unknown deployed form\(s\) \['fp16'\]"):
        deploy.parse_forms("int8,fp16")


def test_changed_predictions_counts_by_hand():
    a = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6]])
    b = torch.tensor([[0.2, 0.7], [0.3, 0.7], [0.9, 0.1]])
    assert changed_predictions(a, b) == 2  # rows 1 and 2 switch class
    regression = torch.tensor([[1.0], [2.0], [3.0]])
    assert changed_predictions(regression, regression + torch.tensor([[0.0], [5e-5], [0.01]])) == 1
    with pytest.raises(ValueError, match="different shapes"):
        changed_predictions(a, regression)


def test_evaluate_predict_gives_the_metrics_of_evaluate_model(tmp_path, tiny_tokenizer):
    from datasets import Dataset

    from nlpkd import DistillationConfig
    from nlpkd.data import get_task

    task = get_task("sst2")
    model = tiny_bert(
        seed=4, num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1}
    )
    encoded = tiny_tokenizer(DEV, truncation=True, max_length=16)
    dataset = Dataset.from_dict({**encoded, "label": DEV_LABELS})
    args = DistillationConfig(
        output_dir=str(tmp_path), per_device_eval_batch_size=BATCH, report_to=[], use_cpu=True
    )
    expected = evaluate_model(model, {"validation": dataset}, tiny_tokenizer, args, task)
    metrics, logits = evaluate_predict(
        lambda b: model(**b).logits.detach(), dataset, tiny_tokenizer, BATCH, task
    )
    assert metrics == pytest.approx(expected["validation"])
    reference = predictions_by_hand(lambda b: model(**b).logits, tiny_tokenizer, DEV)
    torch.testing.assert_close(logits, reference)
    assert metrics["accuracy"] == pytest.approx(accuracy(reference))


def test_models_are_measured_as_float32_cpu_models_without_changing_them():
    from nlpkd.jobs.deploy_step import _on_cpu

    model = tiny_bert(seed=5)
    assert _on_cpu(model) is model
    half = tiny_bert(seed=5).to(torch.bfloat16)
    copy = _on_cpu(half)
    assert copy is not half and next(half.parameters()).dtype == torch.bfloat16
    assert {p.dtype for p in copy.parameters()} == {torch.float32}
    torch.testing.assert_close(
        copy.classifier.weight, half.classifier.weight.float(), rtol=0, atol=0
    )
