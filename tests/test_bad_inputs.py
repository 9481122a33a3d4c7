"""The bad-input catalogue of docs/reliability.md: one test per row.

Each test feeds one bad input to the command (`nlpkd.cli.main`, in process) and to the Python function
underneath it, and checks both: the command exits with status 2 and prints exactly one line on stderr,
`nlpkd: error: ...`, without a traceback; the Python call raises a `ValueError` (or a subclass) whose
message is the same text. docs/reliability.md notes the rows that differ: a base encoder given as teacher
has a Python message of its own, and empty or over-long texts (or a `--max_length` past the model's maximum) are not errors: the
run completes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import FAST_CLI, SENTENCES, WORDS, random_dataset, tiny_bert
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertModel,
    BertTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from nlpkd import DistillationConfig, DistillationTrainer, create_student
from nlpkd.cli import UsageError, main, parse_arguments, run_distill
from nlpkd.data import get_task, label_names, load_task_data, tokenize_dataset
from nlpkd.data.labels import align_label_names
from nlpkd.trainer import NonFiniteLossError

FAST = FAST_CLI  # everything small: failures come before training, runs take two steps
MODEL_MAX_LENGTH = 64  # the tiny tokenizer's maximum, equal to the tiny BERT's position embeddings
LONG_TEXT = " ".join(["the movie was very good"] * 40)  # 200 words, far past both maxima


# ---- helpers --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_progress_bars():
    """Progress bars also go to stderr; switched off so that the error line is all there is."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets_bars, hf_bars = (
        datasets.is_progress_bar_enabled(),
        hf_logging.is_progress_bar_enabled(),
    )
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    yield
    if datasets_bars:
        datasets.enable_progress_bars()
    if hf_bars:
        hf_logging.enable_progress_bar()


def make_tokenizer(folder: Path, extra_words: tuple[str, ...] = ()) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *extra_words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 ignores `vocab_file=` in the constructor; from_pretrained reads the folder.
    return BertTokenizerFast.from_pretrained(str(folder), model_max_length=MODEL_MAX_LENGTH)


def generic_labels(num_labels: int) -> dict[str, Any]:
    id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    return {
        "num_labels": num_labels,
        "id2label": id2label,
        "label2id": {v: k for k, v in id2label.items()},
    }


def named_labels(*names: str) -> dict[str, Any]:
    return {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }


def save(folder: Path, model, tokenizer=None) -> Path:
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


class Kit:
    """A tiny teacher and good data files, shared by the module's tests (nothing writes into them)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tokenizer = make_tokenizer(root / "vocab")
        self.teacher = save(
            root / "teacher", tiny_bert(seed=1, **generic_labels(2)), self.tokenizer
        )
        self.train = root / "train.tsv"
        self.train.write_text(
            "sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(SENTENCES))
        )

    def argv(self, out: Path, *extra: str, teacher: Path | str | None = None) -> list[str]:
        """`nlpkd distill` on sst2 with the good files, unless `extra` gives others (later flags win)."""
        return [
            "distill",
            "--task",
            "sst2",
            "--teacher",
            str(teacher or self.teacher),
            "--train_file",
            str(self.train),
            "--validation_file",
            str(self.train),
            "--output_dir",
            str(out),
            *FAST,
            *extra,
        ]


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Kit:
    return Kit(tmp_path_factory.mktemp("kit"))


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse exits on its own; the test then reports what it printed
        status = exit_.code
    return status, capsys.readouterr().err


def one_line_error(status: int, err: str, phrase: str) -> str:
    """Checks the command's failure and returns its message (the text after `nlpkd: error: `)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert status == 2, f"exit status {status}; stderr:\n{err}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err}"
    assert lines[0].startswith("nlpkd: error: "), lines[0]
    message = lines[0][len("nlpkd: error: ") :]
    assert phrase in message, message
    return message


def raised(call: Callable[[], Any], kind: type[BaseException] = ValueError) -> str:
    """The message of the `kind` exception that `call` raises, whitespace collapsed as the CLI prints it."""
    with pytest.raises(kind) as info:
        call()
    return " ".join(str(info.value).split())


def config(tmp_path: Path, **overrides: Any) -> DistillationConfig:
    kwargs: dict[str, Any] = dict(
        output_dir=str(tmp_path / "api"),
        max_steps=1,
        per_device_train_batch_size=4,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return DistillationConfig(**kwargs)


def student_of(num_labels: int = 2, **overrides: Any):
    labels = overrides.pop("labels", None) or generic_labels(num_labels)
    return tiny_bert(seed=2, num_hidden_layers=2, **labels, **overrides)


# ---- rows 1-3 and 5: data files -------------------------------------------------------------

# (row id, task, file name, content, which file is bad: train, validation or both, message phrase)
DATA_ROWS = [
    (
        "1-text-column-missing-tsv",
        "sst2",
        "train.tsv",
        "text\tlabel\nthe movie\t1\n",
        "train",
        "is missing the column(s) ['sentence'] needed by task 'sst2'",
    ),
    (
        "1-label-column-missing-csv",
        "sst2",
        "train.csv",
        "sentence,target\nthe movie,1\n",
        "train",
        "is missing the column(s) ['label'] needed by task 'sst2'",
    ),
    (
        "1-label-column-missing-jsonl",
        "sst2",
        "train.jsonl",
        '{"sentence": "the movie"}\n',
        "train",
        "is missing the column(s) ['label'] needed by task 'sst2'",
    ),
    (
        "1-pair-column-missing-csv",
        "mrpc",
        "train.csv",
        "sentence1,label\nthe movie,1\n",
        "train",
        "is missing the column(s) ['sentence2'] needed by task 'mrpc'",
    ),
    (
        "1-label-value-missing",
        "sst2",
        "train.csv",
        "sentence,label\nthe movie,1\nthe film,\n",
        "train",
        "1 row(s) have no value in the label column 'label' (first: data row 2)",
    ),
    (
        "2-label-id-out-of-range",
        "sst2",
        "train.tsv",
        "sentence\tlabel\nthe movie\t7\nthe film\t0\n",
        "train",
        "label ids must lie in [0, 2) for task 'sst2', found [7]",
    ),
    (
        "2-negative-label-id",
        "sst2",
        "dev.tsv",
        "sentence\tlabel\nthe movie\t-1\n",
        "validation",
        "label ids must lie in [0, 2) for task 'sst2', found [-1]",
    ),
    (
        "2-too-many-label-names",
        "sst2",
        "train.tsv",
        "sentence\tlabel\nthe movie\tpositive\nthe film\tnegative\nthe plot\tmaybe\n",
        "both",
        "Task 'sst2' has 2 classes but the data holds 3 label names: "
        "['maybe', 'negative', 'positive']",
    ),
    (
        "2-ids-and-names-mixed",
        "sst2",
        "train.tsv",
        "sentence\tlabel\nthe movie\t1\nthe film\tpositive\n",
        "train",
        "mixes integer ids and label names",
    ),
    (
        "2-fractional-class-label",
        "sst2",
        "train.jsonl",
        '{"sentence": "the movie", "label": 0.5}\n',
        "train",
        "row 1 has label 0.5, which is not a class id",
    ),
    (
        "2-regression-label-not-a-number",
        "stsb",
        "train.csv",
        "sentence1,sentence2,label\nthe movie,the film,high\n",
        "train",
        "row 1 has label 'high', but this regression task needs a number",
    ),
    (
        "3-header-only-train",
        "sst2",
        "train.tsv",
        "sentence\tlabel\n",
        "train",
        "(split 'train') holds no examples; give a file with at least one row",
    ),
    (
        "3-header-only-validation",
        "sst2",
        "dev.csv",
        "sentence,label\n",
        "validation",
        "(split 'validation') holds no examples",
    ),
    (
        "3-zero-bytes-csv",
        "sst2",
        "train.csv",
        "",
        "train",
        "is empty: it needs a header row with the column names and at least one example row",
    ),
    (
        "3-zero-bytes-jsonl",
        "sst2",
        "train.jsonl",
        "\n\n",
        "train",
        "is empty: it needs at least one JSON object per line",
    ),
    ("5-missing-file", "sst2", "nope.tsv", None, "train", "no such file"),
    (
        "5-binary-file",
        "sst2",
        "train.tsv",
        bytes(range(256)) * 4,
        "train",
        "(UnicodeDecodeError: 'utf-8' codec can't decode byte 0x80 in position 128",
    ),
    (
        "5-tsv-wrong-field-count",
        "sst2",
        "train.tsv",
        "sentence\tlabel\nthe movie\t1\nthe film\t0\textra\n",
        "train",
        "line 3 has 3 fields but the header has 2",
    ),
    (
        "5-jsonl-line-not-an-object",
        "sst2",
        "train.jsonl",
        '{"sentence": "the movie", "label": 1}\n["the film", 0]\n',
        "train",
        "line 2 holds list, not a JSON object",
    ),
    (
        "5-unknown-extension",
        "sst2",
        "train.txt",
        "sentence\tlabel\nthe movie\t1\n",
        "train",
        "unknown extension '.txt'",
    ),
]


def write_bad_file(folder: Path, name: str, content: str | bytes | None) -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    return path


def good_file_for(task: str, folder: Path) -> Path:
    path = folder / f"good-{task}.csv"
    columns = get_task(task).text_columns
    rows = [",".join(columns) + ",label"]
    for i, sentence in enumerate(SENTENCES):
        label = str(i % 2) if task != "stsb" else f"{i * 0.5:.1f}"
        rows.append(",".join([sentence] * len(columns)) + f",{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def check_data_row(kit, tmp_path, capsys, task, bad_path, split, phrase) -> None:
    good = good_file_for(task, tmp_path)
    train, validation = {
        "train": (bad_path, good),
        "validation": (good, bad_path),
        "both": (bad_path, bad_path),
    }[split]
    argv = [
        *kit.argv(tmp_path / "out"),
        "--task",
        task,
        "--train_file",
        str(train),
        "--validation_file",
        str(validation),
    ]
    message = one_line_error(*run_cli(argv, capsys), phrase)
    if split != "both":  # a label set that is wrong as a whole is reported for the task
        assert str(bad_path) in message  # the message names the file to fix
    assert raised(lambda: load_task_data(task, str(train), str(validation))) == message
    assert not (tmp_path / "out").exists()  # nothing was written before the data was checked


@pytest.mark.parametrize(
    ("task", "name", "content", "split", "phrase"),
    [row[1:] for row in DATA_ROWS],
    ids=[row[0] for row in DATA_ROWS],
)
def test_bad_data_file(kit, tmp_path, capsys, task, name, content, split, phrase):
    bad = write_bad_file(tmp_path, name, content)
    check_data_row(kit, tmp_path, capsys, task, bad, split, phrase)


def test_data_path_that_is_a_directory(kit, tmp_path, capsys):
    folder = tmp_path / "train.tsv"
    folder.mkdir()
    check_data_row(kit, tmp_path, capsys, "sst2", folder, "train", "is a directory")


def test_broken_json_line_names_its_line(kit, tmp_path, capsys):
    bad = write_bad_file(
        tmp_path,
        "train.jsonl",
        '{"sentence": "the movie", "label": 1}\n{"sentence": "the film", "label": \n',
    )
    check_data_row(kit, tmp_path, capsys, "sst2", bad, "train", "line 2 is not valid JSON")


def test_label_names_unknown_to_a_named_teacher(kit, tmp_path, capsys):
    teacher = save(
        tmp_path / "named",
        tiny_bert(seed=1, **named_labels("negative", "positive")),
        kit.tokenizer,
    )
    data = tmp_path / "train.tsv"
    data.write_text("sentence\tlabel\nthe movie\tgood\nthe film\tbad\nthe plot\tgood\n")
    argv = kit.argv(
        tmp_path / "out",
        "--train_file",
        str(data),
        "--validation_file",
        str(data),
        teacher=teacher,
    )
    message = one_line_error(*run_cli(argv, capsys), "do not match the data's labels")
    assert "{0: 'negative', 1: 'positive'}" in message and "{0: 'bad', 1: 'good'}" in message
    names = label_names(load_task_data("sst2", str(data), str(data)), "sst2")
    model = AutoModelForSequenceClassification.from_pretrained(teacher)
    assert raised(lambda: align_label_names(model, names)) == message


# ---- row 4: empty and over-long texts are truncated, not errors -----------------------------


def write_edge_texts(folder: Path) -> Path:
    path = folder / "edge.tsv"
    rows = ["\t1", f"{LONG_TEXT}\t0", "the film\t1", "bad\t0", "\t0", f"{LONG_TEXT} fun\t1"]
    path.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return path


def test_empty_and_long_texts_are_truncated_and_the_run_completes(kit, tmp_path, capsys):
    data = write_edge_texts(tmp_path)
    out = tmp_path / "out"
    argv = kit.argv(out, "--train_file", str(data), "--validation_file", str(data))
    status, err = run_cli(argv, capsys)
    assert status == 0, err
    assert "nlpkd: error" not in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_examples"] == 6
    assert 0.0 <= metrics["student"]["validation"]["accuracy"] <= 1.0

    tokenized = tokenize_dataset(
        load_task_data("sst2", str(data), str(data)), kit.tokenizer, "sst2", max_length=16
    )
    lengths = [len(ids) for ids in tokenized["train"]["input_ids"]]
    assert lengths == [2, 16, 4, 3, 2, 16]  # empty texts keep [CLS] [SEP]; long ones are cut at 16
    assert tokenized["train"]["input_ids"][0] == [2, 3]


def test_max_length_beyond_the_model_maximum_is_capped(kit, tmp_path, capsys):
    data = write_edge_texts(tmp_path)
    out = tmp_path / "out"
    argv = kit.argv(
        out, "--train_file", str(data), "--validation_file", str(data), "--max_length", "128"
    )
    status, err = run_cli(argv, capsys)
    assert status == 0, err
    assert (out / "metrics.json").is_file()
    tokenized = tokenize_dataset(
        load_task_data("sst2", str(data), str(data)), kit.tokenizer, "sst2", max_length=128
    )
    assert max(len(ids) for ids in tokenized["train"]["input_ids"]) == MODEL_MAX_LENGTH


# ---- row 6: config files and flags ----------------------------------------------------------


def check_config_row(tmp_path, capsys, argv: list[str], phrase: str) -> str:
    out = ["--output_dir", str(tmp_path / "out")]
    message = one_line_error(*run_cli(["distill", *argv, *out], capsys), phrase)
    assert raised(lambda: parse_arguments("distill", [*argv, *out]), UsageError) == message
    return message


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        (
            yaml.safe_dump({"temprature": 2.0, "alpha": 1.0}),
            "has unknown key(s): alpha, temprature. See `nlpkd distill --help` for the options.",
        ),
        (yaml.safe_dump({"temperature": -1}), "temperature must be > 0, got -1.0."),
        (yaml.safe_dump({"alpha_kd": 0, "alpha_ce": 0}), "are all 0: set at least one loss"),
        ("temperature: [1\n", "is not valid YAML: while parsing a flow sequence"),
        ("- just\n- a list\n", "must hold a mapping of option: value, got list."),
    ],
    ids=[
        "unknown-keys",
        "negative-temperature",
        "all-weights-zero",
        "yaml-syntax",
        "not-a-mapping",
    ],
)
def test_bad_yaml_config(tmp_path, capsys, text, phrase):
    path = write_yaml(tmp_path, text)
    check_config_row(tmp_path, capsys, ["--config", str(path)], phrase)


def test_missing_config_file_and_unknown_flag(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    check_config_row(
        tmp_path, capsys, ["--config", str(missing)], f"config file {missing} does not exist."
    )
    check_config_row(
        tmp_path,
        capsys,
        ["--temprature", "2"],
        "unknown option(s): --temprature 2. Did you mean --temperature?",
    )


@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        ("yaml", "argument --temperature: invalid float value: 'hot'"),
        ("flag", "argument --temperature: invalid float value: 'hot'"),
        (
            "yaml-bool",
            "argument --overwrite_output_dir/--overwrite-output-dir: Truthy value expected",
        ),
    ],
)
def test_wrong_type_is_one_line(tmp_path, capsys, source, phrase):
    if source == "yaml":
        argv = ["--config", str(write_yaml(tmp_path, "temperature: hot\n"))]
    elif source == "flag":
        argv = ["--temperature", "hot"]
    else:
        argv = ["--config", str(write_yaml(tmp_path, "overwrite_output_dir: maybe\n"))]
    check_config_row(tmp_path, capsys, argv, phrase)


def test_yaml_list_for_a_single_value_option(tmp_path, capsys):
    path = write_yaml(tmp_path, "alpha_kd: [1, 2]\n")
    check_config_row(
        tmp_path, capsys, ["--config", str(path)], "--alpha-kd: invalid float value: '[1, 2]'"
    )


def test_config_path_that_is_a_directory(tmp_path, capsys):
    check_config_row(
        tmp_path, capsys, ["--config", str(tmp_path)], f"config file {tmp_path} cannot be read"
    )


# ---- row 7: teachers that cannot be one -----------------------------------------------------


def check_teacher_row(kit, tmp_path, capsys, teacher: Path | str, phrase: str) -> str:
    message = one_line_error(*run_cli(kit.argv(tmp_path / "out", teacher=teacher), capsys), phrase)
    student = student_of()
    args = config(tmp_path)
    assert (
        raised(lambda: DistillationTrainer(model=student, teacher=str(teacher), args=args))
        == message
    )
    return message


def test_teacher_path_that_does_not_exist(kit, tmp_path, capsys):
    check_teacher_row(kit, tmp_path, capsys, tmp_path / "no-such-teacher", "does not exist")


@pytest.mark.parametrize("name", ["someone/no-such-model", "data/nope", "nope"])
def test_teacher_that_is_neither_a_folder_nor_a_cached_hub_model(
    kit, tmp_path, capsys, monkeypatch, name
):
    # A mistyped folder (data/nope) reads like a Hub id: the message says both, not a Hub connection error.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    message = one_line_error(
        *run_cli(kit.argv(tmp_path / "out", teacher=name), capsys),
        f"The teacher {name} cannot be found: there is no folder {name} (relative to ",
    )
    assert (
        "no Hub model of that id is in the local Hugging Face cache while the Hub is offline"
        in message
    )
    student, args = student_of(), config(tmp_path)
    call = lambda: DistillationTrainer(model=student, teacher=name, args=args)  # noqa: E731
    assert raised(call) == message


def test_teacher_that_is_neither_a_folder_nor_a_hub_model_online(
    kit, tmp_path, capsys, monkeypatch
):
    import httpx2
    from huggingface_hub.errors import RepositoryNotFoundError

    import nlpkd.models.loading

    def not_found(repo_id, **kwargs):
        # What huggingface_hub raises for an id the Hub does not know.
        request = httpx2.Request("GET", f"https://huggingface.co/api/models/{repo_id}")
        raise RepositoryNotFoundError(
            f"404 {repo_id}", response=httpx2.Response(404, request=request)
        )

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(nlpkd.models.loading, "model_info", not_found)
    message = one_line_error(
        *run_cli(kit.argv(tmp_path / "out", teacher="data/nope"), capsys),
        "there is no folder data/nope (relative to ",
    )
    assert "and the Hub has no model data/nope (or it is private" in message


@pytest.mark.parametrize("content", ["tokenizer-only", "empty"])
def test_teacher_folder_without_a_model(kit, tmp_path, capsys, content):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    if content == "tokenizer-only":
        kit.tokenizer.save_pretrained(folder)
    check_teacher_row(kit, tmp_path, capsys, folder, "has no config.json")


def tiny_t5(folder: Path, tokenizer) -> Path:
    config = T5Config(
        num_layers=2,
        d_model=32,
        d_ff=37,
        num_heads=4,
        d_kv=8,
        vocab_size=len(tokenizer),
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=3,
    )
    torch.manual_seed(0)
    return save(folder, T5ForConditionalGeneration(config), tokenizer)


def tiny_albert(folder: Path, tokenizer) -> Path:
    # ALBERT shares one set of weights across its layers: there are no layers to choose from.
    config = AlbertConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=MODEL_MAX_LENGTH,
        **generic_labels(2),
    )
    torch.manual_seed(0)
    return save(folder, AlbertForSequenceClassification(config), tokenizer)


def test_teacher_of_an_unsupported_family(kit, tmp_path, capsys):
    teacher = tiny_albert(tmp_path / "albert", kit.tokenizer)
    message = one_line_error(
        *run_cli(kit.argv(tmp_path / "out", teacher=teacher), capsys),
        "model_type 'albert' is not supported; supported families: bert,",
    )
    model = AutoModelForSequenceClassification.from_pretrained(teacher)
    assert raised(lambda: create_student(model, num_layers=1)) == message


def test_t5_teacher_is_refused_before_fine_tuning(kit, tmp_path, capsys):
    teacher = tiny_t5(tmp_path / "t5", kit.tokenizer)
    message = one_line_error(
        *run_cli(kit.argv(tmp_path / "out", teacher=teacher), capsys),
        "model_type 't5' is not supported",
    )
    assert not (tmp_path / "out" / "teacher").exists()  # no time spent fine-tuning it
    model = AutoModelForSequenceClassification.from_pretrained(teacher)
    assert raised(lambda: create_student(model, num_layers=1)) == message


def test_base_encoder_teacher_without_fine_tuning(kit, tmp_path, capsys):
    base_config = BertConfig(
        vocab_size=len(kit.tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=MODEL_MAX_LENGTH,
    )
    torch.manual_seed(0)
    base = save(tmp_path / "base", BertModel(base_config), kit.tokenizer)
    argv = kit.argv(tmp_path / "out", "--finetune_teacher", "never", teacher=base)
    one_line_error(*run_cli(argv, capsys), "has no trained classification head")
    student, args = student_of(), config(tmp_path)
    message = raised(lambda: DistillationTrainer(model=student, teacher=str(base), args=args))
    assert "has no trained classification head" in message


def test_teacher_folder_without_tokenizer(kit, tmp_path, capsys):
    teacher = save(tmp_path / "no-tokenizer", tiny_bert(seed=1, **generic_labels(2)))
    message = one_line_error(
        *run_cli(kit.argv(tmp_path / "out", teacher=teacher), capsys), "knows only its"
    )
    data = load_task_data("sst2", str(kit.train), str(kit.train))
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    assert raised(lambda: tokenize_dataset(data, tokenizer, "sst2")) == message


# ---- row 8: tokenizers that disagree --------------------------------------------------------


def test_student_checkpoint_with_another_vocabulary(kit, tmp_path, capsys):
    student_dir = save(tmp_path / "student", student_of(vocab_size=99))
    argv = kit.argv(tmp_path / "out", "--student", str(student_dir))
    message = one_line_error(
        *run_cli(argv, capsys),
        "Teacher and student vocabularies differ (teacher vocab_size=36, student vocab_size=99)",
    )
    teacher = AutoModelForSequenceClassification.from_pretrained(kit.teacher)
    student = AutoModelForSequenceClassification.from_pretrained(student_dir)
    args = config(tmp_path)
    assert raised(lambda: DistillationTrainer(model=student, teacher=teacher, args=args)) == message


def test_teacher_processing_class_that_differs(kit, tmp_path):
    # Python only: the command tokenizes once, with the teacher's tokenizer.
    other = make_tokenizer(tmp_path / "other-vocab", extra_words=("zebra", "quantum"))
    teacher = tiny_bert(seed=1, **generic_labels(2))
    student, args = create_student(teacher, num_layers=1), config(tmp_path)
    message = raised(
        lambda: DistillationTrainer(
            model=student,
            teacher=teacher,
            args=args,
            processing_class=kit.tokenizer,
            teacher_processing_class=other,
        )
    )
    assert message.startswith(
        "Teacher and student tokenizers differ (BertTokenizer with 38 tokens vs BertTokenizer with 36 "
        "tokens)"
    ), message


# ---- row 9: label maps that disagree --------------------------------------------------------


def test_teacher_fine_tuned_with_another_label_order(kit, tmp_path, capsys):
    teacher = save(
        tmp_path / "reversed",
        tiny_bert(seed=1, **named_labels("positive", "negative")),
        kit.tokenizer,
    )
    message = one_line_error(
        *run_cli(kit.argv(tmp_path / "out", teacher=teacher), capsys),
        "The teacher's labels {0: 'positive', 1: 'negative'} do not match the data's labels "
        "{0: 'negative', 1: 'positive'}",
    )
    names = label_names(load_task_data("sst2", str(kit.train), str(kit.train)), "sst2")
    model = AutoModelForSequenceClassification.from_pretrained(teacher)
    assert raised(lambda: align_label_names(model, names)) == message


def test_student_and_teacher_label_maps_disagree_in_python(tmp_path):
    teacher = tiny_bert(seed=1, **named_labels("negative", "positive"))
    student = student_of(labels=named_labels("positive", "negative"))
    args = config(tmp_path)
    message = raised(lambda: DistillationTrainer(model=student, teacher=teacher, args=args))
    assert message.startswith("Teacher and student label maps disagree"), message


def test_student_checkpoint_with_another_label_order(kit, tmp_path, capsys):
    student_dir = save(
        tmp_path / "student", student_of(labels=named_labels("positive", "negative"))
    )
    argv = kit.argv(tmp_path / "out", "--student", str(student_dir))
    message = one_line_error(
        *run_cli(argv, capsys),
        "The student's labels {0: 'positive', 1: 'negative'} do not match the data's labels",
    )
    names = label_names(load_task_data("sst2", str(kit.train), str(kit.train)), "sst2")
    student = AutoModelForSequenceClassification.from_pretrained(student_dir)
    assert raised(lambda: align_label_names(student, names, role="student")) == message


def test_student_checkpoint_with_another_number_of_labels(kit, tmp_path, capsys):
    student_dir = save(tmp_path / "student", student_of(num_labels=3))
    argv = kit.argv(tmp_path / "out", "--student", str(student_dir))
    message = one_line_error(
        *run_cli(argv, capsys), "Teacher has num_labels=2 but student has num_labels=3"
    )
    teacher = AutoModelForSequenceClassification.from_pretrained(kit.teacher)
    student = AutoModelForSequenceClassification.from_pretrained(student_dir)
    args = config(tmp_path)
    assert raised(lambda: DistillationTrainer(model=student, teacher=teacher, args=args)) == message


# ---- row 10: an output directory that holds another run -------------------------------------


@pytest.mark.parametrize("marker", ["metrics.json", "config.json", "nlpkd_config.yaml"])
def test_output_dir_that_holds_another_run(kit, tmp_path, capsys, marker):
    out = tmp_path / "out"
    out.mkdir()
    (out / marker).write_text("{}")
    message = one_line_error(
        *run_cli(kit.argv(out), capsys),
        f"{out} already holds a run ({marker}): choose another --output_dir, or pass "
        "--overwrite_output_dir to replace it.",
    )
    assert (out / marker).read_text() == "{}"  # untouched
    assert sorted(p.name for p in out.iterdir()) == [marker]
    parsed = parse_arguments("distill", kit.argv(out)[1:])
    assert raised(lambda: run_distill(*parsed), UsageError) == message


def test_overwrite_output_dir_replaces_the_run(kit, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    status, err = run_cli([*kit.argv(out), "--overwrite_output_dir", "true"], capsys)
    assert status == 0, err
    assert json.loads((out / "metrics.json").read_text())["task"] == "sst2"


# ---- row 11: non-finite teacher outputs -----------------------------------------------------


def test_teacher_with_nan_outputs(kit, tmp_path, capsys):
    teacher = tiny_bert(seed=1, **generic_labels(2))
    with torch.no_grad():
        teacher.classifier.bias.fill_(float("nan"))
    teacher_dir = save(tmp_path / "nan-teacher", teacher, kit.tokenizer)
    out = tmp_path / "out"
    message = one_line_error(
        *run_cli(kit.argv(out, teacher=teacher_dir), capsys),
        "The teacher's logits are NaN or infinite at step 0: the teacher checkpoint or this data is "
        "broken",
    )
    assert not (out / "model.safetensors").exists()  # no student saved from a broken run

    trainer = DistillationTrainer(
        model=create_student(teacher, num_layers=1),
        teacher=teacher,
        args=config(tmp_path),
        train_dataset=random_dataset(8, 8, num_labels=2),
    )
    assert raised(trainer.train, NonFiniteLossError) == message
    assert re.search(r"at step \d+", message)


# ---- row 12: deployment that cannot be built ------------------------------------------------


def python_distill(teacher, tmp_path, tokenizer=None, **deploy_options):
    """`nlpkd.distill` on the good sentences with deployment options: what the command runs, from Python."""
    from nlpkd import distill

    labels = [i % 2 for i in range(len(SENTENCES))]
    return lambda: distill(
        teacher,
        SENTENCES,
        labels=labels,
        eval_data=SENTENCES,
        eval_labels=labels,
        tokenizer=tokenizer,
        output_dir=str(tmp_path / "api"),
        max_steps=1,
        use_cpu=True,
        **deploy_options,
    )


def check_deploy_row(kit, tmp_path, capsys, flags, phrase, teacher=None, python=None) -> str:
    out = tmp_path / "out"
    message = one_line_error(*run_cli(kit.argv(out, *flags, teacher=teacher), capsys), phrase)
    assert not out.exists()  # refused before fine-tuning or training: nothing written
    if python is not None:
        assert raised(python) == message
        assert not (tmp_path / "api").exists()
    return message


def test_unknown_deployed_form(kit, tmp_path, capsys):
    teacher = AutoModelForSequenceClassification.from_pretrained(kit.teacher)
    check_deploy_row(
        kit,
        tmp_path,
        capsys,
        ["--deploy", "int8,int4"],
        "Unknown deployed form(s) ['int4']: --deploy takes a comma list of int8, onnx, onnx-int8, "
        "e.g. --deploy int8,onnx-int8.",
        python=python_distill(teacher, tmp_path, kit.tokenizer, deploy="int8,int4"),
    )


def test_onnx_forms_without_the_export_extra(kit, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ImportError("No module named 'onnxruntime'", name="onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnxruntime)
    teacher = AutoModelForSequenceClassification.from_pretrained(kit.teacher)
    check_deploy_row(
        kit,
        tmp_path,
        capsys,
        ["--deploy", "int8,onnx-int8"],
        "--deploy onnx-int8: ONNX export needs onnx, onnxscript and onnxruntime (onnxruntime is "
        'missing); install the export extra: pip install "nlpkd[export]".',
        python=python_distill(teacher, tmp_path, kit.tokenizer, deploy=["int8", "onnx-int8"]),
    )


def tiny_gpt2(folder: Path, tokenizer) -> Path:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=16, n_layer=2, n_head=2, n_positions=MODEL_MAX_LENGTH
    )
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    return save(folder, GPT2ForSequenceClassification(config), tokenizer)


def test_a_family_that_cannot_be_deployed(kit, tmp_path, capsys):
    teacher = tiny_gpt2(tmp_path / "gpt2", kit.tokenizer)
    check_deploy_row(
        kit,
        tmp_path,
        capsys,
        ["--deploy", "int8", "--finetune_teacher", "never"],
        "--deploy int8: int8 quantization and ONNX export are built for the encoder families bert, "
        "deberta-v2, distilbert, electra, mpnet, roberta, xlm-roberta; this student is 'gpt2'. "
        "Leave out --deploy.",
        teacher=teacher,
        python=python_distill(
            AutoModelForSequenceClassification.from_pretrained(teacher),
            tmp_path,
            kit.tokenizer,
            deploy="int8",
        ),
    )


def word_level_teacher(kit, folder: Path) -> tuple[Path, Any]:
    """The kit's teacher with a fast tokenizer of the same tokens that is not WordPiece."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocab=kit.tokenizer.get_vocab(), unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]"}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **specials, sep_token="[SEP]")
    model = AutoModelForSequenceClassification.from_pretrained(kit.teacher)
    save(folder, model, tokenizer)
    return folder, AutoTokenizer.from_pretrained(folder)  # as the command loads it


def test_a_tokenizer_that_cannot_be_pruned(kit, tmp_path, capsys):
    teacher, tokenizer = word_level_teacher(kit, tmp_path / "word-level")
    check_deploy_row(
        kit,
        tmp_path,
        capsys,
        ["--prune_vocabulary", "true"],
        "prune_vocabulary supports WordPiece tokenizers only (families bert, distilbert, electra, "
        "mpnet); TokenizersBackend is a WordLevel tokenizer. Deploy this model without "
        "vocabulary pruning.",
        teacher=teacher,
        python=python_distill(
            AutoModelForSequenceClassification.from_pretrained(teacher),
            tmp_path,
            tokenizer,
            prune_vocabulary=True,
        ),
    )


def test_a_vocabulary_that_would_lose_a_special_token(kit, tmp_path, capsys):
    tokenizer = make_tokenizer(tmp_path / "vocab")
    tokenizer.add_special_tokens({"additional_special_tokens": ["[NEW]"]})
    model = AutoModelForSequenceClassification.from_pretrained(kit.teacher)
    teacher = save(tmp_path / "teacher", model, tokenizer)
    check_deploy_row(
        kit,
        tmp_path,
        capsys,
        ["--prune_vocabulary", "true", "--deploy", "int8"],
        "The tokens ['[NEW]'] (ids [36]) have no row in the model's 36-row word embeddings, so a "
        "pruned vocabulary would lose them. Call model.resize_token_embeddings(len(tokenizer)) first.",
        teacher=teacher,
        python=python_distill(model, tmp_path, tokenizer, prune_vocabulary=True, deploy="int8"),
    )


@pytest.mark.parametrize(
    ("flags", "phrase"),
    [
        (
            ["--vocabulary_file", "{file}"],
            "--vocabulary_file only adds texts to a pruned vocabulary: add --prune_vocabulary "
            "true, or leave it out.",
        ),
        (
            ["--prune_vocabulary", "true", "--vocabulary_file", "{missing}"],
            "--vocabulary_file {missing} does not exist: give a UTF-8 text file with one text "
            "per line.",
        ),
        (
            ["--prune_vocabulary", "true", "--vocabulary_file", "{empty}"],
            "--vocabulary_file {empty} holds no text: give a UTF-8 text file with one text per "
            "line.",
        ),
    ],
    ids=["without-pruning", "missing", "empty"],
)
def test_bad_vocabulary_file(kit, tmp_path, capsys, flags, phrase):
    paths = {"file": tmp_path / "corpus.txt", "missing": tmp_path / "nope.txt"}
    paths["empty"] = tmp_path / "empty.txt"
    paths["file"].write_text("the movie\n")
    paths["empty"].write_text("\n \n")
    flags = [flag.format(**paths) for flag in flags]
    options = {"vocabulary_file": flags[-1], "prune_vocabulary": "--prune_vocabulary" in flags}
    teacher = AutoModelForSequenceClassification.from_pretrained(kit.teacher)
    check_deploy_row(
        kit,
        tmp_path,
        capsys,
        flags,
        phrase.format(**paths),
        python=python_distill(teacher, tmp_path, kit.tokenizer, **options),
    )


def test_a_width_option_with_a_student_of_your_own(kit, tmp_path, capsys):
    student = save(tmp_path / "student", student_of(), kit.tokenizer)
    argv = kit.argv(tmp_path / "out", "--student", str(student), "--student_hidden_size", "16")
    message = one_line_error(
        *run_cli(argv, capsys),
        "--student_hidden_size, --student_intermediate_size and --student_heads build a narrower student",
    )
    assert message.endswith("with --student (a student of your own) leave them out.")
