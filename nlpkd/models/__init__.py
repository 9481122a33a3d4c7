"""Models: the family table, students built from a teacher, input routing, pair checks, loading, teachers.

```python
from nlpkd.models import create_student

student = create_student(teacher, num_layers=3)  # teacher layers 0, 3, 5 of a 6-layer teacher
```
"""

from .causal import check_causal_pair, check_context_length, context_length, is_causal_lm
from .checks import check_compatible, check_layer_outputs, check_tokenizers_match
from .ensemble import ENSEMBLE_MODES, TeacherEnsemble, check_teachers_agree, ensemble_logits
from .families import (
    SUPPORTED_FAMILIES,
    EncoderFamily,
    attention_probs_dropouts,
    attention_projections,
    check_family,
    get_encoder_layers,
    num_encoder_layers,
)
from .generation import generate_completions
from .importance import WidthScores, width_importance
from .inputs import (
    CACHE_COLUMN,
    forward_input_names,
    route_inputs,
    select_forward_inputs,
    signature_columns,
)
from .layer_map import default_layer_map, resolve_layer_map
from .loading import (
    PACKAGED_MINILM_HUB_ID,
    build_student,
    check_checkpoint,
    copy_missing_weights,
    has_trained_head,
    hub_name,
    is_classifier_checkpoint,
    load_teacher,
    load_tokenizer,
    model_name,
    packaged_minilm_path,
)
from .student import LAYER_STRATEGIES, LayerStrategy, create_student, default_teacher_layers
from .teacher import freeze_teacher, resolve_teacher
from .width import KeptWidth, narrow_model, select_width
from .width_families import WIDTH_FAMILIES

__all__ = [
    "CACHE_COLUMN",
    "ENSEMBLE_MODES",
    "LAYER_STRATEGIES",
    "PACKAGED_MINILM_HUB_ID",
    "SUPPORTED_FAMILIES",
    "WIDTH_FAMILIES",
    "EncoderFamily",
    "KeptWidth",
    "LayerStrategy",
    "TeacherEnsemble",
    "WidthScores",
    "attention_probs_dropouts",
    "attention_projections",
    "build_student",
    "check_causal_pair",
    "check_checkpoint",
    "check_compatible",
    "check_context_length",
    "check_family",
    "check_layer_outputs",
    "check_teachers_agree",
    "check_tokenizers_match",
    "context_length",
    "copy_missing_weights",
    "create_student",
    "default_layer_map",
    "default_teacher_layers",
    "ensemble_logits",
    "forward_input_names",
    "freeze_teacher",
    "generate_completions",
    "get_encoder_layers",
    "has_trained_head",
    "hub_name",
    "is_causal_lm",
    "is_classifier_checkpoint",
    "load_teacher",
    "load_tokenizer",
    "model_name",
    "narrow_model",
    "num_encoder_layers",
    "packaged_minilm_path",
    "resolve_layer_map",
    "resolve_teacher",
    "route_inputs",
    "select_width",
    "select_forward_inputs",
    "signature_columns",
    "width_importance",
]
