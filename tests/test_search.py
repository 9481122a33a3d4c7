"""The recipe search (`--search_trials`, `nlpkd.distill(search_trials=...)`): trials on a held-out part of the
training data, the chosen recipe trained and reported, the same choice for the same seed."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import FAST_CLI, SENTENCES, tiny_bert
from test_cli import save_teacher, write_csv

import nlpkd
from nlpkd.cli import main
from nlpkd.jobs.search import SEARCH_SPACE, searched_names

pytest.importorskip(
    "optuna", reason="the search extra (pip install 'nlpkd[search]') is part of the test extra"
)

TEXTS = [SENTENCES[i % len(SENTENCES)] for i in range(40)]
LABELS = ["sport", "tech"] * 20


def search_run(tmp_path, tiny_tokenizer, name, seed=0):
    teacher = tiny_bert(
        seed=1, num_labels=2, id2label={0: "sport", 1: "tech"}, label2id={"sport": 0, "tech": 1}
    )
    return nlpkd.distill(
        teacher,
        TEXTS,
        eval_data=TEXTS[:8],
        labels=LABELS,
        eval_labels=LABELS[:8],
        tokenizer=tiny_tokenizer,
        student_layers=2,
        search_trials=2,
        max_length=16,
        max_steps=4,
        per_device_train_batch_size=8,
        latency_batches=0,
        seed=seed,
        output_dir=str(tmp_path / name),
        use_cpu=True,
        disable_tqdm=True,
    )


def test_the_search_chooses_a_recipe_from_its_space_and_reports_its_trials(
    tmp_path, tiny_tokenizer
):
    result = search_run(tmp_path, tiny_tokenizer, "first")
    search = result.search
    assert len(search.trials) == 2 and search.held_out_examples == 8  # 20% of the 40 training texts
    assert all(trial["state"] in ("COMPLETE", "PRUNED") for trial in search.trials)
    for name, value in search.best.items():
        if name == "alpha_ce":
            assert value == pytest.approx(1.0 - search.best["alpha_kd"])
            continue
        kind, values = SEARCH_SPACE[name]
        assert value in values if kind == "categorical" else values[0] <= value <= values[1]
    # The run trained the chosen recipe, and the report says so.
    args = result.trainer.args
    for name, value in search.best.items():
        assert getattr(args, name) == pytest.approx(value), name
    assert result.report["search"]["best"] == search.best
    assert result.report["distillation"]["temperature"] == search.best["temperature"]
    # The same seed makes the same choice.
    again = search_run(tmp_path, tiny_tokenizer, "second")
    assert again.search.best == search.best
    assert [t["params"] for t in again.search.trials] == [t["params"] for t in search.trials]


def test_the_search_from_the_command_line_writes_the_choice_where_the_docs_say(
    tmp_path, tiny_tokenizer
):
    teacher_dir = save_teacher(tmp_path / "teacher", tiny_tokenizer, num_labels=2)
    train = write_csv(tmp_path / "train.csv", ["sport", "tech"] * 10)
    val = write_csv(tmp_path / "val.csv", ["sport", "tech"] * 2)
    out = tmp_path / "out"
    argv = [
        "distill",
        "--teacher",
        str(teacher_dir),
        "--train_file",
        str(train),
        "--validation_file",
        str(val),
    ]
    argv += ["--output_dir", str(out), "--search_trials", "2", "--student_layers", "2", *FAST_CLI]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    best = metrics["search"]["best"]
    saved = yaml.safe_load((out / "nlpkd_config.yaml").read_text())
    # nlpkd_config.yaml repeats the run: the chosen values, and no second search.
    assert saved["search_trials"] == 0
    for name, value in best.items():
        assert saved[name] == pytest.approx(value), name
    card = (out / "README.md").read_text()
    assert "Its recipe was chosen by a search: best of 2 trials" in card


def test_searched_terms_follow_what_the_pair_can_give(tmp_path):
    from nlpkd import DistillationConfig, create_student

    teacher = tiny_bert(seed=1)
    args = DistillationConfig(output_dir=str(tmp_path))
    assert "alpha_attn" in searched_names(create_student(teacher, num_layers=2), teacher, args)
    narrow = create_student(teacher, num_layers=2, hidden_size=16, width_selection="first")
    names = searched_names(narrow, teacher, args)
    assert (
        "alpha_hidden" not in names and "alpha_attn" in names
    )  # projections do not carry over trials
    cached = DistillationConfig(output_dir=str(tmp_path), teacher_cache=True)
    names = searched_names(create_student(teacher, num_layers=2), teacher, cached)
    assert "alpha_attn" not in names and "alpha_hidden" not in names


def test_without_optuna_the_search_is_one_clear_line(tmp_path, tiny_tokenizer, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_optuna(name, *args, **kwargs):
        if name == "optuna" or name.startswith("optuna."):
            raise ImportError("No module named 'optuna'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_optuna)
    with pytest.raises(
        ValueError, match=r'--search_trials needs Optuna: pip install "nlpkd\[search\]"'
    ):
        search_run(tmp_path, tiny_tokenizer, "none")


def test_the_pruner_compares_a_trial_only_with_finished_trials_of_the_same_length():
    import optuna

    from nlpkd.jobs.search import same_schedule_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", pruner=same_schedule_pruner(n_startup_trials=2)
    )

    # Two finished trials of one length: 0.40 then 0.60, and 0.42 then 0.62.
    for scores in ([0.40, 0.60], [0.42, 0.62]):
        study.enqueue_trial({"num_train_epochs": 2.0})
        trial = study.ask()
        trial.suggest_categorical("num_train_epochs", [2.0, 8.0])
        for step, score in enumerate(scores):
            trial.report(score, step)
        study.tell(trial, scores[-1])
    length, other = 2.0, 8.0

    def trial_with(epochs):
        study.enqueue_trial({"num_train_epochs": epochs})
        trial = study.ask()
        assert trial.suggest_categorical("num_train_epochs", [2.0, 8.0]) == epochs
        return trial

    behind = trial_with(length)
    behind.report(0.30, 0)
    assert behind.should_prune()  # behind both finished trials of its length at step 0
    ahead = trial_with(length)
    ahead.report(0.45, 0)
    assert not ahead.should_prune()
    longer = trial_with(other)
    longer.report(0.30, 0)
    assert not longer.should_prune()  # no finished trial of its length to compare with
    # where Optuna's MedianPruner, comparing across lengths, stops it
    assert optuna.pruners.MedianPruner(n_startup_trials=2).prune(study, study.trials[-1])
