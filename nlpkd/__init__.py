"""nlpkd: knowledge distillation for Hugging Face NLP models.

Distil a fine-tuned teacher into a smaller student using the ordinary `transformers.Trainer`:

```python
from nlpkd import DistillationConfig, DistillationTrainer, create_student

student = create_student(teacher, num_layers=3)
trainer = DistillationTrainer(model=student, teacher=teacher, args=DistillationConfig(output_dir="out"),
                              train_dataset=train, processing_class=tokenizer)
trainer.train()
```

The package has one folder per concern (docs/architecture.md): `losses/`, `models/`, `trainer/`, `data/`,
`deploy/`, `report/` and `jobs/`, with the front ends `cli.py` and `api.py` on top.
"""

__version__ = "0.3.0.dev0"

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

from .api import distill, finetune
from .config import DistillationConfig
from .jobs import DistillationJob, DistillationResult, JobOptions
from .losses import (
    attention_loss,
    hard_label_loss,
    hidden_state_loss,
    logit_distillation_loss,
    pkd_loss,
    relation_loss,
    soft_kl_loss,
)
from .models import LAYER_STRATEGIES, SUPPORTED_FAMILIES, create_student, default_layer_map
from .report import Report
from .trainer import DistillationTrainer, NonFiniteLossError

__all__ = [
    "LAYER_STRATEGIES",
    "SUPPORTED_FAMILIES",
    "DistillationConfig",
    "DistillationJob",
    "DistillationResult",
    "DistillationTrainer",
    "JobOptions",
    "NonFiniteLossError",
    "Report",
    "__version__",
    "attention_loss",
    "create_student",
    "default_layer_map",
    "distill",
    "finetune",
    "hard_label_loss",
    "hidden_state_loss",
    "logit_distillation_loss",
    "pkd_loss",
    "relation_loss",
    "soft_kl_loss",
]

# ---- the module paths of nlpkd 0.2, kept for one release ----------------------------------------------------
# Old path -> the modules that now hold its names, searched in order. Importing an old path warns once.
MOVED_MODULES: dict[str, tuple[str, ...]] = {
    "nlpkd.cache": ("nlpkd.trainer.cache", "nlpkd.data.fingerprint", "nlpkd.models.inputs"),
    "nlpkd.card": ("nlpkd.report.card",),
    "nlpkd.causal": (
        "nlpkd.models.causal",
        "nlpkd.data.completions",
        "nlpkd.models.generation",
        "nlpkd.trainer.token_level",
        "nlpkd.report.evaluate",
    ),
    "nlpkd.checkpoints": ("nlpkd.trainer.checkpoints",),
    "nlpkd.continual": ("nlpkd.jobs.continual",),
    "nlpkd.data.unlabelled": ("nlpkd.data.unlabeled",),
    "nlpkd.deploy_step": ("nlpkd.jobs.deploy_step",),
    "nlpkd.ensemble": ("nlpkd.models.ensemble",),
    "nlpkd.evaluation": ("nlpkd.report.evaluate", "nlpkd.report.measure"),
    "nlpkd.general": ("nlpkd.jobs.general",),
    "nlpkd.loss_log": ("nlpkd.trainer.loss_log",),
    "nlpkd.metrics": ("nlpkd.report.metrics",),
    "nlpkd.objectives": (
        "nlpkd.losses.terms",
        "nlpkd.trainer.preparation",
        "nlpkd.trainer.hooks",
        "nlpkd.models.inputs",
    ),
    "nlpkd.pipeline": ("nlpkd.jobs", "nlpkd.jobs.steps", "nlpkd.jobs.teacher"),
    "nlpkd.plot": ("nlpkd.report.plot",),
    "nlpkd.projections": ("nlpkd.trainer.projections",),
    "nlpkd.quick": ("nlpkd.api", "nlpkd.jobs"),
    "nlpkd.student": (
        "nlpkd.models.student",
        "nlpkd.models.families",
        "nlpkd.models.layer_map",
        "nlpkd.models.inputs",
        "nlpkd.models.checks",
    ),
    "nlpkd.teacher": ("nlpkd.models.teacher", "nlpkd.trainer.placement"),
}
# Names that changed with the one spelling "unlabeled" (the old module path keeps the old names).
RENAMED = {
    "UNLABELLED": "UNLABELED",
    "load_unlabelled": "load_unlabeled",
    "with_unlabelled": "with_unlabeled",
}


class _MovedModule(types.ModuleType):
    """An old module path: its names are looked up in the modules that hold them now."""

    def __init__(self, name: str, targets: tuple[str, ...]) -> None:
        super().__init__(name, f"Moved: see {', '.join(targets)}.")
        self.__targets = targets

    def __getattr__(self, name: str):
        for target in self.__targets:
            module = importlib.import_module(target)
            for candidate in (name, RENAMED.get(name)):
                if candidate is not None and hasattr(module, candidate):
                    return getattr(module, candidate)
        raise AttributeError(
            f"module {self.__name__!r} (moved to {self.__targets[0]}) has no {name!r}"
        )

    def __dir__(self) -> list[str]:
        return sorted({n for t in self.__targets for n in dir(importlib.import_module(t))})


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path as a [`_MovedModule`], with a `FutureWarning` that names the new path."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        targets = MOVED_MODULES[spec.name]
        warnings.warn(
            f"{spec.name} moved to {targets[0]} (nlpkd 0.3: one folder per concern); the old path will be "
            "removed in nlpkd 0.4.",
            FutureWarning,
            stacklevel=2,
        )
        return _MovedModule(spec.name, targets)

    def exec_module(self, module) -> None:
        pass


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())
