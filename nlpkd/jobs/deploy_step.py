"""The job's deployment step: prune the student's vocabulary, build its int8 and ONNX forms, and measure every
form beside the teacher and the student in one run (called by [`nlpkd.jobs.steps.run`] on the main process).

The step takes the job's parsed forms (`job.deploy`) and the rows the job sampled, and returns what it measured
as a [`Deployment`]; the job adds it to its report.
"""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoConfig, PreTrainedModel

from ..data.files import text_value
from ..data.tokenize import tokenize_dataset
from ..deploy.forms import build_forms, check_deployable
from ..deploy.variants import DeployedVariant, time_variants, torch_variant
from ..deploy.vocabulary import prune_vocabulary
from ..report.evaluate import changed_predictions, evaluate_predict
from ..report.measure import latency_batches
from ..report.report import Report, Variant
from .job import DistillationJob

__all__ = ["DEPLOY_DIR", "Deployment", "check_deploy_plan", "copy_folder", "deploy_student"]

logger = logging.getLogger("nlpkd")

# The folder, inside the output directory, that holds the deployed forms.
DEPLOY_DIR = "deploy"


@dataclass
class Deployment:
    """What the deploy step built and measured, for the job to add to its report.

    Args:
        folder (`Path`): the folder of the forms, one subfolder per form.
        variants (`list[Variant]`): each form, evaluated on the main split.
        latency_ms (`dict[str, float]`): every model's latency (teacher and student included), timed in the same
            interleaved rounds; empty when latency is not measured.
        latency_batch_shape (`list[int]`, *optional*): batch x sequence length of the timed batches.
        latency_num_batches (`int`, *optional*): batches per timed round.
        summary (`dict`): the report's `deployment` entry (folder, forms, pruned vocabulary).
    """

    folder: Path
    variants: list[Variant] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    latency_batch_shape: list[int] | None = None
    latency_num_batches: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def add_to(self, report: Report) -> None:
        """Add the forms to `report`, and every model's latency from the shared rounds."""
        report.variants.extend(self.variants)
        report.extra["deployment"] = self.summary
        if not self.latency_ms:
            return
        for entry in report.variants:
            entry.latency_ms = self.latency_ms.get(entry.name, entry.latency_ms)
        report.latency_batch_shape = self.latency_batch_shape
        report.latency_num_batches = self.latency_num_batches
        report.device = "cpu"


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


def check_deploy_plan(job: DistillationJob, source: PreTrainedModel | str, tokenizer: Any) -> bool:
    """Fail before any fine-tuning when the deployed forms asked for cannot be built; returns whether the job
    deploys at all."""
    if job.vocabulary_file is not None and not job.prune_vocabulary:
        raise ValueError(
            "--vocabulary_file only adds texts to a pruned vocabulary: add --prune_vocabulary true, or "
            "leave it out."
        )
    if not job.deploy and not job.prune_vocabulary:
        return False
    model = job.student if job.student is not None else source
    config = (
        model.config
        if isinstance(model, PreTrainedModel)
        else AutoConfig.from_pretrained(str(model), trust_remote_code=job.trust_remote_code)
    )
    check_deployable(config, tokenizer, job.deploy, prune=job.prune_vocabulary)
    if job.vocabulary_file is not None:
        _read_vocabulary_file(job.vocabulary_file)
    return True


def _texts(job: DistillationJob, split: datasets.Dataset) -> list[Any]:
    columns = [[text_value(v) for v in split[c]] for c in job.task.text_columns]
    return columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))


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
    raw: datasets.Dataset,
    max_length: int,
) -> dict[str, datasets.Dataset]:
    """The main split as each variant reads it: the job's tokenization, or its own tokenizer's (pruned forms)."""
    by_tokenizer: dict[int, datasets.Dataset] = {id(tokenizer): tokenized}
    result = {}
    for variant in variants:
        own = variant.tokenizer if variant.tokenizer is not None else tokenizer
        if id(own) not in by_tokenizer:
            rows = datasets.DatasetDict({"main": raw})
            by_tokenizer[id(own)] = tokenize_dataset(rows, own, job.task, max_length)["main"]
        result[variant.name] = by_tokenizer[id(own)]
    return result


def _pruning_effect(
    job: DistillationJob,
    raw: datasets.DatasetDict,
    student: PreTrainedModel,
    tokenizer: Any,
    main_split: str,
    max_length: int,
    reference: torch.Tensor,
) -> dict[str, int]:
    """What a vocabulary of the training texts alone (the evaluation texts left out) changes on the main
    split: the figure to expect on texts that nobody has seen."""
    texts = _texts(job, raw["train"])
    if job.vocabulary_file is not None:
        texts += _read_vocabulary_file(job.vocabulary_file)
    pruned, pruned_tokenizer = prune_vocabulary(student, tokenizer, texts, max_length=max_length)
    rows = datasets.DatasetDict({main_split: raw[main_split]})
    data = tokenize_dataset(rows, pruned_tokenizer, job.task, max_length)[main_split]
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
    deployment: Deployment,
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
    deployment.latency_ms = time_variants(variants, batches, warmup=2, repeats=job.latency_repeats)
    first = next(iter(batches.values()))
    deployment.latency_batch_shape = list(first[0]["input_ids"].shape[:2])
    deployment.latency_num_batches = len(first)


def _vocabulary_texts(job: DistillationJob, raw: datasets.DatasetDict, splits: Sequence[str]):
    if not job.prune_vocabulary:
        return None
    texts = [text for split in splits for text in _texts(job, raw[split])]
    if job.vocabulary_file is not None:
        texts += _read_vocabulary_file(job.vocabulary_file)
    return texts


def deploy_student(
    job: DistillationJob,
    raw: datasets.DatasetDict,
    report: Report,
    models: tuple[PreTrainedModel, PreTrainedModel],
    tokenizer: Any,
    eval_splits: Mapping[str, datasets.Dataset],
    max_length: int,
    teacher_tokenizer: Any = None,
) -> Deployment:
    """The deploy step: build the job's forms (`job.deploy`, pruned with `job.prune_vocabulary`) into
    `args.output_dir/deploy/`, evaluate each on the main split with the task's metric function, and time them
    with teacher and student in the same rounds on the CPU.

    The pruned vocabulary holds the tokens of the training split, of the job's evaluation splits (their texts,
    never their labels) and of `vocabulary_file`, so pruning changes no prediction on the evaluation splits;
    the summary also says how many main-split predictions a vocabulary of the training texts alone changes,
    the figure to expect on new texts. Nothing is left in the folder when a step fails.

    Args:
        job ([`DistillationJob`]): the job (its forms, texts, task and latency settings).
        raw (`datasets.DatasetDict`): the rows the job sampled ([`nlpkd.jobs.steps.sampled_data`]).
        report ([`~nlpkd.report.Report`]): the job's report so far (read: the teacher's and the student's rows).
        models (`tuple`): the teacher and the distilled student.
        tokenizer: the student's tokenizer.
        eval_splits (`dict[str, datasets.Dataset]`): the tokenized evaluation splits.
        max_length (`int`): the job's sequence length.
        teacher_tokenizer (*optional*): the teacher's, when it differs from the student's (the teacher is then
            evaluated and timed on its own tokenization of the same texts).

    Returns:
        [`Deployment`]: the forms and what they measured, for `Deployment.add_to(report)`.
    """
    root = Path(job.args.output_dir) / DEPLOY_DIR
    if root.exists():
        shutil.rmtree(root)  # the forms of an earlier run in the same output directory
    main = report.main_split
    splits = list(dict.fromkeys(["train", *eval_splits]))
    teacher, model = (_on_cpu(m) for m in models)
    deployment = Deployment(folder=root, summary={"folder": DEPLOY_DIR})
    try:
        logger.info("building the deployed forms in %s ...", root)
        forms = build_forms(
            model,
            tokenizer,
            job.deploy,
            root,
            vocabulary_texts=_vocabulary_texts(job, raw, splits),
            max_length=max_length,
        )
        pair = [
            torch_variant(v.name, m, None, v.params, own, v.size_mb)
            for v, m, own in (
                (report.teacher, teacher, teacher_tokenizer or tokenizer),
                (report.student, model, tokenizer),
            )
        ]
        data = _split_per_tokenizer(
            job, [*pair, *forms], eval_splits[main], tokenizer, raw[main], max_length
        )
        logger.info("evaluating %d deployed forms ...", len(forms))
        _, reference = _evaluate(job, pair[1], data["student"])
        logits = {}
        for form in forms:
            metrics, logits[form.name] = _evaluate(job, form, data[form.name])
            deployment.variants.append(
                Variant(form.name, {main: metrics}, form.params, form.size_mb)
            )
        _time_all(job, deployment, [*pair, *forms], data, max_length)
        deployment.summary["forms"] = [f.name for f in forms]
        if job.prune_vocabulary:
            pruned = next(form for form in forms if form.name == "student-pruned")
            deployment.summary["vocabulary"] = _vocabulary_summary(
                job,
                raw,
                splits,
                main,
                (pruned, logits[pruned.name]),
                reference,
                model,
                tokenizer,
                max_length,
            )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return deployment


def _vocabulary_summary(
    job: DistillationJob,
    raw: datasets.DatasetDict,
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
            job, raw, student, tokenizer, main, max_length, reference
        )
    return summary
