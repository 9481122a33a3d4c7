"""Deployment forms of a distilled student: vocabulary pruning, int8 quantization, ONNX export.

A 3-layer MiniLM student is barely smaller than its teacher because most of its weights are the
30,522 x 384 word embeddings. The functions here make the forms that are shipped:

- [`prune_vocabulary`]: keep only the rows of the word embeddings (and of a tied output layer)
  whose tokens occur in the texts the model will see, and shrink the tokenizer to match.
- [`quantize_int8`], [`save_quantized`], [`load_quantized`]: PyTorch dynamic int8 quantization
  for CPU inference (linear layers, and the word embeddings as weight-only int8), saved as
  safetensors.
- [`export_onnx`], [`quantize_onnx`], [`load_onnx`]: an ONNX graph (float32, or int8 through ONNX
  Runtime's dynamic quantization) that ONNX Runtime runs without PyTorch or transformers.
- [`DeployedVariant`], [`time_variants`], [`predict_batches`]: every form behind the same
  `batch -> logits` call, so that one report measures the task metric and latency alike for each.

ONNX needs the `export` extra (`pip install "nlpkd[export]"`); the rest needs only PyTorch.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoConfig, PreTrainedModel

from .student import forward_input_names

logger = logging.getLogger(__name__)

__all__ = [
    "DEPLOY_FORMS",
    "ONNX_FAMILIES",
    "PRUNABLE_FAMILIES",
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
    "quantize_onnx",
    "quantize_int8",
    "save_quantized",
    "time_variants",
    "torch_variant",
    "weights_size_mb",
]

# Tokenizer families whose fast tokenizer is a WordPiece model, the only kind pruned here: its
# vocabulary is a plain token -> id table, so dropping entries cannot change how kept words split.
PRUNABLE_FAMILIES: tuple[str, ...] = ("bert", "distilbert", "electra", "mpnet")
# Encoder families (those of nlpkd.student) whose classifiers were exported with torch.onnx
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
# The forms a job builds (`nlpkd distill --deploy`), in the order they are built and reported.
DEPLOY_FORMS: tuple[str, ...] = ("int8", "onnx", "onnx-int8")
EXPORT_EXTRA_HINT = 'install the export extra: pip install "nlpkd[export]"'
QUANTIZED_WEIGHTS = "model.int8.safetensors"
QUANTIZATION_FILE = "quantization.json"
ONNX_MODEL = "model.onnx"
ONNX_INFO = "onnx.json"
# Files that hold weights, counted by `weights_size_mb`; config and tokenizer files are not.
_WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx.data")
# Inputs a tokenizer may give a sequence classifier, in the order the ONNX graph takes them.
ONNX_INPUTS: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
# float32 ONNX Runtime against PyTorch: same maths, different kernels (blocking of the matrix
# products, fused softmax and layer norm), so only rounding differs. float32 rounds at 6e-8
# relative; a dot product of a few hundred to 1,536 terms carries about sqrt(n) of that, and a
# 12-layer encoder adds it up a few dozen times, which stays below 1e-5 on logits of size ~10. A
# wrong graph (a missing mask, a swapped input) moves logits by 0.1 or more.
ONNX_ATOL = 1e-4
ONNX_RTOL = 1e-4

TextItem = str | tuple[str, str] | list[str]


# --------------------------------------------------------------------------------------------
# Vocabulary pruning
# --------------------------------------------------------------------------------------------


def _wordpiece_state(tokenizer: Any) -> dict[str, Any]:
    """The fast tokenizer's serialised state, after checking that its model is WordPiece."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not getattr(tokenizer, "is_fast", False) or backend is None:
        raise ValueError(
            f"prune_vocabulary needs a fast WordPiece tokenizer (families "
            f"{', '.join(PRUNABLE_FAMILIES)}); {type(tokenizer).__name__} is not a fast tokenizer. "
            "Load it with AutoTokenizer.from_pretrained(path) (fast is the default)."
        )
    state = json.loads(backend.to_str())
    kind = state.get("model", {}).get("type")
    if kind != "WordPiece":
        raise ValueError(
            f"prune_vocabulary supports WordPiece tokenizers only (families "
            f"{', '.join(PRUNABLE_FAMILIES)}); {type(tokenizer).__name__} is a {kind} tokenizer. "
            "Deploy this model without vocabulary pruning."
        )
    return state


def _check_texts(texts: Any, name: str) -> list[TextItem]:
    if isinstance(texts, str | bytes):
        raise ValueError(
            f"{name} must be a sequence of texts (or of (text, text) pairs), got a single string; "
            "wrap it in a list."
        )
    items = list(texts)
    for item in items:
        is_pair = isinstance(item, tuple | list) and len(item) == 2
        if not (isinstance(item, str) or (is_pair and all(isinstance(t, str) for t in item))):
            raise ValueError(
                f"{name} must hold strings or (text, text) pairs; found {type(item).__name__} "
                f"{item!r:.60}."
            )
    return items


def _token_ids_in(
    tokenizer: Any, texts: Sequence[TextItem], max_length: int | None, chunk: int = 512
) -> set[int]:
    """The ids of every token the tokenizer makes from the texts, special tokens included.

    With `max_length`, a single text contributes the tokens of the words that its first
    `max_length` tokens reach, all of each such word's pieces: a word cut by truncation must keep
    its tail pieces, or it would no longer split the same way and turn into `[UNK]`. Pairs always
    contribute every token, since `longest_first` truncation depends on both texts' full lengths.
    """
    found: set[int] = set()
    for start in range(0, len(texts), chunk):
        block = texts[start : start + chunk]
        singles = [t for t in block if isinstance(t, str)]
        pairs = [t for t in block if not isinstance(t, str)]
        if pairs:
            encoded = tokenizer([p[0] for p in pairs], [p[1] for p in pairs], verbose=False)
            for ids in encoded["input_ids"]:
                found.update(ids)
        if not singles:
            continue
        full = tokenizer(singles, verbose=False)
        if max_length is None:
            for ids in full["input_ids"]:
                found.update(ids)
            continue
        cut = tokenizer(singles, truncation=True, max_length=max_length, verbose=False)
        for row, ids in enumerate(full["input_ids"]):
            seen = {word for word in cut.word_ids(row) if word is not None}
            words = full.word_ids(row)
            found.update(
                i for i, word in zip(ids, words, strict=True) if word is None or word in seen
            )
    return found


def _character_ids(vocab: Mapping[str, int], prefix: str) -> set[int]:
    """Ids of single-character tokens and their word-continuation forms (`##a`)."""
    return {
        index
        for token, index in vocab.items()
        if len(token) == 1 or (token.startswith(prefix) and len(token) == len(prefix) + 1)
    }


def _remap_post_processor(processor: dict[str, Any] | None, mapping: Mapping[int, int]) -> None:
    """Rewrite, in place, the special-token ids that a tokenizers post-processor hard-codes."""
    if not processor:
        return
    kind = processor.get("type")
    if kind == "Sequence":
        for inner in processor.get("processors", []):
            _remap_post_processor(inner, mapping)
    elif kind == "TemplateProcessing":
        for special in processor.get("special_tokens", {}).values():
            special["ids"] = [mapping[i] for i in special["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            token, index = processor[key]
            processor[key] = [token, mapping[index]]


def _pruned_tokenizer(tokenizer: Any, state: dict[str, Any], mapping: Mapping[int, int]) -> Any:
    """A tokenizer of the same class whose vocabulary holds the kept tokens, renumbered."""
    state = copy.deepcopy(state)
    model = state["model"]
    model["vocab"] = {token: mapping[i] for token, i in model["vocab"].items() if i in mapping}
    for added in state.get("added_tokens") or []:
        added["id"] = mapping[added["id"]]
    _remap_post_processor(state.get("post_processor"), mapping)
    padding = state.get("padding")
    if isinstance(padding, dict) and padding.get("pad_id") in mapping:
        padding["pad_id"] = mapping[padding["pad_id"]]
    ordered = sorted(model["vocab"], key=model["vocab"].__getitem__)
    # Going through save_pretrained/from_pretrained keeps every setting of the tokenizer (lower
    # casing, maximum length, special tokens) exactly as a user reloading it would get them.
    with tempfile.TemporaryDirectory(prefix="nlpkd-prune-") as folder:
        tokenizer.save_pretrained(folder)
        (Path(folder) / "tokenizer.json").write_text(json.dumps(state, ensure_ascii=False))
        vocab_txt = Path(folder) / "vocab.txt"
        if vocab_txt.exists():
            vocab_txt.write_text("".join(f"{token}\n" for token in ordered), encoding="utf-8")
        return type(tokenizer).from_pretrained(folder)


def _special_token_ids(tokenizer: Any) -> set[int]:
    """The ids of the tokenizer's special tokens, each of which must be in its vocabulary."""
    vocab = tokenizer.get_vocab()  # the WordPiece table and the added tokens
    kept: set[int] = set()
    for token in tokenizer.all_special_tokens:
        index = vocab.get(token)
        if index is None:
            raise ValueError(
                f"The special token {token!r} is not in the tokenizer's vocabulary, so a pruned "
                "vocabulary would lose it. Add it with tokenizer.add_special_tokens and "
                "model.resize_token_embeddings(len(tokenizer)) before pruning."
            )
        kept.add(index)
    return kept


def _check_rows(tokenizer: Any, kept: set[int], rows: int) -> None:
    too_large = sorted(i for i in kept if i >= rows)
    if too_large:
        names = tokenizer.convert_ids_to_tokens(too_large)
        raise ValueError(
            f"The tokens {names} (ids {too_large}) have no row in the model's {rows}-row word "
            "embeddings, so a pruned vocabulary would lose them. Call "
            "model.resize_token_embeddings(len(tokenizer)) first."
        )


def _always_kept_ids(tokenizer: Any, model: PreTrainedModel) -> set[int]:
    """Special and added tokens, the config's token ids, and every id up to the padding id."""
    rows = model.get_input_embeddings().weight.shape[0]
    kept = _special_token_ids(tokenizer)
    kept.update(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    config = model.config
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        value = getattr(config, name, None)
        if isinstance(value, int) and 0 <= value < rows:
            kept.add(value)
    # Some models hard-code the padding id (MPNet builds position ids from `input_ids != 1`):
    # keeping every id below it keeps its number unchanged.
    pad = tokenizer.pad_token_id
    if pad is not None:
        kept.update(range(pad + 1))
    _check_rows(tokenizer, kept, rows)
    return kept


def _prune_embeddings(model: PreTrainedModel, index: Tensor) -> PreTrainedModel:
    """A copy of `model` whose word embeddings (and tied or vocabulary-sized output) keep rows."""
    pruned = copy.deepcopy(model)
    old = pruned.get_input_embeddings()
    rows = old.weight.shape[0]
    index = index.to(old.weight.device)
    replacements: dict[int, nn.Parameter] = {}

    def shrink(parameter: nn.Parameter | None) -> None:
        if parameter is None or id(parameter) in replacements:
            return
        if parameter.shape[0] != rows:
            raise ValueError(
                f"{type(model).__name__}'s output layer has {parameter.shape[0]} rows but the word "
                f"embeddings have {rows}; prune_vocabulary cannot tell which rows are which tokens."
            )
        kept = parameter.detach().index_select(0, index).clone()
        replacements[id(parameter)] = nn.Parameter(kept, requires_grad=parameter.requires_grad)

    shrink(old.weight)
    output = pruned.get_output_embeddings()
    if output is not None:
        shrink(output.weight)
        shrink(getattr(output, "bias", None))
        # Masked-LM heads also hold the output bias as a parameter of their own (tied to it).
        for module in pruned.modules():
            if output in module.children():
                bias = module._parameters.get("bias")
                if bias is not None and bias.dim() == 1 and bias.shape[0] == rows:
                    shrink(bias)
    # Replacing by identity keeps every tie (input/output weights, head bias/decoder bias).
    for module in pruned.modules():
        for name, parameter in list(module._parameters.items()):
            if parameter is not None and id(parameter) in replacements:
                module._parameters[name] = replacements[id(parameter)]
    count = int(index.numel())
    old.num_embeddings = count
    if old.padding_idx is not None:
        old.padding_idx = int((index == old.padding_idx).nonzero()[0, 0])
    if output is not None and hasattr(output, "out_features"):
        output.out_features = count
    pruned.config.vocab_size = count
    return pruned


def prune_vocabulary(
    model: PreTrainedModel,
    tokenizer: Any,
    texts: Iterable[TextItem],
    *,
    extra_texts: Iterable[TextItem] | None = None,
    max_length: int | None = None,
    keep_characters: bool = False,
) -> tuple[PreTrainedModel, Any]:
    """
    Shrink a model's vocabulary to the tokens its texts use (TextPruner-style vocabulary pruning).

    The texts are tokenized; their tokens, every special and added token, and every id up to the
    padding id are kept, in their original order and renumbered from 0. The word embeddings keep
    those rows, as do an output layer tied to them and its bias (masked-LM heads), and
    `config.vocab_size` and the padding index follow. The tokenizer is rebuilt with the same class
    and settings and the kept tokens only. Both are copies; the arguments are not changed.

    A text whose tokens were all kept is tokenized to the same tokens and gets the same logits as
    before. A word that never occurred in the texts may split differently: into kept sub-words, or
    into `[UNK]` when no split exists (`keep_characters=True` keeps every single character, so any
    word made of known characters still splits into something other than `[UNK]`). Take the
    vocabulary from every text the model will see, e.g. the training split plus an unlabelled
    corpus of the deployment domain through `extra_texts`.

    Args:
        model (`PreTrainedModel`):
            The model, whose word embeddings are `model.get_input_embeddings()` (an `nn.Embedding`).
        tokenizer (`PreTrainedTokenizerBase`):
            Its fast WordPiece tokenizer (families in [`PRUNABLE_FAMILIES`]).
        texts (`Iterable[str | tuple[str, str]]`):
            Texts, or (text, text) pairs for sentence-pair tasks, whose tokens are kept.
        extra_texts (`Iterable[str | tuple[str, str]]`, *optional*):
            More texts, e.g. an unlabelled corpus of the deployment domain.
        max_length (`int`, *optional*):
            Take from each single text only the words that its first `max_length` tokens reach
            (the model's view after truncation at that length), with all their pieces; pairs
            always give all their tokens. Defaults to the whole texts.
        keep_characters (`bool`, *optional*, defaults to `False`):
            Also keep every single-character token and its word-continuation form (`##a`).

    Returns:
        `tuple[PreTrainedModel, PreTrainedTokenizerBase]`: the pruned model and tokenizer; save
        both with `save_pretrained` into one folder and load them with the `Auto` classes.

    Raises:
        `ValueError`: if the tokenizer is not a fast WordPiece tokenizer, the texts are not a
            sequence of strings or pairs (or are empty), a special token has no embedding row,
            or the model's word embeddings are not an `nn.Embedding`.
    """
    state = _wordpiece_state(tokenizer)
    items = _check_texts(texts, "texts")
    if extra_texts is not None:
        items += _check_texts(extra_texts, "extra_texts")
    if not items:
        raise ValueError("prune_vocabulary needs at least one text to take the vocabulary from.")
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be a positive number of tokens, got {max_length}.")
    embeddings = model.get_input_embeddings()
    if not isinstance(embeddings, nn.Embedding):
        raise ValueError(
            f"prune_vocabulary needs word embeddings of type nn.Embedding; "
            f"{type(model).__name__} has {type(embeddings).__name__}. Prune before quantizing."
        )
    vocab: dict[str, int] = state["model"]["vocab"]
    kept = _always_kept_ids(tokenizer, model)
    kept |= _token_ids_in(tokenizer, items, max_length)
    if keep_characters:
        kept |= _character_ids(vocab, state["model"].get("continuing_subword_prefix", "##"))
    kept = {i for i in kept if i < embeddings.weight.shape[0]}
    order = sorted(kept)
    mapping = {old: new for new, old in enumerate(order)}
    pruned_tokenizer = _pruned_tokenizer(tokenizer, state, mapping)
    pruned_model = _prune_embeddings(model, torch.tensor(order, dtype=torch.long))
    logger.info(
        "Vocabulary pruned from %d to %d tokens (%d texts).",
        embeddings.weight.shape[0],
        len(order),
        len(items),
    )
    return pruned_model, pruned_tokenizer


# --------------------------------------------------------------------------------------------
# int8 dynamic quantization (PyTorch)
# --------------------------------------------------------------------------------------------


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


def _is_quantized(model: nn.Module) -> bool:
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
    if _is_quantized(model):
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


def _write_atomically(output_dir: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Let `write` fill a temporary folder next to `output_dir`, then move its files in."""
    target = Path(output_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(
            f"{target} already exists and is not an empty folder; pass a new or empty folder so "
            "that files of another model cannot mix with these."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


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

    if not _is_quantized(model):
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

    return _write_atomically(output_dir, write)


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
                weight = torch._make_per_channel_quantized_tensor(
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
    with torch.no_grad():
        for key, value in tensors.items():
            owner, _, attribute = key.rpartition(".")
            module = modules[owner]
            target = module._parameters.get(attribute)
            if target is None:
                target = module._buffers[attribute]
            target.copy_(value)
    return model


# --------------------------------------------------------------------------------------------
# ONNX export (torch.onnx, dynamo) and ONNX Runtime
# --------------------------------------------------------------------------------------------


def _require_export_extra() -> tuple[Any, Any]:
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
    if _is_quantized(model):
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
    onnx, onnxruntime = _require_export_extra()
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

    return _write_atomically(output_dir, write)


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
    _require_export_extra()
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

    return _write_atomically(output_dir, write)


@contextmanager
def _quiet_onnx_logs() -> Iterator[None]:
    """Silence the exporter's and quantizer's advice, which is not about the user's model."""

    class _DropAdvice(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            # onnxruntime's quantizer logs this to the root logger on every call.
            return "pre-processing before quantization" not in record.getMessage()

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
    _, onnxruntime = _require_export_extra()
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


# --------------------------------------------------------------------------------------------
# One call for every deployed form
# --------------------------------------------------------------------------------------------


def weights_size_mb(folder: str | os.PathLike[str]) -> float:
    """
    Size of the weight files in a model folder, in MB (1e6 bytes).

    Counts `*.safetensors`, `*.onnx` and ONNX external data (`*.onnx.data`); configuration and
    tokenizer files are left out, as in [`nlpkd.evaluation.size_on_disk_mb`].

    Args:
        folder (`str` or `os.PathLike`): a folder from `save_pretrained`, [`save_quantized`] or
            [`export_onnx`].
    """
    path = Path(folder)
    files = [p for p in path.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)]
    if not files:
        raise ValueError(f"{path} holds no weight file ({', '.join(_WEIGHT_SUFFIXES)}).")
    return sum(p.stat().st_size for p in files) / 1e6


@dataclass
class DeployedVariant:
    """
    One deployed form of a model, measured like every other.

    Args:
        name (`str`): e.g. `"student-onnx-int8"`.
        predict (`Callable[[Mapping[str, Tensor]], Tensor]`): a tokenized batch in, float logits
            out (on the CPU); labels and inputs the form does not take are ignored.
        params (`int`): parameters of the float model it was made from (quantization keeps the
            count; pruning lowers it).
        size_mb (`float`): size of its weight files on disk ([`weights_size_mb`]).
        path (`Path`, *optional*): the folder it loads from.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): the tokenizer its batches must come
            from. A pruned form has its own: tokenize the same texts with it, at the same shape.
    """

    name: str
    predict: Callable[[Mapping[str, Tensor]], Tensor]
    params: int
    size_mb: float
    path: Path | None = None
    tokenizer: Any | None = None


def _torch_predict(model: nn.Module) -> Callable[[Mapping[str, Tensor]], Tensor]:
    accepted = forward_input_names(model)
    device = next(model.parameters(), torch.empty(0)).device
    model.eval()

    def predict(batch: Mapping[str, Tensor]) -> Tensor:
        inputs = {
            key: value.to(device)
            for key, value in batch.items()
            if key != "labels" and (accepted is None or key in accepted)
        }
        with torch.inference_mode():
            return model(**inputs).logits.float().cpu()

    return predict


def torch_variant(
    name: str,
    model: nn.Module,
    folder: str | os.PathLike[str] | None = None,
    params: int | None = None,
    tokenizer: Any | None = None,
    size_mb: float | None = None,
) -> DeployedVariant:
    """
    A [`DeployedVariant`] for a PyTorch model (float or from [`load_quantized`]).

    Args:
        name (`str`): the variant's name.
        model (`torch.nn.Module`): the model; put in eval mode.
        folder (`str` or `os.PathLike`, *optional*): where it is saved; its weight files give
            `size_mb`.
        params (`int`, *optional*): parameter count; defaults to the model's own, which is right
            for a float model (pass the float model's count for a quantized one).
        tokenizer (`PreTrainedTokenizerBase`, *optional*): its tokenizer.
        size_mb (`float`, *optional*): its size on disk, for a model that is not in a folder
            (e.g. measured by `nlpkd.evaluation.size_on_disk_mb`); one of `folder` and `size_mb`
            is needed.
    """
    if params is None:
        if _is_quantized(model):
            raise ValueError(f"{name}: pass params= (the float model's count) for an int8 model.")
        params = sum(p.numel() for p in model.parameters())
    if folder is None and size_mb is None:
        raise ValueError(f"{name}: pass the folder the model is saved in, or its size_mb.")
    size = weights_size_mb(folder) if folder is not None else float(size_mb)
    path = Path(folder) if folder is not None else None
    return DeployedVariant(name, _torch_predict(model), params, size, path, tokenizer)


def onnx_variant(
    name: str,
    folder: str | os.PathLike[str],
    params: int,
    threads: int | None = None,
    tokenizer: Any | None = None,
) -> DeployedVariant:
    """
    A [`DeployedVariant`] for a folder from [`export_onnx`], run by ONNX Runtime.

    Args:
        name (`str`): the variant's name.
        folder (`str` or `os.PathLike`): the export folder.
        params (`int`): the parameter count of the float model that was exported.
        threads (`int`, *optional*): intra-op threads; defaults to `torch.get_num_threads()`.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): its tokenizer.
    """
    classifier = load_onnx(folder, threads=threads)
    size = weights_size_mb(folder)
    return DeployedVariant(name, classifier, params, size, Path(folder), tokenizer)


def predict_batches(variant: DeployedVariant, batches: Iterable[Mapping[str, Tensor]]) -> Tensor:
    """
    Logits of a variant over several batches, concatenated: `[examples, labels]`.

    Args:
        variant ([`DeployedVariant`]): the form to run.
        batches (`Iterable[Mapping[str, Tensor]]`): tokenized batches, e.g. from
            `nlpkd.evaluation.latency_batches`.
    """
    return torch.cat([variant.predict(batch) for batch in batches])


def time_variants(
    variants: Sequence[DeployedVariant],
    batches: Sequence[Mapping[str, Tensor]] | Mapping[str, Sequence[Mapping[str, Tensor]]],
    *,
    warmup: int = 2,
    repeats: int = 5,
) -> dict[str, float]:
    """
    Median latency of each variant on the same batches, in milliseconds per batch.

    The rule of [`nlpkd.evaluation.measure_latency`], for forms that are not torch modules: `warmup`
    untimed passes over all batches, then `repeats` rounds in which every variant runs every
    batch in turn (the order reversed each round) so that machine noise hits all alike. Threads
    are left as they are (`torch.get_num_threads()`; ONNX sessions from [`load_onnx`] use as many).

    Args:
        variants (`Sequence[DeployedVariant]`): the forms to time; names must differ.
        batches (`Sequence[Mapping[str, Tensor]]` or `Mapping[str, Sequence[...]]`): tokenized
            batches that every variant gets, or per variant name its own tokenization of the same
            texts at the same shape (a pruned vocabulary numbers tokens differently).
        warmup (`int`, *optional*, defaults to `2`): untimed passes first.
        repeats (`int`, *optional*, defaults to `5`): timed rounds.

    Returns:
        `dict[str, float]`: the median over rounds and batches of one call's wall-clock time.
    """
    names = [variant.name for variant in variants]
    if not variants:
        raise ValueError("time_variants needs at least one variant.")
    if len(set(names)) != len(names):
        raise ValueError(f"Variant names must differ: {names}.")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"Need warmup >= 0 and repeats >= 1, got {warmup} and {repeats}.")
    if isinstance(batches, Mapping):
        missing = [name for name in names if name not in batches]
        if missing:
            raise ValueError(f"No batches for the variants {missing}.")
        own = {name: list(batches[name]) for name in names}
    else:
        own = {name: list(batches) for name in names}
    counts = {len(value) for value in own.values()}
    if counts != {next(iter(counts))} or 0 in counts:
        raise ValueError(f"Every variant needs the same, non-zero number of batches: {counts}.")
    count = counts.pop()
    for _ in range(warmup):
        for index in range(count):
            for variant in variants:
                variant.predict(own[variant.name][index])
    timings: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for index in range(count):
            for variant in order:
                batch = own[variant.name][index]
                start = time.perf_counter()
                variant.predict(batch)
                timings[variant.name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(values) for name, values in timings.items()}


# --------------------------------------------------------------------------------------------
# The forms of a job (`nlpkd distill --deploy ... --prune_vocabulary true`)
# --------------------------------------------------------------------------------------------


def parse_forms(forms: str | Sequence[str] | None) -> tuple[str, ...]:
    """
    The deployed forms asked for, checked and in the order of [`DEPLOY_FORMS`].

    Args:
        forms (`str` or `Sequence[str]`, *optional*): a comma list (`"int8,onnx-int8"`) or a
            sequence of names from [`DEPLOY_FORMS`]; `None` or empty asks for none.

    Returns:
        `tuple[str, ...]`: the forms, each once.
    """
    if forms is None:
        return ()
    items = forms.split(",") if isinstance(forms, str) else [str(form) for form in forms]
    names = [item.strip() for item in items if item.strip()]
    unknown = [name for name in names if name not in DEPLOY_FORMS]
    if unknown:
        raise ValueError(
            f"Unknown deployed form(s) {unknown}: --deploy takes a comma list of "
            f"{', '.join(DEPLOY_FORMS)}, e.g. --deploy int8,onnx-int8."
        )
    return tuple(form for form in DEPLOY_FORMS if form in names)


def check_deployable(
    config: Any, tokenizer: Any, forms: str | Sequence[str] | None, *, prune: bool = False
) -> tuple[str, ...]:
    """
    Fail now, before any training, when the forms cannot be built for a model and tokenizer.

    Args:
        config (`PretrainedConfig`): the configuration of the model to deploy (its family and
            vocabulary size).
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer.
        forms (`str` or `Sequence[str]`, *optional*): the forms, as for [`parse_forms`].
        prune (`bool`, *optional*, defaults to `False`): whether the vocabulary will be pruned.

    Returns:
        `tuple[str, ...]`: the forms, as [`parse_forms`] gives them.

    Raises:
        `ValueError`: for an unknown form, a family outside [`ONNX_FAMILIES`] (int8 and ONNX were
            checked on those), ONNX forms without the `export` extra, or, with `prune`, a
            tokenizer that is not a fast WordPiece one or a special token that a pruned
            vocabulary would lose.
    """
    forms = parse_forms(forms)
    family = getattr(config, "model_type", None)
    if forms and family not in ONNX_FAMILIES:
        raise ValueError(
            f"--deploy {','.join(forms)}: int8 quantization and ONNX export are built for the "
            f"encoder families {', '.join(ONNX_FAMILIES)}; this student is {family!r}. Leave out "
            "--deploy."
        )
    onnx = [form for form in forms if form.startswith("onnx")]
    if onnx:
        try:
            _require_export_extra()
        except ImportError as error:
            raise ValueError(f"--deploy {','.join(onnx)}: {error}") from error
    if prune:
        _wordpiece_state(tokenizer)
        rows = getattr(config, "vocab_size", None)
        special = _special_token_ids(tokenizer)
        if isinstance(rows, int):
            _check_rows(tokenizer, special, rows)
    return forms


def _forms_of(
    prefix: str, model: PreTrainedModel, tokenizer: Any, forms: Sequence[str], root: Path
) -> list[DeployedVariant]:
    """Build `root/<prefix>-<form>` for each form and load each back as it is shipped."""
    params = sum(p.numel() for p in model.parameters())
    variants = []
    for form in forms:
        name = f"{prefix}-{form}"
        folder = root / name
        if form == "int8":
            save_quantized(quantize_int8(model), folder, tokenizer)
            variants.append(torch_variant(name, load_quantized(folder), folder, params, tokenizer))
            continue
        if form == "onnx-int8" and "onnx" in forms:
            # The float graph is already exported and checked: quantize it rather than export again.
            quantize_onnx(root / f"{prefix}-onnx", folder)
        else:
            export_onnx(model, folder, tokenizer, int8=form == "onnx-int8")
        variants.append(onnx_variant(name, folder, params, tokenizer=tokenizer))
    return variants


def build_forms(
    model: PreTrainedModel,
    tokenizer: Any,
    forms: str | Sequence[str] | None,
    output_dir: str | os.PathLike[str],
    *,
    vocabulary_texts: Sequence[TextItem] | None = None,
    max_length: int | None = None,
    name: str = "student",
) -> list[DeployedVariant]:
    """
    Build the deployed forms of a float model into one folder, each in a subfolder of its name.

    For each form of [`parse_forms`]: `student-int8/` ([`save_quantized`]), `student-onnx/` and
    `student-onnx-int8/` ([`export_onnx`]; the int8 graph is quantized from the float one when
    both are asked for). With `vocabulary_texts`, the vocabulary is pruned to them
    ([`prune_vocabulary`]) into `student-pruned/` (`save_pretrained`, float32) and the same forms
    are built from it as `student-pruned-<form>/`. Every variant is loaded back from its folder
    ([`load_quantized`], [`load_onnx`], `from_pretrained`), so what is measured is what ships.

    Args:
        model (`PreTrainedModel`): the float model, on the CPU. It is not changed.
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer, saved with every form.
        forms (`str` or `Sequence[str]`, *optional*): the forms, as for [`parse_forms`].
        output_dir (`str` or `os.PathLike`): a new or empty folder.
        vocabulary_texts (`Sequence[str | tuple[str, str]]`, *optional*): texts to prune the
            vocabulary to; no pruned forms without them.
        max_length (`int`, *optional*): passed to [`prune_vocabulary`].
        name (`str`, *optional*, defaults to `"student"`): the prefix of the variants' names.

    Returns:
        `list[DeployedVariant]`: the forms, then (with pruning) the pruned model and its forms.
    """
    forms = parse_forms(forms)
    root = Path(output_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"{root} already exists and is not an empty folder; pass a new one.")
    variants = _forms_of(name, model, tokenizer, forms, root)
    if vocabulary_texts is None:
        return variants
    pruned, pruned_tokenizer = prune_vocabulary(
        model, tokenizer, vocabulary_texts, max_length=max_length
    )
    folder = root / f"{name}-pruned"

    def write(target: Path) -> None:
        pruned.save_pretrained(target)
        pruned_tokenizer.save_pretrained(target)

    _write_atomically(folder, write)
    shipped = type(pruned).from_pretrained(folder).eval()
    shipped_tokenizer = type(pruned_tokenizer).from_pretrained(folder)
    variants.append(torch_variant(folder.name, shipped, folder, tokenizer=shipped_tokenizer))
    return variants + _forms_of(folder.name, shipped, shipped_tokenizer, forms, root)
