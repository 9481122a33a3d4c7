"""ONNX: export a classifier's logits, quantize the graph to int8 with ONNX Runtime, and run it."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoConfig, PreTrainedModel

from ..models.inputs import forward_input_names
from .folders import write_atomically
from .int8 import is_int8_model

__all__ = [
    "ONNX_ATOL",
    "ONNX_FAMILIES",
    "ONNX_INFO",
    "ONNX_INPUTS",
    "ONNX_MODEL",
    "ONNX_RTOL",
    "OnnxClassifier",
    "export_onnx",
    "load_onnx",
    "quantize_onnx",
]

# Encoder families (those of nlpkd.models) whose classifiers were exported with torch.onnx
# (dynamo) and matched PyTorch with transformers 5.24 and torch 2.13.
ONNX_FAMILIES: tuple[str, ...] = (
    "bert",
    "deberta-v2",
    "distilbert",
    "electra",
    "mpnet",
    "roberta",
    "xlm-roberta",
)


EXPORT_EXTRA_HINT = 'install the export extra: pip install "nlpkd[export]"'


ONNX_MODEL = "model.onnx"


ONNX_INFO = "onnx.json"


# Inputs a tokenizer may give a sequence classifier, in the order the ONNX graph takes them.
ONNX_INPUTS: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")


# float32 ONNX Runtime against PyTorch: same maths, different kernels (blocking of the matrix
# products, fused softmax and layer norm), so only rounding differs. float32 rounds at 6e-8
# relative; a dot product of a few hundred to 1,536 terms carries about sqrt(n) of that, and a
# 12-layer encoder adds it up a few dozen times, which stays below 1e-5 on logits of size ~10. A
# wrong graph (a missing mask, a swapped input) moves logits by 0.1 or more.
ONNX_ATOL = 1e-4


ONNX_RTOL = 1e-4


def require_export_extra() -> tuple[Any, Any]:
    """onnx and onnxruntime, or one ImportError line saying which extra installs them."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as error:
        raise ImportError(
            f"ONNX export needs onnx, onnxscript and onnxruntime ({error.name} is missing); "
            f"{EXPORT_EXTRA_HINT}."
        ) from error
    return onnx, onnxruntime


class _LogitsOnly(nn.Module):
    """Token ids in, logits out: the graph ONNX Runtime runs."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        inputs = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.model(
            input_ids=input_ids, **{k: v for k, v in inputs.items() if v is not None}
        ).logits


def _onnx_inputs(model: PreTrainedModel, tokenizer: Any | None) -> list[str]:
    accepted = forward_input_names(model) or set(ONNX_INPUTS)
    given = set(getattr(tokenizer, "model_input_names", ONNX_INPUTS)) if tokenizer else None
    return [n for n in ONNX_INPUTS if n in accepted and (given is None or n in given)]


def _sample_inputs(model: PreTrainedModel, names: Sequence[str]) -> dict[str, Tensor]:
    """A 2 x 16 batch with padding in the second row: every input shape and the mask matter."""
    generator = torch.Generator().manual_seed(0)
    high = max(2, min(int(model.config.vocab_size), 1000))
    ids = torch.randint(1, high, (2, 16), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    values = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids),
    }
    return {name: values[name] for name in names}


def _check_exportable(model: Any) -> None:
    if not isinstance(model, PreTrainedModel):
        raise ValueError(f"export_onnx needs a transformers model, got {type(model).__name__}.")
    family = getattr(model.config, "model_type", None)
    if family not in ONNX_FAMILIES:
        raise ValueError(
            f"export_onnx supports the encoder families {', '.join(ONNX_FAMILIES)}; "
            f"{type(model).__name__} is {family!r}. Deploy it with quantize_int8 instead."
        )
    if is_int8_model(model):
        raise ValueError(
            "export_onnx needs the float model; a PyTorch int8 model cannot be exported. Pass the "
            "float model with int8=True to get ONNX Runtime's int8 form."
        )


def export_onnx(
    model: PreTrainedModel,
    output_dir: str | os.PathLike[str],
    tokenizer: Any | None = None,
    *,
    int8: bool = False,
    opset_version: int | None = None,
) -> Path:
    """
    Export a sequence classifier to ONNX for ONNX Runtime, as float32 or int8.

    The model goes through `torch.onnx.export(dynamo=True)` with a dynamic batch size and
    sequence length; the graph takes `input_ids`, `attention_mask` (and `token_type_ids` when the
    model and tokenizer use them) as int64 and returns `logits`. Before anything is kept, the
    float graph runs in ONNX Runtime on a padded sample batch and must match PyTorch within
    `atol=1e-4, rtol=1e-4` (rounding only; see `ONNX_ATOL`). With `int8=True` the float graph is
    then quantized by ONNX Runtime's `quantize_dynamic` (int8 weights for matrix products and
    embedding lookups, activations quantized per batch). Everything is written to a temporary
    folder and moved into `output_dir` at the end, so a failed export leaves nothing there.

    Args:
        model (`PreTrainedModel`):
            A float model of a family in [`ONNX_FAMILIES`]; prune it first if wanted.
        output_dir (`str` or `os.PathLike`):
            A new or empty folder; it gets `model.onnx`, `onnx.json` (inputs, outputs, int8),
            `config.json` and the tokenizer's files.
        tokenizer (`PreTrainedTokenizerBase`, *optional*):
            Saved alongside; its `model_input_names` decide whether `token_type_ids` is an input.
        int8 (`bool`, *optional*, defaults to `False`):
            Quantize the graph to int8 with ONNX Runtime.
        opset_version (`int`, *optional*):
            ONNX opset; defaults to the exporter's.

    Returns:
        `Path`: the folder. Load it with [`load_onnx`].

    Raises:
        `ImportError`: without the `export` extra (onnx, onnxscript, onnxruntime).
        `ValueError`: for a family outside [`ONNX_FAMILIES`], a PyTorch-quantized model, a
            non-empty `output_dir`, or an export that fails or does not match PyTorch.
    """
    onnx, onnxruntime = require_export_extra()
    _check_exportable(model)
    names = _onnx_inputs(model, tokenizer)
    float_model = copy.deepcopy(model).float().cpu().eval()
    wrapper = _LogitsOnly(float_model)
    sample = _sample_inputs(float_model, names)
    batch = torch.export.Dim("batch", min=1)
    sequence = torch.export.Dim("sequence", min=1)
    dynamic = {name: {0: batch, 1: sequence} for name in names}

    def write(folder: Path) -> None:
        graph = folder / ("model.fp32.onnx" if int8 else ONNX_MODEL)
        try:
            with warnings.catch_warnings(), _quiet_onnx_logs():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    wrapper,
                    (),
                    str(graph),
                    kwargs=sample,
                    input_names=list(names),
                    output_names=["logits"],
                    dynamic_shapes=dynamic,
                    opset_version=opset_version,
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                )
        except Exception as error:
            cause = error.__cause__ or error
            first = (str(cause).strip().splitlines() or [""])[0]
            raise ValueError(
                f"torch.onnx.export could not export {type(model).__name__}: "
                f"{type(cause).__name__}: {first}"
            ) from error
        onnx.checker.check_model(str(graph))
        with torch.inference_mode():
            expected = wrapper(**sample)
        got = _run_session(onnxruntime, graph, sample)
        if not torch.allclose(got, expected, atol=ONNX_ATOL, rtol=ONNX_RTOL):
            difference = float((got - expected).abs().max())
            raise ValueError(
                f"The ONNX graph of {type(model).__name__} differs from PyTorch by "
                f"{difference:.2e} (allowed {ONNX_ATOL} + {ONNX_RTOL} x |logit|); not saved."
            )
        if int8:
            _quantize_graph(graph, folder / ONNX_MODEL)
            graph.unlink()
        float_model.config.save_pretrained(folder)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        info = {
            "inputs": list(names),
            "outputs": ["logits"],
            "int8": int8,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
        }
        (folder / ONNX_INFO).write_text(json.dumps(info, indent=2) + "\n")

    return write_atomically(output_dir, write)


def _quantize_graph(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel int8 weights keep one scale per output feature, as quantize_int8 does; Gather
    # covers the embedding tables, which are most of a small encoder's bytes.
    with _quiet_onnx_logs():
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm", "Gather"],
        )


def quantize_onnx(folder: str | os.PathLike[str], output_dir: str | os.PathLike[str]) -> Path:
    """
    The int8 form of a float32 export from [`export_onnx`], made by ONNX Runtime.

    Same as `export_onnx(..., int8=True)` without exporting again: ONNX Runtime's
    `quantize_dynamic` gives the matrix products and embedding lookups int8 weights (per output
    channel) and quantizes activations per batch. The other files are copied.

    Args:
        folder (`str` or `os.PathLike`): a float32 export folder.
        output_dir (`str` or `os.PathLike`): a new or empty folder.

    Returns:
        `Path`: the int8 folder, for [`load_onnx`].

    Raises:
        `ImportError`: without the `export` extra.
        `ValueError`: if `folder` holds no float32 export or `output_dir` is not empty.
    """
    require_export_extra()
    source = Path(folder)
    info_file = source / ONNX_INFO
    if not (source / ONNX_MODEL).is_file() or not info_file.is_file():
        raise ValueError(
            f"{source} holds no ONNX export ({ONNX_MODEL}, {ONNX_INFO}); run export_onnx."
        )
    info = json.loads(info_file.read_text())
    if info.get("int8"):
        raise ValueError(f"{source} is already int8; pass the float32 export.")

    def write(target: Path) -> None:
        for item in source.iterdir():
            if item.is_file() and item.name not in (ONNX_MODEL, ONNX_INFO):
                shutil.copy2(item, target / item.name)
        _quantize_graph(source / ONNX_MODEL, target / ONNX_MODEL)
        (target / ONNX_INFO).write_text(json.dumps({**info, "int8": True}, indent=2) + "\n")

    return write_atomically(output_dir, write)


@contextmanager
def _quiet_onnx_logs() -> Iterator[None]:
    """Silence the exporter's and quantizer's advice, which is not about the user's model."""

    class _DropAdvice(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            # onnxruntime's quantizer logs this to the root logger on every call.
            return "pre-processing before quantization" not in record.getMessage()

    # A private logger name of torch's exporter (no public switch quiets its registration warnings);
    # tests/test_internals.py fails when torch renames the module.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    advice = _DropAdvice()
    registration.setLevel(logging.ERROR)
    logging.getLogger().addFilter(advice)
    try:
        yield
    finally:
        registration.setLevel(level)
        logging.getLogger().removeFilter(advice)


def _session_options(onnxruntime: Any, threads: int | None) -> Any:
    options = onnxruntime.SessionOptions()
    # Same thread count as PyTorch by default, so latency comparisons are like for like.
    options.intra_op_num_threads = threads if threads is not None else torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle worker threads would otherwise spin for a while after each run, taking the cores from
    # whatever runs next (a PyTorch model timed in turn, other work of the server).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _run_session(onnxruntime: Any, graph: Path, inputs: Mapping[str, Tensor]) -> Tensor:
    session = onnxruntime.InferenceSession(
        str(graph), _session_options(onnxruntime, None), providers=["CPUExecutionProvider"]
    )
    feed = {name: value.cpu().numpy() for name, value in inputs.items()}
    return torch.from_numpy(session.run(None, feed)[0])


class OnnxClassifier:
    """
    An ONNX Runtime session behind the call of a transformers classifier: `batch -> logits`.

    Args:
        session (`onnxruntime.InferenceSession`): the session.
        input_names (`Sequence[str]`): the graph's inputs, in order.
        config (`PretrainedConfig`, *optional*): the model's configuration (labels).
    """

    def __init__(self, session: Any, input_names: Sequence[str], config: Any | None = None):
        self.session = session
        self.input_names = tuple(input_names)
        self.config = config

    def __call__(self, batch: Mapping[str, Any]) -> Tensor:
        """Logits for a batch of token ids (torch tensors or numpy arrays), as a torch tensor."""
        feed = {}
        for name in self.input_names:
            value = batch.get(name)
            if value is None:
                if name != "token_type_ids":
                    raise ValueError(f"The batch lacks {name!r}, an input of this ONNX model.")
                value = torch.zeros_like(torch.as_tensor(batch["input_ids"]))
            value = value.cpu().numpy() if isinstance(value, Tensor) else value
            feed[name] = value.astype("int64", copy=False)
        return torch.from_numpy(self.session.run(["logits"], feed)[0])


def load_onnx(folder: str | os.PathLike[str], *, threads: int | None = None) -> OnnxClassifier:
    """
    Open a folder written by [`export_onnx`] with ONNX Runtime on the CPU.

    Args:
        folder (`str` or `os.PathLike`): the export folder.
        threads (`int`, *optional*): intra-op threads; defaults to `torch.get_num_threads()`.

    Returns:
        [`OnnxClassifier`]: call it on a tokenized batch to get logits.

    Raises:
        `ImportError`: without the `export` extra.
        `ValueError`: if the folder holds no export.
    """
    _, onnxruntime = require_export_extra()
    path = Path(folder)
    if not (path / ONNX_MODEL).is_file() or not (path / ONNX_INFO).is_file():
        raise ValueError(
            f"{path} holds no ONNX export ({ONNX_MODEL}, {ONNX_INFO}); run export_onnx."
        )
    info = json.loads((path / ONNX_INFO).read_text())
    session = onnxruntime.InferenceSession(
        str(path / ONNX_MODEL),
        _session_options(onnxruntime, threads),
        providers=["CPUExecutionProvider"],
    )
    config = AutoConfig.from_pretrained(path) if (path / "config.json").is_file() else None
    return OnnxClassifier(session, info["inputs"], config)
