"""The deployed forms a job asks for (`--deploy int8,onnx,onnx-int8`, `--prune_vocabulary`): parsed once,
checked before training, and built into one folder per form.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from transformers import PreTrainedModel

from .folders import write_atomically
from .int8 import load_quantized, quantize_int8, save_quantized
from .onnx import ONNX_FAMILIES, export_onnx, quantize_onnx, require_export_extra
from .variants import DeployedVariant, onnx_variant, torch_variant
from .vocabulary import (
    TextItem,
    check_rows,
    prune_vocabulary,
    special_token_ids,
    wordpiece_state,
)

__all__ = ["DEPLOY_FORMS", "build_forms", "check_deployable", "parse_forms"]

# The forms a job can build from its student (and from its pruned-vocabulary student).
DeployForm = Literal["int8", "onnx", "onnx-int8"]
DEPLOY_FORMS: tuple[DeployForm, ...] = get_args(DeployForm)


def parse_forms(forms: str | Sequence[str] | None) -> tuple[DeployForm, ...]:
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
            require_export_extra()
        except ImportError as error:
            raise ValueError(f"--deploy {','.join(onnx)}: {error}") from error
    if prune:
        wordpiece_state(tokenizer)
        rows = getattr(config, "vocab_size", None)
        special = special_token_ids(tokenizer)
        if isinstance(rows, int):
            check_rows(tokenizer, special, rows)
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

    write_atomically(folder, write)
    shipped = type(pruned).from_pretrained(folder).eval()
    shipped_tokenizer = type(pruned_tokenizer).from_pretrained(folder)
    variants.append(torch_variant(folder.name, shipped, folder, tokenizer=shipped_tokenizer))
    return variants + _forms_of(folder.name, shipped, shipped_tokenizer, forms, root)
