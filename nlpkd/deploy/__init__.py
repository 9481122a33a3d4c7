"""Deployed forms of a student, one module per form: vocabulary pruning (`vocabulary`), PyTorch int8 (`int8`),
ONNX Runtime (`onnx`); `variants` measures them side by side and `forms` builds what a job asks for."""

from .folders import weights_size_mb
from .forms import DEPLOY_FORMS, DeployForm, build_forms, check_deployable, parse_forms
from .int8 import (
    QUANTIZATION_FILE,
    QUANTIZED_WEIGHTS,
    load_quantized,
    quantize_int8,
    save_quantized,
)
from .onnx import (
    ONNX_ATOL,
    ONNX_FAMILIES,
    ONNX_INFO,
    ONNX_INPUTS,
    ONNX_MODEL,
    ONNX_RTOL,
    OnnxClassifier,
    export_onnx,
    load_onnx,
    quantize_onnx,
)
from .variants import DeployedVariant, onnx_variant, predict_batches, time_variants, torch_variant
from .vocabulary import PRUNABLE_FAMILIES, prune_vocabulary

__all__ = [
    "DEPLOY_FORMS",
    "ONNX_ATOL",
    "ONNX_FAMILIES",
    "ONNX_INFO",
    "ONNX_INPUTS",
    "ONNX_MODEL",
    "ONNX_RTOL",
    "PRUNABLE_FAMILIES",
    "QUANTIZATION_FILE",
    "QUANTIZED_WEIGHTS",
    "DeployForm",
    "DeployedVariant",
    "OnnxClassifier",
    "build_forms",
    "check_deployable",
    "export_onnx",
    "load_onnx",
    "load_quantized",
    "onnx_variant",
    "parse_forms",
    "predict_batches",
    "prune_vocabulary",
    "quantize_int8",
    "quantize_onnx",
    "save_quantized",
    "time_variants",
    "torch_variant",
    "weights_size_mb",
]
