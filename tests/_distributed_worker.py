"""One tiny distillation run, for `test_distributed.py`: launched by torchrun (two ranks) or as a plain script.

For each scenario (`layers`: a `create_student` student with all four loss terms; `projection`: a narrower
student whose hidden-state loss goes through learned projections, with a checkpoint), each process trains the
same student on the same data with the same seed, saves it into `--output_dir/SCENARIO` with
`trainer.save_model()`, and writes into `--results/SCENARIO`:

- `rank{R}.json`: world size, the token ids of every batch this rank trained on (in step order), the trainer's
  `log_history`, and every file-system write this rank made under `--output_dir`;
- `rank{R}_student.safetensors` (and `rank{R}_projections.safetensors` in the projection scenario): the final
  weights as this rank holds them.

Writes are seen through a Python audit hook (`open` for writing, `mkdir`, `rename`, `remove`) plus wrappers
around `safetensors.torch.save_file` and `torch.save`, which write from native code and so raise no audit event.

Usage:
    python -m torch.distributed.run --nproc_per_node 2 tests/_distributed_worker.py --teacher DIR --data DIR \
        --output_dir DIR --results DIR --batch_size 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WRITES: list[dict[str, str]] = []
WATCHED: list[str] = []


def _watched(path: Any) -> str | None:
    if not WATCHED or not isinstance(path, (str, bytes, os.PathLike)):
        return None
    text = os.path.abspath(os.fsdecode(path))
    root = WATCHED[0]
    return text if text == root or text.startswith(root + os.sep) else None


def _audit(event: str, args: tuple) -> None:
    # Audit hooks run inside every open() of the process: stay cheap and never raise.
    if event == "open":
        path, mode, flags = args
        writing = (mode is not None and any(c in mode for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR)
        )
        if writing and (name := _watched(path)):
            WRITES.append({"op": "open", "path": name})
    elif event in ("os.mkdir", "os.rename", "os.remove"):
        if name := _watched(args[0]):
            WRITES.append({"op": event, "path": name})


def _record_native_writes() -> None:
    """Wrap the savers that write from native code, which raises no audit event."""
    import safetensors.torch
    import torch
    import transformers.modeling_utils

    original_save_file, original_torch_save = safetensors.torch.save_file, torch.save

    def save_file(tensors, filename, *args, **kwargs):
        if name := _watched(filename):
            WRITES.append({"op": "safetensors.save_file", "path": name})
        return original_save_file(tensors, filename, *args, **kwargs)

    def torch_save(obj, f, *args, **kwargs):
        if name := _watched(f):
            WRITES.append({"op": "torch.save", "path": name})
        return original_torch_save(obj, f, *args, **kwargs)

    safetensors.torch.save_file = save_file
    transformers.modeling_utils.safe_save_file = save_file
    torch.save = torch_save


def run_scenario(scenario: str, cli: argparse.Namespace) -> None:
    import torch
    from datasets import load_from_disk
    from safetensors.torch import save_file
    from transformers import AutoModelForSequenceClassification

    from nlpkd import DistillationConfig, DistillationTrainer, create_student

    WRITES.clear()
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_pretrained(cli.teacher)
    data = load_from_disk(cli.data)
    if scenario == "layers":
        student = create_student(teacher, num_layers=2)
        weights: dict[str, Any] = dict(alpha_kd=1.0, alpha_ce=0.5, alpha_hidden=0.3, alpha_attn=0.2)
        saving: dict[str, Any] = dict(save_strategy="no")
    else:
        # A narrower student: the hidden-state loss needs learned projections, which live outside the
        # DDP-wrapped model and have their gradients averaged by the trainer's own callback.
        config = teacher.config.__class__.from_dict(
            {
                **teacher.config.to_dict(),
                "hidden_size": 16,
                "intermediate_size": 24,
                "num_hidden_layers": 2,
            }
        )
        student = AutoModelForSequenceClassification.from_config(config)
        weights = dict(alpha_kd=1.0, alpha_ce=0.5, alpha_hidden=1.0, layer_map="0:1,1:3")
        # A checkpoint at the last step: the trainer adds its projections file to it.
        saving = dict(save_strategy="steps", save_steps=cli.max_steps, save_only_model=True)

    output_dir = os.path.join(cli.output_dir, scenario)
    args = DistillationConfig(
        output_dir=output_dir,
        per_device_train_batch_size=cli.batch_size,
        # Plain SGD: Adam divides by the gradient's own size, so it would turn the float noise of
        # gradients that are zero in exact arithmetic (BERT's key biases) into full-size steps whose sign
        # depends on summation order, and the runs could not be compared.
        optim="sgd",
        learning_rate=0.5,
        max_steps=cli.max_steps,
        logging_steps=1,
        report_to=[],
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
        # CPU processes talk over gloo; a single process must not ask for any backend.
        ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        temperature=2.0,
        **weights,
        **saving,
    )

    batches: list[list[list[int]]] = []

    class RecordingTrainer(DistillationTrainer):
        """Remembers the rows of every training batch, so the test can compare global batches."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                batches.append(inputs["input_ids"].tolist())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    trainer = RecordingTrainer(model=student, teacher=teacher, args=args, train_dataset=data)
    initial = {k: v.detach().clone() for k, v in student.state_dict().items()}
    trainer.train()
    trainer.save_model()

    rank = trainer.args.process_index
    results = Path(cli.results) / scenario
    results.mkdir(parents=True, exist_ok=True)
    unwrapped = trainer.student  # the student alone, also when projections are trained with it
    save_file(
        {k: v.detach().contiguous() for k, v in unwrapped.state_dict().items()},
        str(results / f"rank{rank}_student.safetensors"),
    )
    if len(trainer.projections) > 0:
        save_file(
            {k: v.detach().contiguous() for k, v in trainer.projections.state_dict().items()},
            str(results / f"rank{rank}_projections.safetensors"),
        )
    record = {
        "rank": rank,
        "world_size": trainer.args.world_size,
        "pid": os.getpid(),
        "batches": batches,
        "max_update": max(
            (v.detach() - initial[k]).abs().max().item() for k, v in unwrapped.state_dict().items()
        ),
        "log_history": trainer.state.log_history,
        "writes": list(WRITES),
        "teacher_type": type(trainer.teacher).__name__,
        "teacher_training": trainer.teacher.training,
        "teacher_requires_grad": any(p.requires_grad for p in trainer.teacher.parameters()),
        "student_wrapper": type(trainer.model_wrapped).__name__,
    }
    (results / f"rank{rank}.json").write_text(json.dumps(record, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teacher", required=True, help="folder of a saved teacher")
    parser.add_argument("--data", required=True, help="folder of a dataset saved with save_to_disk")
    parser.add_argument(
        "--output_dir", required=True, help="parent of one output folder per scenario"
    )
    parser.add_argument(
        "--results", required=True, help="parent of one results folder per scenario"
    )
    parser.add_argument("--scenarios", default="layers,projection")
    parser.add_argument("--batch_size", type=int, required=True, help="per-device batch size")
    parser.add_argument("--max_steps", type=int, default=3)
    cli = parser.parse_args()

    WATCHED.append(os.path.abspath(cli.output_dir))
    sys.addaudithook(_audit)
    _record_native_writes()
    for scenario in cli.scenarios.split(","):
        run_scenario(scenario, cli)


if __name__ == "__main__":
    main()
