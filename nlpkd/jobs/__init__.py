"""Jobs: the task job of `nlpkd distill` and `nlpkd.distill` (its options, definition, run, result and deploy
step), general (task-agnostic) distillation, and continual learning."""

from .continual import evaluate_tasks, grow_classifier, learn_without_forgetting, task_columns
from .deploy_step import DEPLOY_DIR, Deployment
from .general import GeneralResult, general_distill
from .job import DistillationJob
from .options import TRAINING_DEFAULTS, JobOptions, job_default, option_names, training_defaults
from .result import DistillationResult
from .steps import run, run_finetune, sampled_data
from .teacher import finetune_teacher
from .tokenizers import JobTokenizers, job_tokenizers

__all__ = [
    "DEPLOY_DIR",
    "TRAINING_DEFAULTS",
    "Deployment",
    "DistillationJob",
    "DistillationResult",
    "GeneralResult",
    "JobOptions",
    "JobTokenizers",
    "evaluate_tasks",
    "finetune_teacher",
    "general_distill",
    "grow_classifier",
    "job_default",
    "job_tokenizers",
    "learn_without_forgetting",
    "option_names",
    "run",
    "run_finetune",
    "sampled_data",
    "task_columns",
    "training_defaults",
]
