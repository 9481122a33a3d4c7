"""The recipe search (`--search_trials N`): which temperature, loss weights, learning rate and epochs suit this
teacher, student and task, found with Optuna through `Trainer.hyperparameter_search` before the job's run.

The trials train copies of the job's student on the training data less a held-out part (stratified, seeded by
`split_seed`; never the split the report is measured on) and are scored on that part with the task's main
metric after every epoch, so that a median pruner stops the trials that fall behind the trials of the same length
([`same_schedule_pruner`]). The teacher is
loaded once; when no trial needs its intermediate outputs, its logits are cached once for all trials. The job
then trains the best recipe on the whole training data, and reports the trials ([`RecipeSearch`]).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedModel

from ..config import DistillationConfig
from ..data.unlabeled import with_unlabeled
from ..models.families import SUPPORTED_FAMILIES
from ..report.metrics import make_compute_metrics
from ..trainer.trainer import DistillationTrainer
from .job import DistillationJob
from .tokenizers import JobTokenizers

__all__ = ["SEARCH_SPACE", "RecipeSearch", "same_schedule_pruner", "search_recipe"]

logger = logging.getLogger("nlpkd")

# The space of the search: each setting and the values a trial draws from. `alpha_ce` follows as
# `1 - alpha_kd`; the intermediate terms are searched only where the student and teacher support them.
SEARCH_SPACE: dict[str, tuple[str, tuple[Any, ...]]] = {
    "temperature": ("categorical", (1.0, 2.0, 4.0, 8.0)),
    "alpha_kd": ("float", (0.1, 1.0)),
    "alpha_attn": ("categorical", (0.0, 1.0)),
    "alpha_hidden": ("categorical", (0.0, 1.0)),
    "learning_rate": ("log", (3e-5, 5e-4)),
    "num_train_epochs": ("categorical", (2.0, 4.0, 8.0)),
}
# The part of the labeled training examples the trials are scored on.
HELD_OUT_FRACTION = 0.2


@dataclass
class RecipeSearch:
    """What the recipe search tried and chose.

    Args:
        best (`dict`): the chosen settings, as `DistillationConfig` fields (`alpha_ce` included).
        trials (`list[dict]`): every trial: `number`, `state` (`COMPLETE` or `PRUNED`), `params`, `value` (the
            held-out main metric; the last reported one for a pruned trial) and `seconds`.
        metric (`str`): the held-out metric the trials were scored on, e.g. `"eval_accuracy"`.
        held_out_examples (`int`): how many training examples the trials were scored on.
        seconds (`float`): the search's wall-clock time.
    """

    best: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    metric: str = ""
    held_out_examples: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The layout of `metrics.json`'s `search` entry."""
        return dataclasses.asdict(self)


def _require_optuna() -> Any:
    try:
        import optuna
    except ImportError as err:
        raise ValueError(
            '--search_trials needs Optuna: pip install "nlpkd[search]" (or pip install optuna).'
        ) from err
    return optuna


def same_schedule_pruner(n_startup_trials: int = 2) -> Any:
    """An Optuna pruner that stops a trial whose held-out score after an epoch is below the median of the finished
    trials *with the same number of epochs* at that epoch, once `n_startup_trials` of them have finished.

    Optuna's `MedianPruner` compares every trial with every other at the same step. With the epochs searched too,
    that stops the long schedules early for the wrong reason: after two of eight epochs a trial's learning rate has
    barely started to decay, while a two-epoch trial is finished, so the long trial is behind by construction (on
    the hard pairs benchmark it pruned every 4- and 8-epoch trial, docs/quality.md). Trials without a
    `num_train_epochs` parameter share one group, which is `MedianPruner`'s behaviour.
    """
    import statistics

    optuna = _require_optuna()

    class SameSchedulePruner(optuna.pruners.BasePruner):
        def prune(self, study: Any, trial: Any) -> bool:
            step = trial.last_step
            if step is None:
                return False
            epochs = trial.params.get("num_train_epochs")
            finished = [
                past.intermediate_values[step]
                for past in study.get_trials(
                    deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
                )
                if past.params.get("num_train_epochs") == epochs
                and step in past.intermediate_values
            ]
            if len(finished) < n_startup_trials:
                return False
            score, median = trial.intermediate_values[step], statistics.median(finished)
            maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
            return score < median if maximize else score > median

    return SameSchedulePruner()


def searched_names(student: PreTrainedModel, teacher: Any, args: DistillationConfig) -> list[str]:
    """The settings a search over this pair draws: all of [`SEARCH_SPACE`], but the intermediate terms where the
    pair cannot give them: no attention term without attention maps; no hidden-state term for staged models or
    different widths (its learned projections would not carry over from trial to trial); neither with the
    teacher-logit cache, which holds logits only."""
    names = list(SEARCH_SPACE)
    entry = SUPPORTED_FAMILIES.get(getattr(student.config, "model_type", None))
    primary = getattr(teacher, "primary", teacher)
    widths = {getattr(m.config, "hidden_size", None) for m in (student, primary)}
    if entry is None or entry.attention_dropout_path is None or args.teacher_cache:
        names.remove("alpha_attn")
    if entry is None or entry.blocks_path is not None or args.teacher_cache or len(widths) > 1:
        names.remove("alpha_hidden")
    return names


def _space(names: list[str]) -> Callable[[Any], dict[str, Any]]:
    def draw(trial: Any) -> dict[str, Any]:
        params = {}
        for name in names:
            kind, values = SEARCH_SPACE[name]
            if kind == "categorical":
                params[name] = trial.suggest_categorical(name, list(values))
            else:
                params[name] = trial.suggest_float(name, *values, log=kind == "log")
        if "alpha_kd" in params:
            params["alpha_ce"] = 1.0 - params["alpha_kd"]
        return params

    return draw


def _held_out(train: datasets.Dataset, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The labeled training rows split into the trials' training and held-out parts (stratified when the
    labels are classes)."""
    stratify = "label" if isinstance(train.features.get("label"), datasets.ClassLabel) else None
    try:
        parts = train.train_test_split(
            test_size=HELD_OUT_FRACTION, seed=seed, stratify_by_column=stratify
        )
    except ValueError:  # a class too small to stratify
        parts = train.train_test_split(test_size=HELD_OUT_FRACTION, seed=seed)
    return parts["train"], parts["test"]


def _search_args(job: DistillationJob, names: list[str]) -> DistillationConfig:
    # Every trial is scored after each epoch (for the pruner) and keeps nothing on disk; the trainer is prepared
    # for the largest intermediate weights the space holds (eager attention, the layer map).
    largest = {
        name: max(SEARCH_SPACE[name][1]) for name in ("alpha_attn", "alpha_hidden") if name in names
    }
    return dataclasses.replace(
        job.args,
        output_dir=str(Path(job.args.output_dir) / "search"),
        eval_strategy="epoch",
        save_strategy="no",
        load_best_model_at_end=False,
        push_to_hub=False,
        hub_token=None,
        report_to="none",
        disable_tqdm=True,
        **largest,
    )


def _trials_table(study: Any) -> list[dict[str, Any]]:
    rows = []
    for trial in study.trials:
        value = trial.value
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        seconds = None
        if trial.datetime_start and trial.datetime_complete:
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "params": dict(trial.params),
                "value": value,
                "seconds": seconds,
            }
        )
    return rows


def search_recipe(
    job: DistillationJob,
    teacher: Any,
    student: PreTrainedModel,
    train: datasets.Dataset,
    extra: datasets.Dataset | None,
    tokenizers: JobTokenizers,
) -> RecipeSearch:
    """Run the recipe search of a job: `job.search_trials` trials, seeded by the training `seed` (the same seed
    makes the same choice), each distilling a copy of `student` from `teacher`.

    Args:
        job ([`DistillationJob`]): the job (its settings are the starting point; `search_trials`, `seed`,
            `split_seed`, the task and `compute_metrics` are read).
        teacher: the job's teacher (a model or an ensemble), loaded once for all trials.
        student ([`~transformers.PreTrainedModel`]): the job's student; every trial starts from a copy of it.
        train (`datasets.Dataset`): the tokenized labeled training rows.
        extra (`datasets.Dataset`, *optional*): rows only the teacher supervises (unlabeled, augmented); every
            trial trains on them too.
        tokenizers ([`~nlpkd.jobs.tokenizers.JobTokenizers`]): the job's tokenizers (the teacher's own, when it
            reads another tokenization).

    Returns:
        [`RecipeSearch`]: the best settings and every trial.
    """
    optuna = _require_optuna()
    names = searched_names(student, teacher, job.args)
    fit, held_out = _held_out(train, job.split_seed)
    fit = fit if extra is None else with_unlabeled(fit, extra)
    metric = f"eval_{job.task.main_metric}" if job.compute_metrics is None else None
    compute_metrics = job.compute_metrics or make_compute_metrics(job.task)

    def objective(metrics: Mapping[str, float]) -> float:
        key = metric or next(k for k in metrics if k.startswith("eval_") and k != "eval_loss")
        return float(metrics[key])

    # The trainer prepares this copy for the terms (eager attention, ...); every trial trains a copy of it.
    template = copy.deepcopy(student)
    trainer = DistillationTrainer(
        model=template,
        teacher=teacher,
        args=_search_args(job, names),
        train_dataset=fit,
        eval_dataset=held_out,
        processing_class=tokenizers.student,
        teacher_processing_class=tokenizers.teacher_argument(),
        data_collator=tokenizers.collator(),
        compute_metrics=compute_metrics,
    )
    # Trainer.hyperparameter_search builds each trial's model with model_init (a public attribute).
    trainer.model_init = lambda: copy.deepcopy(template)
    storage = optuna.storages.InMemoryStorage()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logger.info(
        "searching the recipe: %d trials, %d held-out examples ...",
        job.search_trials,
        len(held_out),
    )
    start = time.perf_counter()
    best = trainer.hyperparameter_search(
        hp_space=_space(names),
        compute_objective=objective,
        n_trials=job.search_trials,
        direction="maximize",
        backend="optuna",
        study_name="nlpkd-recipe",
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=job.args.seed),
        pruner=same_schedule_pruner(n_startup_trials=2),
    )
    study = optuna.load_study(study_name="nlpkd-recipe", storage=storage)
    chosen = _space(names)(optuna.trial.FixedTrial(best.hyperparameters))
    return RecipeSearch(
        best=chosen,
        trials=_trials_table(study),
        metric=metric or "the first metric of compute_metrics",
        held_out_examples=len(held_out),
        seconds=time.perf_counter() - start,
    )
