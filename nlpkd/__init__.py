"""nlpkd: knowledge distillation for Hugging Face NLP models.

Distil a fine-tuned teacher into a student with fewer layers using the ordinary `transformers.Trainer`:

```python
from nlpkd import DistillationConfig, DistillationTrainer, create_student

student = create_student(teacher, num_layers=3)
trainer = DistillationTrainer(model=student, teacher=teacher, args=DistillationConfig(output_dir="out"),
                              train_dataset=train, processing_class=tokenizer)
trainer.train()
```
"""

__version__ = "0.2.0.dev0"

from .config import DistillationConfig
from .losses import (
    attention_loss,
    hard_label_loss,
    hidden_state_loss,
    logit_distillation_loss,
    pkd_loss,
    relation_loss,
    soft_kl_loss,
)
from .pipeline import DistillationJob, DistillationResult
from .quick import distill, finetune
from .report import Report
from .student import (
    LAYER_STRATEGIES,
    SUPPORTED_FAMILIES,
    create_student,
    default_layer_map,
)
from .trainer import DistillationTrainer, NonFiniteLossError

__all__ = [
    "LAYER_STRATEGIES",
    "SUPPORTED_FAMILIES",
    "DistillationConfig",
    "DistillationJob",
    "DistillationResult",
    "DistillationTrainer",
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
