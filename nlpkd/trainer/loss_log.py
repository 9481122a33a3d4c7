"""Loss bookkeeping: per-component logging (each component averaged over the batches that had it, across
processes) and the stop on a non-finite loss.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from accelerate import Accelerator

__all__ = ["LossLog", "NonFiniteLossError", "check_finite"]


class LossLog:
    """Running sums of the loss components of one mode (`"train"` or `"eval"`) between two logs.

    A component absent from a batch (`ce` on a batch without labels, say) is not counted for that batch, so
    its logged value is the mean over the batches that had it.

    Args:
        names (`Iterable[str]`): the components that can be logged, in logging order.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        self.reset()

    def reset(self) -> None:
        """Start a new logging window."""
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, components: Mapping[str, torch.Tensor]) -> None:
        """Add one batch's components (detached; no host-device sync)."""
        for name, value in components.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + 1

    def drain(self, accelerator: Accelerator, prefix: str = "") -> dict[str, float]:
        """The window's mean of each component (across processes), then a new window.

        Every process must call it at the same time with the same `names`: a process that never saw a
        component still takes part in the reduction with a zero count.
        """
        sums, counts = self.sums, self.counts
        self.reset()
        if not self.names:
            return {}
        device = accelerator.device
        totals = torch.stack(
            [
                torch.stack(
                    [
                        sums[n].to(device) if n in sums else torch.zeros((), device=device),
                        torch.tensor(float(counts.get(n, 0)), device=device),
                    ]
                )
                for n in self.names
            ]
        )
        if accelerator.num_processes > 1:
            totals = accelerator.reduce(totals, reduction="sum")
        return {
            f"{prefix}{name}": round(total / count, 6)
            for name, (total, count) in zip(self.names, totals.tolist(), strict=True)
            if count > 0
        }


class NonFiniteLossError(ValueError):
    """A loss component or the teacher's output became NaN or infinite; training stops instead of going on."""


def check_finite(
    loss: torch.Tensor,
    components: Mapping[str, torch.Tensor],
    teacher_logits: torch.Tensor | None,
    step: int,
) -> None:
    """Raise [`NonFiniteLossError`] when `loss` is NaN or infinite, saying whether the teacher or the student
    diverged and at which step."""
    if torch.isfinite(loss):
        return
    if teacher_logits is not None and not torch.isfinite(teacher_logits).all():
        raise NonFiniteLossError(
            f"The teacher's logits are NaN or infinite at step {step}: the teacher checkpoint or this "
            "data is broken (check it with a forward pass on a few examples; under fp16 try "
            "teacher_dtype='float32' or bf16)."
        )
    bad = [name for name, value in components.items() if not torch.isfinite(value)]
    raise NonFiniteLossError(
        f"Non-finite distillation loss at step {step}: component(s) {', '.join(bad) or 'total'} = "
        f"{', '.join(str(components[n].item()) for n in bad)}. Under fp16 try bf16 or a lower learning "
        "rate; with alpha_attn > 0 try attn_loss='kl'."
    )
