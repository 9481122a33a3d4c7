"""Surviving interruptions: complete checkpoints only, and a clean stop on SIGINT/SIGTERM.

The Trainer writes `checkpoint-N/` in place and its `trainer_state.json` last, so a process killed while
saving leaves a folder without that file. Such a folder must never be resumed from: it is renamed
`checkpoint-N.incomplete` (no longer matched by `checkpoint-N` patterns) and the previous complete checkpoint is
used instead.

"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import TrainerCallback

__all__ = [
    "COMPLETE_MARKER",
    "GracefulStop",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
    "quarantine_incomplete_checkpoints",
    "resolve_resume_checkpoint",
]

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


# Written last by Trainer._save_checkpoint: its presence marks a finished checkpoint.
COMPLETE_MARKER = "trainer_state.json"


logger = logging.getLogger(__name__)


def _checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if p.is_dir() and (m := _CHECKPOINT.match(p.name))
    ]
    return sorted(found)


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """Whether a checkpoint folder was written to the end (its `trainer_state.json` exists)."""
    return (Path(path) / COMPLETE_MARKER).is_file()


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` in `output_dir` that was written to the end, or `None`.

    Args:
        output_dir (`str` or `os.PathLike`): the run's output directory.
    """
    complete = [path for _, path in _checkpoints(output_dir) if is_complete_checkpoint(path)]
    return str(complete[-1]) if complete else None


def quarantine_incomplete_checkpoints(output_dir: str | os.PathLike) -> list[str]:
    """Rename half-written `checkpoint-N` folders to `checkpoint-N.incomplete` so no resume picks them up.

    Args:
        output_dir (`str` or `os.PathLike`): the run's output directory.

    Returns:
        `list[str]`: the new paths of the folders moved aside.
    """
    moved = []
    for _, path in _checkpoints(output_dir):
        if not is_complete_checkpoint(path):
            target = path.with_name(f"{path.name}.incomplete")
            suffix = 1
            while target.exists():
                suffix += 1
                target = path.with_name(f"{path.name}.incomplete{suffix}")
            path.rename(target)
            moved.append(str(target))
    return moved


def resolve_resume_checkpoint(
    output_dir: str | os.PathLike, resume: str | bool | None, should_save: bool = True
) -> str | None:
    """The checkpoint a run resumes from, after moving half-written ones aside.

    Args:
        output_dir (`str` or `os.PathLike`): the run's output directory.
        resume (`str`, `bool` or `None`): `True` (or `"last"`) for the newest complete checkpoint, a path, or
            `None`/`False` to start afresh.
        should_save (`bool`, *optional*, defaults to `True`): whether this process writes (only the main
            process renames folders).

    Raises:
        `ValueError`: if `True` finds no complete checkpoint, or the path is not a complete checkpoint.
    """
    if should_save:
        for path in quarantine_incomplete_checkpoints(output_dir):
            logger.warning("moved the half-written checkpoint aside: %s", path)
    if isinstance(resume, str) and resume.lower() in ("true", "last"):
        resume = True
    if resume is True:
        found = last_complete_checkpoint(output_dir)
        if found is None:
            raise ValueError(
                f"resume_from_checkpoint=True but {output_dir} holds no complete checkpoint: start without "
                "it, or give the path of a checkpoint-N folder."
            )
        return found
    if resume and not is_complete_checkpoint(resume):
        raise ValueError(
            f"{resume} is not a complete checkpoint (no trainer_state.json: it was interrupted while saving "
            "or is not a checkpoint): resume from an earlier checkpoint-N."
        )
    return resume or None


class GracefulStop(TrainerCallback):
    """Turns SIGINT/SIGTERM into "save a checkpoint at the end of this step and stop".

    Under several processes the request is shared at every step, so all of them stop at the same step and
    take part in the same checkpoint.
    """

    def __init__(self, accelerator) -> None:
        self.accelerator = accelerator
        self.received: str | None = None
        self.stopped_at: int | None = None

    def request(self, signum: int, frame) -> None:
        """The signal handler: note the request (a second SIGINT aborts at once)."""
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means "now"
        self.received = signal.Signals(signum).name
        logger.warning(
            "%s received: saving a checkpoint at the end of this step, then stopping (press Ctrl-C again "
            "to abort at once).",
            self.received,
        )

    def on_step_end(self, args, state, control, **kwargs):
        requested = self.received is not None
        if self.accelerator.num_processes > 1:
            flag = torch.tensor(float(requested), device=self.accelerator.device)
            requested = bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)
        if requested:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
            self.received = self.received or "a signal on another process"
        return control

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Install the handlers for the duration of training (main thread only), then restore the old ones."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self.request) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
