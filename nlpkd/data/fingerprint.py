"""Fingerprints of models and datasets, so that caches built from a model's outputs on a dataset are reused only
while both are unchanged.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import nn

__all__ = ["dataset_fingerprint", "teacher_fingerprint"]

# Part of every fingerprint: changing it invalidates every cache built before.
_CACHE_VERSION = "nlpkd-teacher-logits-v1"


def teacher_fingerprint(teacher: nn.Module) -> str:
    """A hash of the teacher's configuration and weights (bit-exact), to key its cached outputs.

    Args:
        teacher (`torch.nn.Module`): the teacher, possibly wrapped by Accelerate.

    Returns:
        `str`: a hexadecimal digest.
    """
    model = getattr(teacher, "module", teacher)
    digest = hashlib.sha256(_CACHE_VERSION.encode())
    config = getattr(model, "config", None)
    if config is not None:
        digest.update(json.dumps(config.to_diff_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        # reshape(-1): a 0-dim tensor (an ensemble's temperature buffer) cannot be viewed as bytes as it is.
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()


def dataset_fingerprint(dataset: Any) -> str:
    """The content hash `datasets` keeps for a `Dataset` (it changes with every transform), or `""`.

    `datasets` stores it in the private `_fingerprint` and offers no public getter; tests/test_internals.py
    checks that it still exists and changes with the content.
    """
    return str(getattr(dataset, "_fingerprint", ""))
