"""Multi-process training (two CPU processes over gloo) and the Accelerate config recipes.

The two-process run and the one-process run train the same student with the same global batch (2 ranks x 2
rows == 1 process x 4 rows); `_distributed_worker.py` records, per rank, the batches it saw, the logs, the final
weights and every write it made under the output folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from conftest import random_dataset, tiny_bert
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_distributed_worker.py")
RECIPES = REPO / "recipes" / "accelerate"
SCENARIOS = ("layers", "projection")
COMPONENTS = {"layers": {"kd", "ce", "hidden", "attn"}, "projection": {"kd", "ce", "hidden"}}
MAX_STEPS = 3


def _launch(command: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    # The checkout comes first, so the processes import this nlpkd even where it is not installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # One thread per process: two ranks on a small CI machine must not oversubscribe its cores.
    env.update(
        OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1"
    )
    # The child gets its own copy of the file descriptor; ours can close at once.
    with log.open("w") as handle:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Run the worker once under torchrun with two ranks and once as a single process, side by side."""
    root = tmp_path_factory.mktemp("distributed")
    # A larger initialisation than BERT's 0.02 keeps the 2-layer student visibly different from the teacher.
    tiny_bert(seed=1, initializer_range=0.2).save_pretrained(root / "teacher")
    random_dataset(4 * MAX_STEPS, 8).save_to_disk(str(root / "data"))

    def worker_args(name: str, batch_size: int) -> list[str]:
        return [
            str(WORKER),
            "--teacher",
            str(root / "teacher"),
            "--data",
            str(root / "data"),
            "--output_dir",
            str(root / name / "out"),
            "--results",
            str(root / name / "results"),
            "--batch_size",
            str(batch_size),
            "--max_steps",
            str(MAX_STEPS),
        ]

    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    processes = {
        "ddp": _launch([*torchrun, *worker_args("ddp", 2)], root / "ddp.log"),
        "single": _launch([sys.executable, *worker_args("single", 4)], root / "single.log"),
    }
    deadline = time.monotonic() + 240
    for name, process in processes.items():
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            for other in processes.values():
                other.kill()
            pytest.fail(f"the {name} run did not finish in 240 s; log: {root / f'{name}.log'}")
        if process.returncode != 0:
            text = (root / f"{name}.log").read_text()
            # torchrun ends with its own summary: show the first worker traceback instead.
            start = text.find("Traceback")
            excerpt = text[start : start + 6000] if start >= 0 else text[-6000:]
            pytest.fail(f"the {name} run failed with exit code {process.returncode}:\n{excerpt}")
    return {"ddp": root / "ddp", "single": root / "single"}


def _record(run: Path, scenario: str, rank: int = 0) -> dict:
    return json.loads((run / "results" / scenario / f"rank{rank}.json").read_text())


def _train_logs(record: dict) -> list[dict]:
    return [entry for entry in record["log_history"] if "loss" in entry]


def _relative(paths: list[str], root: Path) -> set[str]:
    return {os.path.relpath(path, root) for path in paths}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_two_ranks_split_the_same_global_batches(runs, scenario):
    single = _record(runs["single"], scenario)
    rank0, rank1 = (_record(runs["ddp"], scenario, rank) for rank in (0, 1))
    assert (single["world_size"], rank0["world_size"], rank1["world_size"]) == (1, 2, 2)
    assert rank0["pid"] != rank1["pid"]
    assert len(single["batches"]) == len(rank0["batches"]) == len(rank1["batches"]) == MAX_STEPS
    rows = lambda batch: Counter(tuple(row) for row in batch)  # noqa: E731
    for step in range(MAX_STEPS):
        half0, half1 = rank0["batches"][step], rank1["batches"][step]
        assert len(half0) == len(half1) == 2
        # Each rank trains on its own half of the global batch ...
        assert not rows(half0) & rows(half1)
        # ... and the two halves are exactly the rows the single process trained on at that step.
        assert rows(half0) + rows(half1) == rows(single["batches"][step])


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_two_processes_train_the_same_student_as_one(runs, scenario):
    results = {name: runs[name] / "results" / scenario for name in runs}
    single = load_file(str(results["single"] / "rank0_student.safetensors"))
    rank0 = load_file(str(results["ddp"] / "rank0_student.safetensors"))
    rank1 = load_file(str(results["ddp"] / "rank1_student.safetensors"))
    saved = load_file(str(runs["ddp"] / "out" / scenario / "model.safetensors"))
    assert set(single) == set(rank0) == set(rank1)
    # Training moved the weights far more than the tolerance below.
    assert _record(runs["ddp"], scenario)["max_update"] > 1e-2
    for name in single:
        # DDP keeps the replicas bit-identical; the one-process run differs only in summation order.
        assert torch.equal(rank0[name], rank1[name]), name
        torch.testing.assert_close(rank0[name], single[name], atol=1e-5, rtol=0, msg=name)
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, rank0[name], atol=0, rtol=0, msg=name)

    if scenario == "projection":
        # The projections live outside the DDP-wrapped student; the trainer averages their gradients itself.
        proj = {
            name: load_file(str(results[name] / "rank0_projections.safetensors")) for name in runs
        }
        proj1 = load_file(str(results["ddp"] / "rank1_projections.safetensors"))
        # The projections are trained inside the module the Trainer sees, so the checkpoint's weights
        # file holds them beside the student (key prefix "projections.").
        checkpoint = load_file(
            str(runs["ddp"] / "out" / scenario / f"checkpoint-{MAX_STEPS}" / "model.safetensors")
        )
        in_checkpoint = {
            k[len("projections.") :]: v
            for k, v in checkpoint.items()
            if k.startswith("projections.")
        }
        assert len(proj["ddp"]) == 4  # two layers mapped, weight and bias each
        for name in proj["single"]:
            assert torch.equal(proj["ddp"][name], proj1[name]), name
            torch.testing.assert_close(proj["ddp"][name], proj["single"][name], atol=1e-5, rtol=0)
            torch.testing.assert_close(in_checkpoint[name], proj["ddp"][name], atol=0, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_logged_loss_components_are_global_averages(runs, scenario):
    single = _train_logs(_record(runs["single"], scenario))
    rank0 = _train_logs(_record(runs["ddp"], scenario, 0))
    rank1 = _train_logs(_record(runs["ddp"], scenario, 1))
    assert (
        [e["step"] for e in single] == [e["step"] for e in rank0] == list(range(1, MAX_STEPS + 1))
    )
    for one, first, second in zip(single, rank0, rank1, strict=True):
        assert COMPONENTS[scenario] <= set(first), first
        # Components are averaged across ranks, so every rank logs the global value, which is the
        # value of the one-process run over the same rows (they are rounded to 6 decimals in the logs).
        for key in COMPONENTS[scenario]:
            assert first[key] == second[key], (key, first, second)
            assert first[key] == pytest.approx(one[key], abs=2e-6), (key, first, one)
        assert first["loss"] == pytest.approx(one["loss"], abs=2e-4)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_only_the_main_process_writes(runs, scenario):
    out = runs["ddp"] / "out" / scenario
    rank0, rank1 = (_record(runs["ddp"], scenario, rank) for rank in (0, 1))
    assert rank1["writes"] == []
    written = _relative([w["path"] for w in rank0["writes"] if w["op"] != "os.mkdir"], out)
    expected = {"config.json", "model.safetensors", "training_args.bin"}
    if scenario == "projection":
        checkpoint = f"checkpoint-{MAX_STEPS}"
        # Student and projections in one weights file, written before trainer_state.json marks the
        # checkpoint complete.
        expected |= {
            f"{checkpoint}/{name}"
            for name in ("model.safetensors", "trainer_state.json", "training_args.bin")
        }
    assert written == expected
    # The output folder holds what one process writes, no more: the same files as the one-process run.
    listing = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*"))  # noqa: E731
    assert listing(out) == listing(runs["single"] / "out" / scenario)


@pytest.mark.slow
def test_teacher_is_a_frozen_unwrapped_replica(runs):
    for rank in (0, 1):
        record = _record(runs["ddp"], "layers", rank)
        # prepare_model(evaluation_mode=True): no DDP wrapper (it has nothing to synchronise), eval mode, frozen.
        assert record["teacher_type"] == "BertForSequenceClassification"
        assert record["teacher_training"] is False
        assert record["teacher_requires_grad"] is False
        assert record["student_wrapper"] == "DistributedDataParallel"
    assert _record(runs["single"], "layers")["student_wrapper"] != "DistributedDataParallel"


# ---- Accelerate config recipes ------------------------------------------------------------------------------


RECIPE_FILES = ("ddp.yaml", "fsdp.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml")


def _recipe(name: str) -> dict:
    return yaml.safe_load((RECIPES / name).read_text())


def test_recipes_folder_holds_the_four_configs():
    assert sorted(p.name for p in RECIPES.glob("*.yaml")) == sorted(RECIPE_FILES)


@pytest.mark.parametrize("name", RECIPE_FILES)
def test_recipe_loads_with_accelerates_own_config_class(name):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    config = ClusterConfig.from_yaml_file(str(RECIPES / name))
    expected = {
        "ddp.yaml": DistributedType.MULTI_GPU,
        "fsdp.yaml": DistributedType.FSDP,
        "deepspeed_zero2.yaml": DistributedType.DEEPSPEED,
        "deepspeed_zero3.yaml": DistributedType.DEEPSPEED,
    }[name]
    assert config.distributed_type == expected
    assert config.num_machines == 1 and config.machine_rank == 0
    assert config.num_processes > 1
    # The precision is chosen per run with --bf16/--fp16 (the Trainer passes it on to Accelerate).
    assert config.mixed_precision == "no"


def test_fsdp_recipe_shards_fully_and_wraps_transformer_layers():
    fsdp = _recipe("fsdp.yaml")["fsdp_config"]
    assert fsdp["fsdp_sharding_strategy"] == "FULL_SHARD"
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    # save_model gathers one ordinary checkpoint that from_pretrained reads.
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    # The Trainer reads the layer class from the model (`_no_split_modules`) when the recipe leaves it out.
    assert "fsdp_transformer_layer_cls_to_wrap" not in fsdp


@pytest.mark.parametrize(
    ("name", "stage"), [("deepspeed_zero2.yaml", 2), ("deepspeed_zero3.yaml", 3)]
)
def test_deepspeed_recipes_set_their_zero_stage(name, stage):
    deepspeed = _recipe(name)["deepspeed_config"]
    assert deepspeed["zero_stage"] == stage
    # Offload is opt-in: it trades a lot of speed for memory that encoder students rarely need.
    assert deepspeed["offload_optimizer_device"] == "none"
    assert deepspeed["offload_param_device"] == "none"
    if stage == 3:
        # Without this, save_model under ZeRO-3 writes shards instead of a loadable model.safetensors.
        assert deepspeed["zero3_save_16bit_model"] is True


def test_accelerate_launch_runs_a_module():
    # The recipes are used as `accelerate launch --config_file ... -m nlpkd distill ...`.
    from accelerate.commands.launch import launch_command_parser

    parser = launch_command_parser()
    args = parser.parse_args(
        ["--config_file", str(RECIPES / "ddp.yaml"), "-m", "nlpkd", "distill", "--output_dir", "x"]
    )
    assert args.module is True
    assert args.training_script == "nlpkd"
    assert args.training_script_args == ["distill", "--output_dir", "x"]
