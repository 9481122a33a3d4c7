"""The trainer: [`DistillationTrainer`] and what makes it work (model preparation, learned projections, the loss
log, the teacher-output cache, complete checkpoints, teacher placement, token-level terms for causal LMs)."""

from .cache import add_teacher_logits, cached_training_set
from .checkpoints import GracefulStop, last_complete_checkpoint, resolve_resume_checkpoint
from .loss_log import LossLog, NonFiniteLossError, check_finite
from .projections import StudentWithProjections, save_student, with_projections
from .teacher_inputs import plan_teacher_inputs
from .trainer import DistillationTrainer

__all__ = [
    "DistillationTrainer",
    "GracefulStop",
    "LossLog",
    "NonFiniteLossError",
    "StudentWithProjections",
    "add_teacher_logits",
    "cached_training_set",
    "check_finite",
    "last_complete_checkpoint",
    "plan_teacher_inputs",
    "resolve_resume_checkpoint",
    "save_student",
    "with_projections",
]
