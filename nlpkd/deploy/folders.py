"""The folders of deployed forms: written atomically, and their size on disk."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["weights_size_mb"]

# Files that hold weights, counted by `weights_size_mb`; config and tokenizer files are not.
_WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx.data")


def write_atomically(output_dir: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
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


def weights_size_mb(folder: str | os.PathLike[str]) -> float:
    """
    Size of the weight files in a model folder, in MB (1e6 bytes).

    Counts `*.safetensors`, `*.onnx` and ONNX external data (`*.onnx.data`); configuration and
    tokenizer files are left out, as in [`nlpkd.report.size_on_disk_mb`].

    Args:
        folder (`str` or `os.PathLike`): a folder from `save_pretrained`, [`save_quantized`] or
            [`export_onnx`].
    """
    path = Path(folder)
    files = [p for p in path.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)]
    if not files:
        raise ValueError(f"{path} holds no weight file ({', '.join(_WEIGHT_SUFFIXES)}).")
    return sum(p.stat().st_size for p in files) / 1e6
