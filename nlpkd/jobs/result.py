"""What a job built and measured, and how it is saved and pushed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import (
    PreTrainedModel,
)

from ..report.report import Report
from ..report.writer import write_report
from ..trainer.trainer import DistillationTrainer
from .deploy_step import DEPLOY_DIR, copy_folder
from .search import RecipeSearch

__all__ = ["DistillationResult"]


@dataclass
class DistillationResult:
    """Everything a job built, so that nothing is hidden behind the one call.

    Args:
        trainer ([`DistillationTrainer`]): the trainer that distilled the student (`trainer.state.log_history`
            holds the loss components; `trainer.train_dataset` / `trainer.eval_dataset` the tokenized data).
        student ([`~transformers.PreTrainedModel`]): the distilled student, in eval mode.
        teacher ([`~transformers.PreTrainedModel`]): the teacher, with unchanged weights.
        report ([`~nlpkd.report.Report`], *optional*): what the run measured (on the main process; `None` on the
            others and when training stopped on a signal). `report["retention"]` reads `metrics.json`'s layout.
        tokenizer (*optional*): the student's tokenizer, saved with it (the teacher's, unless the student has its own:
            then the teacher read its own tokenization, docs/cross-tokenizer.md).
        stopped_by_signal (`str`, *optional*): the signal that stopped training early, if any.
        checkpoint (`str`, *optional*): the last complete checkpoint when training stopped early.
        deploy_dir (`Path`, *optional*): the folder of the deployed forms (`args.output_dir/deploy`), one
            subfolder per form, when the job built any.
        search ([`~nlpkd.jobs.search.RecipeSearch`], *optional*): the recipe search's trials and choice, when
            the job searched (`search_trials`).
    """

    trainer: DistillationTrainer
    student: PreTrainedModel
    teacher: PreTrainedModel
    report: Report | None = None
    tokenizer: Any = None
    stopped_by_signal: str | None = None
    checkpoint: str | None = None
    deploy_dir: Path | None = None
    search: RecipeSearch | None = None
    dataset_name: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # `trainer.push_to_hub()` writes nlpkd's card from this report (DistillationTrainer.create_model_card).
        if self.report is not None:
            self.trainer.model_card_writer = lambda folder: write_report(
                self.report, folder, self.trainer.state.log_history, dataset_name=self.dataset_name
            )

    def save(
        self,
        output_dir: str | Path,
        *,
        model_card: bool = True,
        model_name: str | None = None,
        command: str | None = None,
    ) -> Path:
        """Write the student where `from_pretrained` and `pipeline` can load it.

        The folder gets the student (`config.json`, `model.safetensors`), its tokenizer, the report as
        `metrics.json`, the plot `distillation.png` and, with `model_card`, a Hub model card `README.md`: the
        files of `nlpkd distill` but its YAML config. The deployed forms, when the job built any, are copied
        into its `deploy/` folder (unless they are there already). Existing files of the same names are
        replaced. Under several processes every process must call it (sharded weights are gathered); one
        writes.

        Args:
            output_dir (`str` or `Path`): the folder; created when missing.
            model_card (`bool`, *optional*, defaults to `True`): write `README.md` as well.
            model_name (`str`, *optional*): the name the card gives the model (and uses in its `pipeline`
                snippet), e.g. the Hub repository id; defaults to the folder's name.
            command (`str`, *optional*): the command line that made the student, quoted in the card.

        Returns:
            `Path`: the folder.
        """
        output_dir = Path(output_dir)
        self.trainer.save_model(str(output_dir))
        if self.tokenizer is not None and self.trainer.is_world_process_zero():
            self.tokenizer.save_pretrained(output_dir)
        if self.report is not None and self.trainer.is_world_process_zero():
            write_report(
                self.report,
                output_dir,
                self.trainer.state.log_history,
                model_card=model_card,
                model_name=model_name or output_dir.resolve().name,
                dataset_name=self.dataset_name,
                command=command,
            )
        if self.deploy_dir is not None and self.trainer.is_world_process_zero():
            copy_folder(self.deploy_dir, output_dir / DEPLOY_DIR)
        return output_dir

    def push_to_hub(
        self,
        repo_id: str,
        output_dir: str | Path | None = None,
        *,
        token: str | None = None,
        private: bool | None = None,
    ) -> str:
        """Save the student with its card and report, then upload them to a Hub model repository.

        Args:
            repo_id (`str`): the repository, e.g. `"your-name/bbc-minilm-l3"`; created when missing.
            output_dir (`str` or `Path`, *optional*): where the files are written first; a temporary folder
                when not given.
            token (`str`, *optional*): a Hub token; by default the one saved by `hf auth login` or `HF_TOKEN`.
            private (`bool`, *optional*): create the repository as private.

        Returns:
            `str`: the URL of the upload's commit.
        """
        import tempfile

        from ..hub import push_to_hub

        if output_dir is None:
            output_dir = tempfile.mkdtemp(prefix="nlpkd-push-")
        folder = self.save(output_dir, model_name=repo_id)
        return push_to_hub(folder, repo_id, token=token, private=private)
