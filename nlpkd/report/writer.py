"""The one writer of a run's report files: `metrics.json`, the plot and the model card, from one report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .report import Report

__all__ = ["write_report"]


def write_report(
    report: Report,
    output_dir: str | Path,
    log_history: Sequence[Mapping[str, Any]] = (),
    *,
    model_card: bool = True,
    model_name: str | None = None,
    dataset_name: str | None = None,
    command: str | None = None,
) -> None:
    """The one writer of a run's report files: `metrics.json`, the plot `distillation.png` and, with
    `model_card`, the Hub card `README.md`.

    Args:
        report ([`Report`]): what the run measured.
        output_dir (`str` or `Path`): the student's folder.
        log_history (`list[dict]`, *optional*): the trainer's `state.log_history`, for the loss curves.
        model_card (`bool`, *optional*, defaults to `True`): write `README.md` as well.
        model_name (`str`, *optional*): the name the card gives the model (e.g. the Hub repository id).
        dataset_name (`str`, *optional*): a Hub dataset id, for the card's metadata.
        command (`str`, *optional*): the command line that made the student, quoted in the card.
    """
    from .card import build_model_card, write_model_card
    from .plot import PLOT_NAME, plot_report

    output_dir = Path(output_dir)
    report.save(output_dir)
    plot_report(report.to_dict(), log_history, output_dir / PLOT_NAME)
    if model_card:
        card = build_model_card(
            report, model_name=model_name, dataset_name=dataset_name, command=command
        )
        write_model_card(card, output_dir)
