"""PyTorch dynamic int8: quantize a model's linear layers (and embeddings), save the quantized weights as
safetensors and load them back.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoConfig, PreTrainedModel

from .folders import write_atomically

__all__ = [
    "QUANTIZATION_FILE",
    "QUANTIZED_WEIGHTS",
    "load_quantized",
    "quantize_int8",
    "save_quantized",
]

QUANTIZED_WEIGHTS = "model.int8.safetensors"


QUANTIZATION_FILE = "quantization.json"


@contextmanager
def _quiet_quantization() -> Iterator[None]:
    # torch 2.10+ flags torch.ao.quantization as deprecated in favour of torchao on every call; it
    # still works through 2.13 and stays the fastest int8 path on CPU (fbgemm/onednn kernels).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*")
        yield


def _torch_quantization() -> Any:
    try:
        from torch.ao import quantization
    except ImportError as error:  # pragma: no cover - depends on the installed torch
        raise ImportError(
            "int8 quantization needs torch.ao.quantization, missing from torch "
            f"{torch.__version__}; use the ONNX path (export_onnx(..., int8=True), "
            'pip install "nlpkd[export]").'
        ) from error
    if not hasattr(quantization, "quantize_dynamic"):  # pragma: no cover
        raise ImportError(
            f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic; use the "
            'ONNX path (export_onnx(..., int8=True), pip install "nlpkd[export]").'
        )
    return quantization


def _quantized_kinds() -> tuple[type, type]:
    from torch.ao.nn.quantized import Embedding as QuantizedEmbedding
    from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

    return QuantizedLinear, QuantizedEmbedding


def is_int8_model(model: nn.Module) -> bool:
    kinds = _quantized_kinds()
    return any(isinstance(module, kinds) for module in model.modules())


def _word_embeddings_name(model: nn.Module) -> str | None:
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    for name, module in model.named_modules():
        if module is embeddings and isinstance(module, nn.Embedding):
            return name
    return None


def _contiguous_indices(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    # The int8 embedding kernel refuses strided indices (e.g. a slice of a longer batch).
    return (args[0].contiguous(), *args[1:])


def _quantize_in_place(quantization: Any, model: nn.Module, embedding: str | None) -> None:
    """Linear layers to dynamic int8, and the named word embeddings to weight-only uint8."""
    spec: dict[type | str, Any] = {nn.Linear: quantization.per_channel_dynamic_qconfig}
    # Only the word embeddings: they hold the bytes, while the position and token-type tables
    # are small and some models read their `.weight` directly (DeBERTa's relative positions).
    if embedding is not None:
        spec[embedding] = quantization.float_qparams_weight_only_qconfig
    with _quiet_quantization():
        quantization.quantize_dynamic(model, spec, inplace=True)
    if embedding is not None:
        model.get_submodule(embedding).register_forward_pre_hook(_contiguous_indices)


def quantize_int8(model: PreTrainedModel, *, embeddings: bool = True) -> PreTrainedModel:
    """
    Dynamic int8 quantization of a model for CPU inference, with PyTorch.

    Every `nn.Linear` gets int8 weights, quantized per output channel, and int8 activations
    quantized on the fly per batch (`torch.ao.quantization.quantize_dynamic`, fbgemm/onednn
    kernels). With `embeddings=True` the word embeddings (`model.get_input_embeddings()`) also
    store their rows as uint8 with a float scale and offset per row (weight-only: the looked-up
    rows are floats again), which makes most of a small encoder's bytes four times smaller at no
    cost in time. Position and token-type tables stay float.

    Args:
        model (`PreTrainedModel`):
            A float model on the CPU. It is copied, not changed.
        embeddings (`bool`, *optional*, defaults to `True`):
            Also quantize the word embeddings.

    Returns:
        `PreTrainedModel`: the quantized copy, in eval mode and CPU-only. Save it with
        [`save_quantized`] (not `save_pretrained`, which cannot store quantized layers).

    Raises:
        `ValueError`: if the model is not on the CPU, is already quantized, or has no `nn.Linear`.
        `ImportError`: if this torch lacks `torch.ao.quantization.quantize_dynamic`.
    """
    quantization = _torch_quantization()
    if not isinstance(model, nn.Module):
        raise ValueError(f"quantize_int8 needs a torch model, got {type(model).__name__}.")
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        raise ValueError(
            f"Dynamic int8 quantization runs on the CPU only; the model is on {sorted(devices)}. "
            "Call model.cpu() first."
        )
    if is_int8_model(model):
        raise ValueError("The model is already quantized; pass the float model to quantize_int8.")
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer, so dynamic int8 quantization would "
            "change nothing (GPT-2-style Conv1D layers are not supported); deploy it in float."
        )
    quantized = copy.deepcopy(model).eval()
    _quantize_in_place(
        quantization, quantized, _word_embeddings_name(model) if embeddings else None
    )
    return quantized


def _quantized_tensors(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, list[str]]]:
    """Every quantized weight as plain tensors (integers, scales, zero points), and the names."""
    linear_kind, embedding_kind = _quantized_kinds()
    tensors: dict[str, Tensor] = {}
    names: dict[str, list[str]] = {"linear": [], "embedding": []}
    for name, module in model.named_modules():
        if isinstance(module, linear_kind):
            weight, bias = module.weight(), module.bias()
            names["linear"].append(name)
            if bias is not None:
                tensors[f"{name}.bias"] = bias.detach().contiguous()
        elif isinstance(module, embedding_kind):
            weight = module.weight()
            names["embedding"].append(name)
        else:
            continue
        if weight.qscheme() not in (
            torch.per_channel_affine,
            torch.per_channel_affine_float_qparams,
        ):
            raise ValueError(f"Unexpected quantization scheme {weight.qscheme()} in {name}.")
        tensors[f"{name}.weight.int"] = weight.int_repr().contiguous()
        tensors[f"{name}.weight.scales"] = weight.q_per_channel_scales().contiguous()
        tensors[f"{name}.weight.zero_points"] = weight.q_per_channel_zero_points().contiguous()
        tensors[f"{name}.weight.axis"] = torch.tensor(weight.q_per_channel_axis())
    return tensors, names


def save_quantized(
    model: PreTrainedModel,
    output_dir: str | os.PathLike[str],
    tokenizer: Any | None = None,
) -> Path:
    """
    Save a model from [`quantize_int8`] so that [`load_quantized`] rebuilds it exactly.

    The folder gets `config.json`, the tokenizer's files when one is given, `quantization.json`
    (which layers are int8, and how) and `model.int8.safetensors`: the integer weights with their
    per-channel scales and zero points, and every float tensor left. Nothing is pickled. Files are
    written to a temporary folder first, so a failed save leaves nothing behind.

    Args:
        model (`PreTrainedModel`): the quantized model.
        output_dir (`str` or `os.PathLike`): a new or empty folder.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): saved alongside.

    Returns:
        `Path`: the folder.
    """
    from safetensors.torch import save_file

    if not is_int8_model(model):
        raise ValueError("save_quantized needs a model from quantize_int8; use save_pretrained.")
    if not getattr(model.config, "architectures", None):
        model.config.architectures = [type(model).__name__]
    quantized, names = _quantized_tensors(model)
    skip = tuple(f"{name}." for group in names.values() for name in group)
    floats = {
        key: value.detach().clone().contiguous()
        for key, value in model.state_dict().items()
        if isinstance(value, Tensor) and not value.is_quantized and not key.startswith(skip)
    }
    overlap = set(floats) & set(quantized)
    if overlap:  # pragma: no cover - names of quantized tensors carry suffixes floats never have
        raise ValueError(f"Tensor names clash between float and int8 weights: {sorted(overlap)}.")
    info = {
        "format": "nlpkd-int8-dynamic",
        "version": 1,
        "architecture": type(model).__name__,
        "linear": names["linear"],
        "embedding": names["embedding"],
        "torch": torch.__version__,
    }

    def write(folder: Path) -> None:
        model.config.save_pretrained(folder)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        save_file({**floats, **quantized}, str(folder / QUANTIZED_WEIGHTS))
        (folder / QUANTIZATION_FILE).write_text(json.dumps(info, indent=2) + "\n")

    return write_atomically(output_dir, write)


def load_quantized(folder: str | os.PathLike[str]) -> PreTrainedModel:
    """
    Load a model saved by [`save_quantized`], ready for CPU inference.

    The architecture named in `quantization.json` is built from `config.json`, quantized the same
    way, and given the saved integer weights, scales, zero points and float tensors.

    Args:
        folder (`str` or `os.PathLike`): the folder written by [`save_quantized`].

    Returns:
        `PreTrainedModel`: the quantized model in eval mode. Its tokenizer, if saved, loads with
        `AutoTokenizer.from_pretrained(folder)`.

    Raises:
        `ValueError`: if the folder lacks the files of a quantized model or they do not fit the
            architecture.
    """
    import transformers
    from safetensors.torch import load_file

    quantization = _torch_quantization()
    path = Path(folder)
    info_file = path / QUANTIZATION_FILE
    if not info_file.is_file() or not (path / QUANTIZED_WEIGHTS).is_file():
        raise ValueError(
            f"{path} holds no int8 model from save_quantized ({QUANTIZATION_FILE} and "
            f"{QUANTIZED_WEIGHTS}); a float model loads with from_pretrained."
        )
    info = json.loads(info_file.read_text())
    if info.get("format") != "nlpkd-int8-dynamic":
        raise ValueError(f"{info_file} is not an nlpkd int8 description: {info.get('format')!r}.")
    architecture = getattr(transformers, info["architecture"], None)
    if architecture is None:
        raise ValueError(
            f"transformers {transformers.__version__} has no class {info['architecture']!r}, "
            f"which {path} was saved from."
        )
    config = AutoConfig.from_pretrained(path)
    model = architecture(config).eval()
    if len(info["embedding"]) > 1:
        raise ValueError(f"{info_file} names more than one int8 embedding: {info['embedding']}.")
    _quantize_in_place(quantization, model, info["embedding"][0] if info["embedding"] else None)
    with _quiet_quantization():
        tensors = load_file(str(path / QUANTIZED_WEIGHTS))
        modules = dict(model.named_modules())
        linear_kind, embedding_kind = _quantized_kinds()
        for kind, names in (("linear", info["linear"]), ("embedding", info["embedding"])):
            for name in names:
                module = modules.get(name)
                expected = linear_kind if kind == "linear" else embedding_kind
                if not isinstance(module, expected):
                    raise ValueError(f"{path}: {name} is not an int8 {kind} of {type(model)}.")
                weight = _per_channel_int8(
                    tensors.pop(f"{name}.weight.int"),
                    tensors.pop(f"{name}.weight.scales"),
                    tensors.pop(f"{name}.weight.zero_points"),
                    int(tensors.pop(f"{name}.weight.axis")),
                )
                if kind == "linear":
                    module.set_weight_bias(weight, tensors.pop(f"{name}.bias", None))
                else:
                    module.set_weight(weight)
    # load_state_dict would also visit the int8 layers, which want their own packed format.
    skip = tuple(f"{name}." for name in [*info["linear"], *info["embedding"]])
    expected = {
        key
        for key, value in model.state_dict().items()
        if isinstance(value, Tensor) and not value.is_quantized and not key.startswith(skip)
    }
    if set(tensors) != expected:
        raise ValueError(
            f"{path} does not fit {info['architecture']}: missing "
            f"{sorted(expected - set(tensors))[:5]}, "
            f"unexpected {sorted(set(tensors) - expected)[:5]}."
        )
    targets = {
        **dict(model.named_buffers(remove_duplicate=False)),
        **dict(model.named_parameters(remove_duplicate=False)),
    }
    with torch.no_grad():
        for key, value in tensors.items():
            targets[key].copy_(value)
    return model


# The quantized dtype of each integer representation `int_repr()` gives.
_QUANTIZED_DTYPES = {torch.int8: torch.qint8, torch.uint8: torch.quint8}


def _per_channel_int8(values: Tensor, scales: Tensor, zero_points: Tensor, axis: int) -> Tensor:
    """The per-channel quantized tensor whose integers are `values`, built with the public
    `torch.quantize_per_channel`: `(values - zero_point) * scale` quantizes back to exactly `values`, since its
    rounding error stays far below half a step for 8-bit integers (a test checks every int8 layer)."""
    shape = [1] * values.dim()
    shape[axis] = -1
    offsets = values.to(torch.float64) - zero_points.to(torch.float64).reshape(shape)
    dequantized = (offsets * scales.to(torch.float64).reshape(shape)).to(torch.float32)
    dtype = _QUANTIZED_DTYPES[values.dtype]
    return torch.quantize_per_channel(dequantized, scales, zero_points, axis, dtype)
