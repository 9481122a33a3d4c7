"""Upload a distilled student's folder to the Hugging Face Hub.

`push_to_hub` uploads only the files that make up the model (see `files_to_upload`); training checkpoints and
logs stay local. The model card itself is written by [`nlpkd.report.card`].

"""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import HfApi

__all__ = ["HubPushError", "files_to_upload", "push_to_hub"]

logger = logging.getLogger(__name__)


# Top-level file names that belong to a published student. Everything else in the output
# directory (checkpoint-*/, runs/, training_args.bin, trainer_state.json, optimizer states,
# *.bin weights) is training state or duplicates the safetensors weights.
UPLOAD_FILE_NAMES: frozenset[str] = frozenset(
    {
        "config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "README.md",
        "metrics.json",
    }
)


UPLOAD_SUFFIXES: tuple[str, ...] = (".safetensors", ".model", ".yaml", ".yml", ".png")


class HubPushError(RuntimeError):
    """Raised when creating the Hub repository or uploading to it fails; nothing local changed."""


def files_to_upload(output_dir: str | Path) -> list[str]:
    """
    The files of an output directory that `push_to_hub` uploads, relative to it, sorted.

    Only top-level files are considered, so `checkpoint-*/`, `runs/` and any other folder stay
    local. A file is uploaded when it is model weights in safetensors (`*.safetensors`,
    `model.safetensors.index.json`), `config.json` or `generation_config.json`, a tokenizer file
    (`tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`, `added_tokens.json`,
    `vocab.txt`, `vocab.json`, `merges.txt`, `*.model`), the model card `README.md`,
    `metrics.json`, a YAML config (`*.yaml`, `*.yml`) or a plot (`*.png`). Training state
    (`training_args.bin`, `trainer_state.json`, optimizer and scheduler files) and pickled
    `*.bin` weights are never uploaded.

    Args:
        output_dir (`str` or `pathlib.Path`):
            The student's output directory.

    Returns:
        `list[str]`: file names relative to `output_dir`.
    """
    output_dir = Path(output_dir)
    return sorted(
        path.name
        for path in output_dir.iterdir()
        if path.is_file() and (path.name in UPLOAD_FILE_NAMES or path.suffix in UPLOAD_SUFFIXES)
    )


def _escape_pattern(name: str) -> str:
    # upload_folder matches patterns with fnmatch; bracket the wildcard characters so that each
    # pattern matches exactly one file name.
    return "".join(f"[{char}]" if char in "*?[" else char for char in name)


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def push_to_hub(
    output_dir: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload distilled student (nlpkd)",
) -> str:
    """
    Upload a distilled student's output directory to a Hub model repository.

    The repository is created if needed (`HfApi.create_repo(exist_ok=True)`), then the files
    chosen by `files_to_upload` are uploaded in one commit with `HfApi.upload_folder`. The token
    is passed to the API only; it is never logged or written. The local directory is only read.

    Args:
        output_dir (`str` or `pathlib.Path`):
            Directory holding the student (`save_pretrained`), tokenizer, `README.md`, ...
        repo_id (`str`):
            Target repository, `"user/name"` or `"org/name"`.
        token (`str`, *optional*):
            Hub token with write access; defaults to the one from `hf auth login` /
            `huggingface-cli login` or the `HF_TOKEN` environment variable.
        private (`bool`, *optional*):
            Create the repository private; `None` uses the Hub's default. Ignored when the
            repository exists.
        commit_message (`str`, *optional*, defaults to `"Upload distilled student (nlpkd)"`):
            Message of the upload commit.

    Returns:
        `str`: the URL of the commit.

    Raises:
        `ValueError`: when the directory or repo id is unusable (nothing is sent).
        `HubPushError`: when creating the repository or uploading fails.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise ValueError(
            f"output_dir {str(output_dir)!r} is not a directory; pass the folder the student "
            "was saved to."
        )
    if not repo_id or repo_id.count("/") > 1 or repo_id.startswith("/") or repo_id.endswith("/"):
        raise ValueError(
            f"repo_id {repo_id!r} is not a Hub repo id; use 'user/name' or 'org/name'."
        )
    files = files_to_upload(output_dir)
    if "config.json" not in files or not any(name.endswith(".safetensors") for name in files):
        raise ValueError(
            f"{output_dir} has no config.json and *.safetensors weights to upload (found "
            f"{files}). Save the student there with model.save_pretrained(output_dir) first."
        )
    if "README.md" not in files:
        logger.warning("%s has no README.md; the repository will have no model card.", output_dir)

    api = HfApi()
    step = "creating the repository"
    try:
        api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
        step = "uploading the files"
        logger.info("Uploading %d files from %s to %s: %s", len(files), output_dir, repo_id, files)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=output_dir,
            repo_type="model",
            token=token,
            commit_message=commit_message,
            allow_patterns=[_escape_pattern(name) for name in files],
        )
    except Exception as err:
        raise HubPushError(
            f"Pushing to the Hub repository {repo_id!r} failed while {step}: "
            f"{type(err).__name__}: {_redact(str(err), token).rstrip('.')}. Nothing local was changed; the "
            f"output directory is intact at {output_dir.resolve()}. Check the repo id, that your "
            "token has write access (hf auth login or HF_TOKEN) and the network, then push again."
        ) from err
    url = str(getattr(commit, "commit_url", "") or commit)
    logger.info("Pushed %s to %s", output_dir, url)
    return url
