"""The job's deployment step: prune the student's vocabulary, build its int8 and ONNX forms, and measure every
form beside the teacher and the student in one run (called by [`nlpkd.pipeline.run`] on the main process)."""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import torch
from transformers import AutoConfig, PreTrainedModel

from .data.readers import subsample, text_value
from .data.tokenize import tokenize_dataset
from .deploy import (
    DeployedVariant,
    build_forms,
    check_deployable,
    parse_forms,
    prune_vocabulary,
    time_variants,
    torch_variant,
)
from .evaluation import changed_predictions, evaluate_predict, latency_batches
from .report import Report, Variant

if TYPE_CHECKING:
    from .pipeline import DistillationJob

__all__ = ["DEPLOY_DIR", "check_deploy_plan", "copy_folder", "deploy_student"]

logger = logging.getLogger("nlpkd")

# The folder, inside the output directory, that holds the deployed forms.
DEPLOY_DIR = "deploy"


def copy_folder(source: Path, target: Path) -> None:
    """Replace ``target`` with a copy of ``source`` (nothing to do when they are the same folder)."""
    if target.exists() and target.resolve() == source.resolve():
        return
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)


def _read_vocabulary_file(path: str | Path) -> list[str]:
    """The texts of a vocabulary file: its non-blank lines."""
    remedy = "give a UTF-8 text file with one text per line"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ValueError(f"--vocabulary_file {path} does not exist: {remedy}.") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"--vocabulary_file {path} is not UTF-8 text: {remedy}.") from err
    except OSError as err:
        raise ValueError(
            f"--vocabulary_file {path} cannot be read ({err.strerror}): {remedy}."
        ) from err
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"--vocabulary_file {path} holds no text: {remedy}.")
    return lines


def check_deploy_plan(
    job: DistillationJob, source: PreTrainedModel | str, tokenizer: Any
) -> tuple[str, ...]:
    """Fail before any fine-tuning when the deployed forms asked for cannot be built; returns them."""
    if job.vocabulary_file is not None and not job.prune_vocabulary:
        raise ValueError(
            "--vocabulary_file only adds texts to a pruned vocabulary: add --prune_vocabulary true, or "
            "leave it out."
        )
    if not parse_forms(job.deploy) and not job.prune_vocabulary:
        return ()
    model = job.student if job.student is not None else source
    config = (
        model.config
        if isinstance(model, PreTrainedModel)
        else AutoConfig.from_pretrained(str(model), trust_remote_code=job.trust_remote_code)
    )
    forms = check_deployable(config, tokenizer, job.deploy, prune=job.prune_vocabulary)
    if job.vocabulary_file is not None:
        _read_vocabulary_file(job.vocabulary_file)
    return forms


def _texts(job: DistillationJob, split: str) -> list[Any]:
    columns = [[text_value(v) for v in job.data[split][c]] for c in job.task.text_columns]
    return columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))


def _raw_split(job: DistillationJob, split: str) -> datasets.Dataset:
    """The raw rows of an evaluation split that `prepare_data` kept, in its order."""
    raw = job.data[split]
    if split == "train":
        raw = subsample(raw, job.max_train_samples, job.args.seed)
    return subsample(raw, job.max_eval_samples, job.args.seed)


def _on_cpu(model: PreTrainedModel) -> PreTrainedModel:
    """The model as a float32 CPU model (a copy when it is not one already): the deployed forms are CPU forms,
    so everything they are compared with runs there too."""
    if all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters()):
        return model.eval()
    return copy.deepcopy(model).float().cpu().eval()


def _split_per_tokenizer(
    job: DistillationJob,
    variants: Sequence[DeployedVariant],
    tokenized: datasets.Dataset,
    tokenizer: Any,
    split: str,
    max_length: int,
) -> dict[str, datasets.Dataset]:
    """The main split as each variant reads it: the job's tokenization, or its own tokenizer's (pruned forms)."""
    by_tokenizer: dict[int, datasets.Dataset] = {id(tokenizer): tokenized}
    result = {}
    for variant in variants:
        own = variant.tokenizer if variant.tokenizer is not None else tokenizer
        if id(own) not in by_tokenizer:
            raw = datasets.DatasetDict({split: _raw_split(job, split)})
            by_tokenizer[id(own)] = tokenize_dataset(raw, own, job.task, max_length)[split]
        result[variant.name] = by_tokenizer[id(own)]
    return result


def _pruning_effect(
    job: DistillationJob,
    student: PreTrainedModel,
    tokenizer: Any,
    main_split: str,
    max_length: int,
    reference: torch.Tensor,
) -> dict[str, int]:
    """What a vocabulary of the training texts alone (the evaluation texts left out) changes on the main
    split: the figure to expect on texts that nobody has seen."""
    texts = _texts(job, "train")
    if job.vocabulary_file is not None:
        texts += _read_vocabulary_file(job.vocabulary_file)
    pruned, pruned_tokenizer = prune_vocabulary(student, tokenizer, texts, max_length=max_length)
    raw = datasets.DatasetDict({main_split: _raw_split(job, main_split)})
    data = tokenize_dataset(raw, pruned_tokenizer, job.task, max_length)[main_split]
    # Only its predictions are compared: the size given here is never reported.
    variant = torch_variant("student-pruned-train", pruned, size_mb=0.0)
    _, logits = evaluate_predict(
        variant.predict,
        data,
        pruned_tokenizer,
        job.args.per_device_eval_batch_size,
        job.task,
        job.compute_metrics,
    )
    return {
        "tokens": len(pruned_tokenizer.get_vocab()),
        "changed_predictions": changed_predictions(reference, logits),
    }


def _evaluate(
    job: DistillationJob, variant: DeployedVariant, data: datasets.Dataset
) -> tuple[dict[str, float], torch.Tensor]:
    return evaluate_predict(
        variant.predict,
        data,
        variant.tokenizer,
        job.args.per_device_eval_batch_size,
        job.task,
        job.compute_metrics,
    )


def _time_all(
    job: DistillationJob,
    report: Report,
    variants: Sequence[DeployedVariant],
    data: Mapping[str, datasets.Dataset],
    max_length: int,
) -> None:
    """Time every variant (teacher and student included) in the same interleaved rounds, on fixed-shape
    batches of the same main-split texts, each tokenized by the variant's own tokenizer."""
    if job.latency_batches <= 0:
        return
    batches = {
        v.name: latency_batches(
            data[v.name], v.tokenizer, job.latency_batch_size, job.latency_batches, max_length
        )
        for v in variants
    }
    logger.info("timing %d models on the same batches ...", len(variants))
    latency = time_variants(variants, batches, warmup=2, repeats=job.latency_repeats)
    for entry in report.variants:
        entry.latency_ms = latency.get(entry.name, entry.latency_ms)
    first = next(iter(batches.values()))
    report.latency_batch_shape = list(first[0]["input_ids"].shape[:2])
    report.latency_num_batches = len(first)
    report.device = "cpu"


def _vocabulary_texts(job: DistillationJob, splits: Sequence[str]) -> list[Any] | None:
    if not job.prune_vocabulary:
        return None
    texts = [text for split in splits for text in _texts(job, split)]
    if job.vocabulary_file is not None:
        texts += _read_vocabulary_file(job.vocabulary_file)
    return texts


def deploy_student(
    job: DistillationJob,
    report: Report,
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    tokenizer: Any,
    eval_splits: Mapping[str, datasets.Dataset],
    max_length: int,
) -> Path:
    """The deploy step: build the job's forms into `args.output_dir/deploy/`, evaluate each on the main split
    with the task's metric function, time them with teacher and student in the same rounds on the CPU, and add
    them to the report (`report.variants`, and `report.extra["deployment"]`).

    The pruned vocabulary holds the tokens of the training split, of the job's evaluation splits (their texts,
    never their labels) and of `vocabulary_file`, so pruning changes no prediction on the evaluation splits;
    the report also says how many main-split predictions a vocabulary of the training texts alone changes,
    the figure to expect on new texts. Returns the folder; nothing is left there when a step fails.
    """
    root = Path(job.args.output_dir) / DEPLOY_DIR
    if root.exists():
        shutil.rmtree(root)  # the forms of an earlier run in the same output directory
    main = report.main_split
    splits = list(dict.fromkeys(["train", *eval_splits]))
    model = _on_cpu(student)
    try:
        logger.info("building the deployed forms in %s ...", root)
        forms = build_forms(
            model,
            tokenizer,
            job.deploy,
            root,
            vocabulary_texts=_vocabulary_texts(job, splits),
            max_length=max_length,
        )
        pair = [
            torch_variant(v.name, m, None, v.params, tokenizer, v.size_mb)
            for v, m in ((report.teacher, _on_cpu(teacher)), (report.student, model))
        ]
        data = _split_per_tokenizer(
            job, [*pair, *forms], eval_splits[main], tokenizer, main, max_length
        )
        logger.info("evaluating %d deployed forms ...", len(forms))
        _, reference = _evaluate(job, pair[1], data["student"])
        logits = {}
        for form in forms:
            metrics, logits[form.name] = _evaluate(job, form, data[form.name])
            report.variants.append(Variant(form.name, {main: metrics}, form.params, form.size_mb))
        _time_all(job, report, [*pair, *forms], data, max_length)
        summary: dict[str, Any] = {"folder": DEPLOY_DIR, "forms": [f.name for f in forms]}
        if job.prune_vocabulary:
            pruned = next(form for form in forms if form.name == "student-pruned")
            summary["vocabulary"] = _vocabulary_summary(
                job,
                splits,
                main,
                (pruned, logits[pruned.name]),
                reference,
                model,
                tokenizer,
                max_length,
            )
        report.extra["deployment"] = summary
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root


def _vocabulary_summary(
    job: DistillationJob,
    splits: Sequence[str],
    main: str,
    pruned: tuple[DeployedVariant, torch.Tensor],
    reference: torch.Tensor,
    student: PreTrainedModel,
    tokenizer: Any,
    max_length: int,
) -> dict[str, Any]:
    """Where the pruned vocabulary came from, its size, and the main-split predictions that pruning changed."""
    form, logits = pruned
    summary: dict[str, Any] = {
        "texts": [*splits, *([str(job.vocabulary_file)] if job.vocabulary_file else [])],
        "tokens": len(form.tokenizer.get_vocab()),
        "tokens_before": len(tokenizer.get_vocab()),
        "split": main,
        "examples": int(reference.shape[0]),
        "changed_predictions": changed_predictions(reference, logits),
    }
    if main != "train":
        summary["train_texts_only"] = _pruning_effect(
            job, student, tokenizer, main, max_length, reference
        )
    return summary
